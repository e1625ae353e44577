//! What an alarm rule's `when` and `for` mean (DESIGN.md section 7). One parser for the
//! alarmer's config-file rules, the `alarms:` policies it reads from specs, and spec
//! validation, so a spec is refused for exactly what the alarmer could not use. The
//! alarmer judges the conditions; here they are only read.

use serde_json::{Map, Value};

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

fn count(key: &str, value: &Value) -> Result<u64, String> {
    value.as_u64().filter(|n| *n >= 1).ok_or_else(|| format!("{key} must be a whole number of at least 1, not {value}"))
}

fn fraction(key: &str, value: &Value) -> Result<f64, String> {
    value
        .as_f64()
        .filter(|r| (0.0..1.0).contains(r))
        .ok_or_else(|| format!("{key} must be a number from 0 up to (not including) 1, not {value}"))
}

fn duration_ms(key: &str, value: &Value) -> Result<i64, String> {
    let Value::String(text) = value else {
        return Err(format!("{key} must be a duration such as \"30s\" or \"5m\", not {value}"));
    };
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{key} = {text:?} is not a duration ({e}); write it like \"30s\" or \"5m\""))?;
    Ok(d.as_millis().min(i64::MAX as u128) as i64)
}

/// A duration of more than zero: a zero window holds nothing, a zero silence or
/// staleness limit would fire at once on everything it watches.
fn positive_duration_ms(key: &str, value: &Value) -> Result<i64, String> {
    match duration_ms(key, value)? {
        0 => Err(format!("{key} must be longer than zero")),
        ms => Ok(ms),
    }
}

/// Parses `for`: how long the condition must hold before firing, in ms (zero fires at once).
pub fn hold_ms(text: &str) -> Result<i64, String> {
    duration_ms("for", &Value::String(text.to_owned()))
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
        if window.is_some() && !condition.uses_window() {
            return Err("window does not apply to silent_for or stale_version_for: their duration is the window".into());
        }
        Ok((condition, window))
    }

    /// Whether the condition counts assertions in a window (the other two watch time).
    pub fn uses_window(&self) -> bool {
        !matches!(self, Condition::SilentFor(_) | Condition::StaleVersionFor(_))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<(Condition, Option<i64>), String> {
        Condition::parse(v.as_object().unwrap())
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
    fn parse_reads_options() {
        let (c, _) = parse(json!({"failure_ratio_above": 0.2, "min_samples": 10})).unwrap();
        assert_eq!(c, Condition::FailureRatioAbove { ratio: 0.2, min_samples: 10 });
        let (c, _) = parse(json!({"outliers": {"max_fraction": 0.2, "min_instances": 4}})).unwrap();
        assert_eq!(c, Condition::Outliers { max_fraction: 0.2, min_instances: 4 });
        assert_eq!(parse(json!({"outliers": true})).unwrap().0, Condition::Outliers { max_fraction: 0.34, min_instances: 3 });
    }

    #[test]
    fn zero_durations_are_refused() {
        // Zero would fire at once for every requirement, or on any heartbeat of an old version.
        assert_eq!(parse(json!({"silent_for": "0s"})).unwrap_err(), "silent_for must be longer than zero");
        assert_eq!(parse(json!({"stale_version_for": "0s"})).unwrap_err(), "stale_version_for must be longer than zero");
        assert_eq!(parse(json!({"failures_at_least": 1, "window": "0s"})).unwrap_err(), "window must be longer than zero");
        assert_eq!(parse(json!({"silent_for": "1ms"})).unwrap().0, Condition::SilentFor(1));
    }

    #[test]
    fn hold_is_a_duration_and_may_be_zero() {
        assert_eq!(hold_ms("1h 30m"), Ok(5_400_000));
        assert_eq!(hold_ms("0s"), Ok(0));
        let e = hold_ms("5x").unwrap_err();
        assert!(e.starts_with("for = \"5x\" is not a duration ("), "{e}");
    }
}
