//! specaudit-ingester: every record of the assertions, heartbeats, spec-history, alarms and
//! dead-letters topics into ClickHouse, exactly once.
//!
//! # Why no crash point loses or doubles a row
//!
//! - **Nothing is lost**: an offset is committed only after every record below it is in
//!   ClickHouse (its row and its rollup inserted, or its dead letter acknowledged by
//!   Kafka). A crash before the commit makes the group read those records again.
//! - **The raw table is never doubled**: every row carries its Kafka partition and offset.
//!   After an assignment the ingester asks ClickHouse for the highest offset each partition
//!   already has; records at or below it are checked one by one against the offsets
//!   present, and only the missing ones are inserted. An insert whose outcome is unclear
//!   (timeout, dropped connection, server restart, refusal) raises that mark to the end of
//!   what it carried, so the retry inserts only what did not land — also when ClickHouse
//!   wrote part of it (one part per month, a stream cut at a block boundary).
//! - **The rollup is neither short nor doubled**: a materialized view would be fed after
//!   the raw block lands, so a crash in between would leave raw rows the rollup never
//!   counts. The ingester writes the rollup itself ([`rollup`]), after the raw rows, in
//!   inserts of one compressed block each, carrying for each partition in it a progress
//!   row that moves the partition's rollup mark past the offsets it covers. Such an insert
//!   is read whole or not at all and lands as one part, so rows and marks move together;
//!   records below a mark are never rolled up again, records at or past it always are.
//! - **Rebalances**: at most one flush is in flight, and a revocation (delivered inside
//!   `recv`) blocks until it has ended before the partitions are given up, so the new
//!   owner never reads progress while an insert of the old owner may still land (on a
//!   single-threaded runtime the loop awaits each flush instead). Pending rows of revoked
//!   partitions are dropped and their progress forgotten; messages of partitions no longer
//!   owned are ignored; the new owner learns the progress from ClickHouse again. A commit
//!   that lands late (from an older generation) only moves the group back to records
//!   already stored, which the checks above recognise.
//! - **Outages**: while a flush keeps failing the loop pauses its partitions and keeps
//!   polling, so it stays in the group instead of being evicted after
//!   `max.poll.interval.ms` while still holding rows — an evicted member inserting after
//!   the new owner checked is the one way two writers could race. Every step of a flush
//!   (progress read, insert, dead letter) is bounded by a timeout far below that interval.
//!
//! What this rests on: ClickHouse keeps what it acknowledged (18.16 does not fsync parts,
//! so a power loss right after an insert can lose it after the commit), and only one
//! ingester writes a partition at a time (a member whose insert outlives the group's
//! patience is evicted — the timeouts above keep that from happening).
//!
//! On a ClickHouse cluster the same holds through Distributed tables; [`cluster`] says why
//! and what it adds to these assumptions.
//!
//! `spec_versions` and `agents` are ReplacingMergeTree tables keyed by (spec, version) and
//! agent: even a row written twice collapses to one. Dead letters are written to their
//! topic at least once (a crash between the send and the commit sends them again); the
//! `dead_letters` table holds each message of that topic exactly once.
//!
//! Speed: assertions, the bulk of the load, are encoded to RowBinary as they arrive and
//! each insert is sent sorted by the table's key, which spares ClickHouse its sort
//! ([`assertion_row`]); decoding overlaps the flush in flight ([`pipeline`]).

pub mod assertion_row;
pub mod batch;
pub mod cluster;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod flush;
pub mod insert_error;
pub mod migrate;
pub mod pipeline;
pub mod progress;
pub mod rollup;
pub mod rowbinary;
pub mod rows;

pub use config::IngesterConfig;

use specaudit_core::telemetry::{Endpoint, Health};
use tokio_util::sync::CancellationToken;

/// Runs the ingester until `shutdown`: migrations, `/metrics` and `/health`, the ingest loop.
pub async fn run(config: IngesterConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    migrate::migrate(&config.clickhouse).await?;
    let health = Health::default();
    let endpoint = Endpoint::start(&config.telemetry, health.clone(), shutdown.clone()).await?;
    health.set(true);
    let result = pipeline::run(config, shutdown.clone()).await;
    health.set(false);
    shutdown.cancel();
    endpoint.join().await;
    result
}
