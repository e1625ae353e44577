//! Fine-grained changes to a spec document: an RFC 6902 JSON Patch, or adding, replacing
//! or removing one component, requirement or param. An edit is applied to the current
//! version inside the publisher's fenced section, then the result is validated in full.

use serde_json::{Map, Value};

/// What an edit addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Component { component: String },
    Requirement { component: String, name: String },
    Param { component: String, name: String },
}

impl Target {
    fn pointer(&self) -> String {
        let escape = |s: &str| s.replace('~', "~0").replace('/', "~1");
        match self {
            Target::Component { component } => format!("/components/{}", escape(component)),
            Target::Requirement { component, name } => {
                format!("/components/{}/requirements/{}", escape(component), escape(name))
            }
            Target::Param { component, name } => format!("/components/{}/params/{}", escape(component), escape(name)),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Component { component } => write!(f, "component {component}"),
            Target::Requirement { component, name } => write!(f, "requirement {component}/{name}"),
            Target::Param { component, name } => write!(f, "param {name} of component {component}"),
        }
    }
}

/// A change to the current version of a spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// An RFC 6902 JSON Patch against the document.
    Patch(json_patch::Patch),
    /// Adds what must not exist yet; a missing component is created for a requirement or param.
    Add(Target, Value),
    /// Replaces what must exist.
    Replace(Target, Value),
    /// Removes what must exist.
    Remove(Target),
}

/// Why an edit does not apply to the current version.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("the patch does not apply: {0}")]
    Patch(#[from] json_patch::PatchError),
    #[error("{0} already exists; replace it instead")]
    Exists(Target),
    #[error("{0} does not exist")]
    Missing(Target),
}

/// Applies `edit` to `document`, returning the edited document (not yet validated).
pub fn apply(document: &Value, edit: &Edit) -> Result<Value, EditError> {
    let mut doc = document.clone();
    match edit {
        Edit::Patch(patch) => json_patch::patch(&mut doc, patch)?,
        Edit::Add(target, value) => {
            if doc.pointer(&target.pointer()).is_some() {
                return Err(EditError::Exists(target.clone()));
            }
            let parent = parent_of(&mut doc, target);
            let key = match target {
                Target::Component { component } => component,
                Target::Requirement { name, .. } | Target::Param { name, .. } => name,
            };
            parent.insert(key.clone(), value.clone());
        }
        Edit::Replace(target, value) => match doc.pointer_mut(&target.pointer()) {
            Some(slot) => *slot = value.clone(),
            None => return Err(EditError::Missing(target.clone())),
        },
        Edit::Remove(target) => {
            let pointer = target.pointer();
            let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", &pointer));
            let key = key.replace("~1", "/").replace("~0", "~");
            let removed = doc.pointer_mut(parent).and_then(Value::as_object_mut).and_then(|m| m.remove(&key));
            if removed.is_none() {
                return Err(EditError::Missing(target.clone()));
            }
        }
    }
    Ok(doc)
}

/// The map that holds `target`, created on the way where missing.
fn parent_of<'a>(doc: &'a mut Value, target: &Target) -> &'a mut Map<String, Value> {
    let mut node = object(doc);
    let (component, field) = match target {
        Target::Component { .. } => return object(node.entry("components").or_insert_with(|| Value::Object(Map::new()))),
        Target::Requirement { component, .. } => (component, "requirements"),
        Target::Param { component, .. } => (component, "params"),
    };
    node = object(node.entry("components").or_insert_with(|| Value::Object(Map::new())));
    node = object(node.entry(component.clone()).or_insert_with(|| Value::Object(Map::new())));
    object(node.entry(field).or_insert_with(|| Value::Object(Map::new())))
}

/// `value` as a map, made one if it is not (validation then reports the result).
fn object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({"apiVersion": "specaudit/v1", "spec": "s", "components": {"a": {"params": {"x": 1}, "requirements": {"r": {}}}}})
    }

    fn requirement(component: &str, name: &str) -> Target {
        Target::Requirement { component: component.into(), name: name.into() }
    }

    #[test]
    fn add_creates_missing_components_and_refuses_existing_targets() {
        let out = apply(&doc(), &Edit::Add(requirement("b.c", "new"), json!({"severity": "minor"}))).unwrap();
        assert_eq!(out["components"]["b.c"]["requirements"]["new"]["severity"], "minor");
        let err = apply(&doc(), &Edit::Add(requirement("a", "r"), json!({}))).unwrap_err();
        assert_eq!(err.to_string(), "requirement a/r already exists; replace it instead");
        let param = Target::Param { component: "a".into(), name: "y".into() };
        assert_eq!(apply(&doc(), &Edit::Add(param, json!(2))).unwrap()["components"]["a"]["params"]["y"], 2);
    }

    #[test]
    fn replace_and_remove_need_the_target() {
        let x = Target::Param { component: "a".into(), name: "x".into() };
        assert_eq!(apply(&doc(), &Edit::Replace(x.clone(), json!(5))).unwrap()["components"]["a"]["params"]["x"], 5);
        let out = apply(&doc(), &Edit::Remove(x)).unwrap();
        assert!(out["components"]["a"]["params"].as_object().unwrap().is_empty());
        let missing = Target::Component { component: "zz".into() };
        assert!(matches!(apply(&doc(), &Edit::Remove(missing.clone())), Err(EditError::Missing(_))));
        assert!(matches!(apply(&doc(), &Edit::Replace(missing, json!({}))), Err(EditError::Missing(_))));
        let out = apply(&doc(), &Edit::Remove(Target::Component { component: "a".into() })).unwrap();
        assert!(out["components"].as_object().unwrap().is_empty());
    }

    /// RFC 6902 semantics, as the `patch` subcommand applies them.
    #[test]
    fn json_patch_operations() {
        let patch = |ops: Value| Edit::Patch(serde_json::from_value(ops).unwrap());
        let out = apply(&doc(), &patch(json!([
            {"op": "add", "path": "/components/a/params/y", "value": 2},
            {"op": "replace", "path": "/components/a/params/x", "value": 3},
            {"op": "copy", "from": "/components/a/requirements/r", "path": "/components/a/requirements/r2"},
            {"op": "move", "from": "/components/a/requirements/r", "path": "/components/a/requirements/r3"},
            {"op": "test", "path": "/components/a/params/x", "value": 3},
            {"op": "remove", "path": "/components/a/params/y"}
        ])))
        .unwrap();
        assert_eq!(out["components"]["a"]["params"], json!({"x": 3}));
        let requirements: Vec<&String> = out["components"]["a"]["requirements"].as_object().unwrap().keys().collect();
        assert_eq!(requirements, ["r2", "r3"]);
        // A failing test operation refuses the whole patch.
        let err = apply(&doc(), &patch(json!([{"op": "test", "path": "/components/a/params/x", "value": 9}]))).unwrap_err();
        assert!(err.to_string().starts_with("the patch does not apply"), "{err}");
        // Removing what is not there fails too.
        assert!(apply(&doc(), &patch(json!([{"op": "remove", "path": "/components/nope"}]))).is_err());
    }
}
