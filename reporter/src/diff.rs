//! Requirement-level differences between two versions of a spec, for the history pages:
//! which requirements were added, removed or changed (and in which fields), and which
//! components' params changed, since those change what the checks compare against.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

/// What happened to one requirement (or one component's params) between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequirementChange {
    /// `<component>/<name>`, or the component path for a params change.
    pub target: String,
    /// `added`, `removed`, `changed`, or `params` (a component's params changed).
    pub kind: &'static str,
    /// For `changed`: the fields that differ (description, severity, tasks, check); for
    /// `params`: the param names that differ.
    pub fields: Vec<String>,
}

fn components(doc: &Value) -> &serde_json::Map<String, Value> {
    static EMPTY: std::sync::OnceLock<serde_json::Map<String, Value>> = std::sync::OnceLock::new();
    doc.get("components").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Default::default))
}

fn requirements(doc: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for (path, component) in components(doc) {
        if let Some(reqs) = component.get("requirements").and_then(Value::as_object) {
            for (name, requirement) in reqs {
                out.push((format!("{path}/{name}"), requirement));
            }
        }
    }
    out
}

fn differing_keys(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    let empty = serde_json::Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter().filter(|k| b.get(*k) != a.get(*k)).cloned().collect()
}

/// The changes from `before` to `after` (spec documents as JSON; `Value::Null` for "no
/// spec", e.g. before the first version or after a delete), sorted by target.
pub fn requirement_changes(before: &Value, after: &Value) -> Vec<RequirementChange> {
    let old = requirements(before);
    let new = requirements(after);
    let mut changes = Vec::new();
    for (id, requirement) in &new {
        match old.iter().find(|(o, _)| o == id) {
            None => changes.push(RequirementChange { target: id.clone(), kind: "added", fields: Vec::new() }),
            Some((_, previous)) if previous != requirement => changes.push(RequirementChange {
                target: id.clone(),
                kind: "changed",
                fields: differing_keys(Some(previous), Some(requirement)),
            }),
            Some(_) => {}
        }
    }
    for (id, _) in &old {
        if !new.iter().any(|(n, _)| n == id) {
            changes.push(RequirementChange { target: id.clone(), kind: "removed", fields: Vec::new() });
        }
    }
    let (old_components, new_components) = (components(before), components(after));
    let paths: BTreeSet<&String> = old_components.keys().chain(new_components.keys()).collect();
    for path in paths {
        let params = |c: &serde_json::Map<String, Value>| c.get(path.as_str()).and_then(|c| c.get("params")).cloned();
        let fields = differing_keys(params(old_components).as_ref(), params(new_components).as_ref());
        if !fields.is_empty() {
            changes.push(RequirementChange { target: path.clone(), kind: "params", fields });
        }
    }
    changes.sort_by(|a, b| a.target.cmp(&b.target).then(a.kind.cmp(b.kind)));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn added_removed_changed_and_params() {
        let before = json!({"components": {
            "a": {"params": {"x": 1}, "requirements": {"r1": {"severity": "minor"}, "gone": {}}},
        }});
        let after = json!({"components": {
            "a": {"params": {"x": 2}, "requirements": {"r1": {"severity": "critical", "description": "d"}}},
            "b": {"requirements": {"new": {}}},
        }});
        let changes = requirement_changes(&before, &after);
        let got: Vec<(&str, &str, Vec<&str>)> =
            changes.iter().map(|c| (c.target.as_str(), c.kind, c.fields.iter().map(String::as_str).collect())).collect();
        assert_eq!(
            got,
            [
                ("a", "params", vec!["x"]),
                ("a/gone", "removed", vec![]),
                ("a/r1", "changed", vec!["description", "severity"]),
                ("b/new", "added", vec![]),
            ]
        );
    }

    #[test]
    fn first_version_and_delete() {
        let doc = json!({"components": {"a": {"requirements": {"r": {}}}}});
        assert_eq!(requirement_changes(&Value::Null, &doc)[0].kind, "added");
        assert_eq!(requirement_changes(&doc, &Value::Null)[0].kind, "removed");
        assert!(requirement_changes(&doc, &doc).is_empty());
    }
}
