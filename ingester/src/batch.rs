//! A table's pending rows, with the dead letters and Kafka offsets they cover.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::dead_letter::DeadLetter;
use crate::rows::SourcedRow;

/// Rows waiting for one insert into one table, from one topic.
#[derive(Debug)]
pub struct Batch<R> {
    pub topic: String,
    pub rows: Vec<R>,
    pub dead_letters: Vec<DeadLetter>,
    /// Partition → (first, last) offset of every record taken into this batch, rows and
    /// dead letters alike; committing `last + 1` after the flush covers them all.
    pub offsets: BTreeMap<i32, (i64, i64)>,
    opened: Option<Instant>,
}

impl<R: SourcedRow> Batch<R> {
    pub fn new(topic: String) -> Self {
        Batch { topic, rows: Vec::new(), dead_letters: Vec::new(), offsets: BTreeMap::new(), opened: None }
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

    pub fn push(&mut self, row: R) {
        let source = row.source();
        self.note(source.partition, source.offset);
        self.rows.push(row);
    }

    pub fn push_dead_letter(&mut self, letter: DeadLetter) {
        self.note(letter.partition, letter.offset);
        self.dead_letters.push(letter);
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Whether the batch must be written: it holds `max_rows`, or its oldest record has
    /// waited `max_delay`.
    pub fn is_due(&self, max_rows: usize, max_delay: Duration) -> bool {
        !self.is_empty() && (self.rows.len() >= max_rows || self.deadline(max_delay).is_some_and(|d| d <= Instant::now()))
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
    pub fn forget_partition(&mut self, partition: i32) {
        self.rows.retain(|r| r.source().partition != partition);
        self.dead_letters.retain(|d| d.partition != partition);
        self.offsets.remove(&partition);
        if self.offsets.is_empty() {
            self.opened = None;
        }
    }

    /// Empties the batch after a successful flush.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.dead_letters.clear();
        self.offsets.clear();
        self.opened = None;
    }
}
