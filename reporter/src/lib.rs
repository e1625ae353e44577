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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_config_loads() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/reporter.toml"));
        let config: ReporterConfig = specaudit_core::config::load_with_env(Some(path), Vec::new()).unwrap();
        assert_eq!(config.clickhouse.database, "specaudit");
    }
}
