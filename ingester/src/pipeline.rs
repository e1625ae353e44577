//! The ingest loop: consume, decode, batch per table, flush, commit.
//!
//! One task owns the consumer and awaits every flush inline, so no insert is in flight
//! while the consumer is polled: a rebalance callback (which runs inside `recv`) can never
//! race an insert of a partition it takes away. When a flush fails for a reason that
//! passes (ClickHouse down, Kafka unreachable), the loop pauses every assigned partition
//! and keeps polling — so the group keeps it as a member and rebalances complete — and
//! tries the flush again after a backoff that doubles up to `retry_max_backoff`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::CommitMode;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use specaudit_core::codec::{Codec, Record};
use specaudit_core::kafka::{client_config, Topics};
use specaudit_core::record::{AlarmEvent, Assertion, Heartbeat, SpecVersion};
use tokio_util::sync::CancellationToken;

use crate::batch::Batch;
use crate::config::IngesterConfig;
use crate::consumer::{self, IngestContext};
use crate::dead_letter::{self, DeadLetter};
use crate::flush::{Io, Table, Transient};
use crate::rows::{AgentRow, AlarmRow, AssertionRow, DeadLetterRow, Source, SourcedRow, SpecVersionRow};

/// How long a SIGTERM waits for the pending batches to be written and committed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

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
            metrics::counter!("specaudit_ingester_records_total", "table" => R::TABLE, "result" => "ok").increment(1);
        }
        Err(error) => {
            tracing::warn!(topic = message.topic(), partition = source.partition, offset = source.offset, %error, "dead-lettering undecodable record");
            metrics::counter!("specaudit_ingester_records_total", "table" => R::TABLE, "result" => "dead_letter").increment(1);
            batch.push_dead_letter(DeadLetter::new(message, error.kind(), error.to_string()));
        }
    }
}

impl Tables {
    fn new(topics: &Topics) -> Self {
        Tables {
            assertions: Table::new(&topics.assertions, true),
            spec_versions: Table::new(&topics.spec_history, false),
            agents: Table::new(&topics.heartbeats, false),
            alarms: Table::new(&topics.alarms, false),
            dead_letters: Table::new(&topics.dead_letters, false),
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
            metrics::counter!("specaudit_ingester_records_total", "table" => DeadLetterRow::TABLE, "result" => "ok").increment(1);
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

    fn pending_rows(&self) -> usize {
        self.assertions.batch.rows.len()
            + self.spec_versions.batch.rows.len()
            + self.agents.batch.rows.len()
            + self.alarms.batch.rows.len()
            + self.dead_letters.batch.rows.len()
    }

    /// Flushes the batches that are due, or all of them (`force`, the drain before exit).
    async fn flush(&mut self, io: &Io, force: bool) -> Result<(), Transient> {
        let (max_rows, max_delay) = (io.config.ingest.max_rows, io.config.ingest.max_delay);
        // The drain's commit must land before the process ends.
        let mode = if force { CommitMode::Sync } else { CommitMode::Async };
        if force || self.assertions.is_due(max_rows, max_delay) {
            self.assertions.flush(io, mode).await?;
        }
        if force || self.spec_versions.is_due(max_rows, max_delay) {
            self.spec_versions.flush(io, mode).await?;
        }
        if force || self.agents.is_due(max_rows, max_delay) {
            self.agents.flush(io, mode).await?;
        }
        if force || self.alarms.is_due(max_rows, max_delay) {
            self.alarms.flush(io, mode).await?;
        }
        if force || self.dead_letters.is_due(max_rows, max_delay) {
            self.dead_letters.flush(io, mode).await?;
        }
        Ok(())
    }
}

/// Set while a flush keeps failing: intake is paused until `retry_at`.
struct Stall {
    retry_at: tokio::time::Instant,
    delay: Duration,
    /// The assignment generation last paused: newly assigned partitions must be paused too.
    paused_generation: u64,
}

/// Consumes until `shutdown`, then drains the pending batches within [`DRAIN_TIMEOUT`].
pub async fn run(config: IngesterConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topics = Topics::new(&config.kafka.topic_prefix);
    let context = IngestContext::default();
    let names = [&topics.assertions, &topics.heartbeats, &topics.spec_history, &topics.alarms, &topics.dead_letters];
    let consumer = consumer::create(&config, context.clone(), &names.map(String::as_str))?;
    let producer: FutureProducer = client_config(&config.kafka)
        .set("enable.idempotence", "true")
        .create()
        .context("failed to create the dead-letter producer")?;
    let client = specaudit_core::clickhouse::client(&config.clickhouse);
    tracing::info!(topics = ?names, group = %config.ingest.group_id, "ingesting");
    let io = Io { consumer, client, producer, topics, config };
    let codecs = Codecs {
        assertion: Codec::new(),
        heartbeat: Codec::new(),
        spec_version: Codec::new(),
        alarm: Codec::new(),
    };
    let mut tables = Tables::new(&io.topics);

    let apply_revocations = |tables: &mut Tables| {
        let revoked = std::mem::take(&mut context.lock().revoked);
        for (topic, partition) in revoked {
            tables.forget(&topic, partition);
        }
    };
    // librdkafka may still hand out a message fetched before its partition was revoked.
    let owns = |message: &BorrowedMessage<'_>| context.lock().assigned.contains(&(message.topic().to_owned(), message.partition()));

    let mut stall: Option<Stall> = None;
    loop {
        apply_revocations(&mut tables);
        if let Some(stall) = &mut stall {
            let generation = context.lock().generation;
            if generation != stall.paused_generation {
                consumer::set_paused(&io.consumer, true);
                stall.paused_generation = generation;
            }
        }
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let wake = match &stall {
            Some(stall) => stall.retry_at,
            None => tables.earliest_deadline(io.config.ingest.max_delay).map_or(far, tokio::time::Instant::from_std),
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => {}
            received = io.consumer.recv() => match received {
                Ok(message) => {
                    apply_revocations(&mut tables);
                    // Taken even while paused: a message already fetched must not be skipped.
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
        if stall.as_ref().is_some_and(|s| tokio::time::Instant::now() < s.retry_at) {
            continue;
        }
        metrics::gauge!("specaudit_ingester_pending_rows").set(tables.pending_rows() as f64);
        match tables.flush(&io, false).await {
            Ok(()) => {
                if stall.take().is_some() {
                    tracing::info!("flush succeeded, resuming intake");
                    consumer::set_paused(&io.consumer, false);
                    metrics::gauge!("specaudit_ingester_paused").set(0.0);
                }
            }
            Err(error) => {
                let ingest = &io.config.ingest;
                let delay = stall.as_ref().map_or(ingest.retry_backoff, |s| (s.delay * 2).min(ingest.retry_max_backoff));
                if stall.is_none() {
                    consumer::set_paused(&io.consumer, true);
                    metrics::gauge!("specaudit_ingester_paused").set(1.0);
                }
                tracing::warn!(%error, retry_in = ?delay, "flush failed, intake paused");
                let paused_generation = context.lock().generation;
                stall = Some(Stall { retry_at: tokio::time::Instant::now() + delay, delay, paused_generation });
            }
        }
    }

    tracing::info!("draining");
    apply_revocations(&mut tables);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        loop {
            match tables.flush(&io, true).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, "drain flush failed, retrying");
                    tokio::time::sleep(io.config.ingest.retry_backoff).await;
                }
            }
        }
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!("drain timed out; uncommitted records will be read again and recognised"),
    }
    Ok(())
}
