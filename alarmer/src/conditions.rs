//! The conditions a rule fires on, and how each judges what its group has seen.
//! Pure functions of counts and durations: no clock, no I/O.

pub use specaudit_core::spec::Condition;

use crate::rules::GroupKey;
use crate::window::Counts;

/// A condition that holds: the figure it looked at and a sentence for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub value: f64,
    pub summary: String,
}

/// How the alarmer judges a condition; core parses it (shared with spec validation).
pub trait Judge {
    fn default_group_by(&self) -> Vec<GroupKey>;
    fn check_group_by(&self, keys: &[GroupKey]) -> Result<(), String>;
    /// Judges the counts of a window (failures_at_least, failure_ratio_above).
    fn check_counts(&self, counts: Counts, window_ms: i64) -> Option<Finding>;
    /// Judges the per-instance counts of a group (outliers).
    fn check_instances<'a>(&self, instances: impl Iterator<Item = (&'a str, Counts)>) -> Option<Finding>;
    /// Judges how long a group has been silent.
    fn check_silence(&self, silent_ms: i64) -> Option<Finding>;
    /// Judges the agents of a group that still run an old version.
    fn check_stale(&self, stale: &[(String, i64, i64)]) -> Option<Finding>;
}

impl Judge for Condition {
    fn default_group_by(&self) -> Vec<GroupKey> {
        match self {
            Condition::SilentFor(_) => vec![GroupKey::Spec, GroupKey::Requirement],
            Condition::StaleVersionFor(_) => vec![GroupKey::Spec, GroupKey::Component],
            _ => vec![GroupKey::Spec, GroupKey::Component, GroupKey::Requirement],
        }
    }

    fn check_group_by(&self, keys: &[GroupKey]) -> Result<(), String> {
        let allowed: &[GroupKey] = match self {
            Condition::Outliers { .. } if keys.contains(&GroupKey::Instance) => {
                return Err("outliers compares the instances of a group, so group_by cannot hold instance".into())
            }
            Condition::SilentFor(_) => &[GroupKey::Spec, GroupKey::Component, GroupKey::Requirement],
            Condition::StaleVersionFor(_) => &[GroupKey::Spec, GroupKey::Component, GroupKey::Instance],
            _ => return Ok(()),
        };
        match keys.iter().find(|k| !allowed.contains(k)) {
            Some(k) => Err(format!("group_by {:?} does not apply to this condition", k.label())),
            None => Ok(()),
        }
    }

    fn check_counts(&self, counts: Counts, window_ms: i64) -> Option<Finding> {
        let window = human(window_ms);
        match *self {
            Condition::FailuresAtLeast(n) if counts.fail >= n => Some(Finding {
                value: counts.fail as f64,
                summary: format!("{} failures in the last {window} (threshold {n})", counts.fail),
            }),
            Condition::FailureRatioAbove { ratio, min_samples }
                if counts.samples() >= min_samples && counts.failure_ratio() > ratio =>
            {
                Some(Finding {
                    value: counts.failure_ratio(),
                    summary: format!(
                        "{:.1}% of {} checks failed in the last {window} (threshold {:.1}%)",
                        counts.failure_ratio() * 100.0,
                        counts.samples(),
                        ratio * 100.0
                    ),
                })
            }
            _ => None,
        }
    }

    fn check_instances<'a>(&self, instances: impl Iterator<Item = (&'a str, Counts)>) -> Option<Finding> {
        let Condition::Outliers { max_fraction, min_instances } = *self else { return None };
        let mut reporting = 0usize;
        let mut failing = Vec::new();
        for (instance, counts) in instances {
            if counts.samples() == 0 {
                continue;
            }
            reporting += 1;
            if counts.fail > 0 {
                failing.push(instance);
            }
        }
        let holds = reporting >= min_instances
            && !failing.is_empty()
            && (failing.len() as f64) <= max_fraction * reporting as f64;
        holds.then(|| Finding {
            value: failing.len() as f64,
            summary: format!(
                "{} of {reporting} instances fail what their peers pass: {}",
                failing.len(),
                failing.join(", ")
            ),
        })
    }

    fn check_silence(&self, silent_ms: i64) -> Option<Finding> {
        let Condition::SilentFor(limit) = *self else { return None };
        (silent_ms >= limit).then(|| Finding {
            value: silent_ms as f64 / 1000.0,
            summary: format!("nothing reported for {} (limit {})", human(silent_ms), human(limit)),
        })
    }

    fn check_stale(&self, stale: &[(String, i64, i64)]) -> Option<Finding> {
        let Condition::StaleVersionFor(limit) = *self else { return None };
        (!stale.is_empty()).then(|| Finding {
            value: stale.len() as f64,
            summary: format!(
                "{} agents still run an old spec version {} after a new one landed: {}",
                stale.len(),
                human(limit),
                stale.iter().map(|(a, v, latest)| format!("{a} on v{v} of v{latest}")).collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// `90s` → "1m 30s": durations for people.
pub fn human(ms: i64) -> String {
    let d = std::time::Duration::from_millis(ms.max(0) as u64);
    let rounded = if ms >= 1000 { std::time::Duration::from_secs(d.as_secs()) } else { d };
    humantime::format_duration(rounded).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(v: Value) -> Result<(Condition, Option<i64>), String> {
        Condition::parse(v.as_object().unwrap())
    }

    #[test]
    fn failures_at_least_counts_failures() {
        let c = Condition::FailuresAtLeast(2);
        assert!(c.check_counts(Counts { pass: 100, fail: 1 }, 60_000).is_none());
        let f = c.check_counts(Counts { pass: 0, fail: 2 }, 60_000).unwrap();
        assert_eq!(f.value, 2.0);
        assert_eq!(f.summary, "2 failures in the last 1m (threshold 2)");
    }

    #[test]
    fn ratio_waits_for_enough_samples() {
        let (c, _) = parse(json!({"failure_ratio_above": 0.2, "min_samples": 10})).unwrap();
        assert!(c.check_counts(Counts { pass: 1, fail: 4 }, 1000).is_none(), "5 samples < 10");
        assert!(c.check_counts(Counts { pass: 8, fail: 2 }, 1000).is_none(), "20% is not above 20%");
        assert_eq!(c.check_counts(Counts { pass: 7, fail: 3 }, 1000).unwrap().value, 0.3);
    }

    #[test]
    fn outliers_are_few_failing_among_passing_peers() {
        let (c, _) = parse(json!({"outliers": true})).unwrap();
        let ok = Counts { pass: 10, fail: 0 };
        let bad = Counts { pass: 5, fail: 5 };
        let quiet = Counts::default();
        let f = c.check_instances([("a", ok), ("b", ok), ("c", bad), ("d", quiet)].into_iter()).unwrap();
        assert_eq!(f.value, 1.0);
        assert!(f.summary.contains("1 of 3 instances") && f.summary.contains(": c"), "{}", f.summary);
        assert!(c.check_instances([("a", ok), ("c", bad)].into_iter()).is_none(), "too few instances");
        assert!(c.check_instances([("a", ok), ("b", bad), ("c", bad)].into_iter()).is_none(), "most fail");
        assert!(c.check_instances([("a", ok), ("b", ok), ("c", ok)].into_iter()).is_none(), "none fail");
    }

    #[test]
    fn silence_and_staleness_compare_durations() {
        let (c, _) = parse(json!({"silent_for": "10s"})).unwrap();
        assert!(c.check_silence(9_999).is_none());
        assert_eq!(c.check_silence(12_000).unwrap().value, 12.0);
        let (c, _) = parse(json!({"stale_version_for": "1m"})).unwrap();
        assert!(c.check_stale(&[]).is_none());
        let f = c.check_stale(&[("agent-1".into(), 1, 2)]).unwrap();
        assert!(f.summary.contains("agent-1 on v1 of v2"), "{}", f.summary);
    }
}
