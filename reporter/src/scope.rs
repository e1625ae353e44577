//! What a report covers (spec, component subtree, time range, severities), and how the
//! command line and the query string of the web UI and API spell it.

use std::time::Duration;

use serde::Deserialize;

/// What to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// One spec, or every spec when None.
    pub spec: Option<String>,
    /// A component subtree: this path and every path below it.
    pub component: Option<String>,
    /// Milliseconds since the epoch; the rollup answers in whole minutes.
    pub from_ms: u64,
    pub to_ms: u64,
    /// Severities to keep; every severity when empty.
    pub severities: Vec<String>,
}

impl Scope {
    /// Whether `component` is in the subtree.
    pub fn contains_component(&self, component: &str) -> bool {
        match &self.component {
            None => true,
            Some(root) => {
                component == root || (component.starts_with(root.as_str()) && component[root.len()..].starts_with('.'))
            }
        }
    }

    pub fn admits_severity(&self, severity: &str) -> bool {
        self.severities.is_empty() || self.severities.iter().any(|s| s == severity)
    }
}

/// Why filters were refused; each names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("spec {0:?} is not a spec name (lowercase letters, digits, '.', '_', '-')")]
    Spec(String),
    #[error("component {0:?} is not a component path (dot-separated segments of lowercase letters, digits, '_', '-')")]
    Component(String),
    #[error("severity {0:?} is not one of critical, major, minor, info")]
    Severity(String),
    #[error("{param} {value:?} is neither a duration like 15m or 7d nor a time like 2026-01-31T12:00:00Z or milliseconds since the epoch")]
    Time { param: &'static str, value: String },
    #[error("{param} {value:?} is outside the range reports cover: 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z (0 to 4294967295999 milliseconds since the epoch)")]
    OutOfRange { param: &'static str, value: String },
    #[error("the range is empty: from ({from_ms}) is after to ({to_ms})")]
    Empty { from_ms: u64, to_ms: u64 },
}

const SEVERITIES: [&str; 4] = ["critical", "major", "minor", "info"];

pub fn valid_spec_name(name: &str) -> bool {
    name.len() <= 200
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

pub fn valid_component(path: &str) -> bool {
    path.len() <= 500
        && path.split('.').all(|segment| {
            !segment.is_empty()
                && segment.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        })
}

/// The filters as they come from a query string (`?spec=…&component=…&since=1h&severity=critical,major`)
/// or the command line. Empty values mean "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Filters {
    pub spec: Option<String>,
    pub component: Option<String>,
    /// How far back from `to` (or now): `15m`, `24h`, `7d`.
    pub since: Option<String>,
    /// RFC 3339 time or milliseconds since the epoch; wins over `since`.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Comma-separated severities.
    pub severity: Option<String>,
}

fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The latest time a report covers: ClickHouse's `DateTime` is 32-bit seconds, so a later
/// `to` would wrap (and the ingester refuses such records anyway).
pub const MAX_MS: u64 = specaudit_core::codec::MAX_TS_MS as u64;

fn parse_time(param: &'static str, value: &str) -> Result<u64, ScopeError> {
    let out_of_range = || ScopeError::OutOfRange { param, value: value.to_owned() };
    let ms = if let Ok(ms) = value.parse::<i128>() {
        // Any integer, so a negative or huge one is named as out of range, not as malformed.
        u64::try_from(ms).map_err(|_| out_of_range())?
    } else {
        let t = humantime::parse_rfc3339_weak(value).map_err(|e| match e {
            humantime::TimestampError::OutOfRange => out_of_range(),
            _ => ScopeError::Time { param, value: value.to_owned() },
        })?;
        let since_epoch = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| out_of_range())?;
        u64::try_from(since_epoch.as_millis()).map_err(|_| out_of_range())?
    };
    if ms > MAX_MS {
        return Err(out_of_range());
    }
    Ok(ms)
}

impl Filters {
    /// The scope these filters select, `now_ms` being the present and `default_range` how far
    /// back a report looks when neither `since` nor `from` is given.
    pub fn scope(&self, now_ms: u64, default_range: Duration) -> Result<Scope, ScopeError> {
        let spec = set(&self.spec).map(str::to_owned);
        if let Some(spec) = &spec {
            if !valid_spec_name(spec) {
                return Err(ScopeError::Spec(spec.clone()));
            }
        }
        let component = set(&self.component).map(str::to_owned);
        if let Some(component) = &component {
            if !valid_component(component) {
                return Err(ScopeError::Component(component.clone()));
            }
        }
        let mut severities = Vec::new();
        if let Some(list) = set(&self.severity) {
            for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !SEVERITIES.contains(&s) {
                    return Err(ScopeError::Severity(s.to_owned()));
                }
                if !severities.iter().any(|known| known == s) {
                    severities.push(s.to_owned());
                }
            }
        }
        let to_ms = match set(&self.to) {
            Some(to) => parse_time("to", to)?,
            None => now_ms,
        };
        let from_ms = match (set(&self.from), set(&self.since)) {
            (Some(from), _) => parse_time("from", from)?,
            (None, Some(since)) => {
                let range = humantime::parse_duration(since)
                    .map_err(|_| ScopeError::Time { param: "since", value: since.to_owned() })?;
                to_ms.saturating_sub(range.as_millis() as u64)
            }
            (None, None) => to_ms.saturating_sub(default_range.as_millis() as u64),
        };
        if from_ms > to_ms {
            return Err(ScopeError::Empty { from_ms, to_ms });
        }
        Ok(Scope { spec, component, from_ms, to_ms, severities })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn defaults_and_since() {
        let scope = Filters::default().scope(100_000_000, DAY).unwrap();
        assert_eq!((scope.from_ms, scope.to_ms), (100_000_000 - 86_400_000, 100_000_000));
        let filters = Filters { since: Some("15m".into()), severity: Some("critical, major".into()), ..Filters::default() };
        let scope = filters.scope(10_000_000, DAY).unwrap();
        assert_eq!(scope.from_ms, 10_000_000 - 900_000);
        assert_eq!(scope.severities, ["critical", "major"]);
        assert!(scope.admits_severity("major") && !scope.admits_severity("info"));
    }

    #[test]
    fn from_and_to_as_times_or_milliseconds() {
        let filters =
            Filters { from: Some("2026-01-01T00:00:00Z".into()), to: Some("1767229200000".into()), ..Filters::default() };
        let scope = filters.scope(0, DAY).unwrap();
        assert_eq!((scope.from_ms, scope.to_ms), (1_767_225_600_000, 1_767_229_200_000));
        let backwards = Filters { from: Some("20".into()), to: Some("10".into()), ..Filters::default() };
        assert!(matches!(backwards.scope(0, DAY), Err(ScopeError::Empty { .. })));
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |f: Filters| f.scope(0, DAY).unwrap_err().to_string();
        assert!(bad(Filters { spec: Some("X'; DROP".into()), ..Filters::default() }).contains("spec"));
        assert!(bad(Filters { component: Some("a..b".into()), ..Filters::default() }).contains("component"));
        assert!(bad(Filters { severity: Some("high".into()), ..Filters::default() }).contains("high"));
        assert!(bad(Filters { since: Some("soon".into()), ..Filters::default() }).contains("since"));
    }

    #[test]
    fn times_beyond_what_clickhouse_stores_are_refused() {
        let to = |value: &str| Filters { to: Some(value.into()), ..Filters::default() }.scope(0, DAY);
        let from = |value: &str| Filters { from: Some(value.into()), ..Filters::default() }.scope(MAX_MS, DAY);
        for value in ["99999999999999999", "4294967296000", "2200-01-01T00:00:00Z", "-1", "1969-12-31T23:59:59Z"] {
            let error = to(value).unwrap_err();
            assert_eq!(error, ScopeError::OutOfRange { param: "to", value: value.into() });
            assert!(error.to_string().contains("2106-02-07T06:28:15Z"), "{error}");
            assert!(matches!(from(value), Err(ScopeError::OutOfRange { param: "from", .. })), "{value}");
        }
        assert_eq!(to(&MAX_MS.to_string()).unwrap().to_ms, MAX_MS);
        assert_eq!(to("2106-02-07T06:28:15Z").unwrap().to_ms, MAX_MS - 999);
        assert_eq!(to("0").unwrap().to_ms, 0);
    }

    #[test]
    fn subtrees_follow_path_segments() {
        let scope = Scope { spec: None, component: Some("a.b".into()), from_ms: 0, to_ms: 0, severities: vec![] };
        assert!(scope.contains_component("a.b") && scope.contains_component("a.b.c"));
        assert!(!scope.contains_component("a.bc") && !scope.contains_component("a"));
    }
}
