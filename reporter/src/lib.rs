//! specaudit-reporter: compliance, coverage and version skew from ClickHouse, rendered as
//! JSON, CSV, Markdown or HTML.

pub mod query;
pub mod render;
pub mod report;

use serde::Deserialize;
use specaudit_core::config::{ClickHouseConfig, TelemetryConfig};

/// Everything `specaudit-reporter` reads from its config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReporterConfig {
    #[serde(default)]
    pub clickhouse: ClickHouseConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}
