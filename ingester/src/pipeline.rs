//! The ingest loop: consume, decode, batch per table, flush, commit.
//!
//! One task owns the consumer and fills a batch per table. A due batch is handed to a
//! flush task (insert, rollup, commit) and the loop goes on filling the next batches
//! meanwhile, so decoding overlaps ClickHouse's work. One flush is in flight at a time,
//! and the loop stops taking messages while the next batch is full, so at most two
//! batches per table are in memory. A revocation (delivered inside `recv`) waits for the
//! flush in flight before it returns (see [`IngestContext`]): the partition's new owner
//! only starts once every insert of the old one has landed or failed, and learns the
//! progress from ClickHouse. On a runtime with a single thread the loop awaits each flush
//! instead, since there a waiting callback would stop the flush too.
//!
//! When a flush fails for a reason that passes (ClickHouse down, Kafka unreachable), the
//! loop pauses every assigned partition and keeps polling — so the group keeps it as a
//! member and rebalances complete — and tries the flush again after a backoff that
//! doubles up to `retry_max_backoff`.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::future::OptionFuture;
use futures::FutureExt as _;
use rdkafka::consumer::CommitMode;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use specaudit_core::codec::{Codec, DecodeError, Record};
use specaudit_core::kafka::{client_config_with, Topics};
use specaudit_core::record::{AlarmEvent, Assertion, Heartbeat, SpecVersion};
use tokio::runtime::RuntimeFlavor;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::assertion_row::AssertionRow;
use crate::batch::Batch;
use crate::config::{IngestConfig, IngesterConfig};
use crate::consumer::{self, IngestContext, Ownership};
use crate::dead_letter::{self, DeadLetter};
use crate::flush::{Io, Table, Transient};
use crate::rows::{AgentRow, AlarmRow, DeadLetterRow, Source, SourcedRow, SpecVersionRow};

/// How long a SIGTERM waits for the pending batches to be written and committed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Messages taken from librdkafka's queue in one go before the loop's bookkeeping (flush
/// deadlines, revocations, gauges) runs again.
const BURST: usize = 1024;

/// One topic's decoder and its record counters, built once.
struct Decoder<T> {
    codec: Codec<T>,
    ok: metrics::Counter,
    /// Records decoded since the counter was last raised: an atomic add per record costs
    /// more than the decoding of some, so `ok` is raised once per burst.
    ok_pending: Cell<u64>,
    dead_letter: metrics::Counter,
}

impl<T: Record> Decoder<T> {
    fn new(table: &'static str) -> Self {
        Decoder {
            codec: Codec::new(),
            ok: metrics::counter!("specaudit_ingester_records_total", "table" => table, "result" => "ok"),
            ok_pending: Cell::new(0),
            dead_letter: metrics::counter!("specaudit_ingester_records_total", "table" => table, "result" => "dead_letter"),
        }
    }

    /// Decodes `message` into a row of `batch` with `row`, or into a dead letter.
    fn take<R: SourcedRow>(
        &self,
        message: &BorrowedMessage<'_>,
        batch: &mut Batch<R>,
        row: impl FnOnce(&Codec<T>, &[u8], Source, &mut Vec<u8>) -> Result<R, DecodeError>,
    ) {
        let source = Source { partition: message.partition(), offset: message.offset() };
        let payload = message.payload().unwrap_or_default();
        match row(&self.codec, payload, source, &mut batch.arena) {
            Ok(row) => {
                batch.push(row, payload.len());
                self.ok_pending.set(self.ok_pending.get() + 1);
            }
            Err(error) => {
                tracing::warn!(topic = message.topic(), partition = source.partition, offset = source.offset, %error, "dead-lettering undecodable record");
                self.dead_letter.increment(1);
                batch.push_dead_letter(DeadLetter::new(message, error.kind(), error.to_string()));
            }
        }
    }

    fn count(&self) {
        self.ok.increment(self.ok_pending.take());
    }
}

/// The decoders, built once.
struct Codecs {
    assertion: Decoder<Assertion>,
    heartbeat: Decoder<Heartbeat>,
    spec_version: Decoder<SpecVersion>,
    alarm: Decoder<AlarmEvent>,
    /// Records of the dead-letters topic (stored as they are).
    dead_letter: metrics::Counter,
}

impl Codecs {
    /// Raises the record counters by what was decoded since the last call.
    fn count(&self) {
        self.assertion.count();
        self.heartbeat.count();
        self.spec_version.count();
        self.alarm.count();
    }
}

/// The batches being filled, one per table.
struct Intake {
    /// Every assertion is decoded into this one, then encoded into its batch's arena: no
    /// allocation per string.
    assertion: Assertion,
    assertions: Batch<AssertionRow>,
    spec_versions: Batch<SpecVersionRow>,
    agents: Batch<AgentRow>,
    alarms: Batch<AlarmRow>,
    dead_letters: Batch<DeadLetterRow>,
}

impl Intake {
    fn new(topics: &Topics) -> Self {
        Intake {
            assertion: Assertion::default(),
            assertions: Batch::new(topics.assertions.clone()),
            spec_versions: Batch::new(topics.spec_history.clone()),
            agents: Batch::new(topics.heartbeats.clone()),
            alarms: Batch::new(topics.alarms.clone()),
            dead_letters: Batch::new(topics.dead_letters.clone()),
        }
    }

    fn take(&mut self, codecs: &Codecs, message: &BorrowedMessage<'_>) {
        let topic = message.topic();
        if topic == self.assertions.topic {
            let assertion = &mut self.assertion;
            codecs.assertion.take(message, &mut self.assertions, |codec, payload, source, arena| {
                codec.decode_into(payload, assertion).map(|()| AssertionRow::new(assertion, source, arena))
            });
        } else if topic == self.agents.topic {
            codecs.heartbeat.take(message, &mut self.agents, |codec, payload, source, _| codec.decode(payload).map(|h| AgentRow::new(h, source)));
        } else if topic == self.spec_versions.topic {
            codecs.spec_version.take(message, &mut self.spec_versions, |codec, payload, source, _| {
                codec.decode(payload).map(|v| SpecVersionRow::new(v, source))
            });
        } else if topic == self.alarms.topic {
            codecs.alarm.take(message, &mut self.alarms, |codec, payload, source, _| codec.decode(payload).map(|a| AlarmRow::new(a, source)));
        } else if topic == self.dead_letters.topic {
            let source = Source { partition: message.partition(), offset: message.offset() };
            self.dead_letters.push(dead_letter::row(message, source), message.payload().map_or(0, <[u8]>::len));
            codecs.dead_letter.increment(1);
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
            self.assertions.deadline(max_delay),
            self.spec_versions.deadline(max_delay),
            self.agents.deadline(max_delay),
            self.alarms.deadline(max_delay),
            self.dead_letters.deadline(max_delay),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn rows(&self) -> usize {
        self.assertions.rows.len()
            + self.spec_versions.rows.len()
            + self.agents.rows.len()
            + self.alarms.rows.len()
            + self.dead_letters.rows.len()
    }

    fn is_empty(&self) -> bool {
        self.assertions.is_empty()
            && self.spec_versions.is_empty()
            && self.agents.is_empty()
            && self.alarms.is_empty()
            && self.dead_letters.is_empty()
    }

    /// Whether some batch is full: the next one cannot be started yet.
    fn is_full(&self, limits: &IngestConfig) -> bool {
        self.assertions.is_full(limits)
            || self.spec_versions.is_full(limits)
            || self.agents.is_full(limits)
            || self.alarms.is_full(limits)
            || self.dead_letters.is_full(limits)
    }
}

/// The tables' writers: what each knows of its progress, and the batch it is writing.
struct Tables {
    assertions: Table<AssertionRow>,
    spec_versions: Table<SpecVersionRow>,
    agents: Table<AgentRow>,
    alarms: Table<AlarmRow>,
    dead_letters: Table<DeadLetterRow>,
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

    /// Hands the due batches of `intake` (all of them when `force`) to the idle writers.
    fn load(&mut self, intake: &mut Intake, limits: &IngestConfig, force: bool) {
        self.assertions.load(&mut intake.assertions, limits, force);
        self.spec_versions.load(&mut intake.spec_versions, limits, force);
        self.agents.load(&mut intake.agents, limits, force);
        self.alarms.load(&mut intake.alarms, limits, force);
        self.dead_letters.load(&mut intake.dead_letters, limits, force);
    }

    fn is_idle(&self) -> bool {
        self.assertions.batch.is_empty()
            && self.spec_versions.batch.is_empty()
            && self.agents.batch.is_empty()
            && self.alarms.batch.is_empty()
            && self.dead_letters.batch.is_empty()
    }

    fn forget(&mut self, topic: &str, partition: i32) {
        self.assertions.forget(topic, partition);
        self.spec_versions.forget(topic, partition);
        self.agents.forget(topic, partition);
        self.alarms.forget(topic, partition);
        self.dead_letters.forget(topic, partition);
    }

    /// Writes every batch the writers hold and commits their offsets.
    async fn flush(&mut self, io: &Io, mode: CommitMode) -> Result<(), Transient> {
        self.assertions.flush(io, mode).await?;
        self.spec_versions.flush(io, mode).await?;
        self.agents.flush(io, mode).await?;
        self.alarms.flush(io, mode).await?;
        self.dead_letters.flush(io, mode).await
    }
}

/// The flush in flight: it hands the writers back when done.
type Flight = JoinHandle<(Tables, Result<(), Transient>)>;

fn launch(mut tables: Tables, io: &Arc<Io>, context: &IngestContext) -> Flight {
    let (io, context) = (io.clone(), context.clone());
    context.set_flushing(true);
    tokio::spawn(async move {
        let started = Instant::now();
        let result = tables.flush(&io, CommitMode::Async).await;
        metrics::histogram!("specaudit_ingester_flush_seconds").record(started.elapsed().as_secs_f64());
        context.set_flushing(false);
        (tables, result)
    })
}

/// Set while a flush keeps failing: intake is paused until `retry_at`.
struct Stall {
    retry_at: tokio::time::Instant,
    delay: Duration,
    /// The assignment generation last paused: newly assigned partitions must be paused too.
    paused_generation: u64,
}

/// The loop's state around its flushes.
struct Flusher {
    io: Arc<Io>,
    context: IngestContext,
    /// The writers, when no flush has them.
    tables: Option<Tables>,
    flight: Option<Flight>,
    stall: Option<Stall>,
    /// Flushes run beside the loop (multi-threaded runtime) or are awaited by it.
    overlapped: bool,
}

impl Flusher {
    /// Starts a flush of the due batches, unless one is in flight or a failed one waits for
    /// its retry time.
    async fn start(&mut self, intake: &mut Intake) -> anyhow::Result<()> {
        if self.stall.as_ref().is_some_and(|s| tokio::time::Instant::now() < s.retry_at) {
            return Ok(());
        }
        let Some(tables) = self.tables.as_mut() else { return Ok(()) };
        let ingest = &self.io.config.ingest;
        tables.load(intake, ingest, false);
        if tables.is_idle() {
            return Ok(());
        }
        let flight = launch(self.tables.take().expect("checked above"), &self.io, &self.context);
        if self.overlapped {
            self.flight = Some(flight);
            Ok(())
        } else {
            self.landed(flight.await)
        }
    }

    /// Takes the writers back from a finished flush; a failure stalls intake.
    fn landed(&mut self, joined: Result<(Tables, Result<(), Transient>), tokio::task::JoinError>) -> anyhow::Result<()> {
        let (tables, result) = joined.context("a flush task failed")?;
        self.tables = Some(tables);
        match result {
            Ok(()) => {
                if self.stall.take().is_some() {
                    tracing::info!("flush succeeded, resuming intake");
                    consumer::set_paused(&self.io.consumer, false);
                    metrics::gauge!("specaudit_ingester_paused").set(0.0);
                }
            }
            Err(error) => {
                let ingest = &self.io.config.ingest;
                let delay = self.stall.as_ref().map_or(ingest.retry_backoff, |s| (s.delay * 2).min(ingest.retry_max_backoff));
                if self.stall.is_none() {
                    consumer::set_paused(&self.io.consumer, true);
                    metrics::gauge!("specaudit_ingester_paused").set(1.0);
                }
                tracing::warn!(%error, retry_in = ?delay, "flush failed, intake paused");
                let paused_generation = self.context.lock().generation;
                self.stall = Some(Stall { retry_at: tokio::time::Instant::now() + delay, delay, paused_generation });
            }
        }
        Ok(())
    }

    /// Waits for the flush in flight, if any.
    async fn settle(&mut self) -> anyhow::Result<()> {
        match self.flight.take() {
            Some(flight) => self.landed(flight.await),
            None => Ok(()),
        }
    }

    /// Pauses partitions assigned since intake was paused.
    fn keep_paused(&mut self) {
        if let Some(stall) = &mut self.stall {
            let generation = self.context.lock().generation;
            if generation != stall.paused_generation {
                consumer::set_paused(&self.io.consumer, true);
                stall.paused_generation = generation;
            }
        }
    }

    /// When the loop must look again even if no message comes.
    fn wake(&self, intake: &Intake) -> Option<tokio::time::Instant> {
        if self.flight.is_some() {
            return None;
        }
        match &self.stall {
            Some(stall) => Some(stall.retry_at),
            None => intake.earliest_deadline(self.io.config.ingest.max_delay).map(tokio::time::Instant::from_std),
        }
    }
}

/// Consumes until `shutdown`, then drains the pending batches within `DRAIN_TIMEOUT`.
pub async fn run(config: IngesterConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topics = Topics::new(&config.kafka.topic_prefix);
    let context = IngestContext::default();
    let names = [&topics.assertions, &topics.heartbeats, &topics.spec_history, &topics.alarms, &topics.dead_letters];
    let consumer = consumer::create(&config, context.clone(), &names.map(String::as_str))?;
    // A dead letter Kafka cannot take within a minute fails the flush, which is tried again
    // later, instead of holding it for librdkafka's default five minutes: a flush must end
    // well before a revocation stops waiting for it.
    let producer: FutureProducer = client_config_with(&config.kafka, &[("message.timeout.ms", "60000")])
        .set("enable.idempotence", "true")
        .create()
        .context("failed to create the dead-letter producer")?;
    let client = crate::cluster::client(&config.clickhouse);
    let cluster = config.clickhouse.cluster.as_ref().map(|c| c.name.as_str());
    tracing::info!(topics = ?names, group = %config.ingest.group_id, cluster, "ingesting");
    let io = Arc::new(Io { consumer, client, producer, topics, config });
    let codecs = Codecs {
        assertion: Decoder::new(AssertionRow::TABLE),
        heartbeat: Decoder::new(AgentRow::TABLE),
        spec_version: Decoder::new(SpecVersionRow::TABLE),
        alarm: Decoder::new(AlarmRow::TABLE),
        dead_letter: metrics::counter!("specaudit_ingester_records_total", "table" => DeadLetterRow::TABLE, "result" => "ok"),
    };
    let mut intake = Intake::new(&io.topics);
    let overlapped = tokio::runtime::Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread;
    let mut flusher =
        Flusher { io: io.clone(), context: context.clone(), tables: Some(Tables::new(&io.topics)), flight: None, stall: None, overlapped };
    // Time spent with a full batch waiting for the flush in flight: ClickHouse is the limit.
    let intake_blocked = metrics::histogram!("specaudit_ingester_intake_blocked_seconds");

    // Revoked partitions whose progress the writers must still forget.
    let mut revoked = Vec::new();
    loop {
        apply_revocations(&context, &mut intake, &mut revoked);
        if !revoked.is_empty() {
            // The revocation waited for the flush in flight; its writers hold progress to drop.
            flusher.settle().await?;
            if let Some(tables) = &mut flusher.tables {
                for (topic, partition) in revoked.drain(..) {
                    tables.forget(&topic, partition);
                }
            }
        }
        flusher.keep_paused();
        flusher.start(&mut intake).await?;
        metrics::gauge!("specaudit_ingester_pending_rows").set(intake.rows() as f64);

        // While a flush is in flight and the next batch is full, wait for the flush.
        let take_more = flusher.flight.is_none() || !intake.is_full(&io.config.ingest);
        let blocked = (!take_more).then(Instant::now);
        let wake = flusher.wake(&intake);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(joined) = OptionFuture::from(flusher.flight.as_mut()) => {
                if let Some(since) = blocked {
                    intake_blocked.record(since.elapsed().as_secs_f64());
                }
                flusher.flight = None;
                flusher.landed(joined)?;
            }
            _ = async { match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            } } => {}
            received = io.consumer.recv(), if take_more => match received {
                Ok(message) => {
                    take(&context, &codecs, &mut intake, &mut revoked, &message);
                    // What librdkafka already holds is taken without waiting.
                    for _ in 1..BURST {
                        match io.consumer.recv().now_or_never() {
                            Some(Ok(message)) => take(&context, &codecs, &mut intake, &mut revoked, &message),
                            Some(Err(error)) => {
                                tracing::warn!(%error, "kafka consume error");
                                break;
                            }
                            None => break,
                        }
                    }
                    codecs.count();
                }
                Err(error) => {
                    tracing::warn!(%error, "kafka consume error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }

    tracing::info!("draining");
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, drain(&mut flusher, &mut intake, revoked)).await;
    match drained {
        Ok(Ok(())) => tracing::info!("drained"),
        Ok(Err(error)) => tracing::warn!("{error:#}; uncommitted records will be read again and recognised"),
        Err(_) => tracing::warn!("drain timed out; uncommitted records will be read again and recognised"),
    }
    Ok(())
}

/// Drops the intake's rows of partitions revoked since the last call, and notes them in
/// `revoked` for the writers. Run before every message is taken: a partition revoked and
/// assigned again within a burst must lose only the rows taken before the revocation.
fn forget_revoked(own: &mut Ownership, intake: &mut Intake, revoked: &mut Vec<(String, i32)>) {
    for (topic, partition) in own.revoked.drain(..) {
        intake.forget(&topic, partition);
        revoked.push((topic, partition));
    }
}

fn apply_revocations(context: &IngestContext, intake: &mut Intake, revoked: &mut Vec<(String, i32)>) {
    forget_revoked(&mut context.lock(), intake, revoked);
}

/// Takes one message into the intake, if its partition is still this ingester's:
/// librdkafka may still hand out a message fetched before its partition was revoked.
/// Taken even while paused: a message already fetched must not be skipped.
fn take(context: &IngestContext, codecs: &Codecs, intake: &mut Intake, revoked: &mut Vec<(String, i32)>, message: &BorrowedMessage<'_>) {
    let owned = {
        let mut own = context.lock();
        forget_revoked(&mut own, intake, revoked);
        own.owns(message.topic(), message.partition())
    };
    if owned {
        intake.take(codecs, message);
    }
}

/// Writes everything pending and commits synchronously, retrying failures until done.
async fn drain(flusher: &mut Flusher, intake: &mut Intake, mut revoked: Vec<(String, i32)>) -> anyhow::Result<()> {
    flusher.settle().await?;
    apply_revocations(&flusher.context, intake, &mut revoked);
    let tables = flusher.tables.as_mut().context("the writers were lost")?;
    for (topic, partition) in revoked {
        tables.forget(&topic, partition);
    }
    let ingest = &flusher.io.config.ingest;
    loop {
        tables.load(intake, ingest, true);
        if tables.is_idle() && intake.is_empty() {
            return Ok(());
        }
        if let Err(error) = tables.flush(&flusher.io, CommitMode::Sync).await {
            tracing::warn!(%error, "drain flush failed, retrying");
            tokio::time::sleep(ingest.retry_backoff).await;
        }
    }
}
