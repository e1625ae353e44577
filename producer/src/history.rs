//! Every version of a spec, read from the spec-history topic (kept forever), so history,
//! `get --version` and diffs work from Kafka alone, without ClickHouse; and `watch`, which
//! is told each version as it lands.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use specaudit_core::codec::Codec;
use specaudit_core::config::KafkaConfig;
use specaudit_core::kafka::{client_config, read_to_end, Topics};
use specaudit_core::record::SpecVersion;

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read {topic} from {brokers}: {source}")]
    Kafka {
        topic: String,
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("spec {spec} has no history: it was never published")]
    NotFound { spec: String },
    #[error("spec {spec} has no version {version} (versions 1 to {latest} exist)")]
    NoSuchVersion { spec: String, version: i64, latest: i64 },
}

/// Every version of `spec` in version order (deletes included, as versions with `deleted`).
pub fn load_history(config: &KafkaConfig, spec: &str, timeout: Duration) -> Result<Vec<SpecVersion>, HistoryError> {
    let topic = Topics::new(&config.topic_prefix).spec_history;
    let codec = Codec::<SpecVersion>::new();
    let mut versions: BTreeMap<i64, SpecVersion> = BTreeMap::new();
    read_to_end(config, &topic, timeout, |message| {
        if message.key() != Some(spec.as_bytes()) {
            return;
        }
        match message.payload().map(|p| codec.decode(p)) {
            // The first record of a version is the one that counts; there is no second one
            // from the transactional publisher, but older data may have repeats.
            Some(Ok(version)) => {
                versions.entry(version.version).or_insert(version);
            }
            Some(Err(error)) => tracing::warn!(offset = message.offset(), %error, "skipping undecodable spec-history record"),
            None => {}
        }
    })
    .map_err(|source| HistoryError::Kafka { topic, brokers: config.brokers.clone(), source })?;
    if versions.is_empty() {
        return Err(HistoryError::NotFound { spec: spec.to_owned() });
    }
    Ok(versions.into_values().collect())
}

/// One version of `spec` from its history.
pub fn load_version(config: &KafkaConfig, spec: &str, version: i64, timeout: Duration) -> Result<SpecVersion, HistoryError> {
    let history = load_history(config, spec, timeout)?;
    let latest = history.last().map_or(0, |v| v.version);
    history
        .into_iter()
        .find(|v| v.version == version)
        .ok_or_else(|| HistoryError::NoSuchVersion { spec: spec.to_owned(), version, latest })
}

/// Calls `each` with every version that lands on spec-history (of every spec, or of
/// `only`), from now on or from the beginning, until `stop` is set; `watching` is called
/// once the start is fixed. Reads committed versions only.
pub fn watch(
    config: &KafkaConfig,
    only: Option<&str>,
    from_beginning: bool,
    stop: &AtomicBool,
    watching: impl FnOnce(),
    mut each: impl FnMut(SpecVersion),
) -> Result<(), HistoryError> {
    let topic = Topics::new(&config.topic_prefix).spec_history;
    let kafka = |source| HistoryError::Kafka { topic: topic.clone(), brokers: config.brokers.clone(), source };
    let consumer: BaseConsumer = client_config(config)
        .set("group.id", "specaudit-watch")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(kafka)?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).map_err(kafka)?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        // "Now" is resolved here, not at the first fetch, so a version published after
        // this function said it is watching is never missed.
        let start = if from_beginning {
            Offset::Beginning
        } else {
            let (_, end) = consumer.fetch_watermarks(&topic, partition.id(), Duration::from_secs(10)).map_err(kafka)?;
            Offset::Offset(end)
        };
        assignment.add_partition_offset(&topic, partition.id(), start).map_err(kafka)?;
    }
    consumer.assign(&assignment).map_err(kafka)?;
    watching();
    let codec = Codec::<SpecVersion>::new();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(error)) => tracing::warn!(%error, "spec-history consume error"),
            Some(Ok(message)) => {
                if only.is_some_and(|name| message.key() != Some(name.as_bytes())) {
                    continue;
                }
                match message.payload().map(|p| codec.decode(p)) {
                    Some(Ok(version)) => each(version),
                    Some(Err(error)) => tracing::warn!(offset = message.offset(), %error, "skipping undecodable spec-history record"),
                    None => {}
                }
            }
        }
    }
    Ok(())
}
