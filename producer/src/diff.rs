//! Requirement-level diffs between two versions of a spec: components, requirements and
//! params added, removed or changed, each with the versions (and so the authors) that
//! changed it in between. Reviewers think in requirements, not JSON pointers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use specaudit_core::record::SpecVersion;
use specaudit_core::spec::{Requirement, Spec};

/// Why a diff could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("spec {spec} has no version {version} (versions 1 to {latest} exist)")]
    NoSuchVersion { spec: String, version: i64, latest: i64 },
    #[error("the first version ({from}) must be older than the second ({to})")]
    Order { from: i64, to: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Added,
    Removed,
    Changed,
}

/// A version that changed something, and who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedBy {
    pub version: i64,
    pub author: String,
}

/// One version between the two, as the history records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authorship {
    pub version: i64,
    pub author: String,
    pub ts: i64,
    pub comment: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentChange {
    pub component: String,
    pub change: Kind,
    pub by: Vec<ChangedBy>,
}

/// One field of a requirement: `description`, `severity`, `tasks` or `check`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: &'static str,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequirementChange {
    /// `<component>/<name>`.
    pub id: String,
    pub change: Kind,
    /// For a changed requirement, the fields that differ.
    pub fields: Vec<FieldChange>,
    pub by: Vec<ChangedBy>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamChange {
    pub component: String,
    pub name: String,
    pub change: Kind,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub by: Vec<ChangedBy>,
}

/// What changed from one version of a spec to a later one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecDiff {
    pub spec: String,
    pub from: i64,
    pub to: i64,
    /// The versions after `from` up to `to`.
    pub versions: Vec<Authorship>,
    pub components: Vec<ComponentChange>,
    pub requirements: Vec<RequirementChange>,
    pub params: Vec<ParamChange>,
    /// Other top-level fields that changed (`description`, `owners`, `alarms`).
    pub other: Vec<String>,
}

/// Diffs versions `from` and `to` of a spec, given its history in version order.
pub fn diff(history: &[SpecVersion], from: i64, to: i64) -> Result<SpecDiff, DiffError> {
    let spec = history.first().map(|v| v.spec.clone()).unwrap_or_default();
    let latest = history.last().map_or(0, |v| v.version);
    let find = |version: i64| {
        history
            .iter()
            .position(|v| v.version == version)
            .ok_or(DiffError::NoSuchVersion { spec: spec.clone(), version, latest })
    };
    if from >= to {
        return Err(DiffError::Order { from, to });
    }
    let (start, end) = (find(from)?, find(to)?);
    let steps = &history[start..=end];
    let mut total = Changes::between(&document(&steps[0]), &document(&steps[steps.len() - 1]));
    // Attribute every change to the versions in between that touched the same thing.
    for pair in steps.windows(2) {
        let step = Changes::between(&document(&pair[0]), &document(&pair[1]));
        let by = ChangedBy { version: pair[1].version, author: pair[1].author.clone() };
        total.attribute(&step, &by);
    }
    let versions = steps[1..]
        .iter()
        .map(|v| Authorship { version: v.version, author: v.author.clone(), ts: v.ts, comment: v.comment.clone(), deleted: v.deleted })
        .collect();
    Ok(SpecDiff {
        spec,
        from,
        to,
        versions,
        components: total.components,
        requirements: total.requirements,
        params: total.params,
        other: total.other,
    })
}

/// The spec a version holds; a delete holds none.
fn document(version: &SpecVersion) -> Option<Spec> {
    if version.deleted {
        return None;
    }
    serde_json::from_str(&version.document)
        .inspect_err(|error| tracing::warn!(spec = %version.spec, version = version.version, %error, "undecodable document in history"))
        .ok()
}

#[derive(Default)]
struct Changes {
    components: Vec<ComponentChange>,
    requirements: Vec<RequirementChange>,
    params: Vec<ParamChange>,
    other: Vec<String>,
}

fn keyed<T: Clone>(map: &BTreeMap<String, T>) -> impl Iterator<Item = (&String, &T)> {
    map.iter()
}

fn kind<T: PartialEq>(before: Option<&T>, after: Option<&T>) -> Option<Kind> {
    match (before, after) {
        (None, Some(_)) => Some(Kind::Added),
        (Some(_), None) => Some(Kind::Removed),
        (Some(a), Some(b)) if a != b => Some(Kind::Changed),
        _ => None,
    }
}

impl Changes {
    fn between(old: &Option<Spec>, new: &Option<Spec>) -> Changes {
        let empty = BTreeMap::new();
        let old_components = old.as_ref().map_or(&empty, |s| &s.components);
        let new_components = new.as_ref().map_or(&empty, |s| &s.components);
        let mut changes = Changes::default();
        let names: BTreeSet<&String> = keyed(old_components).chain(keyed(new_components)).map(|(k, _)| k).collect();
        for component in names {
            let (a, b) = (old_components.get(component), new_components.get(component));
            if let Some(change) = kind(a.map(|_| &()), b.map(|_| &())) {
                changes.components.push(ComponentChange { component: component.clone(), change, by: Vec::new() });
            }
            let no_requirements = BTreeMap::new();
            let ra = a.map_or(&no_requirements, |c| &c.requirements);
            let rb = b.map_or(&no_requirements, |c| &c.requirements);
            let requirement_names: BTreeSet<&String> = ra.keys().chain(rb.keys()).collect();
            for name in requirement_names {
                let (before, after) = (ra.get(name), rb.get(name));
                if let Some(change) = kind(before, after) {
                    let fields = match (before, after) {
                        (Some(x), Some(y)) => field_changes(x, y),
                        _ => Vec::new(),
                    };
                    changes.requirements.push(RequirementChange { id: format!("{component}/{name}"), change, fields, by: Vec::new() });
                }
            }
            let no_params = serde_json::Map::new();
            let pa = a.map_or(&no_params, |c| &c.params);
            let pb = b.map_or(&no_params, |c| &c.params);
            let param_names: BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
            for name in param_names {
                let (before, after) = (pa.get(name), pb.get(name));
                if let Some(change) = kind(before, after) {
                    changes.params.push(ParamChange {
                        component: component.clone(),
                        name: name.clone(),
                        change,
                        before: before.cloned(),
                        after: after.cloned(),
                        by: Vec::new(),
                    });
                }
            }
        }
        let top = |s: &Option<Spec>| s.as_ref().map(|s| (s.description.clone(), s.owners.clone(), serde_json::to_value(&s.alarms).unwrap_or_default()));
        let (a, b) = (top(old), top(new));
        let field = |f: fn(&(String, Vec<String>, Value)) -> Value| a.as_ref().map(f) != b.as_ref().map(f);
        for (name, changed) in [
            ("description", field(|t| Value::String(t.0.clone()))),
            ("owners", field(|t| serde_json::to_value(&t.1).unwrap_or_default())),
            ("alarms", field(|t| t.2.clone())),
        ] {
            if changed {
                changes.other.push(name.to_owned());
            }
        }
        changes
    }

    fn attribute(&mut self, step: &Changes, by: &ChangedBy) {
        for c in &mut self.components {
            if step.components.iter().any(|s| s.component == c.component) {
                c.by.push(by.clone());
            }
        }
        for r in &mut self.requirements {
            if step.requirements.iter().any(|s| s.id == r.id) {
                r.by.push(by.clone());
            }
        }
        for p in &mut self.params {
            if step.params.iter().any(|s| s.component == p.component && s.name == p.name) {
                p.by.push(by.clone());
            }
        }
    }
}

fn field_changes(before: &Requirement, after: &Requirement) -> Vec<FieldChange> {
    let text = |s: &str| (!s.is_empty()).then(|| Value::String(s.to_owned()));
    let severity = |r: &Requirement| Some(Value::String(r.severity().to_string()));
    let tasks = |r: &Requirement| r.tasks.as_ref().map(|t| serde_json::to_value(t).unwrap_or_default());
    let check = |r: &Requirement| r.check.as_ref().map(|c| serde_json::to_value(c).unwrap_or_default());
    [
        ("description", text(&before.description), text(&after.description)),
        ("severity", severity(before), severity(after)),
        ("tasks", tasks(before), tasks(after)),
        ("check", check(before), check(after)),
    ]
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(field, before, after)| FieldChange { field, before, after })
    .collect()
}

/// The diff for people: one line per change, authors in brackets.
pub fn render_text(diff: &SpecDiff) -> String {
    let mut out = format!("{} version {} → {}\n", diff.spec, diff.from, diff.to);
    for v in &diff.versions {
        let what = if v.deleted { " (deleted)" } else { "" };
        let _ = writeln!(out, "  v{} by {}{what}: {}", v.version, v.author, v.comment);
    }
    let by = |by: &[ChangedBy]| {
        let list: Vec<String> = by.iter().map(|b| format!("v{} {}", b.version, b.author)).collect();
        if list.is_empty() { String::new() } else { format!("  [{}]", list.join(", ")) }
    };
    let sign = |k: Kind| match k {
        Kind::Added => '+',
        Kind::Removed => '-',
        Kind::Changed => '~',
    };
    let show = |v: &Option<Value>| v.as_ref().map_or("(none)".to_owned(), Value::to_string);
    for c in &diff.components {
        let _ = writeln!(out, "{} component {}{}", sign(c.change), c.component, by(&c.by));
    }
    for r in &diff.requirements {
        let _ = writeln!(out, "{} requirement {}{}", sign(r.change), r.id, by(&r.by));
        for f in &r.fields {
            let _ = writeln!(out, "    {}: {} → {}", f.field, show(&f.before), show(&f.after));
        }
    }
    for p in &diff.params {
        let _ = writeln!(out, "{} param {}.{}: {} → {}{}", sign(p.change), p.component, p.name, show(&p.before), show(&p.after), by(&p.by));
    }
    for o in &diff.other {
        let _ = writeln!(out, "~ {o}");
    }
    if diff.components.is_empty() && diff.requirements.is_empty() && diff.params.is_empty() && diff.other.is_empty() {
        out.push_str("no changes\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(n: i64, author: &str, yaml: Option<&str>) -> SpecVersion {
        let spec = yaml.map(|y| Spec::parse(y).unwrap());
        SpecVersion {
            spec: "s".into(),
            version: n,
            ts: n,
            author: author.into(),
            comment: format!("change {n}"),
            sha256: spec.as_ref().map(Spec::sha256).unwrap_or_default(),
            deleted: spec.is_none(),
            document: spec.as_ref().map(Spec::canonical_json).unwrap_or_default(),
            patch: "[]".into(),
        }
    }

    const V1: &str = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  a:\n    params: {x: 1}\n    requirements:\n      r1: {check: {expr: 'facts.x == 1'}}\n      r2: {}\n";
    const V2: &str = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  a:\n    params: {x: 2}\n    requirements:\n      r1: {check: {expr: 'facts.x == 1'}}\n      r2: {severity: critical}\n";
    const V3: &str = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  a:\n    params: {x: 2, y: true}\n    requirements:\n      r1: {check: {expr: 'facts.x == 2'}}\n  b:\n    requirements:\n      r3: {}\n";

    #[test]
    fn requirement_level_changes_with_their_authors() {
        let history = [version(1, "ann", Some(V1)), version(2, "bob", Some(V2)), version(3, "cy", Some(V3))];
        let d = diff(&history, 1, 3).unwrap();
        assert_eq!(d.versions.iter().map(|v| v.author.as_str()).collect::<Vec<_>>(), ["bob", "cy"]);
        assert_eq!(d.components.len(), 1);
        assert_eq!((d.components[0].component.as_str(), d.components[0].change), ("b", Kind::Added));
        let summary: Vec<(&str, Kind, Vec<&str>)> = d
            .requirements
            .iter()
            .map(|r| (r.id.as_str(), r.change, r.by.iter().map(|b| b.author.as_str()).collect()))
            .collect();
        assert_eq!(
            summary,
            [("a/r1", Kind::Changed, vec!["cy"]), ("a/r2", Kind::Removed, vec!["bob", "cy"]), ("b/r3", Kind::Added, vec!["cy"])]
        );
        assert_eq!(d.requirements[0].fields[0].field, "check");
        let params: Vec<(&str, Kind, Vec<i64>)> =
            d.params.iter().map(|p| (p.name.as_str(), p.change, p.by.iter().map(|b| b.version).collect())).collect();
        assert_eq!(params, [("x", Kind::Changed, vec![2]), ("y", Kind::Added, vec![3])]);
        let text = render_text(&d);
        assert!(text.contains("- requirement a/r2  [v2 bob, v3 cy]"), "{text}");
    }

    #[test]
    fn a_delete_removes_everything_and_a_recreate_adds_it_back() {
        let history = [version(1, "ann", Some(V1)), version(2, "bob", None), version(3, "cy", Some(V1))];
        let d = diff(&history, 1, 2).unwrap();
        assert!(d.requirements.iter().all(|r| r.change == Kind::Removed));
        assert!(d.versions[0].deleted);
        let d = diff(&history, 2, 3).unwrap();
        assert!(d.requirements.iter().all(|r| r.change == Kind::Added && r.by[0].author == "cy"));
        assert!(diff(&history, 1, 3).unwrap().requirements.is_empty());
        assert!(matches!(diff(&history, 1, 9), Err(DiffError::NoSuchVersion { latest: 3, .. })));
        assert!(matches!(diff(&history, 3, 1), Err(DiffError::Order { .. })));
    }
}
