//! The JSON-lines mode: one request object per line on standard input, one response
//! object per line on standard output, in order.
//!
//! A line is `{"op": "check", "component": …, "task": …, "facts": {…}}`,
//! `{"op": "assert", …}` or `{"op": "requirements", "component": …}`; the answer is
//! `{"results": […]}`, `{"requirements": […]}` or `{"error": "…"}`.

use std::io::{BufRead, Write};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{AssertRequest, CheckRequest, RequestError, Sidecar};

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Line {
    Check(CheckRequest),
    Assert(AssertRequest),
    Requirements { component: String },
}

/// Answers one line.
pub(super) fn answer(sidecar: &Sidecar, line: &str) -> Value {
    let result = serde_json::from_str::<Line>(line)
        .map_err(|e| RequestError::BadJson(e.to_string()))
        .and_then(|request| match request {
            Line::Check(r) => sidecar.check(&r).map(|results| json!({"results": results})),
            Line::Assert(r) => sidecar.assert(&r).map(|results| json!({"results": results})),
            Line::Requirements { component } => sidecar.requirements(&component).map(|list| {
                let list: Vec<_> = list.into_iter().map(|(spec, requirement)| json!({"spec": spec, "requirement": requirement})).collect();
                json!({"requirements": list})
            }),
        });
    result.unwrap_or_else(|error| json!({"error": error.to_string()}))
}

/// Serves lines from `input` until it ends; blank lines are skipped.
pub fn serve_lines(sidecar: &Sidecar, input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(output, "{}", answer(sidecar, &line))?;
        output.flush()?;
    }
    Ok(())
}
