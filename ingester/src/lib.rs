//! specaudit-ingester: every record of the assertions, heartbeats, spec-history, alarms and
//! dead-letters topics into ClickHouse, exactly once.
//!
//! # Why no crash point loses or doubles a row
//!
//! - **Nothing is lost**: an offset is committed only after every record below it is in
//!   ClickHouse (its row inserted, or its dead letter acknowledged by Kafka). A crash before
//!   the commit makes the group read those records again.
//! - **Nothing is doubled**: every row carries its Kafka partition and offset. After an
//!   assignment the ingester asks ClickHouse for the highest offset each partition already
//!   has; records at or below it are checked against the offsets present and only the
//!   missing ones are inserted. An insert whose outcome is unclear (timeout, dropped
//!   connection, server restart) raises that mark to the batch's end, so the retry inserts
//!   only what did not land, even if the server wrote part of the batch.
//! - **The rollup follows the raw table**: `assertions_minutely` is fed by a materialized
//!   view from the very blocks inserted into `assertions`, so a row is rolled up once
//!   exactly when it is inserted once.
//! - **Rebalances**: one task owns the consumer and awaits each insert inline, so a
//!   revocation (delivered inside `recv`) never races an insert. Pending rows of revoked
//!   partitions are dropped and the partition's progress forgotten; messages of partitions
//!   no longer owned are ignored. The new owner learns the progress from ClickHouse again.
//!
//! `spec_versions` and `agents` are ReplacingMergeTree tables keyed by (spec, version) and
//! agent: even a row written twice collapses to one.

pub mod batch;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod flush;
pub mod insert_error;
pub mod migrate;
pub mod pipeline;
pub mod progress;
pub mod rollup;
pub mod rows;

pub use config::IngesterConfig;

use specaudit_core::telemetry::{self, Health};
use tokio_util::sync::CancellationToken;

/// Runs the ingester until `shutdown`: migrations, `/metrics` and `/health`, the ingest loop.
pub async fn run(config: IngesterConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    migrate::migrate(&config.clickhouse).await?;
    let health = Health::default();
    let server = tokio::spawn({
        let telemetry = config.telemetry.clone();
        let health = health.clone();
        let shutdown = shutdown.clone();
        async move { telemetry::serve(&telemetry, health, shutdown).await }
    });
    telemetry::install_metrics();
    health.set(true);
    let result = pipeline::run(config, shutdown.clone()).await;
    health.set(false);
    shutdown.cancel();
    match server.await {
        Ok(Err(error)) => tracing::warn!(%error, "metrics endpoint failed"),
        Ok(Ok(())) | Err(_) => {}
    }
    result
}
