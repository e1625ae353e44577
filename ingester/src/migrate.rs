//! ClickHouse migrations from `schemas/clickhouse/`, applied in order and recorded in
//! `schema_migrations`; re-running is a no-op.

use anyhow::{bail, Context};
use specaudit_core::config::ClickHouseConfig;

/// The migrations, oldest first: (version, name, SQL with `{database}` placeholders).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "init", include_str!("../../schemas/clickhouse/001_init.sql")),
    (2, "rollup_progress", include_str!("../../schemas/clickhouse/002_rollup_progress.sql")),
];

/// The statements of one migration file, `{database}` replaced, comments dropped.
pub fn statements(sql: &str, database: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("{database}", database))
        .collect()
}

fn legal_database(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Applies the migrations not yet recorded; returns how many ran.
pub async fn migrate(config: &ClickHouseConfig) -> anyhow::Result<usize> {
    let db = &config.database;
    if !legal_database(db) {
        bail!("clickhouse.database {db:?} must be letters, digits and underscores");
    }
    let server = specaudit_core::clickhouse::server_client(config);
    server
        .query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .execute()
        .await
        .with_context(|| format!("failed to create database {db} on {}", config.url))?;
    server
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, \
             applied_at DateTime DEFAULT now()) ENGINE = MergeTree() ORDER BY version"
        ))
        .execute()
        .await
        .context("failed to create schema_migrations")?;
    let applied: Vec<u32> = server
        .query(&format!("SELECT DISTINCT version FROM {db}.schema_migrations"))
        .fetch_all()
        .await
        .context("failed to read schema_migrations")?;
    let mut ran = 0;
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tracing::info!(version, name, "applying migration");
        for statement in statements(sql, db) {
            server
                .query(&statement)
                .execute()
                .await
                .with_context(|| format!("migration {version:03}_{name} failed at: {statement}"))?;
        }
        server
            .query(&format!("INSERT INTO {db}.schema_migrations (version, name) VALUES (?, ?)"))
            .bind(*version)
            .bind(*name)
            .execute()
            .await
            .context("failed to record the migration")?;
        ran += 1;
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/clickhouse");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|(v, n, _)| format!("{v:03}_{n}.sql")).collect();
        assert_eq!(files, listed);
    }

    #[test]
    fn statements_drop_comments_and_fill_the_database() {
        let s = statements("-- a; comment\nCREATE TABLE {database}.t (x UInt8);\n\nSELECT 1;\n", "db1");
        assert_eq!(s, ["CREATE TABLE db1.t (x UInt8)", "SELECT 1"]);
    }

    #[test]
    fn illegal_database_names_are_refused() {
        assert!(legal_database("specaudit_t1"));
        assert!(!legal_database("x; DROP TABLE y"));
        assert!(!legal_database(""));
    }
}
