//! The specs an agent runs, compiled for its component: each check compiled once per
//! spec version.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use specaudit_core::check::{cel_value, CompiledCheck};
use specaudit_core::record::{Severity, SpecInUse, SpecVersion};
use specaudit_core::spec::Spec;

/// One requirement that applies to the agent's component.
#[derive(Debug)]
pub(super) struct CompiledRequirement {
    pub(super) id: Arc<str>,
    pub(super) severity: Severity,
    pub(super) tasks: Option<Vec<String>>,
    /// None: the component's own code asserts it.
    pub(super) check: Option<CompiledCheck>,
    /// Outcomes waiting for the next rollup flush.
    pub(super) tally: Tally,
}

/// What one requirement has collected since the last flush. Counting a pass costs one
/// uncontended lock and a lookup by the task name: no allocation once a task was seen.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// task → counts rolled up into one assertion per (task, kind) at the next flush.
    by_task: Mutex<rustc_hash::FxHashMap<Box<str>, Counts>>,
    /// Evaluations since the last heartbeat.
    evaluations: AtomicI64,
    /// Fails and errors sent one by one in this interval (for the per-requirement cap).
    sent: AtomicI64,
}

/// Rolled-up outcomes of one task.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) passes: i64,
    pub(super) skips: i64,
    /// Fails and errors beyond the per-requirement cap, sent as one counted assertion.
    pub(super) excess_fails: i64,
    pub(super) excess_errors: i64,
}

impl Tally {
    pub(super) fn add(&self, task: &str, count: impl FnOnce(&mut Counts)) {
        let mut by_task = self.by_task.lock().unwrap_or_else(|e| e.into_inner());
        match by_task.get_mut(task) {
            Some(counts) => count(counts),
            None => count(by_task.entry(task.into()).or_default()),
        }
    }

    pub(super) fn evaluated(&self) {
        self.evaluations.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one fail or error sent; false once `cap` of them were sent this interval.
    pub(super) fn may_send(&self, cap: Option<u32>) -> bool {
        let sent = self.sent.fetch_add(1, Ordering::Relaxed);
        cap.is_none_or(|cap| sent < i64::from(cap))
    }

    /// Takes what was collected, for a rollup flush.
    pub(super) fn drain(&self) -> Vec<(String, Counts)> {
        self.sent.store(0, Ordering::Relaxed);
        let mut by_task = self.by_task.lock().unwrap_or_else(|e| e.into_inner());
        by_task.iter_mut().filter(|(_, c)| **c != Counts::default()).map(|(t, c)| (t.to_string(), std::mem::take(c))).collect()
    }

    /// Evaluations since the previous call.
    pub(super) fn take_evaluations(&self) -> i64 {
        self.evaluations.swap(0, Ordering::Relaxed)
    }
}

impl CompiledRequirement {
    pub(super) fn applies_to(&self, task: &str) -> bool {
        self.tasks.as_ref().is_none_or(|tasks| tasks.iter().any(|t| t == task))
    }
}

/// One spec version, reduced to what applies to the component.
#[derive(Debug)]
pub(super) struct CompiledSpec {
    pub(super) name: Arc<str>,
    pub(super) version: i64,
    pub(super) params: Value,
    /// The params as CEL values, converted once per version.
    pub(super) cel_params: cel::Value,
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
                id: r.id.into(),
                severity: r.requirement.severity(),
                tasks: r.requirement.tasks.clone(),
                check,
                tally: Tally::default(),
            });
        }
        let params = Value::Object(applicable.params);
        let cel_params = match cel_value(&params) {
            Ok(v) => v,
            Err(error) => return Some(Err(format!("params cannot be given to CEL: {error}"))),
        };
        Some(Ok(CompiledSpec { name: spec.spec.into(), version: version.version, params, cel_params, requirements }))
    }
}

/// Every spec the agent runs; replaced whole when a version lands.
#[derive(Debug, Default)]
pub(super) struct SpecSet {
    pub(super) specs: Vec<Arc<CompiledSpec>>,
}

impl SpecSet {
    pub(super) fn in_use(&self) -> Vec<SpecInUse> {
        self.specs.iter().map(|s| SpecInUse { spec: s.name.to_string(), version: s.version }).collect()
    }

    /// A new set with `name` replaced by `compiled` (or removed when None), and the
    /// version it replaced.
    pub(super) fn with(&self, name: &str, compiled: Option<Arc<CompiledSpec>>) -> (SpecSet, Option<Arc<CompiledSpec>>) {
        let replaced = self.specs.iter().find(|s| &*s.name == name).cloned();
        let mut specs: Vec<Arc<CompiledSpec>> = self.specs.iter().filter(|s| &*s.name != name).cloned().collect();
        specs.extend(compiled);
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        (SpecSet { specs }, replaced)
    }
}
