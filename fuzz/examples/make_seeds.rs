//! Writes the seed corpus under `fuzz/seeds/` from real examples: the example spec and the
//! invalid-spec corpus of the core tests, records encoded by the codec, and the checks of
//! the example spec. Run from `fuzz/`: `cargo run --example make_seeds`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use specaudit_core::codec::{Codec, Record};
use specaudit_core::record::{
    AlarmEvent, AlarmState, Assertion, Heartbeat, Outcome, RequirementCoverage, Severity, SpecInUse, SpecVersion,
};
use specaudit_core::spec::Spec;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create the seed directory");
    fs::write(dir.join(name), bytes).expect("write a seed");
}

fn avro<T: Record>(record: &T) -> Vec<u8> {
    Codec::<T>::new().encode(record).expect("the example record encodes")
}

fn records(dir: &Path) {
    let assertion = Assertion {
        assertion_id: uuid::Uuid::parse_str("01936b2e-8f00-7000-8000-000000000001").expect("a UUID"),
        ts: 1_764_000_000_000,
        spec: "compute-service".into(),
        spec_version: 3,
        component: "frontend".into(),
        instance: "fe-1".into(),
        agent_id: "agent-1".into(),
        requirement: "frontend/tls-min-version".into(),
        task: "serve-request".into(),
        outcome: Outcome::Fail,
        severity: Severity::Critical,
        count: 2,
        message: "facts.tls_version >= params.tls_min_version is false".into(),
        details: r#"{"tls_version":"1.0"}"#.into(),
        labels: BTreeMap::from([("region".into(), "eu-1".into())]),
    };
    let heartbeat = Heartbeat {
        agent_id: "agent-1".into(),
        component: "frontend".into(),
        instance: "fe-1".into(),
        ts: 1_764_000_000_000,
        started_at: 1_763_000_000_000,
        sdk_version: "0.1.0".into(),
        specs: vec![SpecInUse { spec: "compute-service".into(), version: 3 }],
        checked: 10,
        emitted: 4,
        dropped: 1,
        requirements: vec![RequirementCoverage {
            spec: "compute-service".into(),
            requirement: "frontend/tls-min-version".into(),
            evaluations: 7,
        }],
        labels: BTreeMap::from([("zone".into(), "a".into())]),
    };
    let spec = Spec::parse(&example()).expect("the example spec is valid");
    let spec_version = SpecVersion {
        spec: spec.spec.clone(),
        version: 2,
        ts: 1_764_000_000_000,
        author: "alice".into(),
        comment: "raise the limit".into(),
        sha256: spec.sha256(),
        deleted: false,
        document: spec.canonical_json(),
        patch: r#"[{"op":"replace","path":"/components/frontend.throttle/params/max_rps","value":1000}]"#.into(),
    };
    let alarm = AlarmEvent {
        fingerprint: "3f2a".into(),
        ts: 1_764_000_000_000,
        rule: "compute-service/alarms[0]".into(),
        state: AlarmState::Firing,
        severity: Severity::Critical,
        spec: "compute-service".into(),
        component: "frontend".into(),
        requirement: "frontend/tls-min-version".into(),
        summary: "1 failure".into(),
        value: 1.0,
        labels: BTreeMap::new(),
    };
    write(dir, "assertion.avro", &avro(&assertion));
    write(dir, "heartbeat.avro", &avro(&heartbeat));
    write(dir, "spec-version.avro", &avro(&spec_version));
    write(dir, "alarm-event.avro", &avro(&alarm));
    write(dir, "assertion.json", &serde_json::to_vec(&assertion).expect("JSON"));
    write(dir, "heartbeat.json", &serde_json::to_vec(&heartbeat).expect("JSON"));
    let minimal = json!({
        "assertion_id": "01936b2e-8f00-7000-8000-000000000002", "ts": 1, "spec": "s", "spec_version": 1,
        "component": "c", "instance": "i", "agent_id": "a", "requirement": "c/r", "outcome": "pass", "severity": "info",
    });
    write(dir, "assertion-minimal.json", minimal.to_string().as_bytes());
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example() -> String {
    fs::read_to_string(root().join("examples/compute-service.yaml")).expect("read the example spec")
}

fn specs(dir: &Path) {
    let text = example();
    write(dir, "compute-service.yaml", text.as_bytes());
    let spec = Spec::parse(&text).expect("the example spec is valid");
    write(dir, "compute-service.json", spec.canonical_json().as_bytes());
    let invalid = root().join("core/tests/invalid-specs");
    let mut files: Vec<_> = fs::read_dir(&invalid).expect("read the invalid specs").map(|e| e.expect("an entry").path()).collect();
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json")) {
        let name = path.file_name().expect("a file name").to_string_lossy();
        write(dir, &format!("invalid-{name}"), &fs::read(path).expect("read an invalid spec"));
    }
}

fn checks(dir: &Path) {
    let spec = Spec::parse(&example()).expect("the example spec is valid");
    let mut n = 0;
    let mut seed = |selector: u8, source: &str, facts: Option<serde_json::Value>| {
        let mut bytes = vec![selector];
        bytes.extend_from_slice(source.as_bytes());
        if let Some(facts) = facts {
            bytes.push(0);
            bytes.extend_from_slice(facts.to_string().as_bytes());
        }
        n += 1;
        write(dir, &format!("{}-{n:02}", if selector == b's' { "schema" } else { "cel" }), &bytes);
    };
    for component in spec.components.values() {
        for requirement in component.requirements.values() {
            let Some(check) = &requirement.check else { continue };
            if let Some(expr) = &check.expr {
                seed(b'e', expr, None);
            }
            if let Some(schema) = &check.schema {
                seed(b's', &schema.to_string(), Some(json!({"instance_type": "small", "cpus": 4})));
                seed(b's', &schema.to_string(), Some(json!({"instance_type": "huge", "cpus": 0})));
            }
        }
    }
    for expr in [
        "facts.tags.all(t, t in ['a', 'b'])",
        "facts.nested.list.exists(x, x > 2) && size(facts.tags) == 2",
        "facts.nested.list.map(x, x * 2).filter(y, y > 2).size() == 2",
        r"facts.tls_version.matches('^1\\.[23]$') || !facts.enabled",
        "has(facts.nested.none) ? facts.cpus <= params.max_cpus : facts.ratio < 0.75",
        "facts.instance_type in params.names && int(facts.ratio * 10.0) == 5",
        "{'a': 1, 'b': [1u, 2u]}['b'][1] == 2u && string(facts.cpus) + 'x' == '4x'",
        "duration('1h') > duration('30m') && timestamp('2026-01-01T00:00:00Z') < timestamp('2027-01-01T00:00:00Z')",
        "b'abc'.size() == 3 && double(facts.cpus) / 2.0 == 2.0 && -facts.cpus % 3 == -1",
        "facts.tags.exists_one(t, t.startsWith('a')) && max(1, 2, 3) == 3",
    ] {
        seed(b'e', expr, None);
    }
    let schemas = [
        json!({"type": "object", "required": ["cpus"], "properties": {"cpus": {"type": "integer", "minimum": 1, "multipleOf": 2}}, "additionalProperties": true}),
        json!({"$defs": {"name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8}}, "properties": {"instance_type": {"$ref": "#/$defs/name"}}}),
        json!({"properties": {"tags": {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": true, "contains": {"const": "a"}}}}),
        json!({"anyOf": [{"required": ["tls_version"]}, {"not": {"type": "object"}}], "if": {"properties": {"enabled": {"const": true}}}, "then": {"required": ["ratio"]}}),
        json!({"properties": {"nested": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}, "dependentRequired": {"list": ["none"]}}}, "unevaluatedProperties": false}),
        json!({"oneOf": [{"format": "date-time"}, {"type": "number", "exclusiveMaximum": 1}], "prefixItems": [{"type": "string"}]}),
    ];
    for schema in schemas {
        seed(b's', &schema.to_string(), None);
    }
}

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    records(&seeds.join("decode_records"));
    specs(&seeds.join("spec_parse"));
    checks(&seeds.join("check_compile"));
    println!("seeds written to {}", seeds.display());
}
