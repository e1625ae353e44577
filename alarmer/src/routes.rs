//! Routing: which receivers hear about an alarm, by its severity, spec and labels.
//! Routes are tried in order; the first that matches decides, unless it says `continue`.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::selector::{Selector, Subject};

/// A route as written in the config file (`[[routes]]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(rename = "match", default)]
    pub selector: Map<String, Value>,
    pub receivers: Vec<String>,
    /// Keep trying the next routes after this one matched.
    #[serde(rename = "continue", default)]
    pub keep_going: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub selector: Selector,
    pub receivers: Vec<String>,
    pub keep_going: bool,
}

/// The routes and, per receiver, how often a firing alarm is sent again.
#[derive(Debug, Clone, Default)]
pub struct Router {
    pub routes: Vec<Route>,
    /// Receiver name → repeat interval in ms.
    pub repeat_ms: HashMap<String, i64>,
    /// Receivers for which sending a firing alarm again is harmless (Alertmanager
    /// deduplicates by labels): refreshed right after a restart.
    pub idempotent: HashSet<String>,
}

impl Router {
    /// The receivers for an alarm, each once, in route order.
    pub fn receivers_for(&self, subject: &Subject<'_>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for route in &self.routes {
            if route.selector.matches(subject) {
                for r in &route.receivers {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
                if !route.keep_going {
                    break;
                }
            }
        }
        out
    }

    pub fn repeat_ms(&self, receiver: &str) -> i64 {
        self.repeat_ms.get(receiver).copied().unwrap_or(4 * 3_600_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use specaudit_core::record::Severity;
    use std::collections::BTreeMap;

    fn route(selector: Value, receivers: &[&str], keep_going: bool) -> Route {
        Route {
            selector: Selector::parse(selector.as_object().unwrap()).unwrap(),
            receivers: receivers.iter().map(|r| r.to_string()).collect(),
            keep_going,
        }
    }

    #[test]
    fn first_match_wins_unless_it_continues() {
        let router = Router {
            routes: vec![
                route(json!({"severity": "critical"}), &["pager", "am"], true),
                route(json!({"spec": "billing"}), &["billing-hook"], false),
                route(json!({}), &["am"], false),
            ],
            repeat_ms: HashMap::new(),
            idempotent: HashSet::new(),
        };
        let labels = BTreeMap::new();
        let subject = |spec, severity| Subject { spec, component: "c", requirement: "c/r", severity, labels: &labels };
        assert_eq!(router.receivers_for(&subject("billing", Severity::Critical)), ["pager", "am", "billing-hook"]);
        assert_eq!(router.receivers_for(&subject("compute", Severity::Critical)), ["pager", "am"]);
        assert_eq!(router.receivers_for(&subject("compute", Severity::Minor)), ["am"]);
        assert_eq!(router.repeat_ms("unknown"), 14_400_000);
    }
}
