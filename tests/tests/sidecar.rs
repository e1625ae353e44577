//! The sidecar against the real stack: the HTTP API and the JSON-lines mode, including the
//! bad requests a service in another language may send.

use std::io::Cursor;
use std::time::Duration;

use serde_json::{json, Value};
use specaudit_core::spec::Spec;
use specaudit_producer::publish::{publish, Change, Meta};
use specaudit_producer::sidecar::{router, serve_lines, Sidecar, SidecarConfig, SidecarSettings};
use specaudit_tests::TestEnv;

const SPEC: &str = r#"
apiVersion: specaudit/v1
spec: shop
components:
  web:
    params: {min_tls: "1.2"}
    requirements:
      tls:
        check: {expr: facts.tls >= params.min_tls}
      logged: {severity: critical}
"#;

async fn sidecar(env: &TestEnv) -> std::sync::Arc<Sidecar> {
    let meta = Meta { author: "test".into(), comment: String::new(), expect_version: Some(0) };
    publish(&env.kafka, Change::Replace(Spec::parse(SPEC).unwrap()), meta).await.unwrap();
    let config = SidecarConfig {
        kafka: env.kafka.clone(),
        telemetry: Default::default(),
        sidecar: SidecarSettings { instance: Some("host-1".into()), max_body_bytes: 4096, ..SidecarSettings::default() },
    };
    Sidecar::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_checks_asserts_lists_and_refuses_bad_requests() {
    let env = TestEnv::new().await;
    let sidecar = sidecar(&env).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(sidecar.clone(), 4096);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let post = |path: &str, body: String| http.post(format!("{base}{path}")).body(body).send();

    let ok = post("/v1/check", json!({"component": "web", "task": "serve", "facts": {"tls": "1.0"}}).to_string()).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = serde_json::from_str(&ok.text().await.unwrap()).unwrap();
    assert_eq!(body["results"][0]["requirement"], "web/tls");
    assert_eq!(body["results"][0]["outcome"], "fail");
    assert_eq!(body["results"][0]["spec_version"], 1);

    let asserted = post("/v1/assert", json!({"component": "web", "requirement": "web/logged", "outcome": "pass"}).to_string()).await.unwrap();
    assert_eq!(asserted.status(), 200);

    let list = http.get(format!("{base}/v1/requirements?component=web")).send().await.unwrap().text().await.unwrap();
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["requirements"].as_array().unwrap().len(), 2);

    // Bad requests: each a 4xx with a message that says what is wrong.
    let cases = [
        ("/v1/check", "{\"component\": ".to_owned(), 400, "not valid JSON"),
        ("/v1/check", json!({"component": "web", "task": "serve", "facts": [1, 2]}).to_string(), 400, "facts must be a JSON object"),
        ("/v1/check", json!({"component": "web", "task": "serve", "facts": "x"}).to_string(), 400, "facts must be a JSON object"),
        ("/v1/check", json!({"component": "Web Server", "task": "serve", "facts": {}}).to_string(), 400, "component must be"),
        ("/v1/check", json!({"component": "web", "facts": {}}).to_string(), 400, "missing field `task`"),
        ("/v1/assert", json!({"component": "web", "requirement": "web/nope", "outcome": "pass"}).to_string(), 404, "does not apply"),
        ("/v1/assert", json!({"component": "web", "requirement": "web/logged", "outcome": "maybe"}).to_string(), 400, "unknown variant"),
        ("/v1/check", format!("{{\"component\": \"web\", \"task\": \"serve\", \"facts\": {{\"x\": \"{}\"}}}}", "a".repeat(8192)), 413, ""),
    ];
    for (path, body, status, message) in cases {
        let response = post(path, body.clone()).await.unwrap();
        assert_eq!(response.status(), status, "{path} {}", &body[..body.len().min(80)]);
        let text = response.text().await.unwrap();
        assert!(text.contains(message), "{text}");
    }
    server.abort();
    let closing = sidecar.clone();
    tokio::task::spawn_blocking(move || closing.shutdown(Duration::from_secs(10))).await.unwrap();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_mode_answers_each_line_in_order() {
    let env = TestEnv::new().await;
    let sidecar = sidecar(&env).await;
    let input = [
        json!({"op": "check", "component": "web", "task": "serve", "facts": {"tls": "1.3"}}).to_string(),
        "not json".to_owned(),
        String::new(),
        json!({"op": "check", "component": "web", "task": "serve", "facts": 7}).to_string(),
        json!({"op": "requirements", "component": "web"}).to_string(),
        json!({"op": "explode"}).to_string(),
    ]
    .join("\n");
    let lines = sidecar.clone();
    let output = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        serve_lines(&lines, Cursor::new(input), &mut out).unwrap();
        out
    })
    .await
    .unwrap();
    let answers: Vec<Value> = String::from_utf8(output).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 5, "one answer per non-blank line: {answers:?}");
    assert_eq!(answers[0]["results"][0]["outcome"], "pass");
    assert!(answers[1]["error"].as_str().unwrap().contains("not valid JSON"));
    assert!(answers[2]["error"].as_str().unwrap().contains("facts must be a JSON object"));
    assert_eq!(answers[3]["requirements"].as_array().unwrap().len(), 2);
    assert!(answers[4]["error"].as_str().unwrap().contains("unknown variant `explode`"));
    let closing = sidecar.clone();
    tokio::task::spawn_blocking(move || closing.shutdown(Duration::from_secs(10))).await.unwrap();
}
