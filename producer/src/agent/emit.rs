//! Emission: rollups, assertion and heartbeat records, and the bounded producer queue.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use specaudit_core::codec::{Codec, MAX_FIELD_BYTES};
use specaudit_core::kafka::{client_config, Topics};
use specaudit_core::record::{now_ms, Assertion, Heartbeat, Outcome, RequirementCoverage};
use uuid::Uuid;

use super::specs::{CompiledRequirement, CompiledSpec, SpecSet};
use super::{AgentConfig, AgentError};

/// What an agent has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Outcomes produced by `check` and `assert`.
    pub checked: i64,
    /// Records Kafka acknowledged.
    pub emitted: i64,
    /// Records dropped: queue full, Kafka unreachable past the message timeout.
    pub dropped: i64,
    /// Outcomes sent under the task `(other)` because their requirement had already rolled
    /// up `max_tasks_per_interval` tasks by name in that interval; counted at each flush.
    pub over_task_cap: i64,
}

#[derive(Debug, Default)]
struct Cells {
    emitted: AtomicI64,
    dropped: AtomicI64,
    over_task_cap: AtomicI64,
}

struct DeliveryCount(Arc<Cells>);

impl ClientContext for DeliveryCount {}

/// What a record sent is, as its delivery opaque: the counters (and the heartbeat's
/// `emitted` / `dropped`) are about assertion records only.
const ASSERTION: usize = 0;
const HEARTBEAT: usize = 1;

impl ProducerContext for DeliveryCount {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, kind: usize) {
        if kind != ASSERTION {
            return;
        }
        match result {
            Ok(_) => self.0.emitted.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The identity of an assertion record, apart from its counts and message.
pub(super) struct Key<'a> {
    pub(super) spec: &'a CompiledSpec,
    pub(super) requirement: &'a CompiledRequirement,
    pub(super) task: &'a str,
    pub(super) outcome: Outcome,
}

pub(super) struct Emitter {
    agent_id: String,
    component: String,
    instance: String,
    key: String,
    labels: std::collections::BTreeMap<String, String>,
    topics: Topics,
    producer: ThreadedProducer<DeliveryCount>,
    assertions: Codec<Assertion>,
    heartbeats: Codec<Heartbeat>,
    cells: Arc<Cells>,
    cap: Option<u32>,
    started_at: i64,
    /// Sees each assertion as it is sent: tests read what went out and act while a flush
    /// is under way.
    #[cfg(test)]
    pub(super) on_send: std::sync::Mutex<Option<SendHook>>,
}

#[cfg(test)]
pub(super) type SendHook = Box<dyn FnMut(&Assertion) + Send>;

impl Emitter {
    pub(super) fn new(config: &AgentConfig) -> Result<Emitter, AgentError> {
        let cells = Arc::new(Cells::default());
        let kbytes = (config.queue_bytes / 1024).max(1);
        let producer = client_config(&config.kafka)
            .set("queue.buffering.max.kbytes", kbytes.to_string())
            .set("queue.buffering.max.messages", "1000000")
            .set("linger.ms", "20")
            .set("compression.type", "lz4")
            // A record Kafka has not taken within this time is dropped and counted.
            .set("message.timeout.ms", "30000")
            .create_with_context(DeliveryCount(Arc::clone(&cells)))?;
        let short = Uuid::new_v4().simple().to_string();
        Ok(Emitter {
            agent_id: format!("{}-{}", config.instance, &short[..8]),
            component: config.component.clone(),
            instance: config.instance.clone(),
            key: format!("{}/{}", config.component, config.instance),
            labels: config.labels.clone(),
            topics: Topics::new(&config.kafka.topic_prefix),
            producer,
            assertions: Codec::new(),
            heartbeats: Codec::new(),
            cells,
            cap: config.max_failures_per_interval,
            started_at: now_ms(),
            #[cfg(test)]
            on_send: std::sync::Mutex::new(None),
        })
    }

    pub(super) fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The counters, with `checked` as counted by the specs' tallies.
    pub(super) fn counters(&self, checked: i64) -> Counters {
        Counters {
            checked,
            emitted: self.cells.emitted.load(Ordering::Relaxed),
            dropped: self.cells.dropped.load(Ordering::Relaxed),
            over_task_cap: self.cells.over_task_cap.load(Ordering::Relaxed),
        }
    }

    /// Takes one outcome: passes and skips are rolled up, fails and errors sent now (up to
    /// the per-requirement cap; the excess is counted and sent rolled up). `index` is the
    /// task's place in the requirement's tasks, as from `task_index`.
    #[inline]
    pub(super) fn record(&self, key: Key<'_>, index: Option<usize>, message: &str, details: impl FnOnce() -> String) {
        // Task names come from callers: one longer than a record's field would be refused by
        // the ingester, and would cost that much in the rollups.
        let key = Key { task: clip(key.task, MAX_FIELD_BYTES), ..key };
        let (tally, task) = (&key.requirement.tally, key.task);
        match key.outcome {
            Outcome::Pass => tally.pass(task, index),
            Outcome::Skip => tally.skip(task),
            Outcome::Fail | Outcome::Error if tally.may_send(self.cap) => self.send(key, 1, message, details()),
            Outcome::Fail => tally.add(task, |c| c.excess_fails += 1),
            Outcome::Error => tally.add(task, |c| c.excess_errors += 1),
        }
    }

    fn send(&self, key: Key<'_>, count: i64, message: &str, details: String) {
        let assertion = Assertion {
            assertion_id: Uuid::now_v7(),
            ts: now_ms(),
            spec: key.spec.name.to_string(),
            spec_version: key.spec.version,
            component: self.component.clone(),
            instance: self.instance.clone(),
            agent_id: self.agent_id.clone(),
            requirement: key.requirement.id.to_string(),
            task: clip(key.task, MAX_FIELD_BYTES).to_owned(),
            outcome: key.outcome,
            severity: key.requirement.severity,
            count,
            message: clip(message, MAX_FIELD_BYTES).to_owned(),
            details: if details.len() > MAX_FIELD_BYTES { String::new() } else { details },
            labels: self.labels.clone(),
        };
        #[cfg(test)]
        if let Some(hook) = self.on_send.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            hook(&assertion);
        }
        match self.assertions.encode(&assertion) {
            Ok(bytes) => self.produce(&self.topics.assertions, &self.key, &bytes, ASSERTION),
            Err(error) => {
                tracing::warn!(%error, "cannot encode assertion, dropped");
                self.cells.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn produce(&self, topic: &str, key: &str, bytes: &[u8], kind: usize) {
        if let Err((error, _)) = self.producer.send(BaseRecord::with_opaque_to(topic, kind).key(key).payload(bytes)) {
            // Queue full or producer closing: drop and count, never block the caller.
            if kind == ASSERTION {
                self.cells.dropped.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(%error, "record dropped");
        }
    }

    /// Sends every rolled-up outcome of `spec` as one assertion per task and kind, with its
    /// count.
    pub(super) fn flush_rollups(&self, spec: &CompiledSpec) {
        for requirement in &spec.requirements {
            let (tasks, over_cap) = requirement.tally.drain();
            if over_cap > 0 {
                self.count_over_task_cap(requirement, over_cap);
            }
            for (task, counts) in tasks {
                let rolled = [
                    (Outcome::Pass, counts.passes, ""),
                    (Outcome::Skip, counts.skips, ""),
                    (Outcome::Fail, counts.excess_fails, "further failures beyond the per-requirement cap"),
                    (Outcome::Error, counts.excess_errors, "further errors beyond the per-requirement cap"),
                ];
                for (outcome, count, message) in rolled {
                    if count > 0 {
                        self.send(Key { spec, requirement, task: &task, outcome }, count, message, String::new());
                    }
                }
            }
        }
    }

    /// Counts outcomes rolled up under `(other)`; the first time, says why.
    fn count_over_task_cap(&self, requirement: &CompiledRequirement, outcomes: i64) {
        if self.cells.over_task_cap.fetch_add(outcomes, Ordering::Relaxed) == 0 {
            tracing::warn!(component = %self.component, requirement = requirement.id, "more distinct tasks in one rollup interval than max_tasks_per_interval: further tasks are rolled up under (other)");
        }
        metrics::counter!("specaudit_agent_outcomes_over_task_cap_total", "component" => self.component.clone()).increment(outcomes.unsigned_abs());
    }

    /// Sends a heartbeat: versions in use, counters, the requirements that apply and how
    /// often each was evaluated since the previous heartbeat.
    pub(super) fn heartbeat(&self, config: &AgentConfig, specs: &SpecSet, checked: i64) {
        let requirements = specs
            .specs
            .iter()
            .flat_map(|s| {
                s.requirements.iter().map(|r| RequirementCoverage {
                    spec: s.name.to_string(),
                    requirement: r.id.to_string(),
                    evaluations: r.tally.take_evaluations(),
                })
            })
            .collect();
        let counters = self.counters(checked);
        let heartbeat = Heartbeat {
            agent_id: self.agent_id.clone(),
            component: config.component.clone(),
            instance: config.instance.clone(),
            ts: now_ms(),
            started_at: self.started_at,
            sdk_version: super::SDK_VERSION.to_owned(),
            specs: specs.in_use(),
            checked: counters.checked,
            emitted: counters.emitted,
            dropped: counters.dropped,
            requirements,
            labels: self.labels.clone(),
        };
        if let Ok(bytes) = self.heartbeats.encode(&heartbeat) {
            self.produce(&self.topics.heartbeats, &self.agent_id, &bytes, HEARTBEAT);
        }
    }

    /// Waits at most `timeout` for queued records to reach Kafka.
    pub(super) fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "not every record reached kafka before shutdown");
        }
    }
}

/// At most the first `max` bytes of `text`, cut at a character boundary.
fn clip(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

