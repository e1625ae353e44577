//! Publishing spec versions: version = previous + 1, sha256 of the canonical JSON, the
//! RFC 6902 patch from the previous version; every version to spec-history, the latest to
//! the compacted specs topic under the spec's name, both in one Kafka transaction.
//!
//! # Why two updates made against the same version never both succeed
//!
//! Kafka has no compare-and-set, so the check "the current version is still N" and the
//! write of N+1 are made one step with a transactional producer whose `transactional.id`
//! is the spec's own (`specaudit-spec-<topic prefix><name>`), in this order:
//!
//! 1. `init_transactions`: the transaction coordinator bumps the id's epoch, which fences
//!    every older producer of this spec (their later writes and commits fail), and returns
//!    only once every earlier transaction of the id is complete: an open one is aborted, one
//!    whose commit had begun is finished, its commit markers written.
//! 2. Read the high watermark of the specs topic (including undecided records), then read
//!    it with `isolation.level=read_committed` until the position passes that mark. Every
//!    transaction written before step 1 ended is then decided and every committed version
//!    of this spec is seen (the read waits, at most a transaction timeout, for transactions
//!    of other specs that are still open on the same partition).
//! 3. Check the expected version against what was read; build the next version.
//! 4. Begin, write to spec-history and specs, commit.
//! 5. Read committed records again up to the high watermark, so that `publish` returns
//!    once readers see the version (the commit markers land after the commit returns).
//!
//! Take two publishers A and B of one spec, both made against version N, and let B's step 1
//! come after A's. If A's commit had begun before B's step 1, step 1 waits for it, so B's
//! step 2 sees N+1 and B reports a conflict. Otherwise A is fenced by B's step 1 and A's
//! commit fails. Either way at most one of them writes N+1. A fenced publisher waits until
//! the version it saw is superseded (or a growing random time), then starts over from step
//! 1 with a fresh producer: a plain `apply` without an expected version still lands, and one
//! made against N gets the conflict once N+1 is there. Waiting for the winner, rather than
//! retrying at once, keeps many racing publishers from fencing each other in turn for ever.
//! The check is inside the fenced section: nothing read before step 1 decides (the early
//! conflict answer below only ever refuses, and versions only grow).
//!
//! Readers (the catalog, agents, `specctl history`) read with read_committed too, so they
//! never see a version whose transaction was aborted.
//!
//! A version larger than the topics' `max.message.bytes` is refused before anything is
//! written (the uncompressed record is measured, so the limit holds whatever the
//! compression); records are lz4-compressed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::Value;
use specaudit_core::codec::Codec;
use specaudit_core::config::KafkaConfig;
use specaudit_core::kafka::{client_config, high_watermarks, read_committed_until, Topics};
use specaudit_core::record::{now_ms, SpecVersion};
use specaudit_core::spec::{Spec, SpecError};

use crate::edit::{apply, Edit, EditError};

/// How long each Kafka step waits.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long an open transaction may block readers of the specs topic if its publisher dies.
const TRANSACTION_TIMEOUT_MS: &str = "20000";
/// How long to keep starting over while other publishers of the same spec keep fencing
/// this one.
const CONTENTION_LIMIT: Duration = Duration::from_secs(120);
/// What a record adds around its value: key, headers, batch framing.
const RECORD_OVERHEAD: usize = 1024;

/// Why a publish did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("spec {spec} would be invalid after this change: {source}")]
    Invalid {
        spec: String,
        #[source]
        source: SpecError,
    },
    #[error("cannot change spec {spec}: {source}")]
    Edit {
        spec: String,
        #[source]
        source: EditError,
    },
    #[error("version conflict on spec {spec}: the change was made against version {expected}, but the current version is {current}; fetch version {current}, redo the change and retry")]
    Conflict { spec: String, expected: i64, current: i64 },
    #[error("spec {spec} was being changed by other publishers at each of {attempts} attempts (current version {current}); retry")]
    Contended { spec: String, attempts: u32, current: i64 },
    #[error("spec {spec} does not exist")]
    NotFound { spec: String },
    #[error("spec {spec} version {version} is {bytes} bytes, more than the {limit} bytes topic {topic} accepts (max.message.bytes); split the spec or raise the topic's limit")]
    TooLarge { spec: String, version: i64, bytes: usize, limit: usize, topic: String },
    #[error("cannot {action} on kafka at {brokers}: {source}")]
    Kafka {
        action: &'static str,
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot encode the spec version: {0}")]
    Encode(#[from] specaudit_core::codec::EncodeError),
    #[error("the publishing task stopped before it finished; check the spec's history for what landed")]
    Interrupted,
}

/// What to publish.
#[derive(Debug, Clone)]
pub enum Change {
    /// A full replace (or the first version).
    Replace(Spec),
    /// A fine-grained change to the current version.
    Edit { spec: String, edit: Edit },
    /// A delete: a tombstone version (`deleted` set, empty document). Publishing the spec
    /// again later continues its version numbers.
    Delete { spec: String },
}

impl Change {
    pub fn spec(&self) -> &str {
        match self {
            Change::Replace(spec) => &spec.spec,
            Change::Edit { spec, .. } | Change::Delete { spec } => spec,
        }
    }
}

/// Who publishes and why.
#[derive(Debug, Clone)]
pub struct Meta {
    pub author: String,
    pub comment: String,
    /// The version the change was made against; `Some(0)` for "must not exist yet" (never
    /// published, or deleted).
    pub expect_version: Option<i64>,
}

/// Publishes `change` and returns the version written.
pub async fn publish(config: &KafkaConfig, change: Change, meta: Meta) -> Result<SpecVersion, PublishError> {
    let limit = message_limit(config).await?;
    let config = config.clone();
    tokio::task::spawn_blocking(move || publish_blocking(&config, &change, &meta, limit))
        .await
        .unwrap_or(Err(PublishError::Interrupted))
}

/// The largest record both spec topics accept: the smaller `max.message.bytes`.
async fn message_limit(config: &KafkaConfig) -> Result<usize, PublishError> {
    let kafka = |action| move |source| PublishError::Kafka { action, brokers: config.brokers.clone(), source };
    let admin: AdminClient<DefaultClientContext> = client_config(config).create().map_err(kafka("connect"))?;
    let topics = Topics::new(&config.topic_prefix);
    let resources = [ResourceSpecifier::Topic(&topics.specs), ResourceSpecifier::Topic(&topics.spec_history)];
    let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let described = admin.describe_configs(&resources, &options).await.map_err(kafka("describe the spec topics"))?;
    let mut limit = usize::MAX;
    for resource in described {
        let resource = resource.map_err(|code| kafka("describe the spec topics")(KafkaError::AdminOp(code)))?;
        let value = resource.get("max.message.bytes").and_then(|e| e.value.as_deref()).and_then(|v| v.parse().ok());
        limit = limit.min(value.unwrap_or(1_048_588));
    }
    Ok(limit)
}

/// One attempt's failure: fenced by another publisher of the spec after seeing version
/// `seen`, or final.
enum Failed {
    Fenced { seen: i64 },
    Final(PublishError),
}

impl From<PublishError> for Failed {
    fn from(e: PublishError) -> Self {
        Failed::Final(e)
    }
}

/// As [`publish`], blocking, with the topic's message limit known.
pub fn publish_blocking(config: &KafkaConfig, change: &Change, meta: &Meta, limit: usize) -> Result<SpecVersion, PublishError> {
    let name = change.spec();
    if let Change::Replace(spec) = change {
        // Refuse a document that cannot fit before fencing anyone.
        let bytes = spec.canonical_json().len();
        if bytes + RECORD_OVERHEAD > limit {
            return Err(too_large(config, name, 0, bytes, limit));
        }
    }
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt_once(config, change, meta, limit) {
            Ok(version) => return Ok(version),
            Err(Failed::Final(e)) => return Err(e),
            Err(Failed::Fenced { seen }) => {
                let current = wait_for_change(config, name, seen, backoff(attempts))?;
                tracing::debug!(spec = name, attempts, seen, current, "fenced by another publisher of the spec, starting over");
                if started.elapsed() > CONTENTION_LIMIT {
                    return Err(PublishError::Contended { spec: name.to_owned(), attempts, current });
                }
            }
        }
    }
}

/// After being fenced: waits until the publisher that fenced this one has landed its
/// version (or `at_most`), so that losers line up behind the winner instead of fencing
/// each other in turn. Returns the latest version seen.
fn wait_for_change(config: &KafkaConfig, name: &str, seen: i64, at_most: Duration) -> Result<i64, PublishError> {
    let deadline = Instant::now() + at_most;
    loop {
        let current = latest(config, name)?.map_or(0, |v| v.version);
        if current > seen || Instant::now() >= deadline {
            return Ok(current);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Random wait growing with the attempt: 50 ms .. 3.2 s.
fn backoff(attempt: u32) -> Duration {
    let cap = 100u64 << attempt.min(6);
    let random = u64::from(uuid::Uuid::new_v4().as_u128() as u16);
    Duration::from_millis(cap / 2 + random % (cap / 2 + 1))
}

fn too_large(config: &KafkaConfig, spec: &str, version: i64, bytes: usize, limit: usize) -> PublishError {
    let topics = Topics::new(&config.topic_prefix);
    PublishError::TooLarge { spec: spec.to_owned(), version, bytes, limit, topic: topics.specs }
}

/// Whether a change made against version `expected` may follow `latest`: it is that
/// version, or `expected` is 0 ("must not exist") and the spec was deleted.
fn expected_matches(expected: i64, latest: Option<&SpecVersion>) -> bool {
    match latest {
        None => expected == 0,
        Some(v) => v.version == expected || (expected == 0 && v.deleted),
    }
}

fn attempt_once(config: &KafkaConfig, change: &Change, meta: &Meta, limit: usize) -> Result<SpecVersion, Failed> {
    let name = change.spec();
    let kafka = |action| move |source| PublishError::Kafka { action, brokers: config.brokers.clone(), source };
    let topics = Topics::new(&config.topic_prefix);

    // A cheap early answer: versions only grow, so a committed version beyond the expected
    // one is a conflict whatever happens next, and needs no fencing of anyone.
    if let Some(expected) = meta.expect_version {
        let latest = latest(config, name)?;
        let current = latest.as_ref().map_or(0, |v| v.version);
        if current > expected && !expected_matches(expected, latest.as_ref()) {
            return Err(PublishError::Conflict { spec: name.to_owned(), expected, current }.into());
        }
    }

    // Step 1: fence every other publisher of this spec.
    let producer: BaseProducer = client_config(config)
        .set("transactional.id", format!("specaudit-spec-{}{name}", config.topic_prefix))
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
        // Our own size check applies the topic's limit; librdkafka's must not be lower.
        .set("message.max.bytes", (limit + RECORD_OVERHEAD).max(1_000_000).to_string())
        .create()
        .map_err(kafka("create a transactional producer"))?;
    // Connect first: a fresh transactional producer that finds no broker up yet waits half
    // a second before it looks for its transaction coordinator again.
    producer.client().fetch_metadata(None, TIMEOUT).map_err(kafka("connect"))?;
    producer.init_transactions(TIMEOUT).map_err(|e| fenced_or(e, 0, kafka("initialise transactions")))?;

    // Step 2: every decided version, up to the end as it is now.
    let previous = latest_decided(config, name)?;
    let current = previous.as_ref().map_or(0, |v| v.version);

    // Step 3: the check, then the next version.
    if let Some(expected) = meta.expect_version {
        if !expected_matches(expected, previous.as_ref()) {
            return Err(PublishError::Conflict { spec: name.to_owned(), expected, current }.into());
        }
    }
    let live = previous.as_ref().filter(|p| !p.deleted);
    let previous_doc = live.and_then(|p| serde_json::from_str::<Value>(&p.document).ok()).unwrap_or(Value::Null);
    let next: Option<Spec> = match change {
        Change::Replace(spec) => Some(spec.clone()),
        Change::Edit { spec, edit } => {
            if live.is_none() {
                return Err(PublishError::NotFound { spec: spec.clone() }.into());
            }
            let edited = apply(&previous_doc, edit).map_err(|source| PublishError::Edit { spec: spec.clone(), source })?;
            let parsed = Spec::from_value(edited).map_err(|source| PublishError::Invalid { spec: spec.clone(), source })?;
            if parsed.spec != *spec {
                let problem = specaudit_core::spec::Problem {
                    path: "spec".into(),
                    line: None,
                    message: format!("an edit cannot rename the spec (to {:?})", parsed.spec),
                };
                return Err(PublishError::Invalid { spec: spec.clone(), source: SpecError { problems: vec![problem] } }.into());
            }
            Some(parsed)
        }
        Change::Delete { spec } => {
            if live.is_none() {
                return Err(PublishError::NotFound { spec: spec.clone() }.into());
            }
            None
        }
    };
    let next_doc = next.as_ref().map_or(Value::Null, Spec::to_value);
    let patch = serde_json::to_string(&json_patch::diff(&previous_doc, &next_doc)).unwrap_or_else(|_| "[]".into());
    let version = SpecVersion {
        spec: name.to_owned(),
        version: current + 1,
        ts: now_ms(),
        author: meta.author.clone(),
        comment: meta.comment.clone(),
        sha256: next.as_ref().map(Spec::sha256).unwrap_or_default(),
        deleted: next.is_none(),
        document: next.as_ref().map(Spec::canonical_json).unwrap_or_default(),
        patch,
    };
    let bytes = Codec::<SpecVersion>::new().encode(&version).map_err(PublishError::from)?;
    if bytes.len() + name.len() + RECORD_OVERHEAD > limit {
        return Err(too_large(config, name, version.version, bytes.len(), limit).into());
    }

    // Step 4: both records or neither. History first, so readers of specs that then look
    // up the history always find the version.
    producer.begin_transaction().map_err(|e| fenced_or(e, current, kafka("begin a transaction")))?;
    for topic in [&topics.spec_history, &topics.specs] {
        let record = BaseRecord::to(topic).key(name).payload(&bytes);
        if let Err((e, _)) = producer.send(record) {
            let _ = producer.abort_transaction(TIMEOUT);
            return Err(fenced_or(e, current, kafka("write the spec version")));
        }
    }
    match producer.commit_transaction(TIMEOUT) {
        Ok(()) => {
            // Step 5: the broker writes the commit markers after the commit returns; until
            // then a read_committed reader's end is before the version, and an agent that
            // starts now would be ready without it. Committed either way: a slow wait only warns.
            if let Err(error) = latest_decided(config, name) {
                tracing::warn!(spec = name, version = version.version, %error, "committed, not yet readable");
            }
            Ok(version)
        }
        Err(e) => {
            let _ = producer.abort_transaction(TIMEOUT);
            // A commit the broker refuses for a reason librdkafka does not name (a newer
            // broker's code for a fenced producer) has an outcome the topic tells.
            let decided = latest_decided(config, name)?;
            match landed(&version, decided.as_ref()) {
                Landed::Ours => Ok(version),
                Landed::Theirs => Err(Failed::Fenced { seen: current }),
                Landed::Nothing => Err(fenced_or(e, current, kafka("commit the spec version"))),
            }
        }
    }
}

/// What the topic holds after a commit of `ours` failed.
#[derive(Debug, PartialEq, Eq)]
enum Landed {
    /// It landed after all.
    Ours,
    /// Another publisher's version of that number (or a later one) landed first.
    Theirs,
    /// Nothing new: the commit error decides.
    Nothing,
}

fn landed(ours: &SpecVersion, decided: Option<&SpecVersion>) -> Landed {
    match decided {
        Some(v) if v == ours => Landed::Ours,
        Some(v) if v.version >= ours.version => Landed::Theirs,
        _ => Landed::Nothing,
    }
}

/// Fencing by a newer publisher of the spec means "start over"; anything else is final.
fn fenced_or(error: KafkaError, seen: i64, otherwise: impl FnOnce(KafkaError) -> PublishError) -> Failed {
    match error.rdkafka_error_code() {
        // A fenced producer may also surface as librdkafka's fatal error: either way this
        // producer is done, and the next attempt starts with a new one.
        Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch | RDKafkaErrorCode::Fatal) => {
            Failed::Fenced { seen }
        }
        _ => Failed::Final(otherwise(error)),
    }
}

/// The latest committed version of `name` up to the last stable offset (may lag behind a
/// transaction that is being committed right now).
fn latest(config: &KafkaConfig, name: &str) -> Result<Option<SpecVersion>, PublishError> {
    let latest = crate::catalog::load_latest(config, TIMEOUT).map_err(|e| match e {
        crate::catalog::CatalogError::Kafka { source, .. } => {
            PublishError::Kafka { action: "read the specs topic", brokers: config.brokers.clone(), source }
        }
    })?;
    Ok(latest.get(name).cloned())
}

/// The latest version of `name` once every transaction written so far is decided.
fn latest_decided(config: &KafkaConfig, name: &str) -> Result<Option<SpecVersion>, PublishError> {
    let kafka = |action| move |source| PublishError::Kafka { action, brokers: config.brokers.clone(), source };
    let topic = Topics::new(&config.topic_prefix).specs;
    let ends: BTreeMap<i32, i64> = high_watermarks(config, &topic, TIMEOUT).map_err(kafka("read the end of the specs topic"))?;
    let codec = Codec::<SpecVersion>::new();
    let mut found: Option<SpecVersion> = None;
    read_committed_until(config, &topic, ends, TIMEOUT, |message| {
        if message.key() != Some(name.as_bytes()) {
            return;
        }
        match message.payload().map(|p| codec.decode(p)) {
            Some(Ok(version)) if found.as_ref().is_none_or(|f| f.version < version.version) => found = Some(version),
            Some(Err(error)) => tracing::warn!(offset = message.offset(), %error, "skipping undecodable spec record"),
            _ => {}
        }
    })
    .map_err(kafka("read the specs topic"))?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_kafka(source: KafkaError) -> PublishError {
        PublishError::Kafka { action: "test", brokers: String::new(), source }
    }

    #[test]
    fn only_fencing_starts_over() {
        for code in [RDKafkaErrorCode::Fenced, RDKafkaErrorCode::ProducerFenced, RDKafkaErrorCode::InvalidProducerEpoch, RDKafkaErrorCode::Fatal] {
            assert!(matches!(fenced_or(KafkaError::MessageProduction(code), 7, final_kafka), Failed::Fenced { seen: 7 }));
        }
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(matches!(fenced_or(timeout, 7, final_kafka), Failed::Final(PublishError::Kafka { .. })));
    }

    #[test]
    fn a_failed_commit_is_judged_by_what_the_topic_holds() {
        let ours = SpecVersion {
            spec: "s".into(),
            version: 2,
            ts: 5,
            author: "racer-1".into(),
            comment: String::new(),
            sha256: "a".into(),
            deleted: false,
            document: "{}".into(),
            patch: "[]".into(),
        };
        let theirs = SpecVersion { author: "racer-2".into(), ts: 4, ..ours.clone() };
        let before = SpecVersion { version: 1, author: "alice".into(), ..ours.clone() };
        assert_eq!(landed(&ours, Some(&ours)), Landed::Ours);
        assert_eq!(landed(&ours, Some(&theirs)), Landed::Theirs);
        assert_eq!(landed(&ours, Some(&SpecVersion { version: 3, ..theirs.clone() })), Landed::Theirs);
        assert_eq!(landed(&ours, Some(&before)), Landed::Nothing);
        assert_eq!(landed(&ours, None), Landed::Nothing);
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 0..20 {
            let wait = backoff(attempt);
            let cap = Duration::from_millis(100 << attempt.min(6));
            assert!(wait >= cap / 2 && wait <= cap, "{attempt}: {wait:?}");
        }
    }

    #[test]
    fn conflicts_name_the_current_version() {
        let e = PublishError::Conflict { spec: "s".into(), expected: 3, current: 5 };
        assert_eq!(
            e.to_string(),
            "version conflict on spec s: the change was made against version 3, but the current version is 5; fetch version 5, redo the change and retry"
        );
    }
}
