//! A corpus of corrupt records mixed into a load: each lands in the dead letters — the
//! topic, with its reason and origin in headers, and the `dead_letters` table — while
//! every valid record is ingested once.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::{Headers, Message};
use rdkafka::producer::Producer;
use specaudit_core::codec::{Codec, MAX_FIELD_BYTES, MAX_TS_MS};
use specaudit_core::kafka::Topics;
use specaudit_core::record::Assertion;
use specaudit_ingester::dead_letter::{HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC};
use specaudit_tests::TestEnv;
use support::{counts, wait_for_rows, Load};
use tokio_util::sync::CancellationToken;

/// (payload, the reason it must be dead-lettered with).
fn corpus(load: &Load) -> Vec<(Vec<u8>, &'static str)> {
    let codec = Codec::<Assertion>::new();
    let valid = load.record(0).1;
    let decoded = codec.decode(&valid).expect("template decodes");
    let variant = |f: &dyn Fn(&mut Assertion)| {
        let mut a = decoded.clone();
        f(&mut a);
        codec.encode(&a).expect("encode")
    };
    let mut unknown_fingerprint = valid.clone();
    unknown_fingerprint[2..10].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
    let mut trailing = valid.clone();
    trailing.extend_from_slice(b"extra");
    vec![
        (Vec::new(), "empty"),
        (valid[..6].to_vec(), "truncated"),
        (valid[..valid.len() - 7].to_vec(), "avro"),
        (unknown_fingerprint, "unknown_fingerprint"),
        (trailing, "trailing_bytes"),
        (b"\x00\x01binary garbage".to_vec(), "unknown_format"),
        (b"{not json".to_vec(), "json"),
        (br#"{"assertion_id":"0189a0c0-0000-7000-8000-000000000001","ts":"yesterday","spec":"s","spec_version":1,"component":"c","instance":"i","agent_id":"a","requirement":"c/r","outcome":"pass","severity":"major"}"#.to_vec(), "json"),
        (br#"{"assertion_id":"0189a0c0-0000-7000-8000-000000000002","ts":1,"spec":"s","spec_version":1,"component":"c","instance":"i","agent_id":"a","requirement":"c/r","outcome":"maybe","severity":"major"}"#.to_vec(), "json"),
        (variant(&|a| a.count = 1 << 40), "invalid"),
        (variant(&|a| a.ts = MAX_TS_MS + 1), "invalid"),
        (variant(&|a| a.message = "m".repeat(MAX_FIELD_BYTES + 1)), "invalid"),
        (variant(&|a| a.labels = (0..100).map(|i| (format!("k{i}"), "v".into())).collect()), "invalid"),
        (variant(&|a| a.assertion_id = uuid::Uuid::nil()), "invalid"),
        (variant(&|a| a.details = "{unclosed".into()), "invalid"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_records_go_to_dead_letters_with_their_reason_and_the_rest_is_ingested() {
    let env = TestEnv::new().await;
    let topics = Topics::new(&env.kafka.topic_prefix);
    let load = Load::new(20);
    let valid = 20_000u64;
    let corpus = corpus(&load);

    // Corrupt records spread through the load, on one partition (one key) so their
    // offsets are known.
    let producer = support::producer(&env.kafka);
    let every = valid / corpus.len() as u64;
    let mut bad = corpus.iter();
    for i in 0..valid {
        let (key, bytes) = load.record(i);
        support::send(&producer, &topics.assertions, key, &bytes);
        if i % every == every / 2 {
            if let Some((payload, _)) = bad.next() {
                support::send(&producer, &topics.assertions, "corrupt", payload);
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    let config = support::config(&env);
    let stop = CancellationToken::new();
    let ingester = tokio::spawn(specaudit_ingester::run(config, stop.clone()));
    let client = env.client();
    let c = wait_for_rows(&client, valid, Duration::from_secs(300)).await;

    // The dead-letters table: one row per corrupt record, with its reason.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let table = loop {
        let rows: Vec<(String, i32, i64, String, String)> = client
            .query("SELECT source_topic, source_partition, source_offset, reason, hex(payload) FROM dead_letters ORDER BY source_offset")
            .fetch_all()
            .await
            .unwrap_or_default();
        if rows.len() >= corpus.len() {
            break rows;
        }
        assert!(std::time::Instant::now() < deadline, "only {} dead letters in the table", rows.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.cancel();
    ingester.await.expect("join").expect("ingester");

    let c2 = counts(&client).await.expect("counts");
    assert_eq!((c2.rows, c2.unique_ids), (valid, valid), "every valid record once: {c:?}");
    assert_eq!(c2.rollup_sum, c2.raw_sum);
    let reasons: Vec<&str> = table.iter().map(|r| r.3.as_str()).collect();
    let expected: Vec<&str> = corpus.iter().map(|(_, reason)| *reason).collect();
    assert_eq!(reasons, expected, "one dead letter per corrupt record, in order, with its reason");
    for ((topic, _, _, _, payload), (original, _)) in table.iter().zip(&corpus) {
        assert_eq!(topic, &topics.assertions);
        let hex: String = original.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(payload, &hex, "the original bytes are kept");
    }

    // The dead-letters topic carries the same, in headers.
    let mut topic_letters: BTreeMap<i64, (String, String, i32)> = BTreeMap::new();
    specaudit_core::kafka::read_to_end(&env.kafka, &topics.dead_letters, Duration::from_secs(30), |m| {
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let offset: i64 = header(HEADER_OFFSET).parse().expect("offset header");
        let partition: i32 = header(HEADER_PARTITION).parse().expect("partition header");
        topic_letters.insert(offset, (header(HEADER_REASON), header(HEADER_TOPIC), partition));
    })
    .expect("read dead letters");
    let from_table: BTreeMap<i64, (String, String, i32)> =
        table.iter().map(|(t, p, o, reason, _)| (*o, (reason.clone(), t.clone(), *p))).collect();
    assert_eq!(topic_letters, from_table, "topic and table agree on every dead letter");
    env.cleanup().await;
}

/// ClickHouse refused a record, and retention has already removed its bytes from Kafka: it
/// still gets its dead letter, without the bytes and saying why, instead of the ingester
/// waiting for it for good. A record still in Kafka gets its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_already_gone_from_kafka_gets_a_dead_letter_without_its_bytes() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Offset, TopicPartitionList};
    use specaudit_ingester::dead_letter::{refused, REASON_REFUSED};
    use specaudit_ingester::rows::Source;

    let env = TestEnv::new().await;
    let topic = Topics::new(&env.kafka.topic_prefix).assertions;
    let producer: FutureProducer = specaudit_core::kafka::client_config(&env.kafka).create().expect("producer");
    for i in 0..3u8 {
        let payload = [i; 4];
        let record = FutureRecord::<[u8], [u8]>::to(&topic).partition(0).key(b"k").payload(&payload);
        producer.send(record, Duration::from_secs(10)).await.expect("produce");
    }
    let admin: AdminClient<_> = specaudit_core::kafka::client_config(&env.kafka).create().expect("admin");
    let mut gone = TopicPartitionList::new();
    gone.add_partition_offset(&topic, 0, Offset::Offset(2)).expect("offset");
    admin.delete_records(&gone, &AdminOptions::new()).await.expect("delete records");

    let letter = refused(&env.kafka, &topic, Source { partition: 0, offset: 1 }, "value out of range".into()).await.expect("a dead letter");
    assert_eq!((letter.reason, letter.partition, letter.offset), (REASON_REFUSED, 0, 1));
    assert!(letter.payload.is_empty());
    assert!(letter.error.starts_with("value out of range") && letter.error.contains("no longer in Kafka"), "{}", letter.error);

    let letter = refused(&env.kafka, &topic, Source { partition: 0, offset: 2 }, "value out of range".into()).await.expect("a dead letter");
    assert_eq!((letter.payload, letter.error.as_str()), (vec![2u8; 4], "value out of range"));
    env.cleanup().await;
}
