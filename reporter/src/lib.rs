//! specaudit-reporter: compliance, coverage and version skew from ClickHouse (DESIGN.md
//! section 8), as JSON, CSV, Markdown or HTML on the command line and from a web server
//! with a server-rendered UI, bearer-token access control and a spec-editing API.
//!
//! Reports read the per-minute rollup with bound parameters only; the raw table is read
//! for failure messages alone. Spec edits go through the producer's `publish`, the same
//! code as `specctl`, with the authenticated principal as author.

pub mod assemble;
pub mod chart;
pub mod config;
pub mod html;
pub mod http;
pub mod query;
pub mod render;
pub mod report;
pub mod scope;

pub use config::ReporterConfig;
