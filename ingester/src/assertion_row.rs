//! Assertion rows, the bulk of what the ingester writes, encoded as they arrive: each row's
//! RowBinary goes into its batch's arena ([`crate::batch::Batch::arena`]) and the row
//! itself keeps only where its bytes are and what the rollup and the insert order need. No
//! allocation per row, and a batch takes about the size of its Kafka payloads.
//!
//! Inserts are sorted by the table's key, `(spec, component, requirement, ts)`: ClickHouse
//! checks whether a block is sorted before it sorts it, and a sorted block spares it the
//! sort and a copy of every column, a third to a half of its work on an insert
//! (BENCHMARKS.md). Sorting moves no bytes: each row's bytes are copied once, in the
//! table's order, into the chunks that are compressed and sent.

use bytes::Bytes;
use rustc_hash::FxHashMap;
use specaudit_core::record::Assertion;

use crate::rollup::Contribution;
use crate::rowbinary::{put_len, put_str};
use crate::rows::{OutcomeColumn, SeverityColumn, Source, SourcedRow};

/// The columns a row's bytes hold, in order.
pub const COLUMNS: &str = "assertion_id, ts_ms, spec, spec_version, component, instance, agent_id, requirement, task, \
                           outcome, severity, count, message, details, label_keys, label_values, kafka_partition, kafka_offset";

/// A string inside a row's bytes: where it starts, relative to the row, and its length.
/// Fields are at most `MAX_FIELD_BYTES` (the codec refuses longer), so both fit a `u32`.
#[derive(Debug, Clone, Copy)]
struct Text {
    at: u32,
    len: u32,
}

/// One assertion: its bytes in the batch's arena, and the fields read back without them.
#[derive(Debug)]
pub struct AssertionRow {
    /// The row's RowBinary: `arena[at..at + len]`.
    at: usize,
    len: u32,
    spec: Text,
    component: Text,
    instance: Text,
    requirement: Text,
    ts_ms: u64,
    spec_version: u64,
    count: u32,
    outcome: OutcomeColumn,
    severity: SeverityColumn,
    source: Source,
}

/// Appends `s` to `arena` and says where it is relative to `row`.
fn put_text(arena: &mut Vec<u8>, row: usize, s: &str) -> Text {
    put_len(arena, s.len());
    let text = Text { at: (arena.len() - row) as u32, len: s.len() as u32 };
    arena.extend_from_slice(s.as_bytes());
    text
}

impl AssertionRow {
    /// Appends `a`'s RowBinary to `arena` (columns as [`COLUMNS`] lists them) and returns
    /// its row. `a` is borrowed: the decoder reads every assertion into the same one.
    pub fn new(a: &Assertion, source: Source, arena: &mut Vec<u8>) -> Self {
        let at = arena.len();
        // ClickHouse's UUID: the high then the low half, each a little-endian UInt64.
        let (high, low) = a.assertion_id.as_u64_pair();
        arena.extend_from_slice(&high.to_le_bytes());
        arena.extend_from_slice(&low.to_le_bytes());
        // The codec keeps `ts` within DateTime's range and `count` within UInt32's, and
        // refuses versions below 1.
        let ts_ms = u64::try_from(a.ts).unwrap_or(0);
        arena.extend_from_slice(&ts_ms.to_le_bytes());
        let spec = put_text(arena, at, &a.spec);
        let spec_version = a.spec_version as u64;
        arena.extend_from_slice(&spec_version.to_le_bytes());
        let component = put_text(arena, at, &a.component);
        let instance = put_text(arena, at, &a.instance);
        put_str(arena, &a.agent_id);
        let requirement = put_text(arena, at, &a.requirement);
        put_str(arena, &a.task);
        let outcome = OutcomeColumn::from(a.outcome);
        let severity = SeverityColumn::from(a.severity);
        arena.push(outcome as u8);
        arena.push(severity as u8);
        let count = u32::try_from(a.count).unwrap_or(u32::MAX);
        arena.extend_from_slice(&count.to_le_bytes());
        put_str(arena, &a.message);
        put_str(arena, &a.details);
        put_len(arena, a.labels.len());
        for key in a.labels.keys() {
            put_str(arena, key);
        }
        put_len(arena, a.labels.len());
        for value in a.labels.values() {
            put_str(arena, value);
        }
        arena.extend_from_slice(&source.partition.to_le_bytes());
        arena.extend_from_slice(&source.offset.to_le_bytes());
        let len = (arena.len() - at) as u32;
        AssertionRow { at, len, spec, component, instance, requirement, ts_ms, spec_version, count, outcome, severity, source }
    }

    /// The row's bytes.
    fn bytes<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        &arena[self.at..self.at + self.len as usize]
    }

    fn text<'a>(&self, arena: &'a [u8], text: Text) -> &'a [u8] {
        let start = self.at + text.at as usize;
        &arena[start..start + text.len as usize]
    }

    /// The indices of `rows` in the order of the table's key, `ts_ms` within a second. A
    /// batch holds few distinct (spec, component, requirement): they are ranked once, then
    /// the rows are sorted by two integers.
    fn table_order(rows: &[&Self], arena: &[u8]) -> Vec<usize> {
        type Key<'a> = (&'a [u8], &'a [u8], &'a [u8]);
        let key = |r: &AssertionRow| (r.text(arena, r.spec), r.text(arena, r.component), r.text(arena, r.requirement));
        let mut ranks: FxHashMap<Key<'_>, u32> = FxHashMap::default();
        let mut keyed: Vec<(u32, u64, u32)> = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let next = ranks.len() as u32;
            let id = *ranks.entry(key(r)).or_insert(next);
            keyed.push((id, r.ts_ms, i as u32));
        }
        // Ids in order of first sight, turned into ranks in order of content.
        let mut distinct: Vec<(Key<'_>, u32)> = ranks.into_iter().collect();
        distinct.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut rank_of = vec![0; distinct.len()];
        for (rank, (_, id)) in distinct.iter().enumerate() {
            rank_of[*id as usize] = rank as u32;
        }
        for k in &mut keyed {
            k.0 = rank_of[k.0 as usize];
        }
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, _, i)| i as usize).collect()
    }
}

/// One insert's RowBinary, handed out in chunks that are compressed and sent one by one.
#[derive(Debug)]
pub struct EncodedInsert<'a> {
    arena: &'a [u8],
    /// The rows, in the order they are sent.
    rows: Vec<&'a AssertionRow>,
    sent: usize,
}

/// Uncompressed size of a chunk: the typed insert's buffer size.
const CHUNK_BYTES: usize = 256 * 1024;

impl<'a> EncodedInsert<'a> {
    /// `rows`, whose bytes are in `arena`, sorted by the table's key.
    pub fn new(rows: &[&'a AssertionRow], arena: &'a [u8]) -> Self {
        let rows = AssertionRow::table_order(rows, arena).into_iter().map(|i| rows[i]).collect();
        EncodedInsert { arena, rows, sent: 0 }
    }

    /// The next rows to send, whole rows of about `CHUNK_BYTES` together.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        let rest = self.rows.get(self.sent..).filter(|rest| !rest.is_empty())?;
        let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
        for row in rest {
            chunk.extend_from_slice(row.bytes(self.arena));
            self.sent += 1;
            if chunk.len() >= CHUNK_BYTES {
                break;
            }
        }
        Some(chunk.into())
    }
}

impl SourcedRow for AssertionRow {
    const TABLE: &'static str = "assertions";

    fn source(&self) -> Source {
        self.source
    }

    fn contribution<'a>(&'a self, arena: &'a [u8]) -> Option<Contribution<'a>> {
        // As ClickHouse computes toStartOfMinute(toDateTime(intDiv(ts_ms, 1000))).
        let seconds = (self.ts_ms / 1000) as u32;
        Some(Contribution {
            minute: seconds - seconds % 60,
            spec: self.text(arena, self.spec),
            spec_version: self.spec_version,
            component: self.text(arena, self.component),
            instance: self.text(arena, self.instance),
            requirement: self.text(arena, self.requirement),
            severity: self.severity as i8,
            outcome: self.outcome as usize - 1,
            count: u64::from(self.count),
        })
    }

    async fn insert(client: &clickhouse::Client, rows: &[&Self], arena: &[u8]) -> Result<(), clickhouse::error::Error> {
        let mut encoded = EncodedInsert::new(rows, arena);
        let mut insert = client
            .insert_formatted_with(format!("INSERT INTO {} ({COLUMNS}) FORMAT RowBinary", Self::TABLE))
            .with_timeouts(Some(crate::flush::SEND_TIMEOUT), Some(crate::flush::END_TIMEOUT));
        while let Some(chunk) = encoded.next_chunk() {
            insert.send(chunk).await?;
        }
        insert.end().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use specaudit_core::record::{Outcome, Severity};

    fn assertion(spec: &str, component: &str, requirement: &str, ts: i64) -> Assertion {
        Assertion {
            assertion_id: uuid::Uuid::now_v7(),
            ts,
            spec: spec.into(),
            spec_version: 1,
            component: component.into(),
            instance: "i-1".into(),
            agent_id: "a-1".into(),
            requirement: requirement.into(),
            task: "t".into(),
            outcome: Outcome::Pass,
            severity: Severity::Major,
            count: 1,
            message: String::new(),
            details: String::new(),
            labels: Default::default(),
        }
    }

    #[test]
    fn assertions_are_inserted_in_the_order_of_the_table_key() {
        let mut arena = Vec::new();
        let rows: Vec<AssertionRow> = [
            ("s", "web", "r2", 5_000),
            ("s", "web", "r10", 9_000),
            ("s", "api", "r2", 7_000),
            ("s", "web", "r2", 1_500),
            ("a", "web", "r2", 8_000),
            ("s", "web", "r2", 1_200),
            ("s", "web", "r10", 100),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (s, c, r, ts))| AssertionRow::new(&assertion(s, c, r, ts), Source { partition: 0, offset: i as i64 }, &mut arena))
        .collect();
        let refs: Vec<&AssertionRow> = rows.iter().collect();
        type Sorted<'a> = (&'a [u8], &'a [u8], &'a [u8], u64);
        let got: Vec<Sorted<'_>> = AssertionRow::table_order(&refs, &arena)
            .into_iter()
            .map(|i| {
                let c = rows[i].contribution(&arena).expect("assertions are rolled up");
                (c.spec, c.component, c.requirement, rows[i].ts_ms)
            })
            .collect();
        let want: [Sorted<'_>; 7] = [
            (b"a", b"web", b"r2", 8_000),
            (b"s", b"api", b"r2", 7_000),
            (b"s", b"web", b"r10", 100),
            (b"s", b"web", b"r10", 9_000),
            (b"s", b"web", b"r2", 1_200),
            (b"s", b"web", b"r2", 1_500),
            (b"s", b"web", b"r2", 5_000),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn an_insert_sends_every_row_once_whole_and_in_table_order() {
        let mut arena = Vec::new();
        let mut rows = Vec::new();
        for i in 0..3000u64 {
            let mut a = assertion("s", if i % 2 == 0 { "web" } else { "api" }, "r", 10_000 - i as i64);
            a.message = "é".repeat(i as usize % 70);
            a.labels.insert("region".into(), format!("eu-{}", i % 3));
            rows.push(AssertionRow::new(&a, Source { partition: 1, offset: i as i64 }, &mut arena));
        }
        let refs: Vec<&AssertionRow> = rows.iter().collect();
        let mut encoded = EncodedInsert::new(&refs, &arena);
        let mut sent = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = encoded.next_chunk() {
            assert!(!chunk.is_empty());
            sent.extend_from_slice(&chunk);
            chunks += 1;
        }
        let mut expected = Vec::new();
        for i in AssertionRow::table_order(&refs, &arena) {
            expected.extend_from_slice(rows[i].bytes(&arena));
        }
        assert_eq!(sent, expected);
        assert_eq!(sent.len(), arena.len(), "every row's bytes, once");
        assert!(chunks > 1, "{} bytes in one chunk", sent.len());
        assert!(encoded.next_chunk().is_none());
    }
}
