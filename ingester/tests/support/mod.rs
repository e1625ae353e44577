//! Helpers of the ingester's end-to-end tests and bench: a fast assertion load, the real
//! `specaudit-ingester` process, its memory, and the exactly-once checks.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use specaudit_core::codec::Codec;
use specaudit_core::config::KafkaConfig;
use specaudit_core::record::{Assertion, Outcome, Severity};
use specaudit_tests::TestEnv;

/// The load size: `SPECAUDIT_TEST_LOAD`, else `default`.
pub fn load_size(default: u64) -> u64 {
    std::env::var("SPECAUDIT_TEST_LOAD").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Avro-encoded assertions from a few templates; each copy gets a fresh `assertion_id`
/// patched into the bytes, so a million of them cost little CPU to make.
pub struct Load {
    templates: Vec<(Vec<u8>, usize, String)>,
    /// The same records as JSON objects (without labels: a JSON consumer that cannot take
    /// maps, like ClickHouse 18.16's JSONEachRow, reads the rest).
    json: Vec<(Vec<u8>, usize)>,
}

const TEMPLATE_ID: &str = "01890000-0000-7000-8000-000000000000";

impl Load {
    /// `keys` component instances, every outcome, counts 1 to 3, timestamps now.
    pub fn new(keys: usize) -> Load {
        let codec = Codec::<Assertion>::new();
        let now = specaudit_core::record::now_ms();
        let templates: (Vec<_>, Vec<_>) = (0..keys)
            .map(|i| {
                let a = Assertion {
                    assertion_id: TEMPLATE_ID.parse().expect("uuid"),
                    ts: now,
                    spec: "load".into(),
                    spec_version: 1,
                    component: format!("svc.part{}", i % 7),
                    instance: format!("i-{i}"),
                    agent_id: format!("agent-{i}"),
                    requirement: format!("svc/req-{}", i % 5),
                    task: "serve".into(),
                    outcome: Outcome::ALL[i % 4],
                    severity: Severity::Major,
                    count: (i % 3) as i64 + 1,
                    message: if i % 4 == 1 { "limit not set".into() } else { String::new() },
                    details: r#"{"latency_ms":12}"#.into(),
                    labels: BTreeMap::from([("region".to_owned(), "eu-1".to_owned())]),
                };
                let bytes = codec.encode(&a).expect("encode");
                let at = bytes.windows(36).position(|w| w == TEMPLATE_ID.as_bytes()).expect("id in bytes");
                let mut value = serde_json::to_value(&a).expect("json");
                value.as_object_mut().expect("object").remove("labels");
                let json = serde_json::to_vec(&value).expect("json");
                let json_at = json.windows(36).position(|w| w == TEMPLATE_ID.as_bytes()).expect("id in json");
                ((bytes, at, format!("{}{}", a.component, a.instance)), (json, json_at))
            })
            .unzip();
        Load { templates: templates.0, json: templates.1 }
    }

    /// The `n`th record as JSON.
    pub fn json_record(&self, n: u64) -> (&str, Vec<u8>) {
        let i = (n % self.templates.len() as u64) as usize;
        let (bytes, at) = &self.json[i];
        let mut out = bytes.clone();
        let id = uuid::Uuid::now_v7();
        out[*at..*at + 36].copy_from_slice(id.hyphenated().encode_lower(&mut [0u8; 36]).as_bytes());
        (&self.templates[i].2, out)
    }

    /// The `n`th record: its key and bytes.
    pub fn record(&self, n: u64) -> (&str, Vec<u8>) {
        let (bytes, at, key) = &self.templates[(n % self.templates.len() as u64) as usize];
        let mut out = bytes.clone();
        let id = uuid::Uuid::now_v7();
        out[*at..*at + 36].copy_from_slice(id.hyphenated().encode_lower(&mut [0u8; 36]).as_bytes());
        (key, out)
    }

    /// The sum of `count` over records `0..n`.
    pub fn count_sum(&self, n: u64) -> u64 {
        (0..n).map(|i| (i % self.templates.len() as u64) % 3 + 1).sum()
    }
}

/// A producer tuned for throughput.
pub fn producer(kafka: &KafkaConfig) -> BaseProducer {
    specaudit_core::kafka::client_config(kafka)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .expect("producer")
}

/// Sends one record, waiting while the local queue is full.
pub fn send(producer: &BaseProducer, topic: &str, key: &str, payload: &[u8]) {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((e, r)) => {
                assert!(
                    matches!(e, rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)),
                    "produce failed: {e}"
                );
                producer.poll(Duration::from_millis(10));
                record = r;
            }
        }
    }
}

/// Produces records `0..n` of `load` to `topic`, then waits for every acknowledgement.
pub fn produce(kafka: &KafkaConfig, topic: &str, load: &Load, n: u64, progress: Option<&AtomicU64>) {
    produce_range(kafka, topic, load, 0..n, progress);
}

/// Produces records `range` of the load (record i is the same in every call).
pub fn produce_range(kafka: &KafkaConfig, topic: &str, load: &Load, range: std::ops::Range<u64>, progress: Option<&AtomicU64>) {
    let producer = producer(kafka);
    for i in range {
        let (key, bytes) = load.record(i);
        send(&producer, topic, key, &bytes);
        if let Some(p) = progress {
            p.store(i + 1, Ordering::Relaxed);
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
}

/// A running `specaudit-ingester` process.
pub struct Ingester {
    pub child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Ingester {
    /// Starts the binary at `exe` on `env`'s topics and database, in consumer group `group`.
    pub fn spawn(exe: &Path, env: &TestEnv, group: &str, extra: &[(&str, &str)]) -> Ingester {
        let metrics_port = free_port();
        let log = std::env::temp_dir().join(format!("specaudit-ingester-{}-{}.log", env.id, uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(exe);
        command
            .arg("run")
            .env_remove("SPECAUDIT_CONFIG")
            .env("SPECAUDIT__KAFKA__BROKERS", &env.kafka.brokers)
            .env("SPECAUDIT__KAFKA__TOPIC_PREFIX", &env.kafka.topic_prefix)
            .env("SPECAUDIT__CLICKHOUSE__URL", &env.clickhouse.url)
            .env("SPECAUDIT__CLICKHOUSE__DATABASE", &env.clickhouse.database)
            .env("SPECAUDIT__INGEST__GROUP_ID", group)
            .env("SPECAUDIT__INGEST__RETRY_MAX_BACKOFF", "2s")
            .env("SPECAUDIT__TELEMETRY__LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("RUST_LOG", std::env::var("SPECAUDIT_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in extra {
            command.env(k, v);
        }
        let child = command.spawn().expect("cannot start specaudit-ingester");
        Ingester { child, metrics_port, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// kill -9.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        self.child.wait().expect("wait")
    }

    /// GET a path of the telemetry endpoint (plain HTTP/1.0, no client library needed).
    pub fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut out = String::new();
        stream.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// The sum of a metric's samples whose labels contain `label`.
    pub fn metric(&self, name: &str, label: &str) -> Option<f64> {
        let text = self.get("/metrics")?;
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }
}

impl Drop for Ingester {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples a process's resident memory every 100 ms; `peak()` is the largest seen.
pub struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak_kib.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler { peak_kib, stop }
    }

    pub fn peak_mib(&self) -> f64 {
        self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What the exactly-once checks look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub rows: u64,
    pub unique_ids: u64,
    /// sum(count) in the raw table.
    pub raw_sum: u64,
    /// sum(passes + failures + errors + skips) in the rollup.
    pub rollup_sum: u64,
}

pub async fn counts(client: &clickhouse::Client) -> Result<Counts, clickhouse::error::Error> {
    let (rows, unique_ids, raw_sum): (u64, u64, u64) =
        client.query("SELECT count(), uniqExact(assertion_id), sum(toUInt64(count)) FROM assertions").fetch_one().await?;
    let rollup_sum: u64 =
        client.query("SELECT sum(passes + failures + errors + skips) FROM assertions_minutely").fetch_one().await?;
    Ok(Counts { rows, unique_ids, raw_sum, rollup_sum })
}

/// Waits until the raw table holds `rows` rows (or more), then returns the counts.
/// The deadline only keeps a broken run from hanging; it is not a performance check.
pub async fn wait_for_rows(client: &clickhouse::Client, rows: u64, within: Duration) -> Counts {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(c) = counts(client).await {
            if c.rows >= rows {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "fewer than {rows} rows after {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the raw table holds at least `rows` rows; for timing faults into a load.
pub async fn wait_for_some(client: &clickhouse::Client, rows: u64) {
    let _ = wait_for_rows(client, rows, Duration::from_secs(600)).await;
}

/// The consumer group's committed offsets and the high watermarks, per partition of `topic`.
pub fn committed_and_ends(kafka: &KafkaConfig, group: &str, topic: &str) -> Vec<(i32, i64, i64)> {
    let consumer: BaseConsumer = specaudit_core::kafka::client_config(kafka).set("group.id", group).create().expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut list = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        list.add_partition(topic, p.id());
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed");
    committed
        .elements()
        .iter()
        .map(|e| {
            let (_, high) = consumer.fetch_watermarks(topic, e.partition(), Duration::from_secs(10)).expect("watermarks");
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            (e.partition(), at, high)
        })
        .collect()
}

/// Pseudo-random duration in `[min, max)`, different on every call.
pub fn random_between(min: Duration, max: Duration) -> Duration {
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    min + Duration::from_millis(r % (max - min).as_millis().max(1) as u64)
}
