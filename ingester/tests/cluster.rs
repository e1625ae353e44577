//! The ingester on a ClickHouse cluster of two shards, against real servers: the cluster
//! migrations, a load ingested through kills, and exactly-once checked on the whole
//! cluster and on each shard. Opt-in (`#[ignore]`): `deploy/local/cluster-test.sh` starts
//! ZooKeeper and the two servers and runs these with `--ignored`; they need
//! `SPECAUDIT_TEST_CLUSTER` (the cluster's name), `SPECAUDIT_TEST_CLICKHOUSE` and
//! `SPECAUDIT_TEST_CLICKHOUSE_2` (one node of each shard) and the local stack's Kafka.
//! Load size: `SPECAUDIT_TEST_LOAD` (default 100,000).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use specaudit_core::config::{ClickHouseConfig, ClusterConfig, DEFAULT_ZOOKEEPER_PATH};
use specaudit_ingester::migrate;
use specaudit_tests::TestEnv;
use support::{counts, produce, wait_for_rows, Ingester, Load};

const EXE: &str = env!("CARGO_BIN_EXE_specaudit-ingester");
const WITHIN: Duration = Duration::from_secs(600);

fn cluster_name() -> String {
    std::env::var("SPECAUDIT_TEST_CLUSTER").expect("SPECAUDIT_TEST_CLUSTER: run deploy/local/cluster-test.sh")
}

/// A test namespace whose ClickHouse side is the cluster.
async fn cluster_env() -> TestEnv {
    let mut env = TestEnv::new().await;
    env.clickhouse.cluster =
        Some(ClusterConfig { name: cluster_name(), zookeeper_path: DEFAULT_ZOOKEEPER_PATH.into(), insert_quorum: 0 });
    env
}

/// The same database through the node of the other shard.
fn second_node(env: &TestEnv) -> ClickHouseConfig {
    ClickHouseConfig {
        url: std::env::var("SPECAUDIT_TEST_CLICKHOUSE_2").expect("SPECAUDIT_TEST_CLICKHOUSE_2"),
        ..env.clickhouse.clone()
    }
}

async fn drop_database(env: &TestEnv) {
    let server = specaudit_core::clickhouse::server_client(&env.clickhouse);
    let sql = format!("DROP DATABASE IF EXISTS {} ON CLUSTER {}", env.clickhouse.database, cluster_name());
    if let Err(error) = server.query(&sql).execute().await {
        eprintln!("cannot drop {}: {error}", env.clickhouse.database);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the two-server cluster of deploy/local/cluster-test.sh"]
async fn migrations_create_the_cluster_layout_once_whichever_node_runs_them() {
    let env = cluster_env().await;
    assert_eq!(migrate::migrate(&env.clickhouse).await.expect("migrate"), migrate::CLUSTER_MIGRATIONS.len());
    assert_eq!(migrate::migrate(&env.clickhouse).await.expect("again"), 0);
    // The other shard's node sees them applied (the record is read from every shard).
    let second = second_node(&env);
    assert_eq!(migrate::migrate(&second).await.expect("through node 2"), 0);
    for node in [&env.clickhouse, &second] {
        let tables: Vec<(String, String)> = specaudit_core::clickhouse::client(node)
            .query("SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name")
            .fetch_all()
            .await
            .expect("tables");
        for table in ["agents", "alarms", "assertions", "assertions_minutely", "dead_letters", "spec_versions"] {
            let engine = |name: &str| tables.iter().find(|(n, _)| n == name).map(|(_, e)| e.clone());
            assert_eq!(engine(table).as_deref(), Some("Distributed"), "{table} on {}", node.url);
            assert!(engine(&format!("{table}_local")).is_some_and(|e| e.starts_with("Replicated")), "{table}_local on {}", node.url);
        }
    }
    // An unknown cluster is named before anything runs.
    let mut wrong = env.clickhouse.clone();
    wrong.cluster.as_mut().expect("a cluster").name = "no_such_cluster".into();
    let err = migrate::migrate(&wrong).await.expect_err("no such cluster").to_string();
    assert!(err.contains("clickhouse.cluster") && err.contains("no_such_cluster"), "{err}");
    drop_database(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the two-server cluster of deploy/local/cluster-test.sh"]
async fn a_load_through_kills_lands_once_with_each_partition_on_one_shard() {
    let env = cluster_env().await;
    let n = support::load_size(100_000);
    let load = Arc::new(Load::new(60));
    let group = format!("test-{}", env.id);
    let topic = specaudit_core::kafka::Topics::new(&env.kafka.topic_prefix).assertions;
    let kafka = env.kafka.clone();
    let producing = {
        let load = load.clone();
        std::thread::spawn(move || produce(&kafka, &topic, &load, n, None))
    };
    let cluster = [("SPECAUDIT__CLICKHOUSE__CLUSTER", cluster_name()), ("SPECAUDIT__INGEST__INSTANCE_ID", "cluster-test".into())];
    let extra: Vec<(&str, &str)> = cluster.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client = specaudit_ingester::cluster::client(&env.clickhouse);
    for kill in 0..3 {
        let stored = counts(&client).await.map(|c| c.rows).unwrap_or(0);
        let ingester = Ingester::spawn_ingester(Path::new(EXE), &env, &group, &extra);
        wait_for_rows(&client, (stored + 1).min(n), WITHIN).await;
        tokio::time::sleep(support::random_between(Duration::ZERO, Duration::from_millis(1500))).await;
        ingester.kill();
        eprintln!("kill {kill}: {} rows stored", counts(&client).await.map(|c| c.rows).unwrap_or(0));
    }
    producing.join().expect("producer");
    let ingester = Ingester::spawn_ingester(Path::new(EXE), &env, &group, &extra);
    wait_for_rows(&client, n, WITHIN).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(ingester);

    // The whole cluster, through the Distributed tables.
    let c = counts(&client).await.expect("counts");
    assert_eq!(c.rows, n, "raw rows vs produced: {c:?}");
    assert_eq!(c.unique_ids, c.rows, "duplicated assertion ids: {c:?}");
    assert_eq!(c.raw_sum, load.count_sum(n), "sum(count): {c:?}");
    assert_eq!(c.rollup_sum, c.raw_sum, "rollup vs raw: {c:?}");

    // Each shard on its own: a partition's raw rows, rollup rows and progress rows are all
    // on one shard, and each shard's rollup counts exactly its raw rows.
    let mut seen = BTreeSet::new();
    for node in [env.clickhouse.clone(), second_node(&env)] {
        let local = specaudit_core::clickhouse::client(&node);
        let raw: Vec<i32> = local.query("SELECT DISTINCT kafka_partition FROM assertions_local").fetch_all().await.expect("raw");
        let rolled: Vec<i32> =
            local.query("SELECT DISTINCT kafka_partition FROM assertions_minutely_local").fetch_all().await.expect("rollup");
        let (raw_sum, rollup_sum): (u64, u64) = local
            .query(
                "SELECT (SELECT sum(toUInt64(count)) FROM assertions_local), \
                 (SELECT sum(passes + failures + errors + skips) FROM assertions_minutely_local)",
            )
            .fetch_one()
            .await
            .expect("sums");
        eprintln!("{}: partitions {raw:?}, raw sum {raw_sum}, rollup sum {rollup_sum}", node.url);
        assert!(!raw.is_empty(), "no rows on {}", node.url);
        assert_eq!(raw.iter().collect::<BTreeSet<_>>(), rolled.iter().collect::<BTreeSet<_>>(), "on {}", node.url);
        assert_eq!(raw_sum, rollup_sum, "on {}", node.url);
        for p in raw {
            assert!(seen.insert(p), "partition {p} on two shards");
        }
    }
    drop_database(&env).await;
}

async fn passes(client: &clickhouse::Client) -> u64 {
    client.query("SELECT sum(passes) FROM assertions_minutely").fetch_one().await.expect("sum")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the two-server cluster of deploy/local/cluster-test.sh"]
async fn replicated_tables_drop_a_repeated_block_unless_the_rollup_insert_says_not_to() {
    let env = cluster_env().await;
    migrate::migrate(&env.clickhouse).await.expect("migrate");
    let client = specaudit_ingester::cluster::client(&env.clickhouse);
    let insert = "INSERT INTO assertions_minutely (minute, spec, passes, kafka_partition) VALUES (60, 's', 1, 1)";
    for _ in 0..2 {
        client.query(insert).execute().await.expect("insert");
    }
    // The second, identical block was taken for a retry and dropped...
    assert_eq!(passes(&client).await, 1);
    // ...which the rollup's own inserts turn off, also on the remote shard (partition 1).
    for _ in 0..2 {
        client.query(insert).with_setting("insert_deduplicate", "0").execute().await.expect("insert");
    }
    assert_eq!(passes(&client).await, 3);
    drop_database(&env).await;
}
