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
            // No `try_parsing`: it would turn a string that looks like a number into one
            // and back (a password "007" becoming "7"); typed keys parse strings anyway.
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
///
/// Checked as it is read: a cluster setting given without `cluster`, or a value that
/// cannot work, stops the service at start with the key's name.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "ClickHouseFile")]
pub struct ClickHouseConfig {
    /// HTTP interface.
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Cluster mode (docs/cluster.md); `None` = one server.
    pub cluster: Option<ClusterConfig>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: default_clickhouse_url(),
            database: default_database(),
            user: default_user(),
            password: String::new(),
            cluster: None,
        }
    }
}

/// Replicated tables on every node of a ClickHouse cluster, behind Distributed tables
/// with the names readers use (docs/cluster.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The cluster's name in the servers' `remote_servers`.
    pub name: String,
    /// ZooKeeper folder of the database's replicated tables; `{database}` is replaced by
    /// the database's name, server macros such as `{shard}` are filled by each server.
    pub zookeeper_path: String,
    /// `insert_quorum` of every insert (0: acknowledged by one replica per shard).
    pub insert_quorum: u32,
}

/// Where replicated tables live in ZooKeeper unless `clickhouse.zookeeper_path` says otherwise.
pub const DEFAULT_ZOOKEEPER_PATH: &str = "/clickhouse/tables/{shard}/{database}";

/// `[clickhouse]` as written; [`ClickHouseConfig`] is what it means.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClickHouseFile {
    #[serde(default = "default_clickhouse_url")]
    url: String,
    #[serde(default = "default_database")]
    database: String,
    #[serde(default = "default_user")]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    zookeeper_path: Option<String>,
    #[serde(default)]
    insert_quorum: Option<u32>,
}

/// Names ClickHouse takes without quotes: letters, digits, underscores, no leading digit.
pub fn plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

impl TryFrom<ClickHouseFile> for ClickHouseConfig {
    type Error = String;

    fn try_from(file: ClickHouseFile) -> Result<Self, String> {
        let cluster = match file.cluster {
            None => {
                if file.zookeeper_path.is_some() {
                    return Err("clickhouse.zookeeper_path is set but clickhouse.cluster is not: replicated tables need a cluster"
                        .into());
                }
                if file.insert_quorum.is_some() {
                    return Err("clickhouse.insert_quorum is set but clickhouse.cluster is not: a quorum needs replicated tables"
                        .into());
                }
                None
            }
            Some(name) => {
                if !plain_identifier(&name) {
                    return Err(format!(
                        "clickhouse.cluster {name:?} must be a cluster of the servers' remote_servers named with letters, digits and underscores"
                    ));
                }
                let zookeeper_path = file.zookeeper_path.unwrap_or_else(|| DEFAULT_ZOOKEEPER_PATH.into());
                check_zookeeper_path(&zookeeper_path)?;
                Some(ClusterConfig { name, zookeeper_path, insert_quorum: file.insert_quorum.unwrap_or(0) })
            }
        };
        Ok(ClickHouseConfig { url: file.url, database: file.database, user: file.user, password: file.password, cluster })
    }
}

fn check_zookeeper_path(path: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("clickhouse.zookeeper_path {path:?} {why}"));
    if !path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return bad("must be an absolute ZooKeeper path without a trailing slash");
    }
    if path.contains('\'') || path.contains('\\') || path.chars().any(char::is_control) {
        return bad("must not contain quotes, backslashes or control characters");
    }
    if !path.contains("{shard}") {
        return bad("must contain the {shard} macro: without it the shards would replicate each other");
    }
    if path.contains("{replica}") {
        return bad("must not contain the {replica} macro: the replicas of a shard share the path");
    }
    Ok(())
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
    #[serde(default = "default_log_filter", deserialize_with = "log_filter")]
    pub log_filter: String,
}

/// A filter `tracing` can use; refused at start, where logging would otherwise fall back
/// to `info` without a word.
fn log_filter<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let filter = String::deserialize(deserializer)?;
    tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| serde::de::Error::custom(format!("{filter:?} is not a log filter: {e}")))?;
    Ok(filter)
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
    fn environment_strings_are_kept_as_written_and_typed_keys_still_parse() {
        let env = vec![
            ("SPECAUDIT__CLICKHOUSE__PASSWORD".to_owned(), "007".to_owned()),
            ("SPECAUDIT__CLICKHOUSE__USER".to_owned(), "1e5".to_owned()),
            ("SPECAUDIT__CLICKHOUSE__DATABASE".to_owned(), "TRUE".to_owned()),
            ("SPECAUDIT__CLICKHOUSE__CLUSTER".to_owned(), "c2".to_owned()),
            ("SPECAUDIT__CLICKHOUSE__INSERT_QUORUM".to_owned(), "2".to_owned()),
        ];
        let c = load_with_env::<WithClickHouse>(None, env).expect("loads").clickhouse;
        assert_eq!((c.password.as_str(), c.user.as_str(), c.database.as_str()), ("007", "1e5", "TRUE"));
        assert_eq!(c.cluster.map(|c| c.insert_quorum), Some(2));
    }

    #[test]
    fn a_log_filter_tracing_cannot_use_is_refused_by_name() {
        let f = file("[telemetry]\nlog_filter = \"info,specaudit=verbose\"\n");
        let err = load_with_env::<ServiceConfig>(Some(f.path()), no_env()).unwrap_err().to_string();
        assert!(err.contains("log_filter") && err.contains("verbose"), "{err}");
        let f = file("[telemetry]\nlog_filter = \"warn,specaudit_ingester=debug\"\n");
        assert!(load_with_env::<ServiceConfig>(Some(f.path()), no_env()).is_ok());
    }

    #[test]
    fn unknown_environment_key_is_refused_by_name() {
        let env = vec![("SPECAUDIT__KAFKA__BROKRS".to_owned(), "k2:9092".to_owned())];
        let err = load_with_env::<ServiceConfig>(None, env).unwrap_err().to_string();
        assert!(err.contains("brokrs"), "{err}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct WithClickHouse {
        #[serde(default)]
        clickhouse: ClickHouseConfig,
    }

    fn clickhouse(text: &str) -> Result<ClickHouseConfig, String> {
        let f = file(text);
        load_with_env::<WithClickHouse>(Some(f.path()), no_env()).map(|c| c.clickhouse).map_err(|e| e.to_string())
    }

    #[test]
    fn without_a_cluster_clickhouse_is_one_server() {
        let c = clickhouse("[clickhouse]\nurl = \"http://ch:8123\"\n").expect("loads");
        assert_eq!(c.url, "http://ch:8123");
        assert_eq!(c.database, "specaudit");
        assert_eq!(c.cluster, None);
        assert_eq!(load_with_env::<WithClickHouse>(None, no_env()).expect("loads").clickhouse.cluster, None);
    }

    #[test]
    fn a_cluster_gets_the_default_zookeeper_path_and_no_quorum() {
        let c = clickhouse("[clickhouse]\ncluster = \"specaudit_cluster\"\n").expect("loads");
        let cluster = c.cluster.expect("a cluster");
        assert_eq!(cluster.name, "specaudit_cluster");
        assert_eq!(cluster.zookeeper_path, DEFAULT_ZOOKEEPER_PATH);
        assert_eq!(cluster.insert_quorum, 0);
        let env = vec![
            ("SPECAUDIT__CLICKHOUSE__CLUSTER".to_owned(), "c2".to_owned()),
            ("SPECAUDIT__CLICKHOUSE__ZOOKEEPER_PATH".to_owned(), "/ch/{layer}-{shard}/{database}".to_owned()),
            ("SPECAUDIT__CLICKHOUSE__INSERT_QUORUM".to_owned(), "2".to_owned()),
        ];
        let cluster = load_with_env::<WithClickHouse>(None, env).expect("loads").clickhouse.cluster.expect("a cluster");
        assert_eq!(cluster, ClusterConfig { name: "c2".into(), zookeeper_path: "/ch/{layer}-{shard}/{database}".into(), insert_quorum: 2 });
    }

    #[test]
    fn cluster_settings_without_a_cluster_are_refused_by_name() {
        let err = clickhouse("[clickhouse]\nzookeeper_path = \"/ch/{shard}\"\n").expect_err("refused");
        assert!(err.contains("clickhouse.zookeeper_path") && err.contains("clickhouse.cluster"), "{err}");
        let err = clickhouse("[clickhouse]\ninsert_quorum = 2\n").expect_err("refused");
        assert!(err.contains("clickhouse.insert_quorum") && err.contains("clickhouse.cluster"), "{err}");
    }

    #[test]
    fn unusable_cluster_values_are_refused_by_name() {
        for name in ["", "my cluster", "a;DROP", "1st"] {
            let err = clickhouse(&format!("[clickhouse]\ncluster = {name:?}\n")).expect_err("refused");
            assert!(err.contains("clickhouse.cluster"), "{name:?}: {err}");
        }
        for path in ["clickhouse/{shard}", "/ch/{shard}/", "/ch/{database}", "/ch/{shard}/{replica}", "/ch/{shard}'x", "/ch//{shard}"] {
            let err = clickhouse(&format!("[clickhouse]\ncluster = \"c\"\nzookeeper_path = {path:?}\n")).expect_err("refused");
            assert!(err.contains("clickhouse.zookeeper_path"), "{path:?}: {err}");
        }
        let err = clickhouse("[clickhouse]\ncluster = \"c\"\ninsert_quorum = -1\n").expect_err("refused");
        assert!(err.contains("insert_quorum"), "{err}");
        let err = clickhouse("[clickhouse]\nclustr = \"c\"\n").expect_err("refused");
        assert!(err.contains("clustr"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = load_with_env::<ServiceConfig>(Some(Path::new("/nonexistent/x.toml")), no_env()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"));
    }
}
