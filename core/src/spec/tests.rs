use super::*;
use crate::record::Severity;

const EXAMPLE: &str = include_str!("../../../examples/compute-service.yaml");

fn problems(text: &str) -> Vec<String> {
    Spec::parse(text).unwrap_err().problems.iter().map(ToString::to_string).collect()
}

#[test]
fn the_example_spec_parses() {
    let spec = Spec::parse(EXAMPLE).unwrap();
    assert_eq!(spec.spec, "compute-service");
    assert_eq!(spec.components.len(), 4);
    let tls = &spec.components["frontend"].requirements["tls-min-version"];
    assert_eq!(tls.severity(), Severity::Critical);
    assert!(tls.applies_to("serve-request"));
    assert!(!tls.applies_to("configure-instance"));
}

#[test]
fn the_example_matches_the_published_json_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../schemas/spec.schema.json")).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let spec = Spec::parse(EXAMPLE).unwrap();
    let errors: Vec<String> = validator.iter_errors(&spec.to_value()).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn canonical_json_is_stable_and_round_trips() {
    let spec = Spec::parse(EXAMPLE).unwrap();
    let json = spec.canonical_json();
    let again = Spec::from_json(&json).unwrap();
    assert_eq!(again, spec);
    assert_eq!(again.canonical_json(), json);
    assert_eq!(again.sha256(), spec.sha256());
    // Keys are sorted: "apiVersion" < "components" < "spec".
    let api = json.find("\"apiVersion\"").unwrap();
    assert!(api < json.find("\"components\"").unwrap());
    assert!(json.find("\"components\"").unwrap() < json.find("\"spec\":").unwrap());
}

#[test]
fn inheritance_merges_requirements_and_params_down_the_path() {
    let spec = Spec::parse(EXAMPLE).unwrap();
    let throttle = spec.applicable("frontend.throttle");
    let ids: Vec<&str> = throttle.requirements.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["frontend/tls-min-version", "frontend.throttle/limit-set"]);
    assert_eq!(throttle.params["tls_min_version"], "1.2");
    assert_eq!(throttle.params["max_rps"], 1000);
    // A sibling or an ancestor does not inherit from deeper paths.
    assert!(spec.applicable("frontend").requirements.len() == 1);
    assert!(spec.applicable("frontendx").requirements.is_empty());
    assert_eq!(spec.applicable("compute.instance.host-7").requirements[0].id, "compute.instance/valid-config");
}

#[test]
fn deeper_params_win() {
    let text = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  a: {params: {x: 1, y: 1}}\n  a.b: {params: {x: 2}}\n";
    let applicable = Spec::parse(text).unwrap().applicable("a.b");
    assert_eq!(applicable.params["x"], 2);
    assert_eq!(applicable.params["y"], 1);
}

#[test]
fn a_typo_in_a_field_is_refused_with_its_place() {
    let text = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  frontend:\n    requirements:\n      tls:\n        chekc: {expr: 'true'}\n";
    let found = problems(text);
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("components.frontend.requirements.tls.chekc: unknown field `chekc`"), "{found:?}");
    assert!(found[0].ends_with("at line 7 column 9"), "{found:?}");
}

#[test]
fn a_bad_cel_expression_is_refused_with_its_place() {
    let text = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  frontend:\n    requirements:\n      tls:\n        check: {expr: 'facts.x >='}\n";
    let found = problems(text);
    assert!(found[0].starts_with("components.frontend.requirements.tls.check.expr: CEL does not compile"), "{found:?}");
}

#[test]
fn a_bad_json_schema_is_refused_with_its_place() {
    let text = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  c:\n    requirements:\n      r:\n        check: {schema: {type: 12}}\n";
    assert!(problems(text)[0].starts_with("components.c.requirements.r.check.schema: JSON Schema does not compile"));
}

#[test]
fn illegal_names_and_versions_are_all_reported() {
    let text = "apiVersion: specaudit/v2\nspec: Bad Name\ncomponents:\n  Front..end:\n    requirements:\n      'x y': {}\n";
    let found = problems(text);
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found[0].starts_with("apiVersion:"));
    assert!(found[1].starts_with("spec:"));
    assert!(found[2].starts_with("components.Front..end:"));
    assert!(found[3].starts_with("components.Front..end.requirements.x y:"));
}

#[test]
fn a_bad_severity_is_refused_with_its_place() {
    let text = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  c:\n    requirements:\n      r: {severity: urgent}\n";
    assert!(problems(text)[0].starts_with("components.c.requirements.r.severity: unknown variant `urgent`"));
}

#[test]
fn yaml_syntax_errors_carry_the_line() {
    let err = Spec::parse("apiVersion: specaudit/v1\nspec: [unclosed\n").unwrap_err();
    assert!(err.to_string().contains("line"), "{err}");
}
