//! Who evaluates what, and rebuilding the windows when that changes.
//!
//! **Membership.** Copies with one `group_id` share the partitions of the assertions
//! topic in a consumer group, but they never read through it: the partitions a copy is
//! given are the *shards* it owns (see [`crate::engine::Shards`]), and the group consumer
//! only keeps them paused. Each assignment starts a new generation. Before giving shards
//! up, a copy settles its dispatcher (inside the revoke callback, so before the group
//! moves on): the next owner's read of the alarm log sees every notification this copy
//! sent.
//!
//! **Replay.** A second consumer, outside the group, reads every partition of the
//! assertions and heartbeats topics: a group's records may come from any partition. On
//! every generation it starts again from `now − lookback` (found with offsetsForTimes),
//! and evaluation waits until each partition reached the end it had then. Offsets are
//! never committed: where to start is a matter of time, not of progress.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::notify::dispatch::Settler;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct State {
    /// Shards are held now (between a revocation and the next assignment, none are).
    assigned: bool,
    /// Assignments so far.
    generation: u64,
    /// Partitions of the assertions topic held now: the shards owned.
    owned: HashSet<i32>,
}

/// Context of the group consumer: tracks the shards owned, keeps them paused, and settles
/// the dispatcher before giving them up.
#[derive(Debug, Clone)]
pub struct Membership {
    state: Arc<Mutex<State>>,
    settler: Option<Settler>,
    /// Woken on every assignment: the callback runs inside a poll that returns no record.
    assigned_anew: Arc<tokio::sync::Notify>,
}

impl Membership {
    /// `settler`, when given, is settled before shards are given up.
    pub fn new(settler: Option<Settler>) -> Membership {
        Membership { state: Arc::default(), settler, assigned_anew: Arc::default() }
    }

    /// Resolves after the next assignment (at once if one came since the last call).
    pub async fn assigned_anew(&self) {
        self.assigned_anew.notified().await;
    }

    /// The number of assignments so far: a new one means the state must be rebuilt.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Whether shards are held now.
    pub fn assigned(&self) -> bool {
        self.lock().assigned
    }

    /// The shards held now.
    pub fn owned(&self) -> HashSet<i32> {
        self.lock().owned.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
}

impl ClientContext for Membership {}

impl ConsumerContext for Membership {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Held, never read: the replay consumer reads every partition.
                if let Err(error) = consumer.assign(tpl).and_then(|()| consumer.pause(tpl)) {
                    tracing::error!(%error, "cannot take the assigned shards");
                }
                let mut state = self.lock();
                state.assigned = true;
                state.generation += 1;
                state.owned = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(shards = ?state.owned, generation = state.generation, "shards assigned");
                self.assigned_anew.notify_one();
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                {
                    // No evaluation until the next assignment is replayed.
                    let mut state = self.lock();
                    state.assigned = false;
                    state.owned.clear();
                }
                self.settle();
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(%error, "cannot release the revoked shards");
                }
                tracing::info!(shards = tpl.count(), "shards revoked");
            }
            other => {
                tracing::warn!(error = ?other, "rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}

/// A replay in progress: the partitions still short of the end they had when it began.
#[derive(Debug, Default)]
pub struct Replay {
    targets: Vec<(String, i32, i64)>,
}

impl Replay {
    /// Points `consumer` at every partition of `topics`, `lookback_ms` back in time, and
    /// notes where each partition ended. Returns the replay and the partition count of the
    /// first topic (the assertions: the number of shards).
    pub fn start<C: Consumer<X>, X: ConsumerContext>(consumer: &C, topics: &[&str], lookback_ms: i64) -> KafkaResult<(Replay, u32)> {
        let since = specaudit_core::record::now_ms() - lookback_ms;
        let mut partitions = Vec::new();
        let mut shards = 0;
        for (i, topic) in topics.iter().enumerate() {
            let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
            let ids: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions()).map(|p| p.id()).collect();
            if i == 0 {
                shards = ids.len() as u32;
            }
            partitions.extend(ids.into_iter().map(|p| ((*topic).to_owned(), p)));
        }
        // Ends first, times second: a record landing in between is newer than `since`
        // and lies beyond the end read first, so starting there cannot skip it.
        let mut highs = Vec::with_capacity(partitions.len());
        for (topic, partition) in &partitions {
            highs.push(consumer.fetch_watermarks(topic, *partition, TIMEOUT)?.1);
        }
        let mut query = TopicPartitionList::new();
        for (topic, partition) in &partitions {
            query.add_partition_offset(topic, *partition, Offset::Offset(since))?;
        }
        let found = consumer.offsets_for_times(query, TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        let mut replay = Replay::default();
        for ((topic, partition), high) in partitions.into_iter().zip(highs) {
            // No record at or after `since`: start at the end.
            let start = match found.find_partition(&topic, partition).map(|p| p.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => high,
            };
            if start < high {
                replay.targets.push((topic.clone(), partition, high));
            }
            assignment.add_partition_offset(&topic, partition, Offset::Offset(start))?;
        }
        consumer.assign(&assignment)?;
        tracing::info!(partitions = assignment.count(), behind = replay.targets.len(), since, "replaying");
        Ok((replay, shards))
    }

    /// Notes a consumed record.
    pub fn consumed(&mut self, topic: &str, partition: i32, offset: i64) {
        if self.targets.is_empty() {
            return;
        }
        // A few partitions: a scan beats hashing an owned key per record.
        self.targets.retain(|(t, p, target)| !(*p == partition && offset + 1 >= *target && t == topic));
    }

    /// Every partition has been replayed to where it ended when the replay began.
    pub fn caught_up(&self) -> bool {
        self.targets.is_empty()
    }
}
