//! Progress lives where the data lives: what is already in ClickHouse is learned from the
//! `kafka_partition` / `kafka_offset` columns of the rows themselves.
//!
//! For every (table, partition) the ingester knows `high`: an offset at or below which rows
//! may already be in the table (found by asking ClickHouse after an assignment, raised after
//! an insert whose result is unclear). Rows of a batch above `high` cannot be in the table
//! yet and are inserted directly; rows at or below it are first checked one by one against
//! the offsets present, and only the missing ones are inserted.

use std::collections::{HashMap, HashSet};

use crate::batch::Batch;
use crate::rows::SourcedRow;

/// What the ingester knows about one table's progress.
#[derive(Debug, Default)]
pub struct Progress {
    /// partition → highest offset that may already be in the table; absent = unknown.
    high: HashMap<i32, i64>,
}

impl Progress {
    /// Forgets a partition: another ingester may write it now.
    pub fn forget(&mut self, partition: i32) {
        self.high.remove(&partition);
    }

    /// After an insert whose outcome is unknown, every row of the batch may be in the table.
    pub fn mark_unclear<R: SourcedRow>(&mut self, batch: &Batch<R>) {
        for (&partition, &(_, last)) in &batch.offsets {
            let high = self.high.entry(partition).or_insert(-1);
            *high = (*high).max(last);
        }
    }

    /// Removes from `batch` the rows that are already in its table.
    pub async fn drop_present<R: SourcedRow>(
        &mut self,
        client: &clickhouse::Client,
        batch: &mut Batch<R>,
    ) -> Result<usize, clickhouse::error::Error> {
        if batch.offsets.keys().any(|p| !self.high.contains_key(p)) {
            let found: Vec<(i32, i64)> = client
                .query(&format!("SELECT kafka_partition, max(kafka_offset) FROM {} GROUP BY kafka_partition", R::TABLE))
                .fetch_all()
                .await?;
            for &partition in batch.offsets.keys() {
                let high = found.iter().find(|(p, _)| *p == partition).map_or(-1, |(_, o)| *o);
                self.high.entry(partition).or_insert(high);
            }
        }
        let mut present: HashSet<(i32, i64)> = HashSet::new();
        for (&partition, &(first, last)) in &batch.offsets {
            let high = self.high.get(&partition).copied().unwrap_or(-1);
            if first > high {
                continue;
            }
            let rows: Vec<i64> = client
                .query(&format!(
                    "SELECT kafka_offset FROM {} WHERE kafka_partition = ? AND kafka_offset >= ? AND kafka_offset <= ?",
                    R::TABLE
                ))
                .bind(partition)
                .bind(first)
                .bind(last.min(high))
                .fetch_all()
                .await?;
            present.extend(rows.into_iter().map(|o| (partition, o)));
        }
        if present.is_empty() {
            return Ok(0);
        }
        let before = batch.rows.len();
        batch.rows.retain(|r| {
            let s = r.source();
            !present.contains(&(s.partition, s.offset))
        });
        Ok(before - batch.rows.len())
    }
}
