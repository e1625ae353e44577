//! The sidecar's HTTP API.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{parse_request, RequestError, Sidecar};
use crate::agent::AgentError;

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let status = match &self {
            RequestError::BadJson(_)
            | RequestError::NotObject(_)
            | RequestError::FactsNotObject(_)
            | RequestError::BadComponent(_) => StatusCode::BAD_REQUEST,
            RequestError::Agent(AgentError::UnknownRequirement(_)) => StatusCode::NOT_FOUND,
            RequestError::Agent(AgentError::BadComponent(_)) => StatusCode::BAD_REQUEST,
            RequestError::Agent(_) => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            // The caller names more components than the sidecar is set to serve.
            RequestError::TooManyComponents { .. } => StatusCode::TOO_MANY_REQUESTS,
            RequestError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(serde_json::json!({"error": self.to_string()}))).into_response()
    }
}

/// Runs blocking agent work (a first request starts the component's agent) off the
/// async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RequestError> + Send + 'static,
) -> Result<T, RequestError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|error| Err(RequestError::Internal(error.to_string())))
}

async fn check(State(sidecar): State<Arc<Sidecar>>, body: Bytes) -> Result<Response, RequestError> {
    let request: super::CheckRequest = parse_request(&body)?;
    let results = blocking(move || sidecar.check(&request)).await?;
    Ok(Json(serde_json::json!({"results": results})).into_response())
}

async fn assert(State(sidecar): State<Arc<Sidecar>>, body: Bytes) -> Result<Response, RequestError> {
    let request: super::AssertRequest = parse_request(&body)?;
    let results = blocking(move || sidecar.assert(&request)).await?;
    Ok(Json(serde_json::json!({"results": results})).into_response())
}

#[derive(Debug, Deserialize)]
struct ComponentQuery {
    component: String,
}

async fn requirements(State(sidecar): State<Arc<Sidecar>>, Query(query): Query<ComponentQuery>) -> Result<Response, RequestError> {
    let list = blocking(move || sidecar.requirements(&query.component)).await?;
    let list: Vec<_> = list.into_iter().map(|(spec, requirement)| serde_json::json!({"spec": spec, "requirement": requirement})).collect();
    Ok(Json(serde_json::json!({"requirements": list})).into_response())
}

/// The API: `POST /v1/check`, `POST /v1/assert`, `GET /v1/requirements?component=…`.
pub fn router(sidecar: Arc<Sidecar>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/check", post(check))
        .route("/v1/assert", post(assert))
        .route("/v1/requirements", get(requirements))
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|| async { specaudit_core::telemetry::install_metrics().map(|h| h.render()).unwrap_or_default() }),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(sidecar)
}
