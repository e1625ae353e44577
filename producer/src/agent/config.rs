//! How an agent is set up.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;
use specaudit_core::config::KafkaConfig;

/// Settings of one agent: where Kafka is, who the agent speaks for, and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// The component path this agent checks, e.g. `frontend.throttle`.
    pub component: String,
    /// This copy of the component, e.g. a host or pod name.
    pub instance: String,
    /// Attached to every assertion and heartbeat.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Bytes of assertions that may wait for Kafka; beyond it records are dropped and counted.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: usize,
    /// Identical passes within this interval travel as one assertion with a count.
    #[serde(default = "default_rollup", with = "humantime_serde")]
    pub rollup_interval: Duration,
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// At most this many fails and errors of one requirement are sent one by one per
    /// rollup interval; the rest travel as one counted assertion. No cap when absent.
    #[serde(default)]
    pub max_failures_per_interval: Option<u32>,
    /// Most distinct tasks whose rolled-up outcomes one requirement keeps by task name per
    /// rollup interval. Not counted here: the passes of the tasks it names (for a
    /// requirement of every task, of the first task it sees) and the skips of the first
    /// eight tasks that skip it, which have slots of their own. Task names come from
    /// callers, so outcomes of further tasks travel under the task `(other)` (counted in
    /// `Counters::over_task_cap`) instead of growing the agent.
    #[serde(default = "default_max_tasks")]
    pub max_tasks_per_interval: NonZeroUsize,
    /// How long start waits to have read every spec.
    #[serde(default = "default_start_timeout", with = "humantime_serde")]
    pub start_timeout: Duration,
}

fn default_queue_bytes() -> usize {
    16 * 1024 * 1024
}

fn default_rollup() -> Duration {
    Duration::from_secs(1)
}

pub(crate) fn default_max_tasks() -> NonZeroUsize {
    NonZeroUsize::new(100).unwrap_or(NonZeroUsize::MIN)
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(5)
}

fn default_start_timeout() -> Duration {
    Duration::from_secs(30)
}

impl AgentConfig {
    /// An agent for `component` / `instance` with the default limits.
    pub fn new(kafka: KafkaConfig, component: impl Into<String>, instance: impl Into<String>) -> Self {
        AgentConfig {
            kafka,
            component: component.into(),
            instance: instance.into(),
            labels: BTreeMap::new(),
            queue_bytes: default_queue_bytes(),
            rollup_interval: default_rollup(),
            heartbeat_interval: default_heartbeat(),
            max_failures_per_interval: None,
            max_tasks_per_interval: default_max_tasks(),
            start_timeout: default_start_timeout(),
        }
    }
}
