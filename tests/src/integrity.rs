//! The exactly-once checks on the ingester's tables: every produced assertion in the raw
//! table once, and in the per-minute rollup once.

use std::time::{Duration, Instant};

/// What the exactly-once checks look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub rows: u64,
    pub unique_ids: u64,
    /// sum(count) in the raw table.
    pub raw_sum: u64,
    /// sum(passes + failures + errors + skips) in the rollup.
    pub rollup_sum: u64,
}

pub async fn counts(client: &clickhouse::Client) -> Result<Counts, clickhouse::error::Error> {
    let (rows, unique_ids, raw_sum): (u64, u64, u64) =
        client.query("SELECT count(), uniqExact(assertion_id), sum(toUInt64(count)) FROM assertions").fetch_one().await?;
    let rollup_sum: u64 =
        client.query("SELECT sum(passes + failures + errors + skips) FROM assertions_minutely").fetch_one().await?;
    Ok(Counts { rows, unique_ids, raw_sum, rollup_sum })
}

/// Waits until the raw table holds `rows` rows (or more), then returns the counts.
/// The deadline only keeps a broken run from hanging; it is not a performance check.
pub async fn wait_for_rows(client: &clickhouse::Client, rows: u64, within: Duration) -> Counts {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(c) = counts(client).await {
            if c.rows >= rows {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "fewer than {rows} rows after {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the raw table holds at least `rows` rows; for timing faults into a load.
pub async fn wait_for_some(client: &clickhouse::Client, rows: u64) {
    let _ = wait_for_rows(client, rows, Duration::from_secs(600)).await;
}
