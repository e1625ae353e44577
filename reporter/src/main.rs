//! `specaudit-reporter`: compliance reports from ClickHouse on the command line (`report`)
//! or as a web UI and API (`serve`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use specaudit_reporter::assemble::{report, Options};
use specaudit_reporter::render::{render, Format};
use specaudit_reporter::scope::Filters;
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
        /// A component subtree, e.g. `frontend` (itself and every path below it).
        #[arg(long)]
        component: Option<String>,
        /// How far back the report looks, e.g. 15m, 1h, 7d (default: report.default_range).
        #[arg(long)]
        since: Option<String>,
        /// Start of the range: RFC 3339 time or milliseconds since the epoch; wins over --since.
        #[arg(long)]
        from: Option<String>,
        /// End of the range (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Only these severities, comma separated: critical,major,minor,info.
        #[arg(long)]
        severity: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Markdown)]
        format: Format,
    },
    /// Serve the web UI, the JSON/CSV API and spec edits on server.listen.
    Serve,
}

/// Writes `text` to stdout; unlike `print!`, returns the error instead of panicking.
fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config: ReporterConfig = match specaudit_core::config::load_or_exit_code("specaudit-reporter", cli.config.as_deref()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    specaudit_core::telemetry::init_tracing(&config.telemetry);
    let serving = matches!(cli.command, Command::Serve);
    if let Err(problem) = config.validate(serving) {
        eprintln!("specaudit-reporter: invalid configuration: {problem}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Report { spec, component, since, from, to, severity, format } => {
            let filters = Filters { spec, component, since, from, to, severity };
            let now = specaudit_core::record::now_ms().max(0) as u64;
            let scope = match filters.scope(now, config.report.default_range) {
                Ok(scope) => scope,
                Err(error) => {
                    eprintln!("specaudit-reporter: {error}");
                    return ExitCode::from(2);
                }
            };
            let client = specaudit_reporter::query::client(&config.clickhouse);
            let options = Options { silent_after: config.report.silent_after, buckets: config.report.buckets, ..Options::default() };
            match report(&client, &scope, &options).await {
                Ok(report) => match write_stdout(&render(&report, format)) {
                    Ok(()) => ExitCode::SUCCESS,
                    // A reader that has seen enough (`| head`) is a normal end.
                    Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                    Err(error) => {
                        eprintln!("specaudit-reporter: cannot write the report: {error}");
                        ExitCode::FAILURE
                    }
                },
                Err(error) => {
                    eprintln!("specaudit-reporter: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve => {
            let shutdown = specaudit_core::telemetry::shutdown_on_signal();
            let health = specaudit_core::telemetry::Health::default();
            health.set(true);
            let telemetry = match specaudit_core::telemetry::Endpoint::start(&config.telemetry, health, shutdown.clone()).await {
                Ok(telemetry) => telemetry,
                Err(error) => {
                    eprintln!("specaudit-reporter: cannot serve /metrics and /health: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let bound = match specaudit_reporter::http::bind(config).await {
                Ok(bound) => bound,
                Err(error) => {
                    eprintln!("specaudit-reporter: {error}");
                    return ExitCode::FAILURE;
                }
            };
            eprintln!("specaudit-reporter: serving on http://{}/", bound.local_addr());
            let result = bound.run(shutdown.clone()).await;
            shutdown.cancel();
            telemetry.join().await;
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("specaudit-reporter: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
