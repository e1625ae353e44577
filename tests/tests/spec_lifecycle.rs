//! The spec lifecycle through the real `specctl` and real Kafka: publish, fine-grained
//! changes, history with authors, requirement-level diffs, delete and re-create, refusals
//! that write nothing, `watch`, and history and diffs after the compacted topic has been
//! compacted.

mod spec_support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use serde_json::{json, Value};
use specaudit_core::kafka::{client_config, read_to_end, Topics};
use specaudit_core::spec::Spec;
use specaudit_producer::catalog::load_latest;
use specaudit_producer::diff::diff;
use specaudit_producer::history::{load_history, HistoryError};
use specaudit_producer::publish::{publish, Change, Meta, PublishError};
use specaudit_tests::TestEnv;
use spec_support::{scratch, specctl_command, specctl_fails, specctl_ok, write_file, EXAMPLE};

const TIMEOUT: Duration = Duration::from_secs(30);

fn json_out(env: &TestEnv, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&specctl_ok(env, &all)).expect("specctl printed JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_change_read_history_diff_delete_and_recreate() {
    let env = TestEnv::new().await;
    let dir = scratch(&env);
    let example = write_file(&dir, "example.yaml", EXAMPLE);

    // v1: apply; the author defaults to the OS user, the comment is recorded.
    let out = json_out(&env, &["apply", "-f", &example, "-m", "first", "--expect-version", "0"]);
    assert_eq!((out["version"].as_i64(), out["author"].as_str()), (Some(1), Some("tester")));
    // Applying "must not exist yet" again is a conflict naming the current version.
    let err = specctl_fails(&env, &["apply", "-f", &example, "--expect-version", "0"], 4);
    assert!(err.contains("current version is 1"), "{err}");

    // v2..v5: one requirement, one param, one component, each with --expect-version.
    specctl_ok(&env, &["add", "requirement", "compute-service", "frontend", "hsts", "--value",
        "{severity: major, check: {expr: 'facts.hsts == true'}}", "--author", "bob", "-m", "hsts", "--expect-version", "1"]);
    specctl_ok(&env, &["replace", "param", "compute-service", "frontend.throttle", "max_rps", "--value", "2000",
        "--author", "cy", "--expect-version", "2"]);
    specctl_ok(&env, &["remove", "component", "compute-service", "security", "--author", "dee", "--expect-version", "3"]);
    let stale = specctl_fails(&env, &["remove", "requirement", "compute-service", "frontend", "hsts", "--expect-version", "3"], 4);
    assert!(stale.contains("made against version 3, but the current version is 4"), "{stale}");
    // A fine-grained change that does not fit the current version is refused, nothing written.
    let exists = specctl_fails(&env, &["add", "requirement", "compute-service", "frontend", "hsts", "--value", "{}"], 3);
    assert!(exists.contains("requirement frontend/hsts already exists"), "{exists}");
    let invalid = specctl_fails(&env, &["replace", "requirement", "compute-service", "frontend", "hsts", "--value", "{chekc: {}}"], 3);
    assert!(invalid.contains("components.frontend.requirements.hsts.chekc: unknown field"), "{invalid}");

    // v5: an RFC 6902 patch file (YAML is fine too) with move, copy and test.
    let patch = write_file(&dir, "patch.yaml", "
- {op: test, path: /components/frontend.throttle/params/max_rps, value: 2000}
- {op: copy, from: /components/frontend/requirements/hsts, path: /components/frontend/requirements/hsts-copy}
- {op: move, from: /components/frontend/requirements/hsts, path: /components/frontend/requirements/hsts-strict}
- {op: replace, path: /description, value: Patched}
");
    specctl_ok(&env, &["patch", "compute-service", "--patch-file", &patch, "--author", "eve", "--expect-version", "4"]);
    let failing_test = write_file(&dir, "failing.json", r#"[{"op": "test", "path": "/description", "value": "nope"}]"#);
    specctl_fails(&env, &["patch", "compute-service", "--patch-file", &failing_test], 3);

    // get: latest, and any version from the history.
    let latest = json_out(&env, &["get", "compute-service"]);
    assert_eq!(latest["description"], "Patched");
    let requirements = latest["components"]["frontend"]["requirements"].as_object().unwrap();
    let names: Vec<&String> = requirements.keys().collect();
    assert_eq!(names, ["hsts-copy", "hsts-strict", "tls-min-version"]);
    assert_eq!(latest["components"]["frontend.throttle"]["params"]["max_rps"], 2000);
    assert!(latest["components"].get("security").is_some_and(Value::is_null) || latest["components"].get("security").is_none());
    let v1 = json_out(&env, &["get", "compute-service", "--version", "1"]);
    assert_eq!(Spec::from_value(v1).unwrap(), Spec::parse(EXAMPLE).unwrap());
    specctl_fails(&env, &["get", "compute-service", "--version", "9"], 5);

    // history: every version with author, comment and the patch from the previous one.
    let history = json_out(&env, &["history", "compute-service"]);
    let rows: Vec<(i64, &str)> = history.as_array().unwrap().iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["author"].as_str().unwrap())).collect();
    assert_eq!(rows, [(1, "tester"), (2, "bob"), (3, "cy"), (4, "dee"), (5, "eve")]);
    assert_eq!(history[1]["comment"], "hsts");
    assert_eq!(history[2]["patch"], json!([{"op": "replace", "path": "/components/frontend.throttle/params/max_rps", "value": 2000}]));

    // diff: requirement level, with who changed what.
    let d = json_out(&env, &["diff", "compute-service", "1", "5"]);
    let reqs: Vec<(String, String, Vec<String>)> = d["requirements"].as_array().unwrap().iter().map(|r| (
        r["id"].as_str().unwrap().to_owned(),
        r["change"].as_str().unwrap().to_owned(),
        r["by"].as_array().unwrap().iter().map(|b| b["author"].as_str().unwrap().to_owned()).collect(),
    )).collect();
    assert_eq!(reqs, [
        ("frontend/hsts-copy".to_owned(), "added".to_owned(), vec!["eve".to_owned()]),
        ("frontend/hsts-strict".to_owned(), "added".to_owned(), vec!["eve".to_owned()]),
        ("security/audit-logging".to_owned(), "removed".to_owned(), vec!["dee".to_owned()]),
    ]);
    assert_eq!(d["params"][0]["name"], "max_rps");
    assert_eq!((d["params"][0]["before"].as_i64(), d["params"][0]["after"].as_i64()), (Some(1000), Some(2000)));
    assert_eq!(d["other"], json!(["description"]));
    let text = specctl_ok(&env, &["diff", "compute-service", "1", "5"]);
    assert!(text.contains("- requirement security/audit-logging  [v4 dee]"), "{text}");

    // delete, then re-create: the versions go on, the history keeps everything.
    specctl_ok(&env, &["delete", "compute-service", "--expect-version", "5", "-m", "retired"]);
    specctl_fails(&env, &["get", "compute-service"], 5);
    specctl_fails(&env, &["delete", "compute-service"], 5);
    specctl_fails(&env, &["add", "param", "compute-service", "frontend", "x", "--value", "1"], 5);
    assert!(!specctl_ok(&env, &["list"]).contains("compute-service"));
    // "Must not exist yet" holds for a deleted spec (as would the delete's version, 6).
    let recreated = json_out(&env, &["apply", "-f", &example, "--expect-version", "0", "-m", "back"]);
    assert_eq!(recreated["version"], 7);
    let d = diff(&load_history(&env.kafka, "compute-service", TIMEOUT).unwrap(), 6, 7).unwrap();
    assert_eq!(d.requirements.len(), 16);
    let list = json_out(&env, &["list"]);
    assert_eq!((list[0]["spec"].as_str(), list[0]["version"].as_i64()), (Some("compute-service"), Some(7)));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_specs_write_nothing() {
    let env = TestEnv::new().await;
    let dir = scratch(&env);
    let typo = write_file(&dir, "typo.yaml", &EXAMPLE.replace("check: {expr: facts.max_rps", "chekc: {expr: facts.max_rps"));
    let err = specctl_fails(&env, &["apply", "-f", &typo], 3);
    assert!(err.contains("components.frontend.throttle.requirements.limit-set.chekc: unknown field `chekc`"), "{err}");
    assert!(err.contains("(line 22)"), "{err}");
    let validate = specctl_fails(&env, &["validate", "-f", &typo], 3);
    assert_eq!(validate, err);
    // As data, for editors and CI.
    let out = spec_support::specctl(&env, &["--format", "json", "validate", "-f", &typo]);
    assert_eq!(out.status.code(), Some(3));
    let data: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(data["valid"], false);
    assert_eq!(data["problems"][0]["path"], "components.frontend.throttle.requirements.limit-set.chekc");
    assert_eq!(data["problems"][0]["line"], 22);

    // Larger than the topic accepts: refused before anything is written.
    let admin: AdminClient<DefaultClientContext> = client_config(&env.kafka).create().unwrap();
    let topics = Topics::new(&env.kafka.topic_prefix);
    let small = AlterConfig::new(ResourceSpecifier::Topic(&topics.spec_history)).set("max.message.bytes", "20000").set("retention.ms", "-1");
    admin.alter_configs(&[small], &AdminOptions::new()).await.unwrap().into_iter().for_each(|r| { r.unwrap(); });
    // The broker applies a config change asynchronously: wait until it reports it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = admin.describe_configs(&[ResourceSpecifier::Topic(&topics.spec_history)], &AdminOptions::new()).await.unwrap();
        let limit = described[0].as_ref().ok().and_then(|r| r.get("max.message.bytes")).and_then(|e| e.value.clone());
        if limit.as_deref() == Some("20000") {
            break;
        }
        assert!(Instant::now() < deadline, "the topic config change did not show: {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut big = Spec::parse(EXAMPLE).unwrap();
    big.description = "x".repeat(30_000);
    let meta = Meta { author: "a".into(), comment: String::new(), expect_version: None };
    let Err(err) = publish(&env.kafka, Change::Replace(big), meta.clone()).await else {
        panic!("a spec larger than the topic accepts was published")
    };
    assert!(matches!(err, PublishError::TooLarge { limit: 20_000, .. }), "{err}");
    assert!(err.to_string().contains("more than the 20000 bytes"), "{err}");
    assert!(matches!(load_history(&env.kafka, "compute-service", TIMEOUT), Err(HistoryError::NotFound { .. })));
    assert!(load_latest(&env.kafka, TIMEOUT).unwrap().is_empty());
    // A spec that fits goes through.
    publish(&env.kafka, Change::Replace(Spec::parse(EXAMPLE).unwrap()), meta).await.unwrap();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_new_version_as_it_lands() {
    let env = TestEnv::new().await;
    let dir = scratch(&env);
    let example = write_file(&dir, "example.yaml", EXAMPLE);
    let mut watcher = specctl_command(&env, &["--format", "json", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(watcher.stderr.take().unwrap());
    let mut ready = String::new();
    stderr.read_line(&mut ready).unwrap();
    assert!(ready.contains("watching"), "{ready}");
    specctl_ok(&env, &["apply", "-f", &example, "--author", "w1"]);
    specctl_ok(&env, &["replace", "param", "compute-service", "frontend", "tls_min_version", "--value", "'1.3'", "--author", "w2"]);
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = lines.next().expect("watch ended early").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        seen.push((v["version"].as_i64().unwrap(), v["author"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen, [(1, "w1".to_owned()), (2, "w2".to_owned())]);
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    env.cleanup().await;
}

/// How many records the specs topic holds now.
fn records_in_specs(env: &TestEnv) -> usize {
    let mut n = 0;
    read_to_end(&env.kafka, &Topics::new(&env.kafka.topic_prefix).specs, TIMEOUT, |_| n += 1).unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_diff_survive_compaction_of_the_specs_topic() {
    let env = TestEnv::new().await;
    // Small segments and an eager cleaner on this test's own specs topic only.
    let admin: AdminClient<DefaultClientContext> = client_config(&env.kafka).create().unwrap();
    let topics = Topics::new(&env.kafka.topic_prefix);
    let eager = AlterConfig::new(ResourceSpecifier::Topic(&topics.specs))
        .set("cleanup.policy", "compact")
        .set("segment.ms", "500")
        .set("min.cleanable.dirty.ratio", "0.001")
        .set("min.compaction.lag.ms", "0")
        .set("max.message.bytes", "8388608");
    admin.alter_configs(&[eager], &AdminOptions::new()).await.unwrap().into_iter().for_each(|r| { r.unwrap(); });

    let mut spec = Spec::parse(EXAMPLE).unwrap();
    for n in 1..=30 {
        spec.components.get_mut("frontend.throttle").unwrap().params.insert("max_rps".into(), json!(n * 100));
        let meta = Meta { author: format!("author-{n}"), comment: format!("rate {n}"), expect_version: Some(n - 1) };
        publish(&env.kafka, Change::Replace(spec.clone()), meta).await.unwrap();
    }
    // Compaction needs closed segments: keep writing (another spec) until the cleaner has
    // dropped the superseded versions.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut other = Spec::parse(EXAMPLE).unwrap();
    other.spec = "filler".into();
    let mut filler = 0;
    while records_in_specs(&env) > 10 {
        assert!(Instant::now() < deadline, "the specs topic was not compacted within 180 s");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let meta = Meta { author: "filler".into(), comment: String::new(), expect_version: None };
        publish(&env.kafka, Change::Replace(other.clone()), meta).await.unwrap();
        filler += 1;
    }
    assert!(records_in_specs(&env) < 30 + filler);

    // The latest version is intact, and the next publish continues from it.
    assert_eq!(load_latest(&env.kafka, TIMEOUT).unwrap()["compute-service"].version, 30);
    let meta = Meta { author: "late".into(), comment: String::new(), expect_version: Some(30) };
    spec.description = "after compaction".into();
    assert_eq!(publish(&env.kafka, Change::Replace(spec), meta).await.unwrap().version, 31);
    // History and diffs still have every version.
    let history = load_history(&env.kafka, "compute-service", TIMEOUT).unwrap();
    assert_eq!(history.iter().map(|v| v.version).collect::<Vec<_>>(), (1..=31).collect::<Vec<_>>());
    let d = diff(&history, 1, 31).unwrap();
    assert_eq!(d.params.len(), 1);
    assert_eq!((d.params[0].before.clone(), d.params[0].after.clone()), (Some(json!(100)), Some(json!(3000))));
    assert_eq!(d.params[0].by.len(), 29, "versions 2..=30 changed the rate");
    assert_eq!(d.versions.len(), 30);
    let stale = specctl_fails(&env, &["remove", "component", "compute-service", "security", "--expect-version", "30"], 4);
    assert!(stale.contains("current version is 31"), "{stale}");
    env.cleanup().await;
}
