//! The JSON and CSV API, and spec edits (`PUT` a document, `PATCH` with a JSON Patch).

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::auth::Identity;
use super::edit::{self, Edit};
use super::{now_ms, typed, within, HttpError, Shared};
use crate::assemble;
use crate::render::{csv_field, render, Format};
use crate::report::Report;
use crate::scope::Filters;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReportQuery {
    #[serde(flatten)]
    filters: Filters,
    format: Option<Format>,
}

async fn make_report(app: &Shared, filters: &Filters) -> Result<Report, HttpError> {
    let scope = filters.scope(now_ms(), app.config.report.default_range)?;
    let options = app.options();
    make_report_with(app, scope, options).await
}

/// Agents and alarms need neither the timeline nor the history.
async fn make_list(app: &Shared, filters: &Filters) -> Result<Report, HttpError> {
    let scope = filters.scope(now_ms(), app.config.report.default_range)?;
    let options = assemble::Options { timeline: false, history: false, ..app.options() };
    make_report_with(app, scope, options).await
}

async fn make_report_with(app: &Shared, scope: crate::scope::Scope, options: assemble::Options) -> Result<Report, HttpError> {
    within(async { Ok(assemble::report(&app.client, &scope, &options).await?) }).await
}

fn answer(report: &Report, format: Format) -> Response {
    let content_type = match format {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Markdown => "text/markdown; charset=utf-8",
        Format::Html => "text/html; charset=utf-8",
    };
    typed(content_type, render(report, format))
}

/// GET /api/v1/report?spec&component&since&from&to&severity&format=json|csv|markdown|html
pub async fn report(State(app): State<Shared>, Query(q): Query<ReportQuery>) -> Result<Response, HttpError> {
    let report = make_report(&app, &q.filters).await?;
    Ok(answer(&report, q.format.unwrap_or(Format::Json)))
}

/// GET /api/v1/report.csv
pub async fn report_csv(State(app): State<Shared>, Query(filters): Query<Filters>) -> Result<Response, HttpError> {
    Ok(answer(&make_report(&app, &filters).await?, Format::Csv))
}

/// GET /api/v1/agents
pub async fn agents(State(app): State<Shared>, Query(filters): Query<Filters>) -> Result<Response, HttpError> {
    Ok(Json(make_list(&app, &filters).await?.agents).into_response())
}

/// The agents' CSV columns; new columns are only ever appended.
pub const AGENTS_CSV_HEADER: &str = "agent_id,component,instance,specs,last_seen_ms,started_at_ms,sdk_version,silent,stale_specs\n";

/// GET /api/v1/agents.csv
pub async fn agents_csv(State(app): State<Shared>, Query(filters): Query<Filters>) -> Result<Response, HttpError> {
    let report = make_list(&app, &filters).await?;
    let mut out = String::from(AGENTS_CSV_HEADER);
    for a in &report.agents {
        let specs: Vec<String> = a.specs.iter().map(|s| format!("{}@{}", s.spec, s.version)).collect();
        let fields = [
            a.agent_id.clone(),
            a.component.clone(),
            a.instance.clone(),
            specs.join(" "),
            a.last_seen_ms.to_string(),
            a.started_at_ms.to_string(),
            a.sdk_version.clone(),
            a.silent.to_string(),
            a.stale_specs.join(" "),
        ];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    Ok(typed("text/csv; charset=utf-8", out))
}

/// GET /api/v1/alarms
pub async fn alarms(State(app): State<Shared>, Query(filters): Query<Filters>) -> Result<Response, HttpError> {
    Ok(Json(make_list(&app, &filters).await?.alarms).into_response())
}

/// The alarms' CSV columns; new columns are only ever appended.
pub const ALARMS_CSV_HEADER: &str = "ts_ms,fingerprint,rule,state,severity,spec,component,requirement,summary,value\n";

/// GET /api/v1/alarms.csv
pub async fn alarms_csv(State(app): State<Shared>, Query(filters): Query<Filters>) -> Result<Response, HttpError> {
    let report = make_list(&app, &filters).await?;
    let mut out = String::from(ALARMS_CSV_HEADER);
    for a in &report.alarms {
        let fields = [
            a.ts_ms.to_string(),
            a.fingerprint.clone(),
            a.rule.clone(),
            a.state.clone(),
            a.severity.clone(),
            a.spec.clone(),
            a.component.clone(),
            a.requirement.clone(),
            a.summary.clone(),
            a.value.to_string(),
        ];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    Ok(typed("text/csv; charset=utf-8", out))
}

/// GET /api/v1/specs/{spec}/history: every version with requirement-level changes.
pub async fn history(State(app): State<Shared>, Path(spec): Path<String>) -> Result<Response, HttpError> {
    let rows = within(async { Ok(crate::query::versions(&app.client, &spec).await?) }).await?;
    if rows.is_empty() {
        return Err(HttpError::new(StatusCode::NOT_FOUND, format!("spec {spec} has no versions in clickhouse")));
    }
    Ok(Json(assemble::history(&rows)).into_response())
}

/// GET /api/v1/specs/{spec}: the latest version as published (from Kafka), for editing.
pub async fn spec(State(app): State<Shared>, Path(spec): Path<String>) -> Result<Response, HttpError> {
    let version = edit::latest(&app, &spec).await?;
    let document: serde_json::Value = serde_json::from_str(&version.document).unwrap_or(serde_json::Value::Null);
    Ok(Json(serde_json::json!({
        "spec": version.spec, "version": version.version, "author": version.author, "ts_ms": version.ts,
        "comment": version.comment, "sha256": version.sha256, "document": document,
    }))
    .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EditQuery {
    expect_version: Option<i64>,
    comment: Option<String>,
}

/// The expected version from `?expect_version=N` or an `If-Match: "N"` header.
fn expected(q: &EditQuery, headers: &HeaderMap) -> Result<Option<i64>, HttpError> {
    if q.expect_version.is_some() {
        return Ok(q.expect_version);
    }
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().trim_matches('"').parse().ok())
            .map(Some)
            .ok_or_else(|| HttpError::new(StatusCode::BAD_REQUEST, "If-Match must hold the expected version number, e.g. \"3\"")),
    }
}

fn published(version: specaudit_core::record::SpecVersion) -> Response {
    (
        StatusCode::OK,
        Json(serde_json::json!({"spec": version.spec, "version": version.version, "author": version.author, "sha256": version.sha256})),
    )
        .into_response()
}

/// PUT /api/v1/specs/{spec}: replace the whole spec (YAML or JSON body).
pub async fn replace(
    State(app): State<Shared>,
    Extension(identity): Extension<Identity>,
    Path(spec): Path<String>,
    Query(q): Query<EditQuery>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, HttpError> {
    let expect = expected(&q, &headers)?;
    let comment = q.comment.clone().unwrap_or_default();
    Ok(published(edit::apply(&app, &identity, &spec, Edit::Replace(body), expect, &comment).await?))
}

/// PATCH /api/v1/specs/{spec}: apply an RFC 6902 JSON Patch to the current version.
pub async fn patch(
    State(app): State<Shared>,
    Extension(identity): Extension<Identity>,
    Path(spec): Path<String>,
    Query(q): Query<EditQuery>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, HttpError> {
    let expect = expected(&q, &headers)?;
    let comment = q.comment.clone().unwrap_or_default();
    Ok(published(edit::apply(&app, &identity, &spec, Edit::Patch(body), expect, &comment).await?))
}
