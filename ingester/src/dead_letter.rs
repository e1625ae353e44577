//! Dead letters: a record that cannot be ingested is sent, bytes untouched, to the
//! dead-letters topic with the reason and its origin in headers, before the offset that
//! covers it is committed. The ingester reads that topic back into `dead_letters`.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use specaudit_core::config::KafkaConfig;

use crate::rows::{DeadLetterRow, Source};

/// The reason of a record that decoded fine but that ClickHouse refused to store.
pub const REASON_REFUSED: &str = "refused_by_clickhouse";

pub const HEADER_REASON: &str = "specaudit.reason";
pub const HEADER_ERROR: &str = "specaudit.error";
pub const HEADER_TOPIC: &str = "specaudit.source.topic";
pub const HEADER_PARTITION: &str = "specaudit.source.partition";
pub const HEADER_OFFSET: &str = "specaudit.source.offset";

/// A record that could not be ingested, and why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Short stable code, e.g. `truncated`, `unknown_fingerprint`, `invalid`.
    pub reason: &'static str,
    /// The full error, for people.
    pub error: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl DeadLetter {
    pub fn new(message: &BorrowedMessage<'_>, reason: &'static str, error: String) -> Self {
        DeadLetter {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            reason,
            error,
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        }
    }
}

/// The dead letter of a record ClickHouse refused. Batches keep decoded rows, not the
/// bytes they came from, so the original is read back from Kafka (refusals are rare). A
/// record already removed by retention gets a dead letter without its bytes, saying so:
/// waiting for it would stop the ingester for good.
pub async fn refused(config: &KafkaConfig, topic: &str, source: Source, error: String) -> Result<DeadLetter, KafkaError> {
    let config = config.clone();
    let topic = topic.to_owned();
    let read = tokio::task::spawn_blocking(move || -> Result<DeadLetter, KafkaError> {
        let consumer: BaseConsumer = specaudit_core::kafka::client_config(&config)
            .set("group.id", "specaudit-ingester-refused")
            .set("enable.auto.commit", "false")
            .create()?;
        let (first, _) = consumer.fetch_watermarks(&topic, source.partition, Duration::from_secs(30))?;
        if source.offset < first {
            return Ok(DeadLetter {
                key: None,
                payload: Vec::new(),
                reason: REASON_REFUSED,
                error: format!("{error} (the record itself is no longer in Kafka: the log now starts at offset {first})"),
                topic,
                partition: source.partition,
                offset: source.offset,
            });
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, source.partition, Offset::Offset(source.offset))?;
        consumer.assign(&assignment)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(message)) if message.offset() == source.offset => {
                    return Ok(DeadLetter::new(&message, REASON_REFUSED, error));
                }
                Some(Err(e)) => return Err(e),
                _ => {}
            }
        }
        Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut))
    });
    read.await.unwrap_or(Err(KafkaError::Canceled))
}

/// Sends dead letters and waits for the broker to acknowledge them.
pub async fn send(producer: &FutureProducer, topic: &str, letter: &DeadLetter) -> Result<(), rdkafka::error::KafkaError> {
    let partition = letter.partition.to_string();
    let offset = letter.offset.to_string();
    let headers = OwnedHeaders::new()
        .insert(Header { key: HEADER_REASON, value: Some(letter.reason) })
        .insert(Header { key: HEADER_ERROR, value: Some(letter.error.as_str()) })
        .insert(Header { key: HEADER_TOPIC, value: Some(letter.topic.as_str()) })
        .insert(Header { key: HEADER_PARTITION, value: Some(partition.as_str()) })
        .insert(Header { key: HEADER_OFFSET, value: Some(offset.as_str()) });
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&letter.payload).headers(headers);
    if let Some(key) = &letter.key {
        record = record.key(key);
    }
    producer.send(record, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e)
}

/// The row for a record read back from the dead-letters topic.
pub fn row(message: &BorrowedMessage<'_>, source: Source) -> DeadLetterRow {
    let header = |name: &str| -> String {
        message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    DeadLetterRow {
        ts_ms: message.timestamp().to_millis().and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
        source_topic: header(HEADER_TOPIC),
        source_partition: header(HEADER_PARTITION).parse().unwrap_or(-1),
        source_offset: header(HEADER_OFFSET).parse().unwrap_or(-1),
        reason: header(HEADER_REASON),
        error: header(HEADER_ERROR),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        kafka_partition: source.partition,
        kafka_offset: source.offset,
    }
}
