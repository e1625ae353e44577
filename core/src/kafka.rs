//! Kafka plumbing shared by every part: topic names, client settings, topic creation, and
//! reading a topic to its end. Readers read with `isolation.level=read_committed`: specs
//! are published in transactions (see `specaudit_producer::publish`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::KafkaConfig;

/// The topic definitions (DESIGN.md section 5), shared with `deploy/local/stack`.
const TOPICS_CONF: &str = include_str!("../../schemas/kafka-topics.conf");

/// The full names of the specaudit topics under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Compacted: the latest version of every spec.
    pub specs: String,
    /// Every version of every spec.
    pub spec_history: String,
    pub assertions: String,
    pub heartbeats: String,
    pub alarms: String,
    pub dead_letters: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Topics {
        let name = |suffix: &str| format!("{prefix}{suffix}");
        Topics {
            specs: name("specs"),
            spec_history: name("spec-history"),
            assertions: name("assertions"),
            heartbeats: name("heartbeats"),
            alarms: name("alarms"),
            dead_letters: name("dead-letters"),
        }
    }
}

/// One topic as `schemas/kafka-topics.conf` defines it (name without prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDefinition {
    pub name: String,
    pub partitions: i32,
    pub configs: Vec<(String, String)>,
}

/// Parses `schemas/kafka-topics.conf`: `NAME PARTITIONS CONFIGS` per line, `-` for none.
pub fn topic_definitions() -> Vec<TopicDefinition> {
    TOPICS_CONF
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?.to_owned();
            let partitions = fields.next()?.parse().ok()?;
            let configs = match fields.next() {
                None | Some("-") => Vec::new(),
                Some(list) => list
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            };
            Some(TopicDefinition { name, partitions, configs })
        })
        .collect()
}

/// librdkafka settings for `config`: the brokers plus every pass-through key.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in &config.client {
        client.set(key, value);
    }
    client
}

/// [`client_config`] with a service's own defaults for settings `[kafka.client]` leaves
/// unset: the operator's settings win.
pub fn client_config_with(config: &KafkaConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut client = client_config(config);
    for (key, value) in defaults.iter().filter(|(key, _)| !config.client.contains_key(*key)) {
        client.set(*key, *value);
    }
    client
}

/// Creates the specaudit topics under `config.topic_prefix` where missing.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(config).create()?;
    let definitions = topic_definitions();
    let names: Vec<String> = definitions.iter().map(|d| format!("{}{}", config.topic_prefix, d.name)).collect();
    let topics: Vec<NewTopic<'_>> = definitions
        .iter()
        .zip(&names)
        .map(|(d, name)| {
            d.configs.iter().fold(
                NewTopic::new(name, d.partitions, TopicReplication::Fixed(1)),
                |topic, (k, v)| topic.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| tracing::error!(%topic, ?code, "cannot create topic"))
            }
        }
    }
    // A created topic answers requests only once every partition has a leader: wait for
    // that, so a caller can use the topics at once (a fresh broker takes seconds).
    tokio::task::spawn_blocking(move || wait_for_leaders(&admin, &names, Duration::from_secs(60)))
        .await
        .unwrap_or(Err(KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut)))
}

fn wait_for_leaders(
    admin: &AdminClient<DefaultClientContext>,
    names: &[String],
    timeout: Duration,
) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        let metadata = admin.inner().fetch_metadata(None, Duration::from_secs(5))?;
        let ready = names.iter().all(|name| {
            metadata.topics().iter().any(|t| {
                t.name() == name
                    && t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions().iter().all(|p| p.leader() >= 0 && p.error().is_none())
            })
        });
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(KafkaError::AdminOp(RDKafkaErrorCode::LeaderNotAvailable));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads every partition of `topic` from the beginning to the end seen at the start,
/// calling `each` for every message. Reads with `isolation.level=read_committed`, so a
/// record of an aborted or still open transaction is never seen; the end is then the last
/// stable offset. For compacted topics this yields the latest value of every key (and
/// possibly some older ones, which the caller overwrites).
pub fn read_to_end(
    config: &KafkaConfig,
    topic: &str,
    timeout: Duration,
    each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    let consumer = committed_reader(config)?;
    let ends = watermarks(&consumer, topic, timeout)?;
    read_until(&consumer, topic, ends, timeout, each)
}

/// The end of every partition of `topic` that holds records, including records of open
/// transactions (the high watermark, not the last stable offset). Reading committed records
/// up to these offsets waits until every transaction written before now is decided.
pub fn high_watermarks(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let consumer: BaseConsumer = client_config(config)
        .set("group.id", "specaudit-reader")
        .set("isolation.level", "read_uncommitted")
        .create()?;
    watermarks(&consumer, topic, timeout)
}

/// Reads committed records of `topic` from the beginning until the position of every
/// partition in `ends` reaches its end offset.
pub fn read_committed_until(
    config: &KafkaConfig,
    topic: &str,
    ends: BTreeMap<i32, i64>,
    timeout: Duration,
    each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    let consumer = committed_reader(config)?;
    read_until(&consumer, topic, ends, timeout, each)
}

fn committed_reader(config: &KafkaConfig) -> Result<BaseConsumer, KafkaError> {
    client_config(config)
        .set("group.id", "specaudit-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        // A reader stops at the end it was given; waiting for more data would only delay it.
        .set("fetch.wait.max.ms", "10")
        .create()
}

/// The end offset of every non-empty partition, as `consumer`'s isolation level sees it.
fn watermarks(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
    }
    let mut ends = BTreeMap::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        if high > low {
            ends.insert(partition, high);
        }
    }
    Ok(ends)
}

fn read_until(
    consumer: &BaseConsumer,
    topic: &str,
    mut ends: BTreeMap<i32, i64>,
    timeout: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    if ends.is_empty() {
        return Ok(());
    }
    // Start at explicit offsets: resolving `Offset::Beginning` costs the consumer a
    // round of its internal timers (about half a second) before the first fetch.
    let mut assignment = TopicPartitionList::new();
    for partition in ends.keys() {
        let (low, _) = consumer.fetch_watermarks(topic, *partition, timeout)?;
        assignment.add_partition_offset(topic, *partition, Offset::Offset(low))?;
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    while !caught_up(consumer, topic, &mut ends) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut));
        }
        // Short polls: the transaction markers that end a partition move the position
        // without waking a poll.
        match consumer.poll(left.min(Duration::from_millis(10))) {
            None => {}
            Some(Err(e)) => return Err(e),
            Some(Ok(message)) => each(&message),
        }
    }
    Ok(())
}

/// Whether `consumer` has passed every end offset in `ends`, removing the partitions that
/// it has. Uses the consumer's position rather than the offsets of the messages seen: with
/// read_committed, a partition ends in transaction markers and aborted records that are
/// never handed out, but that the position moves past.
pub fn caught_up(consumer: &BaseConsumer, topic: &str, ends: &mut BTreeMap<i32, i64>) -> bool {
    if ends.is_empty() {
        return true;
    }
    if let Ok(positions) = consumer.position() {
        for element in positions.elements_for_topic(topic) {
            if let Offset::Offset(position) = element.offset() {
                if ends.get(&element.partition()).is_some_and(|end| position >= *end) {
                    ends.remove(&element.partition());
                }
            }
        }
    }
    ends.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_definitions_cover_every_topic() {
        let defs = topic_definitions();
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["specs", "spec-history", "assertions", "heartbeats", "alarms", "dead-letters"]);
        let specs = &defs[0];
        assert!(specs.configs.contains(&("cleanup.policy".into(), "compact".into())));
        assert!(defs[2].partitions > 1, "assertions need several partitions");
        // The alarmer recovers what on-call was told from the alarms topic, however old.
        assert!(defs[4].configs.contains(&("retention.ms".into(), "-1".into())));
        let topics = Topics::new("t.");
        assert_eq!(topics.spec_history, "t.spec-history");
        assert_eq!(topics.dead_letters, "t.dead-letters");
    }
}
