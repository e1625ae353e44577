//! Restart safety and delivery: a restart while firing notifies nobody again and still
//! resolves, also for a silence after the spec was edited and the specs topic compacted;
//! a receiver that is down gets the notification once it is back; a waiver suppresses an
//! alarm, is logged, and lets it notify once it expires.

mod alarmer_common;

use std::time::{Duration, Instant};

use alarmer_common::{assertion, config, specs_topic_ready, Alarmer, Feed, Receiver};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::{Message, Offset, TopicPartitionList};
use specaudit_core::codec::Codec;
use specaudit_core::kafka::{client_config, read_to_end, Topics};
use specaudit_core::record::{now_ms, Outcome, Severity, SpecVersion};
use specaudit_core::spec::Spec;
use specaudit_producer::publish::{publish, Change, Meta};
use specaudit_tests::TestEnv;

const RULE: &str = "[[rules]]\nname = \"fails\"\nwhen = { failures_at_least = 1, window = \"20s\" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_firing_does_not_notify_again_and_still_resolves() {
    let env = TestEnv::new().await;
    let hook = Receiver::start().await;
    let short = "[[rules]]\nname = \"fails\"\nwhen = { failures_at_least = 1, window = \"6s\" }\n";
    let alarmer = Alarmer::start(config(&env, &hook, false, "", short)).await;
    let feed = Feed::new(&env);
    feed.assertion(&assertion("svc", "db", "db-1", "db/backup", Outcome::Fail, Severity::Major)).await;
    assert_eq!(hook.wait_for(1, "firing").await[0].status(), "firing");
    // Stop while firing (SIGTERM path: the firing event is in the log), start a new one.
    alarmer.stop().await;
    let alarmer = Alarmer::start(config(&env, &hook, false, "", short)).await;
    // The new process replays the window, finds the alarm firing, and stays quiet until
    // the failure leaves the window: then exactly one resolved notification.
    let got = hook.wait_for(2, "resolution after the restart").await;
    assert_eq!(got[1].status(), "resolved", "no second firing: {got:#?}");
    assert_eq!(got[1].json["groupKey"], got[0].json["groupKey"]);
    alarmer.stop().await;
    assert_eq!(hook.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_the_notification_when_it_returns() {
    let env = TestEnv::new().await;
    let hook = Receiver::start().await;
    hook.set_down(true);
    let alarmer = Alarmer::start(config(&env, &hook, false, "", RULE)).await;
    let feed = Feed::new(&env);
    feed.assertion(&assertion("svc", "db", "db-1", "db/backup", Outcome::Fail, Severity::Major)).await;
    // Wait until the alarmer has been refused a few times (retrying with backoff).
    while hook.refused() < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hook.set_down(false);
    let got = hook.wait_for(1, "delivery after the receiver returned").await;
    assert_eq!(got[0].status(), "firing");
    alarmer.stop().await;
    assert_eq!(hook.received().len(), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiver_suppresses_until_it_expires() {
    let env = TestEnv::new().await;
    let hook = Receiver::start().await;
    let ends_ms = now_ms() + 4_000;
    let ends = specaudit_alarmer::notify::payload::rfc3339(ends_ms);
    let waiver = format!(
        "[[waivers]]\nmatch = {{ requirement = \"db/*\" }}\nends_at = \"{ends}\"\nauthor = \"alice\"\nreason = \"restore drill\"\n"
    );
    let alarmer = Alarmer::start(config(&env, &hook, false, "", &format!("{RULE}{waiver}"))).await;
    let feed = Feed::new(&env);
    feed.assertion(&assertion("svc", "db", "db-1", "db/backup", Outcome::Fail, Severity::Major)).await;
    let got = hook.wait_for(1, "firing once the waiver expired").await;
    assert!(now_ms() >= ends_ms, "notified before the waiver ended");
    assert_eq!(got[0].status(), "firing");
    alarmer.stop().await;
    assert_eq!(hook.received().len(), 1);
    // The waived transition is in the log, with author and reason, before the firing.
    let topic = specaudit_core::kafka::Topics::new(&env.kafka.topic_prefix).alarms;
    let kafka = env.kafka.clone();
    let events = tokio::task::spawn_blocking(move || {
        let codec = specaudit_core::codec::Codec::<specaudit_core::record::AlarmEvent>::new();
        let mut events = Vec::new();
        specaudit_core::kafka::read_to_end(&kafka, &topic, Duration::from_secs(30), |m| {
            events.push(codec.decode(rdkafka::Message::payload(m).unwrap()).unwrap());
        })
        .unwrap();
        events
    })
    .await
    .unwrap();
    let states: Vec<_> = events.iter().map(|e| e.state).collect();
    use specaudit_core::record::AlarmState;
    assert_eq!(states, [AlarmState::Waived, AlarmState::Firing]);
    assert_eq!(events[0].labels["waiver_author"], "alice");
    assert!(events[0].summary.contains("restore drill"), "{}", events[0].summary);
}

/// Publishes version `expect + 1` of a spec whose one requirement is frontend/audit.
async fn publish_spec(env: &TestEnv, name: &str, description: &str, expect: i64) -> SpecVersion {
    specs_topic_ready(env).await;
    let spec = Spec::parse(&format!(
        r#"{{"apiVersion": "specaudit/v1", "spec": "{name}", "description": "{description}",
            "components": {{"frontend": {{"requirements": {{"audit": {{}}}}}}}}}}"#
    ))
    .unwrap();
    let meta = Meta { author: "test".into(), comment: String::new(), expect_version: Some(expect) };
    publish(&env.kafka, Change::Replace(spec), meta).await.unwrap()
}

/// The spec versions a reader of the specs topic gets now, with their offsets.
async fn specs_topic(env: &TestEnv) -> Vec<(i32, i64, SpecVersion)> {
    let kafka = env.kafka.clone();
    tokio::task::spawn_blocking(move || {
        let codec = Codec::<SpecVersion>::new();
        let mut out = Vec::new();
        read_to_end(&kafka, &Topics::new(&kafka.topic_prefix).specs, Duration::from_secs(30), |m| {
            out.push((m.partition(), m.offset(), codec.decode(m.payload().unwrap()).unwrap()));
        })
        .unwrap();
        out
    })
    .await
    .unwrap()
}

/// Leaves on the specs topic only its last record (the tests' topics hold one spec), as
/// the log cleaner would in its own time: the records before it are deleted.
async fn compact_specs(env: &TestEnv) {
    let topic = Topics::new(&env.kafka.topic_prefix).specs;
    let records = specs_topic(env).await;
    let &(partition, offset, _) = records.last().unwrap();
    let admin: AdminClient<DefaultClientContext> = client_config(&env.kafka).create().unwrap();
    // Kafka deletes records only where the cleanup policy includes delete.
    let policy = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("cleanup.policy", "compact,delete");
    admin.alter_configs(&[policy], &AdminOptions::new()).await.unwrap().into_iter().for_each(|r| {
        r.unwrap();
    });
    let mut before = TopicPartitionList::new();
    before.add_partition_offset(&topic, partition, Offset::Offset(offset)).unwrap();
    // The broker applies a config change asynchronously: retry until it allows the delete.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let deleted = admin.delete_records(&before, &AdminOptions::new()).await;
        let error = match &deleted {
            Ok(list) => list.elements().first().and_then(|e| e.error().err()),
            Err(error) => Some(error.clone()),
        };
        let Some(error) = error else { break };
        assert!(Instant::now() < deadline, "cannot delete the old records of {topic}: {error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_firing_stays_firing_across_a_spec_edit_compaction_and_restart() {
    const SILENCE_MS: i64 = 15_000;
    let env = TestEnv::new().await;
    let name = format!("quiet-{}", env.id);
    publish_spec(&env, &name, "v1", 0).await;
    let hook = Receiver::start().await;
    let rule = &format!("[[rules]]\nname = \"silent\"\nwhen = {{ silent_for = \"{}s\" }}\n", SILENCE_MS / 1000);
    let alarmer = Alarmer::start(config(&env, &hook, false, "", rule)).await;
    let got = hook.wait_for(1, "the silence alarm").await;
    assert_eq!((got[0].status(), got[0].label("requirement")), ("firing", "frontend/audit"));
    // An edit that keeps the requirement; then the specs topic holds only the edit.
    let v2 = publish_spec(&env, &name, "v2", 1).await;
    alarmer.stop().await;
    compact_specs(&env).await;
    let left: Vec<i64> = specs_topic(&env).await.iter().map(|(_, _, v)| v.version).collect();
    assert_eq!(left, [2], "the specs topic holds the latest version only");

    // frontend/audit has been silent since v1. Counted from v2, the new process would
    // resolve the alarm at once and fire it again at v2 + 15 s: wait past that.
    let alarmer = Alarmer::start(config(&env, &hook, false, "", rule)).await;
    while now_ms() < v2.ts + SILENCE_MS + 3_000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got: Vec<String> = hook.received().iter().map(|r| format!("{} at {}", r.status(), r.at_ms - v2.ts)).collect();
    assert_eq!(got.len(), 1, "still firing, nothing notified again (ms after v2): {got:?}");
    // The new process holds it firing: the first report resolves it, once.
    let feed = Feed::new(&env);
    feed.assertion(&assertion(&name, "frontend", "fe-1", "frontend/audit", Outcome::Pass, Severity::Major)).await;
    let got = hook.wait_for(2, "resolution once it reports").await;
    assert_eq!((got[1].status(), got[1].json["groupKey"].clone()), ("resolved", got[0].json["groupKey"].clone()));
    alarmer.stop().await;
    assert_eq!(hook.received().len(), 2);
}
