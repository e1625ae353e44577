//! The JSON-lines mode: one request object per line on standard input, one response
//! object per line on standard output, in order.
//!
//! A line is `{"op": "check", "component": …, "task": …, "facts": {…}}`,
//! `{"op": "assert", …}` or `{"op": "requirements", "component": …}`; the answer is
//! `{"results": […]}`, `{"requirements": […]}` or `{"error": "…"}`. A line longer than
//! `sidecar.max_body_bytes` is answered with an error without being kept in memory.

use std::io::{BufRead, Read, Write};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_request, AssertRequest, CheckRequest, RequestError, Sidecar};

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
    let limit = sidecar.config.sidecar.max_body_bytes;
    let mut line = Vec::new();
    loop {
        line.clear();
        if (&mut input).take(limit as u64 + 1).read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let reply = if line.len() > limit && line.last() != Some(&b'\n') {
            skip_line(&mut input)?;
            json!({"error": RequestError::TooLarge(limit).to_string()})
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            answer(sidecar, &line)
        };
        writeln!(output, "{reply}")?;
        output.flush()?;
    }
}

/// Consumes the rest of the current line.
fn skip_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                input.consume(end + 1);
                return Ok(());
            }
            None => {
                let all = buf.len();
                input.consume(all);
            }
        }
    }
}
