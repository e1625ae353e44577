use std::collections::BTreeMap;

use super::*;
use crate::record::{AlarmState, Outcome, RequirementCoverage, Severity, SpecInUse};

fn assertion() -> Assertion {
    Assertion {
        assertion_id: uuid::Uuid::now_v7(),
        ts: 1_764_000_000_000,
        spec: "compute-service".into(),
        spec_version: 3,
        component: "frontend.throttle".into(),
        instance: "fe-1".into(),
        agent_id: "agent-1".into(),
        requirement: "frontend/tls-min-version".into(),
        task: "serve-request".into(),
        outcome: Outcome::Fail,
        severity: Severity::Critical,
        count: 1,
        message: "tls 1.0 < 1.2".into(),
        details: r#"{"tls_version":"1.0"}"#.into(),
        labels: BTreeMap::from([("region".into(), "eu-1".into())]),
    }
}

fn heartbeat() -> Heartbeat {
    Heartbeat {
        agent_id: "agent-1".into(),
        component: "frontend".into(),
        instance: "fe-1".into(),
        ts: 1_764_000_000_000,
        started_at: 1_763_000_000_000,
        sdk_version: "0.1.0".into(),
        specs: vec![SpecInUse { spec: "compute-service".into(), version: 3 }],
        checked: 10,
        emitted: 4,
        dropped: 0,
        requirements: vec![RequirementCoverage {
            spec: "compute-service".into(),
            requirement: "frontend/tls-min-version".into(),
            evaluations: 7,
        }],
        labels: BTreeMap::new(),
    }
}

#[test]
fn crc64_avro_fingerprint_matches_the_avro_specification() {
    // The Avro specification's test vector: the fingerprint of the schema "null".
    let schema = apache_avro::Schema::parse_str(r#""null""#).unwrap();
    assert_eq!(u64::from_le_bytes(fingerprint(&schema)), 7_195_948_357_588_979_594);
}

#[test]
fn every_record_round_trips_through_avro() {
    let a = assertion();
    let codec = Codec::<Assertion>::new();
    let bytes = codec.encode(&a).unwrap();
    assert_eq!(&bytes[..2], &AVRO_MAGIC);
    assert_eq!(&bytes[2..10], &codec.fingerprint());
    assert_eq!(codec.decode(&bytes).unwrap(), a);

    let h = heartbeat();
    let codec = Codec::<Heartbeat>::new();
    assert_eq!(codec.decode(&codec.encode(&h).unwrap()).unwrap(), h);

    let s = SpecVersion {
        spec: "compute-service".into(),
        version: 2,
        ts: 1_764_000_000_000,
        author: "alice".into(),
        comment: "raise limit".into(),
        sha256: "ab".repeat(32),
        deleted: false,
        document: r#"{"spec":"compute-service"}"#.into(),
        patch: r#"[{"op":"replace","path":"/x","value":1}]"#.into(),
    };
    let codec = Codec::<SpecVersion>::new();
    assert_eq!(codec.decode(&codec.encode(&s).unwrap()).unwrap(), s);

    let e = AlarmEvent {
        fingerprint: "f1".into(),
        ts: 1_764_000_000_000,
        rule: "critical-failure".into(),
        state: AlarmState::Firing,
        severity: Severity::Critical,
        spec: "compute-service".into(),
        component: "frontend".into(),
        requirement: "frontend/tls-min-version".into(),
        summary: "1 failure".into(),
        value: 1.0,
        labels: BTreeMap::new(),
    };
    let codec = Codec::<AlarmEvent>::new();
    assert_eq!(codec.decode(&codec.encode(&e).unwrap()).unwrap(), e);
}

#[test]
fn fingerprints_differ_between_record_types() {
    let fps = [
        Codec::<Assertion>::new().fingerprint(),
        Codec::<Heartbeat>::new().fingerprint(),
        Codec::<SpecVersion>::new().fingerprint(),
        Codec::<AlarmEvent>::new().fingerprint(),
    ];
    for (i, a) in fps.iter().enumerate() {
        for b in &fps[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn json_assertion_is_accepted_with_defaults() {
    let json = r#"{"assertion_id":"0190b5a2-7c3e-7d4e-9a00-000000000001","ts":1764000000000,
        "spec":"s","spec_version":1,"component":"c","instance":"i","agent_id":"a",
        "requirement":"c/r","outcome":"pass","severity":"minor"}"#;
    let a = Codec::<Assertion>::new().decode(json.as_bytes()).unwrap();
    assert_eq!(a.outcome, Outcome::Pass);
    assert_eq!(a.severity, Severity::Minor);
    assert_eq!(a.count, 1);
    assert!(a.labels.is_empty());
}

#[test]
fn json_heartbeat_is_accepted() {
    let h = heartbeat();
    let json = serde_json::to_vec(&h).unwrap();
    assert_eq!(Codec::<Heartbeat>::new().decode(&json).unwrap(), h);
}

#[test]
fn json_is_refused_where_the_topic_takes_only_avro() {
    let err = Codec::<SpecVersion>::new().decode(b"{\"spec\":\"x\"}").unwrap_err();
    assert_eq!(err, DecodeError::JsonNotAccepted);
}

#[test]
fn garbage_gives_typed_errors() {
    let codec = Codec::<Assertion>::new();
    assert_eq!(codec.decode(b"").unwrap_err(), DecodeError::Empty);
    assert_eq!(codec.decode(&[0xC3, 0x01, 1, 2]).unwrap_err(), DecodeError::Truncated { len: 4 });
    assert_eq!(codec.decode(b"hello").unwrap_err(), DecodeError::UnknownFormat { byte: b'h' });
    assert_eq!(codec.decode(&[0xC3, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err().kind(), "unknown_format");
    let unknown = codec.decode(&[0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0]).unwrap_err();
    assert_eq!(unknown, DecodeError::UnknownFingerprint { fingerprint: "0102030405060708".into() });
    assert_eq!(codec.decode(b"{\"assertion_id\":").unwrap_err().kind(), "json");
    // Wrong type for a field.
    let wrong = r#"{"assertion_id":"0190b5a2-7c3e-7d4e-9a00-000000000001","ts":"yesterday"}"#;
    assert_eq!(codec.decode(wrong.as_bytes()).unwrap_err().kind(), "json");
}

#[test]
fn every_truncation_of_a_valid_record_is_an_error_not_a_panic() {
    let codec = Codec::<Assertion>::new();
    let bytes = codec.encode(&assertion()).unwrap();
    for len in 0..bytes.len() {
        assert!(codec.decode(&bytes[..len]).is_err(), "prefix of {len} bytes decoded");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(codec.decode(&longer).unwrap_err(), DecodeError::TrailingBytes { trailing: 1 });
}

#[test]
fn forged_lengths_do_not_allocate_or_panic() {
    let codec = Codec::<Assertion>::new();
    let mut bytes = codec.encode(&assertion()).unwrap();
    // The UUID string's length is the first varint of the body: make it huge.
    bytes.truncate(10);
    bytes.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    assert_eq!(codec.decode(&bytes).unwrap_err().kind(), "avro");
}

#[test]
fn a_forged_block_count_in_a_heartbeat_is_read_against_the_bytes_there_are() {
    // Empty strings and arrays, then a labels block count of 2^24 in four bytes: a
    // decoder that reserves room for the count first would reserve gigabytes.
    let codec = Codec::<Heartbeat>::new();
    let mut bytes = AVRO_MAGIC.to_vec();
    bytes.extend_from_slice(&codec.fingerprint());
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x10]);
    // The one-pass reader's own message: it read entries until the body ended.
    assert_eq!(codec.decode(&bytes), Err(DecodeError::Avro("unexpected end of body in a long".into())));
}

#[test]
fn every_truncation_of_a_heartbeat_is_an_error() {
    let codec = Codec::<Heartbeat>::new();
    let bytes = codec.encode(&heartbeat()).unwrap();
    for len in 0..bytes.len() {
        assert!(codec.decode(&bytes[..len]).is_err(), "prefix of {len} bytes decoded");
    }
}

#[test]
fn semantic_checks_reject_what_the_schema_allows() {
    let codec = Codec::<Assertion>::new();
    let mut a = assertion();
    a.count = 0;
    let err = codec.decode(&codec.encode(&a).unwrap()).unwrap_err();
    assert_eq!(err, DecodeError::Invalid("count 0 must be between 1 and 4294967295".into()));

    // Values ClickHouse would wrap or clamp silently are refused instead.
    let mut a = assertion();
    a.count = i64::from(u32::MAX) + 1;
    assert_eq!(codec.decode(&codec.encode(&a).unwrap()).unwrap_err().kind(), "invalid");
    let mut a = assertion();
    a.ts = MAX_TS_MS + 1;
    assert_eq!(codec.decode(&codec.encode(&a).unwrap()).unwrap_err().kind(), "invalid");
    a.ts = MAX_TS_MS;
    assert!(codec.decode(&codec.encode(&a).unwrap()).is_ok());

    let mut a = assertion();
    a.message = "x".repeat(MAX_FIELD_BYTES + 1);
    assert_eq!(codec.decode(&codec.encode(&a).unwrap()).unwrap_err().kind(), "invalid");

    let mut a = assertion();
    a.details = "not json".into();
    assert_eq!(codec.decode(&codec.encode(&a).unwrap()).unwrap_err().kind(), "invalid");

    let mut a = assertion();
    a.component.clear();
    assert_eq!(codec.decode(&codec.encode(&a).unwrap()).unwrap_err().kind(), "invalid");
}

#[test]
fn heartbeats_are_held_to_the_limits_of_assertions() {
    let codec = Codec::<Heartbeat>::new();
    let refused = |change: &dyn Fn(&mut Heartbeat)| {
        let mut h = heartbeat();
        change(&mut h);
        match codec.decode(&codec.encode(&h).unwrap()) {
            Err(DecodeError::Invalid(reason)) => reason,
            other => panic!("accepted or refused for another reason: {other:?}"),
        }
    };
    assert!(refused(&|h| h.sdk_version = "x".repeat(MAX_FIELD_BYTES + 1)).starts_with("sdk_version is"));
    assert!(refused(&|h| h.started_at = -1).starts_with("started_at:"));
    assert!(refused(&|h| h.specs[0].version = 0).contains("version 0 of \"compute-service\" must be at least 1"));
    assert!(refused(&|h| h.requirements[0].evaluations = -5).contains("must not be negative"));
    assert!(refused(&|h| h.requirements[0].requirement = "r".repeat(MAX_FIELD_BYTES + 1)).starts_with("requirements[].requirement is"));
    assert!(codec.decode(&codec.encode(&heartbeat()).unwrap()).is_ok());
}

mod one_pass_heartbeat_reader {
    //! The one-pass reader of current-schema heartbeats against `apache_avro`, on the
    //! bodies it writes (not on garbage: there `apache_avro` may reserve gigabytes).
    use proptest::prelude::*;

    use super::*;

    fn any_heartbeat() -> impl Strategy<Value = Heartbeat> {
        let text = || ".{0,20}";
        (
            (text(), text(), text(), any::<i64>(), any::<i64>(), text()),
            proptest::collection::vec((text(), any::<i64>()), 0..4),
            (any::<i64>(), any::<i64>(), any::<i64>()),
            proptest::collection::vec((text(), text(), any::<i64>()), 0..4),
            proptest::collection::btree_map(text(), text(), 0..4),
        )
            .prop_map(|((agent_id, component, instance, ts, started_at, sdk_version), specs, (checked, emitted, dropped), requirements, labels)| Heartbeat {
                agent_id,
                component,
                instance,
                ts,
                started_at,
                sdk_version,
                specs: specs.into_iter().map(|(spec, version)| SpecInUse { spec, version }).collect(),
                checked,
                emitted,
                dropped,
                requirements: requirements.into_iter().map(|(spec, requirement, evaluations)| RequirementCoverage { spec, requirement, evaluations }).collect(),
                labels,
            })
    }

    proptest! {
        #[test]
        fn reads_what_apache_avro_writes(h in any_heartbeat()) {
            let codec = Codec::<Heartbeat>::new();
            let body = apache_avro::to_avro_datum(&codec.schema, apache_avro::to_value(&h).unwrap()).unwrap();
            let mut reader = reader::Reader::new(&body);
            prop_assert_eq!(reader::heartbeat(&mut reader), Ok(h));
            prop_assert_eq!(reader.remaining(), 0);
        }
    }
}

mod one_pass_reader {
    //! The one-pass reader of current-schema assertions against `apache_avro`, the oracle.
    use proptest::prelude::*;

    use super::*;

    /// What `apache_avro` makes of a body written with the current schema.
    fn oracle(codec: &Codec<Assertion>, body: &[u8]) -> Result<Assertion, ()> {
        let mut rest = body;
        let value = apache_avro::from_avro_datum(&codec.schema, &mut rest, None).map_err(|_| ())?;
        if !rest.is_empty() {
            return Err(());
        }
        apache_avro::from_value::<Assertion>(&value).map_err(|_| ())
    }

    fn one_pass(body: &[u8]) -> Result<Assertion, ()> {
        let mut reader = reader::Reader::new(body);
        let record = reader::assertion(&mut reader).map_err(|_| ())?;
        if reader.remaining() != 0 {
            return Err(());
        }
        Ok(record)
    }

    fn any_assertion() -> impl Strategy<Value = Assertion> {
        let text = || ".{0,40}";
        (
            (any::<u128>(), any::<i64>(), text(), any::<i64>(), text(), text(), text(), text(), text()),
            (0..4usize, 0..4usize, any::<i64>(), text(), text(), proptest::collection::btree_map(text(), text(), 0..5)),
        )
            .prop_map(|((id, ts, spec, spec_version, component, instance, agent_id, requirement, task), rest)| {
                let (outcome, severity, count, message, details, labels) = rest;
                Assertion {
                    assertion_id: uuid::Uuid::from_u128(id),
                    ts,
                    spec,
                    spec_version,
                    component,
                    instance,
                    agent_id,
                    requirement,
                    task,
                    outcome: Outcome::ALL[outcome],
                    severity: [Severity::Critical, Severity::Major, Severity::Minor, Severity::Info][severity],
                    count,
                    message,
                    details,
                    labels,
                }
            })
    }

    /// What `apache_avro` writes for `a`.
    fn apache_body(codec: &Codec<Assertion>, a: &Assertion) -> Vec<u8> {
        apache_avro::to_avro_datum(&codec.schema, apache_avro::to_value(a).unwrap()).unwrap()
    }

    proptest! {
        #[test]
        fn writes_what_apache_avro_writes(a in any_assertion()) {
            let codec = Codec::<Assertion>::new();
            let mut body = Vec::new();
            writer::assertion(&mut body, &a);
            prop_assert_eq!(oracle(&codec, &body), Ok(a.clone()));
            // Byte for byte too, where the order of map entries (free in Avro, and
            // `apache_avro`'s a hash map's) cannot differ.
            if a.labels.len() <= 1 {
                prop_assert_eq!(body, apache_body(&codec, &a));
            }
        }

        #[test]
        fn reads_what_apache_avro_writes(a in any_assertion()) {
            let codec = Codec::<Assertion>::new();
            prop_assert_eq!(one_pass(&apache_body(&codec, &a)), Ok(a));
        }

        #[test]
        fn agrees_with_apache_avro_on_damaged_bodies(
            a in any_assertion(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let codec = Codec::<Assertion>::new();
            let mut body = apache_body(&codec, &a);
            for (at, byte) in edits {
                let at = at.index(body.len());
                body[at] = byte;
            }
            if truncate {
                body.truncate(cut.index(body.len() + 1));
            }
            prop_assert_eq!(one_pass(&body), oracle(&codec, &body));
        }

        #[test]
        fn decoding_into_one_record_gives_what_decode_gives(
            records in proptest::collection::vec((any_assertion(), any::<bool>(), any::<prop::sample::Index>(), any::<u8>(), any::<bool>()), 1..8),
        ) {
            // Records of every size, valid or not, damaged or not, one after the other into
            // the same assertion: each comes out as `decode` has it, leftovers and all.
            let codec = Codec::<Assertion>::new();
            let mut into = assertion();
            for (mut a, valid, at, byte, damage) in records {
                if valid {
                    // Random fields mostly fail the semantic checks: make these pass them.
                    a.assertion_id = uuid::Uuid::from_u128(a.assertion_id.as_u128() | 1);
                    a.ts = 1 + a.ts.rem_euclid(MAX_TS_MS);
                    a.spec_version = 1 + a.spec_version.rem_euclid(1000);
                    a.count = 1 + a.count.rem_euclid(1000);
                    for name in [&mut a.spec, &mut a.component, &mut a.instance, &mut a.agent_id, &mut a.requirement] {
                        name.push('x');
                    }
                    a.details = if a.details.is_empty() { String::new() } else { serde_json::to_string(&a.details).unwrap() };
                    a.labels.retain(|k, _| !k.is_empty());
                }
                let mut bytes = codec.encode(&a).unwrap();
                if damage {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
                match codec.decode(&bytes) {
                    Ok(decoded) => {
                        prop_assert_eq!(codec.decode_into(&bytes, &mut into), Ok(()));
                        prop_assert_eq!(&into, &decoded);
                    }
                    Err(error) => prop_assert_eq!(codec.decode_into(&bytes, &mut into), Err(error)),
                }
            }
        }

        #[test]
        fn agrees_with_apache_avro_on_random_bytes(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let codec = Codec::<Assertion>::new();
            prop_assert_eq!(one_pass(&body), oracle(&codec, &body));
        }
    }
}
