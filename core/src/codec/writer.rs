//! A writer of Avro binary bodies for the hot record types, the mirror of [`reader`]
//! (super::reader): agents encode every failure they send, and `apache_avro`'s path
//! through a `Value` tree costs several times the rest of that send. Checked byte for byte
//! against `apache_avro` on random records (`codec_tests.rs`).

use std::collections::BTreeMap;

use crate::record::{Assertion, Outcome, Severity};

/// A zig-zag varint `long`.
pub fn long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A `string`: length, then the UTF-8 bytes.
pub fn string(out: &mut Vec<u8>, value: &str) {
    long(out, value.len() as i64);
    out.extend_from_slice(value.as_bytes());
}

/// A `map` of strings: one block with every entry, then the empty block.
pub fn string_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    if !map.is_empty() {
        long(out, map.len() as i64);
        for (key, value) in map {
            string(out, key);
            string(out, value);
        }
    }
    long(out, 0);
}

fn outcome_index(outcome: Outcome) -> i64 {
    match outcome {
        Outcome::Pass => 0,
        Outcome::Fail => 1,
        Outcome::Error => 2,
        Outcome::Skip => 3,
    }
}

fn severity_index(severity: Severity) -> i64 {
    match severity {
        Severity::Critical => 0,
        Severity::Major => 1,
        Severity::Minor => 2,
        Severity::Info => 3,
    }
}

/// Writes an [`Assertion`] body in the field order of the current `assertion.avsc`.
pub fn assertion(out: &mut Vec<u8>, a: &Assertion) {
    string(out, a.assertion_id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()));
    long(out, a.ts);
    string(out, &a.spec);
    long(out, a.spec_version);
    string(out, &a.component);
    string(out, &a.instance);
    string(out, &a.agent_id);
    string(out, &a.requirement);
    string(out, &a.task);
    long(out, outcome_index(a.outcome));
    long(out, severity_index(a.severity));
    long(out, a.count);
    string(out, &a.message);
    string(out, &a.details);
    string_map(out, &a.labels);
}
