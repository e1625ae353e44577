//! The ingester's configuration (`deploy/ingester.toml` documents every key).

use std::time::Duration;

use serde::Deserialize;
use specaudit_core::config::{ClickHouseConfig, KafkaConfig, TelemetryConfig};

fn default_group() -> String {
    "specaudit-ingester".into()
}

/// Everything `specaudit-ingester` reads from its config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngesterConfig {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub clickhouse: ClickHouseConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
}

/// How records are batched into ClickHouse inserts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Kafka consumer group; every copy of the ingester joins it.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// A table's batch is inserted when it holds this many rows...
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// ...or when its oldest row has waited this long.
    #[serde(default = "default_max_delay", with = "humantime_serde")]
    pub max_delay: Duration,
    /// First wait before retrying a failed insert; doubles up to `retry_max_backoff`.
    #[serde(default = "default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    #[serde(default = "default_retry_max_backoff", with = "humantime_serde")]
    pub retry_max_backoff: Duration,
}

fn default_max_rows() -> usize {
    50_000
}

fn default_max_delay() -> Duration {
    Duration::from_millis(500)
}

fn default_retry_backoff() -> Duration {
    Duration::from_millis(200)
}

fn default_retry_max_backoff() -> Duration {
    Duration::from_secs(10)
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            group_id: default_group(),
            max_rows: default_max_rows(),
            max_delay: default_max_delay(),
            retry_backoff: default_retry_backoff(),
            retry_max_backoff: default_retry_max_backoff(),
        }
    }
}
