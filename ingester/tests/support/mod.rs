//! Helpers of the ingester's end-to-end tests and bench: a fast assertion load and the
//! ingester's memory; the process and the exactly-once checks come from `specaudit-tests`.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use specaudit_core::codec::Codec;
use specaudit_core::config::KafkaConfig;
use specaudit_core::record::{Assertion, Outcome, Severity};
#[allow(unused_imports)]
pub use specaudit_tests::integrity::{counts, wait_for_rows, wait_for_some, Counts};
#[allow(unused_imports)]
pub use specaudit_tests::process::Service as Ingester;

/// An ingester run in the test's process against `env`, flushing every 200 ms.
pub fn config(env: &specaudit_tests::TestEnv) -> specaudit_ingester::config::IngesterConfig {
    use specaudit_ingester::config::{IngestConfig, IngesterConfig};
    IngesterConfig {
        kafka: env.kafka.clone(),
        clickhouse: env.clickhouse.clone(),
        ingest: IngestConfig { group_id: format!("test-{}", env.id), max_delay: Duration::from_millis(200), ..IngestConfig::default() },
        ..IngesterConfig::default()
    }
}

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
