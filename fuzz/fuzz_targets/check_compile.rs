//! Check sources through compilation and evaluation: any CEL expression and any JSON
//! Schema compiles or is refused with a reason, and a compiled check evaluates to an
//! outcome, without panicking or running away.
//!
//! Input: one selector byte (`s` for a JSON Schema, anything else for CEL), the check's
//! source, then optionally a NUL byte and the facts as JSON. Without valid facts, a small
//! fixed facts object is used.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use specaudit_core::check::CompiledCheck;
use specaudit_core::spec::Check;

static DEFAULT_FACTS: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "tls_version": "1.3",
        "cpus": 4,
        "instance_type": "small",
        "ratio": 0.5,
        "enabled": true,
        "tags": ["a", "b"],
        "nested": {"list": [1, 2, 3], "none": null},
    })
});

static PARAMS: LazyLock<Value> = LazyLock::new(|| json!({"tls_min_version": "1.2", "max_cpus": 64, "names": ["small"]}));

fuzz_target!(|bytes: &[u8]| {
    let Some((&selector, rest)) = bytes.split_first() else { return };
    let (source, facts) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], serde_json::from_slice::<Value>(&rest[nul + 1..]).ok()),
        None => (rest, None),
    };
    let check = if selector == b's' {
        let Ok(schema) = serde_json::from_slice::<Value>(source) else { return };
        Check { expr: None, schema: Some(schema) }
    } else {
        let Ok(expr) = std::str::from_utf8(source) else { return };
        Check { expr: Some(expr.to_owned()), schema: None }
    };
    match CompiledCheck::compile(&check) {
        Ok(compiled) => {
            let facts = facts.as_ref().unwrap_or(&DEFAULT_FACTS);
            let evaluation = compiled.evaluate(facts, &PARAMS);
            assert!(
                evaluation.message.is_empty() == (evaluation.outcome == specaudit_core::record::Outcome::Pass),
                "a pass carries no message, anything else says why: {evaluation:?}"
            );
        }
        Err(e) => assert!(!e.message.is_empty(), "a compile error without a reason"),
    }
});
