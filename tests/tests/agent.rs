//! The agent SDK against the real stack: specs by push, inheritance and task filters,
//! every outcome kind, exact rollup counts, heartbeats, and the sidecar's two modes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use specaudit_core::codec::Codec;
use specaudit_core::config::KafkaConfig;
use specaudit_core::kafka::{read_to_end, Topics};
use specaudit_core::record::{Assertion, Heartbeat, Outcome};
use specaudit_core::spec::Spec;
use specaudit_producer::agent::{Agent, AgentConfig};
use specaudit_producer::publish::{publish, Change, Meta};
use specaudit_tests::TestEnv;

const SPEC_V1: &str = r#"
apiVersion: specaudit/v1
spec: shop
components:
  web:
    params: {min_tls: "1.2", max_items: 10}
    requirements:
      tls:
        tasks: [serve]
        check: {expr: facts.tls >= params.min_tls}
  web.cart:
    params: {max_items: 5}
    requirements:
      size:
        tasks: [add-item]
        check: {expr: facts.items <= params.max_items}
      shape:
        check:
          schema: {type: object, required: [items]}
      logged: {severity: critical}
"#;

fn meta(expect: i64) -> Meta {
    Meta { author: "test".into(), comment: String::new(), expect_version: Some(expect) }
}

async fn publish_text(kafka: &KafkaConfig, text: &str, expect: i64) {
    publish(kafka, Change::Replace(Spec::parse(text).unwrap()), meta(expect)).await.unwrap();
}

async fn start(kafka: &KafkaConfig, component: &str, instance: &str) -> Agent {
    let mut config = AgentConfig::new(kafka.clone(), component, instance);
    config.rollup_interval = Duration::from_millis(100);
    config.heartbeat_interval = Duration::from_millis(300);
    tokio::task::spawn_blocking(move || Agent::start(config)).await.unwrap().unwrap()
}

async fn stop(agent: &Agent) {
    let agent = agent.clone();
    tokio::task::spawn_blocking(move || agent.shutdown(Duration::from_secs(10))).await.unwrap();
}

fn read_all<T: specaudit_core::codec::Record>(kafka: &KafkaConfig, topic: &str) -> Vec<T> {
    let codec = Codec::<T>::new();
    let mut out = Vec::new();
    read_to_end(kafka, topic, Duration::from_secs(30), |m| {
        use rdkafka::Message;
        out.push(codec.decode(m.payload().unwrap_or_default()).unwrap());
    })
    .unwrap();
    out
}

fn outcomes(results: &[specaudit_producer::agent::CheckResult]) -> Vec<(String, Outcome)> {
    results.iter().map(|r| (r.requirement.to_string(), r.outcome)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inheritance_task_filters_and_every_outcome() {
    let env = TestEnv::new().await;
    publish_text(&env.kafka, SPEC_V1, 0).await;
    let cart = start(&env.kafka, "web.cart", "c-1").await;

    // Inherited from `web`, deeper params win.
    assert_eq!(cart.param::<u32>("max_items"), Some(5));
    assert_eq!(cart.param::<String>("min_tls"), Some("1.2".into()));
    let ids: Vec<String> = cart.requirements().into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, ["web/tls", "web.cart/logged", "web.cart/shape", "web.cart/size"]);

    let serve = cart.check("serve", &json!({"tls": "1.3", "items": 1}));
    assert_eq!(
        outcomes(&serve),
        [("web/tls".into(), Outcome::Pass), ("web.cart/shape".into(), Outcome::Pass), ("web.cart/size".into(), Outcome::Skip)]
    );
    let add = cart.check("add-item", &json!({"items": 9}));
    assert_eq!(
        outcomes(&add),
        [("web/tls".into(), Outcome::Skip), ("web.cart/shape".into(), Outcome::Pass), ("web.cart/size".into(), Outcome::Fail)]
    );
    // A missing fact cannot be evaluated: error, kept apart from fail; a schema miss fails.
    let broken = cart.check("add-item", &json!({"count": 1}));
    assert_eq!(
        outcomes(&broken),
        [("web/tls".into(), Outcome::Skip), ("web.cart/shape".into(), Outcome::Fail), ("web.cart/size".into(), Outcome::Error)]
    );
    // Requirements without a check are asserted by the component's own code.
    cart.assert("web.cart/logged", "add-item", Outcome::Pass, "", None).unwrap();
    assert!(cart.assert("web.cart/unknown", "add-item", Outcome::Pass, "", None).is_err());

    // The parent component does not get the child's requirements.
    let web = start(&env.kafka, "web", "w-1").await;
    let ids: Vec<String> = web.requirements().into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, ["web/tls"]);
    stop(&cart).await;
    stop(&web).await;

    let sent: Vec<Assertion> = read_all(&env.kafka, &Topics::new(&env.kafka.topic_prefix).assertions);
    let mut by: BTreeMap<(String, Outcome), i64> = BTreeMap::new();
    for a in sent.iter().filter(|a| a.instance == "c-1") {
        *by.entry((a.requirement.clone(), a.outcome)).or_default() += a.count;
    }
    let expected: BTreeMap<(String, Outcome), i64> = [
        (("web/tls".into(), Outcome::Pass), 1),
        (("web/tls".into(), Outcome::Skip), 2),
        (("web.cart/shape".into(), Outcome::Pass), 2),
        (("web.cart/shape".into(), Outcome::Fail), 1),
        (("web.cart/size".into(), Outcome::Skip), 1),
        (("web.cart/size".into(), Outcome::Fail), 1),
        (("web.cart/size".into(), Outcome::Error), 1),
        (("web.cart/logged".into(), Outcome::Pass), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(by, expected);
    let fail = sent.iter().find(|a| a.requirement == "web.cart/size" && a.outcome == Outcome::Fail).unwrap();
    assert!(fail.message.contains("facts.items <= params.max_items"), "{}", fail.message);
    assert_eq!(fail.details, r#"{"items":9}"#);
    assert_eq!((fail.component.as_str(), fail.spec_version), ("web.cart", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_add_up_exactly_and_heartbeats_report_coverage() {
    let env = TestEnv::new().await;
    publish_text(&env.kafka, SPEC_V1, 0).await;
    let agent = start(&env.kafka, "web", "w-1").await;
    let checks = 25_000;
    for i in 0..checks {
        let tls = if i % 1000 == 0 { "1.0" } else { "1.3" };
        agent.check("serve", &json!({"tls": tls}));
    }
    stop(&agent).await;
    let counters = agent.counters();
    assert_eq!(counters.checked, checks);
    assert_eq!(counters.dropped, 0);

    let topics = Topics::new(&env.kafka.topic_prefix);
    let sent: Vec<Assertion> = read_all(&env.kafka, &topics.assertions);
    let passes: i64 = sent.iter().filter(|a| a.outcome == Outcome::Pass).map(|a| a.count).sum();
    let fails: Vec<&Assertion> = sent.iter().filter(|a| a.outcome == Outcome::Fail).collect();
    assert_eq!(passes, checks - 25);
    assert_eq!(fails.len(), 25, "every failure is sent on its own");
    assert!(fails.iter().all(|a| a.count == 1));
    // Passes travel rolled up: far fewer records than checks.
    assert!(sent.len() < 1000, "{} records for {checks} checks", sent.len());
    // `emitted` counts assertion records only, not heartbeats.
    assert_eq!(counters.emitted, sent.len() as i64);

    let heartbeats: Vec<Heartbeat> = read_all(&env.kafka, &topics.heartbeats);
    let last = heartbeats.last().unwrap();
    assert_eq!((last.component.as_str(), last.instance.as_str()), ("web", "w-1"));
    assert_eq!(last.specs[0].version, 1);
    assert_eq!(last.checked, checks);
    let evaluated: i64 = heartbeats.iter().flat_map(|h| &h.requirements).map(|r| r.evaluations).sum();
    assert_eq!(evaluated, checks, "evaluations across heartbeats add up");
    assert_eq!(last.requirements.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_pushed_to_a_running_agent() {
    let env = TestEnv::new().await;
    publish_text(&env.kafka, SPEC_V1, 0).await;
    let agent = start(&env.kafka, "web", "w-1").await;
    let mut versions = agent.watch_versions();
    assert_eq!(agent.versions()[0].version, 1);
    assert_eq!(outcomes(&agent.check("serve", &json!({"tls": "1.2"})))[0].1, Outcome::Pass);

    publish_text(&env.kafka, &SPEC_V1.replace("min_tls: \"1.2\"", "min_tls: \"1.3\""), 1).await;
    tokio::time::timeout(Duration::from_secs(30), versions.wait_for(|v| v.first().is_some_and(|s| s.version == 2)))
        .await
        .expect("version 2 not pushed within 30 s")
        .unwrap();
    let after = agent.check("serve", &json!({"tls": "1.2"}));
    assert_eq!((after[0].outcome, after[0].spec_version), (Outcome::Fail, 2));

    // The heartbeat shows the new version.
    let topics = Topics::new(&env.kafka.topic_prefix);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let heartbeats: Vec<Heartbeat> = read_all(&env.kafka, &topics.heartbeats);
        if heartbeats.iter().any(|h| h.specs.iter().any(|s| s.version == 2)) {
            break;
        }
        assert!(Instant::now() < deadline, "no heartbeat with version 2");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(&agent).await;
    // Outcomes checked against version 1 stay attributed to version 1.
    let sent: Vec<Assertion> = read_all(&env.kafka, &topics.assertions);
    let v1: i64 = sent.iter().filter(|a| a.spec_version == 1).map(|a| a.count).sum();
    let v2: i64 = sent.iter().filter(|a| a.spec_version == 2).map(|a| a.count).sum();
    assert_eq!((v1, v2), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failure_cap_counts_the_excess() {
    let env = TestEnv::new().await;
    publish_text(&env.kafka, SPEC_V1, 0).await;
    let mut config = AgentConfig::new(env.kafka.clone(), "web", "w-1");
    config.rollup_interval = Duration::from_secs(60);
    config.max_failures_per_interval = Some(3);
    let agent = tokio::task::spawn_blocking(move || Agent::start(config)).await.unwrap().unwrap();
    for _ in 0..10 {
        agent.check("serve", &json!({"tls": "1.0"}));
    }
    stop(&agent).await;
    let sent: Vec<Assertion> = read_all(&env.kafka, &Topics::new(&env.kafka.topic_prefix).assertions);
    let fails: Vec<i64> = sent.iter().filter(|a| a.outcome == Outcome::Fail).map(|a| a.count).collect();
    assert_eq!(fails.iter().filter(|c| **c == 1).count(), 3, "{fails:?}");
    assert_eq!(fails.iter().sum::<i64>(), 10, "{fails:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_fails_clearly_without_a_specs_topic() {
    let kafka = KafkaConfig { topic_prefix: "missing-prefix-xyz.".into(), ..TestEnv::new().await.kafka };
    let mut config = AgentConfig::new(kafka, "web", "w-1");
    config.start_timeout = Duration::from_secs(2);
    let error = tokio::task::spawn_blocking(move || Agent::start(config)).await.unwrap().unwrap_err();
    assert!(error.to_string().contains("specs not read within"), "{error}");
}
