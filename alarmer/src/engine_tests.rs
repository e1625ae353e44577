//! The window logic on an in-memory feed with explicit time. The same scenarios run
//! against the real topics in `tests/tests/alarmer_*.rs`.

use std::collections::HashMap;

use serde_json::json;
use specaudit_core::record::{AlarmState, SpecInUse};

use super::*;
use crate::alarm::Status;
use crate::routes::Route;
use crate::rules::RuleConfig;
use crate::selector::Selector;
use crate::waivers::WaiverConfig;

const SPEC: &str = r#"{"apiVersion":"specaudit/v1","spec":"svc","components":{
  "frontend":{"requirements":{"tls":{"severity":"critical"},"limit":{}}},
  "security":{"requirements":{"audit":{}}}},
  "alarms":[{"name":"spec-limit","match":{"requirement":"frontend/limit"},"when":{"failures_at_least":2,"window":"10s"}}]}"#;

fn rule(name: &str, when: serde_json::Value) -> Rule {
    Rule::from_config(&RuleConfig { name: name.into(), when: when.as_object().unwrap().clone(), ..RuleConfig::default() })
        .unwrap()
}

fn engine(rules: Vec<Rule>, waivers: Vec<Waiver>) -> Engine {
    let router = Router {
        routes: vec![Route { selector: Selector::default(), receivers: vec!["hook".into()], keep_going: false }],
        repeat_ms: HashMap::from([("hook".to_owned(), 60_000)]),
        idempotent: Default::default(),
    };
    Engine::new(EngineConfig { rules, router, waivers, spec_rules: true, agent_timeout_ms: 300_000 })
}

fn assertion(ts: i64, instance: &str, requirement: &str, outcome: Outcome) -> Assertion {
    Assertion {
        assertion_id: uuid::Uuid::now_v7(),
        ts,
        spec: "svc".into(),
        spec_version: 1,
        component: "frontend".into(),
        instance: instance.into(),
        agent_id: format!("agent-{instance}"),
        requirement: requirement.into(),
        task: "serve".into(),
        outcome,
        severity: if requirement == "frontend/tls" { Severity::Critical } else { Severity::Major },
        count: 1,
        message: if outcome == Outcome::Fail { "too old".into() } else { String::new() },
        details: String::new(),
        labels: BTreeMap::new(),
    }
}

fn spec_version(version: i64, ts: i64) -> SpecVersion {
    SpecVersion {
        spec: "svc".into(),
        version,
        ts,
        author: "a".into(),
        comment: String::new(),
        sha256: String::new(),
        deleted: false,
        document: SPEC.into(),
        patch: "[]".into(),
    }
}

/// A heartbeat of agent-1 (frontend/i1) running version `version` of svc.
fn hb(ts: i64, version: i64) -> Heartbeat {
    Heartbeat {
        agent_id: "agent-1".into(),
        component: "frontend".into(),
        instance: "i1".into(),
        ts,
        started_at: 0,
        sdk_version: "0".into(),
        specs: vec![SpecInUse { spec: "svc".into(), version }],
        checked: 0,
        emitted: 0,
        dropped: 0,
        requirements: vec![],
        labels: BTreeMap::new(),
    }
}

fn states(out: &[Transition]) -> Vec<(AlarmState, String)> {
    out.iter().filter_map(|t| t.event.as_ref()).map(|e| (e.state, e.rule.clone())).collect()
}

fn notices(out: &[Transition]) -> Vec<(Status, bool)> {
    out.iter().filter_map(|t| t.notice.as_ref()).map(|n| (n.status, n.repeat)).collect()
}

#[test]
fn a_critical_requirement_fires_on_one_failure_and_resolves_when_the_window_passes() {
    let mut e = engine(vec![Rule::critical_default(std::time::Duration::from_secs(10))], vec![]);
    e.assertion(&assertion(1_000, "i1", "frontend/tls", Outcome::Pass), 1_000);
    assert!(e.evaluate_touched(1_000).is_empty());
    e.assertion(&assertion(2_000, "i1", "frontend/tls", Outcome::Fail), 2_000);
    let out = e.evaluate_touched(2_000);
    assert_eq!(states(&out), [(AlarmState::Firing, "critical-requirement-failed".to_owned())]);
    let notice = out[0].notice.as_ref().unwrap();
    assert_eq!(notice.receivers, ["hook"]);
    assert_eq!(notice.labels["severity"], "critical");
    assert_eq!(notice.labels["requirement"], "frontend/tls");
    assert_eq!(notice.annotations["last_failure"], "too old");
    // More failures while firing notify nobody again.
    e.assertion(&assertion(3_000, "i1", "frontend/tls", Outcome::Fail), 3_000);
    assert!(e.evaluate_touched(3_000).is_empty());
    assert!(e.evaluate(12_000).is_empty(), "the last failure is still in the window");
    let out = e.evaluate(13_500);
    assert_eq!(states(&out)[0].0, AlarmState::Resolved);
    assert_eq!(notices(&out), [(Status::Resolved, false)]);
    assert_eq!(out[0].notice.as_ref().unwrap().starts_at, 2_000);
    assert_eq!(e.group_count(), 0, "an idle group is forgotten");
}

#[test]
fn failure_ratio_waits_for_min_samples_and_for_the_hold() {
    let mut r = rule("ratio", json!({"failure_ratio_above": 0.5, "min_samples": 4, "window": "10s"}));
    r.hold_ms = 2_000;
    let mut e = engine(vec![r], vec![]);
    for (t, outcome) in [(0, Outcome::Fail), (100, Outcome::Fail), (200, Outcome::Fail)] {
        e.assertion(&assertion(t, "i1", "frontend/limit", outcome), t);
    }
    assert!(e.evaluate_touched(200).is_empty(), "3 samples < 4");
    e.assertion(&assertion(300, "i2", "frontend/limit", Outcome::Pass), 300);
    let out = e.evaluate_touched(300);
    assert_eq!(states(&out), [(AlarmState::Pending, "ratio".to_owned())]);
    assert!(notices(&out).is_empty(), "pending does not notify");
    assert!(e.evaluate(2_299).is_empty());
    let out = e.evaluate(2_300);
    assert_eq!(states(&out)[0].0, AlarmState::Firing);
    assert_eq!(out[0].event.as_ref().unwrap().value, 0.75);
    // Passes dilute the ratio: resolved.
    for t in 2_400..2_404 {
        e.assertion(&assertion(t, "i2", "frontend/limit", Outcome::Pass), t);
    }
    let out = e.evaluate_touched(2_404);
    assert_eq!((states(&out)[0].0, notices(&out)), (AlarmState::Resolved, vec![(Status::Resolved, false)]));
}

#[test]
fn a_pending_alarm_that_clears_never_notifies() {
    let mut r = rule("held", json!({"failures_at_least": 1, "window": "1s"}));
    r.hold_ms = 5_000;
    let mut e = engine(vec![r], vec![]);
    e.assertion(&assertion(0, "i1", "frontend/limit", Outcome::Fail), 0);
    assert_eq!(states(&e.evaluate_touched(0))[0].0, AlarmState::Pending);
    let out = e.evaluate(2_000);
    assert_eq!(states(&out)[0].0, AlarmState::Resolved);
    assert!(notices(&out).is_empty());
}

#[test]
fn outliers_fire_for_a_few_instances_failing_what_peers_pass() {
    let mut e = engine(vec![rule("outliers", json!({"outliers": true, "window": "10s"}))], vec![]);
    for i in ["a", "b", "c", "d"] {
        e.assertion(&assertion(0, i, "frontend/limit", Outcome::Pass), 0);
    }
    assert!(e.evaluate_touched(0).is_empty());
    e.assertion(&assertion(100, "d", "frontend/limit", Outcome::Fail), 100);
    let out = e.evaluate_touched(100);
    assert_eq!(states(&out)[0].0, AlarmState::Firing);
    assert!(out[0].event.as_ref().unwrap().summary.contains("1 of 4 instances"), "{:?}", out[0].event);
    // Half the fleet failing is not an outlier any more: it is a broken requirement.
    e.assertion(&assertion(200, "c", "frontend/limit", Outcome::Fail), 200);
    assert_eq!(states(&e.evaluate_touched(200))[0].0, AlarmState::Resolved);
}

/// The windows the engine holds: one per group, or one per instance for outliers.
fn windows(e: &Engine) -> usize {
    e.groups.values().map(|g| match &g.data { Data::Total(_) => 1, Data::PerInstance(map) => map.len() }).sum()
}

#[test]
fn outliers_forget_the_instances_that_went_away() {
    let mut e = engine(vec![rule("outliers", json!({"outliers": true, "window": "10s"}))], vec![]);
    // Pods churn: every 20 s a new generation of three instances replaces the last.
    for generation in 0..10 {
        let t = generation * 20_000;
        for pod in ["a", "b", "c"] {
            e.assertion(&assertion(t, &format!("{generation}-{pod}"), "frontend/limit", Outcome::Pass), t);
        }
        assert!(e.evaluate(t).is_empty());
        assert_eq!(windows(&e), 3, "generation {generation}: only the live instances keep a window");
    }
    // What fires is unchanged: one of four live instances failing.
    for pod in ["a", "b", "c", "d"] {
        e.assertion(&assertion(200_000, &format!("10-{pod}"), "frontend/limit", Outcome::Pass), 200_000);
    }
    e.assertion(&assertion(200_100, "10-d", "frontend/limit", Outcome::Fail), 200_100);
    let out = e.evaluate_touched(200_100);
    assert_eq!(states(&out), [(AlarmState::Firing, "outliers".to_owned())]);
    assert!(out[0].event.as_ref().unwrap().summary.contains("1 of 4 instances"), "{:?}", out[0].event);
    assert_eq!(states(&e.evaluate(212_000)), [(AlarmState::Resolved, "outliers".to_owned())]);
    assert_eq!((windows(&e), e.group_count()), (0, 0), "nothing is kept once every instance went quiet");
}

#[test]
fn a_burst_beyond_what_a_bucket_holds_still_resolves() {
    let mut e = engine(vec![rule("any", json!({"failures_at_least": 1, "window": "10s"}))], vec![]);
    let mut burst = assertion(1_000, "i1", "frontend/limit", Outcome::Fail);
    burst.count = i64::from(u32::MAX);
    e.assertion(&burst, 1_000);
    e.assertion(&burst, 1_000);
    assert_eq!(states(&e.evaluate_touched(1_000)), [(AlarmState::Firing, "any".to_owned())]);
    assert_eq!(states(&e.evaluate(12_000)), [(AlarmState::Resolved, "any".to_owned())], "no failure is left once the window passed");
}

#[test]
fn silence_counts_from_when_the_requirement_was_expected() {
    let mut e = engine(vec![rule("silent", json!({"silent_for": "5s"}))], vec![]);
    assert!(e.spec(&spec_version(1, 1_000), 1_000).is_empty());
    e.assertion(&assertion(2_000, "i1", "frontend/tls", Outcome::Pass), 2_000);
    e.assertion(&assertion(2_000, "i1", "frontend/limit", Outcome::Pass), 2_000);
    assert!(e.evaluate(5_999).is_empty());
    let out = e.evaluate(6_000);
    let fired: Vec<String> = out.iter().filter_map(|t| t.event.as_ref()).map(|e| e.requirement.clone()).collect();
    assert_eq!(fired, ["security/audit"], "only the requirement nobody reported");
    e.assertion(&assertion(6_500, "i1", "security/audit", Outcome::Skip), 6_500);
    let out = e.evaluate(7_000);
    let moved: Vec<(AlarmState, String)> =
        out.iter().filter_map(|t| t.event.as_ref()).map(|e| (e.state, e.requirement.clone())).collect();
    // The other two have now been silent for 5 s as well.
    assert_eq!(moved.len(), 3, "{moved:?}");
    assert!(moved.contains(&(AlarmState::Resolved, "security/audit".into())));
}

/// A version of svc expecting `requirements` of frontend alone (or deleted, if none).
fn svc_with(version: i64, ts: i64, requirements: &[&str]) -> SpecVersion {
    let listed: Vec<String> = requirements.iter().map(|r| format!("\"{r}\":{{}}")).collect();
    let document = format!(r#"{{"apiVersion":"specaudit/v1","spec":"svc","components":{{"frontend":{{"requirements":{{{}}}}}}}}}"#, listed.join(","));
    SpecVersion { deleted: requirements.is_empty(), document: if requirements.is_empty() { String::new() } else { document }, ..spec_version(version, ts) }
}

#[test]
fn silence_counts_from_when_spec_history_says_the_requirement_came_in() {
    let mut history = History::default();
    // tls since v1; limit from v2 on, gone in v3 and back in v4; audit gone since v3. A
    // repeated record of v2 changes nothing.
    history.add(&svc_with(1, 1_000, &["tls", "audit"]));
    history.add(&svc_with(2, 2_000, &["tls", "audit", "limit"]));
    history.add(&svc_with(2, 2_000, &["tls", "audit", "limit"]));
    history.add(&svc_with(3, 3_000, &["tls"]));
    history.add(&svc_with(4, 4_000, &["tls", "limit"]));
    let mut e = engine(vec![rule("silent", json!({"silent_for": "5s"}))], vec![]);
    e.history(history);
    // The compacted specs topic holds v4 alone.
    e.spec(&svc_with(4, 4_000, &["tls", "limit"]), 6_000);
    let fired = |out: Vec<Transition>| -> Vec<String> { out.iter().filter_map(|t| t.event.as_ref()).map(|e| e.requirement.clone()).collect() };
    assert_eq!(fired(e.evaluate(6_000)), ["frontend/tls"], "tls silent since v1, limit since it came back in v4");
    assert!(e.evaluate(8_999).is_empty());
    assert_eq!(fired(e.evaluate(9_000)), ["frontend/limit"]);

    let mut history = History::default();
    history.add(&svc_with(1, 1_000, &["tls"]));
    history.add(&svc_with(2, 2_000, &[]));
    history.add(&svc_with(3, 3_000, &["tls"]));
    let mut e = engine(vec![rule("silent", json!({"silent_for": "5s"}))], vec![]);
    e.history(history);
    e.spec(&svc_with(3, 3_000, &["tls"]), 7_000);
    assert!(e.evaluate(7_999).is_empty(), "a spec published again after a delete starts afresh");
    assert_eq!(e.evaluate(8_000).len(), 1);
}

#[test]
fn history_older_than_the_version_applied_is_not_used() {
    let mut history = History::default();
    history.add(&svc_with(1, 1_000, &["tls"]));
    let mut e = engine(vec![rule("silent", json!({"silent_for": "5s"}))], vec![]);
    e.history(history);
    // v2 and v3 (tls removed and added again) are not in the history read.
    e.spec(&svc_with(3, 3_000, &["tls"]), 7_000);
    assert!(e.evaluate(7_999).is_empty(), "tls counts from v3");
    assert_eq!(e.evaluate(8_000).len(), 1);
}

#[test]
fn a_clock_running_ahead_does_not_hide_a_silence() {
    let mut e = engine(vec![rule("silent", json!({"silent_for": "5s"}))], vec![]);
    e.spec(&spec_version(1, 1_000), 1_000);
    // An agent whose clock runs an hour ahead reports every requirement once, at 2 s.
    for requirement in ["frontend/tls", "frontend/limit", "security/audit"] {
        e.assertion(&assertion(3_602_000, "i1", requirement, Outcome::Pass), 2_000);
    }
    assert!(e.evaluate(6_999).is_empty());
    let fired = states(&e.evaluate(7_000));
    assert_eq!(fired.len(), 3, "silent for 5 s after it was heard of, whatever its clock said: {fired:?}");
}

#[test]
fn stale_version_needs_a_heartbeat_proving_the_agent_ignored_the_new_version() {
    let mut e = engine(vec![rule("stale", json!({"stale_version_for": "5s"}))], vec![]);
    e.spec(&spec_version(2, 10_000), 10_000);
    e.heartbeat(&hb(12_000, 1), 12_000);
    assert!(e.evaluate(16_000).is_empty(), "no heartbeat yet after the grace period");
    e.heartbeat(&hb(15_000, 1), 15_000);
    let out = e.evaluate(16_000);
    assert_eq!(states(&out), [(AlarmState::Firing, "stale".to_owned())]);
    assert_eq!(out[0].event.as_ref().unwrap().component, "frontend");
    e.heartbeat(&hb(17_000, 2), 17_000);
    assert_eq!(states(&e.evaluate(17_000))[0].0, AlarmState::Resolved);
}

#[test]
fn a_heartbeat_from_a_clock_running_ahead_counts_as_sent_when_it_arrived() {
    let mut e = engine(vec![rule("stale", json!({"stale_version_for": "5s"}))], vec![]);
    e.spec(&spec_version(2, 10_000), 10_000);
    // The agent's clock runs a minute ahead: 1 s after v2 landed proves nothing yet.
    e.heartbeat(&hb(71_000, 1), 11_000);
    assert!(e.evaluate(11_000).is_empty(), "not stale 1 s after the new version landed");
    // Its clock set right, the agent's next heartbeat is its newest: it runs v2.
    e.heartbeat(&hb(16_000, 2), 16_000);
    assert!(e.evaluate(16_000).is_empty(), "the agent moved to v2");

    // A version stamped in the future landed when it arrived.
    let mut e = engine(vec![rule("stale", json!({"stale_version_for": "5s"}))], vec![]);
    e.spec(&spec_version(2, 3_610_000), 10_000);
    e.heartbeat(&hb(15_000, 1), 15_000);
    assert_eq!(states(&e.evaluate(15_000)), [(AlarmState::Firing, "stale".to_owned())]);
}

/// A heartbeat of an agent of `component` running version `version` of svc.
fn hb_of(component: &str, ts: i64, version: i64) -> Heartbeat {
    Heartbeat { agent_id: format!("agent-{component}"), component: component.into(), instance: format!("{component}-1"), ..hb(ts, version) }
}

#[test]
fn stale_version_rules_select_agents_by_the_requirements_their_component_has() {
    let matching = |name: &str, severity: &str| {
        let selector = json!({"severity": severity}).as_object().unwrap().clone();
        let when = json!({"stale_version_for": "5s"}).as_object().unwrap().clone();
        Rule::from_config(&RuleConfig { name: name.into(), selector, when, ..RuleConfig::default() }).unwrap()
    };
    let rules = vec![
        matching("critical", "critical"),
        matching("major", "major"),
        matching("minor", "minor"),
        rule("any", json!({"stale_version_for": "5s"})),
    ];
    let mut e = engine(rules, vec![]);
    e.spec(&spec_version(2, 10_000), 10_000);
    // All on v1: frontend has tls (critical) and limit (major), frontend.cache inherits
    // them, security has audit (major), billing has no requirement in the spec.
    for component in ["frontend", "frontend.cache", "security", "billing"] {
        e.heartbeat(&hb_of(component, 15_000, 1), 15_000);
    }
    let mut fired: Vec<(String, String, Severity)> = e
        .evaluate(15_000)
        .into_iter()
        .filter_map(|t| t.event)
        .filter(|e| e.state == AlarmState::Firing)
        .map(|e| (e.rule, e.component, e.severity))
        .collect();
    fired.sort();
    let expected = [
        ("any", "billing", Severity::Major),
        ("any", "frontend", Severity::Critical),
        ("any", "frontend.cache", Severity::Critical),
        ("any", "security", Severity::Major),
        ("critical", "frontend", Severity::Critical),
        ("critical", "frontend.cache", Severity::Critical),
        ("major", "frontend", Severity::Major),
        ("major", "frontend.cache", Severity::Major),
        ("major", "security", Severity::Major),
    ];
    let expected: Vec<(String, String, Severity)> = expected.iter().map(|(r, c, s)| ((*r).to_owned(), (*c).to_owned(), *s)).collect();
    // No component has a minor requirement: the minor rule selects no agent.
    assert_eq!(fired, expected);
}

#[test]
fn spec_policies_are_rules_of_their_spec() {
    let mut e = engine(vec![], vec![]);
    e.spec(&spec_version(1, 0), 0);
    e.assertion(&assertion(100, "i1", "frontend/limit", Outcome::Fail), 100);
    assert!(e.evaluate_touched(100).is_empty());
    e.assertion(&assertion(200, "i2", "frontend/limit", Outcome::Fail), 200);
    assert_eq!(states(&e.evaluate_touched(200)), [(AlarmState::Firing, "spec/svc/spec-limit".to_owned())]);
}

#[test]
fn a_waiver_suppresses_until_it_expires_and_is_logged() {
    let waiver = Waiver::from_config(
        0,
        &WaiverConfig {
            selector: json!({"requirement": "frontend/*"}).as_object().unwrap().clone(),
            starts_at: Some("1970-01-01T00:00:00Z".into()),
            ends_at: "1970-01-01T00:00:05Z".into(),
            author: "alice".into(),
            reason: "known issue".into(),
            rule: None,
        },
    )
    .unwrap();
    let mut e = engine(vec![rule("any", json!({"failures_at_least": 1, "window": "60s"}))], vec![waiver]);
    e.assertion(&assertion(1_000, "i1", "frontend/limit", Outcome::Fail), 1_000);
    let out = e.evaluate_touched(1_000);
    assert_eq!(states(&out)[0].0, AlarmState::Waived);
    assert!(notices(&out).is_empty());
    let event = out[0].event.as_ref().unwrap();
    assert_eq!(event.labels["waiver_author"], "alice");
    assert!(event.summary.starts_with("waived by alice until 1970-01-01T00:00:05.000Z: known issue"), "{}", event.summary);
    assert!(e.evaluate(4_999).is_empty());
    let out = e.evaluate(5_000);
    assert_eq!((states(&out)[0].0, notices(&out)), (AlarmState::Firing, vec![(Status::Firing, false)]));
}

#[test]
fn recovery_from_the_log_neither_renotifies_nor_forgets() {
    let r = || rule("any", json!({"failures_at_least": 1, "window": "60s"}));
    let mut first = engine(vec![r()], vec![]);
    first.assertion(&assertion(1_000, "i1", "frontend/limit", Outcome::Fail), 1_000);
    let log: Vec<AlarmEvent> = first.evaluate_touched(1_000).into_iter().filter_map(|t| t.event).collect();
    assert_eq!(log[0].state, AlarmState::Firing);

    // A new process: the log and a replay of the window.
    let mut second = engine(vec![r()], vec![]);
    second.recover(log.clone(), 2_000);
    second.assertion(&assertion(1_000, "i1", "frontend/limit", Outcome::Fail), 2_000);
    assert!(second.evaluate_touched(2_000).is_empty(), "no second firing notice");
    assert!(second.evaluate(30_000).is_empty());
    assert_eq!(notices(&second.evaluate(61_000)), [(Status::Firing, true)], "the repeat is still due on time");
    let out = second.evaluate(63_000);
    assert_eq!(notices(&out), [(Status::Resolved, false)], "and it still resolves");

    // Recovered, but nothing left in the replayed window: resolved, not lost.
    let mut third = engine(vec![r()], vec![]);
    third.recover(log, 100_000);
    let out = third.evaluate(100_000);
    assert_eq!((states(&out)[0].0, notices(&out)), (AlarmState::Resolved, vec![(Status::Resolved, false)]));
}

/// The shards of `count` owning exactly the groups of `fingerprints` (a copy's share).
fn shards_of(count: u32, fingerprints: &[&str]) -> Shards {
    Shards { count, owned: fingerprints.iter().map(|fp| shard_of(fp, count)).collect() }
}

/// A shard count at which the two fingerprints fall in different shards.
fn splitting(a: &str, b: &str) -> u32 {
    (2..64).find(|&n| shard_of(a, n) != shard_of(b, n)).expect("two fingerprints share every shard count")
}

#[test]
fn a_rebalance_keeps_the_alarms_of_owned_shards_and_forgets_the_others_silently() {
    let r = || {
        let when = json!({"failures_at_least": 1, "window": "60s"}).as_object().unwrap().clone();
        Rule::from_config(&RuleConfig { name: "any".into(), when, group_by: Some(vec!["instance".into()]), ..RuleConfig::default() })
            .unwrap()
    };
    let mut first = engine(vec![r()], vec![]);
    first.assertion(&assertion(1_000, "i1", "frontend/limit", Outcome::Fail), 1_000);
    first.assertion(&assertion(1_000, "i2", "frontend/limit", Outcome::Fail), 1_000);
    let log: Vec<AlarmEvent> = first.evaluate_touched(1_000).into_iter().filter_map(|t| t.event).collect();
    assert_eq!(log.len(), 2);
    let group_of = |instance: &str| log.iter().find(|e| e.labels["instance"] == instance).map(|e| e.fingerprint.clone()).unwrap();
    let (i1, i2) = (group_of("i1"), group_of("i2"));

    // The copy now owning i1's shard only: i1 replays and stays firing silently; i2's
    // alarm belongs to another copy and is neither notified nor resolved here.
    let mut second = engine(vec![r()], vec![]);
    second.reassigned(log, shards_of(splitting(&i1, &i2), &[&i1]), 2_000);
    second.assertion(&assertion(1_000, "i1", "frontend/limit", Outcome::Fail), 2_000);
    second.assertion(&assertion(1_000, "i2", "frontend/limit", Outcome::Fail), 2_000);
    assert!(second.evaluate_touched(2_000).is_empty());
    assert_eq!(second.group_count(), 1, "no window for the other copy's group");
    assert!(second.evaluate(30_000).is_empty(), "nothing for the other copy's alarm");
    assert_eq!(second.alarm_counts(), (0, 1, 0));
    assert_eq!(notices(&second.evaluate(61_000)), [(Status::Firing, true)], "the owned alarm's repeat is due on time");
    assert_eq!(notices(&second.evaluate(63_000)), [(Status::Resolved, false)], "the owned alarm resolves once");
}

#[test]
fn two_copies_reading_the_same_stream_split_every_group_whole_and_alarm_once() {
    // A ratio over a component's instances, and silence per requirement: groups spanning
    // instances, which no split of the instances between copies could judge.
    let ratio = || rule("ratio", json!({"failure_ratio_above": 0.4, "min_samples": 4, "window": "60s"}));
    let silent = || rule("silent", json!({"silent_for": "5s"}));
    let mut copies = [engine(vec![ratio(), silent()], vec![]), engine(vec![ratio(), silent()], vec![])];
    let count = 8;
    for (i, copy) in copies.iter_mut().enumerate() {
        let owned = (0..count as i32).filter(|s| (*s % 2) as usize == i).collect();
        copy.reassigned(Vec::new(), Shards { count, owned }, 0);
        assert!(copy.spec(&spec_version(1, 0), 0).is_empty());
    }
    let mut fired: Vec<(usize, String, String)> = Vec::new();
    let feed = [("i1", Outcome::Pass), ("i2", Outcome::Fail), ("i3", Outcome::Pass), ("i4", Outcome::Fail), ("i5", Outcome::Fail)];
    for (n, (instance, outcome)) in feed.into_iter().enumerate() {
        let ts = 1_000 + n as i64;
        for (i, copy) in copies.iter_mut().enumerate() {
            for requirement in ["frontend/limit", "frontend/tls"] {
                copy.assertion(&assertion(ts, instance, requirement, if requirement == "frontend/tls" { Outcome::Pass } else { outcome }), ts);
            }
            for event in copy.evaluate_touched(ts).into_iter().filter_map(|t| t.event) {
                fired.push((i, event.rule.clone(), format!("{:?}", event.state)));
            }
        }
    }
    let ratio_firing: Vec<_> = fired.iter().filter(|(_, rule, state)| rule.ends_with("ratio") && state == "Firing").collect();
    assert_eq!(ratio_firing.len(), 1, "one copy, seeing all five instances (3 of 5 failing), fires: {fired:?}");
    for copy in &mut copies {
        copy.evaluate(1_010);
    }
    let total_groups: usize = copies.iter().map(Engine::group_count).sum();
    // ratio × {limit, tls}, and the spec's own policy on limit.
    assert_eq!(total_groups, 3, "each (rule, requirement) group lives in exactly one copy");

    // security/audit never reported: exactly one copy finds it silent.
    let silent: Vec<String> = copies
        .iter_mut()
        .flat_map(|c| c.evaluate(6_000))
        .filter_map(|t| t.event)
        .filter(|e| e.rule.ends_with("silent") && e.state == AlarmState::Firing)
        .map(|e| e.requirement)
        .collect();
    assert_eq!(silent, ["security/audit"], "one alarm, from one copy");
}
