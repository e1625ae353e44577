//! Validation of a spec document. The document is checked against
//! `schemas/spec.schema.json` (so the published schema and the code cannot drift apart),
//! then every CEL expression and JSON Schema is compiled and every alarm policy is read as
//! the alarmer reads it. Every problem found is reported, not just the first, each with
//! its place as a dotted path from the document root
//! (`components.frontend.requirements.tls.check.expr`) and, for text input, its line.
//! Unknown fields are refused, so a typo like `chekc` cannot silently drop a check.

use std::fmt;
use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use super::locate::{Lines, Place, Step};
use super::strict::StrictValue;
use super::{hold_ms, Condition, Spec};
use crate::check::CompiledCheck;
use crate::spec::Check;

/// One mistake in a spec, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Dotted path from the document root; empty for the document itself.
    pub path: String,
    /// 1-based line in the YAML or JSON text, where the spec came from text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Why a spec was refused: every problem found, each with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "invalid spec ({n} problem{})", if n == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// The published format, compiled once.
static SPEC_SCHEMA: LazyLock<Result<(Value, jsonschema::Validator), String>> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(include_str!("../../../schemas/spec.schema.json"))
        .map_err(|e| format!("schemas/spec.schema.json is not JSON: {e}"))?;
    let validator = jsonschema::draft202012::new(&schema)
        .map_err(|e| format!("schemas/spec.schema.json does not compile: {e}"))?;
    Ok((schema, validator))
});

/// Parses YAML or JSON text (JSON is YAML) into a value, then validates it.
pub(super) fn parse(text: &str) -> Result<Spec, SpecError> {
    let StrictValue(value) = serde_yaml_ng::from_str(text).map_err(|e| SpecError {
        problems: vec![Problem {
            path: String::new(),
            line: e.location().map(|l| l.line()),
            message: format!("not a YAML or JSON document: {e}"),
        }],
    })?;
    validate(value, Some(text))
}

/// Parses JSON text (a spec's canonical form) into a value, then validates it.
pub(super) fn parse_json(text: &str) -> Result<Spec, SpecError> {
    let value: Value = serde_json::from_str(text).map_err(|e| SpecError {
        problems: vec![Problem {
            path: String::new(),
            line: Some(e.line()),
            message: format!("not a JSON document: {e}"),
        }],
    })?;
    validate(value, Some(text))
}

/// Validates a document value; `text` is where it came from, for lines.
pub(super) fn validate(value: Value, text: Option<&str>) -> Result<Spec, SpecError> {
    let mut found: Vec<(Place, String)> = Vec::new();
    structure(&value, &mut found);
    alarm_policies(&value, &mut found);
    compile_checks(&value, &mut found);
    let spec = if found.is_empty() {
        // The schema accepted it, so this only fails if the schema and the types disagree.
        match serde_path_to_error::deserialize::<_, Spec>(&value) {
            Ok(spec) => Some(spec),
            Err(e) => {
                let place = e.path().to_string();
                found.push((dotted(&place), e.into_inner().to_string()));
                None
            }
        }
    } else {
        None
    };
    match spec {
        Some(spec) if found.is_empty() => Ok(spec),
        _ => Err(error(found, text)),
    }
}

fn dotted(path: &str) -> Place {
    if path == "." {
        return Place::default();
    }
    Place(path.split('.').map(|k| Step::Key(k.to_owned())).collect())
}

/// Sorts the problems by line, then place, and drops repeats.
fn error(mut found: Vec<(Place, String)>, text: Option<&str>) -> SpecError {
    let lines = text.map(Lines::new);
    let mut problems: Vec<Problem> = found
        .drain(..)
        .map(|(place, message)| Problem {
            line: lines.as_ref().and_then(|l| l.line(&place)),
            path: place.to_string(),
            message,
        })
        .collect();
    problems.sort_by(|a, b| (a.line, &a.path, &a.message).cmp(&(b.line, &b.path, &b.message)));
    problems.dedup();
    SpecError { problems }
}

/// Every structural problem the published JSON Schema finds, in words a spec owner knows.
fn structure(value: &Value, found: &mut Vec<(Place, String)>) {
    let (schema, validator) = match &*SPEC_SCHEMA {
        Ok(compiled) => compiled,
        Err(message) => {
            found.push((Place::default(), format!("cannot validate: {message}")));
            return;
        }
    };
    for error in validator.iter_errors(value) {
        let at = Place::from_pointer(error.instance_path().as_str(), value);
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = allowed_fields(schema, error.schema_path().as_str());
                for field in unexpected {
                    found.push((at.key(field.as_str()), format!("unknown field `{field}`, expected one of {allowed}")));
                }
            }
            ValidationErrorKind::PropertyNames { error: inner } => {
                let name = inner.instance().as_str().unwrap_or_default().to_owned();
                let message = match at.0.last() {
                    Some(Step::Key(parent)) if parent == "components" && at.0.len() == 1 => {
                        format!("{name:?} is not a legal component path (dot-separated segments of [a-z0-9][a-z0-9_-]*, at most 200 characters)")
                    }
                    _ => format!("{name:?} is not a legal name ([a-z0-9][a-z0-9._-]*, at most 200 characters)"),
                };
                found.push((at.key(name), message));
            }
            ValidationErrorKind::Required { property } => {
                let field = property.as_str().unwrap_or_default();
                found.push((at.key(field), "is required".into()));
            }
            ValidationErrorKind::Constant { expected_value } => {
                found.push((at, format!("must be {expected_value}, found {}", error.instance())));
            }
            ValidationErrorKind::Enum { options } => {
                found.push((at, format!("{} is not one of {}", error.instance(), list(options))));
            }
            ValidationErrorKind::Pattern { .. } if matches!(at.0.as_slice(), [Step::Key(k)] if k == "spec") => {
                found.push((at, format!("{} is not a legal spec name ([a-z0-9][a-z0-9._-]*)", error.instance())));
            }
            ValidationErrorKind::OneOfNotValid { .. } if is_when(&at) => found.push((
                at,
                "must name exactly one condition: failures_at_least, failure_ratio_above, outliers, silent_for or stale_version_for".into(),
            )),
            ValidationErrorKind::OneOfMultipleValid { .. } if is_when(&at) => found.push((
                at,
                "names more than one condition; one alarm policy has exactly one (write several policies)".into(),
            )),
            ValidationErrorKind::OneOfNotValid { .. } if is_check(&at) => found.push((
                at,
                "a check needs expr (CEL) or schema (JSON Schema); leave check out for a requirement the component asserts itself".into(),
            )),
            ValidationErrorKind::OneOfMultipleValid { .. } if is_check(&at) => {
                found.push((at, "a check has either expr or schema, not both".into()));
            }
            _ => found.push((at, error.to_string())),
        }
    }
}

fn is_when(at: &Place) -> bool {
    matches!(at.0.as_slice(), [Step::Key(a), Step::Index(_), Step::Key(w)] if a == "alarms" && w == "when")
}

fn is_check(at: &Place) -> bool {
    matches!(at.0.last(), Some(Step::Key(k)) if k == "check")
}

fn list(options: &Value) -> String {
    match options.as_array() {
        Some(items) => items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect::<Vec<_>>().join(", "),
        None => options.to_string(),
    }
}

/// The fields the schema allows where `additionalProperties` refused one, found by
/// walking the schema path (following `$ref`s) to the object's schema.
fn allowed_fields(schema: &Value, schema_path: &str) -> String {
    let mut node = schema;
    let segments: Vec<&str> = schema_path.split('/').skip(1).collect();
    for segment in &segments[..segments.len().saturating_sub(1)] {
        let next = if *segment == "$ref" {
            node.get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|pointer| schema.pointer(pointer))
        } else {
            node.get(*segment)
        };
        match next {
            Some(next) => node = next,
            None => return "the fields of schemas/spec.schema.json".into(),
        }
    }
    match node.get("properties").and_then(Value::as_object) {
        Some(properties) => properties.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
        None => "no fields".into(),
    }
}

/// Compiles every CEL expression and JSON Schema that has the right type, whatever else is
/// wrong with the document, so one run reports them all.
fn compile_checks(value: &Value, found: &mut Vec<(Place, String)>) {
    let Some(components) = value.get("components").and_then(Value::as_object) else { return };
    for (path, component) in components {
        let Some(requirements) = component.get("requirements").and_then(Value::as_object) else { continue };
        for (name, requirement) in requirements {
            let Some(check) = requirement.get("check").and_then(Value::as_object) else { continue };
            let at = Place::default().key("components").key(path.as_str()).key("requirements").key(name.as_str()).key("check");
            if let Some(Value::String(expr)) = check.get("expr").filter(|e| e.as_str().is_some_and(|s| !s.is_empty())) {
                let only = Check { expr: Some(expr.clone()), schema: None };
                if let Err(e) = CompiledCheck::compile(&only) {
                    found.push((at.key("expr"), e.message));
                }
            }
            if let Some(schema) = check.get("schema").filter(|s| s.is_object() || s.is_boolean()) {
                let only = Check { expr: None, schema: Some(schema.clone()) };
                if let Err(e) = CompiledCheck::compile(&only) {
                    found.push((at.key("schema"), e.message));
                }
            }
        }
    }
}

/// Reads every alarm policy's `when` and `for` as the alarmer does, which is stricter than
/// the schema (one condition, `min_samples` only with a ratio, durations that parse and are
/// above zero): a policy the alarmer would skip is refused here instead. A field the schema
/// already faulted is left alone, so its mistake is reported once. `match` needs nothing
/// more: the schema is as strict as the alarmer's selector.
fn alarm_policies(value: &Value, found: &mut Vec<(Place, String)>) {
    let Some(alarms) = value.get("alarms").and_then(Value::as_array) else { return };
    let mut more = Vec::new();
    for (i, policy) in alarms.iter().enumerate() {
        let at = Place(vec![Step::Key("alarms".into()), Step::Index(i)]);
        let when = policy.get("when").and_then(Value::as_object).map(|when| Condition::parse(when).map(drop));
        let hold = policy.get("for").and_then(Value::as_str).map(|hold| hold_ms(hold).map(drop));
        for (field, result) in [("when", when), ("for", hold)] {
            let place = at.key(field);
            if let Some(Err(message)) = result {
                if !found.iter().any(|(faulted, _)| faulted.0.starts_with(&place.0)) {
                    more.push((place, message));
                }
            }
        }
    }
    found.extend(more);
}
