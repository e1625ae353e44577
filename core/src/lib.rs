//! specaudit-core: what every specaudit part shares.
//!
//! - [`spec`]: the spec model (parse, validate, canonical JSON, inheritance) and
//!   [`check`]: the declarative check engine (CEL and JSON Schema);
//! - [`record`] and [`codec`]: the records on the topics and their wire format;
//! - [`config`], [`kafka`], [`clickhouse`], [`telemetry`]: plumbing for the binaries,
//!   behind the default `runtime` feature.

pub mod codec;
#[cfg(feature = "runtime")]
pub mod config;
pub mod record;
pub mod check;
pub mod spec;
#[cfg(feature = "runtime")]
pub mod clickhouse;
#[cfg(feature = "runtime")]
pub mod kafka;
#[cfg(feature = "runtime")]
pub mod telemetry;
