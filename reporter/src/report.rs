//! The compliance report (DESIGN.md section 8): each requirement × reporting component of
//! a spec with its status over a time range, read from the per-minute rollup. A requirement
//! nobody reported on is `unknown` and counts against compliance, never for it.

use std::collections::BTreeMap;

use serde::Serialize;
use specaudit_core::spec::Spec;

/// What a requirement × component cell shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Failing => "failing",
            Status::Error => "error",
            Status::Compliant => "compliant",
            Status::Unknown => "unknown",
        }
    }
}

/// One requirement as reported by one component (or expected from its defining component).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub requirement: String,
    pub component: String,
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
        let total = s.compliant + s.failing + s.error + s.unknown;
        s.compliance_pct = if total == 0 { 0.0 } else { 100.0 * s.compliant as f64 / total as f64 };
        s
    }
}

/// The report of one spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecReport {
    pub spec: String,
    pub version: u64,
    pub summary: Summary,
    pub cells: Vec<Cell>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Milliseconds since the epoch.
    pub from_ms: u64,
    pub to_ms: u64,
    pub summary: Summary,
    pub specs: Vec<SpecReport>,
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

/// Builds the cells of one spec from what was observed, keyed by (requirement, component).
/// Every requirement of the spec appears: where no component at or under its defining
/// component reported it, as one `unknown` cell for the defining component.
pub fn cells(spec: &Spec, observed: &BTreeMap<(String, String), Observed>) -> Vec<Cell> {
    let mut cells = Vec::new();
    for (path, component) in &spec.components {
        for (name, requirement) in &component.requirements {
            let id = format!("{path}/{name}");
            let mut reported = false;
            for ((req, reporter), o) in observed.range((id.clone(), String::new())..) {
                if *req != id {
                    break;
                }
                reported = true;
                let checked = o.passes + o.failures;
                cells.push(Cell {
                    requirement: id.clone(),
                    component: reporter.clone(),
                    severity: o.severity.clone(),
                    status: status(o),
                    passes: o.passes,
                    failures: o.failures,
                    errors: o.errors,
                    skips: o.skips,
                    failure_ratio: if checked == 0 { 0.0 } else { o.failures as f64 / checked as f64 },
                    last_failure: o.last_failure.clone(),
                    failing_instances: o.failing_instances.clone(),
                });
            }
            if !reported {
                cells.push(Cell {
                    requirement: id,
                    component: path.clone(),
                    severity: requirement.severity().as_str().to_owned(),
                    status: Status::Unknown,
                    passes: 0,
                    failures: 0,
                    errors: 0,
                    skips: 0,
                    failure_ratio: 0.0,
                    last_failure: String::new(),
                    failing_instances: Vec::new(),
                });
            }
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "apiVersion: specaudit/v1\nspec: s\ncomponents:\n  a:\n    requirements:\n      r1: {}\n      r2: {severity: critical}\n      r3: {}\n  b:\n    requirements:\n      r4: {}\n";

    fn observed(passes: u64, failures: u64, errors: u64, skips: u64) -> Observed {
        Observed { severity: "major".into(), passes, failures, errors, skips, ..Observed::default() }
    }

    #[test]
    fn statuses_follow_the_counts_and_unknown_fills_the_gaps() {
        let spec = Spec::parse(SPEC).unwrap();
        let mut seen = BTreeMap::new();
        seen.insert(("a/r1".to_owned(), "a.x".to_owned()), observed(10, 0, 0, 0));
        seen.insert(("a/r1".to_owned(), "a.y".to_owned()), observed(3, 1, 0, 0));
        seen.insert(("a/r2".to_owned(), "a".to_owned()), observed(5, 0, 2, 0));
        // Only skips: nothing said about compliance.
        seen.insert(("a/r3".to_owned(), "a".to_owned()), observed(0, 0, 0, 7));
        let cells = cells(&spec, &seen);
        let got: Vec<(&str, &str, Status)> =
            cells.iter().map(|c| (c.requirement.as_str(), c.component.as_str(), c.status)).collect();
        assert_eq!(
            got,
            [
                ("a/r1", "a.x", Status::Compliant),
                ("a/r1", "a.y", Status::Failing),
                ("a/r2", "a", Status::Error),
                ("a/r3", "a", Status::Unknown),
                ("b/r4", "b", Status::Unknown),
            ]
        );
        assert_eq!(cells[1].failure_ratio, 0.25);
        assert_eq!(cells[4].severity, "major");
        let summary = Summary::of(&cells);
        assert_eq!((summary.compliant, summary.failing, summary.error, summary.unknown), (1, 1, 1, 2));
        // Unknown counts against compliance.
        assert_eq!(summary.compliance_pct, 20.0);
    }
}
