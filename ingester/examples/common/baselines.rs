//! Baselines the benches measure the pipeline against, in the same run: a bare Kafka
//! consume, a bare ClickHouse insert, and ClickHouse's own Kafka table engine with
//! materialized views. Shared by `ingest_bench` and the end-to-end bench
//! (`tests/examples/e2e_bench.rs`); the including file provides `support` and
//! `specaudit_tests`.

#![allow(unreachable_pub, dead_code)]

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use specaudit_core::codec::Codec;
use specaudit_core::kafka::Topics;
use specaudit_core::record::Assertion;
use specaudit_ingester::assertion_row::{AssertionRow, EncodedInsert, COLUMNS};
use specaudit_ingester::rows::{OutcomeColumn, SeverityColumn, Source};
use specaudit_tests::TestEnv;

use super::support::{self, Load};

pub async fn count(client: &clickhouse::Client, sql: &str) -> u64 {
    client.query(sql).fetch_one::<u64>().await.unwrap_or(0)
}

/// Fills `topic` with `n` records (Avro or JSON) and waits until every one is acknowledged.
pub fn backlog(env: &TestEnv, topic: &str, load: &Load, n: u64, json: bool) {
    let producer = support::producer(&env.kafka);
    for i in 0..n {
        let (key, bytes) = if json { load.json_record(i) } else { load.record(i) };
        support::send(&producer, topic, key, &bytes);
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
}

/// How fast a consumer that started on a full topic made it queryable.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Rows/s from the start (process spawned, table created) until all rows are queryable:
    /// start-up and the group join included.
    pub overall: f64,
    /// Rows/s from the first rows becoming queryable until all are: the steady state.
    /// `None` when every row arrived in one step.
    pub sustained: Option<f64>,
}

/// Waits until all `n` rows are queryable in `table` (and the rollup, when `rollup_sum` is
/// given), and measures the rates since `started`.
pub async fn catch_up(client: &clickhouse::Client, table: &str, n: u64, rollup_sum: Option<u64>, started: Instant) -> Rates {
    let rows_sql = format!("SELECT count() FROM {table}");
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let rows = count(client, &rows_sql).await;
        let now = Instant::now();
        if first.is_none() && rows > 0 {
            first = Some((now, rows));
        }
        let done = match rollup_sum {
            Some(sum) => rows >= n && count(client, "SELECT sum(passes + failures + errors + skips) FROM assertions_minutely").await >= sum,
            None => rows >= n,
        };
        if done {
            let sustained = first
                .filter(|&(_, at_first)| at_first < n)
                .map(|(since, at_first)| (n - at_first) as f64 / now.duration_since(since).as_secs_f64());
            return Rates { overall: n as f64 / now.duration_since(started).as_secs_f64(), sustained };
        }
        assert!(now < deadline, "{table}: fewer than {n} rows after 30 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bare Kafka consume (librdkafka, no decoding) of the first `n` records of the
/// assertions topic. Records/s.
pub fn bare_consume(env: &TestEnv, n: u64) -> f64 {
    let topic = Topics::new(&env.kafka.topic_prefix).assertions;
    // The ingester's fetch settings: without them a bare consumer idles in fetch backoffs.
    let consumer: BaseConsumer = specaudit_core::kafka::client_config_with(&env.kafka, specaudit_ingester::consumer::FETCH)
        .set("group.id", format!("bare-{}", env.id))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
    let mut list = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        list.add_partition_offset(&topic, p.id(), Offset::Beginning).expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let started = Instant::now();
    let mut seen = 0u64;
    let mut bytes = 0usize;
    while seen < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            bytes += m.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    n as f64 / started.elapsed().as_secs_f64()
}

/// A bare ClickHouse insert of `assertions` (RowBinary, LZ4, inserts of the ingester's
/// default `max_rows`, no rollup) into a copy of the raw table, each insert's rows in
/// `order`; the rows are built before the clock starts. Rows/s.
pub async fn bare_insert(env: &TestEnv, assertions: &[Assertion], order: Order) -> f64 {
    let client = env.client();
    let table = match order {
        Order::AsTheyCame => "assertions_bare",
        Order::TableKey => "assertions_bare_sorted",
    };
    client.query(&format!("CREATE TABLE {table} AS assertions")).execute().await.expect("create");
    let max_rows = specaudit_ingester::config::IngestConfig::default().max_rows;
    let source = |i: usize| Source { partition: (i % 6) as i32, offset: i as i64 };
    match order {
        Order::AsTheyCame => {
            let rows: Vec<BareRow> = assertions.iter().enumerate().map(|(i, a)| BareRow::new(a, source(i))).collect();
            let started = Instant::now();
            for chunk in rows.chunks(max_rows) {
                let mut insert = client.insert::<BareRow>(table).await.expect("insert");
                for row in chunk {
                    insert.write(row).await.expect("write");
                }
                insert.end().await.expect("end");
            }
            rows.len() as f64 / started.elapsed().as_secs_f64()
        }
        Order::TableKey => {
            let batches: Vec<(Vec<u8>, Vec<AssertionRow>)> = assertions
                .chunks(max_rows)
                .enumerate()
                .map(|(c, chunk)| {
                    let mut arena = Vec::new();
                    let rows = chunk.iter().enumerate().map(|(i, a)| AssertionRow::new(a, source(c * max_rows + i), &mut arena)).collect();
                    (arena, rows)
                })
                .collect();
            let started = Instant::now();
            for (arena, rows) in &batches {
                let refs: Vec<&AssertionRow> = rows.iter().collect();
                let mut encoded = EncodedInsert::new(&refs, arena);
                let mut insert = client.insert_formatted_with(format!("INSERT INTO {table} ({COLUMNS}) FORMAT RowBinary"));
                while let Some(bytes) = encoded.next_chunk() {
                    insert.send(bytes).await.expect("send");
                }
                insert.end().await.expect("end");
            }
            assertions.len() as f64 / started.elapsed().as_secs_f64()
        }
    }
}

/// The order a bare insert sends each block's rows in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// As they came, typed rows through the `clickhouse` crate.
    AsTheyCame,
    /// Sorted by the table's key and encoded as the ingester sends them.
    TableKey,
}

/// An assertion row with its own fields, for the typed bare insert.
#[derive(Debug, clickhouse::Row, serde::Serialize)]
pub struct BareRow {
    #[serde(with = "clickhouse::serde::uuid")]
    assertion_id: uuid::Uuid,
    ts_ms: u64,
    spec: String,
    spec_version: u64,
    component: String,
    instance: String,
    agent_id: String,
    requirement: String,
    task: String,
    outcome: i8,
    severity: i8,
    count: u32,
    message: String,
    details: String,
    label_keys: Vec<String>,
    label_values: Vec<String>,
    kafka_partition: i32,
    kafka_offset: i64,
}

impl BareRow {
    fn new(a: &Assertion, source: Source) -> Self {
        BareRow {
            assertion_id: a.assertion_id,
            ts_ms: a.ts as u64,
            spec: a.spec.clone(),
            spec_version: a.spec_version as u64,
            component: a.component.clone(),
            instance: a.instance.clone(),
            agent_id: a.agent_id.clone(),
            requirement: a.requirement.clone(),
            task: a.task.clone(),
            outcome: OutcomeColumn::from(a.outcome) as i8,
            severity: SeverityColumn::from(a.severity) as i8,
            count: a.count as u32,
            message: a.message.clone(),
            details: a.details.clone(),
            label_keys: a.labels.keys().cloned().collect(),
            label_values: a.labels.values().cloned().collect(),
            kafka_partition: source.partition,
            kafka_offset: source.offset,
        }
    }
}

/// The assertions of `records`, decoded.
pub fn assertions(records: impl Iterator<Item = Vec<u8>>) -> Vec<Assertion> {
    let codec = Codec::<Assertion>::new();
    records.map(|bytes| codec.decode(&bytes).expect("decode")).collect()
}

/// ClickHouse's Kafka engine reading a full JSON topic, with one materialized view into a
/// copy of the raw table and one into the rollup. Rows/s, or the error.
///
/// ClickHouse 18.16 wants every column of a view's target from the view, DEFAULT and
/// MATERIALIZED ones included, and resolves `toUInt64(ts) AS ts_ms` and `... AS ts` as a
/// cycle; so the engine's raw table derives `ts` as an ALIAS column (same stored columns,
/// partitions and order as `assertions`, with `ts_ms` in place of `ts`). Views do not
/// cascade in 18.16 either: the rollup view reads the engine table directly.
pub async fn kafka_engine(env: &TestEnv, load: &Load, n: u64) -> Result<Rates, String> {
    let db = &env.clickhouse.database;
    let server = specaudit_core::clickhouse::server_client(&env.clickhouse);
    specaudit_ingester::migrate::migrate(&env.clickhouse).await.map_err(|e| e.to_string())?;
    let topic = Topics::new(&env.kafka.topic_prefix).assertions;
    backlog(env, &topic, load, n, true);
    let group = format!("engine-{}", env.id);
    start_group_at_beginning(env, &group, &topic);
    let ddl = [
        format!(
            "CREATE TABLE {db}.assertions_engine (assertion_id UUID, ts_ms UInt64, ts DateTime ALIAS toDateTime(intDiv(ts_ms, 1000)), \
             spec String, spec_version UInt64, component String, instance String, agent_id String, requirement String, task String, \
             outcome Enum8('pass' = 1, 'fail' = 2, 'error' = 3, 'skip' = 4), severity Enum8('critical' = 1, 'major' = 2, 'minor' = 3, 'info' = 4), \
             count UInt32, message String, details String, label_keys Array(String), label_values Array(String), \
             kafka_partition Int32, kafka_offset Int64, ingested_at DateTime DEFAULT now()) ENGINE = MergeTree() \
             PARTITION BY toYYYYMM(toDateTime(intDiv(ts_ms, 1000))) ORDER BY (spec, component, requirement, ts_ms)"
        ),
        format!(
            "CREATE TABLE {db}.assertions_queue (assertion_id String, ts Int64, spec String, spec_version UInt64, \
             component String, instance String, agent_id String, requirement String, task String, outcome String, \
             severity String, count UInt32, message String, details String) ENGINE = Kafka SETTINGS \
             kafka_broker_list = '{}', kafka_topic_list = '{topic}', kafka_group_name = '{group}', \
             kafka_format = 'JSONEachRow', kafka_num_consumers = 1",
            env.kafka.brokers
        ),
        format!(
            "CREATE MATERIALIZED VIEW {db}.assertions_queue_mv TO {db}.assertions_engine AS SELECT toUUID(assertion_id) AS assertion_id, \
             toUInt64(ts) AS ts_ms, spec, spec_version, component, instance, agent_id, requirement, task, \
             CAST(outcome AS Enum8('pass' = 1, 'fail' = 2, 'error' = 3, 'skip' = 4)) AS outcome, \
             CAST(severity AS Enum8('critical' = 1, 'major' = 2, 'minor' = 3, 'info' = 4)) AS severity, count, message, details, \
             emptyArrayString() AS label_keys, emptyArrayString() AS label_values, toInt32(0) AS kafka_partition, toInt64(0) AS kafka_offset, \
             now() AS ingested_at FROM {db}.assertions_queue"
        ),
        format!(
            "CREATE MATERIALIZED VIEW {db}.rollup_mv TO {db}.assertions_minutely AS SELECT \
             toStartOfMinute(toDateTime(intDiv(ts, 1000))) AS minute, spec, spec_version, component, instance, requirement, \
             CAST(severity AS Enum8('critical' = 1, 'major' = 2, 'minor' = 3, 'info' = 4)) AS severity, \
             sum(if(outcome = 'pass', toUInt64(count), toUInt64(0))) AS passes, sum(if(outcome = 'fail', toUInt64(count), toUInt64(0))) AS failures, \
             sum(if(outcome = 'error', toUInt64(count), toUInt64(0))) AS errors, sum(if(outcome = 'skip', toUInt64(count), toUInt64(0))) AS skips, \
             toInt32(-1) AS kafka_partition, toUInt64(0) AS kafka_offsets \
             FROM {db}.assertions_queue GROUP BY minute, spec, spec_version, component, instance, requirement, severity"
        ),
    ];
    let started = Instant::now();
    for sql in &ddl {
        server.query(sql).execute().await.map_err(|e| format!("{e}"))?;
    }
    let rate = tokio::time::timeout(Duration::from_secs(900), catch_up(&env.client(), "assertions_engine", n, Some(load.count_sum(n)), started))
        .await
        .map_err(|_| "the engine did not ingest every row within 15 minutes".to_owned());
    // Stop the engine's consumer before the database goes.
    let _ = server.query(&format!("DROP TABLE {db}.assertions_queue_mv")).execute().await;
    let _ = server.query(&format!("DROP TABLE {db}.rollup_mv")).execute().await;
    let _ = server.query(&format!("DROP TABLE {db}.assertions_queue")).execute().await;
    rate
}

/// Commits offset 0 of every partition of `topic` for `group`, so a consumer of that
/// group reads the topic from its beginning whatever its `auto.offset.reset`.
fn start_group_at_beginning(env: &TestEnv, group: &str, topic: &str) {
    let consumer: BaseConsumer = specaudit_core::kafka::client_config(&env.kafka).set("group.id", group).create().expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut list = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        list.add_partition_offset(topic, p.id(), Offset::Offset(0)).expect("partition");
    }
    consumer.commit(&list, rdkafka::consumer::CommitMode::Sync).expect("commit the group's start");
}

