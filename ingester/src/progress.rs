//! Progress lives where the data lives: what is already in ClickHouse is learned from the
//! `kafka_partition` / `kafka_offset` columns of the rows themselves.
//!
//! For every (table, partition) the ingester knows `high`: an offset at or below which rows
//! may already be in the table (found by asking ClickHouse after an assignment, raised after
//! an insert whose result is unclear). Rows above `high` cannot be in the table yet and are
//! inserted directly; rows at or below it are first checked one by one against the offsets
//! present, and only the missing ones are inserted. The check is exact per row, so an
//! insert that landed in part (several parts for several months, a cut stream) is
//! completed, never doubled.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::rows::SourcedRow;

/// Partition → (first, last) offset of `rows`.
pub fn ranges<R: SourcedRow>(rows: &[R]) -> BTreeMap<i32, (i64, i64)> {
    fn widen(out: &mut BTreeMap<i32, (i64, i64)>, (partition, first, last): (i32, i64, i64)) {
        out.entry(partition)
            .and_modify(|(f, l): &mut (i64, i64)| {
                *f = (*f).min(first);
                *l = (*l).max(last);
            })
            .or_insert((first, last));
    }
    let mut out = BTreeMap::new();
    // Rows come in long runs of one partition (Kafka hands them out a fetch at a time):
    // the map is touched once per run.
    let mut run: Option<(i32, i64, i64)> = None;
    for row in rows {
        let s = row.source();
        match &mut run {
            Some((partition, first, last)) if *partition == s.partition => {
                *first = (*first).min(s.offset);
                *last = (*last).max(s.offset);
            }
            _ => {
                if let Some(done) = run.replace((s.partition, s.offset, s.offset)) {
                    widen(&mut out, done);
                }
            }
        }
    }
    if let Some(done) = run {
        widen(&mut out, done);
    }
    out
}

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

    /// After an insert whose outcome is unknown, every one of `rows` may be in the table.
    pub fn mark_unclear<R: SourcedRow>(&mut self, rows: &[R]) {
        for (partition, (_, last)) in ranges(rows) {
            let high = self.high.entry(partition).or_insert(-1);
            *high = (*high).max(last);
        }
    }

    /// The (partition, offset) of those `rows` that are already in their table.
    pub async fn present<R: SourcedRow>(
        &mut self,
        client: &clickhouse::Client,
        rows: &[R],
    ) -> Result<HashSet<(i32, i64)>, clickhouse::error::Error> {
        let ranges = ranges(rows);
        if ranges.keys().any(|p| !self.high.contains_key(p)) {
            let found: Vec<(i32, i64)> = client
                .query(&format!("SELECT kafka_partition, max(kafka_offset) FROM {} GROUP BY kafka_partition", R::TABLE))
                .fetch_all()
                .await?;
            for &partition in ranges.keys() {
                let high = found.iter().find(|(p, _)| *p == partition).map_or(-1, |(_, o)| *o);
                self.high.entry(partition).or_insert(high);
            }
        }
        let mut present = HashSet::new();
        for (&partition, &(first, last)) in &ranges {
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
        Ok(present)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::TestRow;

    #[test]
    fn ranges_span_each_partition_whatever_the_order() {
        let rows: Vec<TestRow> = [(0, 5), (0, 6), (1, 9), (1, 3), (0, 2), (2, 7), (1, 4), (0, 8)]
            .into_iter()
            .map(|(partition, offset)| TestRow { partition, offset })
            .collect();
        let expected = BTreeMap::from([(0, (2, 8)), (1, (3, 9)), (2, (7, 7))]);
        assert_eq!(ranges(&rows), expected);
        assert!(ranges::<TestRow>(&[]).is_empty());
    }
}
