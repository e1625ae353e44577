//! Bad input, end to end: a corpus of corrupt records, invalid specs, bad configurations and
//! bad requests, fed to the real binaries on the real stack. Each case names what it feeds
//! and what it must produce — a dead letter with its reason, an exit code, a status — and a
//! substring of the message that explains it; after each group every long-running process
//! must still be alive. The cases are in `tests/bad-input/`.

mod bad_input_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bad_input_support::{bin, cases, data_dir, free_port, hex, report, run_within, stack_env, Service};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::Value;
use specaudit_core::codec::Codec;
use specaudit_core::kafka::Topics;
use specaudit_core::record::{AlarmEvent, Assertion, Heartbeat, SpecVersion};
use specaudit_core::spec::Spec;
use specaudit_ingester::dead_letter::{HEADER_ERROR, HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC};
use specaudit_producer::publish::{publish, Change, Meta};
use specaudit_tests::TestEnv;

/// `tests/bad-input/specs/shop.yaml`, published as version 1 before the cases run.
fn shop() -> String {
    std::fs::read_to_string(data_dir().join("specs/shop.yaml")).expect("shop.yaml")
}

async fn publish_shop(env: &TestEnv) {
    let meta = Meta { author: "owner".into(), comment: "first".into(), expect_version: Some(0) };
    publish(&env.kafka, Change::Replace(Spec::parse(&shop()).expect("shop.yaml is valid")), meta).await.expect("publish shop");
}

fn contains_all(text: &str, wanted: &[String]) -> Result<(), String> {
    match wanted.iter().find(|w| !text.contains(w.as_str())) {
        Some(missing) => Err(format!("wanted {missing:?} in:\n{text}")),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Topics: corrupt records become dead letters; the readers keep going.

#[derive(Debug, Deserialize)]
struct RecordCase {
    name: String,
    topic: String,
    #[serde(default)]
    json: Option<String>,
    #[serde(default)]
    hex: Option<String>,
    #[serde(default)]
    tombstone: bool,
    #[serde(default)]
    avro: Option<AvroPayload>,
    /// The dead-letter reason; none for topics the ingester does not read.
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    error: String,
}

#[derive(Debug, Deserialize)]
struct AvroPayload {
    schema: String,
    value: Value,
    #[serde(default)]
    cut: usize,
    #[serde(default)]
    trailing: String,
    #[serde(default)]
    fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RecordCases {
    cases: Vec<RecordCase>,
}

fn fill(template: &str) -> String {
    template.replace("{uuid}", &uuid::Uuid::now_v7().to_string()).replace("{now}", &specaudit_core::record::now_ms().to_string())
}

fn encode<T: specaudit_core::codec::Record>(value: &Value) -> Vec<u8> {
    let record: T = serde_json::from_value(value.clone()).expect("avro case value fits its schema");
    Codec::<T>::new().encode(&record).expect("encode")
}

/// The bytes of a case; `None` for a tombstone.
fn payload(case: &RecordCase) -> Option<Vec<u8>> {
    if case.tombstone {
        return None;
    }
    if let Some(json) = &case.json {
        return Some(fill(json).into_bytes());
    }
    if let Some(text) = &case.hex {
        return Some(hex(text));
    }
    let avro = case.avro.as_ref().unwrap_or_else(|| panic!("{}: no payload", case.name));
    let mut bytes = match avro.schema.as_str() {
        "assertion" => encode::<Assertion>(&avro.value),
        "heartbeat" => encode::<Heartbeat>(&avro.value),
        "spec_version" => encode::<SpecVersion>(&avro.value),
        "alarm" => encode::<AlarmEvent>(&avro.value),
        other => panic!("{}: unknown schema {other}", case.name),
    };
    bytes.truncate(bytes.len() - avro.cut);
    bytes.extend_from_slice(avro.trailing.as_bytes());
    if let Some(fingerprint) = &avro.fingerprint {
        bytes[2..10].copy_from_slice(&hex(fingerprint));
    }
    Some(bytes)
}

fn topic<'t>(topics: &'t Topics, name: &str) -> &'t str {
    match name {
        "assertions" => &topics.assertions,
        "heartbeats" => &topics.heartbeats,
        "spec-history" => &topics.spec_history,
        "alarms" => &topics.alarms,
        "specs" => &topics.specs,
        other => panic!("unknown topic {other}"),
    }
}

/// Sends one record and returns where it landed.
async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: Option<&[u8]>) -> (i32, i64) {
    let mut record = FutureRecord::<str, [u8]>::to(topic).key(key);
    if let Some(bytes) = payload {
        record = record.payload(bytes);
    }
    producer.send(record, Duration::from_secs(30)).await.map(|d| (d.partition, d.offset)).expect("produce")
}

fn good_assertion(n: usize) -> Vec<u8> {
    fill(&format!(
        r#"{{"assertion_id":"{{uuid}}","ts":{{now}},"spec":"shop","spec_version":1,"component":"web","instance":"i-{n}","agent_id":"good-{n}","requirement":"web/tls","outcome":"pass","severity":"major"}}"#
    ))
    .into_bytes()
}

fn good_heartbeat(n: usize) -> Vec<u8> {
    fill(&format!(r#"{{"agent_id":"good-{n}","component":"web","instance":"i-{n}","ts":{{now}},"started_at":{{now}},"sdk_version":"test"}}"#))
        .into_bytes()
}

fn good_alarm(n: usize) -> Vec<u8> {
    let event = serde_json::json!({"fingerprint": format!("good-{n}"), "ts": specaudit_core::record::now_ms(), "rule": "r",
        "state": "firing", "severity": "major", "spec": "shop", "component": "web", "requirement": "web/tls",
        "summary": "good", "value": 1.0, "labels": {}});
    encode::<AlarmEvent>(&event)
}

async fn count(client: &clickhouse::Client, sql: &str) -> u64 {
    client.query(sql).fetch_one::<u64>().await.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_records_become_dead_letters_and_every_reader_keeps_going() {
    let env = TestEnv::new().await;
    let topics = Topics::new(&env.kafka.topic_prefix);
    let corpus: RecordCases = cases("records.yaml");
    publish_shop(&env).await;

    // The ingester, and the other readers of these topics: the alarmer and a sidecar.
    let mut vars = stack_env(&env, true);
    let port = free_port();
    vars.extend([
        ("SPECAUDIT__INGEST__GROUP_ID".to_owned(), format!("bad-input-ingester-{}", env.id)),
        ("SPECAUDIT__INGEST__MAX_DELAY".to_owned(), "100ms".to_owned()),
        ("SPECAUDIT__TELEMETRY__LISTEN".to_owned(), format!("127.0.0.1:{port}")),
    ]);
    let mut ingester = Service::spawn("specaudit-ingester", &["run"], &vars, port);
    let mut vars = stack_env(&env, false);
    let port = free_port();
    vars.extend([
        ("SPECAUDIT__ALARMER__GROUP_ID".to_owned(), format!("bad-input-alarmer-{}", env.id)),
        ("SPECAUDIT__ALARMER__MIN_LOOKBACK".to_owned(), "1m".to_owned()),
        ("SPECAUDIT__TELEMETRY__LISTEN".to_owned(), format!("127.0.0.1:{port}")),
    ]);
    let mut alarmer = Service::spawn("specaudit-alarmer", &[], &vars, port);
    let mut vars = stack_env(&env, false);
    let port = free_port();
    vars.extend([
        ("SPECAUDIT__SIDECAR__LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        ("SPECAUDIT__SIDECAR__INSTANCE".to_owned(), "host-1".to_owned()),
    ]);
    let mut sidecar = Service::spawn("specaudit-sidecar", &["serve"], &vars, port);
    for service in [&mut ingester, &mut alarmer, &mut sidecar] {
        service.assert_alive(Duration::from_secs(60)).await;
    }
    let http = reqwest::Client::new();
    let listed = http.get(format!("{}/v1/requirements?component=web", sidecar.base)).send().await.expect("sidecar");
    let listed: Value = serde_json::from_str(&listed.text().await.expect("body")).expect("json");
    assert_eq!(listed["requirements"].as_array().map(Vec::len), Some(2), "{listed}");

    // Every corrupt record between good ones, where a topic takes good ones from outside.
    let producer: FutureProducer = specaudit_core::kafka::client_config(&env.kafka).create().expect("producer");
    let mut expected: BTreeMap<(String, i32, i64), &RecordCase> = BTreeMap::new();
    let mut good = (0, 0, 0);
    for (n, case) in corpus.cases.iter().enumerate() {
        let name = topic(&topics, &case.topic);
        match case.topic.as_str() {
            "assertions" => {
                send(&producer, name, "good", Some(&good_assertion(n))).await;
                good.0 += 1;
            }
            "heartbeats" => {
                send(&producer, name, "good", Some(&good_heartbeat(n))).await;
                good.1 += 1;
            }
            "alarms" => {
                send(&producer, name, "good", Some(&good_alarm(n))).await;
                good.2 += 1;
            }
            _ => {}
        }
        let bytes = payload(case);
        let key = if case.topic == "specs" { "shop" } else { "bad-input" };
        let (partition, offset) = send(&producer, name, key, bytes.as_deref()).await;
        if case.reason.is_some() {
            expected.insert((name.to_owned(), partition, offset), case);
        }
    }

    // The ingester stores the good records and one dead letter per corrupt one.
    let client = env.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = (
            count(&client, "SELECT count() FROM assertions").await,
            count(&client, "SELECT uniqExact(agent_id) FROM agents WHERE agent_id LIKE 'good-%'").await,
            count(&client, "SELECT count() FROM alarms").await,
            count(&client, "SELECT count() FROM spec_versions").await,
            count(&client, "SELECT count() FROM dead_letters").await,
        );
        if now == (good.0, good.1, good.2, 1, expected.len() as u64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "(assertions, agents, alarms, spec versions, dead letters) = {now:?}, wanted {:?}:\n{}",
            (good.0, good.1, good.2, 1, expected.len()),
            ingester.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<(String, i32, i64, String, String)> = client
        .query("SELECT source_topic, source_partition, source_offset, reason, error FROM dead_letters")
        .fetch_all()
        .await
        .expect("dead letters");
    let mut topic_letters: BTreeMap<(String, i32, i64), (String, String)> = BTreeMap::new();
    specaudit_core::kafka::read_to_end(&env.kafka, &topics.dead_letters, Duration::from_secs(30), |m| {
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let at = (header(HEADER_TOPIC), header(HEADER_PARTITION).parse().unwrap_or(-1), header(HEADER_OFFSET).parse().unwrap_or(-1));
        topic_letters.insert(at, (header(HEADER_REASON), header(HEADER_ERROR)));
    })
    .expect("read the dead-letters topic");

    let mut failures = Vec::new();
    for (topic, partition, offset, reason, error) in &rows {
        let key = (topic.clone(), *partition, *offset);
        let Some(case) = expected.get(&key) else {
            failures.push(format!("unexpected dead letter {key:?}: {reason}: {error}"));
            continue;
        };
        let check = (|| {
            if Some(reason) != case.reason.as_ref() {
                return Err(format!("reason {reason:?}, wanted {:?} ({error})", case.reason));
            }
            contains_all(error, std::slice::from_ref(&case.error))?;
            match topic_letters.get(&key) {
                Some((r, e)) if r == reason && e == error => Ok(()),
                other => Err(format!("the dead-letters topic holds {other:?}")),
            }
        })();
        if let Err(problem) = check {
            failures.push(format!("{}: {problem}", case.name));
        }
    }

    // The alarmer skipped, and counted, every undecodable record it reads live.
    let undecodable = corpus
        .cases
        .iter()
        .filter(|c| matches!(c.topic.as_str(), "assertions" | "heartbeats") || (c.topic == "specs" && c.avro.is_none()))
        .count() as f64;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = http.get(format!("{}/metrics", alarmer.base)).send().await.expect("alarmer metrics");
        let text = metrics.text().await.unwrap_or_default();
        let skipped: f64 = text
            .lines()
            .filter(|l| l.starts_with("specaudit_alarmer_undecodable_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if skipped == undecodable {
            break;
        }
        assert!(Instant::now() < deadline, "the alarmer counted {skipped} undecodable records, not {undecodable}:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every reader is alive, and the sidecar still runs version 1 of the spec.
    for service in [&mut ingester, &mut alarmer, &mut sidecar] {
        service.assert_alive(Duration::from_secs(5)).await;
    }
    let check = http
        .post(format!("{}/v1/check", sidecar.base))
        .body(r#"{"component": "web", "task": "serve", "facts": {"tls": "1.3"}}"#)
        .send()
        .await
        .expect("sidecar");
    let body: Value = serde_json::from_str(&check.text().await.expect("body")).expect("json");
    assert_eq!((body["results"][0]["outcome"].as_str(), body["results"][0]["spec_version"].as_i64()), (Some("pass"), Some(1)), "{body}");
    for service in [ingester, alarmer, sidecar] {
        let name = service.name.clone();
        let status = service.terminate();
        assert!(status.success(), "{name} ended with {status} after SIGTERM");
    }
    report("record", corpus.cases.len(), &failures);
    env.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// Specs: specctl refuses, with the exit code and the place of the mistake.

#[derive(Debug, Deserialize)]
struct SpecCase {
    name: String,
    args: Vec<String>,
    code: i32,
    #[serde(default)]
    message: Vec<String>,
    #[serde(default)]
    stdout: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct SpecCases {
    cases: Vec<SpecCase>,
}

fn specctl(env: &TestEnv, args: &[String]) -> Result<std::process::Output, String> {
    let mut command = Command::new(bin("specctl"));
    command
        .args(args)
        .env("SPECAUDIT_BROKERS", &env.kafka.brokers)
        .env("SPECAUDIT_TOPIC_PREFIX", &env.kafka.topic_prefix)
        .env("USER", "tester");
    run_within(command, Duration::from_secs(60))
}

fn expect_exit(output: &std::process::Output, code: i32, stderr_has: &[String], stdout_has: &[String]) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() != Some(code) {
        return Err(format!("exit {:?}, wanted {code}:\n{stderr}", output.status.code()));
    }
    contains_all(&stderr, stderr_has)?;
    contains_all(&String::from_utf8_lossy(&output.stdout), stdout_has)
}

/// The place an invalid spec of core's corpus must be refused at (its `# place:` header).
fn corpus_place(path: &std::path::Path) -> String {
    let header_file = if path.extension().is_some_and(|e| e == "json") { path.with_extension("expect") } else { path.to_path_buf() };
    let header = std::fs::read_to_string(header_file).expect("corpus header");
    header.lines().find_map(|l| l.strip_prefix("# place:")).expect("a place header").trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specctl_refuses_invalid_specs_and_changes_naming_the_mistake() {
    let env = TestEnv::new().await;
    let dir = data_dir().join("specs");
    let shop = dir.join("shop.yaml").display().to_string();
    let first = specctl(&env, &["apply".into(), "-f".into(), shop, "--expect-version".into(), "0".into()]).expect("specctl");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));

    // New cases, then core's corpus of invalid specs through `specctl apply`.
    let mut all: Vec<SpecCase> = cases::<SpecCases>("specs.yaml").cases;
    let corpus_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/invalid-specs");
    let mut corpus: Vec<_> = std::fs::read_dir(&corpus_dir).expect("core corpus").map(|e| e.expect("entry").path()).collect();
    corpus.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"));
    corpus.sort();
    let new_cases = all.len();
    for path in &corpus {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let place = corpus_place(path);
        all.push(SpecCase {
            name: format!("core corpus {name}"),
            args: vec!["apply".into(), "-f".into(), path.display().to_string()],
            code: 3,
            message: vec![format!("{name}: invalid spec"), if place.is_empty() { String::new() } else { format!("{place}:") }],
            stdout: Vec::new(),
        });
    }

    // The cases publish nothing, so they may run side by side.
    let dir_text = dir.display().to_string();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = all
            .chunks(all.len().div_ceil(6))
            .map(|chunk| {
                let (env, dir_text) = (&env, &dir_text);
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for case in chunk {
                        let args: Vec<String> = case.args.iter().map(|a| a.replace("{dir}", dir_text)).collect();
                        let result = specctl(env, &args).and_then(|out| expect_exit(&out, case.code, &case.message, &case.stdout));
                        if let Err(problem) = result {
                            failures.push(format!("{} (specctl {}): {problem}", case.name, args.join(" ")));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("case thread")).collect()
    });

    // Nothing was published: shop is still at version 1, and no other spec exists.
    let listed = specctl(&env, &["--format".into(), "json".into(), "list".into()]).expect("specctl list");
    let list: Value = serde_json::from_slice(&listed.stdout).expect("list as JSON");
    let versions: Vec<(String, i64)> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| (v["spec"].as_str().unwrap_or_default().to_owned(), v["version"].as_i64().unwrap_or_default()))
        .collect();
    assert_eq!(versions, [("shop".to_owned(), 1)], "a refused spec or change was published");
    eprintln!("{new_cases} new specctl cases, {} from core's corpus", corpus.len());
    report("spec", all.len(), &failures);
    env.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// Configs: every service binary refuses a bad configuration by name, with exit code 2.

#[derive(Debug, Deserialize)]
struct ConfigCase {
    name: String,
    service: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    toml: Option<String>,
    #[serde(default)]
    config_path: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default = "exit_bad_config")]
    code: i32,
    message: Vec<String>,
}

fn exit_bad_config() -> i32 {
    2
}

#[derive(Debug, Deserialize)]
struct ConfigCases {
    cases: Vec<ConfigCase>,
}

#[test]
fn every_service_refuses_a_bad_config_by_name_with_exit_code_2() {
    let corpus: ConfigCases = cases("configs.yaml");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut failures = Vec::new();
    let mut services = std::collections::BTreeSet::new();
    for (n, case) in corpus.cases.iter().enumerate() {
        services.insert(case.service.as_str());
        let mut command = Command::new(bin(&case.service));
        command.env_remove("SPECAUDIT_CONFIG");
        // Closed ports: a configuration wrongly accepted reaches no broker and no database.
        command.env("SPECAUDIT__KAFKA__BROKERS", "127.0.0.1:9");
        if matches!(case.service.as_str(), "specaudit-ingester" | "specaudit-reporter") {
            command.env("SPECAUDIT__CLICKHOUSE__URL", "http://127.0.0.1:9");
        }
        let path = match (&case.toml, &case.config_path) {
            (Some(text), _) => {
                let path = scratch.path().join(format!("case-{n}.toml"));
                std::fs::write(&path, text).expect("write config");
                Some(path.display().to_string())
            }
            (None, path) => path.clone(),
        };
        if let Some(path) = path {
            command.args(["--config", &path]);
        }
        command.args(&case.args).envs(&case.env);
        let result = run_within(command, Duration::from_secs(20)).and_then(|out| expect_exit(&out, case.code, &case.message, &[]));
        if let Err(problem) = result {
            failures.push(format!("{} ({}): {problem}", case.name, case.service));
        }
    }
    assert_eq!(services.len(), 4, "every service binary has cases: {services:?}");
    report("config", corpus.cases.len(), &failures);
}

// ---------------------------------------------------------------------------------------
// HTTP APIs: the sidecar and the reporter answer bad requests with a 4xx that says why.

#[derive(Debug, Deserialize)]
struct HttpCase {
    name: String,
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    hex: Option<String>,
    #[serde(default)]
    big: Option<usize>,
    status: u16,
    message: String,
}

#[derive(Debug, Deserialize)]
struct HttpCases {
    sidecar: Vec<HttpCase>,
    reporter: Vec<HttpCase>,
}

const TOKENS: [(&str, &str); 3] =
    [("viewer", "viewer-token-0123456789"), ("editor", "editor-token-0123456789"), ("admin", "admin-token-0123456789")];

fn reporter_config() -> String {
    let principals = [("vera", "viewer", ""), ("eddie", "editor", "groups = [\"team-shop\"]\n"), ("ada", "admin", "")];
    principals
        .iter()
        .zip(TOKENS)
        .map(|((principal, role, groups), (_, token))| {
            format!("[[auth.tokens]]\nprincipal = \"{principal}\"\nrole = \"{role}\"\ntoken = \"{token}\"\n{groups}")
        })
        .collect()
}

fn body_of(case: &HttpCase) -> Vec<u8> {
    if let Some(size) = case.big {
        let head = r#"{"component": "web", "task": "serve", "facts": {"x": ""#;
        let tail = r#""}}"#;
        return format!("{head}{}{tail}", "a".repeat(size.saturating_sub(head.len() + tail.len()))).into_bytes();
    }
    match (&case.body, &case.hex) {
        (_, Some(text)) => hex(text),
        (Some(text), None) => text.clone().into_bytes(),
        (None, None) => Vec::new(),
    }
}

async fn run_http_cases(http: &reqwest::Client, base: &str, list: &[HttpCase], failures: &mut Vec<String>) {
    for case in list {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).expect("method");
        let mut request = http.request(method, format!("{base}{}", case.path)).body(body_of(case));
        let token = case.token.as_deref().and_then(|role| TOKENS.iter().find(|(r, _)| *r == role)).map(|(_, t)| *t);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (k, v) in &case.headers {
            request = request.header(k, v);
        }
        let result = match request.send().await {
            Err(e) => Err(format!("no answer: {e}")),
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let message = json["error"].as_str().unwrap_or(&text);
                if status != case.status {
                    Err(format!("status {status}, wanted {}: {text}", case.status))
                } else {
                    contains_all(message, std::slice::from_ref(&case.message))
                }
            }
        };
        if let Err(problem) = result {
            failures.push(format!("{} ({} {}): {problem}", case.name, case.method, case.path));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_apis_answer_bad_requests_with_a_4xx_that_says_why() {
    let env = TestEnv::new().await;
    let corpus: HttpCases = cases("http.yaml");
    publish_shop(&env).await;
    specaudit_ingester::migrate::migrate(&env.clickhouse).await.expect("migrations");

    let mut vars = stack_env(&env, false);
    let sidecar_port = free_port();
    vars.extend([
        ("SPECAUDIT__SIDECAR__LISTEN".to_owned(), format!("127.0.0.1:{sidecar_port}")),
        ("SPECAUDIT__SIDECAR__MAX_BODY_BYTES".to_owned(), "4096".to_owned()),
        ("SPECAUDIT__SIDECAR__INSTANCE".to_owned(), "host-1".to_owned()),
    ]);
    let mut sidecar = Service::spawn("specaudit-sidecar", &["serve"], &vars, sidecar_port);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let config = scratch.path().join("reporter.toml");
    std::fs::write(&config, reporter_config()).expect("reporter config");
    let mut vars = stack_env(&env, true);
    let reporter_port = free_port();
    vars.push(("SPECAUDIT__SERVER__LISTEN".to_owned(), format!("127.0.0.1:{reporter_port}")));
    let config = config.display().to_string();
    let mut reporter = Service::spawn("specaudit-reporter", &["--config", &config, "serve"], &vars, reporter_port);
    sidecar.assert_alive(Duration::from_secs(30)).await;
    reporter.assert_alive(Duration::from_secs(30)).await;

    // A connection per request: a server may close one after refusing a body unread.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let mut failures = Vec::new();
    run_http_cases(&http, &sidecar.base, &corpus.sidecar, &mut failures).await;
    sidecar.assert_alive(Duration::from_secs(5)).await;
    run_http_cases(&http, &reporter.base, &corpus.reporter, &mut failures).await;
    reporter.assert_alive(Duration::from_secs(5)).await;

    // No edit got through: shop is still at version 1.
    let latest = http.get(format!("{}/api/v1/specs/shop", reporter.base)).bearer_auth(TOKENS[0].1).send().await.expect("reporter");
    let latest: Value = serde_json::from_str(&latest.text().await.expect("body")).expect("json");
    assert_eq!(latest["version"].as_i64(), Some(1), "a refused edit was published: {latest}");
    for service in [sidecar, reporter] {
        let name = service.name.clone();
        let status = service.terminate();
        assert!(status.success(), "{name} ended with {status} after SIGTERM");
    }
    report("HTTP", corpus.sidecar.len() + corpus.reporter.len(), &failures);
    env.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// The sidecar's JSON-lines mode: an error line per bad line, and on to the next.

#[derive(Debug, Deserialize)]
struct LineCase {
    name: String,
    #[serde(default)]
    line: Option<String>,
    #[serde(default)]
    hex: Option<String>,
    #[serde(default)]
    big: Option<usize>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    result: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LineCases {
    lines: Vec<LineCase>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_mode_answers_every_bad_line_and_keeps_going() {
    let env = TestEnv::new().await;
    let corpus: LineCases = cases("lines.yaml");
    publish_shop(&env).await;

    let mut input = Vec::new();
    for case in &corpus.lines {
        match (&case.line, &case.hex, case.big) {
            (_, _, Some(size)) => {
                let line = format!(r#"{{"op": "check", "component": "web", "task": "serve", "facts": {{"x": "{}"}}}}"#, "a".repeat(size));
                input.extend_from_slice(line.as_bytes());
            }
            (_, Some(text), None) => input.extend(hex(text)),
            (Some(line), None, None) => input.extend_from_slice(line.as_bytes()),
            (None, None, None) => panic!("{}: no line", case.name),
        }
        input.push(b'\n');
    }
    let mut command = Command::new(bin("specaudit-sidecar"));
    command.arg("lines").env_remove("SPECAUDIT_CONFIG").envs(stack_env(&env, false)).env("SPECAUDIT__SIDECAR__INSTANCE", "host-1");
    command.env("SPECAUDIT__SIDECAR__MAX_BODY_BYTES", "4096");
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("sidecar lines");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("sidecar lines output");
    writer.join().expect("writer").expect("write the lines");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the sidecar's lines mode ended with {}:\n{stderr}", output.status);

    let answers: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    let answered: Vec<&LineCase> = corpus.lines.iter().filter(|c| c.error.is_some() || c.result.is_some()).collect();
    assert_eq!(answers.len(), answered.len(), "one answer per non-blank line:\n{}", answers.join("\n"));
    let mut failures = Vec::new();
    for (case, answer) in answered.iter().zip(&answers) {
        let parsed: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
        let result = match (&case.error, &case.result) {
            (Some(error), _) => match parsed["error"].as_str() {
                Some(text) if text.contains(error.as_str()) => Ok(()),
                _ => Err(format!("wanted an error with {error:?}, got {answer}")),
            },
            (None, Some(result)) if parsed.get("error").is_none() && answer.contains(result.as_str()) => Ok(()),
            (None, result) => Err(format!("wanted {result:?}, got {answer}")),
        };
        if let Err(problem) = result {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    report("JSON-lines", corpus.lines.len(), &failures);
    env.cleanup().await;
}
