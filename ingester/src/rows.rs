//! ClickHouse rows, one type per table, built from the decoded records. Every row keeps
//! the Kafka partition and offset it came from: the ingester's progress lives with them.

use std::sync::Arc;

use clickhouse::Row;
use rustc_hash::FxHashSet;
use serde::Serialize;
use serde_repr::Serialize_repr;
use specaudit_core::record::{AlarmEvent, AlarmState, Assertion, Heartbeat, Outcome, Severity, SpecVersion};
use uuid::Uuid;

use crate::rollup::Contribution;

/// Where a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub partition: i32,
    pub offset: i64,
}

/// A table row that knows its Kafka source.
pub trait SourcedRow: for<'a> Row<Value<'a> = Self> + Serialize + Send + Sync + 'static {
    /// The table it is inserted into.
    const TABLE: &'static str;
    fn source(&self) -> Source;
    /// What the row adds to the per-minute rollup; only assertions have one.
    fn contribution(&self) -> Option<Contribution<'_>> {
        None
    }
}

/// `Enum8` values as ClickHouse stores them (see `schemas/clickhouse/001_init.sql`).
#[derive(Debug, Clone, Copy, Serialize_repr)]
#[repr(i8)]
pub enum OutcomeColumn {
    Pass = 1,
    Fail = 2,
    Error = 3,
    Skip = 4,
}

impl From<Outcome> for OutcomeColumn {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Pass => OutcomeColumn::Pass,
            Outcome::Fail => OutcomeColumn::Fail,
            Outcome::Error => OutcomeColumn::Error,
            Outcome::Skip => OutcomeColumn::Skip,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize_repr)]
#[repr(i8)]
pub enum SeverityColumn {
    Critical = 1,
    Major = 2,
    Minor = 3,
    Info = 4,
}

impl From<Severity> for SeverityColumn {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Critical => SeverityColumn::Critical,
            Severity::Major => SeverityColumn::Major,
            Severity::Minor => SeverityColumn::Minor,
            Severity::Info => SeverityColumn::Info,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize_repr)]
#[repr(i8)]
pub enum AlarmStateColumn {
    Pending = 1,
    Firing = 2,
    Resolved = 3,
    Waived = 4,
}

impl From<AlarmState> for AlarmStateColumn {
    fn from(s: AlarmState) -> Self {
        match s {
            AlarmState::Pending => AlarmStateColumn::Pending,
            AlarmState::Firing => AlarmStateColumn::Firing,
            AlarmState::Resolved => AlarmStateColumn::Resolved,
            AlarmState::Waived => AlarmStateColumn::Waived,
        }
    }
}

fn ms(ts: i64) -> u64 {
    u64::try_from(ts).unwrap_or(0)
}

fn split_labels(labels: std::collections::BTreeMap<String, String>) -> (Vec<String>, Vec<String>) {
    labels.into_iter().unzip()
}

/// A row that is nothing but its source, for the tests of batching and progress.
#[cfg(test)]
#[derive(Debug, Row, Serialize)]
pub struct TestRow {
    pub partition: i32,
    pub offset: i64,
}

#[cfg(test)]
impl SourcedRow for TestRow {
    const TABLE: &'static str = "rows";
    fn source(&self) -> Source {
        Source { partition: self.partition, offset: self.offset }
    }
}

/// One copy of each name the assertions of a batch repeat (spec, component, instance,
/// agent, requirement, task, labels): a fleet sends the same few thousand names millions
/// of times, and a row holding shared names takes a fraction of the memory.
#[derive(Debug, Default)]
pub struct Names {
    names: FxHashSet<Arc<str>>,
}

/// Names remembered at most; past this the set starts over (rows keep theirs).
const MAX_NAMES: usize = 100_000;

impl Names {
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.names.get(name) {
            return shared.clone();
        }
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        let shared: Arc<str> = name.into();
        self.names.insert(shared.clone());
        shared
    }
}

#[derive(Debug, Row, Serialize)]
pub struct AssertionRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub assertion_id: Uuid,
    pub ts_ms: u64,
    pub spec: Arc<str>,
    pub spec_version: u64,
    pub component: Arc<str>,
    pub instance: Arc<str>,
    pub agent_id: Arc<str>,
    pub requirement: Arc<str>,
    pub task: Arc<str>,
    pub outcome: OutcomeColumn,
    pub severity: SeverityColumn,
    pub count: u32,
    pub message: String,
    pub details: String,
    pub label_keys: Vec<Arc<str>>,
    pub label_values: Vec<Arc<str>>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

impl AssertionRow {
    /// The row of `a`, borrowed: the decoder reads every assertion into the same one.
    pub fn new(a: &Assertion, source: Source, names: &mut Names) -> Self {
        let (label_keys, label_values) = a.labels.iter().map(|(k, v)| (names.get(k), names.get(v))).unzip();
        AssertionRow {
            assertion_id: a.assertion_id,
            ts_ms: ms(a.ts),
            spec: names.get(&a.spec),
            spec_version: a.spec_version as u64,
            component: names.get(&a.component),
            instance: names.get(&a.instance),
            agent_id: names.get(&a.agent_id),
            requirement: names.get(&a.requirement),
            task: names.get(&a.task),
            outcome: a.outcome.into(),
            severity: a.severity.into(),
            count: u32::try_from(a.count).unwrap_or(u32::MAX),
            message: a.message.clone(),
            details: a.details.clone(),
            label_keys,
            label_values,
            kafka_partition: source.partition,
            kafka_offset: source.offset,
        }
    }
}

#[derive(Debug, Row, Serialize)]
pub struct SpecVersionRow {
    pub spec: String,
    pub version: u64,
    pub ts_ms: u64,
    pub author: String,
    pub comment: String,
    pub sha256: String,
    pub deleted: u8,
    pub document: String,
    pub patch: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

impl SpecVersionRow {
    pub fn new(v: SpecVersion, source: Source) -> Self {
        SpecVersionRow {
            spec: v.spec,
            version: v.version as u64,
            ts_ms: ms(v.ts),
            author: v.author,
            comment: v.comment,
            sha256: v.sha256,
            deleted: u8::from(v.deleted),
            document: v.document,
            patch: v.patch,
            kafka_partition: source.partition,
            kafka_offset: source.offset,
        }
    }
}

#[derive(Debug, Row, Serialize)]
pub struct AgentRow {
    pub agent_id: String,
    pub ts_ms: u64,
    pub component: String,
    pub instance: String,
    pub started_at_ms: u64,
    pub sdk_version: String,
    pub spec_names: Vec<String>,
    pub spec_versions: Vec<u64>,
    pub checked: u64,
    pub emitted: u64,
    pub dropped: u64,
    pub requirement_specs: Vec<String>,
    pub requirements: Vec<String>,
    pub requirement_evaluations: Vec<u64>,
    pub label_keys: Vec<String>,
    pub label_values: Vec<String>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

impl AgentRow {
    pub fn new(h: Heartbeat, source: Source) -> Self {
        let (spec_names, spec_versions) = h.specs.into_iter().map(|s| (s.spec, s.version as u64)).unzip();
        let mut requirement_specs = Vec::with_capacity(h.requirements.len());
        let mut requirements = Vec::with_capacity(h.requirements.len());
        let mut requirement_evaluations = Vec::with_capacity(h.requirements.len());
        for r in h.requirements {
            requirement_specs.push(r.spec);
            requirements.push(r.requirement);
            requirement_evaluations.push(r.evaluations as u64);
        }
        let (label_keys, label_values) = split_labels(h.labels);
        AgentRow {
            agent_id: h.agent_id,
            ts_ms: ms(h.ts),
            component: h.component,
            instance: h.instance,
            started_at_ms: ms(h.started_at),
            sdk_version: h.sdk_version,
            spec_names,
            spec_versions,
            checked: h.checked as u64,
            emitted: h.emitted as u64,
            dropped: h.dropped as u64,
            requirement_specs,
            requirements,
            requirement_evaluations,
            label_keys,
            label_values,
            kafka_partition: source.partition,
            kafka_offset: source.offset,
        }
    }
}

#[derive(Debug, Row, Serialize)]
pub struct AlarmRow {
    pub fingerprint: String,
    pub ts_ms: u64,
    pub rule: String,
    pub state: AlarmStateColumn,
    pub severity: SeverityColumn,
    pub spec: String,
    pub component: String,
    pub requirement: String,
    pub summary: String,
    pub value: f64,
    pub label_keys: Vec<String>,
    pub label_values: Vec<String>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

impl AlarmRow {
    pub fn new(e: AlarmEvent, source: Source) -> Self {
        let (label_keys, label_values) = split_labels(e.labels);
        AlarmRow {
            fingerprint: e.fingerprint,
            ts_ms: ms(e.ts),
            rule: e.rule,
            state: e.state.into(),
            severity: e.severity.into(),
            spec: e.spec,
            component: e.component,
            requirement: e.requirement,
            summary: e.summary,
            value: e.value,
            label_keys,
            label_values,
            kafka_partition: source.partition,
            kafka_offset: source.offset,
        }
    }
}

#[derive(Debug, Row, Serialize)]
pub struct DeadLetterRow {
    pub ts_ms: u64,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub reason: String,
    pub error: String,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

macro_rules! sourced {
    ($row:ty, $table:literal) => {
        impl SourcedRow for $row {
            const TABLE: &'static str = $table;
            fn source(&self) -> Source {
                Source { partition: self.kafka_partition, offset: self.kafka_offset }
            }
        }
    };
}

impl SourcedRow for AssertionRow {
    const TABLE: &'static str = "assertions";
    fn source(&self) -> Source {
        Source { partition: self.kafka_partition, offset: self.kafka_offset }
    }
    fn contribution(&self) -> Option<Contribution<'_>> {
        // As ClickHouse computes toStartOfMinute(toDateTime(intDiv(ts_ms, 1000))); the codec
        // keeps ts_ms within DateTime's range.
        let seconds = (self.ts_ms / 1000) as u32;
        Some(Contribution {
            minute: seconds - seconds % 60,
            spec: &self.spec,
            spec_version: self.spec_version,
            component: &self.component,
            instance: &self.instance,
            requirement: &self.requirement,
            severity: self.severity as i8,
            outcome: self.outcome as usize - 1,
            count: u64::from(self.count),
        })
    }
}

sourced!(SpecVersionRow, "spec_versions");
sourced!(AgentRow, "agents");
sourced!(AlarmRow, "alarms");
sourced!(DeadLetterRow, "dead_letters");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_name_is_stored_once_and_the_set_stays_bounded() {
        let mut names = Names::default();
        let first = names.get("svc.web");
        let again = names.get("svc.web");
        assert!(Arc::ptr_eq(&first, &again));
        for i in 0..MAX_NAMES + 10 {
            names.get(&format!("instance-{i}"));
        }
        assert!(names.names.len() <= MAX_NAMES);
        assert_eq!(&*names.get("svc.web"), "svc.web", "a name forgotten is stored again");
    }
}
