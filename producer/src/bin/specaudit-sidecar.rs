//! `specaudit-sidecar`: the agent for services in any language, over HTTP on 127.0.0.1 or
//! JSON lines on standard input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use specaudit_producer::sidecar::{router, serve_lines, Sidecar, SidecarConfig};

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
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Lines => {
            let lines = sidecar.clone();
            tokio::task::spawn_blocking(move || serve_lines(&lines, std::io::stdin().lock(), std::io::stdout().lock()))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        }
        Command::Serve => {
            let shutdown = specaudit_core::telemetry::shutdown_on_signal();
            match tokio::net::TcpListener::bind(listen).await {
                Ok(listener) => {
                    tracing::info!(%listen, "serving the sidecar API");
                    axum::serve(listener, router(sidecar.clone(), max_body))
                        .with_graceful_shutdown(shutdown.cancelled_owned())
                        .await
                }
                Err(error) => Err(std::io::Error::new(error.kind(), format!("cannot listen on {listen}: {error}"))),
            }
        }
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
