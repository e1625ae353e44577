//! Two copies of the real `specaudit-alarmer` in one group share the work by shards of
//! groups: a rule over a component's many instances (whose records are spread over the
//! partitions) and a silence are each judged whole, by one copy, and notified once. A
//! copy that stays through a rebalance rebuilds the windows of rules specs brought later.
//! Each copy of a group of two stops promptly and cleanly on SIGTERM.

mod alarmer_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alarmer_common::{assertion, config_file, specs_topic_ready, Feed, Receiver};
use specaudit_core::record::{Outcome, Severity};
use specaudit_core::spec::Spec;
use specaudit_producer::publish::{publish, Change, Meta};
use specaudit_tests::process::{workspace_bin, Service};
use specaudit_tests::TestEnv;

const RULES: &str = r#"
[[rules]]
name = "ratio"
match = { requirement = "api/auth" }
when = { failure_ratio_above = 0.5, min_samples = 8, window = "5s" }

[[rules]]
name = "silent"
match = { requirement = "api/audit" }
when = { silent_for = "3s" }
"#;

async fn healthy(alarmer: &Service) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !alarmer.healthy() {
        assert!(Instant::now() < deadline, "alarmer not healthy within 90 s; log: {}", alarmer.log.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until both copies are healthy, in the group, the shards split between them,
/// each copy replayed.
async fn split(copies: &[Service; 2]) {
    for copy in copies {
        healthy(copy).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owned: Vec<f64> = copies.iter().map(|c| c.metric("specaudit_alarmer_shards_owned", "").unwrap_or(0.0)).collect();
        let shards = copies[0].metric("specaudit_alarmer_shards ", "").unwrap_or(0.0);
        if owned.iter().all(|&o| o > 0.0) && owned.iter().sum::<f64>() == shards {
            return;
        }
        assert!(Instant::now() < deadline, "the shards were not split between the copies: {owned:?} of {shards}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_judge_groups_spanning_instances_whole_and_notify_once() {
    let env = TestEnv::new().await;
    let hook = Receiver::start().await;
    specs_topic_ready(&env).await;
    let spec = Spec::parse(
        r#"{"apiVersion": "specaudit/v1", "spec": "svc", "components": {
            "api": {"requirements": {"auth": {}, "audit": {}}}}}"#,
    )
    .unwrap();
    let meta = Meta { author: "test".into(), comment: String::new(), expect_version: Some(0) };
    publish(&env.kafka, Change::Replace(spec), meta).await.unwrap();

    let file = config_file(&env, &hook, false, "", RULES);
    let config = file.path().display().to_string();
    let exe = workspace_bin("specaudit-alarmer");
    let name = format!("specaudit-alarmer-{}", env.id);
    let copies = [
        Service::spawn(&exe, &["--config", &config], &name, &[]),
        Service::spawn(&exe, &["--config", &config], &name, &[]),
    ];
    split(&copies).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Eight instances, keyed apart: their records land on several partitions, read by both
    // copies. Six fail: 0.75 of the group, which no part of it alone would show.
    let feed = Feed::new(&env);
    for i in 0..8 {
        let outcome = if i < 6 { Outcome::Fail } else { Outcome::Pass };
        feed.assertion(&assertion("svc", "api", &format!("i-{i}"), "api/auth", outcome, Severity::Major)).await;
    }
    hook.wait_for(2, "the ratio and the silence firing").await;
    // Long enough for any second copy to notify too, and for both to resolve.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let got = hook.received();
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
    for r in &got {
        *seen.entry((r.label("alertname").to_owned(), r.label("requirement").to_owned(), r.status().to_owned())).or_default() += 1;
    }
    let firing_ratio: Vec<_> = got.iter().filter(|r| r.label("alertname") == "ratio" && r.status() == "firing").collect();
    assert_eq!(firing_ratio.len(), 1, "{seen:?}");
    assert_eq!(firing_ratio[0].json["alerts"][0]["annotations"]["value"], "0.75", "the whole group, judged by one copy");
    assert_eq!(seen.get(&("silent".into(), "api/audit".into(), "firing".into())), Some(&1), "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "every notification once: {seen:?}");
    drop(copies);
    env.cleanup().await;
}

/// Waits until `copy` owns every shard.
async fn owns_all(copy: &Service) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owned = copy.metric("specaudit_alarmer_shards_owned", "").unwrap_or(0.0);
        let shards = copy.metric("specaudit_alarmer_shards ", "").unwrap_or(-1.0);
        if owned == shards {
            return;
        }
        assert!(Instant::now() < deadline, "the copy does not own every shard: {owned} of {shards}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_rebalanced_replays_the_windows_of_rules_a_spec_brought_after_its_start() {
    let env = TestEnv::new().await;
    let hook = Receiver::start().await;
    specs_topic_ready(&env).await;
    // No rule of its own and the shortest replay: only the spec's rule asks for more.
    let file = config_file(&env, &hook, false, "min_lookback = \"1s\"\nagent_timeout = \"1s\"", "");
    let config = file.path().display().to_string();
    let exe = workspace_bin("specaudit-alarmer");
    let name = format!("specaudit-alarmer-{}", env.id);
    let first = Service::spawn(&exe, &["--config", &config], &name, &[]);
    healthy(&first).await;
    owns_all(&first).await;

    // Published after the start: a failure alarm over two minutes.
    let spec = Spec::parse(
        r#"{"apiVersion": "specaudit/v1", "spec": "svc", "components": {"api": {"requirements": {"auth": {}}}},
            "alarms": [{"name": "fails", "match": {"severity": "major"}, "when": {"failures_at_least": 1, "window": "120s"}}]}"#,
    )
    .unwrap();
    let meta = Meta { author: "test".into(), comment: String::new(), expect_version: Some(0) };
    publish(&env.kafka, Change::Replace(spec), meta).await.unwrap();
    let feed = Feed::new(&env);
    let got = loop {
        // Sent until the copy has read the spec and its rule counts the failure.
        feed.assertion(&assertion("svc", "api", "i-1", "api/auth", Outcome::Fail, Severity::Major)).await;
        if let Some(first) = hook.received().into_iter().next() {
            break first;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!((got.status(), got.label("alertname")), ("firing", "fails"));

    // The failures are now older than the configured lookback. A second copy joins and
    // leaves: the first copy is assigned anew twice and replays each time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = Service::spawn(&exe, &["--config", &config], &name, &[]);
    healthy(&second).await;
    assert!(second.terminate().success());
    owns_all(&first).await;
    // The window still holds the failures, so the alarm stays firing: nothing new is sent
    // (a replay of the configured second alone would resolve it).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let got = hook.received();
    assert!(got.iter().all(|r| r.status() == "firing"), "resolved while its failures are in the window: {got:#?}");
    drop(first);
    env.cleanup().await;
}

/// Stopping settles the dispatcher in the revoke callback, then waits for the dispatcher
/// to finish: nothing may keep its queue open by then (the group consumer's context holds
/// a sender of it), or the copy hangs after "shards revoked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_copies_of_a_group_of_two_exit_cleanly_on_sigterm() {
    let env = TestEnv::new().await;
    let hook = Receiver::start().await;
    let file = config_file(&env, &hook, false, "", RULES);
    let config = file.path().display().to_string();
    let exe = workspace_bin("specaudit-alarmer");
    let name = format!("specaudit-alarmer-{}", env.id);
    let mut copies = [
        Service::spawn(&exe, &["--config", &config], &name, &[]),
        Service::spawn(&exe, &["--config", &config], &name, &[]),
    ];
    split(&copies).await;
    // One after the other: the first leaves the group (the second is rebalanced onto
    // every shard), then the second, alone in it, leaves too.
    for copy in &mut copies {
        let status = copy.terminate_within(Duration::from_secs(20));
        assert!(status.is_some_and(|s| s.success()), "no clean exit within 20 s of SIGTERM ({status:?}); log: {}", copy.log.display());
    }
    env.cleanup().await;
}
