//! Decoding one assertion as the ingester does (`Codec::decode`: the one-pass reader plus
//! the semantic checks), against `apache_avro`'s decoding of the same bytes (`Value` tree,
//! then deserialization: the codec's former path, and still the path of older writer
//! schemas) and against serde_json reading the same record as JSON; and encoding one as
//! agents do (`Codec::encode`, the one-pass writer) against `apache_avro`'s encoding; all
//! in the same run. Run: `cargo bench -p specaudit-core --bench codec`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use criterion::{criterion_group, Criterion};
use specaudit_core::codec::{Codec, Record};
use specaudit_core::record::{Assertion, Outcome, Severity};

fn assertion() -> Assertion {
    Assertion {
        assertion_id: uuid::Uuid::now_v7(),
        ts: 1_764_000_000_000,
        spec: "compute-service".into(),
        spec_version: 3,
        component: "compute.host.dom0".into(),
        instance: "host-17".into(),
        agent_id: "agent-host-17".into(),
        requirement: "compute/max-cpus".into(),
        task: "configure-instance".into(),
        outcome: Outcome::Fail,
        severity: Severity::Major,
        count: 1,
        message: "cpus 128 > 64".into(),
        details: r#"{"cpus":128}"#.into(),
        labels: BTreeMap::from([("region".into(), "eu-1".into()), ("zone".into(), "b".into())]),
    }
}

struct Inputs {
    codec: Codec<Assertion>,
    schema: Schema,
    avro: Vec<u8>,
    json: Vec<u8>,
}

fn inputs() -> Inputs {
    let codec = Codec::<Assertion>::new();
    let a = assertion();
    let avro = codec.encode(&a).unwrap_or_default();
    let json = serde_json::to_vec(&a).unwrap_or_default();
    let schema = Schema::parse_str(Assertion::SCHEMA).unwrap_or(Schema::Null);
    Inputs { codec, schema, avro, json }
}

fn apache(inputs: &Inputs) -> Option<Assertion> {
    let mut body = &inputs.avro[10..];
    let value = apache_avro::from_avro_datum(&inputs.schema, &mut body, None).ok()?;
    apache_avro::from_value(&value).ok()
}

fn apache_encode(inputs: &Inputs, a: &Assertion) -> Option<Vec<u8>> {
    let value = apache_avro::to_value(a).ok()?;
    apache_avro::to_avro_datum(&inputs.schema, value).ok()
}

fn bench(c: &mut Criterion) {
    let inputs = inputs();
    assert_eq!(inputs.codec.decode(&inputs.avro).ok(), apache(&inputs), "both paths read the same record");
    let mut group = c.benchmark_group("decode-assertion");
    group.bench_function("baseline: apache_avro Value tree + from_value", |b| b.iter(|| apache(black_box(&inputs))));
    group.bench_function("baseline: serde_json, the same record as JSON", |b| {
        b.iter(|| serde_json::from_slice::<Assertion>(black_box(&inputs.json)).ok())
    });
    group.bench_function("Codec::decode (one-pass reader + checks)", |b| {
        b.iter(|| inputs.codec.decode(black_box(&inputs.avro)).ok())
    });
    group.finish();
    let a = assertion();
    let mut group = c.benchmark_group("encode-assertion");
    group.bench_function("baseline: apache_avro Value tree + to_avro_datum", |b| b.iter(|| apache_encode(&inputs, black_box(&a))));
    group.bench_function("Codec::encode (one-pass writer)", |b| b.iter(|| inputs.codec.encode(black_box(&a)).ok()));
    group.finish();
}

/// Median time per call over `runs` rounds of 10,000 calls.
fn per_call(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..10_000 {
                f();
            }
            start.elapsed() / 10_000
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// The ratios against both baselines, measured in the same run.
fn ratio() {
    let inputs = inputs();
    let apache_t = per_call(31, || drop(black_box(apache(&inputs))));
    let json_t = per_call(31, || drop(black_box(serde_json::from_slice::<Assertion>(&inputs.json).ok())));
    let codec_t = per_call(31, || drop(black_box(inputs.codec.decode(&inputs.avro).ok())));
    println!(
        "decode one assertion: apache_avro {apache_t:?}, serde_json {json_t:?}, Codec::decode {codec_t:?}; \
         {:.1}x faster than apache_avro, {:.1}x faster than serde_json",
        apache_t.as_secs_f64() / codec_t.as_secs_f64(),
        json_t.as_secs_f64() / codec_t.as_secs_f64()
    );
    let a = assertion();
    let apache_t = per_call(31, || drop(black_box(apache_encode(&inputs, &a))));
    let codec_t = per_call(31, || drop(black_box(inputs.codec.encode(&a).ok())));
    println!(
        "encode one assertion: apache_avro {apache_t:?}, Codec::encode {codec_t:?}; {:.1}x faster",
        apache_t.as_secs_f64() / codec_t.as_secs_f64()
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    ratio();
    Criterion::default().configure_from_args().final_summary();
}
