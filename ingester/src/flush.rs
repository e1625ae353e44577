//! Writing one table's batch: its dead letters to Kafka, its rows to ClickHouse (only those
//! not there yet), its rollup, then the commit of its offsets. Each step is safe to repeat,
//! so a flush that fails part way is simply run again later.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use specaudit_core::kafka::Topics;

use crate::batch::Batch;
use crate::config::{IngestConfig, IngesterConfig};
use crate::consumer::IngestContext;
use crate::dead_letter::{self, DeadLetter};
use crate::insert_error::{classify, Failure};
use crate::progress::Progress;
use crate::rollup;
use crate::rows::SourcedRow;

/// Longest wait for ClickHouse to take one chunk of an insert.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for ClickHouse to answer an insert: far below `max.poll.interval.ms`, so
/// the loop is back to polling (and serving rebalances) long before the group gives up on it.
pub const END_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a progress read (the offsets a table or the rollup already holds).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// `read`, given up after [`READ_TIMEOUT`]: a read changes nothing, so it is safe to drop.
async fn bounded<T>(read: impl std::future::Future<Output = Result<T, clickhouse::error::Error>>) -> Result<T, clickhouse::error::Error> {
    tokio::time::timeout(READ_TIMEOUT, read).await.unwrap_or(Err(clickhouse::error::Error::TimedOut))
}

/// The flush could not finish now; it is safe to run it again later.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(String);

impl Transient {
    fn new(what: &str, error: impl std::fmt::Display) -> Self {
        Transient(format!("{what}: {error}"))
    }
}

/// What a flush needs.
#[allow(missing_debug_implementations)] // the rdkafka clients are not Debug
pub struct Io {
    pub consumer: StreamConsumer<IngestContext>,
    pub client: clickhouse::Client,
    pub producer: FutureProducer,
    pub topics: Topics,
    pub config: IngesterConfig,
}

/// One table's writer: the batch it is writing and what is known of its progress.
#[derive(Debug)]
pub struct Table<R> {
    pub batch: Batch<R>,
    progress: Progress,
    /// Partition → rollup mark, for the table that feeds the rollup (`None` otherwise).
    rollup: Option<HashMap<i32, i64>>,
    /// The batch's rows are all in ClickHouse; what is left is the rollup and the commit.
    stored: bool,
}

impl<R: SourcedRow> Table<R> {
    pub fn new(topic: &str, rolled_up: bool) -> Self {
        Table {
            batch: Batch::new(topic.to_owned()),
            progress: Progress::default(),
            rollup: rolled_up.then(HashMap::new),
            stored: false,
        }
    }

    /// Drops a revoked partition's pending records and what is known of its progress.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        if self.batch.topic == topic {
            self.batch.forget_partition(partition);
            if self.batch.is_empty() {
                // Nothing of it is left to roll up or commit; the next batch starts unstored.
                self.stored = false;
            }
            self.progress.forget(partition);
            if let Some(marks) = &mut self.rollup {
                marks.remove(&partition);
            }
        }
    }

    /// Takes `intake`'s batch to write when this writer is idle and the batch is due (any
    /// batch that is not empty, with `force`), leaving it the emptied batch to fill.
    pub fn load(&mut self, intake: &mut Batch<R>, limits: &IngestConfig, force: bool) {
        if self.batch.is_empty() && !intake.is_empty() && (force || intake.is_due(limits)) {
            std::mem::swap(&mut self.batch, intake);
            self.stored = false;
        }
    }

    /// Writes the batch and commits its offsets (`Sync` when the process is about to end).
    pub async fn flush(&mut self, io: &Io, mode: CommitMode) -> Result<(), Transient> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let span = tracing::info_span!("flush", table = R::TABLE, rows = self.batch.rows.len());
        let _enter = span.enter();
        send_dead_letters(io, &mut self.batch.dead_letters).await?;
        if !self.stored {
            self.store(io).await?;
            self.stored = true;
        }
        if let Some(marks) = &mut self.rollup {
            roll_up(&io.client, &self.batch, marks, rollup::Layout::of(&io.config.clickhouse)).await?;
        }
        commit(&io.consumer, &self.batch, mode);
        self.batch.clear();
        self.stored = false;
        Ok(())
    }

    /// Inserts the rows not in ClickHouse yet. Rows ClickHouse refuses as bad data are found
    /// by splitting the insert in halves, and go to the dead letters instead.
    async fn store(&mut self, io: &Io) -> Result<(), Transient> {
        let Table { batch, progress, .. } = self;
        // Ranges of `batch.rows` still to insert; a refused range is split in two.
        let mut work = Vec::with_capacity(1);
        work.push(0..batch.rows.len());
        let mut refused: Vec<(usize, String)> = Vec::new();
        while let Some(range) = work.pop() {
            let rows = &batch.rows[range.clone()];
            let present = bounded(progress.present(&io.client, rows)).await.map_err(|e| Transient::new("cannot read progress", e))?;
            if !present.is_empty() {
                tracing::info!(skipped = present.len(), "rows already in clickhouse, not inserted again");
                metrics::counter!("specaudit_ingester_duplicates_skipped_total", "table" => R::TABLE).increment(present.len() as u64);
            }
            let missing: Vec<&R> = rows
                .iter()
                .filter(|r| {
                    let s = r.source();
                    !present.contains(&(s.partition, s.offset))
                })
                .collect();
            let started = Instant::now();
            match insert(&io.client, &missing, &batch.arena).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::histogram!("specaudit_ingester_insert_seconds", "table" => R::TABLE).record(started.elapsed().as_secs_f64());
                    metrics::histogram!("specaudit_ingester_batch_rows", "table" => R::TABLE).record(n as f64);
                    metrics::counter!("specaudit_ingester_rows_inserted_total", "table" => R::TABLE).increment(n as u64);
                }
                Err(error) => {
                    // The server may have written some of the rows: check before the next try.
                    progress.mark_unclear(rows);
                    metrics::counter!("specaudit_ingester_insert_failures_total", "table" => R::TABLE).increment(1);
                    match classify(&error) {
                        Failure::Transient => return Err(Transient::new("insert failed", error)),
                        Failure::Rejected if range.len() == 1 => refused.push((range.start, error.to_string())),
                        Failure::Rejected => {
                            tracing::warn!(%error, rows = range.len(), "clickhouse refused rows, splitting the insert to find them");
                            let mid = range.start + range.len() / 2;
                            work.push(mid..range.end);
                            work.push(range.start..mid);
                        }
                    }
                }
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        let mut letters = Vec::with_capacity(refused.len());
        for (index, error) in &refused {
            let source = batch.rows[*index].source();
            let letter = dead_letter::refused(&io.config.kafka, &batch.topic, source, error.clone())
                .await
                .map_err(|e| Transient::new("cannot read a refused record back from kafka", e))?;
            letters.push(letter);
        }
        send_dead_letters(io, &mut letters).await?;
        let refused: HashSet<usize> = refused.into_iter().map(|(i, _)| i).collect();
        let mut index = 0;
        batch.rows.retain(|_| {
            index += 1;
            !refused.contains(&(index - 1))
        });
        Ok(())
    }
}

/// One insert of `rows`; returns how many were written.
async fn insert<R: SourcedRow>(client: &clickhouse::Client, rows: &[&R], arena: &[u8]) -> Result<usize, clickhouse::error::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    R::insert(client, rows, arena).await?;
    Ok(rows.len())
}

/// Sends dead letters and waits for Kafka's acknowledgements; the acknowledged ones are
/// removed from `letters`, so a retry sends only the rest.
async fn send_dead_letters(io: &Io, letters: &mut Vec<DeadLetter>) -> Result<(), Transient> {
    if letters.is_empty() {
        return Ok(());
    }
    let mut sends = Vec::with_capacity(letters.len());
    for letter in letters.iter() {
        sends.push(dead_letter::send(&io.producer, &io.topics.dead_letters, letter));
    }
    let results = futures::future::join_all(sends).await;
    let mut first_error = None;
    let mut acked = results.iter();
    letters.retain(|letter| match acked.next() {
        Some(Ok(())) => {
            metrics::counter!("specaudit_ingester_dead_letters_total", "reason" => letter.reason).increment(1);
            false
        }
        Some(Err(error)) => {
            first_error.get_or_insert_with(|| error.to_string());
            true
        }
        None => true,
    });
    match first_error {
        None => Ok(()),
        Some(error) => Err(Transient::new("cannot send dead letters", error)),
    }
}

/// Writes the rollup of the batch's rows at or past each partition's rollup mark.
async fn roll_up<R: SourcedRow>(
    client: &clickhouse::Client,
    batch: &Batch<R>,
    marks: &mut HashMap<i32, i64>,
    layout: rollup::Layout,
) -> Result<(), Transient> {
    if batch.offsets.keys().any(|p| !marks.contains_key(p)) {
        let stored = bounded(rollup::marks(client)).await.map_err(|e| Transient::new("cannot read rollup progress", e))?;
        for &partition in batch.offsets.keys() {
            marks.entry(partition).or_insert_with(|| stored.get(&partition).copied().unwrap_or(0));
        }
    }
    for insert in rollup::inserts(batch, marks, layout) {
        let started = Instant::now();
        match rollup::write(client, &insert, layout).await {
            Ok(()) => {
                metrics::histogram!("specaudit_ingester_insert_seconds", "table" => rollup::TABLE).record(started.elapsed().as_secs_f64());
                marks.extend(insert.marks.iter().copied());
            }
            Err(error) => {
                // Whether it landed is unknown: learn the marks again before the next try.
                for (partition, _) in &insert.marks {
                    marks.remove(partition);
                }
                metrics::counter!("specaudit_ingester_insert_failures_total", "table" => rollup::TABLE).increment(1);
                return Err(Transient::new("rollup insert failed", error));
            }
        }
    }
    Ok(())
}

fn commit<R: SourcedRow>(consumer: &StreamConsumer<IngestContext>, batch: &Batch<R>, mode: CommitMode) {
    let mut offsets = TopicPartitionList::new();
    for (&partition, &(_, last)) in &batch.offsets {
        // Adding a valid offset to a fresh list cannot fail.
        let _ = offsets.add_partition_offset(&batch.topic, partition, Offset::Offset(last + 1));
    }
    if let Err(error) = consumer.commit(&offsets, mode) {
        // The rows are in ClickHouse; a replay after this is recognised and skipped.
        tracing::warn!(%error, "offset commit failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::TestRow as Row;

    fn batch(rows: &[(i32, i64)]) -> Batch<Row> {
        let mut batch = Batch::new("t".into());
        for &(partition, offset) in rows {
            batch.push(Row { partition, offset }, 10);
        }
        batch
    }

    #[test]
    fn a_batch_emptied_by_a_revocation_does_not_pass_its_stored_mark_on() {
        // The batch's rows are in ClickHouse and its rollup failed; then a revocation
        // takes its partitions away.
        let mut table: Table<Row> = Table::new("t", true);
        table.batch = batch(&[(0, 0), (1, 0)]);
        table.stored = true;
        table.forget("t", 0);
        assert!(table.stored, "the rows left are still stored");
        table.forget("t", 1);

        let mut intake = batch(&[(2, 7)]);
        table.load(&mut intake, &IngestConfig::default(), true);
        assert_eq!(table.batch.rows.len(), 1);
        assert!(!table.stored, "the next batch's rows must be inserted, not skipped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_progress_read_from_a_server_that_never_answers_is_given_up() {
        // Takes connections and never answers, as a hung server does.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = clickhouse::Client::default().with_url(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let mut progress = Progress::default();
        let read = bounded(progress.present(&client, &[Row { partition: 0, offset: 0 }])).await;
        assert!(matches!(read, Err(clickhouse::error::Error::TimedOut)), "{read:?}");
    }
}
