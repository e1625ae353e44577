//! Cluster mode (`clickhouse.cluster`, docs/cluster.md): the tables are replicated
//! `*_local` tables on every node, and the ingester writes and reads the Distributed
//! tables in front of them, under the names it uses on one server. Why exactly-once still
//! holds, point by point against the one-server argument of the crate's top comment:
//!
//! - **Progress is read from where every row is.** The progress reads (`max(kafka_offset)`
//!   per partition, the offsets present, the rollup marks) go through the Distributed
//!   tables, so they see every shard — also rows written before the shards were changed.
//! - **An acknowledged insert is on its shards.** Inserts are synchronous
//!   (`insert_distributed_sync = 1`): the Distributed table answers after each shard's
//!   part is written, never from a local queue it forwards later, so an acknowledgement
//!   means the rows are readable. A failure part way (one shard written, another not) is
//!   "unclear" as on one server: the exact per-offset check completes the insert.
//! - **The rollup still moves in steps of one part.** The rollup is sharded by
//!   `kafka_partition`, and on a cluster its rows carry the partition they count
//!   ([`crate::rollup::Layout`]), so a partition's rollup rows and progress row reach the
//!   same shard in one block; the table is unpartitioned there too, so that block is one
//!   part, written whole or not at all. Different partitions of one insert may land on
//!   different shards independently, which is fine: marks are per partition.
//! - **Replicas agree before progress is trusted.** A shard's insert is acknowledged by one
//!   replica; another replica may not have it yet. The ingester prefers the replicas in
//!   their configured order (`load_balancing = in_order`), so it reads from the replica it
//!   wrote to while that one is up. To survive failing over to a replica that lags, set
//!   `clickhouse.insert_quorum`: inserts then wait for that many replicas, and progress
//!   reads use `select_sequential_consistency = 1`, so a replica missing an acknowledged
//!   part refuses to answer (a transient error, retried) instead of answering short.
//! - **Deduplication.** Replicated tables drop a block identical to a recent one. Raw rows
//!   carry their offset, so two of their blocks are identical only when an insert is
//!   repeated — dropping it is right, and a second guard beside the offset check. Two
//!   different rollup inserts can be identical, so those are sent with
//!   `insert_deduplicate = 0` ([`crate::rollup::write`]).
//!
//! What this adds to the one-server assumptions: the cluster's `remote_servers` has
//! `internal_replication = true` (else the Distributed table writes every replica itself
//! *and* replication copies it again), every node has the same cluster definition and
//! `{shard}`/`{replica}` macros, and without `insert_quorum` a replica that acknowledged
//! rows and is lost before they are copied takes them with it.

use specaudit_core::config::ClickHouseConfig;

/// The ClickHouse settings the ingester's inserts and progress reads need in `config`'s
/// layout (none on one server).
pub fn settings(config: &ClickHouseConfig) -> Vec<(&'static str, String)> {
    let Some(cluster) = &config.cluster else {
        return Vec::new();
    };
    let mut out = vec![("insert_distributed_sync", "1".to_owned()), ("load_balancing", "in_order".to_owned())];
    if cluster.insert_quorum > 0 {
        out.push(("insert_quorum", cluster.insert_quorum.to_string()));
        out.push(("select_sequential_consistency", "1".to_owned()));
    }
    out
}

/// The ingester's client for `config`: the shared client plus [`settings`].
pub fn client(config: &ClickHouseConfig) -> clickhouse::Client {
    settings(config)
        .into_iter()
        .fold(specaudit_core::clickhouse::client(config), |client, (name, value)| client.with_setting(name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use specaudit_core::config::ClusterConfig;

    #[test]
    fn one_server_needs_no_settings() {
        assert!(settings(&ClickHouseConfig::default()).is_empty());
    }

    #[test]
    fn a_cluster_inserts_synchronously_and_a_quorum_reads_consistently() {
        let mut config = ClickHouseConfig {
            cluster: Some(ClusterConfig { name: "c".into(), zookeeper_path: "/ch/{shard}".into(), insert_quorum: 0 }),
            ..ClickHouseConfig::default()
        };
        let names = |config: &ClickHouseConfig| settings(config).into_iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>();
        assert_eq!(names(&config), ["insert_distributed_sync=1", "load_balancing=in_order"]);
        config.cluster.as_mut().expect("a cluster").insert_quorum = 2;
        assert_eq!(
            names(&config),
            ["insert_distributed_sync=1", "load_balancing=in_order", "insert_quorum=2", "select_sequential_consistency=1"]
        );
    }
}
