//! The alarmer against the real stack: a critical failure reaches a real webhook receiver,
//! signed, and resolves; Alertmanager receives and lists the alert and sees it resolved;
//! every transition lands in ClickHouse through the ingester; a bad rule stops the start.

mod alarmer_common;

use std::time::{Duration, Instant};

use alarmer_common::{assertion, config, wait_alertmanager, Alarmer, Feed, Receiver, SECRET};
use specaudit_alarmer::notify::sign;
use specaudit_core::record::{Outcome, Severity};
use specaudit_ingester::config::{IngestConfig, IngesterConfig};
use specaudit_tests::TestEnv;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_failure_notifies_signed_once_then_resolves_and_is_logged_in_clickhouse() {
    let env = TestEnv::new().await;
    let hook = Receiver::start().await;
    let alarmer = Alarmer::start(config(&env, &hook, false, "critical_single_failure = true\ncritical_window = \"2s\"", "")).await;
    let feed = Feed::new(&env);
    let ok = assertion("svc", "frontend", "fe-1", "frontend/tls", Outcome::Pass, Severity::Critical);
    feed.assertion(&ok).await;
    let failed = assertion("svc", "frontend", "fe-1", "frontend/tls", Outcome::Fail, Severity::Critical);
    feed.assertion(&failed).await;

    let got = hook.wait_for(1, "firing notification").await;
    let firing = &got[0];
    assert_eq!(firing.status(), "firing");
    assert!(sign::verify(SECRET.as_bytes(), &firing.body, &firing.signature), "signature {}", firing.signature);
    assert!(!sign::verify(b"wrong-secret", &firing.body, &firing.signature));
    assert_eq!(firing.json["version"], "4");
    assert_eq!(firing.label("alertname"), "critical-requirement-failed");
    assert_eq!(firing.label("severity"), "critical");
    assert_eq!((firing.label("spec"), firing.label("component"), firing.label("requirement")), ("svc", "frontend", "frontend/tls"));
    assert_eq!(firing.json["alerts"][0]["annotations"]["last_failure"], "check failed in the test");

    let got = hook.wait_for(2, "resolved notification").await;
    assert_eq!(got.len(), 2, "exactly one firing, one resolved: {got:#?}");
    let resolved = &got[1];
    assert_eq!(resolved.status(), "resolved");
    assert!(sign::verify(SECRET.as_bytes(), &resolved.body, &resolved.signature));
    assert_eq!(resolved.json["groupKey"], firing.json["groupKey"]);
    assert_eq!(resolved.json["alerts"][0]["startsAt"], firing.json["alerts"][0]["startsAt"]);

    // The ingester writes the alarm log to ClickHouse.
    let ingester_config = IngesterConfig {
        kafka: env.kafka.clone(),
        clickhouse: env.clickhouse.clone(),
        ingest: IngestConfig { group_id: format!("ingest-{}", env.id), max_delay: Duration::from_millis(100), ..IngestConfig::default() },
        ..IngesterConfig::default()
    };
    let stop = CancellationToken::new();
    let ingester = tokio::spawn(specaudit_ingester::run(ingester_config, stop.clone()));
    let client = env.client();
    let fingerprint = firing.json["groupKey"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows: Vec<(String, String, String)> = loop {
        let rows = client
            .query("SELECT toString(state), rule, requirement FROM alarms WHERE fingerprint = ? ORDER BY ts_ms")
            .bind(&fingerprint)
            .fetch_all::<(String, String, String)>()
            .await
            .unwrap_or_default();
        if rows.len() >= 2 {
            break rows;
        }
        assert!(Instant::now() < deadline, "alarm transitions not in clickhouse within 60 s: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let states: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(states, ["firing", "resolved"]);
    assert_eq!(rows[0].1, "critical-requirement-failed");
    assert_eq!(rows[0].2, "frontend/tls");

    alarmer.stop().await;
    assert_eq!(hook.received().len(), 2, "nothing more after the stop");
    stop.cancel();
    ingester.await.unwrap().unwrap();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_receives_lists_and_resolves_the_alert() {
    let env = TestEnv::new().await;
    let hook = Receiver::start().await;
    let name = format!("am-{}", env.id);
    let rule = format!("[[rules]]\nname = \"{name}\"\nlabels = {{ team = \"t-{id}\" }}\nwhen = {{ failures_at_least = 2, window = \"3s\" }}\n", id = env.id);
    let alarmer = Alarmer::start(config(&env, &hook, true, "", &rule)).await;
    let feed = Feed::new(&env);
    for instance in ["i1", "i2"] {
        feed.assertion(&assertion("billing", "ledger", instance, "ledger/balanced", Outcome::Fail, Severity::Major)).await;
    }
    let alerts = wait_alertmanager(&name, "active alert", |alerts| !alerts.is_empty()).await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["severity"], "major");
    assert_eq!(labels["spec"], "billing");
    assert_eq!(labels["component"], "ledger");
    assert_eq!(labels["requirement"], "ledger/balanced");
    assert_eq!(labels["team"], format!("t-{}", env.id));
    assert_eq!(alerts[0]["status"]["state"], "active");
    assert!(alerts[0]["annotations"]["summary"].as_str().unwrap().starts_with("2 failures"));
    // The webhook got the same alarm.
    assert_eq!(hook.wait_for(1, "webhook").await[0].label("alertname"), name);

    // Resolved: endsAt = now, and Alertmanager no longer lists it as active.
    wait_alertmanager(&name, "resolution", |alerts| alerts.is_empty()).await;
    let got = hook.wait_for(2, "resolved webhook").await;
    assert_eq!(got[1].status(), "resolved");
    alarmer.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rule_stops_the_alarmer_at_start_naming_it() {
    let env = TestEnv::new().await;
    let hook = Receiver::start().await;
    let cases = [
        ("[[rules]]\nname = \"typo\"\nwhen = { failures_atleast = 1 }\n", "rule \"typo\": unknown condition \"failures_atleast\""),
        ("[[rules]]\nname = \"slow\"\nwhen = { failures_at_least = 1, window = \"5 fortnights\" }\n", "rule \"slow\": window = \"5 fortnights\""),
        ("[[routes]]\nreceivers = [\"pager\"]\n", "route 1: unknown receiver \"pager\" (configured receivers: hook)"),
    ];
    for (extra, expected) in cases {
        let result = specaudit_alarmer::run(config(&env, &hook, false, "", extra), CancellationToken::new()).await;
        let error = result.expect_err("the alarmer must not start").to_string();
        assert!(error.contains(expected), "{error}");
    }
    assert!(hook.received().is_empty());
}
