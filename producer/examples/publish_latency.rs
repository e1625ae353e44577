//! Publish latency against the real local stack: from the call (or the `specctl apply`
//! process start) until a read_committed consumer of the specs topic holds the version,
//! against a baseline measured in the same run on the same broker: a bare produce of the
//! same bytes (idempotent, not transactional) until a consumer holds it, with a warm
//! producer and with a new producer per round (what a one-shot CLI pays in connections).
//!
//! Run: `cargo run --release -p specaudit-producer --example publish_latency [ROUNDS]`
//! (uses its own topics under a fresh prefix; `SPECAUDIT_BROKERS` overrides the broker).

use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use specaudit_core::config::KafkaConfig;
use specaudit_core::kafka::{client_config, ensure_topics, Topics};
use specaudit_core::spec::Spec;
use specaudit_producer::publish::{publish, Change, Meta};

const EXAMPLE: &str = include_str!("../../examples/compute-service.yaml");

/// A consumer at the end of `topic`, reading committed records only.
fn tail(config: &KafkaConfig, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = client_config(config)
        .set("group.id", "specaudit-bench")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let (_, end) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Offset(end)).expect("assignment");
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// Polls until a record whose payload contains `marker` arrives.
fn wait_for(consumer: &BaseConsumer, marker: &[u8]) {
    loop {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            if message.payload().is_some_and(|p| p.windows(marker.len()).any(|w| w == marker)) {
                return;
            }
        }
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn report(name: &str, samples: &mut [Duration], baseline: Option<(Duration, Duration)>) -> (Duration, Duration) {
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    let ratio = baseline.map_or(String::new(), |(b50, b99)| {
        format!("  ratio p50 {:.1}x, p99 {:.1}x", p50.as_secs_f64() / b50.as_secs_f64(), p99.as_secs_f64() / b99.as_secs_f64())
    });
    println!("{name:<58} n={:<4} p50 {:>8.2} ms  p99 {:>8.2} ms{ratio}", samples.len(), ms(p50), ms(p99));
    (p50, p99)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100);
    let config = KafkaConfig {
        brokers: std::env::var("SPECAUDIT_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        topic_prefix: format!("bench-{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        ..KafkaConfig::default()
    };
    ensure_topics(&config).await.expect("topics: is the local stack up?");
    let topics = Topics::new(&config.topic_prefix);
    let mut spec = Spec::parse(EXAMPLE).expect("example spec");

    // Baseline: the same bytes, produced without a transaction, until a consumer has them.
    let producer: FutureProducer = client_config(&config)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let consumer = tail(&config, &topics.spec_history);
    let mut baseline = Vec::new();
    for i in 0..rounds + 5 {
        spec.description = format!("baseline-{i:06}");
        let payload = spec.canonical_json();
        let start = Instant::now();
        producer.send(FutureRecord::to(&topics.spec_history).key("baseline").payload(&payload), Duration::from_secs(10)).await.expect("send");
        wait_for(&consumer, spec.description.as_bytes());
        if i >= 5 {
            baseline.push(start.elapsed());
        }
    }
    let base = report("baseline: bare produce -> consumer has it", &mut baseline, None);

    // Second baseline: the same with a fresh producer each time, as a one-shot CLI has.
    let mut cold = Vec::new();
    for i in 0..rounds / 2 + 2 {
        spec.description = format!("cold-{i:06}");
        let payload = spec.canonical_json();
        let start = Instant::now();
        let producer: FutureProducer = client_config(&config).set("enable.idempotence", "true").set("linger.ms", "0").create().expect("producer");
        producer.send(FutureRecord::to(&topics.spec_history).key("baseline").payload(&payload), Duration::from_secs(10)).await.expect("send");
        wait_for(&consumer, spec.description.as_bytes());
        if i >= 2 {
            cold.push(start.elapsed());
        }
    }
    let cold = report("baseline: new producer, produce -> consumer has it", &mut cold, None);

    // publish(): fenced transaction (init, read to the end, check, write two records,
    // commit) until a read_committed consumer of the specs topic has the version.
    let consumer = tail(&config, &topics.specs);
    let mut published = Vec::new();
    for i in 0..rounds + 5 {
        spec.description = format!("publish-{i:06}");
        let meta = Meta { author: "bench".into(), comment: String::new(), expect_version: None };
        let start = Instant::now();
        publish(&config, Change::Replace(spec.clone()), meta).await.expect("publish");
        wait_for(&consumer, spec.description.as_bytes());
        if i >= 5 {
            published.push(start.elapsed());
        }
    }
    report("publish() -> read_committed consumer has it", &mut published, Some(base));
    report("  the same, against the new-producer baseline", &mut published, Some(cold));

    // specctl apply: the same plus a process start and fresh connections.
    let specctl = std::env::current_exe().ok().and_then(|p| Some(p.parent()?.parent()?.join("specctl")));
    match specctl.filter(|p| p.exists()) {
        None => println!("specctl apply: skipped (build it first: cargo build --release -p specaudit-producer --bin specctl)"),
        Some(specctl) => {
            let dir = std::env::temp_dir().join(format!("specaudit-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let mut applied = Vec::new();
            for i in 0..(rounds / 2).max(10) + 2 {
                spec.description = format!("specctl-{i:06}");
                let file = dir.join("spec.yaml");
                std::fs::write(&file, spec.to_yaml()).expect("write spec");
                let start = Instant::now();
                let status = Command::new(&specctl)
                    .args(["apply", "-f"])
                    .arg(&file)
                    .env("SPECAUDIT_BROKERS", &config.brokers)
                    .env("SPECAUDIT_TOPIC_PREFIX", &config.topic_prefix)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .expect("run specctl");
                assert!(status.success());
                wait_for(&consumer, spec.description.as_bytes());
                if i >= 2 {
                    applied.push(start.elapsed());
                }
            }
            report("specctl apply (process) -> consumer has it", &mut applied, Some(base));
            report("  the same, against the new-producer baseline", &mut applied, Some(cold));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
