//! An agent while Kafka is down: `check` keeps answering, what cannot be queued is dropped
//! and counted (the queue is bounded), and reporting resumes when the broker returns.
//! Stops the stack's Kafka: runs in a binary of its own.

use std::time::{Duration, Instant};

use serde_json::json;
use specaudit_core::codec::Codec;
use specaudit_core::kafka::{read_to_end, Topics};
use specaudit_core::record::{Assertion, Outcome};
use specaudit_core::spec::Spec;
use specaudit_producer::agent::{Agent, AgentConfig};
use specaudit_producer::publish::{publish, Change, Meta};
use specaudit_tests::stack::{serial, Outage};
use specaudit_tests::TestEnv;

const SPEC: &str = "apiVersion: specaudit/v1\nspec: outage\ncomponents:\n  web:\n    requirements:\n      tls:\n        check: {expr: facts.tls >= '1.2'}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_go_on_while_the_broker_is_down_and_reporting_resumes() {
    let _serial = serial();
    let env = TestEnv::new().await;
    let meta = Meta { author: "test".into(), comment: String::new(), expect_version: Some(0) };
    publish(&env.kafka, Change::Replace(Spec::parse(SPEC).unwrap()), meta).await.unwrap();
    let mut config = AgentConfig::new(env.kafka.clone(), "web", "w-1");
    config.queue_bytes = 64 * 1024;
    config.rollup_interval = Duration::from_millis(100);
    let agent = tokio::task::spawn_blocking(move || Agent::start(config)).await.unwrap().unwrap();

    let outage = Outage::begin("kafka");
    let during = 5_000;
    let checking = agent.clone();
    tokio::task::spawn_blocking(move || {
        for _ in 0..during {
            // Every one fails, so every one becomes a record to queue.
            assert_eq!(checking.check("serve", &json!({"tls": "1.0"}))[0].outcome, Outcome::Fail);
        }
    })
    .await
    .unwrap();
    let counters = agent.counters();
    assert_eq!(counters.checked, during);
    assert!(counters.dropped > 0, "a 64 KiB queue cannot hold {during} records: {counters:?}");
    outage.end();

    // Reporting resumes: assertions checked after the outage reach the topic.
    let deadline = Instant::now() + Duration::from_secs(120);
    let topic = Topics::new(&env.kafka.topic_prefix).assertions;
    loop {
        agent.check("after-outage", &json!({"tls": "1.0"}));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut seen = false;
        let kafka = env.kafka.clone();
        let topic = topic.clone();
        let found = tokio::task::spawn_blocking(move || {
            let codec = Codec::<Assertion>::new();
            read_to_end(&kafka, &topic, Duration::from_secs(20), |m| {
                use rdkafka::Message;
                if let Ok(a) = codec.decode(m.payload().unwrap_or_default()) {
                    seen |= a.task == "after-outage";
                }
            })
            .map(|()| seen)
        })
        .await
        .unwrap();
        if found.unwrap_or(false) {
            break;
        }
        assert!(Instant::now() < deadline, "no assertion reached kafka within 120 s of its return");
    }
    let stopping = agent.clone();
    tokio::task::spawn_blocking(move || stopping.shutdown(Duration::from_secs(10))).await.unwrap();
    let counters = agent.counters();
    assert!(counters.emitted > 0, "{counters:?}");
    assert!(counters.checked > during, "{counters:?}");
}
