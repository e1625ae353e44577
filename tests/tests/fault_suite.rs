//! The fault suite: the real `specaudit-ingester` and `specaudit-alarmer` binaries, two of
//! each in their consumer groups, under a steady assertion load, through one fault after
//! another — kill -9 and SIGSTOP of an ingester and of an alarmer, a restart of Kafka and
//! of ClickHouse, and the webhook receiver down for 20 s. After each fault the tables are
//! checked (nothing lost so far, nothing doubled); at the end, exactly once in full: the
//! raw table holds every acknowledged assertion once and the rollup agrees, and every
//! alarm incident was notified once firing and once resolved.
//!
//! What "once" means for notifications is what the alarmer promises (see its crate
//! documentation): a transition is logged after its receivers took it, so a restart or a
//! rebalance neither repeats nor loses a notification, except when a copy dies between a
//! receiver's answer and Kafka's ack of the logged event. The suite allows a repeated
//! firing (or resolved) notification of an incident only there: the first copy arrived
//! within [`DUPLICATE_WINDOW`] before an alarmer was killed.
//!
//! Pauses stay shorter than the group session timeouts (45 s for the ingesters, 10 s set
//! here for the alarmers): a process frozen longer is evicted and wakes up as a zombie,
//! which both services document as outside what they guard against.
//!
//! Stops the stack's Kafka and ClickHouse through `deploy/local/stack` with this
//! process's environment (`SPECAUDIT_STATE_DIR` and the port variables choose the stack).
//! Load: `SPECAUDIT_TEST_LOAD` assertions per second (default 400); the suite takes about
//! four minutes whatever the load.

mod alarmer_common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alarmer_common::{Received, Receiver, SECRET};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use specaudit_core::codec::Codec;
use specaudit_core::record::{now_ms, Assertion, Outcome, Severity};
use specaudit_tests::integrity::{counts, wait_for_rows};
use specaudit_tests::process::{workspace_bin, Service};
use specaudit_tests::stack::{serial, Outage};
use specaudit_tests::TestEnv;

/// The alarm rule's window: a burst stays alarming this long after its last failure.
const WINDOW_MS: i64 = 30_000;
/// Instances that fail in bursts, one starting every `BURST_EVERY / FAILING`: about
/// seven alarms fire at any moment, on both alarmers' partitions.
const FAILING: i64 = 12;
const BURST_EVERY_MS: i64 = 60_000;
const BURST_MS: i64 = 4_000;
/// A failing instance sends one assertion per this long.
const FAILURE_EVERY_MS: i64 = 250;
/// The rule's `failures_at_least`: a burst cut shorter by the end of the load cannot fire.
const FAILURES_TO_FIRE: i64 = 3;
/// A repeated notification is tolerated only if its first copy arrived this shortly
/// before an alarmer was killed (delivered, but the kill beat the log's ack).
const DUPLICATE_WINDOW: i64 = 2_000;
/// The alarmers' group session: a killed copy's partitions move after this long.
const ALARMER_SESSION: &str = "10000";

/// What the producer got acknowledged, and the failure bursts it sent.
#[derive(Default)]
struct Tally {
    acked: AtomicU64,
    /// sum(count) over the acknowledged records.
    acked_sum: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
    /// (instance, first failure ts, last failure ts).
    bursts: Mutex<Vec<(String, i64, i64)>>,
}

struct Acks(Arc<Tally>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, count: usize) {
        match result {
            Ok(_) => {
                self.0.acked.fetch_add(1, Ordering::SeqCst);
                self.0.acked_sum.fetch_add(count as u64, Ordering::SeqCst);
            }
            Err((error, _)) => {
                eprintln!("delivery failed: {error}");
                self.0.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

fn assertion(component: &str, instance: &str, outcome: Outcome, count: i64) -> Assertion {
    Assertion {
        assertion_id: uuid::Uuid::now_v7(),
        ts: now_ms(),
        spec: "suite".into(),
        spec_version: 1,
        component: component.into(),
        instance: instance.into(),
        agent_id: format!("{component}/{instance}"),
        requirement: format!("{component}/healthy"),
        task: "serve".into(),
        outcome,
        severity: Severity::Major,
        count,
        message: if outcome == Outcome::Fail { "unhealthy".into() } else { String::new() },
        details: String::new(),
        labels: BTreeMap::new(),
    }
}

/// Produces `rate` passes per second from 40 instances of `svc.web`, and one assertion
/// per 250 ms from each of the `FAILING` instances of `svc.bad`, which fail for `BURST_MS`
/// every `BURST_EVERY_MS` (staggered). Every record waits for its ack (no timeout
/// within the suite; idempotent, so a retry never doubles a record).
fn load(env: &TestEnv, rate: u64, tally: Arc<Tally>) -> std::thread::JoinHandle<()> {
    let topic = specaudit_core::kafka::Topics::new(&env.kafka.topic_prefix).assertions;
    let producer: ThreadedProducer<Acks> = specaudit_core::kafka::client_config(&env.kafka)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "600000")
        .create_with_context(Acks(tally.clone()))
        .expect("producer");
    std::thread::spawn(move || {
        let codec = Codec::<Assertion>::new();
        let send = |a: &Assertion| {
            let key = format!("{}/{}", a.component, a.instance);
            let bytes = codec.encode(a).expect("encode");
            let mut record = BaseRecord::with_opaque_to(&topic, a.count as usize).key(&key).payload(&bytes);
            loop {
                match producer.send(record) {
                    Ok(()) => return,
                    Err((_, r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        };
        let start = Instant::now();
        let per_tick = (rate / 20).max(1);
        let mut open: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut seq = 0u64;
        let mut tick = 0u64;
        while !tally.stop.load(Ordering::SeqCst) {
            for _ in 0..per_tick {
                let a = assertion("svc.web", &format!("web-{}", seq % 40), Outcome::Pass, (seq % 3) as i64 + 1);
                send(&a);
                seq += 1;
            }
            if tick.is_multiple_of(5) {
                let elapsed = start.elapsed().as_millis() as i64;
                for i in 0..FAILING {
                    let offset = 5_000 + i * BURST_EVERY_MS / FAILING;
                    let failing = elapsed >= offset && (elapsed - offset) % BURST_EVERY_MS < BURST_MS;
                    let instance = format!("bad-{i}");
                    let a = assertion("svc.bad", &instance, if failing { Outcome::Fail } else { Outcome::Pass }, 1);
                    send(&a);
                    if failing {
                        open.entry(instance).or_insert((a.ts, a.ts)).1 = a.ts;
                    } else if let Some((first, last)) = open.remove(&instance) {
                        tally.bursts.lock().expect("bursts").push((instance, first, last));
                    }
                }
            }
            tick += 1;
            let next = start + Duration::from_millis(50 * tick);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        tally.bursts.lock().expect("bursts").extend(open.into_iter().map(|(i, (f, l))| (i, f, l)));
        producer.flush(Duration::from_secs(300)).expect("flush");
    })
}

/// The alarmer's config file: the test's topics, a short session so a killed copy's
/// partitions move on quickly, one rule alarming per failing instance, the receiver.
fn alarmer_config(env: &TestEnv, hook: &Receiver) -> tempfile::NamedTempFile {
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"

[kafka.client]
"session.timeout.ms" = "{ALARMER_SESSION}"
"heartbeat.interval.ms" = "1000"

[alarmer]
group_id = "alarmer-{id}"
tick = "100ms"
critical_single_failure = false
min_lookback = "1m"
drain_timeout = "2s"

[notify]
retry_initial = "100ms"
retry_max = "1s"

[receivers.hook]
type = "webhook"
url = "{url}"
secret = "{SECRET}"
timeout = "2s"

[[routes]]
receivers = ["hook"]

[[rules]]
name = "unhealthy"
match = {{ component = "svc.bad" }}
group_by = ["component", "instance", "requirement"]
when = {{ failures_at_least = {FAILURES_TO_FIRE}, window = "{window}s" }}
"#,
        brokers = env.kafka.brokers,
        prefix = env.kafka.topic_prefix,
        id = env.id,
        url = hook.url,
        window = WINDOW_MS / 1000,
    );
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().expect("config file");
    file.write_all(text.as_bytes()).expect("config file");
    file
}

struct Fleet {
    env: TestEnv,
    ingester_exe: PathBuf,
    alarmer_exe: PathBuf,
    config: tempfile::NamedTempFile,
    group: String,
    ingesters: [Option<Service>; 2],
    alarmers: [Option<Service>; 2],
    /// When an alarmer was killed (ms).
    kills: Vec<i64>,
}

impl Fleet {
    fn ingester(&mut self, i: usize) {
        let member = format!("suite-{i}");
        let extra = [("SPECAUDIT__INGEST__INSTANCE_ID", member.as_str())];
        self.ingesters[i] = Some(Service::spawn_ingester(&self.ingester_exe, &self.env, &self.group, &extra));
    }

    async fn alarmer(&mut self, i: usize) {
        let config = self.config.path().display().to_string();
        let name = format!("specaudit-alarmer-{}", self.env.id);
        let alarmer = Service::spawn(&self.alarmer_exe, &["--config", &config], &name, &[]);
        let deadline = Instant::now() + Duration::from_secs(90);
        while !alarmer.healthy() {
            assert!(Instant::now() < deadline, "alarmer {i} not healthy within 90 s; log: {}", alarmer.log.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.alarmers[i] = Some(alarmer);
    }

    fn take(slot: &mut Option<Service>) -> Service {
        slot.take().expect("running")
    }
}

/// Nothing acknowledged so far is missing, nothing is stored twice.
async fn check_so_far(client: &clickhouse::Client, tally: &Tally, after: &str) {
    let acked = tally.acked.load(Ordering::SeqCst);
    let started = Instant::now();
    let c = wait_for_rows(client, acked, Duration::from_secs(180)).await;
    assert_eq!(c.unique_ids, c.rows, "after {after}: duplicated assertion ids: {c:?}");
    eprintln!("after {after}: {} rows, {acked} acknowledged before, caught up in {:?}", c.rows, started.elapsed());
}

fn starts_at(r: &Received) -> &str {
    r.json["alerts"][0]["startsAt"].as_str().unwrap_or("")
}

fn ms(rfc3339: &str) -> i64 {
    // 2026-11-25T08:00:00.000Z → epoch ms (days from the civil date, then the time).
    let p = |range: std::ops::Range<usize>| rfc3339.get(range).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let (y, m, d) = (p(0..4), p(5..7), p(8..10));
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5 + d - 719_469;
    ((days * 24 + p(11..13)) * 60 + p(14..16)) * 60_000 + p(17..19) * 1000 + p(20..23)
}

/// Every incident notified once firing and once resolved, each burst inside one except
/// bursts sent while Kafka was away (`blind`, ms): their failures may reach the alarmers
/// only after they left the window, and then no condition ever held.
fn check_alarms(got: &[Received], bursts: &[(String, i64, i64)], kills: &[i64], blind: (i64, i64)) {
    let mut by_instance: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in got {
        by_instance.entry(r.label("instance").to_owned()).or_default().push(r);
    }
    let near_kill = |r: &Received| kills.iter().any(|k| (0..=DUPLICATE_WINDOW).contains(&(k - r.at_ms)));
    let mut tolerated = 0;
    for (instance, list) in &by_instance {
        let fingerprints: std::collections::BTreeSet<&str> = list.iter().filter_map(|r| r.json["groupKey"].as_str()).collect();
        assert_eq!(fingerprints.len(), 1, "{instance}: one alarm, one fingerprint: {fingerprints:?}");
        // (startsAt, endsAt) of each incident, from its notifications in arrival order.
        let mut incidents: Vec<(i64, Option<i64>)> = Vec::new();
        let mut previous: Option<&Received> = None;
        for r in list {
            let repeated = previous.is_some_and(|p| p.status() == r.status());
            if repeated {
                let p = previous.expect("previous");
                assert!(
                    near_kill(p),
                    "{instance}: {} notified twice in a row, not explained by a kill -9 ({} and {} ms; kills at {kills:?}):\n{list:#?}",
                    r.status(),
                    p.at_ms,
                    r.at_ms
                );
                tolerated += 1;
                if r.status() == "firing" {
                    // The repeat opens the incident again; the first one's resolution follows.
                    incidents.pop();
                    incidents.push((ms(starts_at(r)), None));
                }
            } else if r.status() == "firing" {
                incidents.push((ms(starts_at(r)), None));
            } else {
                assert_eq!(r.status(), "resolved", "{instance}: {r:#?}");
                let open = incidents.last_mut().unwrap_or_else(|| panic!("{instance}: resolved before any firing: {list:#?}"));
                assert_eq!(ms(starts_at(r)), open.0, "{instance}: the resolution names its incident's start");
                open.1 = Some(ms(r.json["alerts"][0]["endsAt"].as_str().unwrap_or("")));
            }
            previous = Some(r);
        }
        assert_eq!(list.last().map(|r| r.status()), Some("resolved"), "{instance}: every incident resolves: {list:#?}");
        let seen = |b: &&(String, i64, i64)| b.2 < blind.0 || b.1 > blind.1;
        let whole = |b: &&(String, i64, i64)| b.2 - b.1 >= (FAILURES_TO_FIRE - 1) * FAILURE_EVERY_MS;
        for (_, first, last) in bursts.iter().filter(|b| &b.0 == instance).filter(seen).filter(whole) {
            let covered = incidents.iter().any(|(start, end)| *start <= last + WINDOW_MS && end.is_some_and(|e| e >= *first));
            assert!(covered, "{instance}: the burst {first}..{last} has no incident: {incidents:?}");
        }
        eprintln!("{instance}: {} incidents for {} bursts", incidents.len(), bursts.iter().filter(|b| &b.0 == instance).count());
    }
    for i in 0..FAILING {
        assert!(by_instance.contains_key(&format!("bad-{i}")), "bad-{i} never notified: {by_instance:#?}");
    }
    if tolerated > 0 {
        eprintln!("{tolerated} repeated notification(s) from a kill between delivery and log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_during_load_neither_lose_nor_double_assertions_or_notifications() {
    let _serial = serial();
    let suite = Instant::now();
    let env = TestEnv::new().await;
    let rate: u64 = std::env::var("SPECAUDIT_TEST_LOAD").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let hook = Receiver::start().await;
    let mut fleet = Fleet {
        ingester_exe: workspace_bin("specaudit-ingester"),
        alarmer_exe: workspace_bin("specaudit-alarmer"),
        config: alarmer_config(&env, &hook),
        group: format!("ingest-{}", env.id),
        env: env.clone(),
        ingesters: [None, None],
        alarmers: [None, None],
        kills: Vec::new(),
    };
    let client = env.client();
    fleet.ingester(0);
    fleet.ingester(1);
    fleet.alarmer(0).await;
    fleet.alarmer(1).await;
    let tally = Arc::new(Tally::default());
    let producer = load(&env, rate, tally.clone());
    let pause = |s: u64| tokio::time::sleep(Duration::from_secs(s));
    pause(10).await;
    check_so_far(&client, &tally, "start").await;

    // 1. kill -9 an ingester mid-load; static membership gives the restarted copy its
    //    partitions back at once.
    Fleet::take(&mut fleet.ingesters[0]).kill();
    pause(2).await;
    fleet.ingester(0);
    pause(8).await;
    check_so_far(&client, &tally, "kill -9 of an ingester").await;

    // 2. Freeze the other ingester for 20 s (inside its session: it stays in the group).
    fleet.ingesters[1].as_ref().expect("running").pause();
    pause(20).await;
    fleet.ingesters[1].as_ref().expect("running").resume();
    check_so_far(&client, &tally, "SIGSTOP of an ingester").await;

    // 3. kill -9 an alarmer: the other takes its partitions after the session timeout;
    //    then a new copy joins and they are shared again.
    fleet.kills.push(now_ms());
    Fleet::take(&mut fleet.alarmers[0]).kill();
    pause(15).await;
    fleet.alarmer(0).await;
    pause(5).await;

    // 4. Freeze the other alarmer for 6 s (inside its session).
    fleet.alarmers[1].as_ref().expect("running").pause();
    pause(6).await;
    fleet.alarmers[1].as_ref().expect("running").resume();
    pause(5).await;

    // 5. Restart Kafka.
    let blind_from = now_ms();
    let outage = Outage::begin("kafka");
    pause(5).await;
    outage.end();
    let blind = (blind_from, now_ms() + 5_000);
    pause(10).await;
    check_so_far(&client, &tally, "a restart of kafka").await;

    // 6. Restart ClickHouse.
    let outage = Outage::begin("clickhouse");
    pause(10).await;
    outage.end();
    check_so_far(&client, &tally, "a restart of clickhouse").await;

    // 7. The receiver refuses everything for 20 s (a burst starts every 5 s).
    hook.set_down(true);
    pause(20).await;
    hook.set_down(false);
    assert!(hook.refused() > 0, "the receiver was down while a notification was due");

    // The end: stop the load, let every incident resolve, then check everything.
    tally.stop.store(true, Ordering::SeqCst);
    tokio::task::spawn_blocking(move || producer.join()).await.expect("join").expect("producer");
    assert_eq!(tally.failed.load(Ordering::SeqCst), 0, "every record was acknowledged");
    let produced = tally.acked.load(Ordering::SeqCst);
    let c = wait_for_rows(&client, produced, Duration::from_secs(180)).await;
    let last_failure = tally.bursts.lock().expect("bursts").iter().map(|b| b.2).max().unwrap_or(0);
    let quiet = last_failure + WINDOW_MS + 10_000 - now_ms();
    tokio::time::sleep(Duration::from_millis(quiet.max(2_000) as u64)).await;
    let c = counts(&client).await.unwrap_or(c);
    assert_eq!(c.rows, produced, "raw rows vs acknowledged: {c:?}");
    assert_eq!(c.unique_ids, c.rows, "duplicated assertion ids: {c:?}");
    assert_eq!(c.raw_sum, tally.acked_sum.load(Ordering::SeqCst), "sum(count) in the raw table: {c:?}");
    assert_eq!(c.rollup_sum, c.raw_sum, "rollup sums vs raw table: {c:?}");
    let bursts = tally.bursts.lock().expect("bursts").clone();
    check_alarms(&hook.received(), &bursts, &fleet.kills, blind);
    eprintln!("{produced} assertions, {} notifications, {} refused, in {:?}", hook.received().len(), hook.refused(), suite.elapsed());
    for slot in &mut fleet.ingesters {
        assert!(Fleet::take(slot).terminate().success(), "the ingester exits cleanly on SIGTERM");
    }
    for slot in &mut fleet.alarmers {
        let mut alarmer = Fleet::take(slot);
        let status = alarmer.terminate_within(Duration::from_secs(30));
        assert!(status.is_some_and(|s| s.success()), "the alarmer exits cleanly on SIGTERM ({status:?}); log: {}", alarmer.log.display());
    }
    env.cleanup().await;
}
