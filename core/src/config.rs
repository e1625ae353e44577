//! Configuration: one TOML file per service plus `SPECAUDIT__SECTION__KEY` environment
//! overrides, deserialized into typed structs that reject unknown keys.
//!
//! The sections every service shares ([`KafkaConfig`], [`ClickHouseConfig`],
//! [`TelemetryConfig`]) live here; each service adds its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Environment variables with this prefix override file values: `SPECAUDIT__KAFKA__BROKERS`
/// sets `kafka.brokers`.
pub const ENV_PREFIX: &str = "SPECAUDIT";

/// Why a configuration could not be loaded; always names the file, key or variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} does not exist")]
    Missing { path: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Loads `T` from the TOML file at `path` (if given) and the environment.
pub fn load<T: DeserializeOwned>(path: Option<&Path>) -> Result<T, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// As [`load`] for a service binary: on error, prints the reason after the program's name
/// and returns the exit code for a bad config (2), for `main` to return.
pub fn load_or_exit_code<T: DeserializeOwned>(program: &str, path: Option<&Path>) -> Result<T, std::process::ExitCode> {
    load(path).map_err(|error| {
        eprintln!("{program}: {error}");
        std::process::ExitCode::from(2)
    })
}

/// As [`load`], with the environment passed in (for tests).
pub fn load_with_env<T: DeserializeOwned>(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(path) = path {
        if !path.exists() {
            return Err(ConfigError::Missing { path: path.display().to_string() });
        }
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let prefix = format!("{ENV_PREFIX}__");
    let overrides: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(overrides)),
    );
    let merged = builder.build().map_err(|e| ConfigError::Invalid(e.to_string()))?;
    merged.try_deserialize::<T>().map_err(|e| ConfigError::Invalid(e.to_string()))
}

fn default_brokers() -> String {
    "127.0.0.1:9092".into()
}

fn default_topic_prefix() -> String {
    "specaudit.".into()
}

/// Where Kafka is and how to talk to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Prefix of every specaudit topic.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Passed to librdkafka as is: `security.protocol`, `sasl.mechanisms`, `ssl.ca.location`...
    #[serde(default)]
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig { brokers: default_brokers(), topic_prefix: default_topic_prefix(), client: BTreeMap::new() }
    }
}

fn default_clickhouse_url() -> String {
    "http://127.0.0.1:8123".into()
}

fn default_database() -> String {
    "specaudit".into()
}

fn default_user() -> String {
    "default".into()
}

/// Where ClickHouse is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface.
    #[serde(default = "default_clickhouse_url")]
    pub url: String,
    #[serde(default = "default_database")]
    pub database: String,
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default)]
    pub password: String,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: default_clickhouse_url(),
            database: default_database(),
            user: default_user(),
            password: String::new(),
        }
    }
}

/// Log output shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

fn default_log_filter() -> String {
    "info".into()
}

/// Logs, `/metrics` and `/health`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of the `/metrics` and `/health` endpoint; none when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info,specaudit_ingester=debug`; `RUST_LOG` wins when set.
    #[serde(default = "default_log_filter")]
    pub log_filter: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { listen: None, log_format: LogFormat::default(), log_filter: default_log_filter() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ServiceConfig {
        #[serde(default)]
        kafka: KafkaConfig,
        #[serde(default)]
        telemetry: TelemetryConfig,
        #[serde(default, with = "humantime_serde")]
        flush_interval: Option<std::time::Duration>,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn file_values_are_typed() {
        let f = file("flush_interval = \"250ms\"\n[kafka]\nbrokers = \"k1:9092\"\n[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n[telemetry]\nlisten = \"127.0.0.1:9464\"\nlog_format = \"json\"\n");
        let c: ServiceConfig = load_with_env(Some(f.path()), no_env()).unwrap();
        assert_eq!(c.kafka.brokers, "k1:9092");
        assert_eq!(c.kafka.client["security.protocol"], "SASL_SSL");
        assert_eq!(c.telemetry.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.telemetry.log_format, LogFormat::Json);
        assert_eq!(c.flush_interval, Some(std::time::Duration::from_millis(250)));
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let c: ServiceConfig = load_with_env(None, no_env()).unwrap();
        assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(c.kafka.topic_prefix, "specaudit.");
    }

    #[test]
    fn unknown_key_is_refused_by_name() {
        let f = file("[kafka]\nbrokerz = \"k1:9092\"\n");
        let err = load_with_env::<ServiceConfig>(Some(f.path()), no_env()).unwrap_err().to_string();
        assert!(err.contains("brokerz"), "{err}");
    }

    #[test]
    fn unknown_section_is_refused_by_name() {
        let f = file("[kafak]\nbrokers = \"k1:9092\"\n");
        let err = load_with_env::<ServiceConfig>(Some(f.path()), no_env()).unwrap_err().to_string();
        assert!(err.contains("kafak"), "{err}");
    }

    #[test]
    fn bad_type_is_refused_with_its_key() {
        let f = file("[telemetry]\nlisten = \"not an address\"\n");
        let err = load_with_env::<ServiceConfig>(Some(f.path()), no_env()).unwrap_err().to_string();
        assert!(err.contains("listen") || err.contains("address"), "{err}");
        let f = file("flush_interval = \"soon\"\n");
        let err = load_with_env::<ServiceConfig>(Some(f.path()), no_env()).unwrap_err().to_string();
        assert!(err.contains("flush_interval") || err.contains("soon"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let f = file("[kafka]\nbrokers = \"k1:9092\"\n");
        let env = vec![
            ("SPECAUDIT__KAFKA__BROKERS".to_owned(), "k2:9092".to_owned()),
            ("SPECAUDIT_STATE_DIR".to_owned(), "/ignored".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let c: ServiceConfig = load_with_env(Some(f.path()), env).unwrap();
        assert_eq!(c.kafka.brokers, "k2:9092");
    }

    #[test]
    fn unknown_environment_key_is_refused_by_name() {
        let env = vec![("SPECAUDIT__KAFKA__BROKRS".to_owned(), "k2:9092".to_owned())];
        let err = load_with_env::<ServiceConfig>(None, env).unwrap_err().to_string();
        assert!(err.contains("brokrs"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = load_with_env::<ServiceConfig>(Some(Path::new("/nonexistent/x.toml")), no_env()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"));
    }
}
