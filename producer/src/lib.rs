//! specaudit-producer: what writes into Kafka from the edge.
//!
//! - [`agent`]: the SDK a Rust service embeds to check its tasks against the spec;
//! - [`publish`] and [`catalog`]: publishing spec versions (fenced per spec, so concurrent
//!   updates against one version never both land) and reading the latest ones, used by
//!   `specctl` and the reporter's spec-editing API; [`edit`]: fine-grained changes;
//! - [`history`] and [`diff`]: every version from spec-history, requirement-level diffs.

pub mod agent;
pub mod catalog;
pub mod diff;
pub mod edit;
pub mod history;
pub mod publish;
pub mod sidecar;
