//! The sidecar: the agent SDK behind HTTP on 127.0.0.1 and a JSON-lines stream, for
//! services written in any language.
//!
//! One sidecar serves every component of its host: each request names its component, and
//! the sidecar starts one agent per component on first use, for at most
//! `sidecar.max_components` components.

mod http;
mod lines;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use specaudit_core::config::{KafkaConfig, TelemetryConfig};
use specaudit_core::record::Outcome;

pub use self::http::router;
pub use self::lines::serve_lines;
use crate::agent::{Agent, AgentConfig, AgentError, CheckResult};

/// Everything `specaudit-sidecar` reads from its config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarConfig {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub sidecar: SidecarSettings,
}

/// The sidecar's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarSettings {
    /// Where the HTTP API listens; loopback only is the safe choice.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// This host's instance name, in every assertion; the host name when absent.
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Largest request body accepted.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Bytes of assertions that may wait for Kafka, per component.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: usize,
    #[serde(default = "default_start_timeout", with = "humantime_serde")]
    pub start_timeout: Duration,
    /// Most components the sidecar starts agents for. Each agent holds two Kafka clients
    /// and two threads, so a service that names components from its input cannot make
    /// the sidecar start agents without bound; further components are refused.
    #[serde(default = "default_max_components")]
    pub max_components: NonZeroUsize,
    /// Most distinct task names one requirement rolls up by name per rollup interval, in
    /// each component's agent. Task names come from the requests, so further tasks'
    /// outcomes are rolled up under the task `(other)` rather than held without bound.
    #[serde(default = "crate::agent::default_max_tasks")]
    pub max_tasks_per_interval: NonZeroUsize,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7070))
}

fn default_max_body() -> usize {
    1024 * 1024
}

fn default_queue_bytes() -> usize {
    16 * 1024 * 1024
}

fn default_start_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_components() -> NonZeroUsize {
    NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN)
}

impl Default for SidecarSettings {
    fn default() -> Self {
        SidecarSettings {
            listen: default_listen(),
            instance: None,
            labels: BTreeMap::new(),
            max_body_bytes: default_max_body(),
            queue_bytes: default_queue_bytes(),
            start_timeout: default_start_timeout(),
            max_components: default_max_components(),
            max_tasks_per_interval: crate::agent::default_max_tasks(),
        }
    }
}

/// `POST /v1/check` and the `check` line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub component: String,
    pub task: String,
    pub facts: Value,
}

/// `POST /v1/assert` and the `assert` line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertRequest {
    pub component: String,
    /// `<defining component>/<name>`.
    pub requirement: String,
    #[serde(default)]
    pub task: String,
    pub outcome: Outcome,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: Option<Value>,
}

/// One outcome, as the API returns it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutcomeView {
    pub spec: String,
    pub spec_version: i64,
    pub requirement: String,
    pub outcome: Outcome,
    pub message: String,
}

impl From<CheckResult> for OutcomeView {
    fn from(r: CheckResult) -> Self {
        OutcomeView { spec: r.spec.to_string(), spec_version: r.spec_version, requirement: r.requirement.to_string(), outcome: r.outcome, message: r.message }
    }
}

/// Why a request was refused; each maps to a 4xx with the message as the body.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request body is not valid JSON: {0}")]
    BadJson(String),
    #[error("the request is longer than the {0} bytes allowed (sidecar.max_body_bytes)")]
    TooLarge(usize),
    #[error("a request must be a JSON object, not {0}")]
    NotObject(&'static str),
    #[error("facts must be a JSON object, not {0}")]
    FactsNotObject(&'static str),
    #[error("component must be a dot-separated path, got {0:?}")]
    BadComponent(String),
    #[error("the sidecar already runs agents for {max} components, its limit (sidecar.max_components): component {component:?} is refused")]
    TooManyComponents { component: String, max: usize },
    #[error("the sidecar is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("the request failed inside the sidecar: {0}")]
    Internal(String),
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a request of the HTTP API or the JSON-lines mode: a JSON object with the
/// fields of `T`. Anything else is refused by what it is, since serde would read an array
/// as the fields in order and report a confusing type error about the first one.
pub(crate) fn parse_request<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RequestError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| RequestError::BadJson(e.to_string()))?;
    if !value.is_object() {
        return Err(RequestError::NotObject(kind(&value)));
    }
    serde_json::from_value(value).map_err(|e| RequestError::BadJson(e.to_string()))
}

/// The place of one component's agent. Its lock is held while the agent starts, so
/// concurrent first requests wait for that one start instead of each starting an agent.
/// `None` until started (or again after a failed start, retried by the next request).
type Slot = Arc<Mutex<Option<Agent>>>;

/// The agents of this host, one per component, started on first use.
pub struct Sidecar {
    config: SidecarConfig,
    instance: String,
    agents: Mutex<HashMap<String, Slot>>,
    /// Set by `shutdown` (under the `agents` lock): no agent starts after it.
    closed: AtomicBool,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar").field("instance", &self.instance).finish()
    }
}

impl Sidecar {
    pub fn new(config: SidecarConfig) -> Arc<Sidecar> {
        let instance = config.sidecar.instance.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "localhost".into())
        });
        Arc::new(Sidecar { config, instance, agents: Mutex::new(HashMap::new()), closed: AtomicBool::new(false) })
    }

    /// The agent of `component`, started if needed (blocks up to the start timeout).
    pub fn agent(&self, component: &str) -> Result<Agent, RequestError> {
        let legal = !component.is_empty()
            && component.len() <= 200
            && component.split('.').all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'));
        if !legal {
            return Err(RequestError::BadComponent(component.to_owned()));
        }
        let slot = self.slot(component)?;
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(agent) = slot.as_ref() {
            return Ok(agent.clone());
        }
        // `shutdown` may have passed this slot while this request waited for it.
        if self.closed.load(Ordering::Relaxed) {
            return Err(RequestError::ShuttingDown);
        }
        let agent = Agent::start(self.agent_config(component))?;
        *slot = Some(agent.clone());
        Ok(agent)
    }

    /// The settings of `component`'s agent.
    fn agent_config(&self, component: &str) -> AgentConfig {
        let mut config = AgentConfig::new(self.config.kafka.clone(), component, self.instance.clone());
        config.labels = self.config.sidecar.labels.clone();
        config.queue_bytes = self.config.sidecar.queue_bytes;
        config.start_timeout = self.config.sidecar.start_timeout;
        config.max_tasks_per_interval = self.config.sidecar.max_tasks_per_interval;
        config
    }

    /// The slot of `component`, made on its first request unless `sidecar.max_components`
    /// are known already. A component keeps its slot even if its agent fails to start.
    fn slot(&self, component: &str) -> Result<Slot, RequestError> {
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::Relaxed) {
            return Err(RequestError::ShuttingDown);
        }
        if let Some(slot) = agents.get(component) {
            return Ok(Arc::clone(slot));
        }
        let max = self.config.sidecar.max_components.get();
        if agents.len() >= max {
            return Err(RequestError::TooManyComponents { component: component.to_owned(), max });
        }
        Ok(Arc::clone(agents.entry(component.to_owned()).or_default()))
    }

    pub fn check(&self, request: &CheckRequest) -> Result<Vec<OutcomeView>, RequestError> {
        if !request.facts.is_object() {
            return Err(RequestError::FactsNotObject(kind(&request.facts)));
        }
        let agent = self.agent(&request.component)?;
        Ok(agent.check(&request.task, &request.facts).into_iter().map(OutcomeView::from).collect())
    }

    pub fn assert(&self, request: &AssertRequest) -> Result<Vec<OutcomeView>, RequestError> {
        let agent = self.agent(&request.component)?;
        let results = agent.assert(&request.requirement, &request.task, request.outcome, &request.message, request.details.as_ref())?;
        Ok(results.into_iter().map(OutcomeView::from).collect())
    }

    /// The requirements that apply to `component`, as (spec, requirement id).
    pub fn requirements(&self, component: &str) -> Result<Vec<(String, String)>, RequestError> {
        Ok(self.agent(component)?.requirements())
    }

    /// Refuses further requests and flushes every agent, each within `deadline`. An agent
    /// still starting is waited for and then flushed too.
    pub fn shutdown(&self, deadline: Duration) {
        let slots: Vec<Slot> = {
            let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
            self.closed.store(true, Ordering::Relaxed);
            agents.values().cloned().collect()
        };
        for slot in slots {
            let agent = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(agent) = agent {
                agent.shutdown(deadline);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_config_loads_with_the_defaults() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sidecar.toml"));
        let config: SidecarConfig = specaudit_core::config::load_with_env(Some(path), Vec::new()).unwrap();
        let defaults = SidecarSettings::default();
        assert_eq!(config.sidecar.listen, defaults.listen);
        assert_eq!(config.sidecar.max_body_bytes, defaults.max_body_bytes);
        assert_eq!(config.sidecar.queue_bytes, defaults.queue_bytes);
        assert_eq!(config.sidecar.start_timeout, defaults.start_timeout);
        assert_eq!(config.sidecar.max_components, defaults.max_components);
        assert_eq!(config.sidecar.max_tasks_per_interval, defaults.max_tasks_per_interval);
    }

    #[test]
    fn max_components_is_read_and_zero_is_refused() {
        let env = vec![("SPECAUDIT__SIDECAR__MAX_COMPONENTS".to_owned(), "3".to_owned())];
        let config = specaudit_core::config::load_with_env::<SidecarConfig>(None, env).unwrap();
        assert_eq!(config.sidecar.max_components.get(), 3);
        let env = vec![("SPECAUDIT__SIDECAR__MAX_COMPONENTS".to_owned(), "0".to_owned())];
        let err = specaudit_core::config::load_with_env::<SidecarConfig>(None, env).unwrap_err();
        assert!(err.to_string().contains("max_components"), "{err}");
    }

    #[test]
    fn max_tasks_per_interval_is_read_and_zero_is_refused() {
        let env = vec![("SPECAUDIT__SIDECAR__MAX_TASKS_PER_INTERVAL".to_owned(), "7".to_owned())];
        let config = specaudit_core::config::load_with_env::<SidecarConfig>(None, env).unwrap();
        assert_eq!(config.sidecar.max_tasks_per_interval.get(), 7);
        let env = vec![("SPECAUDIT__SIDECAR__MAX_TASKS_PER_INTERVAL".to_owned(), "0".to_owned())];
        let err = specaudit_core::config::load_with_env::<SidecarConfig>(None, env).unwrap_err();
        assert!(err.to_string().contains("max_tasks_per_interval"), "{err}");
    }

    #[test]
    fn each_agent_gets_the_sidecars_limits() {
        let env = vec![("SPECAUDIT__SIDECAR__MAX_TASKS_PER_INTERVAL".to_owned(), "7".to_owned()), ("SPECAUDIT__SIDECAR__QUEUE_BYTES".to_owned(), "4096".to_owned())];
        let config = specaudit_core::config::load_with_env::<SidecarConfig>(None, env).unwrap();
        let agent = Sidecar::new(config).agent_config("web");
        assert_eq!((agent.max_tasks_per_interval.get(), agent.queue_bytes), (7, 4096));
    }

    #[test]
    fn a_bad_key_is_refused_by_name() {
        let env = vec![("SPECAUDIT__SIDECAR__LISTN".to_owned(), "127.0.0.1:1".to_owned())];
        let err = specaudit_core::config::load_with_env::<SidecarConfig>(None, env).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }
}
