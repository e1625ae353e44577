//! Figures for BENCHMARKS.md: notification latency under load, evaluation cost, memory.
//!
//! ```sh
//! cargo run --release -p specaudit-alarmer --example latency_bench   # stack up first
//! ```
//!
//! 1. Latency: an in-process alarmer on fresh topics of the local stack, a webhook
//!    receiver on 127.0.0.1:0, 10,000 passing assertions/s of background load, and a
//!    failing probe every 50 ms, each on its own instance so each opens its own alarm.
//!    Latency = webhook received − probe produced. Baseline, in the same run and load:
//!    a bare Kafka produce → consume round trip on another topic.
//! 2. Evaluation cost: the evaluator alone (no Kafka), per assertion.
//! 3. Memory: resident set growth for 100,000 active groups.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use specaudit_alarmer::engine::{Engine, EngineConfig, Shards};
use specaudit_alarmer::rules::{Rule, RuleConfig};
use specaudit_core::codec::Codec;
use specaudit_core::config::KafkaConfig;
use specaudit_core::kafka::{client_config, Topics};
use specaudit_core::record::{now_ms, Assertion, Outcome, Severity};
use tokio_util::sync::CancellationToken;

const LOAD_PER_SEC: u64 = 10_000;
const PROBES: usize = 400;
const PROBE_EVERY: Duration = Duration::from_millis(50);

fn assertion(instance: String, requirement: &str, outcome: Outcome) -> Assertion {
    Assertion {
        assertion_id: uuid::Uuid::now_v7(),
        ts: now_ms(),
        spec: "bench".into(),
        spec_version: 1,
        component: "bench".into(),
        instance,
        agent_id: "bench".into(),
        requirement: requirement.into(),
        task: "t".into(),
        outcome,
        severity: Severity::Major,
        count: 1,
        message: String::new(),
        details: String::new(),
        labels: BTreeMap::new(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(|a, b| a.total_cmp(b));
    let p99 = percentile(&ms, 99.0);
    println!(
        "{name}: n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        p99,
        ms.last().copied().unwrap_or(f64::NAN)
    );
    p99
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4)
}

async fn receive(State(got): State<Arc<Mutex<HashMap<String, i64>>>>, body: Bytes) -> &'static str {
    let now = now_ms();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if json["status"] == "firing" {
        if let Some(instance) = json["alerts"][0]["labels"]["instance"].as_str() {
            got.lock().unwrap_or_else(|e| e.into_inner()).entry(instance.to_owned()).or_insert(now);
        }
    }
    "ok"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("SPECAUDIT_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let kafka = KafkaConfig { brokers, topic_prefix: format!("bench-{id}."), ..KafkaConfig::default() };
    specaudit_core::kafka::ensure_topics(&kafka).await?;
    let topics = Topics::new(&kafka.topic_prefix);

    // The webhook receiver.
    let got: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The alarmer: one alarm per probe instance.
    let toml = format!(
        r#"[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"
[alarmer]
group_id = "bench-{id}"
critical_single_failure = false
min_lookback = "1m"
[receivers.hook]
type = "webhook"
url = "{hook}"
secret = "bench"
[[routes]]
receivers = ["hook"]
[[rules]]
name = "probe"
match = {{ requirement = "bench/probe" }}
group_by = ["instance"]
when = {{ failures_at_least = 1, window = "1m" }}
[[rules]]
name = "load-ratio"
match = {{ requirement = "bench/load" }}
when = {{ failure_ratio_above = 0.5, min_samples = 100, window = "1m" }}
"#,
        brokers = kafka.brokers,
        prefix = kafka.topic_prefix
    );
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile()?;
    file.write_all(toml.as_bytes())?;
    let config: specaudit_alarmer::AlarmerConfig = specaudit_core::config::load(Some(file.path()))?;
    let stop = CancellationToken::new();
    let alarmer = tokio::spawn(specaudit_alarmer::run(config, stop.clone()));

    // Background load: 10,000 passing assertions/s over 1,000 instances (all partitions).
    let load_producer: ThreadedProducer<DefaultProducerContext> = client_config(&kafka).set("linger.ms", "5").create()?;
    let load_stop = CancellationToken::new();
    let load = {
        let topic = topics.assertions.clone();
        let stop = load_stop.clone();
        std::thread::spawn(move || {
            let codec = Codec::<Assertion>::new();
            let start = Instant::now();
            let mut sent = 0u64;
            while !stop.is_cancelled() {
                let due = (start.elapsed().as_secs_f64() * LOAD_PER_SEC as f64) as u64;
                while sent < due {
                    let a = assertion(format!("load-{}", sent % 1000), "bench/load", Outcome::Pass);
                    let bytes = codec.encode(&a).unwrap_or_default();
                    let key = format!("bench/{}", a.instance);
                    if load_producer.send(BaseRecord::to(&topic).key(&key).payload(&bytes)).is_ok() {
                        sent += 1;
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = load_producer.flush(Duration::from_secs(10));
            (sent, start.elapsed())
        })
    };

    // Baseline consumer: a bare round trip on another topic.
    let rtt_topic = topics.spec_history.clone();
    let rtt: StreamConsumer = client_config(&kafka)
        .set("group.id", format!("bench-rtt-{id}"))
        .set("fetch.wait.max.ms", "10")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&rtt_topic, 0, Offset::End)?;
    rtt.assign(&tpl)?;
    let rtt_times: Arc<Mutex<Vec<f64>>> = Arc::default();
    let rtt_task = {
        let rtt_times = rtt_times.clone();
        tokio::spawn(async move {
            while let Ok(m) = rtt.recv().await {
                let sent: i64 = std::str::from_utf8(m.payload().unwrap_or_default()).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                rtt_times.lock().unwrap_or_else(|e| e.into_inner()).push((now_ms() - sent) as f64);
            }
        })
    };

    println!("warming up for 10 s under load (alarmer replay, group join, windows filling)");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let probe_producer: FutureProducer = client_config(&kafka).set("linger.ms", "0").create()?;
    let codec = Codec::<Assertion>::new();
    let mut sent_at: HashMap<String, i64> = HashMap::new();
    for i in 0..PROBES {
        let instance = format!("probe-{i}");
        let a = assertion(instance.clone(), "bench/probe", Outcome::Fail);
        let bytes = codec.encode(&a)?;
        sent_at.insert(instance.clone(), a.ts);
        let key = format!("bench/{instance}");
        let _ = probe_producer.send(FutureRecord::to(&topics.assertions).key(&key).payload(&bytes), Duration::from_secs(5)).await;
        let stamp = now_ms().to_string();
        let _ = probe_producer.send(FutureRecord::to(&rtt_topic).key("rtt").payload(&stamp), Duration::from_secs(5)).await;
        tokio::time::sleep(PROBE_EVERY).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    load_stop.cancel();
    let (load_sent, load_time) = load.join().map_err(|_| anyhow::anyhow!("load thread panicked"))?;
    stop.cancel();
    let _ = alarmer.await;
    rtt_task.abort();

    println!("background load: {} assertions in {:.1} s = {:.0}/s", load_sent, load_time.as_secs_f64(), load_sent as f64 / load_time.as_secs_f64());
    let got = got.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let latencies: Vec<f64> = sent_at.iter().filter_map(|(i, sent)| got.get(i).map(|r| (r - sent) as f64)).collect();
    println!("probes notified: {} of {}", latencies.len(), PROBES);
    let p99 = summary("failing assertion produced → webhook received", latencies);
    let rtt_p99 = summary("baseline: bare kafka produce → consume", rtt_times.lock().unwrap_or_else(|e| e.into_inner()).clone());
    println!("alarmer p99 / bare kafka p99 = {:.1}", p99 / rtt_p99);
    let prometheus_ms = 90_000.0;
    println!("Prometheus rules + Alertmanager default path (1 m evaluation + 30 s group_wait) worst case 90 s: {:.0}x the alarmer's p99", prometheus_ms / p99);

    // Evaluation cost: the evaluator alone.
    let rules: Vec<Rule> = ["failures_at_least = 5", "failure_ratio_above = 0.1, min_samples = 20", "outliers = true"]
        .iter()
        .enumerate()
        .map(|(i, when)| {
            let when: toml_like::Map = toml_like::parse(when);
            Rule::from_config(&RuleConfig { name: format!("r{i}"), when, ..RuleConfig::default() })
        })
        .collect::<Result<_, _>>()?;
    let n = 1_000_000;
    let batch: Vec<Assertion> = (0..10_000)
        .map(|i| {
            let outcome = if i % 50 == 0 { Outcome::Fail } else { Outcome::Pass };
            let mut a = assertion(format!("i{}", i % 100), &format!("bench/req-{}", i % 100), outcome);
            a.component = format!("c{}", i % 10);
            a
        })
        .collect();
    let now = now_ms();
    let evaluate = |engine: &mut Engine| {
        let start = Instant::now();
        let mut transitions = 0;
        for i in 0..n {
            engine.assertion(&batch[i % batch.len()], now);
            transitions += engine.evaluate_touched(now).len();
        }
        (start.elapsed().as_nanos() as f64 / n as f64, transitions)
    };
    let mut engine = Engine::new(EngineConfig { rules: rules.clone(), agent_timeout_ms: 300_000, ..EngineConfig::default() });
    let (per, transitions) = evaluate(&mut engine);
    println!("evaluation: {per:.0} ns per assertion (3 rules, {} groups, feed + evaluate touched; {transitions} transitions)", engine.group_count());
    // One of two copies: every assertion read, the groups of half the shards kept.
    let mut half = Engine::new(EngineConfig { rules, agent_timeout_ms: 300_000, ..EngineConfig::default() });
    half.reassigned(Vec::new(), Shards { count: 6, owned: [0, 2, 4].into() }, now);
    let (per_half, transitions) = evaluate(&mut half);
    println!(
        "evaluation, one of two copies (3 of 6 shards): {per_half:.0} ns per assertion ({} groups; {transitions} transitions), {:.2}x one copy",
        half.group_count(),
        per_half / per
    );
    let bytes: Vec<Vec<u8>> = batch.iter().take(1000).map(|a| codec.encode(a).unwrap_or_default()).collect();
    let start = Instant::now();
    for i in 0..200_000 {
        let _ = codec.decode(&bytes[i % bytes.len()]);
    }
    println!("decode: {:.0} ns per assertion (Avro single-object)", start.elapsed().as_nanos() as f64 / 200_000.0);

    // Memory per 100,000 active groups (one failure-count window each).
    let rule = Rule::from_config(&RuleConfig {
        name: "per-instance".into(),
        group_by: Some(vec!["instance".into()]),
        when: toml_like::parse("failures_at_least = 1"),
        ..RuleConfig::default()
    })?;
    let mut engine = Engine::new(EngineConfig { rules: vec![rule], agent_timeout_ms: 300_000, ..EngineConfig::default() });
    let before = rss_kib();
    for i in 0..100_000 {
        engine.assertion(&assertion(format!("instance-{i:06}"), "bench/req", Outcome::Pass), now);
    }
    let after = rss_kib();
    println!("memory: {} groups add {:.1} MiB resident ({} bytes per group)", engine.group_count(), (after - before) as f64 / 1024.0, (after - before) * 1024 / 100_000);
    Ok(())
}

/// `key = value, key = value` as a JSON map, for the rules above.
mod toml_like {
    pub(crate) type Map = serde_json::Map<String, serde_json::Value>;

    pub(crate) fn parse(text: &str) -> Map {
        text.split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let v = v.trim();
                let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
                (k.trim().to_owned(), value)
            })
            .collect()
    }
}
