//! The dispatcher: takes transitions from the evaluator, delivers their notices and then
//! writes their events to the alarms topic.
//!
//! Transitions of one alarm are handled strictly in order (each waits for the previous
//! one of the same fingerprint); different alarms proceed in parallel, so one receiver
//! being down delays nobody else. An event is written only after its notice was taken
//! (or given up): the alarm log doubles as the record of what on-call was told, which is
//! what makes a restart neither repeat nor lose a notification. For the same reason a
//! copy that loses partitions in a rebalance settles first ([`Settler`]): what it handed
//! over is logged, or left unsent for the next owner, before the next owner reads the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use specaudit_core::codec::Codec;
use specaudit_core::record::{AlarmEvent, AlarmState};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alarm::Transition;
use crate::config::NotifySection;
use crate::notify::deliver::Receiver;

/// Where transitions are logged: the alarms topic, keyed by fingerprint.
#[derive(Clone)]
pub struct AlarmLog {
    pub producer: FutureProducer,
    pub topic: String,
    pub codec: Arc<Codec<AlarmEvent>>,
}

impl std::fmt::Debug for AlarmLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlarmLog").field("topic", &self.topic).finish()
    }
}

impl AlarmLog {
    /// Writes `event`, retrying while Kafka is unreachable, until `stop`.
    async fn write(&self, event: &AlarmEvent, retry: &NotifySection, stop: &CancellationToken) -> bool {
        let bytes = match self.codec.encode(event) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(fingerprint = %event.fingerprint, %error, "cannot encode alarm event");
                return false;
            }
        };
        let mut backoff = retry.retry_initial;
        loop {
            let record = FutureRecord::to(&self.topic).key(&event.fingerprint).payload(&bytes);
            match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => {
                    let state = match event.state {
                        AlarmState::Pending => "pending",
                        AlarmState::Firing => "firing",
                        AlarmState::Resolved => "resolved",
                        AlarmState::Waived => "waived",
                    };
                    metrics::counter!("specaudit_alarmer_transitions_total", "state" => state).increment(1);
                    tracing::info!(fingerprint = %event.fingerprint, rule = %event.rule, state, "alarm transition logged");
                    return true;
                }
                Err((error, _)) => {
                    tracing::warn!(fingerprint = %event.fingerprint, %error, "cannot log alarm transition, retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(retry.retry_max);
                }
            }
        }
    }
}

enum Command {
    Transition(Box<Transition>),
    /// Finish (or give up, after the drain timeout) everything queued, then answer.
    Settle(oneshot::Sender<()>),
}

/// Handle to the dispatcher task.
#[derive(Debug)]
pub struct Dispatcher {
    tx: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

/// Waits until the dispatcher has nothing in flight: every transition queued so far is
/// delivered and logged, or (past the drain timeout) abandoned unlogged, so that whoever
/// evaluates its alarm next rebuilds it from the topics.
#[derive(Debug, Clone)]
pub struct Settler {
    tx: mpsc::Sender<Command>,
}

impl Settler {
    pub async fn settle(&self) {
        let (done, settled) = oneshot::channel();
        if self.tx.send(Command::Settle(done)).await.is_ok() {
            let _ = settled.await;
        }
    }
}

struct Shared {
    receivers: HashMap<String, Receiver>,
    retry: NotifySection,
    log: AlarmLog,
    client: reqwest::Client,
    /// Cancels the deliveries in flight; a fresh one after each settle.
    stop: Mutex<CancellationToken>,
}

impl Shared {
    fn stop(&self) -> CancellationToken {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Dispatcher {
    pub fn start(
        receivers: HashMap<String, Receiver>,
        retry: NotifySection,
        log: AlarmLog,
        drain_timeout: Duration,
    ) -> Result<Dispatcher, reqwest::Error> {
        let client = reqwest::Client::builder().build()?;
        let shared = Arc::new(Shared { receivers, retry, log, client, stop: Mutex::new(CancellationToken::new()) });
        let (tx, rx) = mpsc::channel(10_000);
        let task = tokio::spawn(run(shared, rx, drain_timeout));
        Ok(Dispatcher { tx, task })
    }

    /// Queues a transition; waits when the queue is full (backpressure on evaluation).
    pub async fn send(&self, transition: Transition) {
        if self.tx.send(Command::Transition(Box::new(transition))).await.is_err() {
            tracing::error!("dispatcher stopped; transition dropped");
        }
    }

    pub fn settler(&self) -> Settler {
        Settler { tx: self.tx.clone() }
    }

    /// Stops taking transitions and waits for those in flight, at most the drain timeout.
    pub async fn close(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Command>, drain_timeout: Duration) {
    let mut chains: HashMap<String, JoinHandle<()>> = HashMap::new();
    while let Some(command) = rx.recv().await {
        let transition = match command {
            Command::Transition(transition) => *transition,
            Command::Settle(done) => {
                drain(&shared, std::mem::take(&mut chains), drain_timeout).await;
                *shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = CancellationToken::new();
                let _ = done.send(());
                continue;
            }
        };
        let fingerprint = match (&transition.event, &transition.notice) {
            (Some(e), _) => e.fingerprint.clone(),
            (None, Some(n)) => n.fingerprint.clone(),
            (None, None) => continue,
        };
        let previous = chains.remove(&fingerprint);
        let handle = tokio::spawn(handle(shared.clone(), shared.stop(), previous, transition));
        chains.insert(fingerprint, handle);
        if chains.len() > 1024 {
            chains.retain(|_, h| !h.is_finished());
        }
    }
    drain(&shared, chains, drain_timeout).await;
}

/// Waits for `chains`, at most `drain_timeout`; then cancels what is left.
async fn drain(shared: &Shared, chains: HashMap<String, JoinHandle<()>>, drain_timeout: Duration) {
    let pending: Vec<JoinHandle<()>> = chains.into_values().filter(|h| !h.is_finished()).collect();
    if pending.is_empty() {
        return;
    }
    tracing::info!(in_flight = pending.len(), "draining notifications");
    let all = futures::future::join_all(pending);
    tokio::pin!(all);
    if tokio::time::timeout(drain_timeout, &mut all).await.is_err() {
        tracing::warn!("drain timeout: undelivered notifications are left to whoever evaluates their alarms next, which rebuilds them");
        shared.stop().cancel();
        all.await;
    }
}

async fn handle(shared: Arc<Shared>, stop: CancellationToken, previous: Option<JoinHandle<()>>, transition: Transition) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    if let Some(notice) = &transition.notice {
        let deliveries = notice.receivers.iter().filter_map(|name| match shared.receivers.get(name) {
            Some(receiver) => Some(receiver.deliver(&shared.client, notice, &shared.retry, &stop)),
            None => {
                tracing::warn!(receiver = %name, "no such receiver");
                None
            }
        });
        futures::future::join_all(deliveries).await;
    }
    if stop.is_cancelled() {
        // Not logged: the next start rebuilds the transition from the topics and sends it.
        return;
    }
    if let Some(event) = &transition.event {
        shared.log.write(event, &shared.retry, &stop).await;
    }
}
