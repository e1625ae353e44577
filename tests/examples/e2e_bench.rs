//! End-to-end bench: agents → Kafka → ingester → ClickHouse → alarms and reports, against
//! the raw limits measured in the same run.
//!
//! 1. Pipeline: a spec published; the release `specaudit-ingester` and `specaudit-alarmer`
//!    started as processes on fresh topics and a fresh database; a webhook receiver in
//!    this process. `BENCH_AGENTS` agents (SDK, one thread each) check tasks as fast as
//!    they can for `BENCH_SECONDS`, a share of them failing (sent one by one; passes are
//!    rolled up each second). Throughput = assertions the agents had acknowledged /
//!    time from the first check until all of them are queryable.
//! 2. Latency: meanwhile a probe agent asserts a failure of a new critical requirement
//!    every 100 ms. Produce → queryable (first seen by polling ClickHouse every 20 ms)
//!    and produce → webhook received (a critical requirement alarms on one failure).
//! 3. Reports: the compliance report of the spec (from the rollup) against a bare
//!    ClickHouse aggregation of the raw table for the same figures.
//! 4. Baselines: a bare Kafka consume of the same assertions topic, a bare ClickHouse
//!    insert of the same rows, and ClickHouse's Kafka engine on as many rows (as JSON).
//! 5. Memory: peak RSS of the ingester, the alarmer and this process (the agents) under
//!    the load, against each one's RSS at rest (started, connected, idle) just before it.
//!
//! ```sh
//! cargo build --release -p specaudit-ingester -p specaudit-alarmer --bins
//! cargo run --release -p specaudit-tests --example e2e_bench     # stack up first
//! ```
//! Writes `target/e2e_bench.json` (`BENCH_JSON` overrides). Stack addresses as for the
//! tests (`SPECAUDIT_TEST_BROKERS`, `SPECAUDIT_TEST_CLICKHOUSE`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../ingester/tests/support/mod.rs"]
mod support;
#[path = "../../ingester/examples/common/baselines.rs"]
mod baselines;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use specaudit_core::kafka::Topics;
use specaudit_core::record::{now_ms, Outcome};
use specaudit_core::spec::Spec;
use specaudit_producer::agent::{Agent, AgentConfig};
use specaudit_producer::publish::{publish, Change, Meta};
use specaudit_reporter::assemble::{report, Options};
use specaudit_reporter::query::Source;
use specaudit_reporter::scope::Scope;
use specaudit_tests::TestEnv;
use support::{Ingester, Load, RssSampler};

const PROBES: usize = 100;
const PROBE_EVERY: Duration = Duration::from_millis(100);

fn spec_yaml() -> String {
    let mut yaml = String::from(
        "apiVersion: specaudit/v1\nspec: e2e\nowners: [bench]\ncomponents:\n  shop:\n    params: {max_items: 50}\n    requirements:\n\
         \x20     tls:\n        tasks: [checkout]\n        check: {expr: \"facts.tls >= '1.2'\"}\n\
         \x20     cart:\n        tasks: [checkout]\n        check: {schema: {type: object, required: [items], properties: {items: {type: integer, maximum: 50}}}}\n",
    );
    for p in 0..PROBES {
        yaml.push_str(&format!("      probe-{p}: {{severity: critical, description: asserted by the probe}}\n"));
    }
    yaml
}

fn bin(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    let path = me.parent().and_then(|p| p.parent()).expect("target dir").join(name);
    assert!(path.exists(), "build it first: cargo build --release -p {name} --bins");
    path
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Firing notifications: requirement → when it arrived.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<HashMap<String, Instant>>>);

async fn take(State(inbox): State<Inbox>, body: Bytes) -> axum::http::StatusCode {
    let now = Instant::now();
    if let Ok(json) = serde_json::from_slice::<Value>(&body) {
        if json["status"] == "firing" {
            for alert in json["alerts"].as_array().into_iter().flatten() {
                if let Some(requirement) = alert["labels"]["requirement"].as_str() {
                    inbox.0.lock().unwrap().entry(requirement.to_owned()).or_insert(now);
                }
            }
        }
    }
    axum::http::StatusCode::OK
}

async fn receiver() -> (String, Inbox) {
    let inbox = Inbox::default();
    let app = axum::Router::new().route("/hook", axum::routing::post(take)).with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, inbox)
}

/// A release `specaudit-alarmer` on the env's topics, notifying `url`; healthy once its
/// windows are rebuilt.
async fn alarmer(env: &TestEnv, url: &str) -> (std::process::Child, tempfile::NamedTempFile) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}\"\n\n[alarmer]\ngroup_id = \"alarmer-{}\"\ntick = \"100ms\"\n\n\
         [telemetry]\nlisten = \"127.0.0.1:{port}\"\nlog_filter = \"warn\"\n\n\
         [receivers.hook]\ntype = \"webhook\"\nurl = \"{url}\"\nsecret = \"bench\"\n\n[[routes]]\nreceivers = [\"hook\"]\n",
        env.kafka.brokers, env.kafka.topic_prefix, env.id
    );
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), config).unwrap();
    let child = std::process::Command::new(bin("specaudit-alarmer"))
        .arg("--config")
        .arg(file.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start specaudit-alarmer");
    let health = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(&health).await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "the alarmer was not healthy within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, file)
}

async fn start_agent(env: &TestEnv, instance: String) -> Agent {
    let config = AgentConfig::new(env.kafka.clone(), "shop", &instance);
    tokio::task::spawn_blocking(move || Agent::start(config)).await.unwrap().unwrap()
}

/// Every record of the env's assertions topic.
fn all_records(env: &TestEnv, n: u64) -> Vec<Vec<u8>> {
    let topic = Topics::new(&env.kafka.topic_prefix).assertions;
    let consumer: BaseConsumer = specaudit_core::kafka::client_config(&env.kafka).set("group.id", format!("read-{}", env.id)).create().unwrap();
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
    let mut list = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        list.add_partition_offset(&topic, p.id(), Offset::Beginning).unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut out = Vec::with_capacity(n as usize);
    while (out.len() as u64) < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let agents: usize = env_or("BENCH_AGENTS", 2);
    let seconds: u64 = env_or("BENCH_SECONDS", 20);
    let fail_every: u64 = env_or("BENCH_FAIL_EVERY", 4);
    let env = TestEnv::new().await;
    let client = env.client();

    // 1. The spec, the services, the receiver.
    let spec = Spec::parse(&spec_yaml()).unwrap();
    let meta = Meta { author: "bench".into(), comment: "e2e".into(), expect_version: Some(0) };
    publish(&env.kafka, Change::Replace(spec), meta).await.unwrap();
    let ingester = Ingester::spawn_ingester(&bin("specaudit-ingester"), &env, &format!("e2e-{}", env.id), &[]);
    let ingester_rss = RssSampler::start(ingester.pid());
    let (url, inbox) = receiver().await;
    let (mut alarmer, _config) = alarmer(&env, &url).await;
    let alarmer_rss = RssSampler::start(alarmer.id());
    let own_rss = RssSampler::start(std::process::id());
    while !ingester.get("/health").is_some_and(|h| h.contains("200 OK")) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 2. Load and probes.
    let mut fleet = Vec::new();
    for i in 0..agents {
        fleet.push(start_agent(&env, format!("shop-{i}")).await);
    }
    let probe = start_agent(&env, "probe".into()).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // the services' groups settle
    // Each process's memory at rest, connected and idle: the baseline of its peak.
    let idle_mib = |pid: u32| support::rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    let idle = (idle_mib(ingester.pid()), idle_mib(alarmer.id()), idle_mib(std::process::id()));
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = fleet
        .iter()
        .map(|agent| {
            let (agent, stop, checks) = (agent.clone(), stop.clone(), checks.clone());
            std::thread::spawn(move || {
                let (good, bad) = (json!({"tls": "1.3", "items": 3}), json!({"tls": "1.0", "items": 3}));
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    agent.check("checkout", if i % fail_every == 0 { &bad } else { &good });
                    i += 1;
                }
                checks.fetch_add(i, Ordering::Relaxed);
            })
        })
        .collect();
    // Probe rows are looked for every 20 ms from now on, load or not.
    let seen = Arc::new(Mutex::new(HashMap::<String, f64>::new()));
    let watcher = {
        let (client, seen, stop) = (client.clone(), seen.clone(), Arc::new(AtomicBool::new(false)));
        let done = stop.clone();
        let task = tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let rows: Vec<(String, u64)> = client
                    .query("SELECT requirement, ts_ms FROM assertions WHERE requirement LIKE 'shop/probe-%'")
                    .fetch_all()
                    .await
                    .unwrap_or_default();
                let now = now_ms();
                {
                    let mut seen = seen.lock().unwrap();
                    for (requirement, ts) in rows {
                        seen.entry(requirement).or_insert(now.saturating_sub(ts as i64) as f64);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        (stop, task)
    };
    let mut probed: HashMap<String, Instant> = HashMap::new();
    for p in 0..PROBES {
        let requirement = format!("shop/probe-{p}");
        probed.insert(requirement.clone(), Instant::now());
        probe.assert(&requirement, "pay", Outcome::Fail, "payment not verified", None).unwrap();
        tokio::time::sleep(PROBE_EVERY).await;
    }
    tokio::time::sleep(Duration::from_secs(seconds).saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let load_secs = started.elapsed().as_secs_f64();
    let mut emitted = 0u64;
    for agent in fleet.iter().chain([&probe]) {
        let agent = agent.clone();
        let counters = tokio::task::spawn_blocking(move || {
            agent.shutdown(Duration::from_secs(30));
            agent.counters()
        })
        .await
        .unwrap();
        assert_eq!(counters.dropped, 0, "the agents must not drop on a healthy stack");
        emitted += counters.emitted as u64;
    }
    let mut queryable = None;
    while queryable.is_none() || seen.lock().unwrap().len() < PROBES {
        if queryable.is_none() && baselines::count(&client, "SELECT count() FROM assertions").await >= emitted {
            queryable = Some(started.elapsed());
        }
        assert!(started.elapsed() < Duration::from_secs(seconds + 600), "rows missing after 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.0.store(true, Ordering::Relaxed);
    watcher.1.await.unwrap();
    let throughput = emitted as f64 / queryable.unwrap().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while inbox.0.lock().unwrap().len() < PROBES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fired = inbox.0.lock().unwrap().clone();
    let mut to_webhook: Vec<f64> =
        fired.iter().filter_map(|(r, at)| Some(at.duration_since(*probed.get(r)?).as_secs_f64() * 1000.0)).collect();
    to_webhook.sort_by(f64::total_cmp);
    let mut to_query: Vec<f64> = seen.lock().unwrap().values().copied().collect();
    to_query.sort_by(f64::total_cmp);
    let checks = checks.load(Ordering::Relaxed);
    println!(
        "pipeline: {agents} agents, {checks} checks in {load_secs:.1} s ({:.0}/s), {emitted} assertions, all queryable after {:.1} s: {throughput:.0} assertions/s",
        checks as f64 / load_secs,
        queryable.unwrap().as_secs_f64()
    );
    println!(
        "latency, produce → queryable: p50 {:.0} ms, p99 {:.0} ms; produce → webhook: p50 {:.0} ms, p99 {:.0} ms ({} of {PROBES} alarms)",
        percentile(&to_query, 0.5),
        percentile(&to_query, 0.99),
        percentile(&to_webhook, 0.5),
        percentile(&to_webhook, 0.99),
        to_webhook.len()
    );

    // 3. The report against a bare aggregation of the raw table.
    let now = now_ms() as u64;
    let scope = Scope { spec: Some("e2e".into()), component: None, from_ms: now - 3_600_000, to_ms: now + 60_000, severities: Vec::new() };
    let options = Options { now_ms: now_ms() as u64, source: Source::Rollup, ..Options::default() };
    let mut report_ms = Vec::new();
    let mut bare_ms = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        report(&client, &scope, &options).await.unwrap();
        report_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let _: Vec<(String, String, u64, u64)> = client
            .query("SELECT component, requirement, sumIf(count, outcome = 'pass'), sumIf(count, outcome = 'fail') FROM assertions WHERE spec = 'e2e' GROUP BY component, requirement")
            .fetch_all()
            .await
            .unwrap();
        bare_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report_ms.sort_by(f64::total_cmp);
    bare_ms.sort_by(f64::total_cmp);
    let (report_p50, bare_p50) = (percentile(&report_ms, 0.5), percentile(&bare_ms, 0.5));
    println!("report: p50 {report_p50:.1} ms; bare aggregation of the raw table: p50 {bare_p50:.1} ms");
    let peaks = (ingester_rss.peak_mib(), alarmer_rss.peak_mib(), own_rss.peak_mib());
    println!(
        "peak RSS under load (idle before it): ingester {:.0} MiB ({:.0}), alarmer {:.0} MiB ({:.0}), agents (this process) {:.0} MiB ({:.0})",
        peaks.0, idle.0, peaks.1, idle.1, peaks.2, idle.2
    );
    drop(ingester);
    let _ = alarmer.kill();
    let _ = alarmer.wait();

    // 4. Baselines on the same topic and rows.
    let records = all_records(&env, emitted);
    let consume = baselines::bare_consume(&env, emitted);
    let insert = baselines::bare_insert(&env, &baselines::assertions(records.into_iter()), baselines::Order::AsTheyCame).await;
    let engine_env = TestEnv::new().await;
    let engine = baselines::kafka_engine(&engine_env, &Load::new(600), emitted.max(200_000)).await;
    let limit = consume.min(insert);
    println!("bare kafka consume: {consume:.0}/s; bare clickhouse insert: {insert:.0}/s; ratio to the smaller: {:.2}", throughput / limit);
    match &engine {
        Ok(rates) => println!("kafka engine (json, from start): {:.0}/s; ratio {:.2}", rates.overall, throughput / rates.overall),
        Err(error) => println!("kafka engine failed: {error}"),
    }

    let result = json!({
        "agents": agents,
        "seconds": load_secs,
        "checks_per_s": checks as f64 / load_secs,
        "assertions": emitted,
        "assertions_per_s_end_to_end": throughput,
        "bare_kafka_consume_per_s": consume,
        "bare_clickhouse_insert_per_s": insert,
        "ratio_vs_smaller_raw_limit": throughput / limit,
        "kafka_engine_per_s": engine.as_ref().ok().map(|r| r.overall),
        "ratio_vs_kafka_engine": engine.as_ref().ok().map(|r| throughput / r.overall),
        "latency_queryable_p50_ms": percentile(&to_query, 0.5),
        "latency_queryable_p99_ms": percentile(&to_query, 0.99),
        "latency_webhook_p50_ms": percentile(&to_webhook, 0.5),
        "latency_webhook_p99_ms": percentile(&to_webhook, 0.99),
        "alarms_received": to_webhook.len(),
        "report_p50_ms": report_p50,
        "bare_aggregation_p50_ms": bare_p50,
        "peak_rss_mib": {"ingester": peaks.0, "alarmer": peaks.1, "agents": peaks.2},
        "idle_rss_mib": {"ingester": idle.0, "alarmer": idle.1, "agents": idle.2},
    });
    let path = std::env::var("BENCH_JSON").unwrap_or_else(|_| "target/e2e_bench.json".into());
    std::fs::write(&path, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    println!("result written to {path}");
    for env in [env, engine_env] {
        env.cleanup().await;
    }
}
