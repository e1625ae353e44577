//! Helpers of the reporter's end-to-end tests: crafted rows written straight into the test
//! database (with bound parameters), the rollup rebuilt from them the way migration 002
//! does, a reporter served on a free loopback port, and a small HTTP client.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use specaudit_reporter::config::{Role, TokenConfig};
use specaudit_reporter::ReporterConfig;
use specaudit_tests::TestEnv;
use tokio_util::sync::CancellationToken;

pub const MINUTE: u64 = 60_000;

pub fn now_ms() -> u64 {
    specaudit_core::record::now_ms() as u64
}

/// One crafted assertion row.
#[derive(Debug, Clone)]
pub struct Row {
    pub ts_ms: u64,
    pub spec: &'static str,
    pub spec_version: u64,
    pub component: &'static str,
    pub instance: &'static str,
    pub requirement: &'static str,
    pub outcome: &'static str,
    pub severity: &'static str,
    pub count: u32,
    pub message: &'static str,
}

pub async fn migrate(env: &TestEnv) {
    specaudit_ingester::migrate::migrate(&env.clickhouse).await.expect("migrations");
}

/// Inserts `rows` into `assertions`, every value bound.
pub async fn insert_assertions(client: &clickhouse::Client, rows: &[Row]) {
    for chunk in rows.chunks(200) {
        let groups = vec!["(?, ?, ?, ?, ?, ?, ?, 'task', ?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut query = client.query(&format!(
            "INSERT INTO assertions (ts_ms, spec, spec_version, component, instance, agent_id, requirement, task, outcome, \
             severity, count, message) VALUES {groups}"
        ));
        for r in chunk {
            query = query
                .bind(r.ts_ms)
                .bind(r.spec)
                .bind(r.spec_version)
                .bind(r.component)
                .bind(r.instance)
                .bind(format!("agent-{}", r.instance))
                .bind(r.requirement)
                .bind(r.outcome)
                .bind(r.severity)
                .bind(r.count)
                .bind(r.message);
        }
        query.execute().await.expect("insert assertions");
    }
}

/// Rolls the raw table up into `assertions_minutely` (call once, after every insert).
pub async fn rebuild_rollup(client: &clickhouse::Client) {
    client
        .query(
            "INSERT INTO assertions_minutely (minute, spec, spec_version, component, instance, requirement, severity, \
             passes, failures, errors, skips) \
             SELECT toStartOfMinute(toDateTime(intDiv(ts_ms, 1000))) AS minute, spec, spec_version, component, instance, \
             requirement, severity, sum(if(outcome = 'pass', toUInt64(count), toUInt64(0))), \
             sum(if(outcome = 'fail', toUInt64(count), toUInt64(0))), sum(if(outcome = 'error', toUInt64(count), toUInt64(0))), \
             sum(if(outcome = 'skip', toUInt64(count), toUInt64(0))) FROM assertions \
             GROUP BY minute, spec, spec_version, component, instance, requirement, severity",
        )
        .execute()
        .await
        .expect("rebuild the rollup");
}

/// Writes a spec version as the ingester would from spec-history.
pub async fn insert_spec_version(client: &clickhouse::Client, version: u64, ts_ms: u64, author: &str, comment: &str, yaml: &str) {
    let spec = specaudit_core::spec::Spec::parse(yaml).expect("test spec parses");
    client
        .query(
            "INSERT INTO spec_versions (spec, version, ts_ms, author, comment, sha256, deleted, document, patch) \
             VALUES (?, ?, ?, ?, ?, ?, 0, ?, '[]')",
        )
        .bind(spec.spec.as_str())
        .bind(version)
        .bind(ts_ms)
        .bind(author)
        .bind(comment)
        .bind(spec.sha256())
        .bind(spec.canonical_json())
        .execute()
        .await
        .expect("insert spec version");
}

/// Writes an agent's latest heartbeat.
pub async fn insert_agent(client: &clickhouse::Client, agent_id: &str, last_seen_ms: u64, component: &str, instance: &str, specs: &[(&str, u64)]) {
    let names: Vec<String> = specs.iter().map(|(s, _)| s.to_string()).collect();
    let versions: Vec<u64> = specs.iter().map(|(_, v)| *v).collect();
    client
        .query(
            "INSERT INTO agents (agent_id, ts_ms, component, instance, started_at_ms, sdk_version, spec_names, spec_versions) \
             VALUES (?, ?, ?, ?, ?, 'test', ?, ?)",
        )
        .bind(agent_id)
        .bind(last_seen_ms)
        .bind(component)
        .bind(instance)
        .bind(last_seen_ms.saturating_sub(3_600_000))
        .bind(names)
        .bind(versions)
        .execute()
        .await
        .expect("insert agent");
}

/// Writes one alarm transition.
pub async fn insert_alarm(client: &clickhouse::Client, fingerprint: &str, ts_ms: u64, state: &str, severity: &str, spec: &str, component: &str, requirement: &str) {
    client
        .query(
            "INSERT INTO alarms (fingerprint, ts_ms, rule, state, severity, spec, component, requirement, summary, value) \
             VALUES (?, ?, 'critical-failures', ?, ?, ?, ?, ?, ?, 1)",
        )
        .bind(fingerprint)
        .bind(ts_ms)
        .bind(state)
        .bind(severity)
        .bind(spec)
        .bind(component)
        .bind(requirement)
        .bind(format!("{requirement} {state}"))
        .execute()
        .await
        .expect("insert alarm");
}

pub fn token(principal: &str, role: Role, token: &str, groups: &[&str]) -> TokenConfig {
    TokenConfig {
        principal: principal.into(),
        role,
        token: Some(token.into()),
        token_sha256: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

pub const VIEWER: &str = "viewer-token-0123456789";
pub const EDITOR: &str = "editor-token-0123456789";
pub const OTHER_EDITOR: &str = "other-editor-token-0123456789";
pub const ADMIN: &str = "admin-token-0123456789";

/// A reporter config for `env` on a free loopback port with the four test principals.
pub fn config(env: &TestEnv, with_tokens: bool) -> ReporterConfig {
    let mut config = ReporterConfig { clickhouse: env.clickhouse.clone(), kafka: env.kafka.clone(), ..ReporterConfig::default() };
    config.server.listen = "127.0.0.1:0".parse().expect("address");
    if with_tokens {
        config.auth.tokens = vec![
            token("vera", Role::Viewer, VIEWER, &[]),
            token("eddie", Role::Editor, EDITOR, &["team-shop"]),
            token("olga", Role::Editor, OTHER_EDITOR, &["team-other"]),
            token("ada", Role::Admin, ADMIN, &[]),
        ];
    }
    config
}

/// A running reporter.
pub struct Served {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), specaudit_reporter::http::ServeError>>,
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        self.task.await.expect("server task").expect("server stops cleanly");
    }
}

pub async fn serve(config: ReporterConfig) -> Served {
    let bound = specaudit_reporter::http::bind(config).await.expect("bind the reporter");
    let addr = bound.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(bound.run(stop.clone()));
    Served { addr, stop, task }
}

/// An answer: status, headers, body text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request; `token` goes into `Authorization: Bearer`.
pub async fn http(method: Method, url: &str, token: Option<&str>, headers: &[(&str, &str)], body: &str) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(Bytes::from(body.to_owned()))).expect("request");
    let response = client.request(request).await.expect("the reporter answers");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

pub async fn get(url: &str, token: Option<&str>) -> Answer {
    http(Method::GET, url, token, &[], "").await
}

// The crafted world the reporter tests share.

pub const SHOP_V1: &str = "apiVersion: specaudit/v1\nspec: shop\nowners: [team-shop]\ncomponents:\n  web:\n    requirements:\n      tls: {severity: critical}\n      headers: {severity: minor}\n  web.cart:\n    requirements:\n      limit: {}\n  db:\n    requirements:\n      backup: {severity: minor}\n";
pub const SHOP_V2: &str = "apiVersion: specaudit/v1\nspec: shop\nowners: [team-shop]\ncomponents:\n  web:\n    requirements:\n      tls: {severity: critical}\n      headers: {severity: minor}\n  web.cart:\n    requirements:\n      limit: {}\n  db:\n    requirements:\n      backup: {severity: critical}\n      encrypt: {}\n";

pub fn row(ts_ms: u64, component: &'static str, instance: &'static str, requirement: &'static str, outcome: &'static str, count: u32, message: &'static str) -> Row {
    let severity = match requirement {
        "web/tls" | "db/backup" => "critical",
        "web/headers" => "minor",
        _ => "major",
    };
    Row { ts_ms, spec: "shop", spec_version: 2, component, instance, requirement, outcome, severity, count, message }
}

/// The crafted world: see each line's comment.
pub async fn craft(env: &TestEnv, now: u64) {
    let client = env.client();
    migrate(env).await;
    let recent = now - 10 * MINUTE;
    let old = now - 3 * 60 * MINUTE;
    insert_spec_version(&client, 1, now - 50 * MINUTE, "alice", "first", SHOP_V1).await;
    insert_spec_version(&client, 2, now - 40 * MINUTE, "bob", "back up critically, encrypt", SHOP_V2).await;
    insert_assertions(
        &client,
        &[
            // web.cart inherits web/tls and passes it on both instances.
            row(recent, "web.cart", "c1", "web/tls", "pass", 10, ""),
            row(recent, "web.cart", "c2", "web/tls", "pass", 5, ""),
            // web.cart/limit fails twice on c1 (the later message wins).
            row(recent, "web.cart", "c1", "web.cart/limit", "pass", 8, ""),
            row(recent, "web.cart", "c1", "web.cart/limit", "fail", 1, "limit 400 != 1000"),
            row(recent + MINUTE, "web.cart", "c1", "web.cart/limit", "fail", 1, "limit 500 != 1000"),
            row(recent, "web.cart", "c2", "web.cart/limit", "pass", 5, ""),
            // web itself: tls could not be evaluated once, headers pass.
            row(recent, "web", "w1", "web/tls", "pass", 3, ""),
            row(recent, "web", "w1", "web/tls", "error", 1, "no fact tls_version"),
            row(recent, "web", "w1", "web/headers", "pass", 4, ""),
            // db only skipped encrypt: says nothing about compliance.
            row(recent, "db", "d1", "db/encrypt", "skip", 9, ""),
            // Three hours ago db failed its backup: outside a 1 h range, inside a 4 h one.
            row(old, "db", "d1", "db/backup", "fail", 1, "no backup for 30 h"),
            // Another spec's rows never leak in.
            Row { spec: "other", ..row(recent, "web", "w1", "web/tls", "fail", 7, "other spec") },
        ],
    )
    .await;
    rebuild_rollup(&client).await;
    // c1's agent still runs version 1; d1's agent went quiet 10 minutes ago.
    insert_agent(&client, "agent-c1", now - 5_000, "web.cart", "c1", &[("shop", 1)]).await;
    insert_agent(&client, "agent-d1", now - 10 * MINUTE, "db", "d1", &[("shop", 2)]).await;
    insert_alarm(&client, "fp-limit", now - 9 * MINUTE, "firing", "major", "shop", "web.cart", "web.cart/limit").await;
    insert_alarm(&client, "fp-backup", now - 8 * MINUTE, "waived", "critical", "shop", "db", "db/backup").await;
    insert_alarm(&client, "fp-old", now - 5 * 60 * MINUTE, "resolved", "critical", "shop", "db", "db/backup").await;
}


/// Publishes SHOP_V1 and SHOP_V2 to the test topics (the base spec edits apply to).
pub async fn publish_shop(env: &TestEnv) {
    use specaudit_producer::publish::{publish, Change, Meta};
    for (version, (text, author)) in [(SHOP_V1, "alice"), (SHOP_V2, "bob")].into_iter().enumerate() {
        let spec = specaudit_core::spec::Spec::parse(text).expect("test spec");
        let meta = Meta { author: author.into(), comment: String::new(), expect_version: Some(version as i64) };
        publish(&env.kafka, Change::Replace(spec), meta).await.expect("publish the test spec");
    }
}

/// The `specaudit-reporter` binary, built from the current sources once per test process
/// (`cargo test -p specaudit-tests` does not build other packages' binaries).
pub fn reporter_bin() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(["build", "-q", "-p", "specaudit-reporter", "--bin", "specaudit-reporter"])
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build the reporter: {e}"));
        assert!(status.success(), "cannot build the reporter");
    });
    // Tests run from target/<profile>/deps; binaries are in target/<profile>.
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(std::path::Path::parent).expect("target dir").join("specaudit-reporter")
}

/// `specaudit-reporter ARGS` reading `env`'s database, not yet started.
pub fn reporter_command(env: &TestEnv, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(reporter_bin());
    command
        .args(args)
        .env_remove("SPECAUDIT_CONFIG")
        .env("SPECAUDIT__CLICKHOUSE__URL", &env.clickhouse.url)
        .env("SPECAUDIT__CLICKHOUSE__DATABASE", &env.clickhouse.database)
        .env("SPECAUDIT__KAFKA__BROKERS", &env.kafka.brokers)
        .env("SPECAUDIT__KAFKA__TOPIC_PREFIX", &env.kafka.topic_prefix);
    command
}
