//! `specaudit-demo`: a small fleet of simulated components, each embedding the agent SDK
//! the way a real service would: it performs tasks and checks them against the spec.
//! Mostly compliant, with a few instances that fail, so reports have something to show.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};
use specaudit_core::config::KafkaConfig;
use specaudit_core::record::Outcome;
use specaudit_producer::agent::{Agent, AgentConfig};

#[derive(Parser)]
#[command(version, about = "Runs a demo fleet of simulated components with embedded specaudit agents")]
struct Cli {
    #[arg(long, env = "SPECAUDIT_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, env = "SPECAUDIT_TOPIC_PREFIX", default_value = "specaudit.")]
    topic_prefix: String,
    /// Tasks per second performed by each simulated instance.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Stop after this long (e.g. 30s); runs until SIGTERM / Ctrl-C when left out.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

const TYPES: [&str; 3] = ["small", "medium", "large"];

/// A simulated instance: its component, its name, and the task it performs.
struct Sim {
    component: &'static str,
    instance: &'static str,
    task: &'static str,
    facts: fn(u64) -> Value,
    /// Requirements its own code asserts, with the outcome it finds.
    asserts: &'static [(&'static str, fn(u64) -> Outcome)],
}

fn fleet() -> Vec<Sim> {
    vec![
        Sim { component: "frontend", instance: "fe-1", task: "serve-request", facts: |_| json!({"tls_version": "1.3"}), asserts: &[] },
        // An instance still accepting TLS 1.0 on one request in ten.
        Sim { component: "frontend", instance: "fe-2", task: "serve-request",
              facts: |i| json!({"tls_version": if i % 10 == 0 { "1.0" } else { "1.2" }}), asserts: &[] },
        Sim { component: "frontend.throttle", instance: "th-1", task: "serve-request",
              facts: |_| json!({"tls_version": "1.3", "max_rps": 1000}), asserts: &[] },
        Sim { component: "compute.instance", instance: "host-1", task: "configure-instance",
              facts: |i| json!({"instance_type": TYPES[(i % 3) as usize], "cpus": 1 + (i % 16)}), asserts: &[] },
        // A host that sometimes asks for more CPUs than the spec allows.
        Sim { component: "compute.instance", instance: "host-2", task: "configure-instance",
              facts: |i| json!({"instance_type": "large", "cpus": if i % 7 == 0 { 128 } else { 32 }}), asserts: &[] },
        Sim { component: "security", instance: "sec-1", task: "admin-action", facts: |_| json!({}),
              asserts: &[("security/audit-logging", |_| Outcome::Pass)] },
    ]
}

fn run_instance(sim: Sim, kafka: KafkaConfig, rate: u32, stop: Arc<AtomicBool>) {
    let config = AgentConfig::new(kafka, sim.component, sim.instance);
    let agent = match Agent::start(config) {
        Ok(agent) => agent,
        Err(error) => {
            eprintln!("specaudit-demo: {}/{}: {error}", sim.component, sim.instance);
            return;
        }
    };
    let pause = Duration::from_secs(1) / rate.max(1);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        agent.check(sim.task, &(sim.facts)(i));
        for (requirement, outcome) in sim.asserts {
            let outcome = outcome(i);
            let message = if outcome == Outcome::Pass { "" } else { "audit log write failed" };
            // The requirement may be absent from the spec in use: nothing to assert then.
            let _ = agent.assert(requirement, sim.task, outcome, message, None);
        }
        i += 1;
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
    let threads: Vec<_> = fleet()
        .into_iter()
        .map(|sim| {
            let (kafka, stop) = (kafka.clone(), Arc::clone(&stop));
            std::thread::spawn(move || run_instance(sim, kafka, cli.rate, stop))
        })
        .collect();
    runtime.block_on(async {
        let shutdown = specaudit_core::telemetry::shutdown_on_signal();
        match cli.duration {
            Some(d) => {
                tokio::select! { _ = shutdown.cancelled() => {}, _ = tokio::time::sleep(d) => {} }
            }
            None => shutdown.cancelled().await,
        }
    });
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    ExitCode::SUCCESS
}
