//! Inheritance: an agent for `frontend.request-handler` gets the requirements of
//! `frontend` and of `frontend.request-handler`, and params merged from the root down.

use serde_json::{Map, Value};

use super::{Requirement, Spec};

/// A requirement that applies to one component, with the params it sees.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplicableRequirement {
    /// `<defining component>/<name>`.
    pub id: String,
    /// The component path that defines it (a prefix of the agent's component).
    pub defined_by: String,
    pub requirement: Requirement,
}

/// Everything of one spec that applies to one component.
#[derive(Debug, Clone, PartialEq)]
pub struct Applicable {
    pub requirements: Vec<ApplicableRequirement>,
    /// Params merged from the root of the path down; the deeper value wins.
    pub params: Map<String, Value>,
}

/// The component paths from the root down to `component`: `a`, `a.b`, `a.b.c`.
pub(crate) fn ancestry(component: &str) -> impl Iterator<Item = &str> {
    component
        .match_indices('.')
        .map(move |(i, _)| &component[..i])
        .chain(std::iter::once(component))
}

impl Spec {
    /// The requirements and params that apply to `component`.
    pub fn applicable(&self, component: &str) -> Applicable {
        let mut requirements = Vec::new();
        let mut params = Map::new();
        for path in ancestry(component) {
            let Some(defined) = self.components.get(path) else { continue };
            for (key, value) in &defined.params {
                params.insert(key.clone(), value.clone());
            }
            for (name, requirement) in &defined.requirements {
                requirements.push(ApplicableRequirement {
                    id: format!("{path}/{name}"),
                    defined_by: path.to_owned(),
                    requirement: requirement.clone(),
                });
            }
        }
        Applicable { requirements, params }
    }
}
