//! `specctl`: validate, publish and read specs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use specaudit_core::config::KafkaConfig;
use specaudit_core::spec::Spec;
use specaudit_producer::catalog::load_latest;
use specaudit_producer::publish::{publish, Change, Meta, PublishError};

/// Exit codes beyond 0 (success), 1 (failure) and 2 (usage).
const EXIT_INVALID: u8 = 3;
const EXIT_CONFLICT: u8 = 4;
const EXIT_NOT_FOUND: u8 = 5;

#[derive(Parser)]
#[command(version, about = "Validate, publish and read specaudit specs")]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, global = true, env = "SPECAUDIT_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Prefix of the specaudit topics.
    #[arg(long, global = true, env = "SPECAUDIT_TOPIC_PREFIX", default_value = "specaudit.")]
    topic_prefix: String,
    /// Output format for data.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Yaml,
}

#[derive(Subcommand)]
enum Command {
    /// Check a spec file without publishing it.
    Validate {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Publish a spec file as the next version (full replace).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Who makes the change; defaults to the operating system user.
        #[arg(long)]
        author: Option<String>,
        /// Why the change is made.
        #[arg(short = 'm', long = "message", default_value = "")]
        message: String,
        /// Refuse the change unless the current version is N (0: the spec must not exist).
        #[arg(long)]
        expect_version: Option<i64>,
    },
    /// Delete a spec (a tombstone version).
    Delete {
        name: String,
        #[arg(long)]
        author: Option<String>,
        #[arg(short = 'm', long = "message", default_value = "")]
        message: String,
        #[arg(long)]
        expect_version: Option<i64>,
    },
    /// Print the latest version of a spec.
    Get { name: String },
    /// List the latest version of every spec.
    List,
}

fn os_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into())
}

fn read_spec(file: &PathBuf) -> Result<Spec, (u8, String)> {
    let text = std::fs::read_to_string(file).map_err(|e| (1, format!("cannot read {}: {e}", file.display())))?;
    Spec::parse(&text).map_err(|e| (EXIT_INVALID, format!("{}: {e}", file.display())))
}

fn print<T: serde::Serialize>(format: Format, value: &T, text: impl FnOnce() -> String) {
    match format {
        Format::Text => println!("{}", text()),
        Format::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(value).unwrap_or_default()),
    }
}

fn publish_error(error: PublishError) -> (u8, String) {
    let code = match error {
        PublishError::Conflict { .. } => EXIT_CONFLICT,
        PublishError::NotFound { .. } => EXIT_NOT_FOUND,
        _ => 1,
    };
    (code, error.to_string())
}

async fn run(cli: Cli) -> Result<(), (u8, String)> {
    let kafka = KafkaConfig { brokers: cli.brokers, topic_prefix: cli.topic_prefix, ..KafkaConfig::default() };
    match cli.command {
        Command::Validate { file } => {
            let spec = read_spec(&file)?;
            let requirements: usize = spec.components.values().map(|c| c.requirements.len()).sum();
            print(cli.format, &serde_json::json!({"valid": true, "spec": spec.spec, "components": spec.components.len(), "requirements": requirements}), || {
                format!("{}: valid ({} components, {requirements} requirements)", file.display(), spec.components.len())
            });
        }
        Command::Apply { file, author, message, expect_version } => {
            let spec = read_spec(&file)?;
            let meta = Meta { author: author.unwrap_or_else(os_user), comment: message, expect_version };
            let version = publish(&kafka, Change::Replace(spec), meta).await.map_err(publish_error)?;
            print(cli.format, &version, || format!("{} version {} published by {}", version.spec, version.version, version.author));
        }
        Command::Delete { name, author, message, expect_version } => {
            let meta = Meta { author: author.unwrap_or_else(os_user), comment: message, expect_version };
            let version = publish(&kafka, Change::Delete { spec: name }, meta).await.map_err(publish_error)?;
            print(cli.format, &version, || format!("{} deleted as version {}", version.spec, version.version));
        }
        Command::Get { name } => {
            let latest = tokio::task::spawn_blocking(move || load_latest(&kafka, Duration::from_secs(30)))
                .await
                .map_err(|e| (1, e.to_string()))?
                .map_err(|e| (1, e.to_string()))?;
            let version = latest.get(&name).filter(|v| !v.deleted).ok_or((EXIT_NOT_FOUND, format!("spec {name} does not exist")))?;
            let document: serde_json::Value = serde_json::from_str(&version.document).unwrap_or_default();
            match cli.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default()),
                Format::Yaml | Format::Text => print!("{}", serde_yaml_ng::to_string(&document).unwrap_or_default()),
            }
        }
        Command::List => {
            let latest = tokio::task::spawn_blocking(move || load_latest(&kafka, Duration::from_secs(30)))
                .await
                .map_err(|e| (1, e.to_string()))?
                .map_err(|e| (1, e.to_string()))?;
            let live: Vec<_> = latest.values().filter(|v| !v.deleted).map(|v| {
                serde_json::json!({"spec": v.spec, "version": v.version, "author": v.author, "ts": v.ts, "comment": v.comment, "sha256": v.sha256})
            }).collect();
            print(cli.format, &live, || {
                let mut out = format!("{:<32} {:>7}  {:<16} COMMENT", "SPEC", "VERSION", "AUTHOR");
                for v in latest.values().filter(|v| !v.deleted) {
                    out.push_str(&format!("\n{:<32} {:>7}  {:<16} {}", v.spec, v.version, v.author, v.comment));
                }
                out
            });
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("specctl: {message}");
            ExitCode::from(code)
        }
    }
}
