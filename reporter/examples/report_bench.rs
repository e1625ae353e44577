//! Report latency from the per-minute rollup against a scan of the raw table, on a day of
//! synthetic assertions written straight into a scratch ClickHouse database, and the weight
//! and render time of the spec page. Figures in BENCHMARKS.md ("Reporter").
//!
//! cargo run -p specaudit-reporter --example report_bench -- [ROWS] [RUNS]
//! (defaults 10000000 and 30; SPECAUDIT_BENCH_CLICKHOUSE overrides http://127.0.0.1:8123;
//! the database specaudit_bench is dropped at the end unless SPECAUDIT_BENCH_KEEP=1, and
//! SPECAUDIT_BENCH_REUSE=1 measures a kept one again instead of writing it anew).

use std::time::{Duration, Instant};

use specaudit_core::config::ClickHouseConfig;
use specaudit_reporter::assemble::{report, Options};
use specaudit_reporter::query::{observed, Source};
use specaudit_reporter::scope::Scope;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const COMPONENTS: u64 = 8;
const REQUIREMENTS: u64 = 5;
const INSTANCES: u64 = 25;
const DAY_MS: u64 = 86_400_000;

fn spec_yaml() -> String {
    let mut yaml = String::from("apiVersion: specaudit/v1\nspec: bench\nowners: [bench]\ncomponents:\n");
    for c in 0..COMPONENTS {
        yaml.push_str(&format!("  svc{c}:\n    requirements:\n"));
        for r in 0..REQUIREMENTS {
            yaml.push_str(&format!("      r{r}: {{description: requirement {r} of svc{c}}}\n"));
        }
    }
    yaml
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn time_runs<F, Fut>(runs: usize, mut f: F) -> (Duration, Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f().await; // warm-up, not counted
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        f().await;
        times.push(started.elapsed());
    }
    times.sort();
    (percentile(&times, 50.0), percentile(&times, 99.0), *times.last().unwrap_or(&Duration::ZERO))
}

/// A plain HTTP/1.1 GET; returns the status line and the body length.
async fn fetch(addr: std::net::SocketAddr, path: &str) -> (String, usize) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or("").to_owned(), body.len())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000_000);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(30);
    let config = ClickHouseConfig {
        url: std::env::var("SPECAUDIT_BENCH_CLICKHOUSE").unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
        database: "specaudit_bench".into(),
        ..ClickHouseConfig::default()
    };
    let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    let server = specaudit_core::clickhouse::server_client(&config);
    let client = specaudit_core::clickhouse::client(&config);
    let reuse = flag("SPECAUDIT_BENCH_REUSE");
    let kept: Option<u64> = if reuse {
        client.query("SELECT min(ts_ms) FROM spec_versions WHERE spec = 'bench'").fetch_one().await.ok()
    } else {
        None
    };
    let now = specaudit_core::record::now_ms() as u64;
    let start = kept.unwrap_or(now - DAY_MS);
    let now = start + DAY_MS;
    if kept.is_none() {
        write(&server, &client, &config, rows, start).await?;
    }
    bench(&client, &config, runs, start, now).await?;
    if !flag("SPECAUDIT_BENCH_KEEP") {
        server.query("DROP DATABASE IF EXISTS specaudit_bench").execute().await?;
    }
    Ok(())
}

/// Writes a day of synthetic assertions from `start`, their rollup and the spec.
async fn write(server: &clickhouse::Client, client: &clickhouse::Client, config: &ClickHouseConfig, rows: u64, start: u64) -> anyhow::Result<()> {
    server.query("DROP DATABASE IF EXISTS specaudit_bench").execute().await?;
    specaudit_ingester::migrate::migrate(config).await?;

    // A day of assertions: COMPONENTS x REQUIREMENTS x INSTANCES series, evenly spread,
    // about 1 in 97 failing and 1 in 211 unevaluable.
    let started = Instant::now();
    client
        .query(
            "INSERT INTO assertions (ts_ms, spec, spec_version, component, instance, agent_id, requirement, task, outcome, \
             severity, count, message) \
             SELECT ? + intDiv(number * ?, ?) AS ts, 'bench', 1, concat('svc', toString(number % ?)) AS c, \
             concat(c, '-', toString(intDiv(number, ?) % ?)) AS i, concat('agent-', i), \
             concat(c, '/r', toString(intDiv(number, ?) % ?)), 'task', \
             if(number % 97 = 0, 'fail', if(number % 211 = 0, 'error', 'pass')), 'major', 1, \
             if(number % 97 = 0, concat('failure ', toString(number)), '') FROM numbers(?)",
        )
        .bind(start)
        .bind(DAY_MS)
        .bind(rows)
        .bind(COMPONENTS)
        .bind(COMPONENTS * REQUIREMENTS)
        .bind(INSTANCES)
        .bind(COMPONENTS)
        .bind(REQUIREMENTS)
        .bind(rows)
        .execute()
        .await?;
    let inserted = started.elapsed();
    // The rollup as the ingester writes it (migration 002 rebuilds it the same way).
    let started = Instant::now();
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
        .await?;
    client.query("OPTIMIZE TABLE assertions_minutely FINAL").execute().await?;
    let rolled = started.elapsed();
    let spec = specaudit_core::spec::Spec::parse(&spec_yaml())?;
    client
        .query("INSERT INTO spec_versions (spec, version, ts_ms, author, comment, sha256, deleted, document, patch) VALUES ('bench', 1, ?, 'bench', '', ?, 0, ?, '[]')")
        .bind(start)
        .bind(spec.sha256())
        .bind(spec.canonical_json())
        .execute()
        .await?;
    let (raw_rows, rollup_rows): (u64, u64) = client
        .query("SELECT (SELECT count() FROM assertions), (SELECT count() FROM assertions_minutely)")
        .fetch_one()
        .await?;
    let version = specaudit_core::clickhouse::server_version(client).await?;
    println!("clickhouse {}.{}: {raw_rows} assertions (insert {:.1} s), {rollup_rows} rollup rows (build {:.1} s)", version.0, version.1, inserted.as_secs_f64(), rolled.as_secs_f64());
    Ok(())
}

/// Measures reports and the spec page over the day from `start` to `now`.
async fn bench(client: &clickhouse::Client, config: &ClickHouseConfig, runs: usize, start: u64, now: u64) -> anyhow::Result<()> {
    let spec = specaudit_core::spec::Spec::parse(&spec_yaml())?;

    let day = Scope { spec: Some("bench".into()), component: None, from_ms: start, to_ms: now, severities: vec![] };
    let hour = Scope { from_ms: now - 3_600_000, ..day.clone() };
    let subtree = Scope { component: Some("svc3".into()), ..day.clone() };
    let options = Options { now_ms: now, ..Options::default() };
    println!("{runs} runs each after one warm-up; p99 of {runs} runs is the slowest but at most one\n");
    println!("| what | source | p50 (ms) | p99 (ms) | max (ms) |\n| --- | --- | ---: | ---: | ---: |");
    for (name, scope) in [("matrix, 24 h", &day), ("matrix, 1 h", &hour), ("matrix, 24 h, subtree svc3", &subtree)] {
        let mut p50s = Vec::new();
        for source in [Source::Rollup, Source::Raw] {
            let (p50, p99, max) = time_runs(runs, || async {
                observed(client, "bench", scope, source).await.expect("query");
            })
            .await;
            println!("| {name} | {source:?} | {:.1} | {:.1} | {:.1} |", ms(p50), ms(p99), ms(max));
            p50s.push(p50);
        }
        println!("| {name} | raw / rollup p50 | {:.1}x | | |", p50s[1].as_secs_f64() / p50s[0].as_secs_f64());
    }
    let mut p50s = Vec::new();
    for source in [Source::Rollup, Source::Raw] {
        let opts = Options { source, ..options.clone() };
        let (p50, p99, max) = time_runs(runs, || async {
            report(client, &day, &opts).await.expect("report");
        })
        .await;
        println!("| whole report (matrix, coverage, agents, alarms, history, timeline), 24 h | {source:?} | {:.1} | {:.1} | {:.1} |", ms(p50), ms(p99), ms(max));
        p50s.push(p50);
    }
    println!("| whole report, 24 h | raw / rollup p50 | {:.1}x | | |", p50s[1].as_secs_f64() / p50s[0].as_secs_f64());

    // The spec page, served by the real router.
    let mut reporter = specaudit_reporter::ReporterConfig { clickhouse: config.clone(), ..Default::default() };
    reporter.server.listen = "127.0.0.1:0".parse()?;
    let bound = specaudit_reporter::http::bind(reporter).await?;
    let addr = bound.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(bound.run(stop.clone()));
    let (status, bytes) = fetch(addr, "/specs/bench?since=24h").await;
    let (p50, p99, max) = time_runs(runs, || async {
        fetch(addr, "/specs/bench?since=24h").await;
    })
    .await;
    println!("\nspec page /specs/bench?since=24h: {status}, {bytes} bytes of HTML (no script, no other request)");
    println!("| spec page, 24 h, served | rollup | {:.1} | {:.1} | {:.1} |", ms(p50), ms(p99), ms(max));
    let report_day = report(client, &day, &options).await?;
    let spec_report = &report_day.specs[0];
    let filters = specaudit_reporter::scope::Filters::default();
    let (p50, p99, max) = time_runs(runs, || async {
        let page = specaudit_reporter::html::spec_page(&spec, spec_report, &report_day, &filters, false, None);
        std::hint::black_box(page);
    })
    .await;
    println!("| spec page, HTML rendering alone | - | {:.3} | {:.3} | {:.3} |", ms(p50), ms(p99), ms(max));
    stop.cancel();
    let _ = serving.await;
    Ok(())
}
