//! specaudit-producer: what writes into Kafka from the edge.
//!
//! - [`agent`]: the SDK a Rust service embeds to check its tasks against the spec;
//! - [`publish`] and [`catalog`]: publishing spec versions and reading the latest ones,
//!   used by `specctl` and the reporter's spec-editing API.

pub mod agent;
pub mod catalog;
pub mod publish;
pub mod sidecar;
