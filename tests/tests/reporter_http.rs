//! The reporter's web server against the real stack: 401 and 403 with clear bodies, roles,
//! stable JSON and CSV shapes, the pages, the login cookie, and spec edits (JSON Patch and
//! full replace, with expected versions) published through Kafka with the principal as
//! author.

mod reporter_support;

use axum::http::{Method, StatusCode};
use reporter_support::*;
use specaudit_tests::TestEnv;

const PATCH_HEADERS: &str =
    r#"[{"op": "replace", "path": "/components/web/requirements/headers/severity", "value": "major"}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_control_reports_and_edits() {
    let env = TestEnv::new().await;
    let now = now_ms();
    craft(&env, now).await;
    publish_shop(&env).await;
    let server = serve(config(&env, true)).await;
    let url = |path: &str| server.url(path);

    // Open: health and metrics.
    assert_eq!(get(&url("/health"), None).await.status, StatusCode::OK);
    assert_eq!(get(&url("/metrics"), None).await.status, StatusCode::OK);

    // 401 without a token, with a bad one, with a malformed header; pages offer the login form.
    let report_url = url("/api/v1/report?spec=shop&since=1h");
    let answer = get(&report_url, None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.json()["error"].as_str().unwrap().contains("authentication required"), "{}", answer.body);
    assert_eq!(answer.headers["www-authenticate"], "Bearer realm=\"specaudit\"");
    let answer = get(&report_url, Some("not-a-known-token-at-all")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.body.contains("not valid"), "{}", answer.body);
    let answer = http(Method::GET, &report_url, None, &[("authorization", "Basic dmVyYTp4")], "").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.body.contains("Bearer <token>"), "{}", answer.body);
    let answer = get(&url("/specs/shop"), None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.body.contains("<form method=\"post\" action=\"/login\""), "{}", answer.body);

    // A viewer reads the report as JSON, CSV and Markdown.
    let answer = get(&report_url, Some(VIEWER)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let json = answer.json();
    let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["agents", "alarms", "bucket_ms", "from_ms", "scope", "specs", "summary", "timeline", "to_ms"]);
    let summary = &json["summary"];
    assert_eq!(
        (summary["compliant"].as_u64(), summary["failing"].as_u64(), summary["error"].as_u64(), summary["unknown"].as_u64()),
        (Some(2), Some(1), Some(1), Some(3))
    );
    let cell_keys: Vec<&str> = json["specs"][0]["cells"][0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        cell_keys,
        ["component", "component_type", "errors", "failing_instances", "failure_ratio", "failures", "last_failure", "passes", "requirement", "severity", "skips", "status"]
    );
    let answer = get(&url("/api/v1/report.csv?spec=shop&since=1h"), Some(VIEWER)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "text/csv; charset=utf-8");
    let lines: Vec<&str> = answer.body.lines().collect();
    assert_eq!(lines[0], specaudit_reporter::render::CSV_HEADER.trim_end());
    assert_eq!(lines.len(), 8, "{}", answer.body);
    assert!(lines.contains(&"shop,2,web.cart/limit,web.cart,major,failing,13,2,0,0,0.1333,c1,limit 500 != 1000,web.cart"), "{}", answer.body);
    let answer = get(&url("/api/v1/report?spec=shop&since=1h&format=markdown"), Some(VIEWER)).await;
    assert!(answer.body.starts_with("# Compliance report"), "{}", answer.body);
    let answer = get(&url("/api/v1/agents.csv?spec=shop"), Some(VIEWER)).await;
    assert_eq!(answer.body.lines().next().unwrap(), specaudit_reporter::http::api::AGENTS_CSV_HEADER.trim_end());
    let answer = get(&url("/api/v1/alarms?spec=shop&since=1h"), Some(VIEWER)).await;
    assert_eq!(answer.json().as_array().map(Vec::len), Some(2));
    let answer = get(&url("/api/v1/specs/shop/history"), Some(VIEWER)).await;
    let history = answer.json();
    let authors: Vec<&str> = history.as_array().unwrap().iter().map(|h| h["author"].as_str().unwrap()).collect();
    assert_eq!(authors, ["alice", "bob"]);
    // Filters are checked and named.
    let answer = get(&url("/api/v1/report?severity=high"), Some(VIEWER)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("high"), "{}", answer.body);
    let answer = get(&url("/api/v1/report?spec=nope"), Some(VIEWER)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    // The pages.
    for path in [
        "/",
        "/specs/shop?since=1h",
        "/specs/shop/components/web.cart?since=1h",
        "/specs/shop/requirements/web.cart/limit?since=1h",
        "/specs/shop/history",
        "/agents",
        "/alarms",
    ] {
        let answer = get(&url(path), Some(VIEWER)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        assert!(answer.body.starts_with("<!doctype html>"), "{path}");
    }
    // An error page shown to a signed-in viewer does not ask them to log in.
    let answer = get(&url("/specs/nope"), Some(VIEWER)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.body.starts_with("<!doctype html>") && answer.body.contains("id=\"problem\""), "{}", answer.body);
    assert!(!answer.body.contains("href=\"/login\""), "{}", answer.body);
    let page = get(&url("/specs/shop?since=1h"), Some(VIEWER)).await.body;
    assert!(page.contains("data-requirement=\"web.cart/limit\" data-status=\"failing\" style=\"border-left-color:#c62828\""), "{page}");
    assert!(page.contains("data-requirement=\"web/tls\" data-status=\"error\" style=\"border-left-color:#ef8f00\""), "{page}");
    assert!(page.contains("data-requirement=\"db/backup\" data-status=\"unknown\" style=\"border-left-color:#9e9e9e\""), "{page}");
    assert!(!page.contains("/specs/shop/edit"), "a viewer is not offered the editor");
    let failures = get(&url("/specs/shop/requirements/web.cart/limit?since=1h"), Some(VIEWER)).await.body;
    assert!(failures.contains("limit 500 != 1000") && failures.contains("limit 400 != 1000"), "{failures}");

    // Who may edit: viewers and editors of other teams get 403, with the reason.
    let patch_url = url("/api/v1/specs/shop?expect_version=2&comment=headers%20matter");
    let answer = http(Method::PATCH, &patch_url, Some(VIEWER), &[], PATCH_HEADERS).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("vera (viewer) may not change spec shop"), "{}", answer.body);
    let answer = http(Method::PATCH, &patch_url, Some(OTHER_EDITOR), &[], PATCH_HEADERS).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("olga (editor)"), "{}", answer.body);
    let answer = get(&url("/specs/shop/edit"), Some(VIEWER)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = get(&url("/specs/shop/edit"), Some(OTHER_EDITOR)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("olga (editor) may not change spec shop"), "{}", answer.body);
    assert_eq!(get(&url("/specs/shop/edit"), Some(EDITOR)).await.status, StatusCode::OK);

    // The owning editor patches version 2 into version 3, as author.
    let answer = http(Method::PATCH, &patch_url, Some(EDITOR), &[], PATCH_HEADERS).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!((answer.json()["version"].as_i64(), answer.json()["author"].as_str()), (Some(3), Some("eddie")));
    // The same change against version 2 again is a conflict.
    let answer = http(Method::PATCH, &patch_url, Some(EDITOR), &[], PATCH_HEADERS).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert!(answer.body.contains("current version is 3"), "{}", answer.body);
    // Bad input never publishes.
    let put_url = url("/api/v1/specs/shop");
    let answer = http(Method::PUT, &put_url, Some(EDITOR), &[("if-match", "\"3\"")], "apiVersion: specaudit/v1\nspec: shop\ncomponents: {a: {requirements: {r: {severity: urgent}}}}\n").await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.body);
    let answer = http(Method::PUT, &put_url, Some(EDITOR), &[("if-match", "\"3\"")], &SHOP_V2.replace("spec: shop", "spec: shop2")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let answer = http(Method::PATCH, &url("/api/v1/specs/shop"), Some(EDITOR), &[], "{\"op\": \"nonsense\"}").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let bad_severity = r#"[{"op": "replace", "path": "/components/web/requirements/headers/severity", "value": "urgent"}]"#;
    let answer = http(Method::PATCH, &url("/api/v1/specs/shop?expect_version=3"), Some(EDITOR), &[], bad_severity).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.body);
    assert!(answer.body.contains("severity"), "{}", answer.body);
    let missing = r#"[{"op": "remove", "path": "/components/nowhere"}]"#;
    let answer = http(Method::PATCH, &url("/api/v1/specs/shop?expect_version=3"), Some(EDITOR), &[], missing).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.body);
    // An admin replaces the whole spec against version 3 (If-Match).
    let answer = http(Method::PUT, &put_url, Some(ADMIN), &[("if-match", "\"3\"")], SHOP_V2).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["version"].as_i64(), Some(4));
    let latest = get(&put_url, Some(VIEWER)).await.json();
    assert_eq!((latest["version"].as_i64(), latest["author"].as_str()), (Some(4), Some("ada")));

    // The browser login: the token once, then an HttpOnly SameSite=Strict cookie.
    let answer = http(Method::POST, &url("/login"), None, &[("content-type", "application/x-www-form-urlencoded")], &format!("token={EDITOR}")).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let cookie = answer.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.starts_with("specaudit_token="), "{cookie}");
    assert!(!answer.headers["location"].to_str().unwrap().contains(EDITOR));
    let session = cookie.split(';').next().unwrap().to_owned();
    let answer = http(Method::GET, &url("/specs/shop"), None, &[("cookie", &session)], "").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("eddie") && answer.body.contains("/specs/shop/edit"), "the owner is offered the editor");
    let answer = http(Method::POST, &url("/login"), None, &[("content-type", "application/x-www-form-urlencoded")], "token=wrong-token-0123456789").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // A cross-site form post riding on the cookie is refused.
    let answer = http(
        Method::POST,
        &url("/specs/shop/edit"),
        None,
        &[("cookie", &session), ("origin", "https://evil.example"), ("content-type", "application/x-www-form-urlencoded")],
        "mode=patch&patch=%5B%5D&expect_version=4",
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("cross-site"), "{}", answer.body);
    server.shutdown().await;

    // Without tokens: everyone reads, nobody edits, and only loopback is served.
    let open = serve(config(&env, false)).await;
    assert_eq!(get(&open.url("/api/v1/report?spec=shop"), None).await.status, StatusCode::OK);
    let answer = http(Method::PUT, &open.url("/api/v1/specs/shop"), None, &[], SHOP_V2).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("auth.tokens"), "{}", answer.body);
    open.shutdown().await;
    let mut exposed = config(&env, false);
    exposed.server.listen = "0.0.0.0:0".parse().unwrap();
    let error = specaudit_reporter::http::bind(exposed).await.expect_err("refused").to_string();
    assert!(error.contains("0.0.0.0:0") && error.contains("auth.tokens"), "{error}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_clickhouse_cannot_store_are_refused_by_name() {
    let env = TestEnv::new().await;
    craft(&env, now_ms()).await;
    let server = serve(config(&env, false)).await;
    // A page: an HTML 400 saying why, not a dropped connection.
    let answer = get(&server.url("/?to=99999999999999999"), None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(answer.body.contains("to &quot;99999999999999999&quot; is outside the range"), "{}", answer.body);
    // The API: after 2106 ClickHouse's DateTime wraps, so counts would be silently wrong.
    for query in ["to=4294967296000", "from=-1", "from=2200-01-01T00:00:00Z"] {
        let answer = get(&server.url(&format!("/api/v1/report?{query}")), None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}: {}", answer.body);
        assert!(answer.json()["error"].as_str().unwrap().contains("outside the range"), "{}", answer.body);
    }
    // The last millisecond ClickHouse stores still reports.
    let answer = get(&server.url(&format!("/?to={}", specaudit_reporter::scope::MAX_MS)), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    server.shutdown().await;
    env.cleanup().await;
}
