//! The specs an agent runs, compiled for its component: each check compiled once per
//! spec version.

use std::sync::Arc;

use serde_json::Value;
use specaudit_core::check::CompiledCheck;
use specaudit_core::record::{Severity, SpecInUse, SpecVersion};
use specaudit_core::spec::Spec;

/// One requirement that applies to the agent's component.
#[derive(Debug)]
pub(super) struct CompiledRequirement {
    pub(super) id: String,
    pub(super) severity: Severity,
    pub(super) tasks: Option<Vec<String>>,
    /// None: the component's own code asserts it.
    pub(super) check: Option<CompiledCheck>,
}

impl CompiledRequirement {
    pub(super) fn applies_to(&self, task: &str) -> bool {
        self.tasks.as_ref().is_none_or(|tasks| tasks.iter().any(|t| t == task))
    }
}

/// One spec version, reduced to what applies to the component.
#[derive(Debug)]
pub(super) struct CompiledSpec {
    pub(super) name: String,
    pub(super) version: i64,
    pub(super) params: Value,
    pub(super) requirements: Vec<CompiledRequirement>,
}

impl CompiledSpec {
    /// Compiles what of `version` applies to `component`; None for a delete or a spec that
    /// says nothing about the component.
    pub(super) fn compile(version: &SpecVersion, component: &str) -> Option<Result<CompiledSpec, String>> {
        if version.deleted {
            return None;
        }
        let spec = match Spec::from_json(&version.document) {
            Ok(spec) => spec,
            Err(error) => return Some(Err(error.to_string())),
        };
        let applicable = spec.applicable(component);
        if applicable.requirements.is_empty() {
            return None;
        }
        let mut requirements = Vec::with_capacity(applicable.requirements.len());
        for r in applicable.requirements {
            let check = match r.requirement.check.as_ref().map(CompiledCheck::compile).transpose() {
                Ok(check) => check,
                Err(error) => return Some(Err(format!("{}: {error}", r.id))),
            };
            requirements.push(CompiledRequirement {
                id: r.id,
                severity: r.requirement.severity(),
                tasks: r.requirement.tasks.clone(),
                check,
            });
        }
        Some(Ok(CompiledSpec {
            name: spec.spec,
            version: version.version,
            params: Value::Object(applicable.params),
            requirements,
        }))
    }
}

/// Every spec the agent runs; replaced whole when a version lands.
#[derive(Debug, Default)]
pub(super) struct SpecSet {
    pub(super) specs: Vec<Arc<CompiledSpec>>,
}

impl SpecSet {
    pub(super) fn in_use(&self) -> Vec<SpecInUse> {
        self.specs.iter().map(|s| SpecInUse { spec: s.name.clone(), version: s.version }).collect()
    }

    /// A new set with `name` replaced by `compiled` (or removed when None).
    pub(super) fn with(&self, name: &str, compiled: Option<Arc<CompiledSpec>>) -> SpecSet {
        let mut specs: Vec<Arc<CompiledSpec>> = self.specs.iter().filter(|s| s.name != name).cloned().collect();
        specs.extend(compiled);
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        SpecSet { specs }
    }
}
