//! Silences (waivers): a time-bounded, signed decision that an alarm must not notify.
//! A waived alarm is still evaluated and logged (state `waived` on the alarms topic, with
//! the author, reason and end in its labels), so reports show what was waived and by whom.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::selector::{Selector, Subject};

/// A waiver as written in the config file (`[[waivers]]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaiverConfig {
    #[serde(rename = "match", default)]
    pub selector: Map<String, Value>,
    /// Only alarms of this rule (its name); every rule when absent.
    #[serde(default)]
    pub rule: Option<String>,
    /// RFC 3339, e.g. "2026-11-25T08:00:00Z"; from start when absent.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// RFC 3339; a waiver always ends.
    pub ends_at: String,
    pub author: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Waiver {
    pub selector: Selector,
    pub rule: Option<String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub author: String,
    pub reason: String,
}

/// A waiver that cannot be used, naming it by position and author.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("waiver {index} (by {author:?}): {problem}")]
pub struct WaiverError {
    pub index: usize,
    pub author: String,
    pub problem: String,
}

fn instant_ms(key: &str, text: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("{key} = {text:?} is not an RFC 3339 time such as \"2026-11-25T08:00:00Z\" ({e})"))?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{key} = {text:?} is before 1970"))?;
    Ok(ms.as_millis() as i64)
}

impl Waiver {
    pub fn from_config(index: usize, config: &WaiverConfig) -> Result<Waiver, WaiverError> {
        let err = |problem: String| WaiverError { index, author: config.author.clone(), problem };
        if config.author.trim().is_empty() || config.reason.trim().is_empty() {
            return Err(err("author and reason are required".into()));
        }
        let selector = Selector::parse(&config.selector).map_err(err)?;
        let starts_ms = config.starts_at.as_deref().map(|t| instant_ms("starts_at", t)).transpose().map_err(err)?;
        let ends_ms = instant_ms("ends_at", &config.ends_at).map_err(err)?;
        let starts_ms = starts_ms.unwrap_or(i64::MIN);
        if ends_ms <= starts_ms {
            return Err(err("ends_at must be after starts_at".into()));
        }
        Ok(Waiver {
            selector,
            rule: config.rule.clone(),
            starts_ms,
            ends_ms,
            author: config.author.clone(),
            reason: config.reason.clone(),
        })
    }

    pub fn active(&self, now: i64) -> bool {
        self.starts_ms <= now && now < self.ends_ms
    }

    pub fn covers(&self, rule_name: &str, subject: &Subject<'_>, now: i64) -> bool {
        self.active(now) && self.rule.as_deref().is_none_or(|r| r == rule_name) && self.selector.matches(subject)
    }

    /// The RFC 3339 end, for labels and messages.
    pub fn until(&self) -> String {
        crate::notify::payload::rfc3339(self.ends_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use specaudit_core::record::Severity;
    use std::collections::BTreeMap;

    fn config(selector: Value, ends_at: &str) -> WaiverConfig {
        WaiverConfig {
            selector: selector.as_object().unwrap().clone(),
            starts_at: Some("2026-01-01T00:00:00Z".into()),
            ends_at: ends_at.into(),
            author: "alice".into(),
            reason: "migration".into(),
            rule: None,
        }
    }

    #[test]
    fn a_waiver_covers_its_subjects_while_it_lasts() {
        let w = Waiver::from_config(0, &config(json!({"requirement": "security/*"}), "2026-01-02T00:00:00Z")).unwrap();
        let labels = BTreeMap::new();
        let subject = Subject {
            spec: "s",
            component: "security",
            requirement: "security/audit-logging",
            severity: Severity::Critical,
            labels: &labels,
        };
        let day = 86_400_000;
        let start = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert!(!w.covers("r", &subject, start - 1));
        assert!(w.covers("r", &subject, start));
        assert!(w.covers("r", &subject, start + day - 1));
        assert!(!w.covers("r", &subject, start + day));
        assert_eq!(w.until(), "2026-01-02T00:00:00.000Z");
        let only_other = Waiver { rule: Some("other".into()), ..w };
        assert!(!only_other.covers("r", &subject, start));
    }

    #[test]
    fn mistakes_are_named() {
        let e = Waiver::from_config(2, &config(json!({}), "tomorrow")).unwrap_err().to_string();
        assert!(e.starts_with("waiver 2 (by \"alice\")") && e.contains("tomorrow"), "{e}");
        let e = Waiver::from_config(0, &config(json!({}), "2025-01-01T00:00:00Z")).unwrap_err().to_string();
        assert!(e.contains("after starts_at"), "{e}");
        let mut c = config(json!({}), "2026-01-02T00:00:00Z");
        c.reason = " ".into();
        assert!(Waiver::from_config(0, &c).unwrap_err().to_string().contains("reason"));
    }
}
