//! Rebuilding windows after a start or a rebalance: every newly assigned partition is
//! read again from `now − lookback` (found with offsetsForTimes), and evaluation waits
//! until each has reached the end it had at assignment. Offsets are never committed:
//! where to start is a matter of time, not of progress.
//!
//! Each assignment starts a new generation: the pipeline then forgets its windows and
//! alarms and reads the alarm log again, keeping the alarms of the partitions it now
//! owns. Before giving partitions up, a copy settles its dispatcher (inside the revoke
//! callback, so before the group moves on): the next owner's read of the log sees every
//! notification this copy sent.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::notify::dispatch::Settler;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct CatchUp {
    /// An assignment was received at least once.
    assigned: bool,
    /// Partitions still replaying → the offset they must reach.
    targets: HashMap<(String, i32), i64>,
    /// Assignments so far.
    generation: u64,
    /// Partitions held now.
    owned: HashSet<(String, i32)>,
}

/// Consumer context that seeks new partitions back in time and tracks the replay.
#[derive(Debug, Clone)]
pub struct ReplayContext {
    lookback_ms: i64,
    state: Arc<Mutex<CatchUp>>,
    settler: Option<Settler>,
}

impl ReplayContext {
    /// `settler`, when given, is settled before partitions are given up.
    pub fn new(lookback_ms: i64, settler: Option<Settler>) -> ReplayContext {
        ReplayContext { lookback_ms, state: Arc::default(), settler }
    }

    /// The number of assignments so far: a new one means the state must be rebuilt.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The partitions of `topic` held now.
    pub fn owned(&self, topic: &str) -> HashSet<i32> {
        self.lock().owned.iter().filter(|(t, _)| t == topic).map(|(_, p)| *p).collect()
    }

    /// Lets the dispatcher finish what it was handed, blocking this thread (the revoke
    /// callback runs inside the consumer's poll, on a runtime worker).
    fn settle(&self) {
        let Some(settler) = &self.settler else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(settler.settle()));
            }
            _ => tracing::warn!("not on a multi-thread runtime: notifications in flight are not settled before a revocation"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CatchUp> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a consumed record; true while its partition is still replaying.
    pub fn consumed(&self, topic: &str, partition: i32, offset: i64) {
        let mut state = self.lock();
        let key = (topic.to_owned(), partition);
        if state.targets.get(&key).is_some_and(|target| offset + 1 >= *target) {
            state.targets.remove(&key);
        }
    }

    /// Every assigned partition has been replayed to where it was at assignment.
    pub fn caught_up(&self) -> bool {
        let state = self.lock();
        state.assigned && state.targets.is_empty()
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let since = specaudit_core::record::now_ms() - self.lookback_ms;
        let partitions: Vec<(String, i32)> = tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
        // Ends first, times second: a record landing in between is newer than `since`
        // and lies beyond the end read first, so starting there cannot skip it.
        let highs: Vec<Option<i64>> = partitions
            .iter()
            .map(|(topic, partition)| consumer.fetch_watermarks(topic, *partition, TIMEOUT).map(|(_, high)| high).ok())
            .collect();
        let mut query = TopicPartitionList::new();
        for (topic, partition) in &partitions {
            let _ = query.add_partition_offset(topic, *partition, Offset::Offset(since));
        }
        let found = consumer.offsets_for_times(query, TIMEOUT);
        let mut targets = Vec::new();
        for ((topic, partition), high) in partitions.into_iter().zip(highs) {
            let start = found
                .as_ref()
                .ok()
                .and_then(|list| list.find_partition(&topic, partition))
                .and_then(|p| match p.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            // No record at or after `since`: start at the end. Unknown: from the beginning.
            let start = match (start, high) {
                (Some(o), _) => Offset::Offset(o),
                (None, Some(h)) if found.is_ok() => Offset::Offset(h),
                _ => Offset::Beginning,
            };
            if let (Offset::Offset(s), Some(h)) = (start, high) {
                if s < h {
                    targets.push(((topic.clone(), partition), h));
                }
            } else if let (Offset::Beginning, Some(h)) = (start, high) {
                if h > 0 {
                    targets.push(((topic.clone(), partition), h));
                }
            }
            tracing::info!(%topic, partition, ?start, ?high, "replaying partition");
            let _ = tpl.set_partition_offset(&topic, partition, start);
        }
        let mut state = self.lock();
        state.assigned = true;
        state.generation += 1;
        state.targets.extend(targets);
        state.owned = tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
    }
}

impl ClientContext for ReplayContext {}

impl ConsumerContext for ReplayContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assign(consumer, tpl);
                if let Err(error) = consumer.assign(tpl) {
                    tracing::error!(%error, "cannot take the assigned partitions");
                }
                tracing::info!(partitions = tpl.count(), "partitions assigned");
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let mut state = self.lock();
                // No evaluation until the next assignment is replayed.
                state.assigned = false;
                for e in tpl.elements() {
                    let key = (e.topic().to_owned(), e.partition());
                    state.targets.remove(&key);
                    state.owned.remove(&key);
                }
                drop(state);
                self.settle();
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(%error, "cannot release the revoked partitions");
                }
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            other => {
                tracing::warn!(error = ?other, "rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}
