//! `specaudit-alarmer`: threshold windows on the live stream → webhooks and Alertmanager.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use specaudit_alarmer::AlarmerConfig;

#[derive(Parser)]
#[command(version, about = "Raises alarms on the live assertion stream and notifies webhooks and Alertmanager")]
struct Cli {
    /// TOML config file (see deploy/alarmer.toml); SPECAUDIT__SECTION__KEY variables override it.
    #[arg(long, short, env = "SPECAUDIT_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config: AlarmerConfig = match specaudit_core::config::load_or_exit_code("specaudit-alarmer", cli.config.as_deref()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // Rules, routes, receivers and waivers are checked before anything starts.
    if let Err(error) = config.plan() {
        eprintln!("specaudit-alarmer: invalid configuration: {error}");
        return ExitCode::from(2);
    }
    specaudit_core::telemetry::init_tracing(&config.telemetry);
    match specaudit_alarmer::run(config, specaudit_core::telemetry::shutdown_on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("specaudit-alarmer: {error:#}");
            ExitCode::FAILURE
        }
    }
}
