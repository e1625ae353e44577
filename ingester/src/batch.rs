//! A table's pending rows, with the dead letters and Kafka offsets they cover.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::IngestConfig;
use crate::dead_letter::DeadLetter;
use crate::rows::SourcedRow;

/// Rows waiting for one insert into one table, from one topic.
#[derive(Debug)]
pub struct Batch<R> {
    pub topic: String,
    pub rows: Vec<R>,
    /// Bytes the rows keep outside themselves: the assertions' RowBinary
    /// ([`crate::assertion_row`]). Kept, like `rows`, from one batch to the next, so a
    /// running ingester does not allocate for them.
    pub arena: Vec<u8>,
    pub dead_letters: Vec<DeadLetter>,
    /// Partition → (first, last) offset of every record taken into this batch, rows and
    /// dead letters alike; committing `last + 1` after the flush covers them all.
    pub offsets: BTreeMap<i32, (i64, i64)>,
    /// Kafka payload bytes of the rows and dead letters: what bounds a batch's memory
    /// whatever the records' size (an assertion takes about its payload plus its row, the
    /// other tables' rows a few times their payload).
    pub bytes: usize,
    opened: Option<Instant>,
}

impl<R: SourcedRow> Batch<R> {
    pub fn new(topic: String) -> Self {
        Batch { topic, rows: Vec::new(), arena: Vec::new(), dead_letters: Vec::new(), offsets: BTreeMap::new(), bytes: 0, opened: None }
    }

    fn note(&mut self, partition: i32, offset: i64) {
        self.opened.get_or_insert_with(Instant::now);
        self.offsets
            .entry(partition)
            .and_modify(|(first, last)| {
                *first = (*first).min(offset);
                *last = (*last).max(offset);
            })
            .or_insert((offset, offset));
    }

    /// Adds a row read from a Kafka payload of `bytes`.
    pub fn push(&mut self, row: R, bytes: usize) {
        let source = row.source();
        self.note(source.partition, source.offset);
        self.rows.push(row);
        self.bytes += bytes;
    }

    /// Adds a dead letter; it counts towards the bounds like a row, so a flood of
    /// undecodable records cannot grow a batch without end.
    pub fn push_dead_letter(&mut self, letter: DeadLetter) {
        self.note(letter.partition, letter.offset);
        self.bytes += letter.payload.len();
        self.dead_letters.push(letter);
    }

    /// Rows and dead letters.
    fn records(&self) -> usize {
        self.rows.len() + self.dead_letters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Whether the batch must be written: it is full, or its oldest record has waited
    /// `max_delay`.
    pub fn is_due(&self, limits: &IngestConfig) -> bool {
        !self.is_empty() && (self.is_full(limits) || self.deadline(limits.max_delay).is_some_and(|d| d <= Instant::now()))
    }

    /// It holds `max_rows` records (rows and dead letters) or `max_bytes` of payload.
    pub fn is_full(&self, limits: &IngestConfig) -> bool {
        self.records() >= limits.max_rows || self.bytes >= limits.max_bytes
    }

    /// When this batch must be flushed by age, if it holds anything.
    pub fn deadline(&self, max_delay: Duration) -> Option<Instant> {
        self.opened.map(|t| t + max_delay)
    }

    /// Drops everything taken from `topic`'s `partition`, if this is that topic's batch.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        if self.topic == topic {
            self.forget_partition(partition);
        }
    }

    /// Drops everything taken from `partition`: it was revoked, its new owner reads it again.
    /// The arena keeps the bytes of the rows dropped until the batch is cleared.
    pub fn forget_partition(&mut self, partition: i32) {
        let before = self.records().max(1);
        self.rows.retain(|r| r.source().partition != partition);
        self.dead_letters.retain(|d| d.partition != partition);
        // Sizes are not kept per record: the rest keeps its share (only a threshold reads it).
        self.bytes = self.bytes * self.records() / before;
        self.offsets.remove(&partition);
        if self.offsets.is_empty() {
            self.opened = None;
        }
    }

    /// Empties the batch after a successful flush.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.arena.clear();
        self.dead_letters.clear();
        self.offsets.clear();
        self.bytes = 0;
        self.opened = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::TestRow as Row;

    fn limits(max_rows: usize, max_bytes: usize) -> IngestConfig {
        IngestConfig { max_rows, max_bytes, max_delay: Duration::from_secs(3600), ..IngestConfig::default() }
    }

    #[test]
    fn a_batch_is_due_at_its_row_or_byte_bound_whichever_comes_first() {
        let mut batch = Batch::new("t".into());
        for offset in 0..9 {
            batch.push(Row { partition: offset as i32 % 2, offset }, 100);
        }
        assert!(!batch.is_due(&limits(10, 1000)));
        batch.push(Row { partition: 0, offset: 9 }, 100);
        assert!(batch.is_due(&limits(10, 10_000)), "10 rows");
        assert!(batch.is_due(&limits(1000, 1000)), "1000 bytes");
        assert!(!batch.is_due(&limits(1000, 1001)));

        // A revoked partition takes its share of the bytes with it.
        batch.forget_partition(1);
        assert_eq!((batch.rows.len(), batch.bytes), (6, 600));
        batch.clear();
        assert_eq!(batch.bytes, 0);
        assert!(!batch.is_due(&limits(1, 1)), "an empty batch is never due");
    }

    fn letter(partition: i32, offset: i64, bytes: usize) -> DeadLetter {
        DeadLetter { key: None, payload: vec![0; bytes], reason: "truncated", error: String::new(), topic: "t".into(), partition, offset }
    }

    #[test]
    fn dead_letters_count_towards_the_bounds() {
        let mut batch: Batch<Row> = Batch::new("t".into());
        for offset in 0..9 {
            batch.push_dead_letter(letter(0, offset, 100));
        }
        assert!(!batch.is_due(&limits(10, 10_000)));
        batch.push_dead_letter(letter(1, 9, 100));
        assert!(batch.is_due(&limits(10, 10_000)), "10 dead letters");
        assert!(batch.is_due(&limits(1000, 1000)), "1000 bytes of dead letters");

        batch.push(Row { partition: 1, offset: 10 }, 100);
        batch.forget_partition(1);
        assert_eq!((batch.records(), batch.bytes), (9, 900));
    }
}
