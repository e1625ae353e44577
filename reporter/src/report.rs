//! The compliance report (DESIGN.md section 8), computed from what ClickHouse returned:
//! each requirement × reporting component of a spec with its status over a time range. A
//! requirement nobody reported on is `unknown` and counts against compliance, never for it.
//!
//! Which cells are expected: every requirement that applies (by inheritance) to a component
//! that reported anything for the spec in the range or whose agent heartbeats said it runs
//! the spec; and every requirement of the spec in scope, at its defining component (or at
//! the subtree root, for one inherited from above it), when no component reported it.
//!
//! The *component type* of a reporting component is the deepest component path the spec
//! declares at or above it (the most specific spec entry it takes requirements from): an
//! agent of `compute.instance.host-7` is of type `compute.instance`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use specaudit_core::spec::Spec;

use crate::scope::Scope;

/// What a requirement × component cell shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// At least one failure in the range.
    Failing,
    /// No failure, but checks that could not be evaluated.
    Error,
    /// Only passes.
    Compliant,
    /// Nothing reported (skips alone say nothing about compliance).
    Unknown,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Compliant, Status::Failing, Status::Error, Status::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Failing => "failing",
            Status::Error => "error",
            Status::Compliant => "compliant",
            Status::Unknown => "unknown",
        }
    }

    /// The worst of two statuses, for rolling cells up to a requirement: failing, then
    /// error, then unknown, then compliant (one silent component spoils a compliant one).
    pub fn worst(self, other: Status) -> Status {
        fn rank(s: Status) -> u8 {
            match s {
                Status::Failing => 0,
                Status::Error => 1,
                Status::Unknown => 2,
                Status::Compliant => 3,
            }
        }
        if rank(other) < rank(self) {
            other
        } else {
            self
        }
    }
}

/// One requirement as reported by one component (or expected from it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub requirement: String,
    pub component: String,
    /// See the module docs.
    pub component_type: String,
    pub severity: String,
    pub status: Status,
    pub passes: u64,
    pub failures: u64,
    pub errors: u64,
    pub skips: u64,
    /// failures / (passes + failures); 0 when nothing was checked.
    pub failure_ratio: f64,
    pub last_failure: String,
    pub failing_instances: Vec<String>,
}

/// Counts per status and the share that is compliant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub compliant: usize,
    pub failing: usize,
    pub error: usize,
    pub unknown: usize,
    /// compliant / all cells, unknown included, in percent.
    pub compliance_pct: f64,
}

impl Summary {
    pub fn of<'a>(cells: impl IntoIterator<Item = &'a Cell>) -> Summary {
        let mut s = Summary::default();
        for cell in cells {
            match cell.status {
                Status::Compliant => s.compliant += 1,
                Status::Failing => s.failing += 1,
                Status::Error => s.error += 1,
                Status::Unknown => s.unknown += 1,
            }
        }
        let total = s.total();
        s.compliance_pct = if total == 0 { 0.0 } else { 100.0 * s.compliant as f64 / total as f64 };
        s
    }

    pub fn total(&self) -> usize {
        self.compliant + self.failing + self.error + self.unknown
    }
}

/// The summary of a group of cells: one component or one component type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSummary {
    pub name: String,
    #[serde(flatten)]
    pub summary: Summary,
}

/// An agent as its latest heartbeat describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentState {
    pub agent_id: String,
    pub component: String,
    pub instance: String,
    pub last_seen_ms: u64,
    pub started_at_ms: u64,
    pub sdk_version: String,
    /// (spec, version) pairs the agent runs.
    pub specs: Vec<SpecInUse>,
    /// No heartbeat for longer than `report.silent_after` before the end of the range.
    pub silent: bool,
    /// Specs it runs at an older version than the latest.
    pub stale_specs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecInUse {
    pub spec: String,
    pub version: u64,
}

/// What is expected but not seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Coverage {
    /// Component paths the spec declares (in scope) with no assertion from them or below.
    pub unreported_components: Vec<String>,
    /// Requirement ids (in scope) with no pass, fail or error from any component.
    pub unreported_requirements: Vec<String>,
    /// Agents of the spec that stopped sending heartbeats.
    pub silent_agents: Vec<String>,
    /// Agents that run an older version of the spec than the latest.
    pub stale_agents: Vec<String>,
}

/// One published version of a spec, with what changed at requirement level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub ts_ms: u64,
    pub author: String,
    pub comment: String,
    pub deleted: bool,
    pub changes: Vec<RequirementChange>,
}

/// What happened to one requirement (or one component's params) in one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequirementChange {
    /// `<component>/<name>`; the component path for `params`; empty for `spec`.
    pub target: String,
    /// `added`, `removed`, `changed`, `params` (a component's params changed) or `spec`
    /// (description, owners or alarms changed).
    pub kind: &'static str,
    /// For `changed`: the fields that differ (description, severity, tasks, check); for
    /// `params`: the param names; for `spec`: the top-level fields.
    pub fields: Vec<String>,
}

/// The report of one spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecReport {
    pub spec: String,
    pub version: u64,
    pub summary: Summary,
    pub components: Vec<GroupSummary>,
    pub component_types: Vec<GroupSummary>,
    pub coverage: Coverage,
    /// Versions published within the range.
    pub history: Vec<HistoryEntry>,
    pub cells: Vec<Cell>,
}

/// An alarm transition (or waiver) within the range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmRecord {
    pub ts_ms: u64,
    pub fingerprint: String,
    pub rule: String,
    pub state: String,
    pub severity: String,
    pub spec: String,
    pub component: String,
    pub requirement: String,
    pub summary: String,
    pub value: f64,
}

/// Pass/fail counts of one time bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub start_ms: u64,
    pub passes: u64,
    pub failures: u64,
    pub errors: u64,
}

/// The filters a report was made with, echoed so a saved report says what it covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScopeEcho {
    pub spec: Option<String>,
    pub component: Option<String>,
    pub severities: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Milliseconds since the epoch.
    pub from_ms: u64,
    pub to_ms: u64,
    pub scope: ScopeEcho,
    pub summary: Summary,
    pub specs: Vec<SpecReport>,
    /// Agents of the specs in scope, in the component subtree.
    pub agents: Vec<AgentState>,
    pub alarms: Vec<AlarmRecord>,
    /// Step between buckets, in milliseconds.
    pub bucket_ms: u64,
    pub timeline: Vec<Bucket>,
}

/// What the rollup says about one requirement × component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub severity: String,
    pub passes: u64,
    pub failures: u64,
    pub errors: u64,
    pub skips: u64,
    pub failing_instances: Vec<String>,
    pub last_failure: String,
    /// Start of the last minute with a failure (seconds), 0 without one: where to look for
    /// `last_failure`.
    pub last_failure_minute: u32,
}

fn status(o: &Observed) -> Status {
    if o.failures > 0 {
        Status::Failing
    } else if o.errors > 0 {
        Status::Error
    } else if o.passes > 0 {
        Status::Compliant
    } else {
        Status::Unknown
    }
}

/// The deepest component path `spec` declares at or above `component`.
pub fn component_type(spec: &Spec, component: &str) -> String {
    let mut best = None;
    let mut end = component.len();
    loop {
        let prefix = &component[..end];
        if spec.components.contains_key(prefix) {
            best = Some(prefix);
            break;
        }
        match prefix.rfind('.') {
            Some(dot) => end = dot,
            None => break,
        }
    }
    best.unwrap_or(component).to_owned()
}

fn unknown_cell(spec: &Spec, requirement: &str, component: &str, severity: &str) -> Cell {
    Cell {
        requirement: requirement.to_owned(),
        component: component.to_owned(),
        component_type: component_type(spec, component),
        severity: severity.to_owned(),
        status: Status::Unknown,
        passes: 0,
        failures: 0,
        errors: 0,
        skips: 0,
        failure_ratio: 0.0,
        last_failure: String::new(),
        failing_instances: Vec::new(),
    }
}

/// Requirement id -> severity, for every requirement of the spec in the severity filter:
/// the requirements whose cells a report keeps.
pub fn kept_requirements(spec: &Spec, scope: &Scope) -> BTreeMap<String, String> {
    let mut severity_of = BTreeMap::new();
    for (path, component) in &spec.components {
        for (name, requirement) in &component.requirements {
            let severity = requirement.severity().as_str();
            if scope.admits_severity(severity) {
                severity_of.insert(format!("{path}/{name}"), severity.to_owned());
            }
        }
    }
    severity_of
}

/// Builds the cells of one spec.
///
/// `observed` is keyed by (requirement, component) and already limited to the scope's
/// spec, time range and subtree; `heartbeating` names the components whose agents said they
/// run this spec. Requirements outside the severity filter are left out.
pub fn cells(
    spec: &Spec,
    scope: &Scope,
    observed: &BTreeMap<(String, String), Observed>,
    heartbeating: &BTreeSet<String>,
) -> Vec<Cell> {
    let severity_of = kept_requirements(spec, scope);
    let mut out: BTreeMap<(String, String), Cell> = BTreeMap::new();
    for ((requirement, component), o) in observed {
        let Some(severity) = severity_of.get(requirement) else { continue };
        let checked = o.passes + o.failures;
        out.insert(
            (requirement.clone(), component.clone()),
            Cell {
                requirement: requirement.clone(),
                component: component.clone(),
                component_type: component_type(spec, component),
                severity: severity.clone(),
                status: status(o),
                passes: o.passes,
                failures: o.failures,
                errors: o.errors,
                skips: o.skips,
                failure_ratio: if checked == 0 { 0.0 } else { o.failures as f64 / checked as f64 },
                last_failure: o.last_failure.clone(),
                failing_instances: o.failing_instances.clone(),
            },
        );
    }
    // Every component that showed up owes every requirement that applies to it.
    let seen: BTreeSet<&String> = observed.keys().map(|(_, c)| c).chain(heartbeating).collect();
    for component in seen {
        for applicable in spec.applicable(component).requirements {
            if let Some(severity) = severity_of.get(&applicable.id) {
                out.entry((applicable.id.clone(), component.clone()))
                    .or_insert_with(|| unknown_cell(spec, &applicable.id, component, severity));
            }
        }
    }
    // Requirements in scope nobody answered for: unknown at their defining component.
    let covered: BTreeSet<String> = out.keys().map(|(r, _)| r.clone()).collect();
    let root = scope.component.as_deref();
    let inherited: BTreeSet<String> =
        root.map(|r| spec.applicable(r).requirements.into_iter().map(|a| a.id).collect()).unwrap_or_default();
    for (id, severity) in &severity_of {
        if covered.contains(id) {
            continue;
        }
        let defined_by = id.rsplit_once('/').map_or(id.as_str(), |(path, _)| path);
        let at = if scope.contains_component(defined_by) {
            defined_by
        } else if inherited.contains(id) {
            // Inherited from above the subtree root: the root owes it.
            root.unwrap_or(defined_by)
        } else {
            continue;
        };
        out.insert((id.clone(), at.to_owned()), unknown_cell(spec, id, at, severity));
    }
    out.into_values().collect()
}

/// Summaries grouped by a key of the cell, sorted by name.
pub fn group_by(cells: &[Cell], key: impl Fn(&Cell) -> &str) -> Vec<GroupSummary> {
    let mut groups: BTreeMap<&str, Vec<&Cell>> = BTreeMap::new();
    for cell in cells {
        groups.entry(key(cell)).or_default().push(cell);
    }
    groups
        .into_iter()
        .map(|(name, cells)| GroupSummary { name: name.to_owned(), summary: Summary::of(cells) })
        .collect()
}

/// Coverage of one spec from its cells and its agents.
pub fn coverage(spec: &Spec, scope: &Scope, cells: &[Cell], agents: &[AgentState]) -> Coverage {
    let mut reported_requirements = BTreeSet::new();
    let mut reporting_components = BTreeSet::new();
    for cell in cells {
        if cell.status != Status::Unknown {
            reported_requirements.insert(cell.requirement.as_str());
        }
        // A skip still shows the component is there and checking.
        if cell.status != Status::Unknown || cell.skips > 0 {
            reporting_components.insert(cell.component.as_str());
        }
    }
    let unreported_components = spec
        .components
        .iter()
        .filter(|(path, component)| !component.requirements.is_empty() && scope.contains_component(path))
        .filter(|(path, _)| {
            !reporting_components
                .iter()
                .any(|c| *c == path.as_str() || (c.starts_with(path.as_str()) && c[path.len()..].starts_with('.')))
        })
        .map(|(path, _)| path.clone())
        .collect();
    let unreported_requirements: BTreeSet<String> = cells
        .iter()
        .filter(|c| !reported_requirements.contains(c.requirement.as_str()))
        .map(|c| c.requirement.clone())
        .collect();
    let runs_spec = |a: &&AgentState| a.specs.iter().any(|s| s.spec == spec.spec);
    Coverage {
        unreported_components,
        unreported_requirements: unreported_requirements.into_iter().collect(),
        silent_agents: agents.iter().filter(runs_spec).filter(|a| a.silent).map(|a| a.agent_id.clone()).collect(),
        stale_agents: agents
            .iter()
            .filter(runs_spec)
            .filter(|a| a.stale_specs.contains(&spec.spec))
            .map(|a| a.agent_id.clone())
            .collect(),
    }
}

/// Rolls the cells of one requirement up to one status (the worst of its cells).
pub fn requirement_status<'a>(cells: impl IntoIterator<Item = &'a Cell>) -> Status {
    cells.into_iter().map(|c| c.status).reduce(Status::worst).unwrap_or(Status::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  a:\n    requirements:\n      r1: {}\n      r2: {severity: critical}\n      r3: {}\n  a.x:\n    requirements:\n      rx: {}\n  b:\n    requirements:\n      r4: {}\n";

    fn observed(passes: u64, failures: u64, errors: u64, skips: u64) -> Observed {
        Observed { severity: "major".into(), passes, failures, errors, skips, ..Observed::default() }
    }

    fn scope() -> Scope {
        Scope { spec: None, component: None, from_ms: 0, to_ms: 1, severities: Vec::new() }
    }

    fn seen() -> BTreeMap<(String, String), Observed> {
        let mut seen = BTreeMap::new();
        seen.insert(("a/r1".to_owned(), "a.x".to_owned()), observed(10, 0, 0, 0));
        seen.insert(("a.x/rx".to_owned(), "a.x".to_owned()), observed(1, 0, 0, 0));
        seen.insert(("a/r1".to_owned(), "a.y".to_owned()), observed(3, 1, 0, 0));
        seen.insert(("a/r2".to_owned(), "a".to_owned()), observed(5, 0, 2, 0));
        // Only skips: nothing said about compliance.
        seen.insert(("a/r3".to_owned(), "a".to_owned()), observed(0, 0, 0, 7));
        seen
    }

    fn statuses(cells: &[Cell]) -> Vec<(&str, &str, Status)> {
        cells.iter().map(|c| (c.requirement.as_str(), c.component.as_str(), c.status)).collect()
    }

    #[test]
    fn statuses_follow_the_counts_and_unknown_fills_the_gaps() {
        let spec = Spec::parse(SPEC).unwrap();
        let cells = cells(&spec, &scope(), &seen(), &BTreeSet::new());
        assert_eq!(
            statuses(&cells),
            [
                ("a.x/rx", "a.x", Status::Compliant),
                ("a/r1", "a", Status::Unknown),
                ("a/r1", "a.x", Status::Compliant),
                ("a/r1", "a.y", Status::Failing),
                ("a/r2", "a", Status::Error),
                ("a/r2", "a.x", Status::Unknown),
                ("a/r2", "a.y", Status::Unknown),
                ("a/r3", "a", Status::Unknown),
                ("a/r3", "a.x", Status::Unknown),
                ("a/r3", "a.y", Status::Unknown),
                ("b/r4", "b", Status::Unknown),
            ]
        );
        let failing = cells.iter().find(|c| c.status == Status::Failing).unwrap();
        assert_eq!(failing.failure_ratio, 0.25);
        assert_eq!(failing.component_type, "a");
        assert_eq!(cells[0].component_type, "a.x");
        let summary = Summary::of(&cells);
        assert_eq!((summary.compliant, summary.failing, summary.error, summary.unknown), (2, 1, 1, 7));
        // Unknown counts against compliance, never for it.
        assert!((summary.compliance_pct - 200.0 / 11.0).abs() < 1e-9);
    }

    #[test]
    fn a_heartbeating_component_that_reports_nothing_owes_every_requirement() {
        let spec = Spec::parse(SPEC).unwrap();
        let cells = cells(&spec, &scope(), &BTreeMap::new(), &BTreeSet::from(["b.z".to_owned()]));
        assert!(statuses(&cells).contains(&("b/r4", "b.z", Status::Unknown)));
        assert!(!statuses(&cells).contains(&("b/r4", "b", Status::Unknown)));
        assert_eq!(Summary::of(&cells).compliance_pct, 0.0);
    }

    #[test]
    fn subtree_and_severity_filters_limit_the_cells() {
        let spec = Spec::parse(SPEC).unwrap();
        let mut scope = scope();
        scope.component = Some("a.x".into());
        let observed: BTreeMap<_, _> = seen().into_iter().filter(|((_, c), _)| scope.contains_component(c)).collect();
        let cells = cells(&spec, &scope, &observed, &BTreeSet::new());
        assert_eq!(
            statuses(&cells),
            [
                ("a.x/rx", "a.x", Status::Compliant),
                ("a/r1", "a.x", Status::Compliant),
                ("a/r2", "a.x", Status::Unknown),
                ("a/r3", "a.x", Status::Unknown),
            ]
        );
        scope.severities = vec!["critical".into()];
        let cells = super::cells(&spec, &scope, &observed, &BTreeSet::new());
        assert_eq!(statuses(&cells), [("a/r2", "a.x", Status::Unknown)]);
    }

    #[test]
    fn groups_and_coverage() {
        let spec = Spec::parse(SPEC).unwrap();
        let cells = cells(&spec, &scope(), &seen(), &BTreeSet::new());
        let types = group_by(&cells, |c| &c.component_type);
        let names: Vec<&str> = types.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["a", "a.x", "b"]);
        let agents = vec![AgentState {
            agent_id: "ag".into(),
            component: "b".into(),
            instance: "i".into(),
            last_seen_ms: 0,
            started_at_ms: 0,
            sdk_version: String::new(),
            specs: vec![SpecInUse { spec: "s".into(), version: 1 }],
            silent: true,
            stale_specs: vec!["s".into()],
        }];
        let coverage = coverage(&spec, &scope(), &cells, &agents);
        assert_eq!(coverage.unreported_components, ["b"]);
        assert_eq!(coverage.unreported_requirements, ["a/r3", "b/r4"]);
        assert_eq!((coverage.silent_agents.len(), coverage.stale_agents.len()), (1, 1));
    }

    #[test]
    fn component_types_are_the_deepest_declared_ancestor() {
        let spec = Spec::parse(SPEC).unwrap();
        assert_eq!(component_type(&spec, "a.x.host-1"), "a.x");
        assert_eq!(component_type(&spec, "a.y"), "a");
        assert_eq!(component_type(&spec, "zzz"), "zzz");
    }

    #[test]
    fn the_worst_status_wins_a_roll_up() {
        assert_eq!(Status::Compliant.worst(Status::Unknown), Status::Unknown);
        assert_eq!(Status::Unknown.worst(Status::Error), Status::Error);
        assert_eq!(Status::Error.worst(Status::Failing), Status::Failing);
    }
}
