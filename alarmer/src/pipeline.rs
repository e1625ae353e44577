//! The live loop: consume, feed the evaluator, hand transitions to the dispatcher.
//!
//! One task owns the evaluator. Each assertion is evaluated for the groups it touched as
//! soon as it arrives (the path that decides notification latency); a tick evaluates
//! everything else that time alone changes (windows emptying, holds, silence, staleness,
//! waivers expiring, repeats).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use specaudit_core::codec::Codec;
use specaudit_core::kafka::{client_config, client_config_with, read_to_end, Topics};
use specaudit_core::record::{now_ms, AlarmEvent, Assertion, Heartbeat, SpecVersion};
use specaudit_core::telemetry::Health;
use tokio_util::sync::CancellationToken;

use crate::alarm::Transition;
use crate::config::{AlarmerConfig, Plan};
use crate::engine::{Engine, History, Shards};
use crate::notify::dispatch::{AlarmLog, Dispatcher};
use crate::replay::{Membership, Replay};

/// Why the alarmer stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kafka at {brokers}: {action}: {source}")]
    Kafka { brokers: String, action: &'static str, source: KafkaError },
    #[error("cannot build the http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

const START_TIMEOUT: Duration = Duration::from_secs(30);

fn decode_all<T: specaudit_core::codec::Record + Send + 'static>(
    config: &AlarmerConfig,
    topic: String,
) -> impl std::future::Future<Output = Result<Result<Vec<T>, KafkaError>, tokio::task::JoinError>> {
    let kafka = config.kafka.clone();
    tokio::task::spawn_blocking(move || {
        let codec = Codec::<T>::new();
        let mut out = Vec::new();
        read_to_end(&kafka, &topic, START_TIMEOUT, |m| match codec.decode(m.payload().unwrap_or_default()) {
            Ok(record) => out.push(record),
            Err(error) => tracing::warn!(%topic, partition = m.partition(), offset = m.offset(), %error, "skipping undecodable record"),
        })?;
        Ok(out)
    })
}

/// Reads spec-history to the end it has now, for the `specs` named alone: the topic keeps
/// every version of every spec ever published, and the others are skipped undecoded.
fn read_history(
    config: &AlarmerConfig,
    topic: String,
    specs: HashSet<String>,
) -> impl std::future::Future<Output = Result<Result<History, KafkaError>, tokio::task::JoinError>> {
    let kafka = config.kafka.clone();
    tokio::task::spawn_blocking(move || {
        let codec = Codec::<SpecVersion>::new();
        let mut history = History::default();
        read_to_end(&kafka, &topic, START_TIMEOUT, |m| {
            // Keyed by spec name (DESIGN.md section 5).
            if !m.key().and_then(|k| std::str::from_utf8(k).ok()).is_some_and(|k| specs.contains(k)) {
                return;
            }
            match codec.decode(m.payload().unwrap_or_default()) {
                Ok(version) => history.add(&version),
                Err(error) => tracing::warn!(%topic, partition = m.partition(), offset = m.offset(), %error, "skipping undecodable record"),
            }
        })?;
        Ok(history)
    })
}

/// Runs until `shutdown`; `health` turns true once the windows are rebuilt.
pub async fn run(config: AlarmerConfig, plan: Plan, health: Health, shutdown: CancellationToken) -> Result<(), RunError> {
    let topics = Topics::new(&config.kafka.topic_prefix);
    let kafka_err = |action: &'static str| {
        let brokers = config.kafka.brokers.clone();
        move |source: KafkaError| RunError::Kafka { brokers: brokers.clone(), action, source }
    };
    let mut engine = Engine::new(plan.engine);

    // 1. What the specs expect and the policies they carry, and since when: the specs
    //    topic is compacted, so a requirement's silence counts from when it came into its
    //    spec, as spec-history tells (read after the specs, so it has their versions).
    let specs: Vec<SpecVersion> = decode_all(&config, topics.specs.clone()).await?.map_err(kafka_err("reading the specs topic (is kafka up, and are the specaudit topics created? deploy/local/stack up creates them)"))?;
    let mut live_specs = HashMap::new();
    for version in &specs {
        live_specs.insert(version.spec.clone(), !version.deleted);
    }
    let live_specs: HashSet<String> = live_specs.into_iter().filter_map(|(name, live)| live.then_some(name)).collect();
    if !live_specs.is_empty() {
        let started = std::time::Instant::now();
        match read_history(&config, topics.spec_history.clone(), live_specs).await? {
            Ok(history) => {
                tracing::info!(specs = history.len(), seconds = started.elapsed().as_secs_f64(), "spec history read");
                engine.history(history);
            }
            // Starting matters more: silence then counts from the versions on the specs topic.
            Err(error) => tracing::warn!(%error, "cannot read spec-history: silence of the requirements counts from the latest spec versions"),
        }
    }
    let now = now_ms();
    for version in &specs {
        for skipped in engine.spec(version, now) {
            tracing::warn!(%skipped, "skipping alarm policy of a spec");
        }
    }
    tracing::info!(specs = specs.len(), "specs read");

    // 2. Notifications: delivered, then logged on the alarms topic.
    let producer: FutureProducer = client_config(&config.kafka)
        .set("linger.ms", "0")
        .set("enable.idempotence", "true")
        .create()
        .map_err(kafka_err("creating the producer"))?;
    let log = AlarmLog { producer, topic: topics.alarms.clone(), codec: Arc::new(Codec::new()) };
    let dispatcher = Dispatcher::start(plan.receivers, config.notify.clone(), log, config.alarmer.drain_timeout)?;

    // 3. Shards: the assertions partitions this copy is given in its group. On every
    //    assignment: which alarms of its shards are pending, firing or waived and what
    //    on-call was told (from the alarms topic), and the windows, replayed from
    //    now − lookback out of every partition.
    let membership = Membership::new(Some(dispatcher.settler()));
    let group: StreamConsumer<Membership> = client_config(&config.kafka)
        .set("group.id", &config.alarmer.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create_with_context(membership.clone())
        .map_err(kafka_err("creating the group consumer"))?;
    group.subscribe(&[&topics.assertions]).map_err(kafka_err("joining the group on the assertions topic"))?;
    // Not fetching again for a second whenever the prefetch queue is full keeps a replay fast.
    let replay_fetch = [("fetch.wait.max.ms", "10"), ("fetch.queue.backoff.ms", "10"), ("queued.max.messages.kbytes", "16384")];
    let reader: StreamConsumer = client_config_with(&config.kafka, &replay_fetch)
        .set("group.id", &config.alarmer.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(kafka_err("creating the replay consumer"))?;
    // Every copy needs every spec: the specs topic is assigned whole, not shared.
    let spec_consumer: StreamConsumer = client_config(&config.kafka)
        .set("group.id", &config.alarmer.group_id)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka_err("creating the specs consumer"))?;
    let metadata = spec_consumer
        .fetch_metadata(Some(&topics.specs), START_TIMEOUT)
        .map_err(kafka_err("reading the specs topic metadata"))?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let _ = assignment.add_partition_offset(&topics.specs, partition.id(), Offset::Beginning);
    }
    spec_consumer.assign(&assignment).map_err(kafka_err("assigning the specs topic"))?;

    let assertions = Codec::<Assertion>::new();
    let heartbeats = Codec::<Heartbeat>::new();
    let spec_codec = Codec::<SpecVersion>::new();
    let mut tick = tokio::time::interval(config.alarmer.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut live = false;
    let mut generation = 0;
    // None until the first assignment.
    let mut replay: Option<Replay> = None;
    tracing::info!(group = %config.alarmer.group_id, "consuming");
    loop {
        if membership.generation() != generation && membership.assigned() {
            // Assigned anew (the revoke callback settled what was in flight).
            generation = membership.generation();
            replay = Some(reassign(&config, &topics, &membership, &reader, &mut engine).await?);
        }
        // Evaluating only with shards held and their windows rebuilt. Shards held is asked
        // again where it is used: a revocation may land while this iteration waits.
        let rebuilt = replay.as_ref().is_some_and(Replay::caught_up);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            () = membership.assigned_anew() => {}
            // Serves the group's rebalances; its partitions are paused, no record comes.
            message = group.recv() => if let Err(error) = message {
                tracing::warn!(%error, "group consumer error");
            },
            message = reader.recv(), if replay.is_some() => {
                let message = match message {
                    Ok(m) => m,
                    Err(error) => {
                        tracing::warn!(%error, "consumer error");
                        continue;
                    }
                };
                let now = now_ms();
                let payload = message.payload().unwrap_or_default();
                let mut produced_at = None;
                if message.topic() == topics.assertions {
                    match assertions.decode(payload) {
                        Ok(a) => {
                            produced_at = Some(a.ts);
                            engine.assertion(&a, now);
                        }
                        Err(error) => skip(&message, &error),
                    }
                } else {
                    match heartbeats.decode(payload) {
                        Ok(hb) => engine.heartbeat(&hb, now),
                        Err(error) => skip(&message, &error),
                    }
                }
                if let Some(replay) = &mut replay {
                    replay.consumed(message.topic(), message.partition(), message.offset());
                }
                if rebuilt && membership.assigned() {
                    if let Some(ts) = produced_at {
                        // Live only: during a replay the age of old records says nothing.
                        metrics::gauge!("specaudit_alarmer_evaluation_lag_seconds").set((now - ts).max(0) as f64 / 1000.0);
                    }
                    dispatch(&dispatcher, engine.evaluate_touched(now)).await;
                }
            }
            message = spec_consumer.recv() => match message {
                Ok(m) => match spec_codec.decode(m.payload().unwrap_or_default()) {
                    Ok(version) => {
                        for skipped in engine.spec(&version, now_ms()) {
                            tracing::warn!(%skipped, "skipping alarm policy of a spec");
                        }
                    }
                    Err(error) => skip(&m, &error),
                },
                Err(error) => tracing::warn!(%error, "specs consumer error"),
            },
            _ = tick.tick() => {
                if !(rebuilt && membership.assigned()) {
                    continue;
                }
                if !live {
                    live = true;
                    health.set(true);
                    tracing::info!(groups = engine.group_count(), "windows rebuilt; evaluating live");
                }
                let now = now_ms();
                dispatch(&dispatcher, engine.evaluate(now)).await;
                let (pending, firing, waived) = engine.alarm_counts();
                metrics::gauge!("specaudit_alarmer_alarms", "state" => "pending").set(pending as f64);
                metrics::gauge!("specaudit_alarmer_alarms", "state" => "firing").set(firing as f64);
                metrics::gauge!("specaudit_alarmer_alarms", "state" => "waived").set(waived as f64);
                metrics::gauge!("specaudit_alarmer_groups").set(engine.group_count() as f64);
            }
        }
    }
    tracing::info!("stopping: no more intake, draining notifications");
    health.set(false);
    // Leaving the group settles what is in flight (revoke callback). The membership's settler
    // holds a sender of the dispatcher's queue: it must go too, or the dispatcher would
    // wait for more work forever.
    drop(group);
    drop(membership);
    dispatcher.close().await;
    Ok(())
}

/// Starts the evaluation over for a new assignment: the engine keeps the groups of the
/// shards owned now, their alarms are read from the alarms topic, and the replay of every
/// partition from now − lookback begins. The lookback covers the rules known now, those
/// of specs published since the start included.
async fn reassign(
    config: &AlarmerConfig,
    topics: &Topics,
    membership: &Membership,
    reader: &StreamConsumer,
    engine: &mut Engine,
) -> Result<Replay, RunError> {
    let lookback_ms = engine.lookback_ms().max(config.alarmer.min_lookback.as_millis() as i64);
    let kafka_err = |action| {
        let brokers = config.kafka.brokers.clone();
        move |source| RunError::Kafka { brokers, action, source }
    };
    let events: Vec<AlarmEvent> = decode_all(config, topics.alarms.clone()).await?.map_err(kafka_err("reading the alarms topic"))?;
    let (replay, count) = Replay::start(reader, &[&topics.assertions, &topics.heartbeats], lookback_ms)
        .map_err(kafka_err("rewinding the assertions and heartbeats topics"))?;
    let shards = Shards { count, owned: membership.owned() };
    let recovered = events.len();
    let owned = shards.owned.len();
    metrics::gauge!("specaudit_alarmer_shards_owned").set(owned as f64);
    metrics::gauge!("specaudit_alarmer_shards").set(f64::from(count));
    engine.reassigned(events, shards, now_ms());
    let (pending, firing, waived) = engine.alarm_counts();
    tracing::info!(events = recovered, shards = owned, of = count, lookback_ms, pending, firing, waived, "alarm state recovered");
    Ok(replay)
}

fn skip(message: &rdkafka::message::BorrowedMessage<'_>, error: &specaudit_core::codec::DecodeError) {
    metrics::counter!("specaudit_alarmer_undecodable_total", "reason" => error.kind()).increment(1);
    tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %error,
        "skipping undecodable record (the ingester dead-letters it)");
}

async fn dispatch(dispatcher: &Dispatcher, transitions: Vec<Transition>) {
    for transition in transitions {
        dispatcher.send(transition).await;
    }
}
