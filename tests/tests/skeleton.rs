//! The walking skeleton, every hop real: a spec published to Kafka, an agent that receives
//! it and checks a task, the ingester writing to ClickHouse, and the report showing one
//! requirement compliant and one failing.

use std::time::{Duration, Instant};

use serde_json::json;
use specaudit_core::record::Outcome;
use specaudit_core::spec::Spec;
use specaudit_ingester::config::{IngestConfig, IngesterConfig};
use specaudit_producer::agent::{Agent, AgentConfig};
use specaudit_producer::publish::{publish, Change, Meta};
use specaudit_reporter::assemble::{report, Options};
use specaudit_reporter::scope::Scope;
use specaudit_reporter::report::Status;
use specaudit_tests::TestEnv;
use tokio_util::sync::CancellationToken;

const EXAMPLE: &str = include_str!("../../examples/compute-service.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_to_agent_to_clickhouse_to_report() {
    let env = TestEnv::new().await;

    // 1. Publish the example spec.
    let spec = Spec::parse(EXAMPLE).unwrap();
    let meta = Meta { author: "alice".into(), comment: "first".into(), expect_version: Some(0) };
    let version = publish(&env.kafka, Change::Replace(spec), meta).await.unwrap();
    assert_eq!(version.version, 1);

    // 2. An agent of frontend.throttle receives it and checks one task: TLS is fine, the
    //    configured rate is not.
    let mut config = AgentConfig::new(env.kafka.clone(), "frontend.throttle", "fe-1");
    config.rollup_interval = Duration::from_millis(200);
    let agent = tokio::task::spawn_blocking(move || Agent::start(config)).await.unwrap().unwrap();
    assert_eq!(agent.versions()[0].version, 1);
    assert_eq!(agent.param::<u32>("max_rps"), Some(1000));
    let results = agent.check("serve-request", &json!({"tls_version": "1.3", "max_rps": 500}));
    let outcomes: Vec<(&str, Outcome)> = results.iter().map(|r| (&*r.requirement, r.outcome)).collect();
    assert_eq!(outcomes, [("frontend/tls-min-version", Outcome::Pass), ("frontend.throttle/limit-set", Outcome::Fail)]);
    let stopping = agent.clone();
    tokio::task::spawn_blocking(move || stopping.shutdown(Duration::from_secs(10))).await.unwrap();
    let counters = agent.counters();
    assert_eq!(counters.dropped, 0);
    assert!(counters.emitted >= 2, "{counters:?}");

    // 3. The ingester writes everything to ClickHouse.
    let ingester_config = IngesterConfig {
        kafka: env.kafka.clone(),
        clickhouse: env.clickhouse.clone(),
        ingest: IngestConfig {
            group_id: format!("test-{}", env.id),
            max_delay: Duration::from_millis(100),
            ..IngestConfig::default()
        },
        ..IngesterConfig::default()
    };
    let stop = CancellationToken::new();
    let ingester = tokio::spawn(specaudit_ingester::run(ingester_config, stop.clone()));

    // 4. The report shows one requirement compliant, one failing, the rest unknown.
    let client = env.client();
    let scope = |now: u64| Scope {
        spec: Some("compute-service".into()),
        component: None,
        from_ms: now - 3_600_000,
        to_ms: now + 60_000,
        severities: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let now = specaudit_core::record::now_ms() as u64;
        if let Ok(report) = report(&client, &scope(now), &Options::default()).await {
            let cells = &report.specs[0].cells;
            if cells.iter().filter(|c| c.status != Status::Unknown).count() == 2 {
                break report;
            }
        }
        assert!(Instant::now() < deadline, "report did not show the assertions within 60 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let spec = &report.specs[0];
    assert_eq!(spec.version, 1);
    let cell = |req: &str| spec.cells.iter().find(|c| c.requirement == req).unwrap();
    let tls = cell("frontend/tls-min-version");
    assert_eq!((tls.status, tls.component.as_str(), tls.passes), (Status::Compliant, "frontend.throttle", 1));
    let limit = cell("frontend.throttle/limit-set");
    assert_eq!((limit.status, limit.failures), (Status::Failing, 1));
    assert_eq!(limit.failing_instances, ["fe-1"]);
    assert!(limit.last_failure.contains("facts.max_rps == params.max_rps"), "{}", limit.last_failure);
    assert_eq!(cell("compute.instance/valid-config").status, Status::Unknown);
    assert_eq!(cell("security/audit-logging").status, Status::Unknown);
    // One compliant of the example's 16 requirements.
    assert_eq!(spec.summary.compliance_pct, 6.25);

    // The raw table holds exactly the two assertions, once each.
    let (count, unique): (u64, u64) =
        client.query("SELECT count(), uniqExact(assertion_id) FROM assertions").fetch_one().await.unwrap();
    assert_eq!((count, unique), (2, 2));
    // The spec history reached ClickHouse with its author.
    let author: String = client.query("SELECT author FROM spec_versions WHERE spec = 'compute-service' AND version = 1")
        .fetch_one().await.unwrap();
    assert_eq!(author, "alice");

    stop.cancel();
    ingester.await.unwrap().unwrap();
    env.cleanup().await;
}
