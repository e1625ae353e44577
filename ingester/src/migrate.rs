//! ClickHouse migrations from `schemas/clickhouse/`, applied in order and recorded in
//! `schema_migrations`; re-running is a no-op.
//!
//! Two layouts with the same versions: one server (`schemas/clickhouse/NNN_*.sql`) and,
//! when `clickhouse.cluster` is set, replicated tables behind Distributed ones on every
//! node of the cluster (`schemas/clickhouse/cluster/NNN_*.sql`, docs/cluster.md). The
//! config picks one; a database keeps the layout it was created with.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use specaudit_core::config::{plain_identifier, ClickHouseConfig, ClusterConfig};

/// The one-server migrations, oldest first: (version, name, SQL with `{database}` placeholders).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "init", include_str!("../../schemas/clickhouse/001_init.sql")),
    (2, "rollup_progress", include_str!("../../schemas/clickhouse/002_rollup_progress.sql")),
];

/// The cluster migrations, one per one-server migration, with `{database}`, `{cluster}`
/// and `{zookeeper_path}` placeholders.
pub const CLUSTER_MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "init", include_str!("../../schemas/clickhouse/cluster/001_init.sql")),
    (2, "rollup_progress", include_str!("../../schemas/clickhouse/cluster/002_rollup_progress.sql")),
];

/// The statements of one one-server migration file, `{database}` replaced, comments dropped.
pub fn statements(sql: &str, database: &str) -> Vec<String> {
    fill(sql, &[("{database}", database)])
}

/// The statements of one cluster migration file, placeholders replaced, comments dropped.
/// The ZooKeeper path goes first, so that a `{database}` in it is filled too; server
/// macros (`{shard}`, `{replica}`) are left for each server.
pub fn cluster_statements(sql: &str, database: &str, cluster: &ClusterConfig) -> Vec<String> {
    fill(sql, &[("{zookeeper_path}", &cluster.zookeeper_path), ("{database}", database), ("{cluster}", &cluster.name)])
}

fn fill(sql: &str, placeholders: &[(&str, &str)]) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| placeholders.iter().fold(s.to_owned(), |s, (name, value)| s.replace(name, value)))
        .collect()
}

/// The migrations for `config`'s layout, oldest first: (version, name, statements).
pub fn plan(config: &ClickHouseConfig) -> Vec<(u32, &'static str, Vec<String>)> {
    let db = &config.database;
    match &config.cluster {
        None => MIGRATIONS.iter().map(|&(v, n, sql)| (v, n, statements(sql, db))).collect(),
        Some(cluster) => CLUSTER_MIGRATIONS.iter().map(|&(v, n, sql)| (v, n, cluster_statements(sql, db, cluster))).collect(),
    }
}

/// The statements that create the database and `schema_migrations`. On a cluster, on every
/// node, with the record replicated between the replicas of a shard.
fn bootstrap(config: &ClickHouseConfig) -> [String; 2] {
    let db = &config.database;
    let columns = "(version UInt32, name String, applied_at DateTime DEFAULT now())";
    match &config.cluster {
        None => [
            format!("CREATE DATABASE IF NOT EXISTS {db}"),
            format!("CREATE TABLE IF NOT EXISTS {db}.schema_migrations {columns} ENGINE = MergeTree() ORDER BY version"),
        ],
        Some(cluster) => {
            let c = &cluster.name;
            let path = cluster.zookeeper_path.replace("{database}", db);
            [
                format!("CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER {c}"),
                format!(
                    "CREATE TABLE IF NOT EXISTS {db}.schema_migrations ON CLUSTER {c} {columns} \
                     ENGINE = ReplicatedMergeTree('{path}/schema_migrations', '{{replica}}') ORDER BY version"
                ),
            ]
        }
    }
}

/// Where applied versions are read: on a cluster, from one replica of every shard, so a
/// migration run through any node is seen from every other.
fn applied_query(config: &ClickHouseConfig) -> String {
    let db = &config.database;
    match &config.cluster {
        None => format!("SELECT DISTINCT version FROM {db}.schema_migrations"),
        Some(cluster) => format!("SELECT DISTINCT version FROM cluster({}, {db}, schema_migrations)", cluster.name),
    }
}

/// Before anything runs ON CLUSTER: the server knows the cluster, and this node has the
/// macros the replicated tables' paths use (every node needs them; this one is checked).
async fn check_cluster(server: &clickhouse::Client, config: &ClickHouseConfig, cluster: &ClusterConfig) -> anyhow::Result<()> {
    let name = &cluster.name;
    let nodes: u64 = server
        .query("SELECT count() FROM system.clusters WHERE cluster = ?")
        .bind(name)
        .fetch_one()
        .await
        .with_context(|| format!("failed to read system.clusters on {}", config.url))?;
    if nodes == 0 {
        bail!("clickhouse.cluster {name:?} is not in the remote_servers of the server at {}", config.url);
    }
    let macros: Vec<String> = server
        .query("SELECT macro FROM system.macros")
        .fetch_all()
        .await
        .with_context(|| format!("failed to read system.macros on {}", config.url))?;
    let path = format!("{} {{replica}}", cluster.zookeeper_path);
    for needed in path.split('{').skip(1).filter_map(|s| s.split_once('}')).map(|(m, _)| m) {
        if needed != "database" && !macros.iter().any(|m| m == needed) {
            bail!(
                "the server at {} has no <macros> entry {needed:?}, needed by the replicated tables' \
                 path clickhouse.zookeeper_path {:?} and replica name",
                config.url,
                cluster.zookeeper_path
            );
        }
    }
    Ok(())
}

async fn has_migrations_table(server: &clickhouse::Client, db: &str) -> anyhow::Result<bool> {
    let n: u64 = server
        .query("SELECT count() FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
        .bind(db)
        .fetch_one()
        .await
        .context("failed to read system.tables")?;
    Ok(n > 0)
}

/// Applies the migrations not yet recorded; returns how many ran.
pub async fn migrate(config: &ClickHouseConfig) -> anyhow::Result<usize> {
    let db = &config.database;
    if !plain_identifier(db) {
        bail!("clickhouse.database {db:?} must be letters, digits and underscores");
    }
    let server = specaudit_core::clickhouse::server_client(config);
    if let Some(cluster) = &config.cluster {
        check_cluster(&server, config, cluster).await?;
    }
    // On a cluster, statements ON CLUSTER wait for every node: skipped when there is
    // nothing to do, so an ingester starts while a node is down.
    if config.cluster.is_none() || !has_migrations_table(&server, db).await? {
        let [create_database, create_migrations] = bootstrap(config);
        server
            .query(&create_database)
            .execute()
            .await
            .with_context(|| format!("failed to create database {db} on {}", config.url))?;
        server.query(&create_migrations).execute().await.context("failed to create schema_migrations")?;
    }
    let pending = |applied: &[u32]| plan(config).into_iter().filter(|(v, ..)| !applied.contains(v)).collect::<Vec<_>>();
    if pending(&applied(&server, config).await?).is_empty() {
        return Ok(0);
    }
    // Ingesters starting together must not interleave migrations (002 drops and rebuilds
    // the rollup): one applies them under the lock, the others then find them applied.
    let lock = MigrationLock::take(&server, db).await?;
    let result = async {
        let mut ran = 0;
        for (version, name, statements) in pending(&applied(&server, config).await?) {
            apply(&server, config, version, name, statements).await?;
            ran += 1;
        }
        Ok(ran)
    }
    .await;
    lock.release(&server).await;
    result
}

async fn applied(server: &clickhouse::Client, config: &ClickHouseConfig) -> anyhow::Result<Vec<u32>> {
    server.query(&applied_query(config)).fetch_all().await.context("failed to read schema_migrations")
}

async fn apply(server: &clickhouse::Client, config: &ClickHouseConfig, version: u32, name: &str, statements: Vec<String>) -> anyhow::Result<()> {
    let db = &config.database;
    tracing::info!(version, name, cluster = config.cluster.as_ref().map(|c| c.name.as_str()), "applying migration");
    for statement in statements {
        server
            .query(&statement)
            .execute()
            .await
            .with_context(|| format!("migration {version:03}_{name} failed at: {statement}"))?;
    }
    server
        .query(&format!("INSERT INTO {db}.schema_migrations (version, name) VALUES (?, ?)"))
        .bind(version)
        .bind(name)
        .execute()
        .await
        .context("failed to record the migration")
}

/// Longest wait for another process's migrations.
const LOCK_WAIT: Duration = Duration::from_secs(300);

/// A table that exists while one process applies migrations. ClickHouse creates a table
/// name once however many ask at the same time, so creating it is taking the lock. On a
/// cluster it is local to the server this process talks to.
struct MigrationLock {
    table: String,
}

impl MigrationLock {
    async fn take(server: &clickhouse::Client, db: &str) -> anyhow::Result<MigrationLock> {
        let table = format!("{db}.schema_migrations_lock");
        let create = format!("CREATE TABLE {table} (taken_at DateTime DEFAULT now()) ENGINE = Memory");
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match server.query(&create).execute().await {
                Ok(()) => return Ok(MigrationLock { table }),
                // 57: the table exists, another process holds the lock.
                Err(error) if error.to_string().contains("Code: 57") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) if error.to_string().contains("Code: 57") => bail!(
                    "another process has been applying migrations for {LOCK_WAIT:?} ({table} exists); \
                     if none is running, drop that table"
                ),
                Err(error) => return Err(error).context("failed to take the migration lock"),
            }
        }
    }

    /// Gives the lock up; if that fails the table stays, and the next start says so.
    async fn release(self, server: &clickhouse::Client) {
        if let Err(error) = server.query(&format!("DROP TABLE IF EXISTS {}", self.table)).execute().await {
            tracing::warn!(%error, table = %self.table, "cannot release the migration lock; drop the table by hand");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn listed_files(dir: &str) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".sql"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/clickhouse");
        let listed: Vec<String> = MIGRATIONS.iter().map(|(v, n, _)| format!("{v:03}_{n}.sql")).collect();
        assert_eq!(listed_files(dir), listed);
        let cluster: Vec<String> = CLUSTER_MIGRATIONS.iter().map(|(v, n, _)| format!("{v:03}_{n}.sql")).collect();
        assert_eq!(listed_files(&format!("{dir}/cluster")), cluster);
        // Same versions in both layouts: one schema_migrations history whichever is used.
        assert_eq!(listed, cluster);
    }

    #[test]
    fn statements_drop_comments_and_fill_the_database() {
        let s = statements("-- a; comment\nCREATE TABLE {database}.t (x UInt8);\n\nSELECT 1;\n", "db1");
        assert_eq!(s, ["CREATE TABLE db1.t (x UInt8)", "SELECT 1"]);
    }

    #[test]
    fn illegal_database_names_are_refused() {
        assert!(plain_identifier("specaudit_t1"));
        assert!(!plain_identifier("x; DROP TABLE y"));
        assert!(!plain_identifier(""));
    }

    fn cluster_config() -> ClickHouseConfig {
        ClickHouseConfig {
            database: "db1".into(),
            cluster: Some(ClusterConfig {
                name: "c1".into(),
                zookeeper_path: "/ch/{shard}/{database}".into(),
                insert_quorum: 0,
            }),
            ..ClickHouseConfig::default()
        }
    }

    #[test]
    fn without_a_cluster_the_plan_is_the_one_server_files_unchanged() {
        let config = ClickHouseConfig { database: "db1".into(), ..ClickHouseConfig::default() };
        let plan = plan(&config);
        assert_eq!(plan.len(), MIGRATIONS.len());
        for ((v, n, statements), (v2, n2, sql)) in plan.iter().zip(MIGRATIONS) {
            assert_eq!((v, n), (v2, n2));
            assert_eq!(statements, &super::statements(sql, "db1"));
            assert!(statements.iter().all(|s| !s.contains("ON CLUSTER") && !s.contains("Replicated")));
        }
        assert_eq!(bootstrap(&config)[0], "CREATE DATABASE IF NOT EXISTS db1");
        assert_eq!(applied_query(&config), "SELECT DISTINCT version FROM db1.schema_migrations");
    }

    #[test]
    fn with_a_cluster_every_statement_runs_on_the_cluster_with_its_placeholders_filled() {
        let config = cluster_config();
        let plan = plan(&config);
        assert_eq!(plan.iter().map(|(v, n, _)| (*v, *n)).collect::<Vec<_>>(), [(1, "init"), (2, "rollup_progress")]);
        for statement in plan.iter().flat_map(|(_, _, s)| s).chain(&bootstrap(&config)) {
            assert!(statement.contains(" ON CLUSTER c1"), "{statement}");
            assert!(!statement.contains("{database}") && !statement.contains("{cluster}") && !statement.contains("{zookeeper_path}"), "{statement}");
            if statement.contains("Replicated") {
                // The shard is the server's macro; the table's own name ends the path.
                let table = statement.split_whitespace().nth(5).expect("present").trim_start_matches("db1.");
                assert!(statement.contains(&format!("('/ch/{{shard}}/db1/{table}', '{{replica}}'")), "{statement}");
            }
        }
        assert!(applied_query(&config).contains("cluster(c1, db1, schema_migrations)"));
    }

    /// Table → its column list, from the CREATE TABLE statements of `plan` (the last one of
    /// a table wins: 002 recreates the rollup).
    fn columns(plan: &[(u32, &str, Vec<String>)]) -> BTreeMap<String, (String, String)> {
        let mut out = BTreeMap::new();
        for statement in plan.iter().flat_map(|(_, _, s)| s) {
            let Some(rest) = statement.strip_prefix("CREATE TABLE IF NOT EXISTS db1.") else { continue };
            let name = rest.split_whitespace().next().expect("present");
            let Some(open) = rest.find('(') else { continue };
            if rest.contains("AS db1.") {
                continue;
            }
            let close = rest.find(") ENGINE").expect("present");
            let engine = &rest[close..];
            let order = engine[engine.find("PARTITION BY").or_else(|| engine.find("ORDER BY")).expect("present")..].to_owned();
            out.insert(name.trim_end_matches("_local").to_owned(), (rest[open..close].to_owned(), order));
        }
        out
    }

    #[test]
    fn the_cluster_layout_has_the_one_server_tables_columns_and_orders() {
        let single = columns(&plan(&ClickHouseConfig { database: "db1".into(), ..ClickHouseConfig::default() }));
        let cluster = columns(&plan(&cluster_config()));
        assert_eq!(single.keys().collect::<Vec<_>>(), cluster.keys().collect::<Vec<_>>());
        for (table, definition) in &single {
            assert_eq!(definition, &cluster[table], "{table}");
        }
        // and each has its Distributed table under the plain name
        let statements: Vec<String> = plan(&cluster_config()).into_iter().flat_map(|(_, _, s)| s).collect();
        for table in single.keys() {
            let distributed = format!("CREATE TABLE IF NOT EXISTS db1.{table} ON CLUSTER c1\nAS db1.{table}_local\nENGINE = Distributed(c1, db1, {table}_local, ");
            assert!(statements.iter().any(|s| s.starts_with(&distributed)), "{table}");
        }
    }
}
