//! Each condition fires and resolves on the real topics, as the in-memory scenarios of
//! `alarmer/src/engine_tests.rs` do with explicit time.

mod alarmer_common;

use alarmer_common::{assertion, config, heartbeat, specs_topic_ready, Alarmer, Feed, Receiver};
use specaudit_core::record::{Outcome, Severity};
use specaudit_core::spec::Spec;
use specaudit_producer::publish::{publish, Change, Meta};
use specaudit_tests::TestEnv;

fn spec(name: &str, extra_requirement: bool) -> Spec {
    let extra = if extra_requirement { ", \"audit\": {}" } else { "" };
    Spec::parse(&format!(
        r#"{{"apiVersion": "specaudit/v1", "spec": "{name}", "components": {{
            "frontend": {{"requirements": {{"tls": {{}}{extra}}}}}}}}}"#
    ))
    .unwrap()
}

async fn publish_spec(env: &TestEnv, spec: Spec, expect: i64) {
    specs_topic_ready(env).await;
    let meta = Meta { author: "test".into(), comment: String::new(), expect_version: Some(expect) };
    publish(&env.kafka, Change::Replace(spec), meta).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_ratio_goes_pending_then_fires_after_its_hold_and_resolves() {
    let env = TestEnv::new().await;
    let hook = Receiver::start().await;
    let rule = "[[rules]]\nname = \"ratio\"\nwhen = { failure_ratio_above = 0.5, min_samples = 4, window = \"3s\" }\nfor = \"1s\"\n";
    let alarmer = Alarmer::start(config(&env, &hook, false, "", rule)).await;
    let feed = Feed::new(&env);
    for (instance, outcome) in [("a", Outcome::Fail), ("b", Outcome::Fail), ("c", Outcome::Fail), ("d", Outcome::Pass)] {
        feed.assertion(&assertion("svc", "api", instance, "api/auth", outcome, Severity::Major)).await;
    }
    let got = hook.wait_for(1, "firing after the hold").await;
    assert_eq!((got[0].status(), got[0].label("alertname")), ("firing", "ratio"));
    assert_eq!(got[0].json["alerts"][0]["annotations"]["value"], "0.75");
    let got = hook.wait_for(2, "resolution").await;
    assert_eq!(got[1].status(), "resolved");
    alarmer.stop().await;
    assert_eq!(hook.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outliers_fire_for_the_one_instance_failing_what_its_peers_pass() {
    let env = TestEnv::new().await;
    let hook = Receiver::start().await;
    let rule = "[[rules]]\nname = \"outliers\"\nwhen = { outliers = true, window = \"3s\" }\n";
    let alarmer = Alarmer::start(config(&env, &hook, false, "", rule)).await;
    let feed = Feed::new(&env);
    for instance in ["a", "b", "c"] {
        feed.assertion(&assertion("svc", "worker", instance, "worker/idempotent", Outcome::Pass, Severity::Major)).await;
    }
    // The instances' records are on different partitions, which Kafka does not order
    // between them: the failure is sent once the peers' passes are surely read (well
    // inside the 3 s window), so the alarm counts all four.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    feed.assertion(&assertion("svc", "worker", "d", "worker/idempotent", Outcome::Fail, Severity::Major)).await;
    let got = hook.wait_for(1, "outlier alarm").await;
    assert_eq!(got[0].status(), "firing");
    let summary = got[0].json["alerts"][0]["annotations"]["summary"].as_str().unwrap().to_owned();
    assert!(summary.starts_with("1 of 4 instances") && summary.ends_with(": d"), "{summary}");
    assert_eq!(hook.wait_for(2, "resolution").await[1].status(), "resolved");
    alarmer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_for_fires_for_the_requirement_nobody_reports_until_it_reports() {
    let env = TestEnv::new().await;
    let name = format!("silent-{}", env.id);
    publish_spec(&env, spec(&name, true), 0).await;
    let hook = Receiver::start().await;
    let rule = "[[rules]]\nname = \"silent\"\nwhen = { silent_for = \"2s\" }\n";
    let alarmer = Alarmer::start(config(&env, &hook, false, "", rule)).await;
    let feed = Feed::new(&env);
    // frontend/tls keeps reporting; frontend/audit says nothing.
    let got = loop {
        feed.assertion(&assertion(&name, "frontend", "fe-1", "frontend/tls", Outcome::Pass, Severity::Major)).await;
        let got = hook.received();
        if !got.is_empty() {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!((got[0].status(), got[0].label("requirement")), ("firing", "frontend/audit"));
    assert!(got[0].json["alerts"][0]["annotations"]["summary"].as_str().unwrap().starts_with("nothing reported for"));
    feed.assertion(&assertion(&name, "frontend", "fe-1", "frontend/audit", Outcome::Skip, Severity::Major)).await;
    let got = hook.wait_for(2, "resolution once it reports").await;
    assert_eq!((got[1].status(), got[1].label("requirement")), ("resolved", "frontend/audit"));
    alarmer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_version_fires_for_an_agent_left_on_the_old_version_and_resolves_when_it_moves() {
    let env = TestEnv::new().await;
    let name = format!("stale-{}", env.id);
    publish_spec(&env, spec(&name, false), 0).await;
    publish_spec(&env, spec(&name, true), 1).await;
    let hook = Receiver::start().await;
    let rule = "[[rules]]\nname = \"stale\"\nwhen = { stale_version_for = \"1s\" }\n";
    let alarmer = Alarmer::start(config(&env, &hook, false, "", rule)).await;
    let feed = Feed::new(&env);
    let got = loop {
        feed.heartbeat(&heartbeat(&name, "frontend", "fe-1", 2)).await;
        feed.heartbeat(&heartbeat(&name, "frontend", "fe-2", 1)).await;
        let got = hook.received();
        if !got.is_empty() {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert_eq!((got[0].status(), got[0].label("component")), ("firing", "frontend"));
    let summary = got[0].json["alerts"][0]["annotations"]["summary"].as_str().unwrap().to_owned();
    assert!(summary.contains("frontend/fe-2 on v1 of v2") && !summary.contains("fe-1"), "{summary}");
    feed.heartbeat(&heartbeat(&name, "frontend", "fe-2", 2)).await;
    let got = hook.wait_for(2, "resolution once the agent moved").await;
    assert_eq!(got[1].status(), "resolved");
    alarmer.stop().await;
}
