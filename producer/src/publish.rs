//! Publishing spec versions: version = previous + 1, sha256 of the canonical JSON, the
//! RFC 6902 patch from the previous version; every version to spec-history, the latest to
//! the compacted specs topic under the spec's name.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use specaudit_core::codec::Codec;
use specaudit_core::config::KafkaConfig;
use specaudit_core::kafka::{client_config, Topics};
use specaudit_core::record::{now_ms, SpecVersion};
use specaudit_core::spec::Spec;

use crate::catalog::{load_latest, CatalogError};

/// How long publishing waits for Kafka.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a publish did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("version conflict on spec {spec}: the update was made against version {expected}, but the current version is {current}")]
    Conflict { spec: String, expected: i64, current: i64 },
    #[error("spec {spec} does not exist")]
    NotFound { spec: String },
    #[error("cannot write to kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot encode the spec version: {0}")]
    Encode(#[from] specaudit_core::codec::EncodeError),
}

/// What to publish.
#[derive(Debug, Clone)]
pub enum Change {
    /// A full replace (or the first version).
    Replace(Spec),
    /// A delete: a tombstone version.
    Delete { spec: String },
}

/// Who publishes and why.
#[derive(Debug, Clone)]
pub struct Meta {
    pub author: String,
    pub comment: String,
    /// The version the change was made against; `Some(0)` for "must not exist yet".
    pub expect_version: Option<i64>,
}

/// Publishes `change` and returns the version written.
pub async fn publish(config: &KafkaConfig, change: Change, meta: Meta) -> Result<SpecVersion, PublishError> {
    let name = match &change {
        Change::Replace(spec) => spec.spec.clone(),
        Change::Delete { spec } => spec.clone(),
    };
    let latest = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || load_latest(&config, TIMEOUT))
            .await
            .unwrap_or_else(|_| Ok(Default::default()))?
    };
    let previous = latest.get(&name);
    let current = previous.map_or(0, |p| p.version);
    if let Some(expected) = meta.expect_version {
        if expected != current {
            return Err(PublishError::Conflict { spec: name, expected, current });
        }
    }
    let previous_doc = previous
        .filter(|p| !p.deleted)
        .and_then(|p| serde_json::from_str::<serde_json::Value>(&p.document).ok())
        .unwrap_or(serde_json::Value::Null);
    let (document, sha256, deleted, next_doc) = match &change {
        Change::Replace(spec) => (spec.canonical_json(), spec.sha256(), false, spec.to_value()),
        Change::Delete { spec } => {
            if previous.is_none_or(|p| p.deleted) {
                return Err(PublishError::NotFound { spec: spec.clone() });
            }
            (String::new(), String::new(), true, serde_json::Value::Null)
        }
    };
    let patch = serde_json::to_string(&json_patch::diff(&previous_doc, &next_doc)).unwrap_or_else(|_| "[]".into());
    let version = SpecVersion {
        spec: name,
        version: current + 1,
        ts: now_ms(),
        author: meta.author,
        comment: meta.comment,
        sha256,
        deleted,
        document,
        patch,
    };
    let bytes = Codec::<SpecVersion>::new().encode(&version)?;
    let topics = Topics::new(&config.topic_prefix);
    let producer: FutureProducer = client_config(config)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .create()?;
    // History first: a version is never the latest without being in the history.
    for topic in [&topics.spec_history, &topics.specs] {
        let record = FutureRecord::to(topic).key(version.spec.as_str()).payload(&bytes);
        producer.send(record, TIMEOUT).await.map_err(|(e, _)| e)?;
    }
    Ok(version)
}
