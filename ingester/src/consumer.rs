//! The Kafka consumer: which partitions this ingester owns (kept by the rebalance
//! callbacks), consumer lag from librdkafka's statistics, and pausing intake while
//! ClickHouse cannot take rows.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::config::IngesterConfig;

/// Partitions this consumer owns, kept current by the rebalance callbacks.
#[derive(Debug, Default)]
pub struct Ownership {
    /// Topic → partitions.
    pub assigned: FxHashMap<String, FxHashSet<i32>>,
    /// Revoked since the loop last looked: their pending rows must be dropped.
    pub revoked: Vec<(String, i32)>,
    /// Bumped on every assignment, so a paused consumer knows to pause the newcomers.
    pub generation: u64,
}

/// Longest a revocation waits for the flush in flight. Every step of a flush has its own
/// timeout (a progress read 60 s, an insert 30 s per chunk and 60 s for the answer, a dead
/// letter 60 s), so this only keeps a flush stuck in several of them in a row from
/// holding the group's rebalance forever; past it the revocation goes ahead with a warning.
const FLUSH_WAIT: Duration = Duration::from_secs(240);

/// Shared between the rebalance callbacks (run inside `recv`), the ingest loop and its
/// flush task.
#[derive(Debug, Default, Clone)]
pub struct IngestContext {
    own: Arc<Mutex<Ownership>>,
    /// Whether a flush is in flight, and its end signalled.
    flushing: Arc<(Mutex<bool>, Condvar)>,
}

impl IngestContext {
    pub fn lock(&self) -> MutexGuard<'_, Ownership> {
        self.own.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_flushing(&self, flushing: bool) {
        let (lock, ended) = &*self.flushing;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = flushing;
        if !flushing {
            ended.notify_all();
        }
    }

    /// Blocks until no flush is in flight, so a revoked partition's new owner cannot read
    /// the progress before this ingester's last insert of it has landed or failed. The
    /// thread is handed off first on a multi-threaded runtime, so the flush task goes on.
    fn wait_for_flush(&self) {
        let wait = || {
            let (lock, ended) = &*self.flushing;
            let deadline = Instant::now() + FLUSH_WAIT;
            let mut flushing = lock.lock().unwrap_or_else(|e| e.into_inner());
            while *flushing {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    tracing::warn!(waited = ?FLUSH_WAIT, "revocation goes ahead while a flush is still in flight");
                    return;
                }
                flushing = ended.wait_timeout(flushing, left).unwrap_or_else(|e| e.into_inner()).0;
            }
        };
        let threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if threaded {
            tokio::task::block_in_place(wait);
        } else {
            wait();
        }
    }
}

impl Ownership {
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        self.assigned.get(topic).is_some_and(|partitions| partitions.contains(&partition))
    }
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            // librdkafka reports -1 for partitions this consumer does not fetch.
            let lag: i64 = stats.partitions.values().map(|p| p.consumer_lag).filter(|&l| l >= 0).sum();
            metrics::gauge!("specaudit_ingester_consumer_lag", "topic" => topic.clone()).set(lag as f64);
        }
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.wait_for_flush();
            let mut own = self.lock();
            for e in list.elements() {
                if let Some(partitions) = own.assigned.get_mut(e.topic()) {
                    partitions.remove(&e.partition());
                }
                own.revoked.push((e.topic().to_owned(), e.partition()));
            }
            tracing::info!(partitions = list.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let mut own = self.lock();
                for e in list.elements() {
                    own.assigned.entry(e.topic().to_owned()).or_default().insert(e.partition());
                }
                own.generation += 1;
                tracing::info!(partitions = list.count(), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// librdkafka's prefetch, bounded so memory stays flat while ClickHouse is down (fetch
/// responses are held until their last message is taken: smaller fetches, less memory at
/// the same rate), and kept flowing during a catch-up: by default a partition whose queue
/// reached its bound is not fetched again for a whole second (`fetch.queue.backoff.ms`),
/// which left the ingester idle most of the time.
pub const FETCH: &[(&str, &str)] = &[
    ("queued.max.messages.kbytes", "16384"),
    ("queued.min.messages", "20000"),
    ("fetch.max.bytes", "2097152"),
    ("max.partition.fetch.bytes", "524288"),
    ("fetch.queue.backoff.ms", "10"),
];

/// The group consumer, subscribed to `topics`.
pub fn create(config: &IngesterConfig, context: IngestContext, topics: &[&str]) -> anyhow::Result<StreamConsumer<IngestContext>> {
    let mut client = specaudit_core::kafka::client_config_with(&config.kafka, FETCH);
    if let Some(instance) = &config.ingest.instance_id {
        client.set("group.instance.id", instance);
    }
    let consumer: StreamConsumer<IngestContext> = client
        .set("group.id", &config.ingest.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // The loop keeps polling while ClickHouse is down (partitions paused), so it stays
        // in the group; the interval only has to cover one insert (bounded by its timeouts).
        .set("max.poll.interval.ms", "300000")
        .set("statistics.interval.ms", "5000")
        .create_with_context(context)
        .context("failed to create the kafka consumer")?;
    consumer.subscribe(topics).context("failed to subscribe")?;
    Ok(consumer)
}

/// Pauses or resumes every partition the consumer holds now.
pub fn set_paused(consumer: &StreamConsumer<IngestContext>, paused: bool) {
    let result = consumer.assignment().and_then(|list| {
        if paused {
            consumer.pause(&list)
        } else {
            consumer.resume(&list)
        }
    });
    if let Err(error) = result {
        tracing::warn!(%error, paused, "cannot pause or resume the assignment");
    }
}
