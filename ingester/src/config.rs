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
    /// Kafka static membership (`group.instance.id`): a name unique to this copy and stable
    /// across its restarts (e.g. the host name). A copy that restarts within the session
    /// timeout gets its partitions back at once, without a rebalance of the group; a copy
    /// that stops for good keeps its partitions until the session timeout ends.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// A table's batch is inserted when it holds this many rows...
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// ...or this many bytes of Kafka payload...
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
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
    100_000
}

fn default_max_bytes() -> usize {
    32 << 20
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
            instance_id: None,
            max_rows: default_max_rows(),
            max_bytes: default_max_bytes(),
            max_delay: default_max_delay(),
            retry_backoff: default_retry_backoff(),
            retry_max_backoff: default_retry_max_backoff(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_config_loads_with_the_defaults() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/ingester.toml"));
        let config: IngesterConfig = specaudit_core::config::load_with_env(Some(path), Vec::new()).unwrap();
        let defaults = IngestConfig::default();
        assert_eq!(config.ingest.max_rows, defaults.max_rows);
        assert_eq!(config.ingest.max_bytes, defaults.max_bytes);
        assert_eq!(config.ingest.max_delay, defaults.max_delay);
        assert_eq!(config.ingest.group_id, defaults.group_id);
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
    }

    #[test]
    fn a_bad_key_stops_the_ingester_with_its_name() {
        let env = vec![("SPECAUDIT__INGEST__MAX_ROWZ".to_owned(), "5".to_owned())];
        let err = specaudit_core::config::load_with_env::<IngesterConfig>(None, env).unwrap_err();
        assert!(err.to_string().contains("max_rowz"), "{err}");
    }
}
