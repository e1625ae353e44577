//! The cost of `Agent::check` on the pass path against the bare check of the same facts,
//! measured in the same run: the bare `jsonschema` validation, and a bare CEL evaluation
//! (facts converted to CEL, then the program run). Rollups are on, as in production.
//!
//! Run: `cargo bench -p specaudit-producer --bench check`. Needs no broker: the agent's
//! rolled-up records wait in its bounded queue.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use serde_json::{json, Value};
use specaudit_core::config::KafkaConfig;
use specaudit_core::record::SpecVersion;
use specaudit_core::spec::Spec;
use specaudit_producer::agent::{Agent, AgentConfig};

const SPEC: &str = r#"
apiVersion: specaudit/v1
spec: bench
components:
  compute.schema:
    requirements:
      valid-config:
        tasks: [configure]
        check:
          schema:
            type: object
            required: [instance_type, cpus]
            properties:
              instance_type: {enum: [small, medium, large]}
              cpus: {type: integer, minimum: 1, maximum: 64}
  compute.cel:
    params: {max_cpus: 64}
    requirements:
      cpu-limit:
        tasks: [configure]
        check:
          expr: "facts.cpus <= params.max_cpus && facts.instance_type in ['small', 'medium', 'large']"
"#;

fn facts() -> Value {
    json!({"instance_type": "large", "cpus": 16})
}

/// An agent of `component`, which has exactly one requirement: the same work as the bare
/// check, plus what the agent adds (lookup, rollup, counters, the result).
fn agent(component: &str) -> Agent {
    let spec = Spec::parse(SPEC).unwrap_or_else(|e| panic!("{e}"));
    let version = SpecVersion {
        spec: spec.spec.clone(),
        version: 1,
        ts: 0,
        author: "bench".into(),
        comment: String::new(),
        sha256: spec.sha256(),
        deleted: false,
        document: spec.canonical_json(),
        patch: "[]".into(),
    };
    // Nothing listens on port 1: records stay in the bounded queue and are dropped.
    let kafka = KafkaConfig { brokers: "127.0.0.1:1".into(), ..KafkaConfig::default() };
    Agent::with_specs(AgentConfig::new(kafka, component, "bench-1"), &[version]).unwrap_or_else(|e| panic!("{e}"))
}

struct Bare {
    schema: jsonschema::Validator,
    cel: cel::Program,
    env: Arc<cel::Env>,
    params: cel::Value,
}

impl Bare {
    fn new() -> Bare {
        let spec: Value = serde_yaml_ng::from_str(SPEC).unwrap_or_default();
        let components = &spec["components"];
        let env = Arc::new(cel::Env::stdlib());
        Bare {
            schema: jsonschema::draft202012::new(&components["compute.schema"]["requirements"]["valid-config"]["check"]["schema"])
                .unwrap_or_else(|e| panic!("{e}")),
            cel: env.compile(components["compute.cel"]["requirements"]["cpu-limit"]["check"]["expr"].as_str().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}")),
            params: cel::to_value(json!({"max_cpus": 64})).unwrap_or_else(|e| panic!("{e}")),
            env,
        }
    }

    fn schema(&self, facts: &Value) -> bool {
        self.schema.is_valid(facts)
    }

    fn cel(&self, facts: &Value) -> bool {
        let mut context = cel::Context::with_env(Arc::clone(&self.env));
        context.add_variable_from_value("facts", cel::to_value(facts).unwrap_or(cel::Value::Null));
        context.add_variable_from_value("params", self.params.clone());
        matches!(self.cel.execute(&context), Ok(cel::Value::Bool(true)))
    }
}

fn bench(c: &mut Criterion) {
    let (schema_agent, cel_agent) = (agent("compute.schema"), agent("compute.cel"));
    let bare = Bare::new();
    let facts = facts();
    let mut group = c.benchmark_group("check-pass-path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline: bare jsonschema is_valid", |b| b.iter(|| bare.schema(black_box(&facts))));
    group.bench_function("agent.check, JSON Schema requirement", |b| b.iter(|| schema_agent.check("configure", black_box(&facts))));
    group.bench_function("baseline: bare CEL (convert facts, execute)", |b| b.iter(|| bare.cel(black_box(&facts))));
    group.bench_function("agent.check, CEL requirement", |b| b.iter(|| cel_agent.check("configure", black_box(&facts))));
    group.finish();
    schema_agent.shutdown(Duration::ZERO);
    cel_agent.shutdown(Duration::ZERO);
}

/// Median ns per call over `runs` rounds of `per_round` calls.
fn median_ns(runs: usize, per_round: u32, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(per_round)
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// Ratios against the baselines, measured interleaved in the same run so that noise from
/// other work on the machine hits both sides alike.
fn ratios() {
    let (agent_s, agent_c) = (agent("compute.schema"), agent("compute.cel"));
    let bare = Bare::new();
    let facts = facts();
    let (mut schema, mut schema_agent, mut cel, mut cel_agent) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        schema.push(median_ns(5, 20_000, || { black_box(bare.schema(&facts)); }));
        schema_agent.push(median_ns(5, 20_000, || { black_box(agent_s.check("configure", &facts)); }));
        cel.push(median_ns(5, 5_000, || { black_box(bare.cel(&facts)); }));
        cel_agent.push(median_ns(5, 5_000, || { black_box(agent_c.check("configure", &facts)); }));
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, sa, c, ca) = (med(&mut schema), med(&mut schema_agent), med(&mut cel), med(&mut cel_agent));
    println!("\nratios against the bare check, same run (median of 15 interleaved rounds):");
    println!("  JSON Schema: agent.check {sa:.0} ns vs bare {s:.0} ns: {:.2}x; {:.0} checks/s on one core", sa / s, 1e9 / sa);
    println!("  CEL:         agent.check {ca:.0} ns vs bare {c:.0} ns: {:.2}x; {:.0} checks/s on one core", ca / c, 1e9 / ca);
    agent_s.shutdown(Duration::ZERO);
    agent_c.shutdown(Duration::ZERO);
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
