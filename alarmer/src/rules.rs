//! Alarm rules: what to watch (selector), how to group it, the condition, its window and
//! hold. Rules come from the config file (checked at start: a bad one stops the alarmer)
//! and from the `alarms:` policies of specs (checked on arrival: a bad one is skipped).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use specaudit_core::record::Severity;
use specaudit_core::spec::{hold_ms, AlarmPolicy};

use crate::conditions::{Condition, Judge};
use crate::selector::{self, Selector};

/// The window of failure conditions when a rule does not give one.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// What a rule's groups are keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupKey {
    Spec,
    /// The reporting component (for `silent_for`: the component defining the requirement).
    Component,
    Requirement,
    Instance,
    /// The value of an assertion label.
    Label(String),
}

impl GroupKey {
    fn parse(text: &str) -> Result<GroupKey, String> {
        match text {
            "spec" => Ok(GroupKey::Spec),
            "component" => Ok(GroupKey::Component),
            "requirement" => Ok(GroupKey::Requirement),
            "instance" => Ok(GroupKey::Instance),
            other => match other.strip_prefix("labels.") {
                Some(name) if !name.is_empty() => Ok(GroupKey::Label(name.to_owned())),
                _ => Err(format!(
                    "unknown group_by key {other:?} (expected spec, component, requirement, instance or labels.NAME)"
                )),
            },
        }
    }

    /// The alert label this key becomes.
    pub fn label(&self) -> &str {
        match self {
            GroupKey::Spec => "spec",
            GroupKey::Component => "component",
            GroupKey::Requirement => "requirement",
            GroupKey::Instance => "instance",
            GroupKey::Label(name) => name,
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique: the config name, or `spec/<spec>/<name or index>` for a spec's policy.
    pub id: String,
    /// The `alertname` label.
    pub name: String,
    pub selector: Selector,
    pub group_by: Vec<GroupKey>,
    pub condition: Condition,
    /// Span of the failure window, in ms.
    pub window_ms: i64,
    /// `for`: how long the condition must hold before firing, in ms.
    pub hold_ms: i64,
    /// Overrides the severity of the assertions.
    pub severity: Option<Severity>,
    /// Added to the alert's labels (routing, team ownership).
    pub labels: BTreeMap<String, String>,
}

/// A rule as written in the config file (`[[rules]]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(rename = "match", default)]
    pub selector: Map<String, Value>,
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    pub when: Map<String, Value>,
    #[serde(rename = "for", default)]
    pub hold: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A rule that cannot be used, naming the rule and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rule {rule:?}: {problem}")]
pub struct RuleError {
    pub rule: String,
    pub problem: String,
}

impl Rule {
    /// Validates a rule of the config file.
    pub fn from_config(config: &RuleConfig) -> Result<Rule, RuleError> {
        let err = |problem: String| RuleError { rule: config.name.clone(), problem };
        if config.name.is_empty() {
            return Err(err("name must not be empty".into()));
        }
        let severity = config.severity.as_deref().map(selector::severity).transpose().map_err(err)?;
        Rule::build(
            config.name.clone(),
            config.name.clone(),
            &config.selector,
            config.group_by.as_deref(),
            &config.when,
            config.hold.as_deref(),
            severity,
            config.labels.clone(),
        )
        .map_err(err)
    }

    /// Validates the `index`th alarm policy of spec `spec`; it selects only that spec.
    pub fn from_policy(spec: &str, index: usize, policy: &AlarmPolicy) -> Result<Rule, RuleError> {
        let name = policy.name.clone().unwrap_or_else(|| format!("{spec}-alarm-{index}"));
        let id = format!("spec/{spec}/{}", policy.name.clone().unwrap_or_else(|| index.to_string()));
        let mut selector = policy.selector.clone();
        selector.insert("spec".into(), Value::String(spec.to_owned()));
        Rule::build(id.clone(), name, &selector, None, &policy.when, policy.hold.as_deref(), None, BTreeMap::new())
            .map_err(|problem| RuleError { rule: id, problem })
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        id: String,
        name: String,
        selector: &Map<String, Value>,
        group_by: Option<&[String]>,
        when: &Map<String, Value>,
        hold: Option<&str>,
        severity: Option<Severity>,
        labels: BTreeMap<String, String>,
    ) -> Result<Rule, String> {
        let selector = Selector::parse(selector)?;
        let (condition, window) = Condition::parse(when)?;
        let group_by = match group_by {
            Some(keys) => keys.iter().map(|k| GroupKey::parse(k)).collect::<Result<Vec<_>, _>>()?,
            None => condition.default_group_by(),
        };
        condition.check_group_by(&group_by)?;
        let hold_ms = hold.map(hold_ms).transpose()?.unwrap_or(0);
        let window_ms = window.unwrap_or(DEFAULT_WINDOW.as_millis() as i64);
        Ok(Rule { id, name, selector, group_by, condition, window_ms, hold_ms, severity, labels })
    }

    /// The built-in rule that makes a critical requirement alarm on a single failure.
    pub fn critical_default(window: Duration) -> Rule {
        Rule {
            id: "critical-requirement-failed".into(),
            name: "critical-requirement-failed".into(),
            selector: Selector { severity: vec![Severity::Critical], ..Selector::default() },
            group_by: vec![GroupKey::Spec, GroupKey::Component, GroupKey::Requirement],
            condition: Condition::FailuresAtLeast(1),
            window_ms: window.as_millis() as i64,
            hold_ms: 0,
            severity: None,
            labels: BTreeMap::new(),
        }
    }

    /// How far back this rule needs to see to judge the present.
    pub fn lookback_ms(&self) -> i64 {
        match self.condition {
            Condition::SilentFor(d) | Condition::StaleVersionFor(d) => d,
            _ => self.window_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(name: &str, when: Value) -> RuleConfig {
        RuleConfig { name: name.into(), when: when.as_object().unwrap().clone(), ..RuleConfig::default() }
    }

    #[test]
    fn a_valid_rule_has_its_defaults() {
        let rule = Rule::from_config(&config("r", json!({"failures_at_least": 3}))).unwrap();
        assert_eq!(rule.condition, Condition::FailuresAtLeast(3));
        assert_eq!(rule.window_ms, 300_000);
        assert_eq!(rule.group_by, [GroupKey::Spec, GroupKey::Component, GroupKey::Requirement]);
        let mut c = config("r", json!({"failure_ratio_above": 0.1, "min_samples": 20, "window": "1m"}));
        c.hold = Some("30s".into());
        c.group_by = Some(vec!["component".into(), "labels.region".into()]);
        let rule = Rule::from_config(&c).unwrap();
        assert_eq!(rule.condition, Condition::FailureRatioAbove { ratio: 0.1, min_samples: 20 });
        assert_eq!((rule.window_ms, rule.hold_ms), (60_000, 30_000));
        assert_eq!(rule.group_by[1], GroupKey::Label("region".into()));
    }

    #[test]
    fn every_mistake_names_the_rule_and_the_problem() {
        let e = Rule::from_config(&config("typo", json!({"failures_atleast": 1}))).unwrap_err();
        assert_eq!(e.rule, "typo");
        assert!(e.to_string().contains("unknown condition \"failures_atleast\""), "{e}");
        let mut c = config("slow", json!({"failures_at_least": 1}));
        c.hold = Some("5 parsecs".into());
        let e = Rule::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("\"slow\"") && e.contains("for = \"5 parsecs\""), "{e}");
        let e = Rule::from_config(&config("w", json!({"silent_for": 5}))).unwrap_err().to_string();
        assert!(e.contains("silent_for must be a duration"), "{e}");
        let e = Rule::from_config(&config("two", json!({"failures_at_least": 1, "silent_for": "1m"}))).unwrap_err();
        assert!(e.to_string().contains("exactly one condition"), "{e}");
        let mut c = config("g", json!({"outliers": true}));
        c.group_by = Some(vec!["instance".into()]);
        assert!(Rule::from_config(&c).unwrap_err().to_string().contains("instance"));
        let mut c = config("s", json!({"failures_at_least": 1}));
        c.severity = Some("urgent".into());
        assert!(Rule::from_config(&c).unwrap_err().to_string().contains("urgent"));
    }

    #[test]
    fn zero_durations_are_refused_in_config_and_in_specs() {
        for key in ["silent_for", "stale_version_for"] {
            let e = Rule::from_config(&config("zero", json!({key: "0s"}))).unwrap_err().to_string();
            assert_eq!(e, format!("rule \"zero\": {key} must be longer than zero"));
            let policy: AlarmPolicy = serde_json::from_value(json!({"when": {key: "0s"}})).unwrap();
            let e = Rule::from_policy("svc", 0, &policy).unwrap_err().to_string();
            assert_eq!(e, format!("rule \"spec/svc/0\": {key} must be longer than zero"));
        }
    }

    #[test]
    fn spec_policies_select_their_own_spec() {
        let policy: AlarmPolicy =
            serde_json::from_value(json!({"match": {"severity": "major"}, "when": {"failures_at_least": 2}, "for": "10s"}))
                .unwrap();
        let rule = Rule::from_policy("compute-service", 0, &policy).unwrap();
        assert_eq!(rule.id, "spec/compute-service/0");
        assert_eq!(rule.selector.spec.as_deref(), Some("compute-service"));
        assert_eq!(rule.hold_ms, 10_000);
    }
}
