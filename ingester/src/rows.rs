//! ClickHouse rows, one type per table, built from the decoded records. Every row keeps
//! the Kafka partition and offset it came from: the ingester's progress lives with them.
//! Assertions, the bulk of the load, have their own encoding ([`crate::assertion_row`]);
//! the other tables' rows hold their fields and go through the `clickhouse` crate's
//! typed insert.

use std::future::Future;

use clickhouse::Row;
use serde::Serialize;
use serde_repr::Serialize_repr;
use specaudit_core::record::{AlarmEvent, AlarmState, Heartbeat, Outcome, Severity, SpecVersion};

use crate::rollup::Contribution;

/// Where a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub partition: i32,
    pub offset: i64,
}

/// A table row that knows its Kafka source.
pub trait SourcedRow: Send + Sync + Sized + 'static {
    /// The table it is inserted into.
    const TABLE: &'static str;
    fn source(&self) -> Source;
    /// What the row adds to the per-minute rollup; only assertions have one. `arena` is the
    /// batch's ([`crate::batch::Batch::arena`]).
    fn contribution<'a>(&'a self, _arena: &'a [u8]) -> Option<Contribution<'a>> {
        None
    }
    /// Writes `rows` (whose batch's arena is `arena`) in one insert.
    fn insert(client: &clickhouse::Client, rows: &[&Self], arena: &[u8]) -> impl Future<Output = Result<(), clickhouse::error::Error>> + Send;
}

/// One insert of typed rows through the `clickhouse` crate, for the tables whose rows hold
/// their own fields.
pub async fn typed_insert<R>(client: &clickhouse::Client, rows: &[&R]) -> Result<(), clickhouse::error::Error>
where
    R: SourcedRow + for<'a> Row<Value<'a> = R> + Serialize,
{
    let mut insert = client.insert::<R>(R::TABLE).await?.with_timeouts(Some(crate::flush::SEND_TIMEOUT), Some(crate::flush::END_TIMEOUT));
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await
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
    async fn insert(client: &clickhouse::Client, rows: &[&Self], _arena: &[u8]) -> Result<(), clickhouse::error::Error> {
        typed_insert(client, rows).await
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
            async fn insert(client: &clickhouse::Client, rows: &[&Self], _arena: &[u8]) -> Result<(), clickhouse::error::Error> {
                typed_insert(client, rows).await
            }
        }
    };
}

sourced!(SpecVersionRow, "spec_versions");
sourced!(AgentRow, "agents");
sourced!(AlarmRow, "alarms");
sourced!(DeadLetterRow, "dead_letters");
