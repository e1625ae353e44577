//! End-to-end ingest bench against the real stack, every figure from the same run:
//!
//! - ingester: the real `specaudit-ingester` (release) started on a topic already holding
//!   N Avro assertions; its sustained rate until all N are queryable in the raw table and
//!   the rollup (producing first keeps the producer off the two cores), peak RSS;
//! - raw limits: a bare Kafka consume of the same topic, a bare ClickHouse insert of the
//!   same rows (RowBinary, LZ4, inserts of the ingester's default size, no rollup), as
//!   they came and sorted by the table's key as the ingester sends them;
//! - ClickHouse's Kafka engine with materialized views into a raw table and the rollup,
//!   against the ingester, both on the same rows as JSON (18.16 has no Avro input format);
//! - p99 produce → queryable latency of probe records under a load at a tenth of the
//!   ingester's measured rate.
//!
//! `cargo build --release -p specaudit-ingester --example ingest_bench && target/release/examples/ingest_bench`
//! Environment: SPECAUDIT_TEST_BROKERS, SPECAUDIT_TEST_CLICKHOUSE (stack addresses),
//! BENCH_N (default 1,000,000), BENCH_ROUNDS (rounds of the ingester against the raw limits,
//! each on a fresh topic; the ratios reported are their medians; default 3), BENCH_JSON
//! (result file, default target/ingest_bench.json).

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "common/baselines.rs"]
mod baselines;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::producer::Producer;
use specaudit_core::codec::Codec;
use specaudit_core::kafka::Topics;
use specaudit_core::record::Assertion;
use specaudit_tests::TestEnv;
use baselines::{backlog, bare_consume, bare_insert, catch_up, count, kafka_engine, Order, Rates};
use support::{Ingester, Load, RssSampler};

fn exe() -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.parent().and_then(|p| p.parent()).expect("target dir").join("specaudit-ingester")
}

async fn ready(ingester: &Ingester, client: &clickhouse::Client) {
    while !ingester.get("/health").is_some_and(|h| h.contains("200 OK")) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Migrated and in the group with its partitions (the group's first join waits 3 s).
    while count(client, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'assertions_minutely'").await == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
}

/// Ingester run on a full topic: its rates, and its peak RSS in MiB.
async fn ingester_run(env: &TestEnv, load: &Load, n: u64, json: bool) -> (Rates, f64) {
    let client = env.client();
    backlog(env, &Topics::new(&env.kafka.topic_prefix).assertions, load, n, json);
    let started = Instant::now();
    let ingester = Ingester::spawn_ingester(&exe(), env, &format!("bench-{}", env.id), &[]);
    let rss = RssSampler::start(ingester.pid());
    let rate = catch_up(&client, "assertions", n, Some(load.count_sum(n)), started).await;
    let peak = rss.peak_mib();
    print_flush_metrics(&ingester);
    drop(ingester);
    (rate, peak)
}

/// Where the ingester's time went: the sums and counts of its flush summaries.
fn print_flush_metrics(ingester: &Ingester) {
    let wanted = ["_seconds_sum", "_seconds_count", "_rows_sum", "_rows_count"];
    for line in ingester.get("/metrics").unwrap_or_default().lines() {
        if line.starts_with("specaudit_ingester_") && wanted.iter().any(|w| line.split(['{', ' ']).next().is_some_and(|n| n.ends_with(w))) {
            println!("  {line}");
        }
    }
}

/// p50/p99 produce → queryable of 100 probes/s under a background load at `rate` rows/s.
async fn latency(env: &TestEnv, load: &std::sync::Arc<Load>, rate: f64, seconds: u64) -> (f64, f64, usize) {
    let client = env.client();
    let ingester = Ingester::spawn_ingester(&exe(), env, &format!("lat-{}", env.id), &[]);
    ready(&ingester, &client).await;
    let topic = Topics::new(&env.kafka.topic_prefix).assertions;
    let kafka = env.kafka.clone();
    let load = load.clone();
    let sender = std::thread::spawn(move || {
        let producer = support::producer(&kafka);
        let codec = Codec::<Assertion>::new();
        let started = Instant::now();
        let mut sent = 0u64;
        let mut probe = 0u64;
        while started.elapsed() < Duration::from_secs(seconds) {
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            while sent < due {
                let (key, bytes) = load.record(sent);
                support::send(&producer, &topic, key, &bytes);
                sent += 1;
            }
            if started.elapsed().as_millis() as u64 / 10 > probe {
                let mut a = codec.decode(&load.record(0).1).expect("decode");
                a.spec = "probe".into();
                a.instance = format!("p{probe}");
                a.ts = specaudit_core::record::now_ms();
                support::send(&producer, &topic, &a.instance, &codec.encode(&a).expect("encode"));
                producer.poll(Duration::ZERO);
                probe += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        producer.flush(Duration::from_secs(60)).expect("flush");
        probe
    });
    let mut seen: HashMap<String, f64> = HashMap::new();
    let mut probes: Option<(u64, Instant)> = None;
    loop {
        let rows: Vec<(String, i64)> = client
            .query("SELECT instance, ts_ms FROM assertions WHERE spec = 'probe'")
            .fetch_all()
            .await
            .unwrap_or_default();
        let now = specaudit_core::record::now_ms();
        for (instance, ts) in rows {
            seen.entry(instance).or_insert((now - ts) as f64);
        }
        if probes.is_none() && sender.is_finished() {
            probes = Some((0, Instant::now()));
        }
        if let Some((_, since)) = probes {
            // Every probe is in once the load has ended and two polls found nothing new.
            if since.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = sender.join().unwrap_or(0);
    assert_eq!(seen.len() as u64, sent, "every probe must arrive");
    drop(ingester);
    let mut lat: Vec<f64> = seen.into_values().collect();
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    (pct(0.5), pct(0.99), lat.len())
}

/// The ingester against the raw limits, on a fresh topic and database.
struct Round {
    /// Sustained rows/s, and from its start.
    ingester: f64,
    from_start: f64,
    peak_mib: f64,
    consume: f64,
    insert: f64,
    sorted_insert: f64,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.ingester / self.consume.min(self.insert)
    }

    fn sorted_ratio(&self) -> f64 {
        self.ingester / self.consume.min(self.sorted_insert)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ingester_rows_per_s": self.ingester,
            "ingester_rows_per_s_from_start": self.from_start,
            "ingester_peak_rss_mib": self.peak_mib,
            "bare_kafka_consume_rows_per_s": self.consume,
            "bare_clickhouse_insert_rows_per_s": self.insert,
            "bare_clickhouse_insert_table_order_rows_per_s": self.sorted_insert,
            "ratio_vs_smaller_raw_limit": self.ratio(),
            "ratio_vs_smaller_raw_limit_table_order": self.sorted_ratio(),
        })
    }
}

async fn round(load: &Load, assertions: &[specaudit_core::record::Assertion], n: u64) -> Round {
    let env = TestEnv::new().await;
    let (ingester, peak_mib) = ingester_run(&env, load, n, false).await;
    // The steady state is what compares with the raw limits, which have no start-up.
    let rate = ingester.sustained.unwrap_or(ingester.overall);
    println!("  ingester (avro): sustained {rate:.0} rows/s, {:.0} rows/s from start, peak RSS {peak_mib:.1} MiB", ingester.overall);
    let consume = bare_consume(&env, n);
    println!("  bare kafka consume: {consume:.0} rows/s");
    let insert = bare_insert(&env, assertions, Order::AsTheyCame).await;
    println!("  bare clickhouse insert: {insert:.0} rows/s");
    // The ingester sends each insert sorted by the table's key, which spares ClickHouse its
    // sort: the same bare insert in that order is the stricter limit.
    let sorted_insert = bare_insert(&env, assertions, Order::TableKey).await;
    println!("  bare clickhouse insert, rows in table order: {sorted_insert:.0} rows/s");
    env.cleanup().await;
    let round = Round { ingester: rate, from_start: ingester.overall, peak_mib, consume, insert, sorted_insert };
    println!("  ratio vs the smaller raw limit: {:.2} ({:.2} against the insert in table order)", round.ratio(), round.sorted_ratio());
    round
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let load = std::sync::Arc::new(Load::new(600));
    assert!(exe().exists(), "build the ingester first: cargo build --release -p specaudit-ingester");

    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let assertions = baselines::assertions((0..n).map(|i| load.record(i).1));
    let mut measured = Vec::with_capacity(rounds);
    for r in 1..=rounds {
        println!("round {r} of {rounds}");
        measured.push(round(&load, &assertions, n).await);
    }
    drop(assertions);
    let ratio_limit = median(measured.iter().map(Round::ratio));
    let ratio_sorted_limit = median(measured.iter().map(Round::sorted_ratio));
    let ingester_rate = median(measured.iter().map(|r| r.ingester));
    let peak_mib = measured.iter().map(|r| r.peak_mib).fold(0.0, f64::max);

    let json_env = TestEnv::new().await;
    let (ingester_json, _) = ingester_run(&json_env, &load, n, true).await;
    println!("ingester (json): {:.0} rows/s from start", ingester_json.overall);
    let engine_env = TestEnv::new().await;
    let engine = kafka_engine(&engine_env, &load, n).await;
    match &engine {
        Ok(rate) => println!("kafka engine (json): {:.0} rows/s from start", rate.overall),
        Err(error) => println!("kafka engine failed: {error}"),
    }

    let lat_env = TestEnv::new().await;
    let (p50, p99, probes) = latency(&lat_env, &load, ingester_rate / 10.0, 20).await;
    println!("latency at {:.0} rows/s: p50 {p50:.0} ms, p99 {p99:.0} ms over {probes} probes", ingester_rate / 10.0);

    // The engine writes one block per million rows or so, so only the from-start rates
    // (group join included on both sides) compare.
    let ratio_engine = engine.as_ref().map(|e| ingester_json.overall / e.overall).ok();
    println!("ratio vs the smaller raw limit, median of {rounds} rounds: {ratio_limit:.2} ({ratio_sorted_limit:.2} against the insert in table order)");
    if let Some(r) = ratio_engine {
        println!("ratio vs the kafka engine (json, from start): {r:.2}");
    }
    let result = serde_json::json!({
        "rows": n,
        "rounds": measured.iter().map(Round::json).collect::<Vec<_>>(),
        "ingester_rows_per_s_median": ingester_rate,
        "ingester_json_rows_per_s_from_start": ingester_json.overall,
        "ratio_vs_smaller_raw_limit": ratio_limit,
        "ratio_vs_smaller_raw_limit_table_order": ratio_sorted_limit,
        "kafka_engine_rows_per_s_from_start": engine.as_ref().ok().map(|e| e.overall),
        "kafka_engine_error": engine.as_ref().err(),
        "ratio_vs_kafka_engine": ratio_engine,
        "latency_load_rows_per_s": ingester_rate / 10.0,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "latency_probes": probes,
        "ingester_peak_rss_mib": peak_mib,
    });
    let path = std::env::var("BENCH_JSON").unwrap_or_else(|_| "target/ingest_bench.json".into());
    std::fs::write(&path, serde_json::to_string_pretty(&result).expect("json")).expect("write result");
    println!("result written to {path}");
    for env in [json_env, engine_env, lat_env] {
        env.cleanup().await;
    }
}
