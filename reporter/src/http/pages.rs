//! The web UI's handlers: fetch what a page shows, then render it with [`crate::html`].

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use specaudit_core::spec::Spec;

use super::auth::Identity;
use super::edit::{self, Edit};
use super::{now_ms, within, HttpError, Shared};
use crate::assemble;
use crate::html;
use crate::report::{Report, SpecReport};
use crate::scope::{valid_component, valid_spec_name, Filters, Scope};

fn page(identity: &Identity, title: &str, body: String) -> Response {
    Html(html::layout(title, identity.name(), &body)).into_response()
}

fn scope(app: &Shared, filters: &Filters) -> Result<Scope, HttpError> {
    filters.scope(now_ms(), app.config.report.default_range).map_err(|e| HttpError::from(e).page())
}

/// What a page shows besides the matrix.
#[derive(Debug, Clone, Copy)]
struct Parts {
    timeline: bool,
    history: bool,
}

const ALL: Parts = Parts { timeline: true, history: true };
const MATRIX: Parts = Parts { timeline: false, history: false };

async fn report(app: &Shared, scope: &Scope, parts: Parts) -> Result<Report, HttpError> {
    let options = crate::assemble::Options { timeline: parts.timeline, history: parts.history, ..app.options() };
    within(async { Ok(assemble::report(&app.client, scope, &options).await?) }).await.map_err(HttpError::page)
}

/// The spec's report and its latest document, for the spec, component and requirement pages.
async fn spec_report(app: &Shared, name: &str, filters: &Filters, parts: Parts) -> Result<(Spec, SpecReport, Report, Scope), HttpError> {
    if !valid_spec_name(name) {
        return Err(HttpError::new(StatusCode::NOT_FOUND, format!("{name:?} is not a spec name")).page());
    }
    let mut scope = scope(app, filters)?;
    scope.spec = Some(name.to_owned());
    let mut whole = report(app, &scope, parts).await?;
    let Some(spec_report) = whole.specs.pop() else {
        return Err(HttpError::new(StatusCode::NOT_FOUND, format!("spec {name} has no readable version")).page());
    };
    let latest = within(async { Ok(crate::query::latest_specs(&app.client, Some(name)).await?) }).await.map_err(HttpError::page)?;
    let spec = latest
        .first()
        .and_then(|(_, _, doc)| Spec::from_json(doc).ok())
        .ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, format!("spec {name} has no readable version")).page())?;
    Ok((spec, spec_report, whole, scope))
}

/// GET /
pub async fn overview(
    State(app): State<Shared>,
    Extension(identity): Extension<Identity>,
    Query(filters): Query<Filters>,
) -> Result<Response, HttpError> {
    let report = report(&app, &scope(&app, &filters)?, ALL).await?;
    Ok(page(&identity, "overview", html::overview(&report, &filters)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SpecQuery {
    #[serde(flatten)]
    filters: Filters,
    /// Set after an edit: the version just published.
    published: Option<u64>,
}

/// GET /specs/{spec}: the colour-coded spec.
pub async fn spec(
    State(app): State<Shared>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
    Query(q): Query<SpecQuery>,
) -> Result<Response, HttpError> {
    let (spec, spec_report, whole, _) = spec_report(&app, &name, &q.filters, Parts { timeline: true, history: false }).await?;
    let can_edit = identity.principal().is_some_and(|p| p.may_edit(&spec.owners));
    let notice = q.published.map(|v| {
        if v > spec_report.version {
            format!("version {v} was published; it shows here once the ingester has stored it (reload in a moment)")
        } else {
            format!("version {v} was published")
        }
    });
    let body = html::spec_page(&spec, &spec_report, &whole, &q.filters, can_edit, notice.as_deref());
    Ok(page(&identity, &name, body))
}

/// GET /specs/{spec}/components/{component}: one component subtree.
pub async fn component(
    State(app): State<Shared>,
    Extension(identity): Extension<Identity>,
    Path((name, component)): Path<(String, String)>,
    Query(filters): Query<Filters>,
) -> Result<Response, HttpError> {
    if !valid_component(&component) {
        return Err(HttpError::new(StatusCode::NOT_FOUND, format!("{component:?} is not a component path")).page());
    }
    let filters_here = Filters { component: Some(component.clone()), ..filters.clone() };
    let (_, spec_report, _, scope) = spec_report(&app, &name, &filters_here, MATRIX).await?;
    let limit = app.config.report.recent_failures;
    let failures = within(async { Ok(crate::query::recent_failures(&app.client, &name, None, &scope, limit).await?) })
        .await
        .map_err(HttpError::page)?;
    let body = html::component_page(&name, &component, &spec_report, &failures, &filters);
    Ok(page(&identity, &format!("{name} / {component}"), body))
}

/// GET /specs/{spec}/requirements/{component}/{name}: one requirement.
pub async fn requirement(
    State(app): State<Shared>,
    Extension(identity): Extension<Identity>,
    Path((name, component, requirement)): Path<(String, String, String)>,
    Query(filters): Query<Filters>,
) -> Result<Response, HttpError> {
    let (spec, spec_report, _, scope) = spec_report(&app, &name, &filters, MATRIX).await?;
    let id = format!("{component}/{requirement}");
    if !spec.components.get(&component).is_some_and(|c| c.requirements.contains_key(&requirement)) {
        return Err(HttpError::new(StatusCode::NOT_FOUND, format!("spec {name} has no requirement {id}")).page());
    }
    let cells: Vec<_> = spec_report.cells.into_iter().filter(|c| c.requirement == id).collect();
    let limit = app.config.report.recent_failures;
    let failures = within(async { Ok(crate::query::recent_failures(&app.client, &name, Some(&id), &scope, limit).await?) })
        .await
        .map_err(HttpError::page)?;
    Ok(page(&identity, &id, html::requirement_page(&spec, &id, &cells, &failures, &filters)))
}

/// GET /specs/{spec}/history
pub async fn history(
    State(app): State<Shared>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    let rows = within(async { Ok(crate::query::versions(&app.client, &name).await?) }).await.map_err(HttpError::page)?;
    if rows.is_empty() {
        return Err(HttpError::new(StatusCode::NOT_FOUND, format!("spec {name} has no versions")).page());
    }
    Ok(page(&identity, &format!("{name} history"), html::history_page(&name, &assemble::history(&rows))))
}

/// GET /agents
pub async fn agents(
    State(app): State<Shared>,
    Extension(identity): Extension<Identity>,
    Query(filters): Query<Filters>,
) -> Result<Response, HttpError> {
    let report = report(&app, &scope(&app, &filters)?, MATRIX).await?;
    let latest: BTreeMap<String, u64> = report.specs.iter().map(|s| (s.spec.clone(), s.version)).collect();
    Ok(page(&identity, "agents", html::agents_page(&report.agents, &latest, &filters)))
}

/// GET /alarms
pub async fn alarms(
    State(app): State<Shared>,
    Extension(identity): Extension<Identity>,
    Query(filters): Query<Filters>,
) -> Result<Response, HttpError> {
    let report = report(&app, &scope(&app, &filters)?, MATRIX).await?;
    Ok(page(&identity, "alarms", html::alarms_page(&report, &filters)))
}

async fn edit_page(app: &Shared, identity: &Identity, name: &str, problem: Option<&str>, status: StatusCode) -> Result<Response, HttpError> {
    let current = edit::latest(app, name).await.map_err(HttpError::page)?;
    if let Some(p) = identity.principal() {
        if !p.may_edit(&edit::owners_of(&current.document)) {
            let message = format!("{} ({}) may not change spec {name}: only admins and editors named in its owners may", p.name, p.role.as_str());
            return Err(HttpError::new(StatusCode::FORBIDDEN, message).page());
        }
    }
    let pretty = serde_json::from_str::<serde_json::Value>(&current.document)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(current.document.clone());
    let version = current.version.max(0) as u64;
    let mut response = page(identity, &format!("edit {name}"), html::edit_page(name, version, &pretty, problem));
    *response.status_mut() = status;
    Ok(response)
}

fn may_open_editor(identity: &Identity) -> Result<(), HttpError> {
    match identity.principal() {
        Some(p) if p.role != crate::config::Role::Viewer => Ok(()),
        Some(p) => Err(HttpError::new(StatusCode::FORBIDDEN, format!("{} is a viewer: editing needs the editor or admin role", p.name)).page()),
        None => Err(HttpError::new(StatusCode::FORBIDDEN, "editing needs a token with the editor or admin role (auth.tokens)").page()),
    }
}

/// GET /specs/{spec}/edit
pub async fn edit_form(
    State(app): State<Shared>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    may_open_editor(&identity)?;
    edit_page(&app, &identity, &name, None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
pub struct EditForm {
    mode: String,
    #[serde(default)]
    document: String,
    #[serde(default)]
    patch: String,
    #[serde(default)]
    expect_version: Option<i64>,
    #[serde(default)]
    comment: String,
}

/// POST /specs/{spec}/edit: publishes, then shows the spec with the new version.
pub async fn edit_submit(
    State(app): State<Shared>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
    Form(form): Form<EditForm>,
) -> Result<Response, HttpError> {
    may_open_editor(&identity)?;
    let edit = match form.mode.as_str() {
        "replace" => Edit::Replace(form.document),
        "patch" => Edit::Patch(form.patch),
        other => return Err(HttpError::new(StatusCode::BAD_REQUEST, format!("unknown edit mode {other:?}")).page()),
    };
    match edit::apply(&app, &identity, &name, edit, form.expect_version, &form.comment).await {
        Ok(version) => {
            let to = format!("/specs/{}?published={}", html::url_encode(&name), version.version);
            Ok(Redirect::to(&to).into_response())
        }
        // Show the problem above the forms, with the current version to retry against.
        Err(error) if error.status != StatusCode::FORBIDDEN && error.status != StatusCode::NOT_FOUND => {
            edit_page(&app, &identity, &name, Some(&error.message), error.status).await
        }
        Err(error) => Err(error.page()),
    }
}
