//! `specaudit-reporter`: compliance reports from ClickHouse.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use specaudit_reporter::query::{report, Scope};
use specaudit_reporter::render::{render, Format};
use specaudit_reporter::ReporterConfig;

#[derive(Parser)]
#[command(version, about = "Compliance, coverage and version skew of a system against its specs")]
struct Cli {
    /// TOML config file (see deploy/reporter.toml); SPECAUDIT__SECTION__KEY variables override it.
    #[arg(long, short, global = true, env = "SPECAUDIT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a compliance report.
    Report {
        /// One spec; every spec when left out.
        #[arg(long)]
        spec: Option<String>,
        /// How far back the report looks, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: Duration,
        #[arg(long, value_enum, default_value_t = Format::Markdown)]
        format: Format,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config: ReporterConfig = match specaudit_core::config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("specaudit-reporter: {error}");
            return ExitCode::from(2);
        }
    };
    specaudit_core::telemetry::init_tracing(&config.telemetry);
    match cli.command {
        Command::Report { spec, since, format } => {
            let now = specaudit_core::record::now_ms() as u64;
            let scope = Scope { spec, from_ms: now.saturating_sub(since.as_millis() as u64), to_ms: now };
            let client = specaudit_core::clickhouse::client(&config.clickhouse);
            match report(&client, &scope).await {
                Ok(report) => {
                    print!("{}", render(&report, format));
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("specaudit-reporter: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
