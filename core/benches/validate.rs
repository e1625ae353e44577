//! Validation time of a large spec: 1,000 components and 10,000 requirements (a third CEL,
//! a third JSON Schema, a third asserted by the component), against a baseline of bare
//! `serde_json` parsing of the same document. Run: `cargo bench -p specaudit-core --bench validate`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use serde_json::{json, Map, Value};
use specaudit_core::spec::Spec;

fn large_spec() -> Value {
    let mut components = Map::new();
    for c in 0..1_000 {
        let mut requirements = Map::new();
        for r in 0..10 {
            let requirement = match (c * 10 + r) % 3 {
                0 => json!({"severity": "major", "tasks": ["serve"], "check": {"expr": format!("facts.value_{r} <= params.limit")}}),
                1 => json!({"description": "shape of the facts", "check": {"schema": {
                    "type": "object", "required": ["cpus"],
                    "properties": {"cpus": {"type": "integer", "minimum": 1, "maximum": 64}}}}}),
                _ => json!({"severity": "minor", "description": "asserted by the component"}),
            };
            requirements.insert(format!("req-{r}"), requirement);
        }
        components.insert(
            format!("group-{}.component-{c}", c / 50),
            json!({"params": {"limit": c}, "requirements": requirements}),
        );
    }
    json!({"apiVersion": "specaudit/v1", "spec": "large", "components": components})
}

fn bench(c: &mut Criterion) {
    let text = serde_json::to_string(&large_spec()).unwrap_or_default();
    let mut group = c.benchmark_group("validate-1000-components-10000-requirements");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("baseline: serde_json::from_str::<Value>", |b| {
        b.iter(|| serde_json::from_str::<Value>(black_box(&text)))
    });
    group.bench_function("Spec::parse (parse, schema, compile every check)", |b| {
        b.iter(|| Spec::parse(black_box(&text)).map(|s| s.components.len()))
    });
    group.finish();
}

/// Median wall time of `runs` calls of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// The ratio against the baseline, measured in the same run.
fn ratio() {
    let text = serde_json::to_string(&large_spec()).unwrap_or_default();
    assert!(Spec::parse(&text).is_ok(), "the generated spec must be valid");
    let baseline = median(15, || drop(black_box(serde_json::from_str::<Value>(&text))));
    let validate = median(15, || drop(black_box(Spec::parse(&text))));
    println!(
        "spec of {} bytes: baseline serde_json {baseline:?}, Spec::parse {validate:?}, ratio {:.1}x",
        text.len(),
        validate.as_secs_f64() / baseline.as_secs_f64()
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    ratio();
    Criterion::default().configure_from_args().final_summary();
}
