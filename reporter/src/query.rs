//! Reads what reports need from ClickHouse, with bound parameters only.

use std::collections::BTreeMap;

use anyhow::Context;
use specaudit_core::spec::Spec;

use crate::report::{cells, Observed, Report, SpecReport, Summary};

/// What to report on.
#[derive(Debug, Clone)]
pub struct Scope {
    /// One spec, or every spec when None.
    pub spec: Option<String>,
    pub from_ms: u64,
    pub to_ms: u64,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct RollupRow {
    requirement: String,
    component: String,
    severity: String,
    passes: u64,
    failures: u64,
    errors: u64,
    skips: u64,
    failing_instances: Vec<String>,
}

/// The latest version of each spec in scope, as (name, version, document).
async fn latest_specs(client: &clickhouse::Client, spec: Option<&str>) -> anyhow::Result<Vec<(String, u64, String)>> {
    let rows: Vec<(String, u64, u8, String)> = client
        .query(
            "SELECT spec, max(version) AS v, argMax(deleted, version), argMax(document, version) \
             FROM spec_versions WHERE (? = '' OR spec = ?) GROUP BY spec ORDER BY spec",
        )
        .bind(spec.unwrap_or(""))
        .bind(spec.unwrap_or(""))
        .fetch_all()
        .await
        .context("failed to read spec_versions")?;
    Ok(rows.into_iter().filter(|r| r.2 == 0).map(|(s, v, _, d)| (s, v, d)).collect())
}

async fn observed(client: &clickhouse::Client, spec: &str, scope: &Scope) -> anyhow::Result<BTreeMap<(String, String), Observed>> {
    let (from, to) = (scope.from_ms / 1000, scope.to_ms / 1000);
    let rows: Vec<RollupRow> = client
        .query(
            "SELECT requirement, component, toString(any(severity)), sum(passes), sum(failures), sum(errors), sum(skips), \
             groupUniqArrayIf(instance, failures > 0) \
             FROM assertions_minutely \
             WHERE spec = ? AND minute >= toStartOfMinute(toDateTime(?)) AND minute <= toDateTime(?) \
             GROUP BY requirement, component",
        )
        .bind(spec)
        .bind(from)
        .bind(to)
        .fetch_all()
        .await
        .context("failed to read assertions_minutely")?;
    let last_failures: Vec<(String, String, String)> = client
        .query(
            "SELECT requirement, component, argMax(message, ts_ms) FROM assertions \
             WHERE spec = ? AND outcome = 'fail' AND ts >= toDateTime(?) AND ts <= toDateTime(?) \
             GROUP BY requirement, component",
        )
        .bind(spec)
        .bind(from)
        .bind(to)
        .fetch_all()
        .await
        .context("failed to read the last failures")?;
    let mut observed = BTreeMap::new();
    for row in rows {
        let RollupRow { requirement, component, severity, passes, failures, errors, skips, mut failing_instances } = row;
        failing_instances.sort();
        observed.insert(
            (requirement, component),
            Observed { severity, passes, failures, errors, skips, failing_instances, last_failure: String::new() },
        );
    }
    for (requirement, component, message) in last_failures {
        if let Some(o) = observed.get_mut(&(requirement, component)) {
            o.last_failure = message;
        }
    }
    Ok(observed)
}

/// Builds the report for `scope`.
pub async fn report(client: &clickhouse::Client, scope: &Scope) -> anyhow::Result<Report> {
    let mut specs = Vec::new();
    for (name, version, document) in latest_specs(client, scope.spec.as_deref()).await? {
        let spec = match Spec::from_json(&document) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::warn!(spec = %name, version, %error, "stored spec does not parse, skipped");
                continue;
            }
        };
        let observed = observed(client, &name, scope).await?;
        let cells = cells(&spec, &observed);
        specs.push(SpecReport { spec: name, version, summary: Summary::of(&cells), cells });
    }
    if let Some(wanted) = &scope.spec {
        if specs.is_empty() {
            anyhow::bail!("spec {wanted} is not known to ClickHouse (has the ingester written spec-history?)");
        }
    }
    let summary = Summary::of(specs.iter().flat_map(|s| &s.cells));
    Ok(Report { from_ms: scope.from_ms, to_ms: scope.to_ms, summary, specs })
}
