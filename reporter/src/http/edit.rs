//! Spec edits from the UI and the API: who may make them, and publishing through the
//! producer's `publish` (the code `specctl apply` and `specctl patch` use) with the
//! principal as author. Ownership is judged on the latest version from the specs topic;
//! `publish` checks the expected version inside its fenced section, so an edit made
//! against a stale page gets a conflict, and applies a JSON Patch there.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
use specaudit_core::record::SpecVersion;
use specaudit_core::spec::Spec;
use specaudit_producer::catalog::load_latest;
use specaudit_producer::publish::{publish, Change, Meta, PublishError};

use super::auth::Identity;
use super::{App, HttpError};

/// What the editor sent.
#[derive(Debug, Clone)]
pub enum Edit {
    /// A whole document, YAML or JSON.
    Replace(String),
    /// An RFC 6902 JSON Patch, as JSON text, against the current version.
    Patch(String),
}

/// How long reading the current version from Kafka may take.
const CATALOG_TIMEOUT: Duration = Duration::from_secs(15);

async fn current(app: &App, spec: &str) -> Result<Option<SpecVersion>, HttpError> {
    let kafka = app.config.kafka.clone();
    let latest = tokio::task::spawn_blocking(move || load_latest(&kafka, CATALOG_TIMEOUT).map_err(|e| e.to_string()))
        .await
        .map_err(|_| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "reading the spec catalog was interrupted"))?
        .map_err(|e| HttpError::new(StatusCode::BAD_GATEWAY, e))?;
    Ok(latest.get(spec).filter(|v| !v.deleted).cloned())
}

/// The `owners` of a stored spec document.
pub(crate) fn owners_of(document: &str) -> Vec<String> {
    serde_json::from_str::<Value>(document)
        .ok()
        .and_then(|v| v.get("owners").and_then(|o| serde_json::from_value(o.clone()).ok()))
        .unwrap_or_default()
}

fn invalid(error: impl std::fmt::Display) -> HttpError {
    HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("the spec is not valid, nothing was published:\n{error}"))
}

/// Checks, applies and publishes `edit` to `spec`; returns the version written.
pub async fn apply(
    app: &App,
    identity: &Identity,
    spec: &str,
    edit: Edit,
    expect_version: Option<i64>,
    comment: &str,
) -> Result<SpecVersion, HttpError> {
    let Some(principal) = identity.principal() else {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "spec edits need a token with the editor or admin role, and this server has none configured (auth.tokens)",
        ));
    };
    if !crate::scope::valid_spec_name(spec) {
        return Err(HttpError::new(StatusCode::BAD_REQUEST, format!("{spec:?} is not a spec name")));
    }
    let current = current(app, spec).await?;
    let forbidden = || {
        HttpError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} ({}) may not change spec {spec}: only admins and editors named in its owners may",
                principal.name,
                principal.role.as_str()
            ),
        )
    };
    // Owners of the version being changed decide; for a new spec, the new document's.
    if let Some(current) = &current {
        if !principal.may_edit(&owners_of(&current.document)) {
            return Err(forbidden());
        }
    }
    let change = match edit {
        Edit::Replace(text) => {
            let next = Spec::parse(&text).map_err(invalid)?;
            if next.spec != spec {
                return Err(HttpError::new(
                    StatusCode::BAD_REQUEST,
                    format!("the document names spec {:?} but was sent for {spec:?}; renaming is a new spec", next.spec),
                ));
            }
            if current.is_none() && !principal.may_edit(&next.owners) {
                return Err(forbidden());
            }
            Change::Replace(next)
        }
        Edit::Patch(text) => {
            if current.is_none() {
                return Err(HttpError::new(StatusCode::NOT_FOUND, format!("spec {spec} does not exist: a patch needs a version to apply to")));
            }
            let patch: json_patch::Patch = serde_json::from_str(&text).map_err(|e| {
                HttpError::new(StatusCode::BAD_REQUEST, format!("the body is not a JSON Patch (RFC 6902) array: {e}"))
            })?;
            // Applied by the publisher to the version it fences, then validated in full.
            Change::Edit { spec: spec.to_owned(), edit: specaudit_producer::edit::Edit::Patch(patch) }
        }
    };
    // Without an expected version the change was made against the one just read.
    let expect_version = expect_version.or(current.as_ref().map(|c| c.version));
    let meta = Meta {
        author: principal.name.clone(),
        comment: if comment.trim().is_empty() { "edited in specaudit-reporter".to_owned() } else { comment.trim().to_owned() },
        expect_version,
    };
    publish(&app.config.kafka, change, meta).await.map_err(|error| match error {
        PublishError::Conflict { spec, expected, current } => conflict(&spec, expected, current),
        PublishError::Invalid { .. } | PublishError::Edit { .. } => {
            HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("nothing was published: {}", chain(&error)))
        }
        PublishError::Contended { .. } => HttpError::new(StatusCode::CONFLICT, error.to_string()),
        PublishError::NotFound { spec } => HttpError::new(StatusCode::NOT_FOUND, format!("spec {spec} does not exist")),
        PublishError::TooLarge { .. } => HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string()),
        other => {
            tracing::warn!(error = %other, "publishing a spec edit failed");
            HttpError::new(StatusCode::BAD_GATEWAY, format!("cannot publish: {other}"))
        }
    })
}

/// An error with its sources, for a body that says everything the publisher knew.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

fn conflict(spec: &str, expected: i64, current: i64) -> HttpError {
    HttpError::new(
        StatusCode::CONFLICT,
        format!(
            "version conflict on spec {spec}: the change was made against version {expected}, but the current version is {current}; \
             reload, reapply the change and publish again"
        ),
    )
}

/// The latest version as JSON for the API, or 404.
pub async fn latest(app: &App, spec: &str) -> Result<SpecVersion, HttpError> {
    current(app, spec).await?.ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, format!("spec {spec} does not exist")))
}
