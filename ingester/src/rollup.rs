//! The per-minute rollup (`assertions_minutely`), written by the ingester with its own
//! progress, so that it counts every raw assertion exactly once.
//!
//! A materialized view cannot promise that: ClickHouse writes the raw block first and the
//! view's block after it, so a crash in between leaves raw rows the rollup never sees.
//! Instead, after a batch's raw rows are in, its rollup goes in as inserts of one
//! compressed block of RowBinary each (so each is read whole or not at all), holding for
//! one or more Kafka partitions the rollup rows of an offset range plus one progress row
//! (usually one insert per batch). The progress row (`spec = ''`) says by how much the
//! insert moved the partition's rollup mark; `sum(kafka_offsets)` over them is the first
//! offset not rolled up yet. Rows at or past that mark are rolled up, rows below it were
//! already. See `002_rollup_progress.sql`.
//!
//! On a cluster the rollup is sharded by `kafka_partition`, so there the rollup rows carry
//! the partition they count instead of -1: a partition's rows and progress row then go to
//! one shard, in one block, and still land together or not at all ([`Layout`]). An insert
//! holding several partitions is split by shard, so it may land on some shards and not on
//! others; a failed insert therefore forgets the marks of all its partitions, and each is
//! read back from ClickHouse before the retry.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::batch::Batch;
use crate::rowbinary::put_bytes;
use crate::rows::SourcedRow;

/// The table the rollup lives in.
pub const TABLE: &str = "assertions_minutely";
const COLUMNS: &str = "minute, spec, spec_version, component, instance, requirement, severity, \
                       passes, failures, errors, skips, kafka_partition, kafka_offsets";
/// Largest uncompressed insert: well above the largest possible rollup row (four 64 KiB
/// strings) and small enough to compress as one block.
const MAX_INSERT_BYTES: usize = 1 << 20;

/// Where the rollup is written, which decides the `kafka_partition` of its rollup rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One table on one server: rollup rows carry -1, only progress rows a partition.
    OneServer,
    /// A Distributed table sharded by `kafka_partition`: rollup rows carry the partition of
    /// the assertions they count, so they travel to the shard of their progress row.
    Cluster,
}

impl Layout {
    /// The layout `config` selects.
    pub fn of(config: &specaudit_core::config::ClickHouseConfig) -> Self {
        if config.cluster.is_some() {
            Layout::Cluster
        } else {
            Layout::OneServer
        }
    }
}

/// What one raw row adds to the rollup.
#[derive(Debug, Clone, Copy)]
pub struct Contribution<'a> {
    pub minute: u32,
    pub spec: &'a [u8],
    pub spec_version: u64,
    pub component: &'a [u8],
    pub instance: &'a [u8],
    pub requirement: &'a [u8],
    pub severity: i8,
    /// 0 pass, 1 fail, 2 error, 3 skip.
    pub outcome: usize,
    pub count: u64,
}

/// Names as bytes: assertions keep theirs in their batch's arena, checked UTF-8 by the codec.
type Key<'a> = (u32, &'a [u8], u64, &'a [u8], &'a [u8], &'a [u8], i8);

/// One insert: for each of some partitions, the rollup rows of an offset range and a
/// progress row. One block, so every partition in it moves together or not at all.
#[derive(Debug)]
pub struct RollupInsert {
    /// Partition → its mark after this insert: every assertion below it is rolled up.
    pub marks: Vec<(i32, i64)>,
    /// RowBinary: per partition, its rollup rows then its progress row.
    pub body: Bytes,
}

/// The rollup rows of one partition's offset range, with their progress row.
#[derive(Debug)]
struct Chunk {
    partition: i32,
    next: i64,
    body: Vec<u8>,
}

fn put_row(out: &mut Vec<u8>, key: &Key<'_>, counts: &[u64; 4], partition: i32, offsets: u64) {
    let (minute, spec, spec_version, component, instance, requirement, severity) = *key;
    out.extend_from_slice(&minute.to_le_bytes());
    put_bytes(out, spec);
    out.extend_from_slice(&spec_version.to_le_bytes());
    put_bytes(out, component);
    put_bytes(out, instance);
    put_bytes(out, requirement);
    out.push(severity as u8);
    for c in counts {
        out.extend_from_slice(&c.to_le_bytes());
    }
    out.extend_from_slice(&partition.to_le_bytes());
    out.extend_from_slice(&offsets.to_le_bytes());
}

fn row_size(key: &Key<'_>) -> usize {
    key.1.len() + key.3.len() + key.4.len() + key.5.len() + 80
}

/// Collects one insert's rollup rows.
struct Pending<'a> {
    sums: FxHashMap<Key<'a>, [u64; 4]>,
    bytes: usize,
}

impl<'a> Pending<'a> {
    fn new() -> Self {
        Pending { sums: FxHashMap::default(), bytes: 0 }
    }

    fn add(&mut self, c: Contribution<'a>) {
        let key = (c.minute, c.spec, c.spec_version, c.component, c.instance, c.requirement, c.severity);
        let size = row_size(&key);
        let counts = self.sums.entry(key).or_insert_with(|| {
            self.bytes += size;
            [0; 4]
        });
        counts[c.outcome] = counts[c.outcome].saturating_add(c.count);
    }

    fn finish(self, layout: Layout, partition: i32, from: i64, next: i64) -> Chunk {
        let mut body = Vec::with_capacity(self.bytes + 80);
        let row_partition = match layout {
            Layout::OneServer => -1,
            Layout::Cluster => partition,
        };
        for (key, counts) in &self.sums {
            put_row(&mut body, key, counts, row_partition, 0);
        }
        let progress: Key<'_> = (0, b"", 0, b"", b"", b"", 1);
        put_row(&mut body, &progress, &[0; 4], partition, u64::try_from(next - from).unwrap_or(0));
        Chunk { partition, next, body }
    }
}

/// Packs chunks into as few inserts of at most [`MAX_INSERT_BYTES`] as their order allows:
/// one insert per flush in the usual case, instead of one per partition.
fn pack(chunks: Vec<Chunk>) -> Vec<RollupInsert> {
    let mut out = Vec::new();
    let mut marks = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    for chunk in chunks {
        if !body.is_empty() && body.len() + chunk.body.len() > MAX_INSERT_BYTES {
            out.push(RollupInsert { marks: std::mem::take(&mut marks), body: std::mem::take(&mut body).into() });
        }
        marks.push((chunk.partition, chunk.next));
        body.extend_from_slice(&chunk.body);
    }
    if !marks.is_empty() {
        out.push(RollupInsert { marks, body: body.into() });
    }
    out
}

/// The rollup inserts for `batch`, given each partition's mark (`marks`, which must hold
/// every partition of the batch): rows at or past the mark are rolled up, in inserts of at
/// most `MAX_INSERT_BYTES`; the last insert of a partition moves its mark past the
/// batch's end (its dead letters included).
pub fn inserts<R: SourcedRow>(batch: &Batch<R>, marks: &HashMap<i32, i64>, layout: Layout) -> Vec<RollupInsert> {
    pack(chunks(batch, marks, layout))
}

fn chunks<R: SourcedRow>(batch: &Batch<R>, marks: &HashMap<i32, i64>, layout: Layout) -> Vec<Chunk> {
    let mut by_partition: BTreeMap<i32, Vec<&R>> = BTreeMap::new();
    for row in &batch.rows {
        by_partition.entry(row.source().partition).or_default().push(row);
    }
    let mut out = Vec::new();
    for (&partition, &(_, last)) in &batch.offsets {
        let mut mark = marks.get(&partition).copied().unwrap_or(0);
        if last < mark {
            continue;
        }
        let mut pending = Pending::new();
        for row in by_partition.get(&partition).into_iter().flatten() {
            let offset = row.source().offset;
            if offset < mark {
                continue;
            }
            if let Some(c) = row.contribution(&batch.arena) {
                pending.add(c);
            }
            if pending.bytes >= MAX_INSERT_BYTES - 64 * 1024 * 4 {
                let full = std::mem::replace(&mut pending, Pending::new());
                out.push(full.finish(layout, partition, mark, offset + 1));
                mark = offset + 1;
            }
        }
        if last >= mark {
            out.push(pending.finish(layout, partition, mark, last + 1));
        }
    }
    out
}

/// Reads every partition's rollup mark from ClickHouse (absent: nothing rolled up yet).
pub async fn marks(client: &clickhouse::Client) -> Result<HashMap<i32, i64>, clickhouse::error::Error> {
    let rows: Vec<(i32, u64)> = client
        .query(&format!("SELECT kafka_partition, sum(kafka_offsets) FROM {TABLE} WHERE spec = '' GROUP BY kafka_partition"))
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(|(p, n)| (p, i64::try_from(n).unwrap_or(i64::MAX))).collect())
}

/// Sends one rollup insert as a single compressed block.
///
/// On a cluster, with the replicated tables' deduplication off: two different inserts can
/// be byte for byte the same (one assertion a minute, same key, same offset count) and the
/// second must count; a retry never resends what landed, since the marks are read again.
pub async fn write(client: &clickhouse::Client, insert: &RollupInsert, layout: Layout) -> Result<(), clickhouse::error::Error> {
    let mut request = client
        .insert_formatted_with(format!("INSERT INTO {TABLE} ({COLUMNS}) FORMAT RowBinary"))
        .with_timeouts(Some(crate::flush::SEND_TIMEOUT), Some(crate::flush::END_TIMEOUT));
    if layout == Layout::Cluster {
        request = request.with_setting("insert_deduplicate", "0");
    }
    request.send(insert.body.clone()).await?;
    request.end().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Source;

    #[derive(Debug, clickhouse::Row, serde::Serialize)]
    struct Fake {
        partition: i32,
        offset: i64,
        minute: u32,
    }

    impl SourcedRow for Fake {
        const TABLE: &'static str = "fake";
        fn source(&self) -> Source {
            Source { partition: self.partition, offset: self.offset }
        }
        fn contribution<'a>(&'a self, _arena: &'a [u8]) -> Option<Contribution<'a>> {
            Some(Contribution {
                minute: self.minute,
                spec: b"s",
                spec_version: 1,
                component: b"c",
                instance: b"i",
                requirement: b"r",
                severity: 2,
                outcome: 0,
                count: 1,
            })
        }
        async fn insert(client: &clickhouse::Client, rows: &[&Self], _arena: &[u8]) -> Result<(), clickhouse::error::Error> {
            crate::rows::typed_insert(client, rows).await
        }
    }

    fn batch(rows: &[(i32, i64, u32)]) -> Batch<Fake> {
        let mut b = Batch::new("t".into());
        for &(p, o, m) in rows {
            b.push(Fake { partition: p, offset: o, minute: m }, 0);
        }
        b
    }

    fn progress(chunk: &Chunk) -> u64 {
        let tail = &chunk.body[chunk.body.len() - 8..];
        u64::from_le_bytes(tail.try_into().unwrap())
    }

    #[test]
    fn rows_below_the_mark_are_not_rolled_up_again_and_the_mark_moves_past_the_batch() {
        let b = batch(&[(0, 10, 60), (0, 11, 60), (0, 12, 120), (1, 5, 60)]);
        let marks = HashMap::from([(0, 11), (1, 0)]);
        let chunks = chunks(&b, &marks, Layout::OneServer);
        assert_eq!(chunks.len(), 2);
        // Partition 0: offsets 11 and 12, two minutes, mark 11 → 13.
        let p0 = &chunks[0];
        assert_eq!((p0.partition, p0.next, progress(p0)), (0, 13, 2));
        // Partition 1: from 0 to 6 (nothing stored before offset 5 was ever seen).
        assert_eq!((chunks[1].partition, chunks[1].next, progress(&chunks[1])), (1, 6, 6));
        // Both go in one insert that moves both marks.
        let inserts = inserts(&b, &marks, Layout::OneServer);
        assert_eq!(inserts.len(), 1);
        assert_eq!(inserts[0].marks, vec![(0, 13), (1, 6)]);
        assert_eq!(inserts[0].body.len(), chunks[0].body.len() + chunks[1].body.len());
    }

    #[test]
    fn chunks_beyond_the_insert_size_go_in_further_inserts() {
        let chunk = |partition, size| Chunk { partition, next: 1, body: vec![0; size] };
        let packed = pack(vec![chunk(0, MAX_INSERT_BYTES / 2), chunk(1, MAX_INSERT_BYTES / 2), chunk(2, 10), chunk(3, MAX_INSERT_BYTES)]);
        let marks: Vec<Vec<i32>> = packed.iter().map(|i| i.marks.iter().map(|m| m.0).collect()).collect();
        assert_eq!(marks, vec![vec![0, 1], vec![2], vec![3]]);
        assert!(packed.iter().all(|i| i.body.len() <= MAX_INSERT_BYTES));
    }

    #[test]
    fn a_batch_wholly_below_the_mark_writes_nothing() {
        let b = batch(&[(0, 3, 60)]);
        assert!(inserts(&b, &HashMap::from([(0, 4)]), Layout::OneServer).is_empty());
    }

    #[test]
    fn identical_keys_are_summed_into_one_row() {
        let b = batch(&[(0, 0, 60), (0, 1, 60), (0, 2, 60)]);
        let one = inserts(&b, &HashMap::new(), Layout::OneServer);
        let single_row = 4 + 2 + 8 + 2 + 2 + 2 + 1 + 32 + 4 + 8;
        let progress_row = 4 + 1 + 8 + 1 + 1 + 1 + 1 + 32 + 4 + 8;
        assert_eq!(one[0].body.len(), single_row + progress_row);
        let counts = &one[0].body[4 + 2 + 8 + 2 + 2 + 2 + 1..][..8];
        assert_eq!(u64::from_le_bytes(counts.try_into().unwrap()), 3);
    }

    /// The `kafka_partition` of every row of a body of rollup rows without strings longer
    /// than 127 bytes.
    fn row_partitions(body: &[u8]) -> Vec<i32> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < body.len() {
            at += 4;
            at += 1 + body[at] as usize + 8;
            for _ in 0..3 {
                at += 1 + body[at] as usize;
            }
            at += 1 + 32;
            out.push(i32::from_le_bytes(body[at..at + 4].try_into().expect("8 bytes")));
            at += 4 + 8;
        }
        out
    }

    #[test]
    fn on_a_cluster_rollup_rows_carry_their_partition_and_on_one_server_minus_one() {
        let b = batch(&[(3, 0, 60), (3, 1, 120), (5, 0, 60)]);
        let one = inserts(&b, &HashMap::new(), Layout::OneServer);
        // Per partition: its rollup rows, then its progress row.
        assert_eq!(row_partitions(&one[0].body), [-1, -1, 3, -1, 5]);
        let cluster = inserts(&b, &HashMap::new(), Layout::Cluster);
        assert_eq!(row_partitions(&cluster[0].body), [3, 3, 3, 5, 5]);
        assert_eq!(one[0].marks, cluster[0].marks);
        assert_eq!(one[0].body.len(), cluster[0].body.len());
    }
}
