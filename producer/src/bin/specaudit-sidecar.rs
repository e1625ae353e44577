//! `specaudit-sidecar`: the agent for services in any language, over HTTP on 127.0.0.1 or
//! JSON lines on standard input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use specaudit_producer::sidecar::{router, serve_lines, Sidecar, SidecarConfig};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "specaudit agent for services in any language: HTTP on 127.0.0.1 or JSON lines on stdin")]
struct Cli {
    /// TOML config file (see deploy/sidecar.toml); SPECAUDIT__SECTION__KEY variables override it.
    #[arg(long, short, global = true, env = "SPECAUDIT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Answer JSON requests line by line from standard input on standard output.
    Lines,
}

/// How long a shutdown waits for pending assertions to reach Kafka.
const FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// Serves JSON lines from standard input until it ends or `shutdown` is cancelled (SIGTERM,
/// SIGINT). The reader is a plain thread, not a blocking task: a read of stdin cannot be
/// interrupted, and the runtime would wait for a blocking task at exit.
async fn serve_stdin(sidecar: Arc<Sidecar>, shutdown: &CancellationToken) -> std::io::Result<()> {
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("specaudit-lines".into()).spawn(move || {
        let _ = done.send(serve_lines(&sidecar, std::io::stdin().lock(), std::io::stdout().lock()));
    })?;
    tokio::select! {
        result = finished => result.unwrap_or_else(|_| Err(std::io::Error::other("the JSON-lines reader stopped unexpectedly"))),
        () = shutdown.cancelled() => Ok(()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config: SidecarConfig = match specaudit_core::config::load_or_exit_code("specaudit-sidecar", cli.config.as_deref()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    specaudit_core::telemetry::init_tracing(&config.telemetry);
    specaudit_core::telemetry::install_metrics();
    let listen = config.sidecar.listen;
    let max_body = config.sidecar.max_body_bytes;
    let sidecar = Sidecar::new(config);
    // Both modes stop intake on SIGTERM/SIGINT and then flush every agent below.
    let shutdown = specaudit_core::telemetry::shutdown_on_signal();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Lines => serve_stdin(sidecar.clone(), &shutdown).await,
        Command::Serve => match tokio::net::TcpListener::bind(listen).await {
            Ok(listener) => {
                tracing::info!(%listen, "serving the sidecar API");
                axum::serve(listener, router(sidecar.clone(), max_body))
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await
            }
            Err(error) => Err(std::io::Error::new(error.kind(), format!("cannot listen on {listen}: {error}"))),
        },
    };
    let flushing = sidecar.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.shutdown(FLUSH_DEADLINE)).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("specaudit-sidecar: {error}");
            ExitCode::FAILURE
        }
    }
}
