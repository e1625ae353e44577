//! ClickHouse rows, one type per table, built from the decoded records. Every row keeps
//! the Kafka partition and offset it came from: the ingester's progress lives with them.

use std::sync::Arc;

use bytes::Bytes;
use clickhouse::Row;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use serde_repr::Serialize_repr;
use specaudit_core::record::{AlarmEvent, AlarmState, Assertion, Heartbeat, Outcome, Severity, SpecVersion};
use uuid::Uuid;

use crate::rollup::Contribution;
use crate::rowbinary::{len_size, put_str, put_strs};

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
    /// One insert of `rows` written here as RowBinary, for a table whose inserts are worth
    /// it; `None` sends them through the `clickhouse` crate's typed insert, as given.
    fn encode_insert(_rows: &[&Self]) -> Option<EncodedInsert> {
        None
    }
}

/// One insert's RowBinary, handed out in chunks that are compressed and sent one by one.
#[derive(Debug)]
pub struct EncodedInsert {
    /// The columns each row holds, in order.
    pub columns: &'static str,
    arena: Vec<u8>,
    /// Each row's bytes in `arena`, in the order they are sent.
    spans: Vec<(usize, usize)>,
    sent: usize,
}

/// Uncompressed size of a chunk: the typed insert's buffer size.
const CHUNK_BYTES: usize = 256 * 1024;

impl EncodedInsert {
    /// The next rows to send, whole rows of about [`CHUNK_BYTES`] together.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        let rest = self.spans.get(self.sent..).filter(|rest| !rest.is_empty())?;
        let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
        for &(start, end) in rest {
            chunk.extend_from_slice(&self.arena[start..end]);
            self.sent += 1;
            if chunk.len() >= CHUNK_BYTES {
                break;
            }
        }
        Some(chunk.into())
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

    /// Sorted by the table's key: ClickHouse checks whether a block is sorted before it
    /// sorts it, and a sorted block spares it the sort and a copy of every column, which
    /// takes a third to a half of its work on an insert (BENCHMARKS.md). The rows are
    /// encoded in the order they came, reading them front to back, and their bytes copied
    /// in the table's order: encoding straight from the sorted rows spent more on cache
    /// misses than the sort saved.
    fn encode_insert(rows: &[&Self]) -> Option<EncodedInsert> {
        let mut arena = Vec::with_capacity(rows.iter().map(|r| r.encoded_len()).sum());
        let mut spans = Vec::with_capacity(rows.len());
        for row in rows {
            let start = arena.len();
            row.encode(&mut arena);
            spans.push((start, arena.len()));
        }
        let spans = Self::table_order(rows).into_iter().map(|i| spans[i]).collect();
        Some(EncodedInsert { columns: ASSERTION_COLUMNS, arena, spans, sent: 0 })
    }
}

/// The columns [`AssertionRow::encode`] writes, in order.
const ASSERTION_COLUMNS: &str = "assertion_id, ts_ms, spec, spec_version, component, instance, agent_id, requirement, task, \
                                 outcome, severity, count, message, details, label_keys, label_values, kafka_partition, kafka_offset";

impl AssertionRow {
    /// The row as RowBinary, columns as [`ASSERTION_COLUMNS`] lists them.
    fn encode(&self, out: &mut Vec<u8>) {
        // ClickHouse's UUID: the high then the low half, each a little-endian UInt64.
        let (high, low) = self.assertion_id.as_u64_pair();
        out.extend_from_slice(&high.to_le_bytes());
        out.extend_from_slice(&low.to_le_bytes());
        out.extend_from_slice(&self.ts_ms.to_le_bytes());
        put_str(out, &self.spec);
        out.extend_from_slice(&self.spec_version.to_le_bytes());
        for name in [&self.component, &self.instance, &self.agent_id, &self.requirement, &self.task] {
            put_str(out, name);
        }
        out.push(self.outcome as u8);
        out.push(self.severity as u8);
        out.extend_from_slice(&self.count.to_le_bytes());
        put_str(out, &self.message);
        put_str(out, &self.details);
        put_strs(out, &self.label_keys);
        put_strs(out, &self.label_values);
        out.extend_from_slice(&self.kafka_partition.to_le_bytes());
        out.extend_from_slice(&self.kafka_offset.to_le_bytes());
    }

    /// What [`Self::encode`] writes, in bytes.
    fn encoded_len(&self) -> usize {
        let text = |s: &str| len_size(s.len()) + s.len();
        let texts = |items: &[Arc<str>]| len_size(items.len()) + items.iter().map(|s| text(s)).sum::<usize>();
        16 + 8 + 8 + 1 + 1 + 4 + 4 + 8
            + [&self.spec, &self.component, &self.instance, &self.agent_id, &self.requirement, &self.task].into_iter().map(|s| text(s)).sum::<usize>()
            + text(&self.message)
            + text(&self.details)
            + texts(&self.label_keys)
            + texts(&self.label_values)
    }

    /// The indices of `rows` in the order of the table's key, `(spec, component,
    /// requirement, ts)` (`ts_ms` within a second). A batch holds few distinct (spec,
    /// component, requirement): they are ranked once (found by the shared names' addresses,
    /// ordered by content), then the rows are sorted by two integers.
    fn table_order(rows: &[&Self]) -> Vec<usize> {
        type Names<'a> = (&'a str, &'a str, &'a str);
        let address = |r: &AssertionRow| (Arc::as_ptr(&r.spec).cast::<u8>() as usize, Arc::as_ptr(&r.component).cast::<u8>() as usize, Arc::as_ptr(&r.requirement).cast::<u8>() as usize);
        let mut ranks: FxHashMap<(usize, usize, usize), (Names<'_>, u32)> = FxHashMap::default();
        for r in rows {
            ranks.entry(address(r)).or_insert(((&r.spec, &r.component, &r.requirement), 0));
        }
        let mut distinct: Vec<&mut (Names<'_>, u32)> = ranks.values_mut().collect();
        distinct.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Equal names held by different copies (the shared set starts over) rank the same.
        let mut rank = 0;
        for i in 1..distinct.len() {
            if distinct[i].0 != distinct[i - 1].0 {
                rank += 1;
            }
            distinct[i].1 = rank;
        }
        let mut keys: Vec<(u32, u64, u32)> = rows.iter().enumerate().map(|(i, r)| (ranks[&address(r)].1, r.ts_ms, i as u32)).collect();
        keys.sort_unstable();
        keys.into_iter().map(|(_, _, i)| i as usize).collect()
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

    fn row(names: &mut Names, spec: &str, component: &str, requirement: &str, ts_ms: u64) -> AssertionRow {
        AssertionRow {
            assertion_id: Uuid::nil(),
            ts_ms,
            spec: names.get(spec),
            spec_version: 1,
            component: names.get(component),
            instance: names.get("i-1"),
            agent_id: names.get("a-1"),
            requirement: names.get(requirement),
            task: names.get("t"),
            outcome: OutcomeColumn::Pass,
            severity: SeverityColumn::Major,
            count: 1,
            message: String::new(),
            details: String::new(),
            label_keys: Vec::new(),
            label_values: Vec::new(),
            kafka_partition: 0,
            kafka_offset: 0,
        }
    }

    #[test]
    fn assertions_are_inserted_in_the_order_of_the_table_key() {
        let mut names = Names::default();
        let mut rows = vec![
            row(&mut names, "s", "web", "r2", 5_000),
            row(&mut names, "s", "web", "r10", 9_000),
            row(&mut names, "s", "api", "r2", 7_000),
            row(&mut names, "s", "web", "r2", 1_500),
            row(&mut names, "a", "web", "r2", 8_000),
            row(&mut names, "s", "web", "r2", 1_200),
        ];
        // The same names again in other copies, as after the shared set starts over.
        let mut other = Names::default();
        rows.push(row(&mut other, "s", "web", "r2", 3_000));
        rows.push(row(&mut other, "s", "web", "r10", 100));
        let refs: Vec<&AssertionRow> = rows.iter().collect();
        let got: Vec<(&str, &str, &str, u64)> =
            AssertionRow::table_order(&refs).into_iter().map(|i| (&*rows[i].spec, &*rows[i].component, &*rows[i].requirement, rows[i].ts_ms)).collect();
        assert_eq!(
            got,
            [
                ("a", "web", "r2", 8_000),
                ("s", "api", "r2", 7_000),
                ("s", "web", "r10", 100),
                ("s", "web", "r10", 9_000),
                ("s", "web", "r2", 1_200),
                ("s", "web", "r2", 1_500),
                ("s", "web", "r2", 3_000),
                ("s", "web", "r2", 5_000),
            ]
        );
    }

    #[test]
    fn an_encoded_insert_sends_every_row_once_whole_and_in_table_order() {
        let mut names = Names::default();
        let mut rows = Vec::new();
        for i in 0..3000u64 {
            let mut r = row(&mut names, "s", if i % 2 == 0 { "web" } else { "api" }, "r", 10_000 - i);
            r.kafka_offset = i as i64;
            r.message = "é".repeat(i as usize % 70);
            r.label_keys = vec![names.get("region")];
            r.label_values = vec![names.get(&format!("eu-{}", i % 3))];
            rows.push(r);
        }
        let refs: Vec<&AssertionRow> = rows.iter().collect();
        for r in &refs {
            let mut one = Vec::new();
            r.encode(&mut one);
            assert_eq!(one.len(), r.encoded_len());
        }
        let mut encoded = AssertionRow::encode_insert(&refs).expect("assertions are encoded");
        let mut sent = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = encoded.next_chunk() {
            assert!(!chunk.is_empty());
            sent.extend_from_slice(&chunk);
            chunks += 1;
        }
        let mut expected = Vec::new();
        for i in AssertionRow::table_order(&refs) {
            rows[i].encode(&mut expected);
        }
        assert_eq!(sent, expected);
        assert!(chunks > 1, "{} bytes in one chunk", sent.len());
        assert!(encoded.next_chunk().is_none());
    }
}
