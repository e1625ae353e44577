//! The spec format v1 (DESIGN.md section 3): parsing from YAML or JSON, validation that
//! names the place of every mistake, canonical JSON, and inheritance down component paths.

mod alarm_policy;
mod locate;
mod resolve;
mod strict;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::record::Severity;

pub use alarm_policy::{hold_ms, Condition, CONDITIONS};
pub use resolve::{ApplicableRequirement, Applicable};
pub use validate::{Problem, SpecError};

/// The only `apiVersion` this release reads.
pub const API_VERSION: &str = "specaudit/v1";

/// A spec document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// The spec's name, also its Kafka key.
    pub spec: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Principals allowed to change the spec, besides admins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Keyed by component path (dot-separated segments).
    #[serde(default)]
    pub components: BTreeMap<String, Component>,
    /// Alarm policies carried by the spec (DESIGN.md section 7).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<AlarmPolicy>,
}

/// One component path of a spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Values the checks read as `params.*`; merged from the root down, deeper wins.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, Value>,
    #[serde(default)]
    pub requirements: BTreeMap<String, Requirement>,
}

/// One requirement of a component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `major` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The task kinds it applies to; every task when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<String>>,
    /// A declarative check; when absent the component's own code asserts the requirement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

impl Requirement {
    pub fn severity(&self) -> Severity {
        self.severity.unwrap_or_default()
    }

    /// Whether the requirement applies to a task of this kind.
    pub fn applies_to(&self, task: &str) -> bool {
        self.tasks.as_ref().is_none_or(|tasks| tasks.iter().any(|t| t == task))
    }
}

/// A declarative check: exactly one of a CEL expression or a JSON Schema for the facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// CEL over `facts` and `params`, true when the requirement is met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    /// JSON Schema (2020-12) the facts must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

/// An alarm policy carried by a spec. Validation reads `when` and `for` with the parser
/// the alarmer uses ([`Condition::parse`], [`hold_ms`]); the alarmer gives `match` its meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub selector: serde_json::Map<String, Value>,
    pub when: serde_json::Map<String, Value>,
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
}

impl Spec {
    /// Parses and validates a spec written as YAML or JSON (JSON is YAML). Every problem
    /// is reported with its place and line.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        validate::parse(text)
    }

    /// Parses and validates a spec from its canonical JSON (as stored on the topics), read
    /// as JSON: a YAML 1.1 reader would take U+2028 and its kin for line breaks.
    pub fn from_json(text: &str) -> Result<Spec, SpecError> {
        validate::parse_json(text)
    }

    /// Validates a document already held as a value (e.g. the result of a JSON Patch);
    /// problems carry their place but no line.
    pub fn from_value(value: Value) -> Result<Spec, SpecError> {
        validate::validate(value, None)
    }

    /// The document as YAML, keys in canonical order.
    pub fn to_yaml(&self) -> String {
        // Plain data with string keys always serializes.
        serde_yaml_ng::to_string(&self.to_value()).unwrap_or_default()
    }

    /// The document as a JSON value.
    pub fn to_value(&self) -> Value {
        // Serializing plain data structs into a Value cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Canonical JSON: object keys sorted, no insignificant whitespace. Equal specs have
    /// equal canonical JSON, so its sha256 identifies a version's content.
    pub fn canonical_json(&self) -> String {
        canonical_json(&self.to_value())
    }

    /// Hex sha256 of the canonical JSON.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }
}

/// Writes `value` as JSON with object keys sorted at every level. The characters YAML 1.1
/// (and JavaScript source) take for line breaks inside strings are escaped, so the
/// canonical form reads back the same through any of the parsers that accept specs.
pub fn canonical_json(value: &Value) -> String {
    fn string(text: &str, out: &mut String) {
        // Writing a string into JSON cannot fail.
        let quoted = serde_json::to_string(text).unwrap_or_default();
        for c in quoted.chars() {
            match c {
                '\u{85}' => out.push_str("\\u0085"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c => out.push(c),
            }
        }
    }
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(key, out);
                    out.push(':');
                    write(&map[key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Value::String(text) => string(text, out),
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

#[cfg(test)]
mod tests;
