//! `specaudit-demo`: a fleet of simulated components of a virtual compute service
//! (`examples/compute-service.yaml`), each instance embedding the agent SDK the way a real
//! service would: it performs tasks and checks them against the spec. What the fleet
//! holds, and which of its instances fail, is described in `fleet.rs`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod fleet;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use specaudit_core::config::KafkaConfig;
use specaudit_producer::agent::{Agent, AgentConfig, AgentError};
use specaudit_core::record::SpecVersion;
use specaudit_producer::history::{load_history, load_version, HistoryError};

use crate::fleet::{Mode, Sim};

#[derive(Parser)]
#[command(version, about = "Runs a demo fleet of simulated components with embedded specaudit agents")]
struct Cli {
    #[arg(long, env = "SPECAUDIT_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, env = "SPECAUDIT_TOPIC_PREFIX", default_value = "specaudit.")]
    topic_prefix: String,
    /// Tasks per second performed by each simulated instance.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rate: u32,
    /// Instances per component, as a multiple of the base fleet (3 front ends, 2 throttles,
    /// 2 schedulers, 4 hosts and their dom0s, 2 instances, 3 security services, 2 health
    /// monitors); the pinned throttle and the silent component stay one each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    size: u32,
    /// The spec the fleet runs; the pinned agent reads its old version from the spec's history.
    #[arg(long, default_value = "compute-service")]
    spec: String,
    /// The spec version the agent stuck on an old version runs; by default the one before
    /// the latest.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    stale_version: Option<i64>,
    /// How long the silent component's agent runs, doing no task, before it stops.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    silent_after: Duration,
    /// Stop after this long (e.g. 30s); runs until SIGTERM / Ctrl-C when left out.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

/// Why an instance did not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("cannot read the version to pin: {0}")]
    History(#[from] Box<HistoryError>),
}

fn start_agent(sim: &Sim, kafka: &KafkaConfig, spec: &str) -> Result<Agent, StartError> {
    let config = AgentConfig::new(kafka.clone(), sim.component, sim.instance.as_str());
    Ok(match sim.mode {
        Mode::Pinned(version) => {
            let old = pinned_version(kafka, spec, version)?;
            tracing::info!(component = sim.component, instance = %sim.instance, spec, version = old.version, "pins its spec: newer versions are ignored");
            Agent::with_specs(config, &[old])?
        }
        Mode::Follow | Mode::Silent(_) => Agent::start(config)?,
    })
}

/// Version `version` of `spec`, or when None the last one before the latest (the latest
/// itself if there is no other).
fn pinned_version(kafka: &KafkaConfig, spec: &str, version: Option<i64>) -> Result<SpecVersion, Box<HistoryError>> {
    let timeout = Duration::from_secs(30);
    if let Some(version) = version {
        return load_version(kafka, spec, version, timeout).map_err(Box::new);
    }
    let history = load_history(kafka, spec, timeout).map_err(Box::new)?;
    let latest = history.last().map_or(0, |v| v.version);
    let older = history.iter().rev().find(|v| !v.deleted && v.version < latest);
    match older.or_else(|| history.last().filter(|v| !v.deleted)) {
        Some(v) if v.version == latest => {
            tracing::warn!(spec, version = latest, "no older version to pin: the pinned agent runs the latest");
            Ok(v.clone())
        }
        Some(v) => Ok(v.clone()),
        None => Err(Box::new(HistoryError::NotFound { spec: spec.to_owned() })),
    }
}

/// Sleeps for `d`, or less if the fleet stops; false when it stopped.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(200)));
    }
    false
}

fn run_instance(sim: Sim, kafka: KafkaConfig, spec: String, rate: u32, stop: Arc<AtomicBool>) {
    let agent = match start_agent(&sim, &kafka, &spec) {
        Ok(agent) => agent,
        Err(error) => {
            tracing::error!(component = sim.component, instance = %sim.instance, %error, "instance not started");
            return;
        }
    };
    if let Mode::Silent(after) = sim.mode {
        tracing::info!(component = sim.component, instance = %sim.instance, ?after, "hangs at start: its agent runs, no task is done");
        if sleep_unless_stopped(after, &stop) {
            tracing::info!(component = sim.component, instance = %sim.instance, "stopped: nothing more comes from this component");
        }
        agent.shutdown(Duration::from_secs(5));
        return;
    }
    let pause = Duration::from_secs(1) / rate;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let task = (sim.work)(&agent, n);
        agent.check(task.kind, &task.facts);
        for (requirement, outcome, message) in &task.asserts {
            // The requirement may be absent from the spec in use: nothing to assert then.
            let _ = agent.assert(requirement, task.kind, *outcome, message, None);
        }
        n += 1;
        std::thread::sleep(pause);
    }
    agent.shutdown(Duration::from_secs(5));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    specaudit_core::telemetry::init_tracing(&Default::default());
    let kafka = KafkaConfig { brokers: cli.brokers, topic_prefix: cli.topic_prefix, ..KafkaConfig::default() };
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("specaudit-demo: {error}");
            return ExitCode::FAILURE;
        }
    };
    let sims = fleet::fleet(cli.size, cli.stale_version, cli.silent_after);
    tracing::info!(instances = sims.len(), rate = cli.rate, spec = %cli.spec, "starting the demo fleet");
    let mut threads = Vec::with_capacity(sims.len());
    let mut started = true;
    for sim in sims {
        let (kafka, spec, stop) = (kafka.clone(), cli.spec.clone(), Arc::clone(&stop));
        let name = format!("{}/{}", sim.component, sim.instance);
        match std::thread::Builder::new().name(name).spawn(move || run_instance(sim, kafka, spec, cli.rate, stop)) {
            Ok(thread) => threads.push(thread),
            Err(error) => {
                eprintln!("specaudit-demo: cannot start a thread: {error}");
                started = false;
                break;
            }
        }
    }
    if started {
        runtime.block_on(wait_for_end(cli.duration));
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    if started {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Returns on SIGTERM / Ctrl-C, or once `duration` has passed.
async fn wait_for_end(duration: Option<Duration>) {
    let shutdown = specaudit_core::telemetry::shutdown_on_signal();
    match duration {
        Some(d) => {
            tokio::select! { _ = shutdown.cancelled() => {}, _ = tokio::time::sleep(d) => {} }
        }
        None => shutdown.cancelled().await,
    }
}
