//! The records that travel on the topics (DESIGN.md section 5).
//!
//! Field names match the Avro schemas in `schemas/avro/` one to one, so the same structs
//! serve the Avro codec and the JSON form that services in other languages may send.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// The check could not be evaluated (missing fact, runtime error). Kept apart from `Fail`.
    Error,
    /// The check does not apply to this task.
    Skip,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Pass, Outcome::Fail, Outcome::Error, Outcome::Skip];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Error => "error",
            Outcome::Skip => "skip",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a requirement matters; `Major` when a spec does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    #[default]
    Major,
    Minor,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn one() -> i64 {
    1
}

/// One pass/fail finding about one requirement, for one task of one component instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    /// UUID v7, the idempotency key.
    #[serde(with = "uuid_text")]
    pub assertion_id: Uuid,
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    pub spec: String,
    pub spec_version: i64,
    pub component: String,
    pub instance: String,
    pub agent_id: String,
    pub requirement: String,
    #[serde(default)]
    pub task: String,
    pub outcome: Outcome,
    pub severity: Severity,
    /// Identical outcomes rolled up in one interval; at least 1.
    #[serde(default = "one")]
    pub count: i64,
    #[serde(default)]
    pub message: String,
    /// JSON text.
    #[serde(default)]
    pub details: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// An empty assertion, to decode into: not a valid record (nil id, no names).
impl Default for Assertion {
    fn default() -> Self {
        Assertion {
            assertion_id: Uuid::nil(),
            ts: 0,
            spec: String::new(),
            spec_version: 0,
            component: String::new(),
            instance: String::new(),
            agent_id: String::new(),
            requirement: String::new(),
            task: String::new(),
            outcome: Outcome::Pass,
            severity: Severity::Major,
            count: 0,
            message: String::new(),
            details: String::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// A spec version an agent runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecInUse {
    pub spec: String,
    pub version: i64,
}

/// A requirement that applies to an agent's component, with its evaluations since the
/// previous heartbeat: "evaluated N of M" comes from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequirementCoverage {
    pub spec: String,
    pub requirement: String,
    pub evaluations: i64,
}

/// Periodic liveness and coverage report of one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub agent_id: String,
    pub component: String,
    pub instance: String,
    pub ts: i64,
    pub started_at: i64,
    pub sdk_version: String,
    #[serde(default)]
    pub specs: Vec<SpecInUse>,
    #[serde(default)]
    pub checked: i64,
    #[serde(default)]
    pub emitted: i64,
    #[serde(default)]
    pub dropped: i64,
    #[serde(default)]
    pub requirements: Vec<RequirementCoverage>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn empty_patch() -> String {
    "[]".to_owned()
}

/// One published version of a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecVersion {
    pub spec: String,
    /// Previous + 1, starting at 1.
    pub version: i64,
    pub ts: i64,
    pub author: String,
    #[serde(default)]
    pub comment: String,
    /// Hex sha256 of `document`; empty when deleted.
    pub sha256: String,
    /// A delete (tombstone) of the spec; `document` is then empty.
    #[serde(default)]
    pub deleted: bool,
    /// The spec as canonical JSON.
    pub document: String,
    /// RFC 6902 JSON Patch from the previous version, as JSON text.
    #[serde(default = "empty_patch")]
    pub patch: String,
}

/// The state an alarm moved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmState {
    Pending,
    Firing,
    Resolved,
    Waived,
}

/// One state transition of one alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmEvent {
    pub fingerprint: String,
    pub ts: i64,
    pub rule: String,
    pub state: AlarmState,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub spec: String,
    #[serde(default)]
    pub component: String,
    #[serde(default)]
    pub requirement: String,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub value: f64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// UUIDs as their hyphenated text in every format: Avro's `uuid` logical type is a string,
/// and the Avro serializer would otherwise write 16 raw bytes.
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub(super) fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&id.hyphenated())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
