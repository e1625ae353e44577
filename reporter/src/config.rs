//! The reporter's config file (see `deploy/reporter.toml`): ClickHouse to read, Kafka to
//! publish spec edits to, the web server, its tokens, and report defaults. Unknown keys are
//! refused by name when the file loads; [`ReporterConfig::validate`] checks the rest.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use specaudit_core::config::{ClickHouseConfig, KafkaConfig, TelemetryConfig};

/// Everything `specaudit-reporter` reads from its config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReporterConfig {
    #[serde(default)]
    pub clickhouse: ClickHouseConfig,
    /// Where edited specs are published (the same topics `specctl` writes).
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub report: ReportConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// The web UI and API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Beyond loopback only with `auth.tokens` configured.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Mark the login cookie `Secure` (set when a TLS proxy fronts the reporter).
    #[serde(default)]
    pub secure_cookies: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { listen: default_listen(), secure_cookies: false }
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read every report and page.
    Viewer,
    /// A viewer who may also change the specs whose `owners` name them or one of their groups.
    Editor,
    /// May read and change everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

/// Bearer tokens. With none configured the server is read-only and only listens on loopback.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// One principal's token: give either the token itself or its hex sha256 (keeps the secret
/// out of the file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Recorded as the author of the spec versions this principal publishes.
    pub principal: String,
    pub role: Role,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// Extra names matched against a spec's `owners` (e.g. `team-compute`).
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_range() -> Duration {
    Duration::from_secs(86_400)
}

fn default_silent_after() -> Duration {
    Duration::from_secs(120)
}

fn default_buckets() -> u64 {
    120
}

fn default_recent_failures() -> u64 {
    50
}

/// Report defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// How far back a report looks when the filters do not say.
    #[serde(default = "default_range", with = "humantime_serde")]
    pub default_range: Duration,
    /// An agent with no heartbeat for this long is silent (agents beat every 30 s by default).
    #[serde(default = "default_silent_after", with = "humantime_serde")]
    pub silent_after: Duration,
    /// Bars in the pass/fail chart (buckets are whole minutes).
    #[serde(default = "default_buckets")]
    pub buckets: u64,
    /// Failures listed on component and requirement pages.
    #[serde(default = "default_recent_failures")]
    pub recent_failures: u64,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            default_range: default_range(),
            silent_after: default_silent_after(),
            buckets: default_buckets(),
            recent_failures: default_recent_failures(),
        }
    }
}

/// Why a loaded config cannot be used; each names its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error("clickhouse.database {0:?} must be letters, digits and underscores, not starting with a digit")]
    Database(String),
    #[error("auth.tokens[{index}] ({principal}): give exactly one of token and token_sha256")]
    TokenSource { index: usize, principal: String },
    #[error("auth.tokens[{index}] ({principal}): a token must be at least 16 characters of A-Z a-z 0-9 . _ ~ + / = -")]
    WeakToken { index: usize, principal: String },
    #[error("auth.tokens[{index}] ({principal}): token_sha256 must be 64 hex digits")]
    BadHash { index: usize, principal: String },
    #[error("auth.tokens[{index}]: principal must not be empty")]
    NoPrincipal { index: usize },
    #[error("auth.tokens[{index}] ({principal}): the same token is configured twice")]
    Duplicate { index: usize, principal: String },
    #[error("report.buckets must be between 1 and 2000, not {0}")]
    Buckets(u64),
    #[error(
        "server.listen {0} is not a loopback address and no auth.tokens are configured: refusing to serve \
         reports and spec edits to the network without authentication (configure [[auth.tokens]] or listen on 127.0.0.1)"
    )]
    OpenToNetwork(SocketAddr),
}

/// Characters a token may hold: safe in a header and in a cookie without quoting.
pub fn token_chars_ok(token: &str) -> bool {
    token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '+' | '/' | '=' | '-'))
}

impl ReporterConfig {
    /// Checks what serde cannot: names, token strength, and (for `serve`) that the server is
    /// not open to the network without authentication.
    pub fn validate(&self, serving: bool) -> Result<(), ConfigProblem> {
        let db = &self.clickhouse.database;
        let legal = !db.is_empty()
            && db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !db.starts_with(|c: char| c.is_ascii_digit());
        if !legal {
            return Err(ConfigProblem::Database(db.clone()));
        }
        if self.report.buckets == 0 || self.report.buckets > 2000 {
            return Err(ConfigProblem::Buckets(self.report.buckets));
        }
        let mut hashes = Vec::new();
        for (index, t) in self.auth.tokens.iter().enumerate() {
            let principal = t.principal.clone();
            if t.principal.trim().is_empty() {
                return Err(ConfigProblem::NoPrincipal { index });
            }
            let hash = match (&t.token, &t.token_sha256) {
                (Some(token), None) => {
                    if token.len() < 16 || !token_chars_ok(token) {
                        return Err(ConfigProblem::WeakToken { index, principal });
                    }
                    crate::http::auth::sha256_hex(token)
                }
                (None, Some(hash)) => {
                    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                        return Err(ConfigProblem::BadHash { index, principal });
                    }
                    hash.to_ascii_lowercase()
                }
                _ => return Err(ConfigProblem::TokenSource { index, principal }),
            };
            if hashes.contains(&hash) {
                return Err(ConfigProblem::Duplicate { index, principal });
            }
            hashes.push(hash);
        }
        if serving && self.auth.tokens.is_empty() && !self.server.listen.ip().is_loopback() {
            return Err(ConfigProblem::OpenToNetwork(self.server.listen));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(text: &str) -> Result<ReporterConfig, String> {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        specaudit_core::config::load_with_env::<ReporterConfig>(Some(f.path()), Vec::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_documented_example_config_loads_and_validates() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/reporter.toml"));
        let config: ReporterConfig = specaudit_core::config::load_with_env(Some(path), Vec::new()).unwrap();
        assert_eq!(config.clickhouse.database, "specaudit");
        assert_eq!(config.server.listen, default_listen());
        config.validate(true).unwrap();
    }

    #[test]
    fn a_bad_key_is_named() {
        let err = load("[server]\nlisten = \"127.0.0.1:1\"\nlistne = 1\n").unwrap_err();
        assert!(err.contains("listne"), "{err}");
        let err = load("[[auth.tokens]]\nprincipal = \"a\"\nrole = \"root\"\ntoken = \"x\"\n").unwrap_err();
        assert!(err.contains("root"), "{err}");
    }

    #[test]
    fn refuses_the_network_without_tokens() {
        let config = load("[server]\nlisten = \"0.0.0.0:8080\"\n").unwrap();
        let err = config.validate(true).unwrap_err().to_string();
        assert!(err.contains("0.0.0.0:8080") && err.contains("auth.tokens"), "{err}");
        // `report` on the command line does not listen.
        config.validate(false).unwrap();
        let config = load(
            "[server]\nlisten = \"0.0.0.0:8080\"\n[[auth.tokens]]\nprincipal = \"ops\"\nrole = \"admin\"\ntoken = \"0123456789abcdef0123\"\n",
        )
        .unwrap();
        config.validate(true).unwrap();
    }

    #[test]
    fn token_problems_are_named() {
        let bad = |tokens: &str| load(tokens).unwrap().validate(true).unwrap_err().to_string();
        assert!(bad("[[auth.tokens]]\nprincipal = \"a\"\nrole = \"viewer\"\ntoken = \"short\"\n").contains("at least 16"));
        assert!(bad("[[auth.tokens]]\nprincipal = \"a\"\nrole = \"viewer\"\n").contains("exactly one"));
        assert!(bad("[[auth.tokens]]\nprincipal = \"a\"\nrole = \"viewer\"\ntoken_sha256 = \"zz\"\n").contains("64 hex"));
        assert!(bad("[clickhouse]\ndatabase = \"x; DROP\"\n").contains("clickhouse.database"));
    }
}
