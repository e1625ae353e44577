//! Reads what reports need from ClickHouse. Every value from a user is a bound parameter
//! (the clickhouse crate's `?`, which quotes and escapes); table names come from this file
//! and the database from the validated config. Every statement runs on ClickHouse 18.16 and
//! current releases: no Map, DateTime64, window functions or `WITH FILL`.

use std::collections::BTreeMap;

use clickhouse::query::Query;
use serde::Deserialize;

use crate::report::{AlarmRecord, Observed};
use crate::scope::Scope;

/// Where the requirement × component counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The per-minute rollup `assertions_minutely`: what reports use.
    Rollup,
    /// A scan of the raw `assertions` table: the baseline the benchmark compares against.
    Raw,
}

/// Why ClickHouse could not answer.
#[derive(Debug, thiserror::Error)]
#[error("failed to read {what} from clickhouse: {source}")]
pub struct QueryError {
    pub what: &'static str,
    #[source]
    pub source: clickhouse::error::Error,
}

/// The reporter's ClickHouse client. ClickHouse ends any statement after
/// [`QUERY_BUDGET`](crate::http::QUERY_BUDGET), the time the web server waits for a page:
/// a request given up on (say `from=0`) must not keep scanning on the server.
pub fn client(config: &specaudit_core::config::ClickHouseConfig) -> clickhouse::Client {
    specaudit_core::clickhouse::client(config)
        .with_setting("max_execution_time", crate::http::QUERY_BUDGET.as_secs().to_string())
}

fn err(what: &'static str) -> impl FnOnce(clickhouse::error::Error) -> QueryError {
    move |source| QueryError { what, source }
}

/// The condition "`component` in the scope's subtree", to append after a WHERE clause, and
/// its parameters ([`bind_subtree`]). Empty without a subtree. The range on `component`
/// lets ClickHouse skip granules by primary key; the exact test follows it.
fn subtree(scope: &Scope) -> &'static str {
    if scope.component.is_some() {
        " AND component >= ? AND component < ? AND (component = ? OR position(component, ?) = 1)"
    } else {
        ""
    }
}

fn bind_subtree(query: Query, scope: &Scope) -> Query {
    match scope.component.as_deref() {
        None => query,
        // Every path below `root` starts with `root.`, and '/' sorts right after '.'.
        Some(root) => query.bind(root).bind(format!("{root}/")).bind(root).bind(format!("{root}.")),
    }
}

/// Seconds of the range for `toDateTime(?)`.
fn seconds(scope: &Scope) -> (u64, u64) {
    (scope.from_ms / 1000, scope.to_ms / 1000)
}

/// The latest version of each spec in scope, as (name, version, document); deleted specs
/// are left out.
pub async fn latest_specs(client: &clickhouse::Client, spec: Option<&str>) -> Result<Vec<(String, u64, String)>, QueryError> {
    let rows: Vec<(String, u64, u8, String)> = client
        .query(
            "SELECT spec, max(version) AS v, argMax(deleted, version), argMax(document, version) \
             FROM spec_versions WHERE (? = '' OR spec = ?) GROUP BY spec ORDER BY spec",
        )
        .bind(spec.unwrap_or(""))
        .bind(spec.unwrap_or(""))
        .fetch_all()
        .await
        .map_err(err("the latest spec versions"))?;
    Ok(rows.into_iter().filter(|r| r.2 == 0).map(|(s, v, _, d)| (s, v, d)).collect())
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct CountRow {
    requirement: String,
    component: String,
    severity: String,
    passes: u64,
    failures: u64,
    errors: u64,
    skips: u64,
    failing_instances: Vec<String>,
    /// Start of the last minute with a failure (seconds), 0 without one.
    last_failure_minute: u32,
}

/// Counts per (requirement, component) of one spec within the scope, with the last failure
/// message of every failing cell.
pub async fn observed(
    client: &clickhouse::Client,
    spec: &str,
    scope: &Scope,
    source: Source,
) -> Result<BTreeMap<(String, String), Observed>, QueryError> {
    let mut observed = counts(client, spec, scope, source).await?;
    add_last_failures(client, spec, &mut observed, |_| true).await;
    Ok(observed)
}

/// Counts per (requirement, component) of one spec within the scope, without failure
/// messages ([`add_last_failures`] reads those).
pub async fn counts(
    client: &clickhouse::Client,
    spec: &str,
    scope: &Scope,
    source: Source,
) -> Result<BTreeMap<(String, String), Observed>, QueryError> {
    let sql = match source {
        Source::Rollup => format!(
            "SELECT requirement, component, toString(any(severity)), sum(passes), sum(failures), sum(errors), \
             sum(skips), groupUniqArrayIf(instance, failures > 0), toUInt32(maxIf(minute, failures > 0)) \
             FROM assertions_minutely \
             WHERE spec = ? AND minute >= toStartOfMinute(toDateTime(?)) AND minute <= toDateTime(?){} \
             GROUP BY requirement, component",
            subtree(scope)
        ),
        Source::Raw => format!(
            "SELECT requirement, component, toString(any(severity)), \
             sum(if(outcome = 'pass', toUInt64(count), toUInt64(0))), sum(if(outcome = 'fail', toUInt64(count), toUInt64(0))), \
             sum(if(outcome = 'error', toUInt64(count), toUInt64(0))), sum(if(outcome = 'skip', toUInt64(count), toUInt64(0))), \
             groupUniqArrayIf(instance, outcome = 'fail'), toUInt32(maxIf(toStartOfMinute(ts), outcome = 'fail')) \
             FROM assertions \
             WHERE spec = ? AND ts >= toStartOfMinute(toDateTime(?)) AND toStartOfMinute(ts) <= toDateTime(?){} \
             GROUP BY requirement, component",
            subtree(scope)
        ),
    };
    let (from, to) = seconds(scope);
    let query = client.query(&sql).bind(spec).bind(from).bind(to);
    let rows: Vec<CountRow> = bind_subtree(query, scope).fetch_all().await.map_err(err("assertion counts"))?;
    let mut observed = BTreeMap::new();
    for row in rows {
        let CountRow { requirement, component, severity, passes, failures, errors, skips, mut failing_instances, last_failure_minute } =
            row;
        failing_instances.sort();
        observed.insert(
            (requirement, component),
            Observed { severity, passes, failures, errors, skips, failing_instances, last_failure: String::new(), last_failure_minute },
        );
    }
    Ok(observed)
}

/// Sets `last_failure` of the failing cells whose requirement `keep` accepts (the report
/// drops the others, so reading their messages is wasted). A lookup ClickHouse refuses
/// leaves its cells without a message: the counts matter more than the text.
pub async fn add_last_failures(
    client: &clickhouse::Client,
    spec: &str,
    observed: &mut BTreeMap<(String, String), Observed>,
    keep: impl Fn(&str) -> bool,
) {
    let failing: Vec<Failing<'_>> = observed
        .iter()
        .filter(|((requirement, _), o)| o.failures > 0 && keep(requirement))
        .map(|((requirement, component), o)| Failing { requirement, component, minute: o.last_failure_minute })
        .collect();
    let mut found = Vec::new();
    for batch in batches(&failing) {
        match last_failures(client, spec, batch).await {
            Ok(rows) => found.extend(rows),
            Err(error) => {
                tracing::warn!(spec, cells = batch.len(), %error, "showing failing cells without their last failure message")
            }
        }
    }
    for (requirement, component, message) in found {
        if let Some(o) = observed.get_mut(&(requirement, component)) {
            o.last_failure = message;
        }
    }
}

/// A failing cell to look up.
#[derive(Debug, Clone, Copy)]
struct Failing<'a> {
    requirement: &'a str,
    component: &'a str,
    /// Start of its last failing minute (seconds).
    minute: u32,
}

/// Failing cells per lookup, and bytes of their bound text (component and requirement are
/// free text of up to 64 KiB each): a statement, quoting included, stays well under
/// ClickHouse's default max_query_size of 256 KiB.
const CELLS_PER_QUERY: usize = 100;
const BOUND_BYTES_PER_QUERY: usize = 64 * 1024;

/// Splits the cells into lookups within both bounds; a cell larger than the byte bound
/// is looked up alone.
fn batches<'s, 'a>(cells: &'s [Failing<'a>]) -> Vec<&'s [Failing<'a>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, cell) in cells.iter().enumerate() {
        let size = cell.requirement.len() + cell.component.len();
        if i > start && (i - start == CELLS_PER_QUERY || bytes + size > BOUND_BYTES_PER_QUERY) {
            out.push(&cells[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < cells.len() {
        out.push(&cells[start..]);
    }
    out
}

/// The last failure message of each cell, read from the raw table within the cell's last
/// failing minute only: the primary key (spec, component, requirement, ts) then narrows the
/// read to a granule or two per cell instead of the whole range.
async fn last_failures(client: &clickhouse::Client, spec: &str, cells: &[Failing<'_>]) -> Result<Vec<(String, String, String)>, QueryError> {
    let conditions = vec!["(component = ? AND requirement = ? AND ts >= toDateTime(?) AND ts < toDateTime(?))"; cells.len()];
    let sql = format!(
        "SELECT requirement, component, argMax(message, ts_ms) FROM assertions \
         WHERE spec = ? AND outcome = 'fail' AND ({}) GROUP BY requirement, component",
        conditions.join(" OR ")
    );
    let mut query = client.query(&sql).bind(spec);
    for cell in cells {
        query = query.bind(cell.component).bind(cell.requirement).bind(cell.minute).bind(u64::from(cell.minute) + 60);
    }
    query.fetch_all().await.map_err(err("the last failure messages"))
}

/// Pass, fail and error counts per bucket of `step_s` seconds (a multiple of 60), for every
/// spec in scope, split by severity so the caller can filter.
pub async fn timeline(
    client: &clickhouse::Client,
    scope: &Scope,
    step_s: u64,
) -> Result<Vec<(u64, String, u64, u64, u64)>, QueryError> {
    let sql = format!(
        "SELECT toUInt64(intDiv(toUInt32(minute), ?) * ?) AS bucket, toString(severity), \
         sum(passes), sum(failures), sum(errors) FROM assertions_minutely \
         WHERE spec != '' AND (? = '' OR spec = ?) AND minute >= toStartOfMinute(toDateTime(?)) \
         AND minute <= toDateTime(?){} GROUP BY bucket, severity ORDER BY bucket",
        subtree(scope)
    );
    let (from, to) = seconds(scope);
    let spec = scope.spec.as_deref().unwrap_or("");
    let query = client.query(&sql).bind(step_s).bind(step_s).bind(spec).bind(spec).bind(from).bind(to);
    bind_subtree(query, scope).fetch_all().await.map_err(err("the pass/fail timeline"))
}

/// The latest heartbeat of one agent.
#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct AgentRow {
    pub agent_id: String,
    pub component: String,
    pub instance: String,
    pub last_seen_ms: u64,
    pub started_at_ms: u64,
    pub sdk_version: String,
    pub spec_names: Vec<String>,
    pub spec_versions: Vec<u64>,
}

/// Every agent's latest heartbeat, in the scope's subtree.
pub async fn agents(client: &clickhouse::Client, scope: &Scope) -> Result<Vec<AgentRow>, QueryError> {
    let rows: Vec<AgentRow> = client
        .query(
            "SELECT agent_id, argMax(component, ts_ms), argMax(instance, ts_ms), max(ts_ms), \
             argMax(started_at_ms, ts_ms), argMax(sdk_version, ts_ms), argMax(spec_names, ts_ms), \
             argMax(spec_versions, ts_ms) FROM agents GROUP BY agent_id ORDER BY agent_id",
        )
        .fetch_all()
        .await
        .map_err(err("agents"))?;
    Ok(rows.into_iter().filter(|a| scope.contains_component(&a.component)).collect())
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct AlarmRow {
    ts_ms: u64,
    fingerprint: String,
    rule: String,
    state: String,
    severity: String,
    spec: String,
    component: String,
    requirement: String,
    summary: String,
    value: f64,
}

/// Alarm transitions and waivers within the scope, newest first (at most `limit`).
pub async fn alarms(client: &clickhouse::Client, scope: &Scope, limit: u64) -> Result<Vec<AlarmRecord>, QueryError> {
    // The severity filter goes before the LIMIT: newer alarms of other severities must not
    // crowd out the ones asked for. Compared as text, which every server version accepts.
    let severities = if scope.severities.is_empty() {
        String::new()
    } else {
        format!(" AND toString(severity) IN ({})", vec!["?"; scope.severities.len()].join(", "))
    };
    let sql = format!(
        "SELECT ts_ms, fingerprint, rule, toString(state), toString(severity), spec, component, requirement, \
         summary, value FROM alarms WHERE ts_ms >= ? AND ts_ms <= ? AND (? = '' OR spec = ?){}{severities} \
         ORDER BY ts_ms DESC LIMIT ?",
        subtree(scope)
    );
    let spec = scope.spec.as_deref().unwrap_or("");
    let query = client.query(&sql).bind(scope.from_ms).bind(scope.to_ms).bind(spec).bind(spec);
    let query = scope.severities.iter().fold(bind_subtree(query, scope), |query, severity| query.bind(severity.as_str()));
    let rows: Vec<AlarmRow> = query.bind(limit).fetch_all().await.map_err(err("alarms"))?;
    Ok(rows
        .into_iter()
        .map(|a| AlarmRecord {
            ts_ms: a.ts_ms,
            fingerprint: a.fingerprint,
            rule: a.rule,
            state: a.state,
            severity: a.severity,
            spec: a.spec,
            component: a.component,
            requirement: a.requirement,
            summary: a.summary,
            value: a.value,
        })
        .collect())
}

/// One stored version of a spec.
#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct VersionRow {
    pub version: u64,
    pub ts_ms: u64,
    pub author: String,
    pub comment: String,
    pub deleted: u8,
    pub document: String,
}

/// Every version of `spec`, oldest first.
pub async fn versions(client: &clickhouse::Client, spec: &str) -> Result<Vec<VersionRow>, QueryError> {
    client
        .query(
            "SELECT version, any(ts_ms), any(author), any(comment), any(deleted), any(document) \
             FROM spec_versions WHERE spec = ? GROUP BY version ORDER BY version",
        )
        .bind(spec)
        .fetch_all()
        .await
        .map_err(err("spec versions"))
}

/// A failed or unevaluable assertion.
#[derive(Debug, Clone, clickhouse::Row, Deserialize, serde::Serialize)]
pub struct FailureRow {
    pub ts_ms: u64,
    pub component: String,
    pub instance: String,
    pub requirement: String,
    pub task: String,
    pub outcome: String,
    pub message: String,
}

/// The newest failures and errors of `spec` in scope, optionally of one requirement.
pub async fn recent_failures(
    client: &clickhouse::Client,
    spec: &str,
    requirement: Option<&str>,
    scope: &Scope,
    limit: u64,
) -> Result<Vec<FailureRow>, QueryError> {
    let sql = format!(
        "SELECT ts_ms, component, instance, requirement, task, toString(outcome), message FROM assertions \
         WHERE spec = ? AND outcome IN ('fail', 'error') AND ts_ms >= ? AND ts_ms <= ?{} \
         AND (? = '' OR requirement = ?) ORDER BY ts_ms DESC LIMIT ?",
        subtree(scope)
    );
    let query = client.query(&sql).bind(spec).bind(scope.from_ms).bind(scope.to_ms);
    let requirement = requirement.unwrap_or("");
    let rows: Vec<FailureRow> = bind_subtree(query, scope)
        .bind(requirement)
        .bind(requirement)
        .bind(limit)
        .fetch_all()
        .await
        .map_err(err("recent failures"))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(requirement: &'static str, component: &'static str) -> Failing<'static> {
        Failing { requirement, component, minute: 0 }
    }

    fn sizes(batches: &[&[Failing<'_>]]) -> Vec<usize> {
        batches.iter().map(|b| b.len()).collect()
    }

    #[test]
    fn lookups_are_bounded_by_cells_and_by_bytes() {
        assert!(batches(&[]).is_empty());
        let small = vec![cell("a/r", "a.b"); 250];
        assert_eq!(sizes(&batches(&small)), [100, 100, 50]);
        // Huge free-text components: a few per statement, a huge one alone, nothing lost.
        let huge: &'static str = "x".repeat(40 * 1024).leak();
        let giant: &'static str = "y".repeat(200 * 1024).leak();
        let cells = [cell("a/r", huge), cell("a/r", "a"), cell("a/r", huge), cell("a/r", giant), cell("a/r", "a")];
        let split = batches(&cells);
        assert_eq!(sizes(&split), [2, 1, 1, 1]);
        for batch in &split {
            let bytes: usize = batch.iter().map(|c| c.requirement.len() + c.component.len()).sum();
            assert!(batch.len() == 1 || bytes <= BOUND_BYTES_PER_QUERY, "{bytes}");
        }
    }
}
