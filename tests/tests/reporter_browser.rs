//! The web UI in headless Chromium (Debian's `chromium`, driven through `chromedriver` over
//! WebDriver): log in, load the colour-coded spec and check every requirement's colour
//! against the JSON API, filter by severity, and as an editor change a requirement and see
//! the new version once the ingester has stored it. Skipped, saying so, only where
//! chromium is not installed (`deploy/local/stack install` installs it).

mod reporter_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use reporter_support::*;
use serde_json::json;
use specaudit_ingester::config::{IngestConfig, IngesterConfig};
use specaudit_tests::TestEnv;
use tokio_util::sync::CancellationToken;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The colour each status is drawn in, as the browser computes it.
fn rgb(status: &str) -> (u8, u8, u8) {
    match status {
        "compliant" => (0x2e, 0x7d, 0x32),
        "failing" => (0xc6, 0x28, 0x28),
        "error" => (0xef, 0x8f, 0x00),
        _ => (0x9e, 0x9e, 0x9e),
    }
}

/// `rgb(1, 2, 3)` or `rgba(1, 2, 3, 1)` as a triple.
fn parse_rgb(css: &str) -> (u8, u8, u8) {
    let n: Vec<u8> = css
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    (n[0], n[1], n[2])
}

/// The worst status of a requirement's cells, as the spec page rolls them up.
fn rolled_up(report: &serde_json::Value) -> BTreeMap<String, String> {
    let rank = |s: &str| match s {
        "failing" => 0,
        "error" => 1,
        "unknown" => 2,
        _ => 3,
    };
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for cell in report["specs"][0]["cells"].as_array().expect("cells") {
        let (req, status) = (cell["requirement"].as_str().unwrap().to_owned(), cell["status"].as_str().unwrap().to_owned());
        let worse = out.get(&req).is_none_or(|known| rank(&status) < rank(known));
        if worse {
            out.insert(req, status);
        }
    }
    out
}

fn uuid_like() -> String {
    format!("{}-{}", std::process::id(), now_ms())
}

struct Driver {
    process: tokio::process::Child,
    profile: std::path::PathBuf,
}

async fn start_driver() -> (Driver, Client) {
    assert!(
        Path::new(CHROMEDRIVER).exists(),
        "chromium is installed but {CHROMEDRIVER} is not: install Debian's chromium-driver (deploy/local/stack install does)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let process = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not answer on {url} within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A fresh profile per run, removed at the end.
    let profile = std::env::temp_dir().join(format!("specaudit-chromium-{}", uuid_like()));
    std::fs::create_dir_all(&profile).expect("profile dir");
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,2000",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let capabilities = json!({"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}});
    let capabilities = capabilities.as_object().cloned().unwrap();
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&url)
        .await
        .expect("open a chromium session");
    (Driver { process, profile }, client)
}

async fn req_statuses(browser: &Client) -> BTreeMap<String, (String, (u8, u8, u8), (u8, u8, u8))> {
    let mut out = BTreeMap::new();
    for element in browser.find_all(Locator::Css(".req")).await.expect("requirements") {
        let id = element.attr("data-requirement").await.unwrap().expect("data-requirement");
        let status = element.attr("data-status").await.unwrap().expect("data-status");
        let border = parse_rgb(&element.css_value("border-left-color").await.unwrap());
        let chip = element.find(Locator::Css(".chip")).await.expect("chip");
        let background = parse_rgb(&chip.css_value("background-color").await.unwrap());
        out.insert(id, (status, border, background));
    }
    out
}

/// Waits until the browser shows the page a click led to: when `click` returns, a form
/// submission may still be in flight and the old page still current.
async fn wait_for_page(browser: &Client, what: &str, done: impl Fn(&str, &str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = browser.current_url().await.unwrap();
        if done(url.path(), url.query().unwrap_or("")) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not load within 20 s: {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the browser does and checks; runs in its own task so the session is closed and
/// chromedriver stopped even when a check fails.
async fn scenario(browser: Client, base: String) {
    let page = |path: &str| format!("{base}{path}");
    // Log in once with the editor's token.
    browser.goto(&page("/login")).await.unwrap();
    browser.find(Locator::Id("token")).await.unwrap().send_keys(EDITOR).await.unwrap();
    browser.find(Locator::Id("login-submit")).await.unwrap().click().await.unwrap();
    wait_for_page(&browser, "the overview after login", |path, _| path == "/").await;
    assert!(browser.source().await.unwrap().contains("eddie"));

    // The spec page: every requirement in the colour of its data.
    browser.goto(&page("/specs/shop?since=1h")).await.unwrap();
    let shown = req_statuses(&browser).await;
    let data = get(&page("/api/v1/report?spec=shop&since=1h"), Some(VIEWER)).await.json();
    let expected = rolled_up(&data);
    assert_eq!(shown.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (id, (status, border, background)) in &shown {
        assert_eq!(status, &expected[id], "{id}");
        assert_eq!(*border, rgb(status), "{id} border");
        assert_eq!(*background, rgb(status), "{id} chip");
    }
    let statuses: BTreeMap<&str, &str> = shown.iter().map(|(k, v)| (k.as_str(), v.0.as_str())).collect();
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("db/backup", "unknown"),
            ("db/encrypt", "unknown"),
            ("web.cart/limit", "failing"),
            ("web/headers", "unknown"),
            ("web/tls", "error"),
        ])
    );

    // Filter to critical requirements with the form.
    browser.find(Locator::Css("form.filters input[name=severity]")).await.unwrap().send_keys("critical").await.unwrap();
    browser.find(Locator::Css("form.filters button")).await.unwrap().click().await.unwrap();
    wait_for_page(&browser, "the filtered page", |_, query| query.contains("severity=critical")).await;
    let critical = req_statuses(&browser).await;
    assert_eq!(critical.keys().map(String::as_str).collect::<Vec<_>>(), ["db/backup", "web/tls"]);

    // As the editor, make web/headers critical with a JSON Patch, then see version 3.
    browser.goto(&page("/specs/shop/edit")).await.unwrap();
    let patch = r#"[{"op": "replace", "path": "/components/web/requirements/headers/severity", "value": "critical"}]"#;
    browser.find(Locator::Id("patch")).await.unwrap().send_keys(patch).await.unwrap();
    browser.find(Locator::Id("patch-comment")).await.unwrap().send_keys("headers are critical").await.unwrap();
    browser.find(Locator::Id("patch-submit")).await.unwrap().click().await.unwrap();
    wait_for_page(&browser, "the spec page after the edit", |path, query| path == "/specs/shop" && query == "published=3").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let version = browser.find(Locator::Id("version")).await.unwrap().text().await.unwrap();
        if version == "3" {
            break;
        }
        assert!(Instant::now() < deadline, "version 3 did not show within 60 s (still {version})");
        tokio::time::sleep(Duration::from_millis(300)).await;
        browser.refresh().await.unwrap();
    }
    browser.goto(&page("/specs/shop?since=1h&severity=critical")).await.unwrap();
    let critical = req_statuses(&browser).await;
    assert_eq!(critical.keys().map(String::as_str).collect::<Vec<_>>(), ["db/backup", "web/headers", "web/tls"]);
    // The history names the editor and the requirement that changed.
    browser.goto(&page("/specs/shop/history")).await.unwrap();
    let newest = browser.find(Locator::Css("section.version")).await.unwrap();
    assert_eq!(newest.attr("data-version").await.unwrap().as_deref(), Some("3"));
    assert_eq!(newest.find(Locator::Css(".author")).await.unwrap().text().await.unwrap(), "eddie");
    let change = newest.find(Locator::Css("li.change-changed")).await.unwrap().text().await.unwrap();
    assert_eq!(change, "changed web/headers: severity");

}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_colour_coded_spec_in_chromium() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("SKIPPED: {CHROMIUM} is not installed (apt-get install chromium chromium-driver, or deploy/local/stack install)");
        return;
    }
    let env = TestEnv::new().await;
    let now = now_ms();
    craft(&env, now).await;
    publish_shop(&env).await;
    // The ingester stores the versions the editor publishes.
    let ingester_config = IngesterConfig {
        kafka: env.kafka.clone(),
        clickhouse: env.clickhouse.clone(),
        ingest: IngestConfig { group_id: format!("test-{}", env.id), max_delay: Duration::from_millis(100), ..IngestConfig::default() },
        ..IngesterConfig::default()
    };
    let stop_ingester = CancellationToken::new();
    let ingester = tokio::spawn(specaudit_ingester::run(ingester_config, stop_ingester.clone()));
    let server = serve(config(&env, true)).await;
    let (mut driver, browser) = start_driver().await;

    let run = tokio::spawn(scenario(browser.clone(), server.url("")));
    let outcome = run.await;
    let _ = browser.close().await;
    let _ = driver.process.kill().await;
    let _ = driver.process.wait().await;
    let _ = std::fs::remove_dir_all(&driver.profile);
    server.shutdown().await;
    stop_ingester.cancel();
    ingester.await.unwrap().unwrap();
    env.cleanup().await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}
