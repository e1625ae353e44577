//! `check` latency with the broker up against the broker unreachable, in the same run, and
//! the agent's memory during a sustained outage.
//!
//! Every check fails, so every check hands a record to the producer queue: the path that
//! could block if anything did. With the broker up the records flow to Kafka; with it
//! unreachable they fill the bounded queue and are dropped and counted.
//!
//! Run (with the local stack up):
//!   cargo run --release -p specaudit-producer --example check_latency -- [CHECKS] [OUTAGE_SECS] [RATE]

use std::time::{Duration, Instant};

use serde_json::json;
use specaudit_core::config::KafkaConfig;
use specaudit_core::record::SpecVersion;
use specaudit_core::spec::Spec;
use specaudit_producer::agent::{Agent, AgentConfig};

const SPEC: &str = "apiVersion: specaudit/v1\nspec: latency\ncomponents:\n  web:\n    requirements:\n      tls:\n        check: {expr: facts.tls >= '1.2'}\n";

fn agent(brokers: &str, queue_bytes: usize) -> Agent {
    let spec = Spec::parse(SPEC).unwrap_or_else(|e| panic!("{e}"));
    let version = SpecVersion {
        spec: spec.spec.clone(),
        version: 1,
        ts: 0,
        author: "bench".into(),
        comment: String::new(),
        sha256: spec.sha256(),
        deleted: false,
        document: spec.canonical_json(),
        patch: "[]".into(),
    };
    let kafka = KafkaConfig { brokers: brokers.into(), topic_prefix: "bench-latency.".into(), ..KafkaConfig::default() };
    let mut config = AgentConfig::new(kafka, "web", "bench-1");
    config.queue_bytes = queue_bytes;
    Agent::with_specs(config, &[version]).unwrap_or_else(|e| panic!("{e}"))
}

fn percentiles(mut ns: Vec<u64>) -> (u64, u64, u64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q) as usize];
    (at(0.5), at(0.99), at(0.999))
}

fn latencies(agent: &Agent, checks: usize) -> Vec<u64> {
    let facts = json!({"tls": "1.0"});
    (0..checks)
        .map(|_| {
            let start = Instant::now();
            agent.check("serve", &facts);
            start.elapsed().as_nanos() as u64
        })
        .collect()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let checks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let outage_secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let brokers = std::env::var("SPECAUDIT_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let queue = 16 * 1024 * 1024;

    // Nothing listens on port 1: the broker is unreachable for the whole run.
    let (up, down) = (agent(&brokers, queue), agent("127.0.0.1:1", queue));
    let (mut up_ns, mut down_ns) = (Vec::new(), Vec::new());
    // Interleaved rounds, so machine noise hits both alike.
    for _ in 0..10 {
        up_ns.extend(latencies(&up, checks / 10));
        down_ns.extend(latencies(&down, checks / 10));
    }
    let (u50, u99, u999) = percentiles(up_ns);
    let (d50, d99, d999) = percentiles(down_ns);
    println!("check latency, fail path, {checks} checks each, interleaved:");
    println!("  broker up:   p50 {u50} ns  p99 {u99} ns  p99.9 {u999} ns");
    println!("  broker down: p50 {d50} ns  p99 {d99} ns  p99.9 {d999} ns  (dropped {})", down.counters().dropped);
    println!("  ratio down/up: p50 {:.2}x  p99 {:.2}x", d50 as f64 / u50 as f64, d99 as f64 / u99 as f64);
    up.shutdown(Duration::from_secs(10));

    // A sustained outage at `rate` checks/s: memory must stay within the queue bound.
    println!("outage of {outage_secs} s at {rate} checks/s (queue bound {} MiB):", queue / (1024 * 1024));
    let start_rss = rss_kib();
    let mut peak = start_rss;
    let facts = json!({"tls": "1.0"});
    let started = Instant::now();
    let mut done: u64 = 0;
    while started.elapsed() < Duration::from_secs(outage_secs) {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while done < due {
            down.check("serve", &facts);
            done += 1;
        }
        peak = peak.max(rss_kib());
        std::thread::sleep(Duration::from_millis(10));
    }
    let counters = down.counters();
    println!(
        "  {done} checks ({:.0}/s), {} dropped; RSS at start {} MiB, peak {} MiB, growth {} MiB",
        done as f64 / started.elapsed().as_secs_f64(),
        counters.dropped,
        start_rss / 1024,
        peak / 1024,
        (peak - start_rss) / 1024
    );
    down.shutdown(Duration::ZERO);
}
