//! The conditions a rule fires on, and how each judges what its group has seen.
//! Pure functions of counts and durations: no clock, no I/O.

use serde_json::{Map, Value};

use crate::rules::{duration_ms, GroupKey};
use crate::window::Counts;

/// The condition keys `when` may hold, besides `window` and `min_samples`.
pub const CONDITIONS: &[&str] =
    &["failures_at_least", "failure_ratio_above", "outliers", "silent_for", "stale_version_for"];

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// At least N failures in the window.
    FailuresAtLeast(u64),
    /// More than `ratio` of the samples failed, once there are `min_samples` of them.
    FailureRatioAbove { ratio: f64, min_samples: u64 },
    /// A few instances fail what most of their peers pass: at least `min_instances`
    /// report, at least one fails, and the failing ones are at most `max_fraction` of them.
    Outliers { max_fraction: f64, min_instances: usize },
    /// An expected requirement (or every requirement of a component) sent nothing for this
    /// many ms.
    SilentFor(i64),
    /// Agents still report an older spec version this many ms after a new one landed.
    StaleVersionFor(i64),
}

/// A condition that holds: the figure it looked at and a sentence for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub value: f64,
    pub summary: String,
}

fn count(key: &str, value: &Value) -> Result<u64, String> {
    value.as_u64().filter(|n| *n >= 1).ok_or_else(|| format!("{key} must be a whole number of at least 1, not {value}"))
}

fn fraction(key: &str, value: &Value) -> Result<f64, String> {
    value
        .as_f64()
        .filter(|r| (0.0..1.0).contains(r))
        .ok_or_else(|| format!("{key} must be a number from 0 up to (not including) 1, not {value}"))
}

/// A duration of more than zero: a zero window holds nothing, a zero silence or
/// staleness limit would fire at once on everything it watches.
fn positive_duration_ms(key: &str, value: &Value) -> Result<i64, String> {
    match duration_ms(key, value)? {
        0 => Err(format!("{key} must be longer than zero")),
        ms => Ok(ms),
    }
}

impl Condition {
    /// Parses `when`: exactly one condition, plus `window` and `min_samples` where they apply.
    /// Returns the condition and the window in ms if one was given.
    pub fn parse(when: &Map<String, Value>) -> Result<(Condition, Option<i64>), String> {
        let mut found = Vec::new();
        let mut window = None;
        let mut min_samples = None;
        for (key, value) in when {
            let condition = match key.as_str() {
                "window" => {
                    window = Some(positive_duration_ms(key, value)?);
                    continue;
                }
                "min_samples" => {
                    min_samples = Some(count(key, value)?);
                    continue;
                }
                "failures_at_least" => Condition::FailuresAtLeast(count(key, value)?),
                "failure_ratio_above" => Condition::FailureRatioAbove { ratio: fraction(key, value)?, min_samples: 1 },
                "outliers" => parse_outliers(value)?,
                "silent_for" => Condition::SilentFor(positive_duration_ms(key, value)?),
                "stale_version_for" => Condition::StaleVersionFor(positive_duration_ms(key, value)?),
                other => {
                    return Err(format!("unknown condition {other:?} (expected one of {}, with window, min_samples)",
                        CONDITIONS.join(", ")))
                }
            };
            found.push(condition);
        }
        let mut condition = match found.len() {
            1 => found.remove(0),
            0 => return Err(format!("when names no condition (expected one of {})", CONDITIONS.join(", "))),
            _ => return Err("when must name exactly one condition".into()),
        };
        match (&mut condition, min_samples) {
            (Condition::FailureRatioAbove { min_samples, .. }, Some(n)) => *min_samples = n,
            (_, Some(_)) => return Err("min_samples applies only to failure_ratio_above".into()),
            _ => {}
        }
        if window.is_some() && matches!(condition, Condition::SilentFor(_) | Condition::StaleVersionFor(_)) {
            return Err("window does not apply to silent_for or stale_version_for: their duration is the window".into());
        }
        Ok((condition, window))
    }

    /// Whether the condition counts assertions in a window (the other two watch time).
    pub fn uses_window(&self) -> bool {
        !matches!(self, Condition::SilentFor(_) | Condition::StaleVersionFor(_))
    }

    pub fn default_group_by(&self) -> Vec<GroupKey> {
        match self {
            Condition::SilentFor(_) => vec![GroupKey::Spec, GroupKey::Requirement],
            Condition::StaleVersionFor(_) => vec![GroupKey::Spec, GroupKey::Component],
            _ => vec![GroupKey::Spec, GroupKey::Component, GroupKey::Requirement],
        }
    }

    pub fn check_group_by(&self, keys: &[GroupKey]) -> Result<(), String> {
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

    /// Judges the counts of a window (failures_at_least, failure_ratio_above).
    pub fn check_counts(&self, counts: Counts, window_ms: i64) -> Option<Finding> {
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

    /// Judges the per-instance counts of a group (outliers).
    pub fn check_instances<'a>(&self, instances: impl Iterator<Item = (&'a str, Counts)>) -> Option<Finding> {
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

    /// Judges how long a group has been silent.
    pub fn check_silence(&self, silent_ms: i64) -> Option<Finding> {
        let Condition::SilentFor(limit) = *self else { return None };
        (silent_ms >= limit).then(|| Finding {
            value: silent_ms as f64 / 1000.0,
            summary: format!("nothing reported for {} (limit {})", human(silent_ms), human(limit)),
        })
    }

    /// Judges the agents of a group that still run an old version.
    pub fn check_stale(&self, stale: &[(String, i64, i64)]) -> Option<Finding> {
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

fn parse_outliers(value: &Value) -> Result<Condition, String> {
    let mut max_fraction = 0.34;
    let mut min_instances = 3;
    match value {
        Value::Bool(true) => {}
        Value::Object(options) => {
            for (key, v) in options {
                match key.as_str() {
                    "max_fraction" => {
                        max_fraction = v.as_f64().filter(|f| *f > 0.0 && *f < 1.0).ok_or_else(|| {
                            format!("outliers.max_fraction must be a number between 0 and 1, not {v}")
                        })?
                    }
                    "min_instances" => {
                        min_instances = v.as_u64().filter(|n| *n >= 2).ok_or_else(|| {
                            format!("outliers.min_instances must be a whole number of at least 2, not {v}")
                        })? as usize
                    }
                    other => {
                        return Err(format!("unknown outliers option {other:?} (expected max_fraction, min_instances)"))
                    }
                }
            }
        }
        other => return Err(format!("outliers must be true or a table of max_fraction, min_instances, not {other}")),
    }
    Ok(Condition::Outliers { max_fraction, min_instances })
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
    use serde_json::json;

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

    #[test]
    fn parse_refuses_what_it_cannot_judge() {
        assert!(parse(json!({})).unwrap_err().contains("no condition"));
        assert!(parse(json!({"failures_at_least": 0})).unwrap_err().contains("at least 1"));
        assert!(parse(json!({"failure_ratio_above": 1.5})).unwrap_err().contains("failure_ratio_above"));
        assert!(parse(json!({"failures_at_least": 1, "min_samples": 3})).unwrap_err().contains("min_samples"));
        assert!(parse(json!({"silent_for": "1m", "window": "5m"})).unwrap_err().contains("window"));
        assert!(parse(json!({"outliers": {"max_fraktion": 0.1}})).unwrap_err().contains("max_fraktion"));
        assert!(parse(json!({"failures_at_least": 1, "window": "0s"})).unwrap_err().contains("window"));
        assert_eq!(parse(json!({"failures_at_least": 1, "window": "2s"})).unwrap().1, Some(2000));
    }

    #[test]
    fn zero_durations_are_refused() {
        // Zero would fire at once for every requirement, or on any heartbeat of an old version.
        assert_eq!(parse(json!({"silent_for": "0s"})).unwrap_err(), "silent_for must be longer than zero");
        assert_eq!(parse(json!({"stale_version_for": "0s"})).unwrap_err(), "stale_version_for must be longer than zero");
        assert_eq!(parse(json!({"failures_at_least": 1, "window": "0s"})).unwrap_err(), "window must be longer than zero");
        assert_eq!(parse(json!({"silent_for": "1ms"})).unwrap().0, Condition::SilentFor(1));
    }
}
