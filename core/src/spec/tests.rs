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
    assert_eq!(spec.components.len(), 12);
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
    assert_eq!(
        found[0],
        "components.frontend.requirements.tls.chekc: unknown field `chekc`, expected one of `check`, `description`, `severity`, `tasks` (line 7)"
    );
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
    assert_eq!(
        problems(text)[0],
        "components.c.requirements.r.severity: \"urgent\" is not one of critical, major, minor, info (line 6)"
    );
}

#[test]
fn yaml_syntax_errors_carry_the_line() {
    let err = Spec::parse("apiVersion: specaudit/v1\nspec: [unclosed\n").unwrap_err();
    assert!(err.to_string().contains("line"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "apiVersion: specaudit/v1\nspec: s\nowner: [x]\ncomponents:\n  a:\n    requirements:\n      r1: {check: {expr: 'facts.x >='}}\n      r2: {severity: high}\n      r3: {check: {schema: {type: 12}}}\n";
    let found = problems(text);
    let places: Vec<&str> = found.iter().map(|p| p.split(':').next().unwrap_or_default()).collect();
    assert_eq!(
        places,
        [
            "owner",
            "components.a.requirements.r1.check.expr",
            "components.a.requirements.r2.severity",
            "components.a.requirements.r3.check.schema"
        ],
        "{found:?}"
    );
}

/// Strings that YAML would read as other types unless quoted, keys with dots, unicode.
const TRICKY: &str = r#"
apiVersion: specaudit/v1
spec: tricky.spec-1
description: "Ünïcödé: quotes ' and \" and # not a comment"
owners: ["yes", "null", "1.2", "~"]
components:
  a.b-c_d.e:
    params: {version: "1.10", enabled: "true", n: 3, x: 1.5, list: [1, "2", null], nested: {deep: {er: "no"}}}
    requirements:
      r.1:
        description: |
          multi
          line
        severity: info
        tasks: ["on", "off"]
        check: {expr: 'facts.v == "1.10" && params.n > 2'}
      r2:
        check:
          schema: {type: object, properties: {"on": {const: "yes"}}}
alarms:
  - name: critical
    match: {severity: critical, labels: {"team": "x"}}
    when: {failure_ratio_above: 0.5, min_samples: 10}
    for: 5m
"#;

#[test]
fn yaml_to_canonical_json_to_yaml_round_trips() {
    for text in [EXAMPLE, TRICKY] {
        let spec = Spec::parse(text).unwrap();
        let json = spec.canonical_json();
        let from_json = Spec::from_json(&json).unwrap();
        assert_eq!(from_json, spec);
        let yaml = from_json.to_yaml();
        let again = Spec::parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(again, spec, "{yaml}");
        assert_eq!(again.canonical_json(), json);
        assert_eq!(again.sha256(), spec.sha256());
    }
    let tricky = Spec::parse(TRICKY).unwrap();
    let params = &tricky.components["a.b-c_d.e"].params;
    assert_eq!(params["version"], "1.10");
    assert_eq!(params["enabled"], "true");
    assert_eq!(tricky.owners, ["yes", "null", "1.2", "~"]);
}

#[test]
fn line_separators_in_strings_survive_every_form() {
    // YAML 1.1 takes U+2028, U+2029 and U+0085 for line breaks and folds the space before
    // them; the canonical JSON escapes them so every reader keeps the text as written.
    let mut value = Spec::parse(EXAMPLE).unwrap().to_value();
    let text = "only \u{2028}TLS \u{2029}and \u{85}more";
    value["description"] = text.into();
    let spec = Spec::from_value(value).unwrap();
    let json = spec.canonical_json();
    assert!(json.contains(r"only \u2028TLS \u2029and \u0085more"), "{json}");
    for (form, again) in [
        ("from_json", Spec::from_json(&json)),
        ("parse of the canonical JSON", Spec::parse(&json)),
        ("parse of the YAML", Spec::parse(&spec.to_yaml())),
    ] {
        let again = again.unwrap_or_else(|e| panic!("{form}: {e}"));
        assert_eq!(again.description, text, "{form}");
        assert_eq!(again.sha256(), spec.sha256(), "{form}");
    }
}

#[test]
fn json_and_yaml_of_one_spec_are_the_same_version() {
    let spec = Spec::parse(EXAMPLE).unwrap();
    let pretty = serde_json::to_string_pretty(&spec.to_value()).unwrap();
    assert_eq!(Spec::parse(&pretty).unwrap().sha256(), spec.sha256());
}

#[test]
fn every_field_of_the_model_is_in_the_published_schema() {
    // TRICKY uses every field the model has; the schema must accept it and refuse an extra one.
    let value = Spec::parse(TRICKY).unwrap().to_value();
    assert!(Spec::from_value(value.clone()).is_ok());
    let mut extra = value;
    extra["components"]["a.b-c_d.e"]["requirements"]["r2"]["weight"] = 1.into();
    let err = Spec::from_value(extra).unwrap_err();
    assert_eq!(err.problems[0].path, "components.a.b-c_d.e.requirements.r2.weight");
    assert_eq!(err.problems[0].line, None);
}

#[test]
fn alarm_policies_take_what_the_alarmer_reads() {
    let text = "apiVersion: specaudit/v1\nspec: s\nalarms:\n  - match: {severity: [critical, major], component: frontend, requirement: 'frontend/*'}\n    when: {outliers: {max_fraction: 0.2, min_instances: 4}, window: 10m}\n  - when: {failure_ratio_above: 0.1, min_samples: 20}\n    for: 1h 30m\n  - when: {stale_version_for: 15m}\n";
    let spec = Spec::parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.alarms.len(), 3);
    assert_eq!(spec.alarms[1].hold.as_deref(), Some("1h 30m"));
}

/// A spec with one alarm policy, written as the YAML lines after `- `.
fn with_policy(policy: &str) -> String {
    format!("apiVersion: specaudit/v1\nspec: s\nalarms:\n  - {policy}\n")
}

#[test]
fn alarm_policies_the_alarmer_would_skip_are_refused_with_its_words() {
    // The schema takes each of these; the alarmer would skip the policy with a warning.
    let cases = [
        ("when: {failures_at_least: 3, min_samples: 10}", "alarms[0].when", "min_samples applies only to failure_ratio_above"),
        (
            "when: {silent_for: 10m, window: 5m}",
            "alarms[0].when",
            "window does not apply to silent_for or stale_version_for: their duration is the window",
        ),
        ("when: {failures_at_least: 1, window: 0s}", "alarms[0].when", "window must be longer than zero"),
        ("when: {silent_for: 0s}", "alarms[0].when", "silent_for must be longer than zero"),
        ("when: {stale_version_for: 0s}", "alarms[0].when", "stale_version_for must be longer than zero"),
        ("when: {silent_for: 5x}", "alarms[0].when", "silent_for = \"5x\" is not a duration ("),
        ("{when: {failures_at_least: 1}, for: 5x}", "alarms[0].for", "for = \"5x\" is not a duration ("),
    ];
    for (policy, path, message) in cases {
        let err = Spec::parse(&with_policy(policy)).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{policy}: {err}");
        let problem = &err.problems[0];
        assert_eq!((problem.path.as_str(), problem.line), (path, Some(4)), "{policy}: {err}");
        assert!(problem.message.starts_with(message), "{policy}: {err}");
    }
}

#[test]
fn alarm_policy_problems_are_reported_once_and_all_together() {
    // Two conditions: the schema's words only, not the alarmer's as well.
    let err = Spec::parse(&with_policy("when: {failures_at_least: 1, silent_for: 5m}")).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert!(err.problems[0].message.contains("more than one condition"), "{err}");
    // A mistake in `when` does not hide one in `for`, nor one elsewhere in the document.
    let text = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  c:\n    requirements:\n      r: {severity: high}\nalarms:\n  - when: {silent_for: 0s}\n    for: 1 fortnight\n";
    let places: Vec<String> = Spec::parse(text).unwrap_err().problems.iter().map(|p| p.path.clone()).collect();
    assert_eq!(places, ["components.c.requirements.r.severity", "alarms[0].when", "alarms[0].for"]);
    // A value (e.g. after a JSON Patch) is checked the same way.
    let mut value = Spec::parse(EXAMPLE).unwrap().to_value();
    value["alarms"][0]["for"] = "5x".into();
    assert_eq!(Spec::from_value(value).unwrap_err().problems[0].path, "alarms[0].for");
}

#[test]
fn the_example_alarm_policy_validates() {
    let spec = Spec::parse(EXAMPLE).unwrap();
    assert_eq!(spec.alarms.len(), 1);
    assert_eq!(Condition::parse(&spec.alarms[0].when), Ok((Condition::FailuresAtLeast(1), None)));
}
