//! The alarmer's configuration (`deploy/alarmer.toml` documents every key) and its
//! validation into a [`Plan`]: a bad rule, route, receiver or waiver stops the alarmer at
//! start with a message that names it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use specaudit_core::config::{KafkaConfig, TelemetryConfig};

use crate::engine::EngineConfig;
use crate::notify::deliver::{Receiver, ReceiverKind};
use crate::routes::{Route, RouteConfig, Router};
use crate::rules::{Rule, RuleConfig, RuleError};
use crate::selector::Selector;
use crate::waivers::{Waiver, WaiverConfig, WaiverError};

/// Everything `specaudit-alarmer` reads from its config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmerConfig {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub alarmer: AlarmerSection,
    #[serde(default)]
    pub notify: NotifySection,
    #[serde(default)]
    pub receivers: BTreeMap<String, ReceiverConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub waivers: Vec<WaiverConfig>,
}

/// Evaluation settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmerSection {
    /// Kafka consumer group; copies with the same group share the assertion partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// How often every group is evaluated (silence, windows emptying, holds, repeats).
    #[serde(default = "default_tick", with = "humantime_serde")]
    pub tick: Duration,
    /// Take the `alarms:` policies of specs as rules.
    #[serde(default = "yes")]
    pub spec_rules: bool,
    /// A critical requirement alarms on a single failure (rule `critical-requirement-failed`).
    #[serde(default = "yes")]
    pub critical_single_failure: bool,
    /// The window of that rule: it resolves this long after the last failure.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub critical_window: Duration,
    /// An agent without a heartbeat for this long no longer counts for stale versions.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub agent_timeout: Duration,
    /// At least this much of the topics is replayed at start, so rules that specs bring
    /// later find their window filled.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub min_lookback: Duration,
    /// How long a SIGTERM waits for notifications in flight.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

/// How notifications are sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// First wait before retrying a failed delivery; doubles up to `retry_max`.
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// A delivery still failing after this long is given up (and counted as failed).
    #[serde(default = "default_give_up", with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Link put in notifications (`externalURL`, `generatorURL`), e.g. the reporter's UI.
    #[serde(default)]
    pub external_url: String,
}

/// A receiver (`[receivers.NAME]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ReceiverConfig {
    Webhook(WebhookConfig),
    Alertmanager(AlertmanagerConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Key of the HMAC-SHA256 signature header; set it from the environment in production:
    /// `SPECAUDIT__RECEIVERS__NAME__SECRET`.
    pub secret: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// A firing alarm is sent again this often.
    #[serde(default = "default_repeat", with = "humantime_serde")]
    pub repeat_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL; alerts go to `<url>/api/v2/alerts`.
    pub url: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Firing alerts are pushed again this often (Alertmanager deduplicates them); each
    /// push is valid for four intervals, so Alertmanager resolves them by itself if the
    /// alarmer is gone.
    #[serde(default = "default_resend", with = "humantime_serde")]
    pub resend_interval: Duration,
}

fn default_group() -> String {
    "specaudit-alarmer".into()
}
fn default_tick() -> Duration {
    Duration::from_millis(250)
}
fn yes() -> bool {
    true
}
fn default_window() -> Duration {
    Duration::from_secs(300)
}
fn default_drain() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_initial() -> Duration {
    Duration::from_millis(200)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}
fn default_give_up() -> Duration {
    Duration::from_secs(3600)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_repeat() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_resend() -> Duration {
    Duration::from_secs(60)
}

impl Default for AlarmerSection {
    fn default() -> Self {
        AlarmerSection {
            group_id: default_group(),
            tick: default_tick(),
            spec_rules: true,
            critical_single_failure: true,
            critical_window: default_window(),
            agent_timeout: default_window(),
            min_lookback: default_window(),
            drain_timeout: default_drain(),
        }
    }
}

impl Default for NotifySection {
    fn default() -> Self {
        NotifySection {
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            give_up_after: default_give_up(),
            external_url: String::new(),
        }
    }
}

/// Why the configuration cannot run; each names the rule, route, receiver or waiver.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("two rules are named {0:?}; rule names must be unique")]
    DuplicateRule(String),
    #[error("route {index}: unknown receiver {receiver:?} (configured receivers: {known})")]
    UnknownReceiver { index: usize, receiver: String, known: String },
    #[error("route {index}: {problem}")]
    Route { index: usize, problem: String },
    #[error("receiver {name:?}: {problem}")]
    Receiver { name: String, problem: String },
    #[error(transparent)]
    Waiver(#[from] WaiverError),
    #[error("waiver {index}: unknown rule {rule:?}")]
    WaiverRule { index: usize, rule: String },
    #[error("{key} must be longer than zero")]
    ZeroDuration { key: &'static str },
}

/// A validated configuration, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub engine: EngineConfig,
    pub receivers: HashMap<String, Receiver>,
}

impl AlarmerConfig {
    /// Checks every rule, route, receiver and waiver.
    pub fn plan(&self) -> Result<Plan, PlanError> {
        // A zero tick cannot drive the evaluation timer; a zero first retry never backs off.
        for (key, value) in [("alarmer.tick", self.alarmer.tick), ("notify.retry_initial", self.notify.retry_initial)] {
            if value.is_zero() {
                return Err(PlanError::ZeroDuration { key });
            }
        }
        let mut rules = Vec::new();
        let mut names = HashSet::new();
        for config in &self.rules {
            let rule = Rule::from_config(config)?;
            if !names.insert(rule.name.clone()) {
                return Err(PlanError::DuplicateRule(rule.name));
            }
            rules.push(rule);
        }
        if self.alarmer.critical_single_failure {
            rules.push(Rule::critical_default(self.alarmer.critical_window));
        }
        let mut receivers = HashMap::new();
        let mut router = Router::default();
        for (name, config) in &self.receivers {
            let receiver = Receiver::new(name, config, &self.notify)
                .map_err(|problem| PlanError::Receiver { name: name.clone(), problem })?;
            router.repeat_ms.insert(name.clone(), receiver.repeat.as_millis() as i64);
            if matches!(receiver.kind, ReceiverKind::Alertmanager { .. }) {
                router.idempotent.insert(name.clone());
            }
            receivers.insert(name.clone(), receiver);
        }
        for (index, route) in self.routes.iter().enumerate() {
            let selector =
                Selector::parse(&route.selector).map_err(|problem| PlanError::Route { index, problem })?;
            if let Some(unknown) = route.receivers.iter().find(|r| !receivers.contains_key(*r)) {
                let mut known: Vec<&str> = receivers.keys().map(String::as_str).collect();
                known.sort();
                return Err(PlanError::UnknownReceiver {
                    index,
                    receiver: unknown.clone(),
                    known: if known.is_empty() { "none".into() } else { known.join(", ") },
                });
            }
            router.routes.push(Route { selector, receivers: route.receivers.clone(), keep_going: route.keep_going });
        }
        let mut waivers = Vec::new();
        for (index, config) in self.waivers.iter().enumerate() {
            let waiver = Waiver::from_config(index, config)?;
            if let Some(rule) = &waiver.rule {
                if !names.contains(rule) && rule != "critical-requirement-failed" {
                    return Err(PlanError::WaiverRule { index, rule: rule.clone() });
                }
            }
            waivers.push(waiver);
        }
        Ok(Plan {
            engine: EngineConfig {
                rules,
                router,
                waivers,
                spec_rules: self.alarmer.spec_rules,
                agent_timeout_ms: self.alarmer.agent_timeout.as_millis() as i64,
            },
            receivers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(text: &str) -> Result<AlarmerConfig, String> {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        specaudit_core::config::load_with_env(Some(f.path()), Vec::new()).map_err(|e| e.to_string())
    }

    fn plan_error(text: &str) -> String {
        load(text).unwrap().plan().unwrap_err().to_string()
    }

    #[test]
    fn the_documented_example_config_loads_and_plans() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/alarmer.toml"));
        let config: AlarmerConfig = specaudit_core::config::load_with_env(Some(path), Vec::new()).unwrap();
        let plan = config.plan().unwrap();
        assert!(plan.engine.rules.len() >= 5, "the example shows every condition");
        assert!(plan.receivers.contains_key("alertmanager"));
        assert_eq!(config.alarmer.group_id, "specaudit-alarmer");
    }

    #[test]
    fn an_unknown_condition_is_named_with_its_rule() {
        let e = plan_error("[[rules]]\nname = \"fe-failing\"\nwhen = { failures_atleast = 1 }\n");
        assert!(e.contains("rule \"fe-failing\"") && e.contains("unknown condition \"failures_atleast\""), "{e}");
    }

    #[test]
    fn a_bad_duration_is_named_with_its_rule() {
        let e = plan_error("[[rules]]\nname = \"quiet\"\nwhen = { silent_for = \"ten minutes\" }\n");
        assert!(e.contains("rule \"quiet\"") && e.contains("silent_for = \"ten minutes\""), "{e}");
        let e = plan_error("[[rules]]\nname = \"held\"\nwhen = { failures_at_least = 1 }\nfor = \"5 mins!\"\n");
        assert!(e.contains("rule \"held\"") && e.contains("for = \"5 mins!\""), "{e}");
    }

    #[test]
    fn an_unknown_receiver_is_named_with_its_route() {
        let e = plan_error(
            "[receivers.am]\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9093\"\n[[routes]]\nreceivers = [\"am\", \"pagr\"]\n",
        );
        assert_eq!(e, "route 0: unknown receiver \"pagr\" (configured receivers: am)");
    }

    #[test]
    fn receivers_are_checked() {
        let e = plan_error("[receivers.hook]\ntype = \"webhook\"\nurl = \"not a url\"\nsecret = \"s\"\n");
        assert!(e.starts_with("receiver \"hook\"") && e.contains("not a url"), "{e}");
        let e = load("[receivers.hook]\ntype = \"pager\"\nurl = \"http://x\"\n").unwrap_err();
        assert!(e.contains("pager"), "{e}");
        let e = load("[receivers.hook]\ntype = \"webhook\"\nurl = \"http://x\"\nsecret = \"s\"\ntimeout = \"soon\"\n").unwrap_err();
        assert!(e.contains("soon"), "{e}");
    }

    #[test]
    fn zero_durations_that_drive_timers_are_refused_by_key() {
        assert_eq!(plan_error("[alarmer]\ntick = \"0s\"\n"), "alarmer.tick must be longer than zero");
        assert_eq!(plan_error("[notify]\nretry_initial = \"0ms\"\n"), "notify.retry_initial must be longer than zero");
    }

    #[test]
    fn duplicate_rules_and_waivers_of_unknown_rules_are_refused() {
        let rule = "[[rules]]\nname = \"a\"\nwhen = { failures_at_least = 1 }\n";
        assert!(plan_error(&format!("{rule}{rule}")).contains("two rules are named \"a\""));
        let e = plan_error("[[waivers]]\nrule = \"nope\"\nends_at = \"2030-01-01T00:00:00Z\"\nauthor = \"a\"\nreason = \"r\"\n");
        assert!(e.contains("waiver 0: unknown rule \"nope\""), "{e}");
    }
}
