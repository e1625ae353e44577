//! The agent SDK: receives the specs by push, checks the tasks its component performs, and
//! emits assertions and heartbeats without ever blocking or panicking in the caller.
//!
//! - At start it reads the compacted specs topic to its end (the latest version of every
//!   spec), then keeps consuming it: each new version is compiled and swapped in.
//! - `check` evaluates the declarative checks that apply; `assert` records a check done by
//!   the component's own code. Passes and skips are rolled up per interval into one
//!   assertion with a count; fails and errors go out one by one with their message. Per
//!   requirement, at most `max_tasks_per_interval` tasks are rolled up by name in one
//!   interval; further tasks' outcomes go out under the task [`OTHER_TASK`].
//! - Records go to a bounded librdkafka queue; when it is full or Kafka is unreachable
//!   they are dropped and counted, never queued without bound.

mod config;
mod emit;
mod specs;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use specaudit_core::check::{Evaluation, Facts};
use specaudit_core::codec::Codec;
use specaudit_core::kafka::{caught_up, client_config, Topics};
use specaudit_core::record::{Outcome, SpecInUse, SpecVersion};
use tokio::sync::watch;

pub use self::config::AgentConfig;
pub(crate) use self::config::default_max_tasks;
use self::emit::{Emitter, Key};
pub use self::emit::Counters;
pub use self::specs::OTHER_TASK;
use self::specs::{CompiledSpec, SpecSet};

/// The SDK's version, reported in heartbeats.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why an agent could not start or a call was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot set up kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("specs not read within {0:?}: is kafka at the configured brokers, and does the specs topic exist?")]
    StartTimeout(Duration),
    #[error("requirement {0} does not apply to this component in any spec it runs")]
    UnknownRequirement(String),
    #[error("component {0:?} is not a component path")]
    BadComponent(String),
    #[error("agent config: {0} must be above zero")]
    ZeroInterval(&'static str),
    #[error("cannot start the agent's background thread: {0}")]
    Thread(std::io::Error),
}

/// One outcome of `check` or `assert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub spec: &'static str,
    pub spec_version: i64,
    pub requirement: &'static str,
    pub outcome: Outcome,
    pub message: String,
}

struct Shared {
    config: AgentConfig,
    /// Swapped whole when a version lands; `check` reads it without taking a lock.
    specs: ArcSwap<SpecSet>,
    /// Versions replaced while `check` calls may still count into them.
    retired: Mutex<Retired>,
    versions: watch::Sender<Vec<SpecInUse>>,
    emitter: Emitter,
    stop: AtomicBool,
}

/// An agent inside a component. Cheap to clone; every clone speaks for the same agent.
#[derive(Clone)]
pub struct Agent {
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("component", &self.shared.config.component)
            .field("instance", &self.shared.config.instance)
            .finish()
    }
}

impl Agent {
    /// Starts an agent: blocks until every spec is read (at most `start_timeout`), then
    /// follows the specs topic, rolls up and heartbeats in background threads.
    pub fn start(config: AgentConfig) -> Result<Agent, AgentError> {
        let shared = Self::shared(config)?;
        let consumer = spec_consumer(&shared)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let follow = spawn("specaudit-specs", &shared, move |shared| follow_specs(shared, &consumer, ready_tx))?;
        let timeout = shared.config.start_timeout;
        if ready_rx.recv_timeout(timeout).is_err() {
            shared.stop.store(true, Ordering::Relaxed);
            return Err(AgentError::StartTimeout(timeout));
        }
        let ticker = spawn("specaudit-ticker", &shared, tick)?;
        tracing::info!(component = %shared.config.component, instance = %shared.config.instance, specs = ?shared.versions.borrow().clone(), "agent started");
        Ok(Agent { shared, threads: Arc::new(Mutex::new(vec![follow, ticker])) })
    }

    /// An agent that runs the given spec versions and is not told of new ones: for
    /// benchmarks, and for components that pin their spec. It emits like any agent.
    pub fn with_specs(config: AgentConfig, versions: &[SpecVersion]) -> Result<Agent, AgentError> {
        let shared = Self::shared(config)?;
        for version in versions {
            apply(&shared, version);
        }
        let ticker = spawn("specaudit-ticker", &shared, tick)?;
        Ok(Agent { shared, threads: Arc::new(Mutex::new(vec![ticker])) })
    }

    fn shared(config: AgentConfig) -> Result<Arc<Shared>, AgentError> {
        if config.component.is_empty() || config.component.split('.').any(str::is_empty) {
            return Err(AgentError::BadComponent(config.component));
        }
        // A zero interval would spin the ticker, a core taken from the host service.
        for (name, interval) in [("rollup_interval", config.rollup_interval), ("heartbeat_interval", config.heartbeat_interval)] {
            if interval.is_zero() {
                return Err(AgentError::ZeroInterval(name));
            }
        }
        let emitter = Emitter::new(&config)?;
        let (versions, _) = watch::channel(Vec::new());
        Ok(Arc::new(Shared {
            specs: ArcSwap::from_pointee(SpecSet::default()),
            retired: Mutex::new(Retired::default()),
            versions,
            emitter,
            stop: AtomicBool::new(false),
            config,
        }))
    }

    /// The agent's id, as in its assertions and heartbeats.
    pub fn agent_id(&self) -> &str {
        self.shared.emitter.agent_id()
    }

    /// The spec versions in use now.
    pub fn versions(&self) -> Vec<SpecInUse> {
        self.shared.versions.borrow().clone()
    }

    /// A receiver told each time the versions in use change.
    pub fn watch_versions(&self) -> watch::Receiver<Vec<SpecInUse>> {
        self.shared.versions.subscribe()
    }

    /// The params of the component, merged from the root down, from the first spec that
    /// sets `name`, converted to `T`.
    pub fn param<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        let specs = self.current();
        specs
            .specs
            .iter()
            .find_map(|s| s.params.get(name))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// The ids of the requirements that apply to this component, per spec.
    pub fn requirements(&self) -> Vec<(String, String)> {
        let specs = self.current();
        specs
            .specs
            .iter()
            .flat_map(|s| s.requirements.iter().map(|r| (s.name.to_string(), r.id.to_string())))
            .collect()
    }

    /// Counts since start.
    pub fn counters(&self) -> Counters {
        self.shared.emitter.counters(checked(&self.shared))
    }

    fn current(&self) -> Arc<SpecSet> {
        self.shared.specs.load_full()
    }

    /// Evaluates every declarative check that applies to `task` against `facts` and emits
    /// the outcomes. Requirements without a check are left to [`Agent::assert`].
    pub fn check(&self, task: &str, facts: &Value) -> Vec<CheckResult> {
        // A guard, not a counted reference: the hot path takes no lock and no refcount.
        let specs = self.shared.specs.load();
        let prepared = Facts::new(facts);
        let mut results = Vec::with_capacity(specs.checks);
        for spec in &specs.specs {
            for requirement in &spec.requirements {
                let Some(check) = &requirement.check else { continue };
                let index = requirement.task_index(task);
                let evaluation = match index {
                    Some(_) => check.evaluate_prepared(&prepared, &spec.cel_params),
                    None => Evaluation { outcome: Outcome::Skip, message: String::new() },
                };
                let key = Key { spec, requirement, task, outcome: evaluation.outcome };
                self.shared.emitter.record(key, index, &evaluation.message, || facts.to_string());
                results.push(CheckResult {
                    spec: spec.name,
                    spec_version: spec.version,
                    requirement: requirement.id,
                    outcome: evaluation.outcome,
                    message: evaluation.message,
                });
            }
        }
        results
    }

    /// Records the outcome of a check the component did itself, for `requirement` (its id,
    /// `<component>/<name>`), in every spec where it applies.
    pub fn assert(
        &self,
        requirement: &str,
        task: &str,
        outcome: Outcome,
        message: &str,
        details: Option<&Value>,
    ) -> Result<Vec<CheckResult>, AgentError> {
        let specs = self.current();
        let mut results = Vec::new();
        for spec in &specs.specs {
            if let Some(r) = spec.requirements.iter().find(|r| r.id == requirement) {
                let key = Key { spec, requirement: r, task, outcome };
                self.shared.emitter.record(key, r.task_index(task), message, || details.map(Value::to_string).unwrap_or_default());
                results.push(CheckResult {
                    spec: spec.name,
                    spec_version: spec.version,
                    requirement: r.id,
                    outcome,
                    message: message.to_owned(),
                });
            }
        }
        if results.is_empty() {
            return Err(AgentError::UnknownRequirement(requirement.to_owned()));
        }
        Ok(results)
    }

    /// Stops the background threads and sends what is pending, waiting at most `deadline`.
    pub fn shutdown(&self, deadline: Duration) {
        let started = Instant::now();
        self.shared.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        flush_all(&self.shared);
        self.shared.emitter.heartbeat(&self.shared.config, &self.current(), checked(&self.shared));
        self.shared.emitter.flush(deadline.saturating_sub(started.elapsed()));
    }
}

fn spawn(
    name: &str,
    shared: &Arc<Shared>,
    run: impl FnOnce(&Shared) + Send + 'static,
) -> Result<JoinHandle<()>, AgentError> {
    let shared = Arc::clone(shared);
    std::thread::Builder::new().name(name.into()).spawn(move || run(&shared)).map_err(AgentError::Thread)
}

fn spec_consumer(shared: &Shared) -> Result<BaseConsumer, AgentError> {
    let config = &shared.config;
    let consumer: BaseConsumer = client_config(&config.kafka)
        .set("group.id", format!("specaudit-agent-{}", shared.emitter.agent_id()))
        .set("enable.auto.commit", "false")
        // Specs are published in transactions: never apply an aborted or undecided version.
        .set("isolation.level", "read_committed")
        .create()?;
    Ok(consumer)
}

/// Reads the specs topic from the beginning, signals `ready` once caught up with the end
/// seen at start, then keeps applying new versions until the agent stops.
fn follow_specs(shared: &Shared, consumer: &BaseConsumer, ready: std::sync::mpsc::Sender<()>) {
    let topic = Topics::new(&shared.config.kafka.topic_prefix).specs;
    let codec = Codec::<SpecVersion>::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    // Retry the setup until the agent stops: Kafka may come up after the component.
    let mut ready = Some(ready);
    while !shared.stop.load(Ordering::Relaxed) {
        match assign_from_start(consumer, &topic) {
            Ok(found) => {
                ends = found;
                break;
            }
            Err(error) => {
                tracing::warn!(%error, %topic, "cannot read the specs topic yet");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    let mut latest: BTreeMap<String, i64> = BTreeMap::new();
    if ends.is_empty() {
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
    }
    while !shared.stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(error)) => tracing::warn!(%error, "specs consume error"),
            Some(Ok(message)) => {
                if let Some(version) = message.payload().and_then(|p| codec.decode(p).ok()) {
                    if latest.get(&version.spec).is_none_or(|v| *v < version.version) {
                        latest.insert(version.spec.clone(), version.version);
                        apply(shared, &version);
                    }
                }
            }
        }
        // By position, not by the offsets of messages: transaction markers end the
        // partition and are never handed out.
        if ready.is_some() && caught_up(consumer, &topic, &mut ends) {
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
        }
    }
}

fn assign_from_start(consumer: &BaseConsumer, topic: &str) -> Result<BTreeMap<i32, i64>, rdkafka::error::KafkaError> {
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
        if high > low {
            ends.insert(partition.id(), high);
        }
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    if assignment.count() == 0 {
        return Err(rdkafka::error::KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition));
    }
    consumer.assign(&assignment)?;
    Ok(ends)
}

/// Swaps in a new version of one spec.
fn apply(shared: &Shared, version: &SpecVersion) {
    let compiled = match CompiledSpec::compile(version, &shared.config.component, shared.config.max_tasks_per_interval.get()) {
        None => None,
        Some(Ok(compiled)) => Some(Arc::new(compiled)),
        Some(Err(error)) => {
            tracing::warn!(spec = %version.spec, version = version.version, %error, "cannot use spec version, keeping the previous one");
            return;
        }
    };
    let next = {
        // Only the spec thread swaps, so load-then-store cannot lose an update.
        let (next, replaced) = shared.specs.load().with(&version.spec, compiled);
        let next = Arc::new(next);
        // Under the lock, so that `checked` sees the replaced version in one place or the other.
        let mut retired = shared.retired.lock().unwrap_or_else(|e| e.into_inner());
        shared.specs.store(Arc::clone(&next));
        // Its rolled-up outcomes still go out, under the version they were checked against.
        retired.specs.extend(replaced);
        next
    };
    tracing::info!(spec = %version.spec, version = version.version, "spec version in use");
    shared.versions.send_replace(next.in_use());
}

/// Replaced versions, flushed on each tick until no one holds them, and what the
/// versions already forgotten had counted.
#[derive(Debug, Default)]
struct Retired {
    specs: Vec<Arc<CompiledSpec>>,
    forgotten_outcomes: i64,
}

/// Outcomes counted since start, by the versions in use, retired and forgotten. Counted
/// in the requirements' tallies, so that `check` adds to no agent-wide counter.
fn checked(shared: &Shared) -> i64 {
    let retired = shared.retired.lock().unwrap_or_else(|e| e.into_inner());
    let specs = shared.specs.load();
    let counted: i64 = specs.specs.iter().chain(&retired.specs).map(|s| s.outcomes()).sum();
    retired.forgotten_outcomes + counted
}

/// Sends the rolled-up outcomes of the current and the retired versions; forgets retired
/// versions nobody can count into any more.
fn flush_all(shared: &Shared) {
    let specs = shared.specs.load_full();
    for spec in &specs.specs {
        shared.emitter.flush_rollups(spec);
    }
    let mut retired = shared.retired.lock().unwrap_or_else(|e| e.into_inner());
    let Retired { specs, forgotten_outcomes } = &mut *retired;
    specs.retain(|spec| {
        // Judged before the flush: a check that holds the version may count into it until
        // it lets go, even while it is flushed. Forgotten only if nobody held it before
        // this flush, which then sends all it counted.
        let held = Arc::strong_count(spec) > 1;
        if !held {
            // Pairs with the release of the last hold: its counts are all visible.
            std::sync::atomic::fence(Ordering::Acquire);
        }
        shared.emitter.flush_rollups(spec);
        if !held {
            *forgotten_outcomes += spec.outcomes();
        }
        held
    });
}

/// Flushes rollups every interval and sends heartbeats, until the agent stops.
fn tick(shared: &Shared) {
    let mut last_heartbeat = Instant::now() - shared.config.heartbeat_interval;
    let step = shared.config.rollup_interval.min(shared.config.heartbeat_interval).min(Duration::from_millis(200));
    let mut last_rollup = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(step);
        if last_rollup.elapsed() >= shared.config.rollup_interval {
            flush_all(shared);
            last_rollup = Instant::now();
        }
        if last_heartbeat.elapsed() >= shared.config.heartbeat_interval {
            let specs = shared.specs.load_full();
            shared.emitter.heartbeat(&shared.config, &specs, checked(shared));
            last_heartbeat = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use specaudit_core::config::KafkaConfig;
    use specaudit_core::spec::Spec;

    const SPEC: &str = "apiVersion: specaudit/v1\nspec: t\ncomponents:\n  web:\n    requirements:\n      tls:\n        tasks: [serve]\n        check: {schema: {type: object, required: [tls]}}\n";

    fn version(n: i64) -> SpecVersion {
        let spec = Spec::parse(SPEC).unwrap_or_else(|e| panic!("{e}"));
        SpecVersion {
            spec: spec.spec.clone(),
            version: n,
            ts: 0,
            author: "test".into(),
            comment: String::new(),
            sha256: spec.sha256(),
            deleted: false,
            document: spec.canonical_json(),
            patch: "[]".into(),
        }
    }

    /// Totals of what the agent sends, by (spec version, task, outcome).
    type Sent = Arc<Mutex<BTreeMap<(i64, String, Outcome), i64>>>;

    /// Collects what `agent` sends into the returned totals, calling `also` on each record
    /// as it goes out.
    fn collect(agent: &Agent, mut also: impl FnMut() + Send + 'static) -> Sent {
        let sent = Sent::default();
        let totals = Arc::clone(&sent);
        let hook = move |a: &specaudit_core::record::Assertion| {
            *totals.lock().unwrap_or_else(|e| e.into_inner()).entry((a.spec_version, a.task.clone(), a.outcome)).or_default() += a.count;
            also();
        };
        *agent.shared.emitter.on_send.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
        sent
    }

    fn unreachable_kafka() -> KafkaConfig {
        // Nothing listens on port 1: records wait in the queue and are dropped.
        KafkaConfig { brokers: "127.0.0.1:1".into(), ..KafkaConfig::default() }
    }

    /// A config whose ticker does not flush during a test: the test flushes when it means to.
    fn flushed_by_test() -> AgentConfig {
        let mut config = AgentConfig::new(unreachable_kafka(), "web", "w-1");
        config.rollup_interval = Duration::from_secs(3600);
        config
    }

    #[test]
    fn checked_stays_exact_while_threads_check_and_versions_are_replaced_and_forgotten() {
        let agent = Agent::with_specs(AgentConfig::new(unreachable_kafka(), "web", "w-1"), &[version(1)]).unwrap_or_else(|e| panic!("{e}"));
        let sent = collect(&agent, || {});
        let (threads, n) = (4, 20_000);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for i in 0..n {
                        let results = agent.check(if i % 3 == 0 { "other" } else { "serve" }, &json!({"tls": "1.3"}));
                        assert_eq!(results.len(), 1);
                    }
                });
            }
            for v in 2..8 {
                apply(&agent.shared, &version(v));
                flush_all(&agent.shared);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        flush_all(&agent.shared);
        let retired = agent.shared.retired.lock().unwrap_or_else(|e| e.into_inner()).specs.len();
        assert_eq!(retired, 0, "replaced versions nobody holds are forgotten");
        assert_eq!(agent.counters().checked, threads * n);
        let sent: i64 = sent.lock().unwrap_or_else(|e| e.into_inner()).values().sum();
        assert_eq!(sent, threads * n, "every outcome counted is sent");
        agent.shutdown(Duration::ZERO);
    }

    #[test]
    fn a_pass_counted_into_a_replaced_version_while_it_is_flushed_is_sent_once_under_that_version() {
        let agent = Agent::with_specs(flushed_by_test(), &[version(1)]).unwrap_or_else(|e| panic!("{e}"));
        // A `check` in flight holds the set it loaded before the swap: version 1.
        let mut in_flight = Some(agent.shared.specs.load_full());
        agent.check("serve", &json!({"tls": "1.3"}));
        apply(&agent.shared, &version(2));
        // The check counts its pass into version 1 while the flush is sending version 1's
        // rollups, then returns, dropping the last hold on version 1.
        let sent = collect(&agent, move || {
            if let Some(set) = in_flight.take() {
                let requirement = &set.specs[0].requirements[0];
                requirement.tally.pass("serve", requirement.task_index("serve"));
            }
        });
        flush_all(&agent.shared);
        flush_all(&agent.shared);
        let sent = sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(sent, BTreeMap::from([((1, "serve".to_owned(), Outcome::Pass), 2)]));
        assert_eq!(agent.counters().checked, 2);
        assert!(agent.shared.retired.lock().unwrap_or_else(|e| e.into_inner()).specs.is_empty(), "version 1 is forgotten once sent");
        agent.shutdown(Duration::ZERO);
    }

    #[test]
    fn tasks_beyond_max_tasks_per_interval_are_sent_under_other_and_counted() {
        let mut config = flushed_by_test();
        config.max_tasks_per_interval = std::num::NonZeroUsize::new(4).unwrap_or(std::num::NonZeroUsize::MIN);
        let agent = Agent::with_specs(config, &[version(1)]).unwrap_or_else(|e| panic!("{e}"));
        let sent = collect(&agent, || {});
        // As from sidecar requests that name a new task each: each skips `web/tls`.
        let tasks = 1000;
        for i in 0..tasks {
            agent.check("serve", &json!({"tls": "1.3"}));
            agent.check(&format!("task-{i}"), &json!({}));
        }
        flush_all(&agent.shared);
        let sent = sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // The pass slot, the 8 skip slots, 4 tasks by name, and the rest under (other).
        let by_name = 1 + 8 + 4;
        assert_eq!(sent.len(), by_name + 1, "{sent:?}");
        assert_eq!(sent.get(&(1, "serve".to_owned(), Outcome::Pass)), Some(&tasks));
        assert_eq!(sent.get(&(1, OTHER_TASK.to_owned(), Outcome::Skip)), Some(&(tasks - 12)));
        assert_eq!(sent.values().sum::<i64>(), 2 * tasks);
        let counters = agent.counters();
        assert_eq!((counters.checked, counters.over_task_cap), (2 * tasks, tasks - 12));
        agent.shutdown(Duration::ZERO);
    }

    #[test]
    fn a_task_name_longer_than_a_record_field_is_clipped() {
        let agent = Agent::with_specs(flushed_by_test(), &[version(1)]).unwrap_or_else(|e| panic!("{e}"));
        let sent = collect(&agent, || {});
        // The field limit falls inside a two-byte character: the cut goes before it.
        let max = specaudit_core::codec::MAX_FIELD_BYTES;
        let long = format!("a{}", "é".repeat(max));
        agent.check(&long, &json!({}));
        flush_all(&agent.shared);
        let sent = sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sent: Vec<_> = sent.iter().map(|((version, task, outcome), count)| (*version, task.len(), long.starts_with(task.as_str()), *outcome, *count)).collect();
        assert_eq!(sent, [(1, max - 1, true, Outcome::Skip, 1)]);
        agent.shutdown(Duration::ZERO);
    }

    #[test]
    fn a_zero_interval_is_refused_at_start_with_its_name() {
        let kafka = KafkaConfig { brokers: "127.0.0.1:1".into(), ..KafkaConfig::default() };
        let mut config = AgentConfig::new(kafka, "web", "w-1");
        config.heartbeat_interval = Duration::ZERO;
        let error = Agent::with_specs(config.clone(), &[version(1)]).err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("agent config: heartbeat_interval must be above zero"));
        config.heartbeat_interval = Duration::from_secs(5);
        config.rollup_interval = Duration::ZERO;
        let error = Agent::with_specs(config, &[version(1)]).err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("agent config: rollup_interval must be above zero"));
    }
}
