//! The JSON-lines mode: one request object per line on standard input, one response
//! object per line on standard output, in order.
//!
//! A line is `{"op": "check", "component": …, "task": …, "facts": {…}}`,
//! `{"op": "assert", …}` or `{"op": "requirements", "component": …}`; the answer is
//! `{"results": […]}`, `{"requirements": […]}` or `{"error": "…"}`.

use std::io::{BufRead, Write};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_request, AssertRequest, CheckRequest, Sidecar};

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Line {
    Check(CheckRequest),
    Assert(AssertRequest),
    Requirements { component: String },
}

/// Answers one line, given as the bytes read: a line that is not UTF-8 is refused like
/// any other line that is not JSON.
pub(super) fn answer(sidecar: &Sidecar, line: &[u8]) -> Value {
    let result = parse_request::<Line>(line).and_then(|request| match request {
            Line::Check(r) => sidecar.check(&r).map(|results| json!({"results": results})),
            Line::Assert(r) => sidecar.assert(&r).map(|results| json!({"results": results})),
            Line::Requirements { component } => sidecar.requirements(&component).map(|list| {
                let list: Vec<_> = list.into_iter().map(|(spec, requirement)| json!({"spec": spec, "requirement": requirement})).collect();
                json!({"requirements": list})
            }),
        });
    result.unwrap_or_else(|error| json!({"error": error.to_string()}))
}

/// Serves lines from `input` until it ends; blank lines are skipped. Every other line gets
/// one answer, an error for a bad one, and the stream goes on.
pub fn serve_lines(sidecar: &Sidecar, mut input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        writeln!(output, "{}", answer(sidecar, &line))?;
        output.flush()?;
    }
}
