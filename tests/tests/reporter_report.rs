//! Report correctness on a crafted assertion set in a real ClickHouse: compliant, failing,
//! error and unknown cells, inheritance, time ranges, component subtrees and severities;
//! coverage, version skew, history, alarms and the timeline; the rollup and the raw table
//! agree.

mod reporter_support;

use std::collections::BTreeMap;

use reporter_support::*;
use specaudit_reporter::assemble::{report, Options};
use specaudit_reporter::query::Source;
use specaudit_reporter::report::{Report, Status};
use specaudit_reporter::scope::{Filters, Scope};
use specaudit_tests::TestEnv;

fn scope(now: u64, since: &str, component: Option<&str>, severity: Option<&str>) -> Scope {
    Filters {
        spec: Some("shop".into()),
        component: component.map(Into::into),
        since: Some(since.into()),
        severity: severity.map(Into::into),
        ..Filters::default()
    }
    .scope(now, std::time::Duration::from_secs(86_400))
    .expect("scope")
}

fn statuses(report: &Report) -> Vec<(String, String, Status)> {
    report.specs[0].cells.iter().map(|c| (c.requirement.clone(), c.component.clone(), c.status)).collect()
}

fn expect(cells: &[(&str, &str, Status)]) -> Vec<(String, String, Status)> {
    cells.iter().map(|(r, c, s)| (r.to_string(), c.to_string(), *s)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_on_a_crafted_assertion_set() {
    let env = TestEnv::new().await;
    let now = now_ms();
    craft(&env, now).await;
    let client = env.client();
    let options = Options { now_ms: now, ..Options::default() };

    // The last hour, every component, every severity.
    let hour = report(&client, &scope(now, "1h", None, None), &options).await.expect("report");
    assert_eq!(
        statuses(&hour),
        expect(&[
            ("db/backup", "db", Status::Unknown),
            ("db/encrypt", "db", Status::Unknown),
            ("web.cart/limit", "web.cart", Status::Failing),
            ("web/headers", "web", Status::Compliant),
            ("web/headers", "web.cart", Status::Unknown),
            ("web/tls", "web", Status::Error),
            ("web/tls", "web.cart", Status::Compliant),
        ])
    );
    let spec = &hour.specs[0];
    assert_eq!(spec.version, 2);
    let limit = spec.cells.iter().find(|c| c.requirement == "web.cart/limit").expect("limit");
    assert_eq!((limit.passes, limit.failures, limit.errors), (13, 2, 0));
    assert!((limit.failure_ratio - 2.0 / 15.0).abs() < 1e-9);
    assert_eq!(limit.failing_instances, ["c1"]);
    assert_eq!(limit.last_failure, "limit 500 != 1000");
    let tls_web = spec.cells.iter().find(|c| c.requirement == "web/tls" && c.component == "web").expect("tls");
    assert_eq!((tls_web.passes, tls_web.errors, tls_web.failures), (3, 1, 0));
    // Unknown is never compliant: 2 of 7.
    let s = &spec.summary;
    assert_eq!((s.compliant, s.failing, s.error, s.unknown), (2, 1, 1, 3));
    assert!((s.compliance_pct - 200.0 / 7.0).abs() < 1e-9);
    assert_eq!(hour.summary, spec.summary);
    // Component types: the deepest declared path at or above the reporter.
    let types: BTreeMap<&str, (usize, usize)> =
        spec.component_types.iter().map(|g| (g.name.as_str(), (g.summary.compliant, g.summary.total()))).collect();
    assert_eq!(types, BTreeMap::from([("db", (0, 2)), ("web", (1, 2)), ("web.cart", (1, 3))]));
    let components: Vec<&str> = spec.components.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(components, ["db", "web", "web.cart"]);
    // Coverage and skew.
    let c = &spec.coverage;
    assert_eq!(c.unreported_components, Vec::<String>::new(), "db skipped, so it is there");
    assert_eq!(c.unreported_requirements, ["db/backup", "db/encrypt"]);
    assert_eq!(c.silent_agents, ["agent-d1"]);
    assert_eq!(c.stale_agents, ["agent-c1"]);
    // History in the range with requirement-level changes and authors.
    let history: Vec<(u64, &str, Vec<(&str, &str)>)> = spec
        .history
        .iter()
        .map(|h| (h.version, h.author.as_str(), h.changes.iter().map(|c| (c.kind, c.target.as_str())).collect()))
        .collect();
    assert_eq!(
        history,
        [
            (1, "alice", vec![("added", "db/backup"), ("added", "web.cart/limit"), ("added", "web/headers"), ("added", "web/tls")]),
            (2, "bob", vec![("changed", "db/backup"), ("added", "db/encrypt")]),
        ]
    );
    // Alarms and waivers in the range only.
    let alarms: Vec<(&str, &str)> = hour.alarms.iter().map(|a| (a.fingerprint.as_str(), a.state.as_str())).collect();
    assert_eq!(alarms, [("fp-backup", "waived"), ("fp-limit", "firing")]);
    // The timeline adds up to the counts (the other spec left out).
    let sums = hour.timeline.iter().fold((0, 0, 0), |(p, f, e), b| (p + b.passes, f + b.failures, e + b.errors));
    assert_eq!(sums, (35, 2, 1));

    // Four hours: the old backup failure shows.
    let four = report(&client, &scope(now, "4h", None, None), &options).await.expect("report");
    let backup = four.specs[0].cells.iter().find(|c| c.requirement == "db/backup").expect("backup");
    assert_eq!((backup.status, backup.last_failure.as_str()), (Status::Failing, "no backup for 30 h"));
    assert_eq!(four.alarms.len(), 2, "the resolved alarm is 5 h old");

    // A subtree: web.cart owes what it inherits from web.
    let cart = report(&client, &scope(now, "1h", Some("web.cart"), None), &options).await.expect("report");
    assert_eq!(
        statuses(&cart),
        expect(&[
            ("web.cart/limit", "web.cart", Status::Failing),
            ("web/headers", "web.cart", Status::Unknown),
            ("web/tls", "web.cart", Status::Compliant),
        ])
    );
    assert_eq!(cart.alarms.len(), 1);
    assert_eq!(cart.agents.iter().map(|a| a.agent_id.as_str()).collect::<Vec<_>>(), ["agent-c1"]);
    // A subtree with no reports: every requirement in it is unknown at its definer.
    let db = report(&client, &scope(now, "1h", Some("db"), None), &options).await.expect("report");
    assert_eq!(db.specs[0].summary.compliance_pct, 0.0);

    // Severity: critical requirements only.
    let critical = report(&client, &scope(now, "1h", None, Some("critical")), &options).await.expect("report");
    assert_eq!(
        statuses(&critical),
        expect(&[("db/backup", "db", Status::Unknown), ("web/tls", "web", Status::Error), ("web/tls", "web.cart", Status::Compliant)])
    );
    assert_eq!(critical.alarms.len(), 1);

    // The raw table gives the same matrix as the rollup.
    for s in [scope(now, "1h", None, None), scope(now, "4h", Some("web"), None)] {
        let rollup = report(&client, &s, &options).await.expect("rollup report");
        let raw = report(&client, &s, &Options { source: Source::Raw, ..options.clone() }).await.expect("raw report");
        assert_eq!(rollup.specs[0].cells, raw.specs[0].cells);
    }

    // An unknown spec is an error that says so.
    let mut missing = scope(now, "1h", None, None);
    missing.spec = Some("nope".into());
    let error = report(&client, &missing, &options).await.expect_err("unknown spec").to_string();
    assert!(error.contains("nope"), "{error}");
    env.cleanup().await;
}

/// A component path that is all free text, `bytes` long (assertions carry up to 64 KiB).
fn huge_component(tag: char, bytes: usize) -> &'static str {
    format!("web.{}", tag.to_string().repeat(bytes - 4)).leak()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_cells_with_huge_free_text_still_report() {
    let env = TestEnv::new().await;
    let now = now_ms();
    let client = env.client();
    migrate(&env).await;
    insert_spec_version(&client, 2, now - 40 * MINUTE, "bob", "", SHOP_V2).await;
    let recent = now - 10 * MINUTE;
    // Five failing components with 60 KB names: 300 KB of text, more than ClickHouse takes
    // in one statement (max_query_size 256 KiB), and a cell outside the spec.
    let huge: Vec<&'static str> = ['a', 'b', 'c', 'd', 'e'].into_iter().map(|tag| huge_component(tag, 60_000)).collect();
    let mut rows: Vec<Row> = huge.iter().map(|component| row(recent, component, "h1", "web/tls", "fail", 1, "huge")).collect();
    rows.push(row(recent, "web.cart", "c1", "web.cart/limit", "fail", 1, "limit 500 != 1000"));
    rows.push(row(recent, "web.cart", "c1", "web.cart/gone", "fail", 1, "not in the spec"));
    insert_assertions(&client, &rows).await;
    rebuild_rollup(&client).await;
    let options = Options { now_ms: now, ..Options::default() };
    let failures = |report: &Report| -> BTreeMap<String, String> {
        report.specs[0]
            .cells
            .iter()
            .filter(|c| c.status == Status::Failing)
            .map(|c| (c.component.chars().take(10).collect(), c.last_failure.clone()))
            .collect()
    };

    let full = report(&client, &scope(now, "1h", None, None), &options).await.expect("the report survives huge names");
    let expected: BTreeMap<String, String> = huge
        .iter()
        .map(|c| (c.chars().take(10).collect(), "huge".to_owned()))
        .chain([("web.cart".to_owned(), "limit 500 != 1000".to_owned())])
        .collect();
    assert_eq!(failures(&full), expected);

    // Where ClickHouse still refuses a lookup, the cells show without a message and the
    // rest of the report stands.
    let strict = client.clone().with_setting("max_query_size", "16384");
    let partial = report(&strict, &scope(now, "1h", None, None), &options).await.expect("a report without some messages");
    let shown = failures(&partial);
    assert_eq!(shown.len(), 6, "{shown:?}");
    for component in &huge {
        assert_eq!(shown[&component.chars().take(10).collect::<String>()], "", "no message, no failure of the report");
    }
    assert_eq!(partial.specs[0].summary, full.specs[0].summary);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_severity_filter_of_alarms_applies_before_the_limit() {
    let env = TestEnv::new().await;
    let now = now_ms();
    let client = env.client();
    migrate(&env).await;
    insert_spec_version(&client, 2, now - 40 * MINUTE, "bob", "", SHOP_V2).await;
    insert_alarm(&client, "fp-critical", now - 30 * MINUTE, "firing", "critical", "shop", "db", "db/backup").await;
    for i in 0..5 {
        insert_alarm(&client, &format!("fp-major-{i}"), now - (20 - i) * MINUTE, "firing", "major", "shop", "web.cart", "web.cart/limit").await;
    }
    // Keeps 3 alarms: all five majors are newer than the critical one.
    let options = Options { now_ms: now, max_alarms: 3, ..Options::default() };
    let critical = report(&client, &scope(now, "1h", None, Some("critical")), &options).await.expect("report");
    let fingerprints: Vec<&str> = critical.alarms.iter().map(|a| a.fingerprint.as_str()).collect();
    assert_eq!(fingerprints, ["fp-critical"]);
    let several = report(&client, &scope(now, "1h", None, Some("critical,minor")), &options).await.expect("report");
    assert_eq!(several.alarms.len(), 1);
    let all = report(&client, &scope(now, "1h", None, None), &options).await.expect("report");
    assert_eq!(all.alarms.iter().map(|a| a.severity.as_str()).collect::<Vec<_>>(), ["major"; 3]);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stops_the_reporters_statements_with_the_request() {
    let env = TestEnv::new().await;
    migrate(&env).await;
    // The server ends a statement of the reporter's client after the web server's budget.
    let client = specaudit_reporter::query::client(&env.clickhouse);
    let limit: String = client
        .query("SELECT value FROM system.settings WHERE name = 'max_execution_time'")
        .fetch_one()
        .await
        .expect("read the setting");
    assert_eq!(limit, specaudit_reporter::http::QUERY_BUDGET.as_secs().to_string());
    env.cleanup().await;
}
