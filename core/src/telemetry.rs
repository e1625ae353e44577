//! Logs with `tracing`, Prometheus metrics, and the `/metrics` + `/health` endpoint every
//! service serves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetryConfig};

/// Sets up logging to stderr; `RUST_LOG` wins over the configured filter.
pub fn init_tracing(config: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests, embedded agents) keeps the first subscriber.
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Whether the service is healthy, as `/health` reports it.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    pub fn set(&self, healthy: bool) {
        self.0.store(healthy, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Installs the Prometheus recorder for the `metrics` macros (once per process).
pub fn install_metrics() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok()).clone()
}

/// Serves `/metrics` and `/health` on `listener` until `shutdown`.
async fn serve(listener: tokio::net::TcpListener, health: Health, shutdown: CancellationToken) -> std::io::Result<()> {
    let handle = install_metrics();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = handle.as_ref().map(PrometheusHandle::render).unwrap_or_default();
                async move { text }
            }),
        )
        .route(
            "/health",
            get(move || {
                let healthy = health.get();
                async move {
                    if healthy {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
                    }
                }
            }),
        );
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

/// The `/metrics` and `/health` endpoint, running in the background.
#[derive(Debug)]
pub struct Endpoint(tokio::task::JoinHandle<std::io::Result<()>>);

impl Endpoint {
    /// Installs the metrics recorder and serves `/metrics` and `/health` on
    /// `telemetry.listen` (if set) until `shutdown`. The address is bound here, so one
    /// that cannot be (in use, not on this host) stops the service at start.
    pub async fn start(config: &TelemetryConfig, health: Health, shutdown: CancellationToken) -> std::io::Result<Endpoint> {
        install_metrics();
        let listener = match config.listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| std::io::Error::new(e.kind(), format!("telemetry.listen {addr}: {e}")))?;
                tracing::info!(%addr, "serving /metrics and /health");
                Some(listener)
            }
            None => None,
        };
        Ok(Endpoint(tokio::spawn(async move {
            match listener {
                Some(listener) => serve(listener, health, shutdown).await,
                None => Ok(()),
            }
        })))
    }

    /// Waits until the endpoint has stopped (after its shutdown token), logging a failure.
    pub async fn join(self) {
        if let Ok(Err(error)) = self.0.await {
            tracing::warn!(%error, "metrics endpoint failed");
        }
    }
}

/// A token cancelled on SIGTERM or Ctrl-C: the signal to stop intake, drain and exit.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    cancel.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}
