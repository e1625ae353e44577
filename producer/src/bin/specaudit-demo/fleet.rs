//! The simulated components of the virtual compute service of
//! `examples/compute-service.yaml`, and what each instance does on its n-th task.
//!
//! Mostly compliant. What is not, is there so every report and alarm kind has something
//! to show:
//!
//! | who | what | shows as |
//! | --- | --- | --- |
//! | `frontend` fe-2 | accepts TLS 1.0 on one request in ten | a critical failure; an outlier among the front ends |
//! | every `resource.scheduler` | over-commits one placement in twelve | a failure ratio |
//! | `compute.host.dom0` host-4-dom0 | lets its memory be ballooned below the reserve, one task in sixteen | an outlier among the dom0s |
//! | `compute.host` host-3 | cannot read its hypervisor's patch level, one task in twenty | errors (amber) |
//! | `health.recovery` rec-1 | hangs at start: its agent runs, it never does a task, then it stops | a silent component (grey) |
//! | `frontend.throttle`, the last one | runs an old spec version it pinned | version skew |
//!
//! Behaviour is a pure function of the instance and the task number (no clock, no random
//! source), so the unit tests below check it against the spec without Kafka.

use std::time::Duration;

use serde_json::{json, Value};
use specaudit_core::record::Outcome;
use specaudit_producer::agent::Agent;

/// Where an instance's work reads the params of its component.
pub(crate) trait Params {
    fn param_value(&self, name: &str) -> Option<Value>;

    fn int(&self, name: &str) -> i64 {
        self.param_value(name).and_then(|v| v.as_i64()).unwrap_or(0)
    }
}

impl Params for Agent {
    fn param_value(&self, name: &str) -> Option<Value> {
        self.param(name)
    }
}

impl Params for serde_json::Map<String, Value> {
    fn param_value(&self, name: &str) -> Option<Value> {
        self.get(name).cloned()
    }
}

/// One task an instance performed: its kind, the facts its agent checks, and the
/// requirements the instance's own code asserts, with their outcome and message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Task {
    pub(crate) kind: &'static str,
    pub(crate) facts: Value,
    pub(crate) asserts: Vec<(&'static str, Outcome, &'static str)>,
}

impl Task {
    fn new(kind: &'static str, facts: Value) -> Task {
        Task { kind, facts, asserts: Vec::new() }
    }

    fn asserting(mut self, requirement: &'static str, outcome: Outcome, message: &'static str) -> Task {
        self.asserts.push((requirement, outcome, message));
        self
    }
}

/// How an instance's agent gets its specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Follows the specs topic, as every agent should.
    Follow,
    /// Runs this version of the spec (None: the one before the latest), read from its
    /// history, and never takes a newer one.
    Pinned(Option<i64>),
    /// Runs its agent for this long without doing any task, then stops altogether.
    Silent(Duration),
}

/// What an instance does on its n-th task.
pub(crate) type Work = Box<dyn Fn(&dyn Params, u64) -> Task + Send>;

/// One simulated instance of a component.
pub(crate) struct Sim {
    pub(crate) component: &'static str,
    pub(crate) instance: String,
    pub(crate) mode: Mode,
    pub(crate) work: Work,
}

impl Sim {
    fn new(component: &'static str, instance: String, work: impl Fn(&dyn Params, u64) -> Task + Send + 'static) -> Sim {
        Sim { component, instance, mode: Mode::Follow, work: Box::new(work) }
    }
}

/// A well-mixed number from a task number and a seed (splitmix64): varied facts without a
/// random source.
fn mix(n: u64, seed: u64) -> u64 {
    let mut z = n.wrapping_add(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// True for about one task in `n`.
fn one_in(n: u64, task: u64, seed: u64) -> bool {
    mix(task, seed).is_multiple_of(n)
}

/// A number from `low` to `high` (both included).
fn between(low: i64, high: i64, task: u64, seed: u64) -> i64 {
    low + (mix(task, seed ^ 0x5eed) % (high - low + 1) as u64) as i64
}

/// Instances of each component at `size` 1; `size` multiplies them.
pub(crate) const BASE: [(&str, u32); 9] = [
    ("frontend", 3),
    ("frontend.throttle", 2),
    ("resource.scheduler", 2),
    ("compute.host", 4),
    ("compute.host.dom0", 4),
    ("compute.instance", 2),
    ("security", 2),
    ("security.keys", 1),
    ("health.monitor", 2),
];

/// The fleet: `size` times [`BASE`], plus one throttle pinned to `stale_version` and one
/// `health.recovery` instance that goes silent after `silent_after`.
pub(crate) fn fleet(size: u32, stale_version: Option<i64>, silent_after: Duration) -> Vec<Sim> {
    let count = |component: &str| BASE.iter().find(|(c, _)| *c == component).map_or(0, |(_, n)| n * size);
    let mut sims = Vec::new();

    for i in 1..=count("frontend") {
        let seed = u64::from(i);
        // fe-2 still accepts TLS 1.0 from old clients.
        let weak = i == 2;
        sims.push(Sim::new("frontend", format!("fe-{i}"), move |_, n| {
            let tls = if weak && one_in(10, n, seed) { "1.0" } else if one_in(3, n, seed + 100) { "1.2" } else { "1.3" };
            Task::new("serve-request", json!({"tls_version": tls, "path": "/v1/instances"}))
        }));
    }

    // The throttles enforce the limit of the spec they run; the last one pins an old version.
    let throttles = count("frontend.throttle") + 1;
    for i in 1..=throttles {
        let mut sim = Sim::new("frontend.throttle", format!("th-{i}"), |params, _| {
            Task::new("serve-request", json!({"tls_version": "1.3", "max_rps": params.int("max_rps")}))
        });
        if i == throttles {
            sim.mode = Mode::Pinned(stale_version);
        }
        sims.push(sim);
    }

    let hosts = u64::from(count("compute.host"));
    for i in 1..=count("resource.scheduler") {
        let seed = 1000 + u64::from(i);
        // Every scheduler reads host capacity from a cache that lags: it over-commits now and then.
        sims.push(Sim::new("resource.scheduler", format!("sched-{i}"), move |params, n| {
            let host_cpus = 32;
            let limit = host_cpus * params.int("cpu_overcommit");
            let committed = if one_in(12, n, seed) { limit + between(2, 16, n, seed) } else { between(8, limit, n, seed) };
            Task::new(
                "place-instance",
                json!({
                    "host": format!("host-{}", 1 + mix(n, seed) % hosts.max(1)),
                    "filters": ["capacity", "zone", "quota"],
                    "host_cpus": host_cpus,
                    "vcpus_committed": committed,
                }),
            )
        }));
    }

    for i in 1..=count("compute.host") {
        let seed = 2000 + u64::from(i);
        // host-3 cannot always read its hypervisor inventory: the check cannot be evaluated.
        let flaky_inventory = i == 3;
        sims.push(Sim::new("compute.host", format!("host-{i}"), move |_, n| {
            let mut facts = json!({"start_ms": between(600, 3500, n, seed), "instance": format!("vm-{}", n % 500)});
            if !(flaky_inventory && one_in(20, n, seed)) {
                facts["hypervisor_patch"] = json!(8);
            }
            Task::new("start-instance", facts)
        }));
    }

    for i in 1..=count("compute.host.dom0") {
        let seed = 3000 + u64::from(i);
        // The dom0 of host-4 lets the balloon driver take memory from its reserve.
        let ballooned = i == 4;
        sims.push(Sim::new("compute.host.dom0", format!("host-{i}-dom0"), move |params, n| {
            let reserve = params.int("dom0_memory_mb");
            let memory = if ballooned && one_in(16, n, seed) { reserve - 1024 } else { reserve + 512 };
            let common = json!({"hypervisor_patch": 8, "dom0_memory_mb": memory});
            if n % 5 == 4 {
                let mut facts = common;
                facts["source_network"] = json!("mgmt");
                facts["user"] = json!("ops");
                Task::new("admin-login", facts)
            } else {
                let mut facts = common;
                facts["start_ms"] = json!(between(500, 3000, n, seed));
                Task::new("start-instance", facts)
            }
        }));
    }

    for i in 1..=count("compute.instance") {
        let seed = 4000 + u64::from(i);
        sims.push(Sim::new("compute.instance", format!("vm-{i}"), move |_, n| {
            if n % 4 == 3 {
                Task::new("attach-volume", json!({"volume": format!("vol-{}", n % 1000), "encrypted": true}))
            } else {
                let types = ["small", "medium", "large"];
                let kind = types[(mix(n, seed) % 3) as usize];
                Task::new("configure-instance", json!({"instance_type": kind, "cpus": between(1, 32, n, seed)}))
            }
        }));
    }

    for i in 1..=count("security") {
        sims.push(Sim::new("security", format!("audit-{i}"), |_, n| {
            Task::new("admin-action", json!({"action": "grant-role", "n": n}))
                .asserting("security/audit-logging", Outcome::Pass, "")
        }));
    }

    for i in 1..=count("security.keys") {
        let seed = 5000 + u64::from(i);
        sims.push(Sim::new("security.keys", format!("keys-{i}"), move |params, n| {
            if n % 20 == 19 {
                // Rotating a key is an administrative action: it is audited like any other.
                Task::new("rotate-key", json!({"key": format!("k-{}", n / 20)}))
                    .asserting("security/audit-logging", Outcome::Pass, "")
            } else {
                let max_age = params.int("max_key_age_days");
                Task::new("issue-token", json!({"key_age_days": between(0, max_age.max(1) - 1, n, seed)}))
            }
        }));
    }

    for i in 1..=count("health.monitor") {
        let seed = 6000 + u64::from(i);
        sims.push(Sim::new("health.monitor", format!("mon-{i}"), move |params, n| {
            let gap = params.int("max_probe_gap_s");
            let status = if one_in(30, n, seed) { "degraded" } else { "healthy" };
            Task::new(
                "probe-host",
                json!({
                    "host": format!("host-{}", 1 + n % hosts.max(1)),
                    "status": status,
                    "since_last_probe_s": between(gap / 4, gap * 3 / 4, n, seed),
                }),
            )
        }));
    }

    // The recovery service hangs at start (say, on a lock it never gets): its agent is up,
    // but it does no task, and after a while the whole process is gone.
    let mut silent = Sim::new("health.recovery", "rec-1".into(), |_, _| Task::new("recover-host", json!({})));
    silent.mode = Mode::Silent(silent_after);
    sims.push(silent);

    sims
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use specaudit_core::check::CompiledCheck;
    use specaudit_core::spec::Spec;

    use super::*;

    const EXAMPLE: &str = include_str!("../../../../examples/compute-service.yaml");
    const TASKS: u64 = 2000;

    /// Outcomes per (instance, requirement) of the first TASKS tasks of every instance
    /// that works, checked against the example spec the way an agent would.
    fn outcomes(sims: &[Sim]) -> BTreeMap<(String, String), BTreeMap<Outcome, u64>> {
        let spec = Spec::parse(EXAMPLE).unwrap();
        let mut out: BTreeMap<(String, String), BTreeMap<Outcome, u64>> = BTreeMap::new();
        for sim in sims.iter().filter(|s| !matches!(s.mode, Mode::Silent(_))) {
            let applicable = spec.applicable(sim.component);
            let params = Value::Object(applicable.params.clone());
            let checks: Vec<Option<CompiledCheck>> =
                applicable.requirements.iter().map(|r| r.requirement.check.as_ref().map(|c| CompiledCheck::compile(c).unwrap())).collect();
            for n in 0..TASKS {
                let task = (sim.work)(&applicable.params, n);
                for (r, check) in applicable.requirements.iter().zip(&checks) {
                    let outcome = match (check, r.requirement.applies_to(task.kind)) {
                        (_, false) => Outcome::Skip,
                        (Some(check), true) => check.evaluate(&task.facts, &params).outcome,
                        (None, true) => match task.asserts.iter().find(|(id, _, _)| *id == r.id) {
                            Some((_, outcome, _)) => *outcome,
                            None => continue,
                        },
                    };
                    *out.entry((sim.instance.clone(), r.id.clone())).or_default().entry(outcome).or_default() += 1;
                }
                for (id, _, _) in &task.asserts {
                    assert!(applicable.requirements.iter().any(|r| r.id == *id), "{} asserts {id}, which does not apply", sim.instance);
                }
            }
        }
        out
    }

    #[test]
    fn only_the_designated_instances_fail_and_only_host_3_errs() {
        let all = outcomes(&fleet(1, None, Duration::from_secs(30)));
        let mut failing = BTreeSet::new();
        let mut erring = BTreeSet::new();
        for ((instance, requirement), counts) in &all {
            let of = |o| counts.get(&o).copied().unwrap_or(0);
            if of(Outcome::Fail) > 0 {
                failing.insert((instance.as_str(), requirement.as_str()));
            }
            if of(Outcome::Error) > 0 {
                erring.insert((instance.as_str(), requirement.as_str()));
            }
        }
        let expected_failing: BTreeSet<(&str, &str)> = [
            ("fe-2", "frontend/tls-min-version"),
            ("sched-1", "resource/within-capacity"),
            ("sched-2", "resource/within-capacity"),
            ("host-4-dom0", "compute.host.dom0/memory-reserved"),
        ]
        .into_iter()
        .collect();
        assert_eq!(failing, expected_failing);
        assert_eq!(erring, [("host-3", "compute.host/hypervisor-patched")].into_iter().collect());
    }

    #[test]
    fn failures_are_few_enough_for_one_alarm_kind_each() {
        let all = outcomes(&fleet(1, None, Duration::from_secs(30)));
        let ratio = |instance: &str, requirement: &str| {
            let counts = &all[&(instance.to_owned(), requirement.to_owned())];
            let fail = counts.get(&Outcome::Fail).copied().unwrap_or(0) as f64;
            fail / (fail + counts.get(&Outcome::Pass).copied().unwrap_or(0) as f64)
        };
        // The schedulers all fail above the 5% of deploy/alarmer.toml's ratio rule...
        for sched in ["sched-1", "sched-2"] {
            let r = ratio(sched, "resource/within-capacity");
            assert!((0.06..0.12).contains(&r), "{sched}: {r}");
        }
        // ...while the one dom0 that fails stays below it across its four peers.
        let dom0: f64 = (1..=4).map(|i| ratio(&format!("host-{i}-dom0"), "compute.host.dom0/memory-reserved")).sum::<f64>() / 4.0;
        assert!(dom0 > 0.0 && dom0 < 0.025, "{dom0}");
    }

    #[test]
    fn every_requirement_is_reported_but_those_of_the_silent_component() {
        let sims = fleet(1, None, Duration::from_secs(30));
        let all = outcomes(&sims);
        let spec = Spec::parse(EXAMPLE).unwrap();
        // Every component an agent runs for owes every requirement that applies to it: a
        // pass or a failure from one of its instances, not only skips.
        for sim in sims.iter().filter(|s| s.mode == Mode::Follow) {
            for r in spec.applicable(sim.component).requirements {
                let answered = sims.iter().filter(|s| s.component == sim.component).any(|s| {
                    all.get(&(s.instance.clone(), r.id.clone()))
                        .is_some_and(|c| c.keys().any(|o| matches!(o, Outcome::Pass | Outcome::Fail)))
                });
                assert!(answered, "{} leaves {} unanswered", sim.component, r.id);
            }
        }
        let silent: Vec<&Sim> = sims.iter().filter(|s| matches!(s.mode, Mode::Silent(_))).collect();
        assert_eq!(silent.len(), 1);
        assert_eq!(silent[0].component, "health.recovery");
        let reported: BTreeSet<&str> = all.keys().map(|(_, r)| r.as_str()).collect();
        for (path, component) in &spec.components {
            for name in component.requirements.keys() {
                let id = format!("{path}/{name}");
                assert_eq!(reported.contains(id.as_str()), path != "health.recovery", "{id}");
            }
        }
    }

    #[test]
    fn size_multiplies_the_fleet_and_keeps_one_pinned_and_one_silent() {
        for size in [1, 3] {
            let sims = fleet(size, None, Duration::from_secs(30));
            let base: u32 = BASE.iter().map(|(_, n)| n).sum();
            assert_eq!(sims.len() as u32, base * size + 2);
            let pinned: Vec<&Sim> = sims.iter().filter(|s| matches!(s.mode, Mode::Pinned(None))).collect();
            assert_eq!(pinned.len(), 1);
            assert_eq!(pinned[0].component, "frontend.throttle");
            assert_eq!(sims.iter().filter(|s| matches!(s.mode, Mode::Silent(_))).count(), 1);
            let names: BTreeSet<(&str, &str)> = sims.iter().map(|s| (s.component, s.instance.as_str())).collect();
            assert_eq!(names.len(), sims.len(), "instance names are unique per component");
        }
    }

    #[test]
    fn the_throttle_reads_its_limit_from_the_spec_it_runs() {
        let sims = fleet(1, None, Duration::from_secs(30));
        let throttle = sims.iter().find(|s| s.component == "frontend.throttle").unwrap();
        let mut params = serde_json::Map::new();
        params.insert("max_rps".into(), json!(1500));
        assert_eq!((throttle.work)(&params, 0).facts["max_rps"], 1500);
    }
}
