//! Puts a whole report together: the queries of [`crate::query`] and the arithmetic of
//! [`crate::report`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use specaudit_core::record::SpecVersion;
use specaudit_core::spec::Spec;
use specaudit_producer::diff::Kind;

use crate::query::{self, QueryError, Source, VersionRow};
use crate::report::{
    cells, coverage, group_by, kept_requirements, AgentState, Bucket, HistoryEntry, Report, RequirementChange, ScopeEcho, SpecInUse, SpecReport,
    Summary,
};
use crate::scope::Scope;

/// Knobs of a report that do not come from the filters.
#[derive(Debug, Clone)]
pub struct Options {
    /// An agent without a heartbeat for this long before the end of the range is silent.
    pub silent_after: Duration,
    /// Where counts come from (the rollup, except in the benchmark).
    pub source: Source,
    /// How many buckets the pass/fail timeline aims for.
    pub buckets: u64,
    /// The newest alarm transitions kept.
    pub max_alarms: u64,
    /// The present, in milliseconds (silence is judged against the earlier of this and `to`).
    pub now_ms: u64,
    /// Whether to read the pass/fail timeline (a second pass over the rollup).
    pub timeline: bool,
    /// Whether to read each spec's versions for the history in the range.
    pub history: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            silent_after: Duration::from_secs(120),
            source: Source::Rollup,
            buckets: 120,
            max_alarms: 500,
            now_ms: specaudit_core::record::now_ms().max(0) as u64,
            timeline: true,
            history: true,
        }
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("spec {0} is not known to clickhouse (published? has the ingester written spec-history?)")]
    UnknownSpec(String),
}

/// The bucket width for `buckets` buckets over the range: whole minutes, at least one.
pub fn bucket_seconds(scope: &Scope, buckets: u64) -> u64 {
    let range_s = (scope.to_ms.saturating_sub(scope.from_ms) / 1000).max(60);
    let minutes = range_s.div_ceil(60 * buckets.max(1)).max(1);
    minutes * 60
}

/// Agents with their silence and skew judged against the latest spec versions.
pub fn agent_states(rows: Vec<query::AgentRow>, latest: &BTreeMap<String, u64>, scope: &Scope, options: &Options) -> Vec<AgentState> {
    let horizon = scope.to_ms.min(options.now_ms);
    let silent_ms = options.silent_after.as_millis() as u64;
    rows.into_iter()
        .map(|row| {
            let specs: Vec<SpecInUse> = row
                .spec_names
                .iter()
                .zip(&row.spec_versions)
                .map(|(spec, version)| SpecInUse { spec: spec.clone(), version: *version })
                .collect();
            let stale_specs =
                specs.iter().filter(|s| latest.get(&s.spec).is_some_and(|l| s.version < *l)).map(|s| s.spec.clone()).collect();
            AgentState {
                silent: row.last_seen_ms + silent_ms < horizon,
                agent_id: row.agent_id,
                component: row.component,
                instance: row.instance,
                last_seen_ms: row.last_seen_ms,
                started_at_ms: row.started_at_ms,
                sdk_version: row.sdk_version,
                specs,
                stale_specs,
            }
        })
        .collect()
}

/// What changed between two stored versions, from the producer's requirement-level diff
/// (the one `specctl diff` prints), in the report's shape.
fn changes(versions: &[SpecVersion], from: i64, to: i64, both_present: bool) -> Vec<RequirementChange> {
    let Ok(d) = specaudit_producer::diff::diff(versions, from, to) else { return Vec::new() };
    let kind = |k: Kind| match k {
        Kind::Added => "added",
        Kind::Removed => "removed",
        Kind::Changed => "changed",
    };
    let mut out: Vec<RequirementChange> = d
        .requirements
        .iter()
        .map(|r| RequirementChange {
            target: r.id.clone(),
            kind: kind(r.change),
            fields: r.fields.iter().map(|f| f.field.to_owned()).collect(),
        })
        .collect();
    let mut params: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in &d.params {
        params.entry(p.component.as_str()).or_default().push(p.name.clone());
    }
    out.extend(params.into_iter().map(|(component, fields)| RequirementChange { target: component.to_owned(), kind: "params", fields }));
    // A first version or a delete changes every top-level field: not worth a line.
    if both_present && !d.other.is_empty() {
        out.push(RequirementChange { target: String::new(), kind: "spec", fields: d.other.clone() });
    }
    out.sort_by(|a, b| a.target.cmp(&b.target).then(a.kind.cmp(b.kind)));
    out
}

/// The history of one spec with requirement-level changes, oldest first.
pub fn history(rows: &[VersionRow]) -> Vec<HistoryEntry> {
    // Version 0 stands for "no spec yet", so the first version diffs as all added.
    let mut versions = vec![SpecVersion {
        spec: String::new(),
        version: 0,
        ts: 0,
        author: String::new(),
        comment: String::new(),
        sha256: String::new(),
        deleted: true,
        document: String::new(),
        patch: String::new(),
    }];
    versions.extend(rows.iter().map(|row| SpecVersion {
        spec: String::new(),
        version: row.version as i64,
        ts: row.ts_ms as i64,
        author: row.author.clone(),
        comment: row.comment.clone(),
        sha256: String::new(),
        deleted: row.deleted != 0,
        document: row.document.clone(),
        patch: String::new(),
    }));
    versions
        .windows(2)
        .map(|pair| HistoryEntry {
            version: pair[1].version as u64,
            ts_ms: pair[1].ts as u64,
            author: pair[1].author.clone(),
            comment: pair[1].comment.clone(),
            deleted: pair[1].deleted,
            changes: changes(&versions, pair[0].version, pair[1].version, !pair[0].deleted && !pair[1].deleted),
        })
        .collect()
}

/// Builds the report for `scope`.
pub async fn report(client: &clickhouse::Client, scope: &Scope, options: &Options) -> Result<Report, ReportError> {
    let specs_in_scope = query::latest_specs(client, scope.spec.as_deref()).await?;
    if let Some(wanted) = &scope.spec {
        if specs_in_scope.is_empty() {
            return Err(ReportError::UnknownSpec(wanted.clone()));
        }
    }
    let latest: BTreeMap<String, u64> = specs_in_scope.iter().map(|(s, v, _)| (s.clone(), *v)).collect();
    let agents = agent_states(query::agents(client, scope).await?, &latest, scope, options);
    let mut specs = Vec::new();
    for (name, version, document) in specs_in_scope {
        let spec = match Spec::from_json(&document) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::warn!(spec = %name, version, %error, "stored spec does not parse, skipped");
                continue;
            }
        };
        let mut observed = query::counts(client, &name, scope, options.source).await?;
        let kept = kept_requirements(&spec, scope);
        query::add_last_failures(client, &name, &mut observed, |requirement| kept.contains_key(requirement)).await;
        // Agents that ran the spec during the range owe its requirements even if silent.
        let heartbeating: BTreeSet<String> = agents
            .iter()
            .filter(|a| a.last_seen_ms >= scope.from_ms && a.started_at_ms <= scope.to_ms)
            .filter(|a| a.specs.iter().any(|s| s.spec == name))
            .map(|a| a.component.clone())
            .collect();
        let cells = cells(&spec, scope, &observed, &heartbeating);
        let history = if options.history {
            history(&query::versions(client, &name).await?)
                .into_iter()
                .filter(|h| h.ts_ms >= scope.from_ms && h.ts_ms <= scope.to_ms)
                .collect()
        } else {
            Vec::new()
        };
        specs.push(SpecReport {
            summary: Summary::of(&cells),
            components: group_by(&cells, |c| &c.component),
            component_types: group_by(&cells, |c| &c.component_type),
            coverage: coverage(&spec, scope, &cells, &agents),
            history,
            spec: name,
            version,
            cells,
        });
    }
    let step_s = bucket_seconds(scope, options.buckets);
    let mut timeline: BTreeMap<u64, Bucket> = BTreeMap::new();
    let rows = if options.timeline { query::timeline(client, scope, step_s).await? } else { Vec::new() };
    for (start_s, severity, passes, failures, errors) in rows {
        if scope.admits_severity(&severity) {
            let bucket = timeline.entry(start_s).or_insert_with(|| Bucket { start_ms: start_s * 1000, ..Bucket::default() });
            bucket.passes += passes;
            bucket.failures += failures;
            bucket.errors += errors;
        }
    }
    let alarms = query::alarms(client, scope, options.max_alarms).await?;
    let in_scope: BTreeSet<&str> = specs.iter().map(|s| s.spec.as_str()).collect();
    let agents =
        agents.iter().filter(|a| a.specs.iter().any(|s| in_scope.contains(s.spec.as_str()))).cloned().collect();
    Ok(Report {
        from_ms: scope.from_ms,
        to_ms: scope.to_ms,
        scope: ScopeEcho { spec: scope.spec.clone(), component: scope.component.clone(), severities: scope.severities.clone() },
        summary: Summary::of(specs.iter().flat_map(|s| &s.cells)),
        specs,
        agents,
        alarms,
        bucket_ms: step_s * 1000,
        timeline: timeline.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(range_ms: u64) -> Scope {
        Scope { spec: None, component: None, from_ms: 0, to_ms: range_ms, severities: vec![] }
    }

    #[test]
    fn buckets_are_whole_minutes() {
        assert_eq!(bucket_seconds(&scope(10_000), 120), 60);
        assert_eq!(bucket_seconds(&scope(3_600_000), 120), 60);
        assert_eq!(bucket_seconds(&scope(86_400_000), 120), 720);
    }

    #[test]
    fn history_diffs_each_version_against_the_previous() {
        let row = |version, document: &str, deleted| VersionRow {
            version,
            ts_ms: version * 10,
            author: format!("a{version}"),
            comment: String::new(),
            deleted,
            document: document.to_owned(),
        };
        let rows = vec![
            row(1, r#"{"apiVersion":"specaudit/v1","spec":"s","components":{"a":{"params":{"x":1},"requirements":{"r":{}}}}}"#, 0),
            row(2, r#"{"apiVersion":"specaudit/v1","spec":"s","components":{"a":{"params":{"x":2},"requirements":{"r":{"severity":"minor"}}}}}"#, 0),
            row(3, "", 1),
        ];
        let h = history(&rows);
        let kinds: Vec<Vec<(&str, &str)>> =
            h.iter().map(|e| e.changes.iter().map(|c| (c.kind, c.target.as_str())).collect()).collect();
        assert_eq!(
            kinds,
            [
                vec![("params", "a"), ("added", "a/r")],
                vec![("params", "a"), ("changed", "a/r")],
                vec![("params", "a"), ("removed", "a/r")],
            ]
        );
        assert_eq!(h[1].changes[1].fields, ["severity"]);
        assert_eq!(h[1].author, "a2");
        assert!(h[2].deleted);
    }

    #[test]
    fn silence_and_skew() {
        let row = |id: &str, seen: u64, version: u64| query::AgentRow {
            agent_id: id.into(),
            component: "c".into(),
            instance: "i".into(),
            last_seen_ms: seen,
            started_at_ms: 0,
            sdk_version: "1".into(),
            spec_names: vec!["s".into()],
            spec_versions: vec![version],
        };
        let latest = BTreeMap::from([("s".to_owned(), 2)]);
        let options = Options { now_ms: 1_000_000, ..Options::default() };
        let states = agent_states(vec![row("fresh", 990_000, 2), row("old", 100_000, 1)], &latest, &scope(1_000_000), &options);
        assert_eq!((states[0].silent, states[0].stale_specs.len()), (false, 0));
        assert_eq!((states[1].silent, states[1].stale_specs.as_slice()), (true, ["s".to_owned()].as_slice()));
    }
}
