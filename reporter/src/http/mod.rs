//! The web server: the UI ([`pages`]), the JSON/CSV API and spec edits ([`api`], [`edit`]),
//! behind bearer-token access control ([`auth`]). `/health` and `/metrics` are open.
//!
//! Every report page and endpoint takes the filters `spec`, `component` (a subtree),
//! `since` (e.g. `1h`) or `from`/`to` (RFC 3339 or epoch ms), and `severity` (a comma list).
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | overview: compliance per spec and component type, chart, coverage |
//! | `GET /specs/{spec}` | the spec for people, every requirement coloured by its status |
//! | `GET /specs/{spec}/components/{component}` | a component subtree, its recent failures |
//! | `GET /specs/{spec}/requirements/{component}/{name}` | one requirement, its recent failures |
//! | `GET /specs/{spec}/history` | versions, authors, requirement-level changes |
//! | `GET, POST /specs/{spec}/edit` | JSON Patch or full replace (editors of the spec, admins) |
//! | `GET /agents`, `GET /alarms` | agents (version in use, last seen), alarm transitions and waivers |
//! | `GET, POST /login`, `POST /logout` | the token once, then an HttpOnly SameSite=Strict cookie |
//! | `GET /api/v1/report[.csv]` | the report; `?format=json\|csv\|markdown\|html` |
//! | `GET /api/v1/agents[.csv]`, `GET /api/v1/alarms[.csv]` | the same lists as data |
//! | `GET /api/v1/specs/{spec}` | the latest version as published |
//! | `GET /api/v1/specs/{spec}/history` | every version with its changes |
//! | `PUT /api/v1/specs/{spec}` | full replace, YAML or JSON body; `?expect_version=N` or `If-Match: "N"` |
//! | `PATCH /api/v1/specs/{spec}` | RFC 6902 JSON Patch body; `?expect_version=N` or `If-Match`, `?comment=` |

pub mod api;
pub mod auth;
pub mod edit;
pub mod pages;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::assemble::Options;
use crate::config::{ConfigProblem, ReporterConfig};

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    pub config: ReporterConfig,
    pub client: clickhouse::Client,
    pub auth: auth::Auth,
}

impl App {
    /// Report options for a request made now.
    pub fn options(&self) -> Options {
        Options {
            silent_after: self.config.report.silent_after,
            buckets: self.config.report.buckets,
            ..Options::default()
        }
    }
}

pub type Shared = Arc<App>;

/// An error answer: JSON for the API, an HTML page for the UI, always a sentence saying
/// what to do.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
    pub html: bool,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError { status, message: message.into(), html: false }
    }

    pub fn page(mut self) -> HttpError {
        self.html = true;
        self
    }
}

impl From<crate::assemble::ReportError> for HttpError {
    fn from(error: crate::assemble::ReportError) -> HttpError {
        match error {
            crate::assemble::ReportError::UnknownSpec(_) => HttpError::new(StatusCode::NOT_FOUND, error.to_string()),
            crate::assemble::ReportError::Query(e) => {
                tracing::warn!(error = %e, "report query failed");
                HttpError::new(StatusCode::BAD_GATEWAY, e.to_string())
            }
        }
    }
}

impl From<crate::query::QueryError> for HttpError {
    fn from(error: crate::query::QueryError) -> HttpError {
        crate::assemble::ReportError::Query(error).into()
    }
}

impl From<crate::scope::ScopeError> for HttpError {
    fn from(error: crate::scope::ScopeError) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, error.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = if self.html {
            let title = self.status.canonical_reason().unwrap_or("error");
            let body = format!("<h1>{}</h1><p class=\"problem\" id=\"problem\">{}</p>", crate::html::esc(title), crate::html::esc(&self.message));
            // Only a page refused for want of a login offers one: the error does not know
            // who is asking, and a signed-in user must not be told to log in.
            let page = if self.status == StatusCode::UNAUTHORIZED {
                crate::html::layout(title, None, &body)
            } else {
                crate::html::layout_plain(title, &body)
            };
            Html(page).into_response()
        } else {
            axum::Json(serde_json::json!({"error": self.message, "status": self.status.as_u16()})).into_response()
        };
        *response.status_mut() = self.status;
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"specaudit\""));
        }
        response
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigProblem),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the web server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The routes, with access control.
pub fn router(app: Shared) -> Router {
    let metrics = crate::http::metrics_handle();
    Router::new()
        .route("/", get(pages::overview))
        .route("/specs/{spec}", get(pages::spec))
        .route("/specs/{spec}/components/{component}", get(pages::component))
        .route("/specs/{spec}/requirements/{component}/{name}", get(pages::requirement))
        .route("/specs/{spec}/history", get(pages::history))
        .route("/specs/{spec}/edit", get(pages::edit_form).post(pages::edit_submit))
        .route("/agents", get(pages::agents))
        .route("/alarms", get(pages::alarms))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/api/v1/report", get(api::report))
        .route("/api/v1/report.csv", get(api::report_csv))
        .route("/api/v1/agents", get(api::agents))
        .route("/api/v1/agents.csv", get(api::agents_csv))
        .route("/api/v1/alarms", get(api::alarms))
        .route("/api/v1/alarms.csv", get(api::alarms_csv))
        .route("/api/v1/specs/{spec}", get(api::spec).put(api::replace).patch(api::patch))
        .route("/api/v1/specs/{spec}/history", get(api::history))
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let text = metrics.as_ref().map(|h| h.render()).unwrap_or_default();
                async move { text }
            }),
        )
        .layer(middleware::from_fn_with_state(app.clone(), auth::authenticate))
        .layer(middleware::from_fn(observe))
        .with_state(app)
}

fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    specaudit_core::telemetry::install_metrics()
}

/// Counts requests by status and times them.
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("specaudit_reporter_http_requests_total", "status" => status).increment(1);
    metrics::histogram!("specaudit_reporter_http_request_seconds").record(started.elapsed().as_secs_f64());
    response
}

/// A server bound to its address, not yet serving.
#[derive(Debug)]
pub struct Bound {
    listener: tokio::net::TcpListener,
    app: Shared,
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.app.config.server.listen)
    }

    /// Serves until `shutdown`, then lets requests in flight finish.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let addr = self.local_addr();
        tracing::info!(%addr, auth = self.app.auth.enabled(), "serving the web UI and API");
        axum::serve(self.listener, router(self.app))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(ServeError::Serve)
    }
}

/// Validates `config` and binds `server.listen`; refuses a non-loopback address without tokens.
pub async fn bind(config: ReporterConfig) -> Result<Bound, ServeError> {
    config.validate(true)?;
    let addr = config.server.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let client = crate::query::client(&config.clickhouse);
    let auth = auth::Auth::from_config(&config.auth);
    Ok(Bound { listener, app: Arc::new(App { config, client, auth }) })
}

/// How long ClickHouse may take for one page before the request fails; also its
/// `max_execution_time` per statement ([`crate::query::client`]).
pub const QUERY_BUDGET: Duration = Duration::from_secs(30);

/// Runs `future` within [`QUERY_BUDGET`].
pub async fn within<T>(future: impl std::future::Future<Output = Result<T, HttpError>>) -> Result<T, HttpError> {
    tokio::time::timeout(QUERY_BUDGET, future).await.unwrap_or_else(|_| {
        Err(HttpError::new(StatusCode::GATEWAY_TIMEOUT, "clickhouse did not answer within 30 s; narrow the time range or the scope"))
    })
}

pub(crate) fn now_ms() -> u64 {
    specaudit_core::record::now_ms().max(0) as u64
}

/// Answers with `body` as the given content type.
pub(crate) fn typed(content_type: &'static str, body: String) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
