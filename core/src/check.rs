//! The declarative check engine: a requirement's CEL expression or JSON Schema, compiled
//! once per spec version and evaluated against the facts of one task.
//!
//! A check that cannot be evaluated (a missing fact, a runtime error, a non-boolean
//! result) is an `error` outcome, never a `fail`: reports keep the two apart.

use std::sync::{Arc, LazyLock};

use serde_json::Value;

use crate::record::Outcome;
use crate::spec::Check;

/// A check compiled for evaluation.
pub enum CompiledCheck {
    Cel { program: cel::Program, source: String },
    Schema(Box<jsonschema::Validator>),
}

impl std::fmt::Debug for CompiledCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompiledCheck::Cel { source, .. } => f.debug_struct("Cel").field("source", source).finish(),
            CompiledCheck::Schema(_) => f.write_str("Schema"),
        }
    }
}

/// Why a check does not compile, and which of its fields is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CompileError {
    /// `expr` or `schema`.
    pub field: &'static str,
    pub message: String,
}

/// What one evaluation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub outcome: Outcome,
    /// Why it failed or could not be evaluated; empty on pass.
    pub message: String,
}

impl Evaluation {
    fn pass() -> Self {
        Evaluation { outcome: Outcome::Pass, message: String::new() }
    }

    fn with(outcome: Outcome, message: String) -> Self {
        Evaluation { outcome, message }
    }
}

/// The CEL standard environment is costly to build; one serves every evaluation.
static CEL_ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));

impl CompiledCheck {
    pub fn compile(check: &Check) -> Result<CompiledCheck, CompileError> {
        match (&check.expr, &check.schema) {
            (Some(expr), None) => {
                let program = CEL_ENV.compile(expr).map_err(|e| CompileError {
                    field: "expr",
                    message: format!("CEL does not compile: {}", e.to_string().trim()),
                })?;
                Ok(CompiledCheck::Cel { program, source: expr.clone() })
            }
            (None, Some(schema)) => {
                let validator = jsonschema::draft202012::new(schema).map_err(|e| CompileError {
                    field: "schema",
                    message: format!("JSON Schema does not compile: {e}"),
                })?;
                Ok(CompiledCheck::Schema(Box::new(validator)))
            }
            (Some(_), Some(_)) => Err(CompileError {
                field: "expr",
                message: "a check has either expr or schema, not both".into(),
            }),
            (None, None) => Err(CompileError {
                field: "expr",
                message: "a check needs expr (CEL) or schema (JSON Schema); leave check out for a requirement the component asserts itself".into(),
            }),
        }
    }

    /// Evaluates the check against one task's facts, with the component's merged params.
    pub fn evaluate(&self, facts: &Value, params: &Value) -> Evaluation {
        let params = match cel_value(params) {
            Ok(params) => params,
            Err(e) => return Evaluation::with(Outcome::Error, format!("params cannot be given to CEL: {e}")),
        };
        self.evaluate_prepared(&Facts::new(facts), &params)
    }

    /// As [`evaluate`](Self::evaluate), with the facts and params already prepared: an agent
    /// converts the params once per spec version and the facts once per task.
    pub fn evaluate_prepared(&self, facts: &Facts<'_>, params: &cel::Value) -> Evaluation {
        match self {
            CompiledCheck::Cel { program, source } => {
                let cel_facts = match facts.cel() {
                    Ok(v) => v.clone(),
                    Err(e) => return Evaluation::with(Outcome::Error, format!("facts cannot be given to CEL: {e}")),
                };
                let mut context = cel::Context::with_env(Arc::clone(&CEL_ENV));
                context.add_variable_from_value("facts", cel_facts);
                context.add_variable_from_value("params", params.clone());
                match program.execute(&context) {
                    Ok(cel::Value::Bool(true)) => Evaluation::pass(),
                    Ok(cel::Value::Bool(false)) => Evaluation::with(Outcome::Fail, format!("{source} is false")),
                    Ok(other) => Evaluation::with(Outcome::Error, format!("{source} gave {other:?}, not a boolean")),
                    Err(e) => Evaluation::with(Outcome::Error, format!("{source} could not be evaluated: {e}")),
                }
            }
            // `is_valid` is the fast path; the first error is looked for only on failure.
            CompiledCheck::Schema(validator) if validator.is_valid(facts.json) => Evaluation::pass(),
            CompiledCheck::Schema(validator) => match validator.iter_errors(facts.json).next() {
                None => Evaluation::pass(),
                Some(error) => {
                    let at = error.instance_path().to_string();
                    let at = if at.is_empty() { "facts".to_owned() } else { format!("facts{}", at.replace('/', ".")) };
                    Evaluation::with(Outcome::Fail, format!("{at}: {error}"))
                }
            },
        }
    }
}

/// A JSON value as CEL sees it.
pub fn cel_value(value: &Value) -> Result<cel::Value, String> {
    cel::to_value(value).map_err(|e| e.to_string())
}

/// One task's facts, converted for CEL at most once however many checks read them.
#[derive(Debug)]
pub struct Facts<'a> {
    json: &'a Value,
    cel: std::sync::OnceLock<Result<cel::Value, String>>,
}

impl<'a> Facts<'a> {
    pub fn new(json: &'a Value) -> Self {
        Facts { json, cel: std::sync::OnceLock::new() }
    }

    pub fn json(&self) -> &'a Value {
        self.json
    }

    fn cel(&self) -> Result<&cel::Value, &String> {
        self.cel.get_or_init(|| cel_value(self.json)).as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cel(expr: &str) -> CompiledCheck {
        CompiledCheck::compile(&Check { expr: Some(expr.into()), schema: None }).unwrap()
    }

    #[test]
    fn cel_gives_pass_fail_and_error() {
        let check = cel("facts.tls_version >= params.tls_min_version");
        let params = json!({"tls_min_version": "1.2"});
        assert_eq!(check.evaluate(&json!({"tls_version": "1.3"}), &params).outcome, Outcome::Pass);
        let fail = check.evaluate(&json!({"tls_version": "1.0"}), &params);
        assert_eq!(fail.outcome, Outcome::Fail);
        assert!(fail.message.contains("is false"), "{}", fail.message);
        // A missing fact cannot be evaluated: error, not fail.
        assert_eq!(check.evaluate(&json!({}), &params).outcome, Outcome::Error);
        // A non-boolean result is an error too.
        assert_eq!(cel("facts.x + 1").evaluate(&json!({"x": 1}), &params).outcome, Outcome::Error);
    }

    #[test]
    fn schema_gives_pass_and_fail_with_the_place() {
        let schema = json!({"type": "object", "required": ["cpus"], "properties": {"cpus": {"type": "integer", "maximum": 64}}});
        let check = CompiledCheck::compile(&Check { expr: None, schema: Some(schema) }).unwrap();
        assert_eq!(check.evaluate(&json!({"cpus": 4}), &json!({})).outcome, Outcome::Pass);
        let fail = check.evaluate(&json!({"cpus": 128}), &json!({}));
        assert_eq!(fail.outcome, Outcome::Fail);
        assert!(fail.message.starts_with("facts.cpus:"), "{}", fail.message);
    }

    #[test]
    fn bad_checks_do_not_compile() {
        let err = CompiledCheck::compile(&Check { expr: Some("facts.x >=".into()), schema: None }).unwrap_err();
        assert_eq!(err.field, "expr");
        let err = CompiledCheck::compile(&Check { expr: None, schema: Some(json!({"type": 12})) }).unwrap_err();
        assert_eq!(err.field, "schema");
        assert!(CompiledCheck::compile(&Check { expr: None, schema: None }).is_err());
    }
}
