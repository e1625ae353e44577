//! specaudit-alarmer: threshold windows over the live assertion and heartbeat streams,
//! notifying on-call by signed webhook and Alertmanager (DESIGN.md section 7).
//!
//! Layout: [`rules`] (what to watch, from the config and from specs), [`selector`] and
//! [`glob`] (matching), [`window`] (sliding counts), [`conditions`] (when a group is in
//! trouble), [`alarm`] (pending → firing → resolved, waived), [`engine`] (all of it over
//! explicit time: no clock, no I/O), [`replay`] and [`pipeline`] (Kafka), [`notify`]
//! (payloads, HMAC, retries, the ordered dispatcher), [`waivers`], [`routes`], [`config`].
//!
//! # Why a restart neither repeats nor loses a notification
//!
//! - **The alarm log is the memory.** Each transition is an `AlarmEvent` on the alarms
//!   topic, keyed by fingerprint (rule + group values). At start the alarmer reads the
//!   topic to its end and takes the latest event of every fingerprint: pending, firing
//!   (and notified) or waived.
//! - **Log after delivery.** A transition's event is written only once its receivers have
//!   taken the notice (or it was given up, or refused for good). So "firing" in the log
//!   means on-call was told: after a restart that alarm is not notified again. A crash
//!   before the event is written leaves no trace; the next start finds the condition
//!   true in the rebuilt window and notifies then: late, never lost. The one window for
//!   a duplicate is a crash between the receiver's answer and Kafka's ack of the event
//!   (milliseconds); the payload carries the fingerprint (`groupKey`) and the same
//!   `startsAt`, and Alertmanager deduplicates by labels, so receivers can tell.
//! - **Windows are rebuilt from the topics, not from a checkpoint.** On every shard
//!   assignment (start or rebalance) the assertion and heartbeat partitions are read again
//!   from `now − lookback` (offsetsForTimes; lookback = the longest window, silence or
//!   agent timeout), and no evaluation runs until every partition reached the end it had
//!   at assignment. The evaluator is a pure function of the records and the time, so the
//!   replay rebuilds the state a running alarmer would have. Offsets are never
//!   committed. A recovered alarm whose condition no longer holds is resolved (and
//!   on-call told), one that still holds stays firing silently, with repeats due on the
//!   same schedule as before.
//! - **Silence counts from spec-history.** The specs topic is compacted: after a restart it
//!   may hold only the latest version of a spec, younger than its requirements. So at start
//!   the alarmer also reads spec-history (to the end it has then, decoding the records of
//!   live specs only) and counts each requirement's silence from the version since which
//!   it has been in its spec without a break; a spec edit does not restart the clock.
//!
//! # Scaling out
//!
//! Every group (rule + group values: an alarm's fingerprint) belongs to one *shard*, its
//! fingerprint modulo the number of assertions partitions. Copies with one `group_id`
//! share the assertions partitions in a consumer group, but only as shard ownership:
//! every copy reads every assertion and heartbeat, and keeps windows and alarms for the
//! groups of its shards alone ([`replay`]). So a group spanning instances (a ratio over a
//! component, outliers, silence, stale versions) is judged whole, by one copy, whatever
//! partitions its records came from. Windows, alarms, evaluation and notification divide
//! between copies; reading and decoding the stream does not (each copy reads it all).
//!
//! A rebalance is a restart in small: a copy giving shards up first settles its
//! notifications in flight (delivered and logged, or after the drain timeout left
//! unsent), inside the revoke callback, so the group moves on only then; on the new
//! assignment every copy forgets its windows and alarms, reads the alarm log again and
//! keeps the alarms of the shards it now owns. So an alarm moving between copies is
//! neither notified again nor resolved by the copy that lost it. A copy frozen longer
//! than the session timeout is evicted without knowing it and, when it wakes, may notify
//! from its stale state once before the group fences it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod alarm;
pub mod conditions;
pub mod config;
pub mod engine;
pub mod glob;
pub mod notify;
pub mod pipeline;
pub mod replay;
pub mod routes;
pub mod rules;
pub mod selector;
pub mod waivers;
pub mod window;

pub use config::AlarmerConfig;

use specaudit_core::telemetry::{Endpoint, Health};
use tokio_util::sync::CancellationToken;

/// Why the alarmer did not run.
#[derive(Debug, thiserror::Error)]
pub enum AlarmerError {
    #[error("invalid configuration: {0}")]
    Config(#[from] config::PlanError),
    #[error(transparent)]
    Run(#[from] pipeline::RunError),
    #[error("cannot serve /metrics and /health: {0}")]
    Telemetry(std::io::Error),
}

/// Runs the alarmer until `shutdown`: checks the config, serves `/metrics` and `/health`,
/// recovers, replays, evaluates and notifies.
pub async fn run(config: AlarmerConfig, shutdown: CancellationToken) -> Result<(), AlarmerError> {
    let plan = config.plan()?;
    let health = Health::default();
    let endpoint = Endpoint::start(&config.telemetry, health.clone(), shutdown.clone()).await.map_err(AlarmerError::Telemetry)?;
    let result = pipeline::run(config, plan, health, shutdown.clone()).await;
    shutdown.cancel();
    endpoint.join().await;
    Ok(result?)
}
