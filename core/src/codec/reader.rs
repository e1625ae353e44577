//! A reader of Avro binary bodies for the hot record types, written against their current
//! schema field by field.
//!
//! `apache_avro` decodes a body into a `Value` tree and then deserializes the tree: two
//! passes and an allocation per value. The ingester decodes every assertion, so
//! [`Assertion`]s written with the current schema are read here in one pass straight into
//! the struct; older writer schemas still go through `apache_avro`'s schema resolution.
//! Heartbeats are read here too, for another reason: `apache_avro` reserves room for an
//! array's or map's block count before reading its items, so a forged count in a few
//! bytes would reserve gigabytes; here every item is read before it is stored.
//! The reader is checked against `apache_avro` on random records and random bytes
//! (`codec_tests.rs`): same records, and an error wherever `apache_avro` errs.

use std::collections::BTreeMap;

use crate::record::{Assertion, Heartbeat, Outcome, RequirementCoverage, Severity, SpecInUse};

/// Why a body could not be read; becomes [`DecodeError::Avro`](super::DecodeError::Avro).
pub type Error = String;

/// A cursor over one Avro binary body.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// Bytes left after the fields read so far.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// A zig-zag varint `long`, at most 10 bytes.
    pub fn long(&mut self) -> Result<i64, Error> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.bytes.get(i).ok_or("unexpected end of body in a long")?;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.bytes = &self.bytes[i + 1..];
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err("long of more than 10 bytes".to_owned())
    }

    fn len(&mut self, what: &str) -> Result<usize, Error> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| format!("negative {what} length {len}"))?;
        if len > self.bytes.len() {
            return Err(format!("{what} of {len} bytes runs past the end of the body"));
        }
        Ok(len)
    }

    /// A `string`: length, then UTF-8 bytes; borrowed from the body.
    pub fn str(&mut self) -> Result<&'a str, Error> {
        let len = self.len("string")?;
        let (text, rest) = self.bytes.split_at(len);
        let text = std::str::from_utf8(text).map_err(|e| format!("string is not UTF-8: {e}"))?;
        self.bytes = rest;
        Ok(text)
    }

    /// A `string`, owned.
    pub fn string(&mut self) -> Result<String, Error> {
        self.str().map(str::to_owned)
    }

    /// A `string` written over `out`, whose allocation is kept.
    pub fn string_into(&mut self, out: &mut String) -> Result<(), Error> {
        let text = self.str()?;
        out.clear();
        out.push_str(text);
        Ok(())
    }

    /// An `enum` index below `symbols`.
    pub fn symbol(&mut self, symbols: usize) -> Result<usize, Error> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .filter(|&i| i < symbols)
            .ok_or_else(|| format!("enum index {index} is not one of the {symbols} symbols"))
    }

    /// A `map` of strings: blocks of entries, each block's count negative when its byte
    /// size follows, ending with an empty block.
    pub fn string_map(&mut self) -> Result<BTreeMap<String, String>, Error> {
        let mut map = BTreeMap::new();
        self.string_map_into(&mut map)?;
        Ok(map)
    }

    /// A `map` of strings written over `map`.
    pub fn string_map_into(&mut self, map: &mut BTreeMap<String, String>) -> Result<(), Error> {
        map.clear();
        self.blocks(|r| {
            let key = r.string()?;
            let value = r.string()?;
            map.insert(key, value);
            Ok(())
        })
    }

    /// The blocks of an `array` or `map`: each block's count (negative when its byte size
    /// follows), `item` read that many times, until an empty block. Every item takes at
    /// least one byte, so a forged count ends at the body's end, having stored only what
    /// was read.
    fn blocks(&mut self, mut item: impl FnMut(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?;
            }
            for _ in 0..count.unsigned_abs() {
                item(self)?;
            }
        }
    }
}

/// Reads a [`Heartbeat`] body written with the current `heartbeat.avsc`.
pub fn heartbeat(r: &mut Reader<'_>) -> Result<Heartbeat, Error> {
    let agent_id = r.string()?;
    let component = r.string()?;
    let instance = r.string()?;
    let ts = r.long()?;
    let started_at = r.long()?;
    let sdk_version = r.string()?;
    let mut specs = Vec::new();
    r.blocks(|r| {
        specs.push(SpecInUse { spec: r.string()?, version: r.long()? });
        Ok(())
    })?;
    let (checked, emitted, dropped) = (r.long()?, r.long()?, r.long()?);
    let mut requirements = Vec::new();
    r.blocks(|r| {
        requirements.push(RequirementCoverage { spec: r.string()?, requirement: r.string()?, evaluations: r.long()? });
        Ok(())
    })?;
    let labels = r.string_map()?;
    Ok(Heartbeat { agent_id, component, instance, ts, started_at, sdk_version, specs, checked, emitted, dropped, requirements, labels })
}

/// Reads an [`Assertion`] body written with the current `assertion.avsc`.
pub fn assertion(r: &mut Reader<'_>) -> Result<Assertion, Error> {
    let mut a = Assertion::default();
    assertion_into(r, &mut a)?;
    Ok(a)
}

/// Reads an [`Assertion`] body over `a`, keeping its strings' allocations: decoding a
/// stream into one assertion allocates only when a string outgrows its buffer. On error,
/// `a` holds a mix of old and new fields.
pub fn assertion_into(r: &mut Reader<'_>, a: &mut Assertion) -> Result<(), Error> {
    let id = r.str()?;
    a.assertion_id = id.parse().map_err(|e| format!("assertion_id {id:?} is not a UUID: {e}"))?;
    a.ts = r.long()?;
    r.string_into(&mut a.spec)?;
    a.spec_version = r.long()?;
    r.string_into(&mut a.component)?;
    r.string_into(&mut a.instance)?;
    r.string_into(&mut a.agent_id)?;
    r.string_into(&mut a.requirement)?;
    r.string_into(&mut a.task)?;
    a.outcome = Outcome::ALL[r.symbol(Outcome::ALL.len())?];
    a.severity = [Severity::Critical, Severity::Major, Severity::Minor, Severity::Info][r.symbol(4)?];
    a.count = r.long()?;
    r.string_into(&mut a.message)?;
    r.string_into(&mut a.details)?;
    r.string_map_into(&mut a.labels)
}
