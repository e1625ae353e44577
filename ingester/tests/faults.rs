//! Exactly once through faults, against the real stack and the real `specaudit-ingester`
//! binary: kill -9 at random moments, a rebalance between two ingesters, ClickHouse
//! stopped for 30 s, and a SIGTERM drain. After each, every produced assertion is in the
//! raw table once and in the rollup once.
//!
//! The ClickHouse outage stops the stack's ClickHouse through `deploy/local/stack`, with
//! this process's environment (so `SPECAUDIT_STATE_DIR` and the port variables choose
//! which stack), and starts it again before the test ends, even when it fails. The tests
//! here take one lock, so they never overlap; cargo runs test binaries one at a time, so
//! no other test sees ClickHouse down. Load size: `SPECAUDIT_TEST_LOAD` (default 1,000,000
//! for the kill -9 test, a fifth of it for the others).

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use specaudit_tests::stack::Outage;
use specaudit_tests::TestEnv;
use support::{counts, produce, wait_for_rows, wait_for_some, Counts, Ingester, Load, RssSampler};

const EXE: &str = env!("CARGO_BIN_EXE_specaudit-ingester");
/// Generous bound so a broken run fails instead of hanging; not a performance check.
const WITHIN: Duration = Duration::from_secs(900);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn exe() -> &'static Path {
    Path::new(EXE)
}

/// Produces `n` records of `load` on a thread; `sent` counts them as they go.
fn produce_in_background(env: &TestEnv, load: Arc<Load>, n: u64) -> (std::thread::JoinHandle<()>, Arc<AtomicU64>) {
    let sent = Arc::new(AtomicU64::new(0));
    let kafka = env.kafka.clone();
    let topic = specaudit_core::kafka::Topics::new(&kafka.topic_prefix).assertions;
    let counter = sent.clone();
    let handle = std::thread::spawn(move || produce(&kafka, &topic, &load, n, Some(&counter)));
    (handle, sent)
}

fn assert_exactly_once(c: Counts, produced: u64, load: &Load) {
    assert_eq!(c.rows, produced, "raw rows vs produced: {c:?}");
    assert_eq!(c.unique_ids, c.rows, "duplicated assertion ids: {c:?}");
    assert_eq!(c.raw_sum, load.count_sum(produced), "sum(count) in the raw table: {c:?}");
    assert_eq!(c.rollup_sum, c.raw_sum, "rollup sums vs raw table: {c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_neither_loses_nor_doubles() {
    let _serial = serial();
    let env = TestEnv::new().await;
    let n = support::load_size(1_000_000);
    let load = Arc::new(Load::new(60));
    let group = format!("test-{}", env.id);
    let (producer, sent) = produce_in_background(&env, load.clone(), n);
    let client = env.client();

    // Static membership: a restarted copy gets the partitions back without waiting for the
    // killed one's session to time out.
    let member = [("SPECAUDIT__INGEST__INSTANCE_ID", "kill-test")];
    for kill in 0..10 {
        let stored = counts(&client).await.map(|c| c.rows).unwrap_or(0);
        let ingester = Ingester::spawn_ingester(exe(), &env, &group, &member);
        // Let it get going (some rows of its own stored), then kill it at a moment chosen
        // at random: mid-insert, mid-rollup, before or after a commit.
        wait_for_rows(&client, (stored + 1).min(n), WITHIN).await;
        tokio::time::sleep(support::random_between(Duration::ZERO, Duration::from_millis(1500))).await;
        ingester.kill();
        let after = counts(&client).await.map(|c| c.rows).unwrap_or(0);
        eprintln!("kill {kill}: {after} rows stored, {} produced", sent.load(Ordering::Relaxed));
    }
    producer.join().expect("producer");
    let ingester = Ingester::spawn_ingester(exe(), &env, &group, &member);
    let c = wait_for_rows(&client, n, WITHIN).await;
    // Give a straggling duplicate, if any, the chance to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(ingester);
    assert_exactly_once(counts(&client).await.unwrap_or(c), n, &load);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_between_two_ingesters_mid_load_neither_loses_nor_doubles() {
    let _serial = serial();
    let env = TestEnv::new().await;
    let n = support::load_size(1_000_000) / 5;
    let load = Arc::new(Load::new(60));
    let group = format!("test-{}", env.id);
    let client = env.client();
    let first = Ingester::spawn_ingester(exe(), &env, &group, &[]);
    let (producer, _) = produce_in_background(&env, load.clone(), n);

    wait_for_some(&client, n / 5).await;
    // A second member joins: the partitions are split between the two.
    let second = Ingester::spawn_ingester(exe(), &env, &group, &[]);
    wait_for_some(&client, n / 2).await;
    // The first leaves cleanly: the second takes everything over.
    assert!(first.terminate().success());
    producer.join().expect("producer");
    let c = wait_for_rows(&client, n, WITHIN).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(second);
    assert_exactly_once(counts(&client).await.unwrap_or(c), n, &load);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_for_30_s_pauses_intake_with_bounded_memory_then_catches_up() {
    let _serial = serial();
    let env = TestEnv::new().await;
    let n = support::load_size(1_000_000) / 5;
    let load = Arc::new(Load::new(60));
    let group = format!("test-{}", env.id);
    let client = env.client();
    let ingester = Ingester::spawn_ingester(exe(), &env, &group, &[]);
    let rss = RssSampler::start(ingester.pid());
    let topic = specaudit_core::kafka::Topics::new(&env.kafka.topic_prefix).assertions;
    let (kafka, first) = (env.kafka.clone(), load.clone());
    tokio::task::spawn_blocking(move || support::produce_range(&kafka, &topic, &first, 0..n / 2, None)).await.expect("producer");

    wait_for_some(&client, n / 10).await;
    {
        let outage = Outage::begin("clickhouse");
        // The rest of the load arrives in Kafka while ClickHouse is away.
        let topic = specaudit_core::kafka::Topics::new(&env.kafka.topic_prefix).assertions;
        let (kafka, rest) = (env.kafka.clone(), load.clone());
        tokio::task::spawn_blocking(move || support::produce_range(&kafka, &topic, &rest, n / 2..n, None)).await.expect("producer");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(ingester.metric("specaudit_ingester_paused", ""), Some(1.0), "intake is paused during the outage");
        assert!(ingester.get("/health").is_some_and(|h| h.contains("200 OK")), "the process stays up and healthy");
        outage.end();
    }
    let c = wait_for_rows(&client, n, WITHIN).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ingester.metric("specaudit_ingester_paused", ""), Some(0.0), "intake resumed");
    let peak = rss.peak_mib();
    drop(ingester);
    eprintln!("ingester peak RSS {peak:.1} MiB");
    assert_exactly_once(counts(&client).await.unwrap_or(c), n, &load);
    assert!(peak < 256.0, "memory must stay bounded while ClickHouse is down: peak RSS {peak:.1} MiB");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_pending_batches_and_commits_before_exit() {
    let _serial = serial();
    let env = TestEnv::new().await;
    let n = 20_000;
    let load = Load::new(10);
    let group = format!("test-{}", env.id);
    let topic = specaudit_core::kafka::Topics::new(&env.kafka.topic_prefix).assertions;
    // Batches that never fill up nor age out: only the drain can write them.
    let ingester = Ingester::spawn_ingester(exe(), &env, &group, &[("SPECAUDIT__INGEST__MAX_DELAY", "1h"), ("SPECAUDIT__INGEST__MAX_ROWS", "1000000"), ("SPECAUDIT__INGEST__MAX_BYTES", "1000000000")]);
    produce(&env.kafka, &topic, &load, n, None);
    let deadline = std::time::Instant::now() + WITHIN;
    while ingester.metric("specaudit_ingester_records_total", "table=\"assertions\"") != Some(n as f64) {
        assert!(std::time::Instant::now() < deadline, "the ingester did not consume the load");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client = env.client();
    assert_eq!(counts(&client).await.map(|c| c.rows).unwrap_or(0), 0, "nothing written before the drain");

    assert!(ingester.terminate().success(), "exits 0 after draining");
    assert_exactly_once(counts(&client).await.expect("counts"), n, &load);
    for (partition, committed, end) in support::committed_and_ends(&env.kafka, &group, &topic) {
        // Partitions no key hashed to have nothing to commit.
        let committed = if end == 0 { 0 } else { committed };
        assert_eq!(committed, end, "partition {partition}: the drain commits up to the end");
    }
    env.cleanup().await;
}
