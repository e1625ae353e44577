//! The sidecar against the real stack: the HTTP API and the JSON-lines mode, including the
//! bad requests a service in another language may send.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::num::NonZeroUsize;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::{json, Value};
use specaudit_core::codec::Codec;
use specaudit_core::kafka::{read_to_end, Topics};
use specaudit_core::record::{Heartbeat, Outcome};
use specaudit_core::spec::Spec;
use specaudit_producer::publish::{publish, Change, Meta};
use specaudit_producer::sidecar::{router, serve_lines, CheckRequest, RequestError, Sidecar, SidecarConfig, SidecarSettings};
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
    sidecar_with(env, SidecarSettings { instance: Some("host-1".into()), max_body_bytes: 4096, ..SidecarSettings::default() }).await
}

async fn sidecar_with(env: &TestEnv, settings: SidecarSettings) -> std::sync::Arc<Sidecar> {
    let meta = Meta { author: "test".into(), comment: String::new(), expect_version: Some(0) };
    publish(&env.kafka, Change::Replace(Spec::parse(SPEC).unwrap()), meta).await.unwrap();
    let config = SidecarConfig { kafka: env.kafka.clone(), telemetry: Default::default(), sidecar: settings };
    Sidecar::new(config)
}

async fn shutdown(sidecar: &Arc<Sidecar>) {
    let closing = sidecar.clone();
    tokio::task::spawn_blocking(move || closing.shutdown(Duration::from_secs(10))).await.unwrap();
}

fn check_request(component: &str) -> CheckRequest {
    CheckRequest { component: component.into(), task: "serve".into(), facts: json!({"tls": "1.3"}) }
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

/// Many first requests for one component at once: the sidecar starts one agent for it, so
/// one agent id heartbeats for the component. A second agent would be reported as another
/// agent of this host and run, unflushed, until the process ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_start_one_agent_per_component() {
    const REQUESTS: usize = 8;
    let env = TestEnv::new().await;
    let sidecar = sidecar(&env).await;
    let asking = sidecar.clone();
    let outcomes = tokio::task::spawn_blocking(move || {
        let barrier = Arc::new(Barrier::new(REQUESTS));
        let threads: Vec<_> = (0..REQUESTS)
            .map(|_| {
                let (sidecar, barrier) = (asking.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    sidecar.check(&check_request("web"))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap().unwrap()[0].outcome).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(outcomes, vec![Outcome::Pass; REQUESTS]);
    shutdown(&sidecar).await;

    let topic = Topics::new(&env.kafka.topic_prefix).heartbeats;
    let kafka = env.kafka.clone();
    let agents = tokio::task::spawn_blocking(move || {
        let codec = Codec::<Heartbeat>::new();
        let mut agents = BTreeSet::new();
        read_to_end(&kafka, &topic, Duration::from_secs(30), |m| {
            use rdkafka::Message;
            let heartbeat = codec.decode(m.payload().unwrap_or_default()).unwrap();
            if heartbeat.component == "web" {
                agents.insert(heartbeat.agent_id);
            }
        })
        .unwrap();
        agents
    })
    .await
    .unwrap();
    assert_eq!(agents.len(), 1, "one agent for component web, got heartbeats from {agents:?}");

    // After shutdown nothing starts or runs an agent any more.
    let late = sidecar.check(&check_request("web"));
    assert!(matches!(late, Err(RequestError::ShuttingDown)), "{late:?}");
    env.cleanup().await;
}

/// A service that names more components than `sidecar.max_components` gets a clear refusal
/// for the extra ones (429 over HTTP, an error line in the JSON-lines mode), while the
/// components already known go on being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_beyond_max_components_are_refused() {
    let env = TestEnv::new().await;
    let settings = SidecarSettings {
        instance: Some("host-1".into()),
        max_components: NonZeroUsize::new(2).unwrap(),
        ..SidecarSettings::default()
    };
    let sidecar = sidecar_with(&env, settings).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(sidecar.clone(), 4096);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let check = |component: &str| {
        http.post(format!("{base}/v1/check")).body(json!({"component": component, "task": "serve", "facts": {"tls": "1.3"}}).to_string()).send()
    };

    for component in ["web", "web.cart"] {
        assert_eq!(check(component).await.unwrap().status(), 200, "{component}");
    }
    let refused = check("web.admin").await.unwrap();
    assert_eq!(refused.status(), 429);
    let text = refused.text().await.unwrap();
    assert!(text.contains("sidecar.max_components") && text.contains("web.admin"), "{text}");
    assert_eq!(check("web").await.unwrap().status(), 200, "a known component is still served");

    let lines = sidecar.clone();
    let line = json!({"op": "requirements", "component": "other"}).to_string();
    let output = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        serve_lines(&lines, Cursor::new(line), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    })
    .await
    .unwrap();
    let answer: Value = serde_json::from_str(output.trim()).unwrap();
    assert!(answer["error"].as_str().unwrap_or_default().contains("limit (sidecar.max_components)"), "{answer}");

    server.abort();
    shutdown(&sidecar).await;
    env.cleanup().await;
}
