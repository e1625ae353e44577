//! The spec catalog: the latest version of every spec, as the compacted specs topic holds it.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::Message;
use specaudit_core::codec::Codec;
use specaudit_core::config::KafkaConfig;
use specaudit_core::kafka::{read_to_end, Topics};
use specaudit_core::record::SpecVersion;

/// Why the catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {topic} from {brokers}: {source}")]
    Kafka {
        topic: String,
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

/// Reads the specs topic to its end: the latest version of each spec, deletes included
/// (as versions with `deleted` set), keyed by name. Undecodable records are skipped with a
/// warning: the topic is written only by specaudit's own publisher.
pub fn load_latest(config: &KafkaConfig, timeout: Duration) -> Result<BTreeMap<String, SpecVersion>, CatalogError> {
    let topic = Topics::new(&config.topic_prefix).specs;
    let codec = Codec::<SpecVersion>::new();
    let mut latest: BTreeMap<String, SpecVersion> = BTreeMap::new();
    read_to_end(config, &topic, timeout, |message| match message.payload().map(|p| codec.decode(p)) {
        Some(Ok(version)) => {
            let newer = latest.get(&version.spec).is_none_or(|known| known.version < version.version);
            if newer {
                latest.insert(version.spec.clone(), version);
            }
        }
        // A null payload is a compaction tombstone; nothing to keep.
        None => {}
        Some(Err(error)) => tracing::warn!(offset = message.offset(), %error, "skipping undecodable spec record"),
    })
    .map_err(|source| CatalogError::Kafka { topic, brokers: config.brokers.clone(), source })?;
    Ok(latest)
}
