//! `specaudit-ingester`: Kafka → ClickHouse, exactly once.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use specaudit_ingester::IngesterConfig;

// Rows are built on the intake thread and freed by the flush task on another: glibc's
// arenas fragment and consolidate under that pattern, mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "Writes every specaudit record from Kafka into ClickHouse, exactly once")]
struct Cli {
    /// TOML config file (see deploy/ingester.toml); SPECAUDIT__SECTION__KEY variables override it.
    #[arg(long, short, global = true, env = "SPECAUDIT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume and ingest until SIGTERM (the default).
    Run,
    /// Apply the ClickHouse migrations and exit; a no-op when they are applied.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config: IngesterConfig = match specaudit_core::config::load_or_exit_code("specaudit-ingester", cli.config.as_deref()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    specaudit_core::telemetry::init_tracing(&config.telemetry);
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Migrate => specaudit_ingester::migrate::migrate(&config.clickhouse)
            .await
            .map(|ran| tracing::info!(applied = ran, "migrations up to date")),
        Command::Run => specaudit_ingester::run(config, specaudit_core::telemetry::shutdown_on_signal()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("specaudit-ingester: {error:#}");
            ExitCode::FAILURE
        }
    }
}
