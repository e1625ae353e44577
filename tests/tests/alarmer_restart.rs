//! Restart safety and delivery: a restart while firing notifies nobody again and still
//! resolves; a receiver that is down gets the notification once it is back; a waiver
//! suppresses an alarm, is logged, and lets it notify once it expires.

mod alarmer_common;

use std::time::Duration;

use alarmer_common::{assertion, config, Alarmer, Feed, Receiver};
use specaudit_core::record::{now_ms, Outcome, Severity};
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
