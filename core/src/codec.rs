//! Wire codec: Avro single-object encoding, and JSON for the topics that accept it.
//!
//! Avro single-object encoding is `C3 01`, the 8-byte little-endian CRC-64-AVRO (Rabin)
//! fingerprint of the writer schema, then the Avro binary body. A reader keeps every
//! writer schema it knows by fingerprint and resolves it against its own, so schemas can
//! evolve by adding fields with defaults. A record that starts with `{` is JSON with the
//! same field names. Decoding never panics: garbage becomes a typed [`DecodeError`] whose
//! [`kind`](DecodeError::kind) is the dead-letter reason.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Once;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::record::{AlarmEvent, Assertion, Heartbeat, SpecVersion};

pub mod reader;
pub mod writer;

/// The two bytes that open every Avro single-object encoded record.
pub const AVRO_MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;
/// Upper bound for one allocation while decoding Avro, so a forged length cannot make the
/// decoder reserve gigabytes.
const MAX_AVRO_ALLOCATION: usize = 16 * 1024 * 1024;
/// Longest string field accepted in a record (message, details, label value...).
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Most labels one record may carry.
pub const MAX_LABELS: usize = 64;
/// Latest time ClickHouse's `DateTime` can hold (2106-02-07), in milliseconds: a later
/// `ts` would wrap around silently in the `ts DateTime` columns.
pub const MAX_TS_MS: i64 = u32::MAX as i64 * 1000 + 999;

/// A record type that has an Avro schema in `schemas/avro/`.
pub trait Record: Serialize + DeserializeOwned {
    /// The current writer schema.
    const SCHEMA: &'static str;
    /// Earlier writer schemas that readers must still understand, oldest first.
    const PAST_SCHEMAS: &'static [&'static str] = &[];
    /// Whether the topic of this record also takes the JSON form.
    const ACCEPTS_JSON: bool;

    /// Reads a body written with the current schema in one pass, without `apache_avro`'s
    /// `Value` tree; `None` for the types left to `apache_avro` (see [`reader`]).
    fn read_current(_body: &mut reader::Reader<'_>) -> Option<Result<Self, reader::Error>> {
        None
    }

    /// [`read_current`](Self::read_current) over an existing record, reusing its
    /// allocations where the type can.
    fn read_current_into(body: &mut reader::Reader<'_>, into: &mut Self) -> Option<Result<(), reader::Error>> {
        Self::read_current(body).map(|read| read.map(|record| *into = record))
    }

    /// Appends the body with the current schema in one pass, without `apache_avro`'s
    /// `Value` tree; false for the types left to `apache_avro` (see [`writer`]).
    fn write_current(&self, _out: &mut Vec<u8>) -> bool {
        false
    }

    /// Checks what the schema cannot express; the error is a sentence for the dead letter.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Why bytes could not be turned into a record.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("record of {len} bytes is shorter than the 10-byte Avro single-object header")]
    Truncated { len: usize },
    #[error("first byte 0x{byte:02x} is neither the Avro single-object marker (C3 01) nor a JSON object")]
    UnknownFormat { byte: u8 },
    #[error("unknown writer schema fingerprint {fingerprint}")]
    UnknownFingerprint { fingerprint: String },
    #[error("invalid avro body: {0}")]
    Avro(String),
    #[error("{trailing} trailing bytes after the avro body")]
    TrailingBytes { trailing: usize },
    #[error("this topic takes only Avro single-object records, not JSON")]
    JsonNotAccepted,
    #[error("invalid json: {0}")]
    Json(String),
    #[error("invalid record: {0}")]
    Invalid(String),
}

impl DecodeError {
    /// A short stable code, used as the dead-letter reason and as a metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::UnknownFormat { .. } => "unknown_format",
            DecodeError::UnknownFingerprint { .. } => "unknown_fingerprint",
            DecodeError::Avro(_) => "avro",
            DecodeError::TrailingBytes { .. } => "trailing_bytes",
            DecodeError::JsonNotAccepted => "json_not_accepted",
            DecodeError::Json(_) => "json",
            DecodeError::Invalid(_) => "invalid",
        }
    }
}

/// Why a record could not be encoded; a bug in the caller, never caused by input bytes.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode record: {0}")]
pub struct EncodeError(String);

/// Encoder and decoder of one record type. Build once and share; it is immutable.
#[derive(Debug)]
pub struct Codec<T> {
    schema: Schema,
    fingerprint: [u8; 8],
    writers: HashMap<[u8; 8], Schema>,
    _record: PhantomData<fn() -> T>,
}

fn parse_schema(text: &str) -> Schema {
    // The schemas are compiled into the binary and covered by tests; failing here is a
    // build defect, not an input error.
    #[allow(clippy::expect_used)]
    Schema::parse_str(text).expect("schemas/avro/*.avsc must parse")
}

/// CRC-64-AVRO fingerprint of a schema, little-endian as the single-object encoding wants.
pub fn fingerprint(schema: &Schema) -> [u8; 8] {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

impl<T: Record> Default for Codec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Record> Codec<T> {
    pub fn new() -> Self {
        static LIMIT: Once = Once::new();
        LIMIT.call_once(|| {
            apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
        });
        let schema = parse_schema(T::SCHEMA);
        let fingerprint = fingerprint(&schema);
        let mut writers = HashMap::new();
        for past in T::PAST_SCHEMAS {
            let past = parse_schema(past);
            writers.insert(self::fingerprint(&past), past);
        }
        writers.insert(fingerprint, schema.clone());
        Codec { schema, fingerprint, writers, _record: PhantomData }
    }

    /// The fingerprint of the schema this codec writes.
    pub fn fingerprint(&self) -> [u8; 8] {
        self.fingerprint
    }

    /// Avro single-object encoding of `record`.
    pub fn encode(&self, record: &T) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&AVRO_MAGIC);
        out.extend_from_slice(&self.fingerprint);
        if record.write_current(&mut out) {
            return Ok(out);
        }
        let value = apache_avro::to_value(record).map_err(|e| EncodeError(e.to_string()))?;
        let body = apache_avro::to_avro_datum(&self.schema, value).map_err(|e| EncodeError(e.to_string()))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes Avro single-object bytes, or a JSON object where the record type accepts it,
    /// and validates the result.
    pub fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
        let record = match (bytes.first(), first) {
            (None, _) => return Err(DecodeError::Empty),
            (Some(0xC3), _) => self.decode_avro(bytes)?,
            (_, Some(b'{')) if T::ACCEPTS_JSON => {
                serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?
            }
            (_, Some(b'{')) => return Err(DecodeError::JsonNotAccepted),
            (Some(&byte), _) => return Err(DecodeError::UnknownFormat { byte }),
        };
        record.validate().map_err(DecodeError::Invalid)?;
        Ok(record)
    }

    /// [`decode`](Self::decode) over `into`: records of the current schema are read in
    /// place, reusing `into`'s allocations (a consumer of millions of records decodes each
    /// into the same one); anything else is decoded as by `decode`. On error, `into` holds
    /// unspecified content.
    pub fn decode_into(&self, bytes: &[u8], into: &mut T) -> Result<(), DecodeError> {
        if bytes.len() >= HEADER_LEN && bytes[..2] == AVRO_MAGIC && bytes[2..HEADER_LEN] == self.fingerprint {
            let mut reader = reader::Reader::new(&bytes[HEADER_LEN..]);
            if let Some(read) = T::read_current_into(&mut reader, into) {
                read.map_err(DecodeError::Avro)?;
                if reader.remaining() > 0 {
                    return Err(DecodeError::TrailingBytes { trailing: reader.remaining() });
                }
                return into.validate().map_err(DecodeError::Invalid);
            }
        }
        *into = self.decode(bytes)?;
        Ok(())
    }

    fn decode_avro(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::Truncated { len: bytes.len() });
        }
        if bytes[..2] != AVRO_MAGIC {
            return Err(DecodeError::UnknownFormat { byte: bytes[0] });
        }
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&bytes[2..HEADER_LEN]);
        let writer = self
            .writers
            .get(&fp)
            .ok_or_else(|| DecodeError::UnknownFingerprint { fingerprint: hex::encode(fp) })?;
        let mut body = &bytes[HEADER_LEN..];
        if fp == self.fingerprint {
            let mut reader = reader::Reader::new(body);
            if let Some(record) = T::read_current(&mut reader) {
                let record = record.map_err(DecodeError::Avro)?;
                return match reader.remaining() {
                    0 => Ok(record),
                    trailing => Err(DecodeError::TrailingBytes { trailing }),
                };
            }
        }
        // Resolving against the reader schema costs a walk and a copy of every value: skip
        // it when the writer is the reader's own schema.
        let reader = (fp != self.fingerprint).then_some(&self.schema);
        let value = apache_avro::from_avro_datum(writer, &mut body, reader)
            .map_err(|e| DecodeError::Avro(e.to_string()))?;
        if !body.is_empty() {
            return Err(DecodeError::TrailingBytes { trailing: body.len() });
        }
        apache_avro::from_value::<T>(&value).map_err(|e| DecodeError::Avro(e.to_string()))
    }
}

fn check_len(field: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(format!("{field} is {} bytes, more than the {MAX_FIELD_BYTES} allowed", value.len()));
    }
    Ok(())
}

fn check_ts(ts: i64) -> Result<(), String> {
    if ts <= 0 || ts > MAX_TS_MS {
        return Err(format!("ts {ts} is not a time in milliseconds between the epoch and 2106"));
    }
    Ok(())
}

fn check_required(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    check_len(field, value)
}

fn check_labels(labels: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("{} labels, more than the {MAX_LABELS} allowed", labels.len()));
    }
    for (k, v) in labels {
        check_required("label name", k)?;
        // The field's name is only spelt out for the error: this runs for every record.
        if v.len() > MAX_FIELD_BYTES {
            check_len(&format!("label {k}"), v)?;
        }
    }
    Ok(())
}

impl Record for Assertion {
    const SCHEMA: &'static str = include_str!("../../schemas/avro/assertion.avsc");
    const ACCEPTS_JSON: bool = true;

    fn read_current(body: &mut reader::Reader<'_>) -> Option<Result<Self, reader::Error>> {
        Some(reader::assertion(body))
    }

    fn read_current_into(body: &mut reader::Reader<'_>, into: &mut Self) -> Option<Result<(), reader::Error>> {
        Some(reader::assertion_into(body, into))
    }

    fn write_current(&self, out: &mut Vec<u8>) -> bool {
        writer::assertion(out, self);
        true
    }

    fn validate(&self) -> Result<(), String> {
        if self.assertion_id.is_nil() {
            return Err("assertion_id must not be the nil UUID".into());
        }
        check_ts(self.ts)?;
        if self.spec_version < 1 {
            return Err(format!("spec_version {} must be at least 1", self.spec_version));
        }
        if self.count < 1 || self.count > i64::from(u32::MAX) {
            return Err(format!("count {} must be between 1 and {}", self.count, u32::MAX));
        }
        check_required("spec", &self.spec)?;
        check_required("component", &self.component)?;
        check_required("instance", &self.instance)?;
        check_required("agent_id", &self.agent_id)?;
        check_required("requirement", &self.requirement)?;
        check_len("task", &self.task)?;
        check_len("message", &self.message)?;
        check_len("details", &self.details)?;
        if !self.details.is_empty() && serde_json::from_str::<serde::de::IgnoredAny>(&self.details).is_err() {
            return Err("details is not JSON text".into());
        }
        check_labels(&self.labels)
    }
}

impl Record for Heartbeat {
    const SCHEMA: &'static str = include_str!("../../schemas/avro/heartbeat.avsc");
    const ACCEPTS_JSON: bool = true;

    fn read_current(body: &mut reader::Reader<'_>) -> Option<Result<Self, reader::Error>> {
        Some(reader::heartbeat(body))
    }

    fn validate(&self) -> Result<(), String> {
        check_required("agent_id", &self.agent_id)?;
        check_required("component", &self.component)?;
        check_required("instance", &self.instance)?;
        check_ts(self.ts)?;
        check_ts(self.started_at).map_err(|e| format!("started_at: {e}"))?;
        check_len("sdk_version", &self.sdk_version)?;
        if self.checked < 0 || self.emitted < 0 || self.dropped < 0 {
            return Err("counters must not be negative".into());
        }
        for used in &self.specs {
            check_len("specs[].spec", &used.spec)?;
            if used.version < 1 {
                return Err(format!("specs[]: version {} of {:?} must be at least 1", used.version, used.spec));
            }
        }
        for coverage in &self.requirements {
            check_len("requirements[].spec", &coverage.spec)?;
            check_len("requirements[].requirement", &coverage.requirement)?;
            if coverage.evaluations < 0 {
                return Err(format!("requirements[]: evaluations of {:?} must not be negative", coverage.requirement));
            }
        }
        check_labels(&self.labels)
    }
}

impl Record for SpecVersion {
    const SCHEMA: &'static str = include_str!("../../schemas/avro/spec_version.avsc");
    const ACCEPTS_JSON: bool = false;

    fn validate(&self) -> Result<(), String> {
        check_required("spec", &self.spec)?;
        if self.version < 1 {
            return Err(format!("version {} must be at least 1", self.version));
        }
        Ok(())
    }
}

impl Record for AlarmEvent {
    const SCHEMA: &'static str = include_str!("../../schemas/avro/alarm_event.avsc");
    const ACCEPTS_JSON: bool = false;

    fn validate(&self) -> Result<(), String> {
        check_required("fingerprint", &self.fingerprint)?;
        check_required("rule", &self.rule)
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
