//! `specctl`: validate, publish, change and read specs. The work is done by the library
//! (`publish`, `edit`, `history`, `diff`, `catalog`); this file parses and prints.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use specaudit_core::config::KafkaConfig;
use specaudit_core::record::SpecVersion;
use specaudit_core::spec::Spec;
use specaudit_producer::catalog::load_latest;
use specaudit_producer::diff::{diff, render_text, DiffError};
use specaudit_producer::edit::{Edit, Target};
use specaudit_producer::history::{load_history, load_version, watch, HistoryError};
use specaudit_producer::publish::{publish, Change, Meta, PublishError};

/// Exit codes beyond 0 (success), 1 (failure) and 2 (usage).
const EXIT_INVALID: u8 = 3;
const EXIT_CONFLICT: u8 = 4;
const EXIT_NOT_FOUND: u8 = 5;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(
    version,
    about = "Validate, publish, change and read specaudit specs",
    after_help = "Exit codes: 0 done, 1 failed (e.g. Kafka unreachable), 2 usage, 3 invalid spec or change, \
                  4 version conflict (someone else changed the spec first), 5 spec or version not found."
)]
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

/// Who changes a spec, why, and against which version.
#[derive(Args)]
struct ChangeArgs {
    /// Who makes the change; defaults to the operating system user.
    #[arg(long)]
    author: Option<String>,
    /// Why the change is made; recorded in the history.
    #[arg(short = 'm', long = "message", default_value = "")]
    message: String,
    /// Refuse the change unless the current version is N (0: the spec must not exist yet).
    #[arg(long, value_name = "N")]
    expect_version: Option<i64>,
}

/// The new value of a component, requirement or param.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct ValueArgs {
    /// A YAML or JSON file holding the value.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// The value as YAML or JSON text, e.g. `1000` or `{severity: critical}`.
    #[arg(long)]
    value: Option<String>,
}

/// Names one component, requirement or param of a spec.
#[derive(Args)]
struct ComponentRef {
    /// The spec's name.
    spec: String,
    /// The component path, e.g. `frontend.throttle`.
    component: String,
}

#[derive(Args)]
struct MemberRef {
    /// The spec's name.
    spec: String,
    /// The component path, e.g. `frontend.throttle`.
    component: String,
    /// The requirement's or param's name.
    name: String,
}

#[derive(Subcommand)]
enum Part {
    /// A component.
    Component { #[command(flatten)] at: ComponentRef, #[command(flatten)] value: ValueArgs, #[command(flatten)] change: ChangeArgs },
    /// A requirement.
    Requirement { #[command(flatten)] at: MemberRef, #[command(flatten)] value: ValueArgs, #[command(flatten)] change: ChangeArgs },
    /// A param.
    Param { #[command(flatten)] at: MemberRef, #[command(flatten)] value: ValueArgs, #[command(flatten)] change: ChangeArgs },
}

#[derive(Subcommand)]
enum RemovePart {
    /// A component and its requirements and params.
    Component { #[command(flatten)] at: ComponentRef, #[command(flatten)] change: ChangeArgs },
    /// A requirement.
    Requirement { #[command(flatten)] at: MemberRef, #[command(flatten)] change: ChangeArgs },
    /// A param.
    Param { #[command(flatten)] at: MemberRef, #[command(flatten)] change: ChangeArgs },
}

#[derive(Subcommand)]
enum Command {
    /// Check a spec file without publishing it; every problem is listed with its place and line.
    Validate {
        /// The spec, as YAML or JSON.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Publish a spec file as the next version (full replace).
    Apply {
        /// The spec, as YAML or JSON.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Apply an RFC 6902 JSON Patch (a JSON or YAML file) to the current version.
    Patch {
        /// The spec's name.
        name: String,
        /// An RFC 6902 JSON Patch, as JSON or YAML.
        #[arg(long)]
        patch_file: PathBuf,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Add one component, requirement or param (it must not exist yet).
    #[command(subcommand)]
    Add(Part),
    /// Replace one component, requirement or param (it must exist).
    #[command(subcommand)]
    Replace(Part),
    /// Remove one component, requirement or param (it must exist).
    #[command(subcommand)]
    Remove(RemovePart),
    /// Delete a spec (a tombstone version; publishing it again continues the versions).
    Delete {
        /// The spec's name.
        name: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Print a spec: the latest version, or version N from the history.
    Get {
        /// The spec's name.
        name: String,
        /// A version from the history instead of the latest.
        #[arg(long, value_name = "N")]
        version: Option<i64>,
    },
    /// List the latest version of every spec.
    List,
    /// List every version of a spec: who, when, why.
    History {
        /// The spec's name.
        name: String,
    },
    /// What changed between two versions, requirement by requirement, with authors.
    Diff {
        /// The spec's name.
        name: String,
        /// The older version.
        from: i64,
        /// The newer version.
        to: i64,
    },
    /// Print each new version as it lands, until interrupted.
    Watch {
        /// Only this spec.
        name: Option<String>,
        /// Start with the versions already published.
        #[arg(long)]
        from_beginning: bool,
    },
}

type Failure = (u8, String);

/// The reader of our output went away (`specctl list | head -1`): it has what it wanted,
/// so specctl ends quietly with 0, like other Unix tools.
const OUTPUT_CLOSED: Failure = (0, String::new());

/// Writes `text` to standard output; a closed pipe is `OUTPUT_CLOSED`, not a panic.
fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(OUTPUT_CLOSED),
        Err(e) => Err((1, format!("cannot write the output: {e}"))),
    }
}

fn os_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into())
}

fn meta(change: ChangeArgs) -> Meta {
    Meta { author: change.author.unwrap_or_else(os_user), comment: change.message, expect_version: change.expect_version }
}

fn read(file: &PathBuf) -> Result<String, Failure> {
    std::fs::read_to_string(file).map_err(|e| match e.kind() {
        // The file was read; what it holds cannot be a spec, a patch or a value.
        std::io::ErrorKind::InvalidData => (EXIT_INVALID, format!("{} is not a YAML or JSON document: it is not UTF-8 text", file.display())),
        _ => (1, format!("cannot read {}: {e}", file.display())),
    })
}

fn read_spec(file: &PathBuf) -> Result<Spec, Failure> {
    Spec::parse(&read(file)?).map_err(|e| (EXIT_INVALID, format!("{}: {e}", file.display())))
}

fn read_value(args: ValueArgs) -> Result<Value, Failure> {
    let (text, from) = match (args.file, args.value) {
        (Some(file), _) => (read(&file)?, file.display().to_string()),
        (None, Some(value)) => (value, "--value".to_owned()),
        (None, None) => return Err((2, "give the value with -f FILE or --value TEXT".into())),
    };
    serde_yaml_ng::from_str(&text).map_err(|e| (EXIT_INVALID, format!("{from} is not YAML or JSON: {e}")))
}

fn print<T: serde::Serialize>(format: Format, value: &T, text: impl FnOnce() -> String) -> Result<(), Failure> {
    match format {
        Format::Text => out(&format!("{}\n", text())),
        Format::Json => out(&format!("{}\n", serde_json::to_string_pretty(value).unwrap_or_default())),
        Format::Yaml => out(&serde_yaml_ng::to_string(value).unwrap_or_default()),
    }
}

fn publish_error(error: PublishError) -> Failure {
    let code = match error {
        PublishError::Conflict { .. } | PublishError::Contended { .. } => EXIT_CONFLICT,
        PublishError::NotFound { .. } => EXIT_NOT_FOUND,
        PublishError::Invalid { .. } | PublishError::Edit { .. } | PublishError::TooLarge { .. } => EXIT_INVALID,
        _ => 1,
    };
    (code, error.to_string())
}

fn history_error(error: HistoryError) -> Failure {
    let code = match error {
        HistoryError::NotFound { .. } | HistoryError::NoSuchVersion { .. } => EXIT_NOT_FOUND,
        HistoryError::Kafka { .. } => 1,
    };
    (code, error.to_string())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Failure> + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| (1, e.to_string()))?
}

/// A version as people read it in lists: everything but the document.
fn summary(v: &SpecVersion) -> Value {
    let patch: Value = serde_json::from_str(&v.patch).unwrap_or(Value::Null);
    json!({"spec": v.spec, "version": v.version, "ts": v.ts, "author": v.author, "comment": v.comment,
           "sha256": v.sha256, "deleted": v.deleted, "patch": patch})
}

fn line(v: &SpecVersion) -> String {
    let what = if v.deleted { "deleted".to_owned() } else { format!("sha256 {}", v.sha256.get(..12).unwrap_or_default()) };
    format!("{} v{} {} by {} ({what}): {}", v.spec, v.version, ts_text(v.ts), v.author, v.comment)
}

fn ts_text(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

fn print_document(format: Format, version: &SpecVersion) -> Result<(), Failure> {
    let document: Value = serde_json::from_str(&version.document).unwrap_or_default();
    match format {
        Format::Json => out(&format!("{}\n", serde_json::to_string_pretty(&document).unwrap_or_default())),
        Format::Yaml | Format::Text => out(&serde_yaml_ng::to_string(&document).unwrap_or_default()),
    }
}

fn edit(part: Part, replace: bool) -> Result<(String, Edit, ChangeArgs), Failure> {
    let (spec, target, value, change) = match part {
        Part::Component { at, value, change } => (at.spec, Target::Component { component: at.component }, value, change),
        Part::Requirement { at, value, change } => {
            (at.spec, Target::Requirement { component: at.component, name: at.name }, value, change)
        }
        Part::Param { at, value, change } => (at.spec, Target::Param { component: at.component, name: at.name }, value, change),
    };
    let value = read_value(value)?;
    let edit = if replace { Edit::Replace(target, value) } else { Edit::Add(target, value) };
    Ok((spec, edit, change))
}

fn removal(part: RemovePart) -> (String, Edit, ChangeArgs) {
    let (spec, target, change) = match part {
        RemovePart::Component { at, change } => (at.spec, Target::Component { component: at.component }, change),
        RemovePart::Requirement { at, change } => (at.spec, Target::Requirement { component: at.component, name: at.name }, change),
        RemovePart::Param { at, change } => (at.spec, Target::Param { component: at.component, name: at.name }, change),
    };
    (spec, Edit::Remove(target), change)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let kafka = KafkaConfig { brokers: cli.brokers, topic_prefix: cli.topic_prefix, ..KafkaConfig::default() };
    let format = cli.format;
    let publish_change = |change: Change, args: ChangeArgs| {
        let kafka = kafka.clone();
        async move {
            let version = publish(&kafka, change, meta(args)).await.map_err(publish_error)?;
            print(format, &summary(&version), || {
                let what = if version.deleted { "deleted as" } else { "published as" };
                format!("{} {what} version {} by {}", version.spec, version.version, version.author)
            })
        }
    };
    match cli.command {
        Command::Validate { file } => {
            let spec = match Spec::parse(&read(&file)?) {
                Ok(spec) => spec,
                // As data too, so an editor or CI can mark the places.
                Err(e) if !matches!(format, Format::Text) => {
                    // The exit code says "invalid" whether or not the output could be written.
                    let _ = print(format, &json!({"valid": false, "file": file.display().to_string(), "problems": e.problems}), String::new);
                    return Err((EXIT_INVALID, format!("{}: {e}", file.display())));
                }
                Err(e) => return Err((EXIT_INVALID, format!("{}: {e}", file.display()))),
            };
            let requirements: usize = spec.components.values().map(|c| c.requirements.len()).sum();
            let data = json!({"valid": true, "spec": spec.spec, "components": spec.components.len(), "requirements": requirements, "sha256": spec.sha256()});
            print(format, &data, || {
                format!("{}: valid ({} components, {requirements} requirements)", file.display(), spec.components.len())
            })?;
        }
        Command::Apply { file, change } => publish_change(Change::Replace(read_spec(&file)?), change).await?,
        Command::Patch { name, patch_file, change } => {
            let patch = serde_yaml_ng::from_str(&read(&patch_file)?)
                .map_err(|e| (EXIT_INVALID, format!("{} is not an RFC 6902 JSON Patch: {e}", patch_file.display())))?;
            publish_change(Change::Edit { spec: name, edit: Edit::Patch(patch) }, change).await?;
        }
        Command::Add(part) => {
            let (spec, edit, change) = edit(part, false)?;
            publish_change(Change::Edit { spec, edit }, change).await?;
        }
        Command::Replace(part) => {
            let (spec, edit, change) = edit(part, true)?;
            publish_change(Change::Edit { spec, edit }, change).await?;
        }
        Command::Remove(part) => {
            let (spec, edit, change) = removal(part);
            publish_change(Change::Edit { spec, edit }, change).await?;
        }
        Command::Delete { name, change } => publish_change(Change::Delete { spec: name }, change).await?,
        Command::Get { name, version: Some(n) } => {
            let version = blocking(move || load_version(&kafka, &name, n, TIMEOUT).map_err(history_error)).await?;
            if version.deleted {
                return Err((EXIT_NOT_FOUND, format!("version {n} of spec {} is its deletion", version.spec)));
            }
            print_document(format, &version)?;
        }
        Command::Get { name, version: None } => {
            let latest = blocking(move || load_latest(&kafka, TIMEOUT).map_err(|e| (1, e.to_string()))).await?;
            let version = latest.get(&name).filter(|v| !v.deleted).ok_or((EXIT_NOT_FOUND, format!("spec {name} does not exist")))?;
            print_document(format, version)?;
        }
        Command::List => {
            let latest = blocking(move || load_latest(&kafka, TIMEOUT).map_err(|e| (1, e.to_string()))).await?;
            let live: Vec<&SpecVersion> = latest.values().filter(|v| !v.deleted).collect();
            let data: Vec<Value> = live.iter().map(|v| summary(v)).collect();
            print(format, &data, || {
                let mut out = format!("{:<32} {:>7}  {:<20} {:<16} COMMENT", "SPEC", "VERSION", "PUBLISHED", "AUTHOR");
                for v in &live {
                    out.push_str(&format!("\n{:<32} {:>7}  {:<20} {:<16} {}", v.spec, v.version, ts_text(v.ts), v.author, v.comment));
                }
                out
            })?;
        }
        Command::History { name } => {
            let history = blocking(move || load_history(&kafka, &name, TIMEOUT).map_err(history_error)).await?;
            let data: Vec<Value> = history.iter().map(summary).collect();
            print(format, &data, || history.iter().map(line).collect::<Vec<_>>().join("\n"))?;
        }
        Command::Diff { name, from, to } => {
            // Versions in the wrong order, or below 1, are a usage error, known before asking Kafka.
            if from >= to {
                return Err((2, DiffError::Order { from, to }.to_string()));
            }
            if from < 1 {
                return Err((2, format!("versions start at 1, not {from}")));
            }
            let history = blocking(move || load_history(&kafka, &name, TIMEOUT).map_err(history_error)).await?;
            let changes = diff(&history, from, to).map_err(|e| match e {
                DiffError::NoSuchVersion { .. } => (EXIT_NOT_FOUND, e.to_string()),
                DiffError::Order { .. } => (2, e.to_string()),
            })?;
            print(format, &changes, || render_text(&changes).trim_end().to_owned())?;
        }
        Command::Watch { name, from_beginning } => {
            let stop = Arc::new(AtomicBool::new(false));
            let stopping = Arc::clone(&stop);
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                stopping.store(true, Ordering::Relaxed);
            });
            blocking(move || {
                let watching = || eprintln!("specctl: watching for new versions");
                let mut failed = None;
                watch(&kafka, name.as_deref(), from_beginning, &stop, watching, |version| {
                    let text = match format {
                        Format::Text => format!("{}\n", line(&version)),
                        // One document per version, so a pipeline can read them as they come.
                        Format::Json => format!("{}\n", summary(&version)),
                        Format::Yaml => format!("---\n{}", serde_yaml_ng::to_string(&summary(&version)).unwrap_or_default()),
                    };
                    if let Err(failure) = out(&text) {
                        // Nobody reads any more (or cannot): stop watching.
                        failed = Some(failure);
                        stop.store(true, Ordering::Relaxed);
                    }
                })
                .map_err(history_error)?;
                failed.map_or(Ok(()), Err)
            })
            .await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // Only `OUTPUT_CLOSED` carries 0: the output was cut short by its reader.
        Err((0, _)) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("specctl: {message}");
            ExitCode::from(code)
        }
    }
}
