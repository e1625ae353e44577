//! `specaudit-sidecar lines` against the real stack (`deploy/local/stack up`; brokers from
//! `SPECAUDIT_TEST_BROKERS`): stopped with SIGTERM while its input is still open, it flushes
//! what it was told before it exits, like the HTTP mode.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use specaudit_core::codec::Codec;
use specaudit_core::config::KafkaConfig;
use specaudit_core::kafka::{ensure_topics, read_to_end, Topics};
use specaudit_core::record::{Assertion, Outcome};
use specaudit_core::spec::Spec;
use specaudit_producer::publish::{publish, Change, Meta};

const SPEC: &str = r#"
apiVersion: specaudit/v1
spec: shop
components:
  web:
    params: {min_tls: "1.2"}
    requirements:
      tls:
        check: {expr: facts.tls >= params.min_tls}
"#;

/// Topics of its own, so the test sees only its own records.
async fn kafka() -> KafkaConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let kafka = KafkaConfig {
        brokers: std::env::var("SPECAUDIT_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        topic_prefix: format!("test-{}.", &id[..10]),
        ..KafkaConfig::default()
    };
    ensure_topics(&kafka).await.expect("cannot create test topics: is the local stack up (deploy/local/stack up)?");
    kafka
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_lines_mode_flushes_the_results_to_kafka() {
    let kafka = kafka().await;
    let meta = Meta { author: "test".into(), comment: String::new(), expect_version: Some(0) };
    publish(&kafka, Change::Replace(Spec::parse(SPEC).unwrap()), meta).await.unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_specaudit-sidecar"))
        .arg("lines")
        .env_remove("SPECAUDIT_CONFIG")
        .env("SPECAUDIT__KAFKA__BROKERS", &kafka.brokers)
        .env("SPECAUDIT__KAFKA__TOPIC_PREFIX", &kafka.topic_prefix)
        .env("SPECAUDIT__SIDECAR__INSTANCE", "host-1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start specaudit-sidecar lines");
    // A pass: it waits in the agent's rollup, so only a flush on the way out sends it.
    let mut stdin = child.stdin.take().expect("stdin");
    let line = json!({"op": "check", "component": "web", "task": "serve", "facts": {"tls": "1.3"}});
    writeln!(stdin, "{line}").expect("write a line");
    let mut answer = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let output = tokio::task::spawn_blocking(move || {
        stdout.read_line(&mut answer).expect("read the answer");
        let answer: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
        assert_eq!(answer["results"][0]["outcome"], "pass", "{answer}");
        // The input stays open: the service is still running when it is told to stop.
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
        assert!(status.success());
        let output = child.wait_with_output().expect("wait");
        drop(stdin);
        output
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "ended with {} after SIGTERM:\n{stderr}", output.status);

    let topic = Topics::new(&kafka.topic_prefix).assertions;
    let assertions = tokio::task::spawn_blocking(move || {
        let codec = Codec::<Assertion>::new();
        let mut out = Vec::new();
        read_to_end(&kafka, &topic, Duration::from_secs(30), |m| {
            use rdkafka::Message;
            out.push(codec.decode(m.payload().unwrap_or_default()).unwrap());
        })
        .unwrap();
        out
    })
    .await
    .unwrap();
    let passes: Vec<(&str, &str, Outcome, i64)> =
        assertions.iter().map(|a| (a.component.as_str(), a.requirement.as_str(), a.outcome, a.count)).collect();
    assert_eq!(passes, vec![("web", "web/tls", Outcome::Pass, 1)], "{stderr}");
}
