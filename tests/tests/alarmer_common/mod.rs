//! What the alarmer tests share: a real HTTP receiver on 127.0.0.1:0 that records every
//! notification (and can play dead), an alarmer run in-process on the test's topics, and
//! records produced straight to Kafka.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use specaudit_alarmer::AlarmerConfig;
use specaudit_core::codec::{Codec, Record};
use specaudit_core::record::{now_ms, Assertion, Heartbeat, Outcome, Severity, SpecInUse};
use specaudit_tests::TestEnv;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret";

/// One notification as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Vec<u8>,
    pub json: Value,
    pub signature: String,
    /// When it arrived (ms since the epoch).
    pub at_ms: i64,
}

impl Received {
    pub fn status(&self) -> &str {
        self.json["status"].as_str().unwrap_or("")
    }
    pub fn label(&self, name: &str) -> &str {
        self.json["alerts"][0]["labels"][name].as_str().unwrap_or("")
    }
}

#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Received>>>,
    down: Arc<AtomicBool>,
    refused: Arc<Mutex<u32>>,
}

/// A webhook receiver listening on a free loopback port.
pub struct Receiver {
    pub url: String,
    inbox: Inbox,
    stop: CancellationToken,
}

async fn take(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if inbox.down.load(Ordering::SeqCst) {
        *inbox.refused.lock().unwrap() += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let signature = headers.get("x-specaudit-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inbox.got.lock().unwrap().push(Received { body: body.to_vec(), json, signature, at_ms: now_ms() });
    StatusCode::OK
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inbox = Inbox::default();
        let app = axum::Router::new().route("/alerts", axum::routing::post(take)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await });
        Receiver { url, inbox, stop }
    }

    pub fn set_down(&self, down: bool) {
        self.inbox.down.store(down, Ordering::SeqCst);
    }

    pub fn refused(&self) -> u32 {
        *self.inbox.refused.lock().unwrap()
    }

    pub fn received(&self) -> Vec<Received> {
        self.inbox.got.lock().unwrap().clone()
    }

    /// Waits until `n` notifications arrived; fails the test after 60 s.
    pub async fn wait_for(&self, n: usize, what: &str) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "no {what} within 60 s; got {got:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An alarmer config for the test's topics: a webhook receiver `hook` (and `am`, the
/// stack's Alertmanager, when `alertmanager`), every alarm routed to them, plus `extra`
/// TOML (rules, waivers, [alarmer] keys).
pub fn config(env: &TestEnv, receiver: &Receiver, alertmanager: bool, alarmer_keys: &str, extra: &str) -> AlarmerConfig {
    let file = config_file(env, receiver, alertmanager, alarmer_keys, extra);
    specaudit_core::config::load_with_env(Some(file.path()), Vec::new()).unwrap()
}

/// [`config`] as a file, for the `specaudit-alarmer` binary.
pub fn config_file(env: &TestEnv, receiver: &Receiver, alertmanager: bool, alarmer_keys: &str, extra: &str) -> tempfile::NamedTempFile {
    let receivers = if alertmanager { "[\"hook\", \"am\"]" } else { "[\"hook\"]" };
    let am = if alertmanager {
        format!("[receivers.am]\ntype = \"alertmanager\"\nurl = \"{}\"\n", specaudit_tests::alertmanager_url())
    } else {
        String::new()
    };
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"

[alarmer]
group_id = "alarmer-{id}"
tick = "100ms"
{critical}
{lookback}
drain_timeout = "2s"
{alarmer_keys}

[notify]
retry_initial = "100ms"
retry_max = "500ms"

[receivers.hook]
type = "webhook"
url = "{url}"
secret = "{SECRET}"
timeout = "2s"

{am}
[[routes]]
receivers = {receivers}

{extra}
"#,
        brokers = env.kafka.brokers,
        prefix = env.kafka.topic_prefix,
        id = env.id,
        url = receiver.url,
        critical = if alarmer_keys.contains("critical_single_failure") { "" } else { "critical_single_failure = false" },
        lookback = if alarmer_keys.contains("min_lookback") { "" } else { "min_lookback = \"1m\"" },
    );
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

/// An alarmer running in this process.
pub struct Alarmer {
    stop: CancellationToken,
    task: JoinHandle<Result<(), specaudit_alarmer::AlarmerError>>,
}

impl Alarmer {
    /// Starts an alarmer and waits until its `/health` says the windows are rebuilt, so
    /// that what a test produces afterwards is evaluated live, however long the group
    /// join took.
    pub async fn start(mut config: AlarmerConfig) -> Alarmer {
        let telemetry = specaudit_core::config::TelemetryConfig {
            log_filter: "warn".into(),
            ..Default::default()
        };
        specaudit_core::telemetry::init_tracing(&telemetry);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        config.telemetry.listen = Some(addr);
        let stop = CancellationToken::new();
        let task = tokio::spawn(specaudit_alarmer::run(config, stop.clone()));
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http.get(format!("http://{addr}/health")).send().await.is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if task.is_finished() {
                panic!("the alarmer stopped during start-up: {:?}", task.await);
            }
            assert!(Instant::now() < deadline, "the alarmer was not healthy within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Alarmer { stop, task }
    }

    /// SIGTERM: drains and stops.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

pub fn assertion(spec: &str, component: &str, instance: &str, requirement: &str, outcome: Outcome, severity: Severity) -> Assertion {
    Assertion {
        assertion_id: uuid::Uuid::now_v7(),
        ts: now_ms(),
        spec: spec.into(),
        spec_version: 1,
        component: component.into(),
        instance: instance.into(),
        agent_id: format!("{component}/{instance}"),
        requirement: requirement.into(),
        task: "serve-request".into(),
        outcome,
        severity,
        count: 1,
        message: if outcome == Outcome::Fail { "check failed in the test".into() } else { String::new() },
        details: String::new(),
        labels: BTreeMap::new(),
    }
}

pub fn heartbeat(spec: &str, component: &str, instance: &str, version: i64) -> Heartbeat {
    Heartbeat {
        agent_id: format!("{component}/{instance}"),
        component: component.into(),
        instance: instance.into(),
        ts: now_ms(),
        started_at: now_ms(),
        sdk_version: "test".into(),
        specs: vec![SpecInUse { spec: spec.into(), version }],
        checked: 0,
        emitted: 0,
        dropped: 0,
        requirements: vec![],
        labels: BTreeMap::new(),
    }
}

/// Produces records as agents do (Avro single-object, keyed component/instance).
pub struct Feed {
    producer: FutureProducer,
    env: TestEnv,
}

impl Feed {
    pub fn new(env: &TestEnv) -> Feed {
        let producer = specaudit_core::kafka::client_config(&env.kafka).set("linger.ms", "0").create().unwrap();
        Feed { producer, env: env.clone() }
    }

    async fn send<T: Record>(&self, topic: &str, key: &str, record: &T) {
        let bytes = Codec::<T>::new().encode(record).unwrap();
        self.producer.send(FutureRecord::to(topic).key(key).payload(&bytes), Duration::from_secs(10)).await.unwrap();
    }

    pub async fn assertion(&self, a: &Assertion) {
        let topic = specaudit_core::kafka::Topics::new(&self.env.kafka.topic_prefix).assertions;
        self.send(&topic, &format!("{}/{}", a.component, a.instance), a).await;
    }

    pub async fn heartbeat(&self, hb: &Heartbeat) {
        let topic = specaudit_core::kafka::Topics::new(&self.env.kafka.topic_prefix).heartbeats;
        self.send(&topic, &hb.agent_id, hb).await;
    }
}

/// The alerts Alertmanager lists (active ones) with this alertname.
pub async fn alertmanager_alerts(alertname: &str) -> Vec<Value> {
    let url = format!("{}/api/v2/alerts", specaudit_tests::alertmanager_url());
    let response = reqwest::Client::new()
        .get(url)
        .query(&[("filter", format!("alertname=\"{alertname}\""))])
        .send()
        .await
        .expect("alertmanager unreachable: is the local stack up?");
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// Waits until `check` holds for Alertmanager's list of `alertname`; fails after 60 s.
pub async fn wait_alertmanager(alertname: &str, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alerts = alertmanager_alerts(alertname).await;
        if check(&alerts) {
            return alerts;
        }
        assert!(Instant::now() < deadline, "alertmanager: no {what} within 60 s; has {alerts:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the specs topic has a leader: publishing to a topic created a moment ago
/// can otherwise meet "not leader for partition".
pub async fn specs_topic_ready(env: &TestEnv) {
    let kafka = env.kafka.clone();
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let topic = specaudit_core::kafka::Topics::new(&kafka.topic_prefix).specs;
        let consumer: BaseConsumer = specaudit_core::kafka::client_config(&kafka).create().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5)).is_ok_and(|m| {
                m.topics().iter().all(|t| t.error().is_none() && !t.partitions().is_empty()
                    && t.partitions().iter().all(|p| p.leader() >= 0 && p.error().is_none()))
            });
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "topic {topic} has no leader after 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
}
