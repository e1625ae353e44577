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

/// Longest CEL expression accepted. The CEL parser, evaluator and drop recurse once per
/// operator in a chain (`a + b + c`, `a.b.c`), with no limit of their own: a few thousand
/// overflow the stack of a 2 MiB thread. Real checks are one line; this keeps the deepest
/// chain to a few hundred levels.
pub const MAX_CEL_BYTES: usize = 1024;

/// The CEL standard environment is costly to build; one serves every evaluation.
static CEL_ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));

impl CompiledCheck {
    pub fn compile(check: &Check) -> Result<CompiledCheck, CompileError> {
        match (&check.expr, &check.schema) {
            (Some(expr), None) => {
                let expr_error = |message: String| CompileError { field: "expr", message };
                if expr.len() > MAX_CEL_BYTES {
                    return Err(expr_error(format!(
                        "CEL expression of {} bytes is longer than the {MAX_CEL_BYTES} allowed",
                        expr.len()
                    )));
                }
                let program = CEL_ENV
                    .compile(expr)
                    .map_err(|e| expr_error(format!("CEL does not compile: {}", e.to_string().trim())))?;
                let cost = cost::estimate(program.expression());
                if cost > cost::MAX {
                    return Err(expr_error(format!(
                        "CEL expression would take about {cost} steps per evaluation, more than the {} allowed: nest fewer macros (all, exists, map, filter) or iterate shorter lists",
                        cost::MAX
                    )));
                }
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
    #[inline]
    pub fn evaluate_prepared(&self, facts: &Facts<'_>, params: &cel::Value) -> Evaluation {
        match self {
            // `is_valid` is the fast path, inlined into the caller; the first error is looked
            // for only on failure.
            CompiledCheck::Schema(validator) if validator.is_valid(facts.json) => Evaluation::pass(),
            _ => self.evaluate_slow(facts, params),
        }
    }

    #[inline(never)]
    fn evaluate_slow(&self, facts: &Facts<'_>, params: &cel::Value) -> Evaluation {
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

/// A static estimate of the work one evaluation of a CEL expression does, so that nested
/// macros (`l.all(a, l.all(b, l.all(c, ...)))`, each level multiplying the work by the
/// length of its list) cannot make a check that runs for hours. A list written in the
/// expression counts its length; a list from facts or params counts `DATA_LIST`.
mod cost {
    use cel::common::ast::{operators, EntryExpr, Expr};
    use cel::parser::Expression;

    /// Most steps (expression nodes evaluated) an evaluation may take.
    pub(super) const MAX: u64 = 1_000_000;
    /// Assumed length of a list the expression does not spell out.
    const DATA_LIST: u64 = 10;

    pub(super) fn estimate(expr: &Expression) -> u64 {
        match &expr.expr {
            Expr::Comprehension(c) => {
                let per_item = estimate(&c.loop_cond).saturating_add(estimate(&c.loop_step));
                estimate(&c.iter_range)
                    .saturating_add(estimate(&c.accu_init))
                    .saturating_add(length(&c.iter_range).saturating_mul(per_item))
                    .saturating_add(estimate(&c.result))
            }
            Expr::Call(call) => call
                .target
                .iter()
                .map(|t| estimate(t))
                .chain(call.args.iter().map(estimate))
                .fold(1, u64::saturating_add),
            Expr::List(list) => list.elements.iter().map(estimate).fold(1, u64::saturating_add),
            Expr::Map(map) => map.entries.iter().map(|e| entry(&e.expr)).fold(1, u64::saturating_add),
            Expr::Struct(s) => s.entries.iter().map(|e| entry(&e.expr)).fold(1, u64::saturating_add),
            Expr::Select(select) => estimate(&select.operand).saturating_add(1),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => 1,
        }
    }

    fn entry(entry: &EntryExpr) -> u64 {
        match entry {
            EntryExpr::StructField(field) => estimate(&field.value),
            EntryExpr::MapEntry(e) => estimate(&e.key).saturating_add(estimate(&e.value)),
        }
    }

    /// Upper bound of the length of the list (or map) `expr` gives.
    fn length(expr: &Expression) -> u64 {
        match &expr.expr {
            Expr::List(list) => list.elements.len() as u64,
            Expr::Map(map) => map.entries.len() as u64,
            // `map` and `filter` give at most as many items as they iterate.
            Expr::Comprehension(c) => length(&c.iter_range),
            Expr::Call(call) if call.func_name == operators::ADD && call.args.len() == 2 => {
                length(&call.args[0]).saturating_add(length(&call.args[1]))
            }
            _ => DATA_LIST,
        }
    }
}

/// A JSON value as CEL sees it. JSON does not tell signed from unsigned, so an integer
/// is an `int` whenever it fits one (a `uint` only beyond `int`'s range): CEL has no mixed
/// `int`/`uint` arithmetic, and `params.limit * 2` must work whatever the limit's sign.
pub fn cel_value(value: &Value) -> Result<cel::Value, String> {
    Ok(match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => cel::Value::Int(i),
            (None, Some(u), _) => cel::Value::UInt(u),
            (None, None, Some(f)) => cel::Value::Float(f),
            _ => return Err(format!("the number {n} has no CEL value")),
        },
        Value::String(text) => cel::Value::String(Arc::new(text.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(cel_value).collect::<Result<_, _>>()?)),
        Value::Object(fields) => {
            let map: std::collections::HashMap<String, cel::Value> =
                fields.iter().map(|(k, v)| Ok((k.clone(), cel_value(v)?))).collect::<Result<_, String>>()?;
            cel::Value::from(map)
        }
    })
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
    fn json_integers_are_cel_ints_so_arithmetic_with_literals_works() {
        let params = json!({"max_rps": 100, "ratio": 0.5, "huge": u64::MAX, "nested": {"list": [1, -2]}});
        let pass = |expr: &str, facts: Value| cel(expr).evaluate(&facts, &params).outcome;
        assert_eq!(pass("facts.rps <= params.max_rps * 2", json!({"rps": 150})), Outcome::Pass);
        assert_eq!(pass("facts.rps <= params.max_rps * 2", json!({"rps": 250})), Outcome::Fail);
        assert_eq!(pass("facts.delta + 5 > 0", json!({"delta": -3})), Outcome::Pass);
        assert_eq!(pass("facts.share < params.ratio", json!({"share": 0.25})), Outcome::Pass);
        assert_eq!(pass("params.nested.list[1] == -2 && size(params.nested.list) == 2", json!({})), Outcome::Pass);
        assert_eq!(pass("params.huge == 18446744073709551615u", json!({})), Outcome::Pass, "beyond int: uint");
        assert_eq!(pass("facts.name == 'api' && facts.on && facts.gone == null", json!({"name": "api", "on": true, "gone": null})), Outcome::Pass);
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

    /// Found by fuzzing: the CEL parser recursed once per operator of a chain, so a long
    /// `1 + 1 + ...` or `facts.a.a...` overflowed the stack and took the process down.
    #[test]
    fn long_operator_chains_are_refused_not_a_stack_overflow() {
        let at_limit = |unit: &str, head: &str, tail: &str| {
            let n = (MAX_CEL_BYTES - head.len() - tail.len()) / unit.len();
            format!("{head}{}{tail}", unit.repeat(n))
        };
        // The deepest chains that fit in the limit compile and evaluate on a test thread's
        // 2 MiB stack, the size of a tokio worker's.
        for expr in [
            at_limit("1 + ", "", "1 > 0"),
            at_limit(".a", "facts", " == 1"),
            at_limit("[0]", "facts", " == 1"),
            at_limit(".size()", "facts", " == 1"),
            at_limit("!", "", "true"),
            at_limit("(", "", ""),
        ] {
            assert!(expr.len() <= MAX_CEL_BYTES);
            if let Ok(check) = CompiledCheck::compile(&Check { expr: Some(expr), schema: None }) {
                check.evaluate(&json!({"a": 1}), &json!({}));
            }
        }
        let long = format!("{}1 > 0", "1+".repeat(20_000));
        let err = CompiledCheck::compile(&Check { expr: Some(long), schema: None }).expect_err("a 40,000-byte expression is refused");
        assert_eq!(err.field, "expr");
        assert!(err.message.contains("longer than the 1024 allowed"), "{}", err.message);
    }

    /// Found by fuzzing: nested macros multiply the work; seven levels over a ten-item list
    /// ran for minutes.
    #[test]
    fn nested_macros_that_would_run_away_are_refused() {
        let list = "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]";
        let mut expr = "a0 > 0".to_owned();
        for level in 1..=7 {
            expr = format!("{list}.all(a{level}, {expr})");
        }
        let err = CompiledCheck::compile(&Check { expr: Some(expr), schema: None }).expect_err("seven nested macros are refused");
        assert_eq!(err.field, "expr");
        assert!(err.message.contains("steps per evaluation"), "{}", err.message);
        // Realistic nesting over the facts still compiles and runs.
        let check = cel("facts.hosts.all(h, h.ports.all(p, p > 0 && p < 65536)) && facts.hosts.map(h, h.name).exists(n, n == 'a')");
        let facts = json!({"hosts": [{"name": "a", "ports": [80, 443]}, {"name": "b", "ports": [22]}]});
        assert_eq!(check.evaluate(&facts, &json!({})).outcome, Outcome::Pass);
        // So does a long list written out: 200 items, iterated once.
        let items = (0..200).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        cel(&format!("[{items}].exists(x, x == facts.n)"));
    }
}
