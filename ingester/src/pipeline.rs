//! The ingest loop: consume, decode, batch per table, insert, then commit.
//!
//! One task owns the consumer and awaits every insert inline, so no insert is in flight
//! while the consumer is polled: a rebalance callback (which runs inside `recv`) can never
//! race an insert of a partition it takes away.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use specaudit_core::codec::{Codec, Record};
use specaudit_core::kafka::{client_config, Topics};
use specaudit_core::record::{AlarmEvent, Assertion, Heartbeat, SpecVersion};
use tokio_util::sync::CancellationToken;

use crate::batch::Batch;
use crate::config::IngesterConfig;
use crate::dead_letter::{self, DeadLetter};
use crate::progress::Progress;
use crate::rows::{AgentRow, AlarmRow, AssertionRow, DeadLetterRow, Source, SourcedRow, SpecVersionRow};

/// How long a SIGTERM waits for the pending batches to be written and committed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Partitions this consumer owns, kept current by the rebalance callbacks.
#[derive(Debug, Default)]
struct Ownership {
    assigned: HashSet<(String, i32)>,
    /// Revoked since the loop last looked: their pending rows must be dropped.
    revoked: Vec<(String, i32)>,
}

#[derive(Debug, Default, Clone)]
struct IngestContext(Arc<Mutex<Ownership>>);

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut own = self.0.lock().unwrap_or_else(|e| e.into_inner());
            for e in list.elements() {
                let key = (e.topic().to_owned(), e.partition());
                own.assigned.remove(&key);
                own.revoked.push(key);
            }
            tracing::info!(partitions = list.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let mut own = self.0.lock().unwrap_or_else(|e| e.into_inner());
                for e in list.elements() {
                    own.assigned.insert((e.topic().to_owned(), e.partition()));
                }
                tracing::info!(partitions = list.count(), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// One table: its pending batch and what is known of its progress.
struct Table<R> {
    batch: Batch<R>,
    progress: Progress,
}

impl<R: SourcedRow> Table<R> {
    fn new(topic: &str) -> Self {
        Table { batch: Batch::new(topic.to_owned()), progress: Progress::default() }
    }

    fn forget(&mut self, topic: &str, partition: i32) {
        if self.batch.topic == topic {
            self.batch.forget_partition(partition);
            self.progress.forget(partition);
        }
    }
}

struct Tables {
    assertions: Table<AssertionRow>,
    spec_versions: Table<SpecVersionRow>,
    agents: Table<AgentRow>,
    alarms: Table<AlarmRow>,
    dead_letters: Table<DeadLetterRow>,
}

/// The decoders, built once.
struct Codecs {
    assertion: Codec<Assertion>,
    heartbeat: Codec<Heartbeat>,
    spec_version: Codec<SpecVersion>,
    alarm: Codec<AlarmEvent>,
}

/// What a flush needs.
struct Io {
    consumer: StreamConsumer<IngestContext>,
    client: clickhouse::Client,
    producer: FutureProducer,
    topics: Topics,
    config: IngesterConfig,
}

/// The flush gave up because the service is stopping; nothing was committed.
#[derive(Debug)]
struct Stopped;

fn decode_into<T: Record, R: SourcedRow>(
    codec: &Codec<T>,
    message: &BorrowedMessage<'_>,
    batch: &mut Batch<R>,
    row: impl FnOnce(T, Source) -> R,
) {
    let source = Source { partition: message.partition(), offset: message.offset() };
    match codec.decode(message.payload().unwrap_or_default()) {
        Ok(record) => {
            batch.push(row(record, source));
            metrics::counter!("specaudit_ingester_records_total", "topic" => batch.topic.clone(), "result" => "ok").increment(1);
        }
        Err(error) => {
            tracing::warn!(topic = message.topic(), partition = source.partition, offset = source.offset, %error, "dead-lettering undecodable record");
            metrics::counter!("specaudit_ingester_records_total", "topic" => batch.topic.clone(), "result" => "dead_letter").increment(1);
            metrics::counter!("specaudit_ingester_dead_letters_total", "reason" => error.kind()).increment(1);
            batch.push_dead_letter(DeadLetter::new(message, error.kind(), error.to_string()));
        }
    }
}

impl Tables {
    fn new(topics: &Topics) -> Self {
        Tables {
            assertions: Table::new(&topics.assertions),
            spec_versions: Table::new(&topics.spec_history),
            agents: Table::new(&topics.heartbeats),
            alarms: Table::new(&topics.alarms),
            dead_letters: Table::new(&topics.dead_letters),
        }
    }

    fn take(&mut self, codecs: &Codecs, message: &BorrowedMessage<'_>) {
        let topic = message.topic();
        if topic == self.assertions.batch.topic {
            decode_into(&codecs.assertion, message, &mut self.assertions.batch, AssertionRow::new);
        } else if topic == self.agents.batch.topic {
            decode_into(&codecs.heartbeat, message, &mut self.agents.batch, AgentRow::new);
        } else if topic == self.spec_versions.batch.topic {
            decode_into(&codecs.spec_version, message, &mut self.spec_versions.batch, SpecVersionRow::new);
        } else if topic == self.alarms.batch.topic {
            decode_into(&codecs.alarm, message, &mut self.alarms.batch, AlarmRow::new);
        } else if topic == self.dead_letters.batch.topic {
            let source = Source { partition: message.partition(), offset: message.offset() };
            self.dead_letters.batch.push(dead_letter::row(message, source));
        }
    }

    fn forget(&mut self, topic: &str, partition: i32) {
        self.assertions.forget(topic, partition);
        self.spec_versions.forget(topic, partition);
        self.agents.forget(topic, partition);
        self.alarms.forget(topic, partition);
        self.dead_letters.forget(topic, partition);
    }

    fn earliest_deadline(&self, max_delay: Duration) -> Option<Instant> {
        [
            self.assertions.batch.deadline(max_delay),
            self.spec_versions.batch.deadline(max_delay),
            self.agents.batch.deadline(max_delay),
            self.alarms.batch.deadline(max_delay),
            self.dead_letters.batch.deadline(max_delay),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Flushes the batches that are full, past their deadline, or all of them (`force`).
    async fn flush(&mut self, io: &Io, force: bool, stop: &CancellationToken) -> Result<(), Stopped> {
        flush_if_due(io, &mut self.assertions, force, stop).await?;
        flush_if_due(io, &mut self.spec_versions, force, stop).await?;
        flush_if_due(io, &mut self.agents, force, stop).await?;
        flush_if_due(io, &mut self.alarms, force, stop).await?;
        flush_if_due(io, &mut self.dead_letters, force, stop).await
    }
}

async fn flush_if_due<R: SourcedRow>(io: &Io, table: &mut Table<R>, force: bool, stop: &CancellationToken) -> Result<(), Stopped> {
    let batch = &table.batch;
    let due = batch.rows.len() >= io.config.ingest.max_rows
        || batch.deadline(io.config.ingest.max_delay).is_some_and(|d| d <= Instant::now());
    if batch.is_empty() || !(force || due) {
        return Ok(());
    }
    // A forced flush is the drain before exit: its commit must land before the process ends.
    let mode = if force { CommitMode::Sync } else { CommitMode::Async };
    flush(io, table, mode, stop).await
}

/// Waits before the next try; `Err` when the service stops meanwhile.
async fn backoff(delay: &mut Duration, max: Duration, stop: &CancellationToken) -> Result<(), Stopped> {
    tokio::select! {
        _ = tokio::time::sleep(*delay) => {}
        _ = stop.cancelled() => return Err(Stopped),
    }
    *delay = (*delay * 2).min(max);
    Ok(())
}

async fn insert<R: SourcedRow>(client: &clickhouse::Client, rows: &[R]) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<R>(R::TABLE).await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await
}

/// Writes one batch: dead letters to their topic, rows not yet present to ClickHouse, then
/// commits the offsets. Retries transport failures with backoff until `stop`.
async fn flush<R: SourcedRow>(
    io: &Io,
    table: &mut Table<R>,
    mode: CommitMode,
    stop: &CancellationToken,
) -> Result<(), Stopped> {
    let Table { batch, progress } = table;
    let ingest = &io.config.ingest;
    let span = tracing::info_span!("flush", table = R::TABLE, rows = batch.rows.len(), dead_letters = batch.dead_letters.len());
    let _enter = span.enter();

    let mut delay = ingest.retry_backoff;
    for letter in &batch.dead_letters {
        while let Err(error) = dead_letter::send(&io.producer, &io.topics.dead_letters, letter).await {
            tracing::warn!(%error, "cannot send dead letter, retrying");
            backoff(&mut delay, ingest.retry_max_backoff, stop).await?;
        }
    }

    let mut delay = ingest.retry_backoff;
    loop {
        match progress.drop_present(&io.client, batch).await {
            Ok(0) => {}
            Ok(skipped) => {
                tracing::info!(skipped, "rows already in clickhouse, not inserted again");
                metrics::counter!("specaudit_ingester_duplicates_skipped_total", "table" => R::TABLE).increment(skipped as u64);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read progress from clickhouse, retrying");
                backoff(&mut delay, ingest.retry_max_backoff, stop).await?;
                continue;
            }
        }
        if batch.rows.is_empty() {
            break;
        }
        let started = Instant::now();
        match insert(&io.client, &batch.rows).await {
            Ok(()) => {
                metrics::histogram!("specaudit_ingester_insert_seconds", "table" => R::TABLE).record(started.elapsed().as_secs_f64());
                metrics::histogram!("specaudit_ingester_batch_rows", "table" => R::TABLE).record(batch.rows.len() as f64);
                metrics::counter!("specaudit_ingester_rows_inserted_total", "table" => R::TABLE).increment(batch.rows.len() as u64);
                break;
            }
            Err(error) => {
                // The server may or may not have written the rows: check before retrying.
                progress.mark_unclear(batch);
                metrics::counter!("specaudit_ingester_insert_failures_total", "table" => R::TABLE).increment(1);
                tracing::warn!(%error, "insert failed, retrying");
                backoff(&mut delay, ingest.retry_max_backoff, stop).await?;
            }
        }
    }

    let mut offsets = TopicPartitionList::new();
    for (&partition, &(_, last)) in &batch.offsets {
        // Adding a valid offset to a fresh list cannot fail.
        let _ = offsets.add_partition_offset(&batch.topic, partition, Offset::Offset(last + 1));
    }
    if let Err(error) = io.consumer.commit(&offsets, mode) {
        // The rows are in ClickHouse; a replay after this is recognised and skipped.
        tracing::warn!(%error, "offset commit failed");
    }
    batch.clear();
    Ok(())
}

/// Consumes until `shutdown`, then drains the pending batches within [`DRAIN_TIMEOUT`].
pub async fn run(config: IngesterConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topics = Topics::new(&config.kafka.topic_prefix);
    let context = IngestContext::default();
    let consumer: StreamConsumer<IngestContext> = client_config(&config.kafka)
        .set("group.id", &config.ingest.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Bounds what librdkafka prefetches, so memory stays flat while ClickHouse is down.
        .set("queued.max.messages.kbytes", "32768")
        .create_with_context(context.clone())
        .context("failed to create the kafka consumer")?;
    let names = [&topics.assertions, &topics.heartbeats, &topics.spec_history, &topics.alarms, &topics.dead_letters]
        .map(String::clone);
    consumer.subscribe(&names.each_ref().map(String::as_str)).context("failed to subscribe")?;
    let producer: FutureProducer = client_config(&config.kafka)
        .set("enable.idempotence", "true")
        .create()
        .context("failed to create the dead-letter producer")?;
    let io = Io { consumer, client: specaudit_core::clickhouse::client(&config.clickhouse), producer, topics, config };
    let codecs = Codecs {
        assertion: Codec::new(),
        heartbeat: Codec::new(),
        spec_version: Codec::new(),
        alarm: Codec::new(),
    };
    let mut tables = Tables::new(&io.topics);
    tracing::info!(topics = ?names, group = %io.config.ingest.group_id, "ingesting");

    let apply_revocations = |tables: &mut Tables| {
        let revoked = std::mem::take(&mut context.0.lock().unwrap_or_else(|e| e.into_inner()).revoked);
        for (topic, partition) in revoked {
            tables.forget(&topic, partition);
        }
    };
    let owns = |message: &BorrowedMessage<'_>| {
        let own = context.0.lock().unwrap_or_else(|e| e.into_inner());
        own.assigned.contains(&(message.topic().to_owned(), message.partition()))
    };

    loop {
        apply_revocations(&mut tables);
        let deadline = tables.earliest_deadline(io.config.ingest.max_delay);
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let wake = deadline.map_or(far, tokio::time::Instant::from_std);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => {}
            received = io.consumer.recv() => match received {
                Ok(message) => {
                    apply_revocations(&mut tables);
                    if owns(&message) {
                        tables.take(&codecs, &message);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "kafka consume error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
        if tables.flush(&io, false, &shutdown).await.is_err() {
            break;
        }
    }

    tracing::info!("draining");
    apply_revocations(&mut tables);
    let drain = CancellationToken::new();
    let guard = drain.clone();
    tokio::spawn(async move {
        tokio::time::sleep(DRAIN_TIMEOUT).await;
        guard.cancel();
    });
    match tables.flush(&io, true, &drain).await {
        Ok(()) => tracing::info!("drained"),
        Err(Stopped) => tracing::warn!("drain timed out; uncommitted records will be read again and recognised"),
    }
    Ok(())
}
