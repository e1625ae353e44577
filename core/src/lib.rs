//! specaudit-core: what every specaudit part shares.
//!
//! - [`spec`]: the spec model (parse, validate, canonical JSON, inheritance) and
//!   [`check`]: the declarative check engine (CEL and JSON Schema);
//! - [`record`] and [`codec`]: the records on the topics and their wire format;
//! - [`config`], [`kafka`], [`clickhouse`], [`telemetry`]: plumbing for the binaries.

pub mod codec;
pub mod config;
pub mod record;
pub mod check;
pub mod spec;
pub mod clickhouse;
pub mod kafka;
pub mod telemetry;
