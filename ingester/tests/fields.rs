//! Every field of an assertion lands in the raw table as the agent sent it: the ingester
//! writes the assertions' inserts by hand (RowBinary, sorted by the table's key), so this
//! reads each row back and compares it with the record produced.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::Producer;
use specaudit_core::codec::{Codec, MAX_FIELD_BYTES, MAX_TS_MS};
use specaudit_core::kafka::Topics;
use specaudit_core::record::{Assertion, Outcome, Severity};
use specaudit_tests::TestEnv;
use support::wait_for_rows;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A row as the raw table holds it, enums as their names.
#[derive(Debug, PartialEq, clickhouse::Row, serde::Deserialize)]
struct Stored {
    #[serde(with = "clickhouse::serde::uuid")]
    assertion_id: Uuid,
    ts_ms: u64,
    ts: u32,
    spec: String,
    spec_version: u64,
    component: String,
    instance: String,
    agent_id: String,
    requirement: String,
    task: String,
    outcome: String,
    severity: String,
    count: u32,
    message: String,
    details: String,
    label_keys: Vec<String>,
    label_values: Vec<String>,
}

/// The row `a` must become.
fn expected(a: &Assertion) -> Stored {
    Stored {
        assertion_id: a.assertion_id,
        ts_ms: a.ts as u64,
        ts: (a.ts / 1000) as u32,
        spec: a.spec.clone(),
        spec_version: a.spec_version as u64,
        component: a.component.clone(),
        instance: a.instance.clone(),
        agent_id: a.agent_id.clone(),
        requirement: a.requirement.clone(),
        task: a.task.clone(),
        outcome: a.outcome.as_str().into(),
        severity: a.severity.as_str().into(),
        count: a.count as u32,
        message: a.message.clone(),
        details: a.details.clone(),
        label_keys: a.labels.keys().cloned().collect(),
        label_values: a.labels.values().cloned().collect(),
    }
}

/// Assertions that differ in every field, edge values included.
fn assertions() -> Vec<Assertion> {
    let severities = [Severity::Critical, Severity::Major, Severity::Minor, Severity::Info];
    (0..400u32)
        .map(|i| {
            let mut labels = BTreeMap::new();
            for l in 0..i % 4 {
                labels.insert(format!("key-{l}"), format!("välue {i}/{l}"));
            }
            Assertion {
                assertion_id: Uuid::now_v7(),
                ts: match i {
                    0 => 1,
                    1 => MAX_TS_MS,
                    _ => 1_764_000_000_000 + i64::from(i * 7919 % 1000) * 1_001,
                },
                spec: ["payments", "ledger", "payments-v2"][i as usize % 3].into(),
                spec_version: if i == 2 { i64::MAX } else { i64::from(i % 5) + 1 },
                component: format!("svc.{}", ["web", "api", "Web", "wëb"][i as usize % 4]),
                instance: format!("i-{}", i % 13),
                agent_id: format!("agent-{}", i % 13),
                requirement: format!("REQ-{}", i % 11),
                task: if i % 6 == 0 { String::new() } else { format!("task {i} ✓") },
                outcome: Outcome::ALL[i as usize % 4],
                severity: severities[i as usize % 4],
                count: match i {
                    3 => i64::from(u32::MAX),
                    _ => i64::from(i % 9) + 1,
                },
                message: match i {
                    4 => "m".repeat(MAX_FIELD_BYTES),
                    _ if i % 2 == 0 => format!("limit {i} exceeded: \"quoted\"\n\ttab, 日本語"),
                    _ => String::new(),
                },
                details: if i % 3 == 0 { format!(r#"{{"latency_ms":{i},"nested":{{"a":[1,2]}}}}"#) } else { String::new() },
                labels,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_of_an_assertion_lands_as_sent() {
    let env = TestEnv::new().await;
    let topics = Topics::new(&env.kafka.topic_prefix);
    let codec = Codec::<Assertion>::new();
    let sent = assertions();
    let producer = support::producer(&env.kafka);
    for a in &sent {
        support::send(&producer, &topics.assertions, &a.instance, &codec.encode(a).expect("encode"));
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    let config = support::config(&env);
    let stop = CancellationToken::new();
    let ingester = tokio::spawn(specaudit_ingester::run(config, stop.clone()));
    let client = env.client();
    wait_for_rows(&client, sent.len() as u64, Duration::from_secs(120)).await;
    stop.cancel();
    ingester.await.expect("join").expect("ingester");

    let stored: Vec<Stored> = client
        .query(
            "SELECT assertion_id, ts_ms, toUInt32(ts), spec, spec_version, component, instance, agent_id, requirement, task, \
             toString(outcome), toString(severity), count, message, details, label_keys, label_values FROM assertions",
        )
        .fetch_all()
        .await
        .expect("read back");
    let stored: BTreeMap<Uuid, Stored> = stored.into_iter().map(|s| (s.assertion_id, s)).collect();
    assert_eq!(stored.len(), sent.len(), "one row per assertion");
    for a in &sent {
        let row = stored.get(&a.assertion_id).unwrap_or_else(|| panic!("{} not stored", a.assertion_id));
        assert_eq!(row, &expected(a));
    }
    env.cleanup().await;
}
