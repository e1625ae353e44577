//! What a rule, a route or a waiver applies to: spec, component prefix, requirement glob,
//! severities and labels. One parser serves the config file and the `match:` of specs.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use specaudit_core::record::Severity;

use crate::glob::Glob;

/// The facts a selector looks at: those of an assertion, or the labels of an alarm.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub spec: &'a str,
    pub component: &'a str,
    pub requirement: &'a str,
    pub severity: Severity,
    pub labels: &'a BTreeMap<String, String>,
}

/// All given criteria must hold; an empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    pub spec: Option<String>,
    /// A component path prefix: `frontend` covers `frontend` and `frontend.throttle`.
    pub component: Option<String>,
    pub requirement: Option<Glob>,
    pub severity: Vec<Severity>,
    pub labels: BTreeMap<String, String>,
}

/// The keys a `match` table may hold.
pub const SELECTOR_KEYS: &[&str] = &["spec", "component", "requirement", "severity", "labels"];

impl Selector {
    /// Parses a `match` table; `Err` is a sentence naming the offending key.
    pub fn parse(map: &Map<String, Value>) -> Result<Selector, String> {
        let mut selector = Selector::default();
        for (key, value) in map {
            match key.as_str() {
                "spec" => selector.spec = Some(text(key, value)?),
                "component" => selector.component = Some(text(key, value)?),
                "requirement" => selector.requirement = Some(Glob::new(&text(key, value)?)),
                "severity" => {
                    let names = match value {
                        Value::Array(items) => items.iter().map(|v| text(key, v)).collect::<Result<Vec<_>, _>>()?,
                        other => vec![text(key, other)?],
                    };
                    selector.severity = names.iter().map(|n| severity(n)).collect::<Result<_, _>>()?;
                }
                "labels" => {
                    let Value::Object(labels) = value else {
                        return Err("match.labels must be a table of label = value".into());
                    };
                    for (name, v) in labels {
                        selector.labels.insert(name.clone(), text(&format!("labels.{name}"), v)?);
                    }
                }
                other => {
                    return Err(format!("unknown match key {other:?} (expected one of {})", SELECTOR_KEYS.join(", ")))
                }
            }
        }
        Ok(selector)
    }

    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        self.spec.as_deref().is_none_or(|s| s == subject.spec)
            && self.component.as_deref().is_none_or(|prefix| component_under(subject.component, prefix))
            && self.requirement.as_ref().is_none_or(|g| g.matches(subject.requirement))
            && (self.severity.is_empty() || self.severity.contains(&subject.severity))
            && self.labels.iter().all(|(k, v)| subject.labels.get(k) == Some(v))
    }
}

/// Whether `component` is `prefix` or below it in the dot-separated path.
pub fn component_under(component: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || component == prefix
        || (component.starts_with(prefix) && component.as_bytes().get(prefix.len()) == Some(&b'.'))
}

pub fn severity(name: &str) -> Result<Severity, String> {
    match name {
        "critical" => Ok(Severity::Critical),
        "major" => Ok(Severity::Major),
        "minor" => Ok(Severity::Minor),
        "info" => Ok(Severity::Info),
        other => Err(format!("unknown severity {other:?} (expected critical, major, minor or info)")),
    }
}

fn text(key: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("match.{key} must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subject<'a>(labels: &'a BTreeMap<String, String>) -> Subject<'a> {
        Subject {
            spec: "compute-service",
            component: "frontend.throttle",
            requirement: "frontend.throttle/limit-set",
            severity: Severity::Major,
            labels,
        }
    }

    fn parse(value: Value) -> Result<Selector, String> {
        Selector::parse(value.as_object().unwrap())
    }

    #[test]
    fn every_criterion_must_hold() {
        let labels = BTreeMap::from([("region".to_owned(), "eu".to_owned())]);
        let s = subject(&labels);
        assert!(parse(json!({})).unwrap().matches(&s));
        assert!(parse(json!({"spec": "compute-service", "component": "frontend", "requirement": "*/limit-*",
            "severity": ["major", "critical"], "labels": {"region": "eu"}})).unwrap().matches(&s));
        assert!(!parse(json!({"component": "front"})).unwrap().matches(&s));
        assert!(!parse(json!({"severity": "critical"})).unwrap().matches(&s));
        assert!(!parse(json!({"labels": {"region": "us"}})).unwrap().matches(&s));
        assert!(!parse(json!({"spec": "other"})).unwrap().matches(&s));
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse(json!({"severity": "urgent"})).unwrap_err().contains("urgent"));
        assert!(parse(json!({"componet": "x"})).unwrap_err().contains("componet"));
        assert!(parse(json!({"labels": "x"})).unwrap_err().contains("labels"));
    }

    #[test]
    fn component_prefixes_follow_path_segments() {
        assert!(component_under("frontend.throttle", "frontend"));
        assert!(component_under("frontend", "frontend"));
        assert!(!component_under("frontendx", "frontend"));
        assert!(component_under("anything", ""));
    }
}
