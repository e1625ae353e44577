//! The evaluator: assertions, heartbeats and specs in; alarm transitions out.
//!
//! It holds one window per (rule, group), what the specs expect, when each expected
//! requirement was last heard of, and the spec versions agents run. Time is passed in,
//! so tests drive it with explicit clocks and the live service with the wall clock; a
//! replay after a restart feeds the same records and reaches the same state.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use specaudit_core::record::{AlarmEvent, Assertion, Heartbeat, Outcome, Severity, SpecInUse, SpecVersion};
use specaudit_core::spec::Spec;

use crate::alarm::{Alarms, Input, Transition};
use crate::conditions::{Condition, Finding, Judge};
use crate::routes::Router;
use crate::rules::{GroupKey, Rule, RuleError};
use crate::selector::{component_under, Subject};
use crate::waivers::Waiver;
use crate::window::Window;

/// A group's values by label, as in the alert.
type Values = BTreeMap<String, String>;
/// A time-watching rule's verdict on one group.
type Verdict = (Values, Severity, Option<Finding>);
/// The agents of a group still on an old version: (agent, its version, the latest).
type Stale = Vec<(String, i64, i64)>;

/// What the evaluator is configured with.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub rules: Vec<Rule>,
    pub router: Router,
    pub waivers: Vec<Waiver>,
    /// Take the `alarms:` policies of specs as rules too.
    pub spec_rules: bool,
    /// An agent not heard of for this long is gone (ms).
    pub agent_timeout_ms: i64,
}

#[derive(Debug)]
enum Data {
    Total(Window),
    PerInstance(BTreeMap<String, Window>),
}

#[derive(Debug)]
struct Group {
    rule: Arc<Rule>,
    fingerprint: String,
    /// Alert labels: alertname, severity, the group's values, the rule's labels.
    labels: BTreeMap<String, String>,
    severity: Severity,
    data: Data,
    message: String,
}

#[derive(Debug)]
struct Expected {
    component: String,
    requirement: String,
    severity: Severity,
    /// Since when the spec has had this requirement without a break (silence counts from
    /// here): from spec-history, else from when the alarmer first saw it expected.
    since: i64,
}

/// When each requirement came into its spec, folded from spec-history in order. The
/// compacted specs topic keeps only the latest version of a spec, whose time says nothing
/// of how long its requirements have been expected.
#[derive(Debug, Default)]
pub struct History {
    /// spec → (latest version folded, requirement → since when it has been in the spec).
    specs: HashMap<String, (i64, HashMap<String, i64>)>,
}

impl History {
    /// Folds in the next version of a spec; versions of a spec come in order, a repeat of
    /// an older one changes nothing.
    pub fn add(&mut self, version: &SpecVersion) {
        if self.specs.get(&version.spec).is_some_and(|(v, _)| *v >= version.version) {
            return;
        }
        if version.deleted {
            // Deleted: a requirement of a spec published again is new.
            self.specs.remove(&version.spec);
            return;
        }
        // Unreadable: never published so (a spec is validated first); the versions around
        // it decide.
        let Some(requirements) = requirement_ids(&version.document) else { return };
        let old = self.specs.remove(&version.spec).map(|(_, since)| since).unwrap_or_default();
        let since = requirements
            .into_iter()
            .map(|r| {
                let ts = old.get(&r).copied().unwrap_or(version.ts);
                (r, ts)
            })
            .collect();
        self.specs.insert(version.spec.clone(), (version.version, since));
    }

    /// The specs it knows of.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

/// The requirement ids of a spec document, read without validating it: history needs the
/// names alone, and a big history is read faster so.
fn requirement_ids(document: &str) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Document {
        #[serde(default)]
        components: BTreeMap<String, Component>,
    }
    #[derive(serde::Deserialize)]
    struct Component {
        #[serde(default)]
        requirements: BTreeMap<String, serde::de::IgnoredAny>,
    }
    let document: Document = serde_json::from_str(document).ok()?;
    let ids = document.components.into_iter().flat_map(|(component, c)| c.requirements.into_keys().map(move |r| format!("{component}/{r}")));
    Some(ids.collect())
}

#[derive(Debug)]
struct SpecState {
    version: i64,
    ts: i64,
    expected: Vec<Expected>,
}

#[derive(Debug)]
struct Agent {
    component: String,
    instance: String,
    ts: i64,
    specs: Vec<SpecInUse>,
    labels: BTreeMap<String, String>,
}

/// The whole evaluation state of one alarmer.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Arc<Rule>>,
    spec_rules: HashMap<String, Vec<Arc<Rule>>>,
    take_spec_rules: bool,
    groups: HashMap<String, Group>,
    touched: HashSet<String>,
    specs: HashMap<String, SpecState>,
    /// What spec-history says of the specs not applied yet (see [`Engine::history`]).
    history: History,
    /// spec → requirement → last assertion ts.
    seen: HashMap<String, HashMap<String, i64>>,
    agents: HashMap<String, Agent>,
    agent_timeout_ms: i64,
    alarms: Alarms,
    /// The groups this copy evaluates; `None`: all of them (a single copy, or tests).
    shards: Option<Shards>,
    /// Group keys seen to belong to other copies, so their fingerprint is hashed once.
    foreign: HashSet<String>,
}

/// Most group keys of other copies remembered (see [`Engine::assertion`]).
const FOREIGN_KEYS: usize = 100_000;

/// The shards a copy of the alarmer owns. Every group (rule + values) has one shard, a
/// function of its fingerprint alone, so all copies agree on its owner without talking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shards {
    pub count: u32,
    pub owned: HashSet<i32>,
}

impl Shards {
    pub fn owns(&self, fingerprint: &str) -> bool {
        self.owned.contains(&shard_of(fingerprint, self.count))
    }
}

/// The shard of a fingerprint among `count`.
pub fn shard_of(fingerprint: &str, count: u32) -> i32 {
    let hash = fingerprint.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0);
    (hash % u64::from(count.max(1))) as i32
}

fn owns(shards: &Option<Shards>, fingerprint: &str) -> bool {
    shards.as_ref().is_none_or(|s| s.owns(fingerprint))
}

/// Stable id of an alarm: its rule and its group's values.
pub fn fingerprint(rule_id: &str, group: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    hash.update(rule_id.as_bytes());
    for (k, v) in group {
        hash.update([0]);
        hash.update(k.as_bytes());
        hash.update([1]);
        hash.update(v.as_bytes());
    }
    hex::encode(&hash.finalize()[..8])
}

fn alert_labels(rule: &Rule, group: &BTreeMap<String, String>, severity: Severity) -> BTreeMap<String, String> {
    let mut labels = rule.labels.clone();
    labels.extend(group.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("severity".into(), severity.as_str().into());
    labels
}

fn input<'a>(rule: &'a Rule, fingerprint: &'a str, labels: BTreeMap<String, String>, severity: Severity, message: &'a str) -> Input<'a> {
    Input { fingerprint, rule_id: &rule.id, rule_name: &rule.name, hold_ms: rule.hold_ms, labels, severity, message }
}

fn group_input(group: &Group) -> Input<'_> {
    input(&group.rule, &group.fingerprint, group.labels.clone(), group.severity, &group.message)
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            rules: config.rules.into_iter().map(Arc::new).collect(),
            spec_rules: HashMap::new(),
            take_spec_rules: config.spec_rules,
            groups: HashMap::new(),
            touched: HashSet::new(),
            specs: HashMap::new(),
            history: History::default(),
            seen: HashMap::new(),
            agents: HashMap::new(),
            agent_timeout_ms: config.agent_timeout_ms.max(1),
            alarms: Alarms::new(config.router, config.waivers),
            shards: None,
            foreign: HashSet::new(),
        }
    }

    /// Restores the alarms from the alarm log (see [`Alarms::recover`]).
    pub fn recover(&mut self, events: impl IntoIterator<Item = AlarmEvent>, now: i64) {
        self.alarms.recover(events, now);
    }

    /// Starts over after a rebalance, keeping only the specs: from now on only the groups
    /// of `shards` are evaluated; the windows are replayed and the alarms read from the log
    /// again, keeping those of `shards` (the others belong to other copies).
    pub fn reassigned(&mut self, events: impl IntoIterator<Item = AlarmEvent>, shards: Shards, now: i64) {
        self.groups.clear();
        self.touched.clear();
        self.foreign.clear();
        self.seen.clear();
        self.agents.clear();
        self.alarms.clear();
        self.alarms.recover(events, now);
        self.alarms.retain_owned(|fp| shards.owns(fp));
        self.shards = Some(shards);
    }

    /// How far back the topics must be replayed to judge the present (ms).
    pub fn lookback_ms(&self) -> i64 {
        self.all_rules().map(|r| r.lookback_ms()).chain([self.agent_timeout_ms]).max().unwrap_or(0)
    }

    fn all_rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.rules.iter().chain(self.spec_rules.values().flatten())
    }

    /// (pending, firing, waived) alarms.
    pub fn alarm_counts(&self) -> (usize, usize, usize) {
        self.alarms.counts()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Takes what spec-history says of when requirements came into their specs, before
    /// the first versions are applied: each spec's first version applied takes its part.
    pub fn history(&mut self, history: History) {
        self.history = history;
    }

    /// Takes a new spec version: what it expects, and its alarm policies. Returns the
    /// policies that were skipped as invalid.
    pub fn spec(&mut self, version: &SpecVersion, now: i64) -> Vec<RuleError> {
        let name = version.spec.clone();
        // The history up to this version or later; an older one could miss a requirement
        // removed and added again since.
        let history = self.history.specs.remove(&name).filter(|(v, _)| *v >= version.version).map(|(_, since)| since);
        if version.deleted {
            self.specs.remove(&name);
            self.spec_rules.remove(&name);
            return Vec::new();
        }
        let spec = match Spec::from_json(&version.document) {
            Ok(spec) => spec,
            Err(error) => {
                return vec![RuleError { rule: format!("spec/{name}"), problem: format!("spec cannot be read: {error}") }]
            }
        };
        let old = self.specs.remove(&name);
        let since_of = |requirement: &str| {
            old.as_ref()
                .and_then(|s| s.expected.iter().find(|e| e.requirement == requirement))
                .map(|e| e.since)
                .or_else(|| history.as_ref().and_then(|h| h.get(requirement)).map(|ts| (*ts).min(now)))
                .unwrap_or(version.ts.min(now))
        };
        let mut expected = Vec::new();
        for (component, body) in &spec.components {
            for (req_name, requirement) in &body.requirements {
                let id = format!("{component}/{req_name}");
                let since = since_of(&id);
                expected.push(Expected { component: component.clone(), requirement: id, severity: requirement.severity(), since });
            }
        }
        // A version stamped in the future landed when it arrived.
        self.specs.insert(name.clone(), SpecState { version: version.version, ts: version.ts.min(now), expected });
        let mut skipped = Vec::new();
        if self.take_spec_rules {
            let mut rules = Vec::new();
            for (i, policy) in spec.alarms.iter().enumerate() {
                match Rule::from_policy(&name, i, policy) {
                    Ok(rule) => rules.push(Arc::new(rule)),
                    Err(error) => skipped.push(error),
                }
            }
            // Groups of a policy that changed start afresh under the new rule.
            if let Some(old) = self.spec_rules.get(&name) {
                let changed: HashSet<&str> =
                    old.iter().filter(|o| !rules.iter().any(|n| n == *o)).map(|o| o.id.as_str()).collect();
                self.groups.retain(|_, g| !changed.contains(g.rule.id.as_str()));
            }
            self.spec_rules.insert(name, rules);
        }
        skipped
    }

    /// Takes an agent's heartbeat; a timestamp from the future counts as `now`.
    pub fn heartbeat(&mut self, hb: &Heartbeat, now: i64) {
        // An agent's clock running ahead must not make its later, correct heartbeats look
        // older, keep it alive past its timeout, or prove staleness early.
        let ts = hb.ts.min(now);
        let newer = self.agents.get(&hb.agent_id).is_none_or(|a| a.ts <= ts);
        if newer {
            self.agents.insert(
                hb.agent_id.clone(),
                Agent {
                    component: hb.component.clone(),
                    instance: hb.instance.clone(),
                    ts,
                    specs: hb.specs.clone(),
                    labels: hb.labels.clone(),
                },
            );
        }
    }

    /// Takes an assertion into the windows of every rule that selects it, for the groups
    /// this copy owns. A timestamp from the future counts as `now`.
    pub fn assertion(&mut self, a: &Assertion, now: i64) {
        // A clock running ahead must not hide a later silence.
        let heard = a.ts.min(now);
        let seen = self.seen.entry(a.spec.clone()).or_default();
        match seen.get_mut(&a.requirement) {
            Some(ts) => *ts = (*ts).max(heard),
            None => {
                seen.insert(a.requirement.clone(), heard);
            }
        }
        let subject = Subject {
            spec: &a.spec,
            component: &a.component,
            requirement: &a.requirement,
            severity: a.severity,
            labels: &a.labels,
        };
        let spec_rules = self.spec_rules.get(&a.spec).map(Vec::as_slice).unwrap_or(&[]);
        for rule in self.rules.iter().chain(spec_rules) {
            if !rule.condition.uses_window() || !rule.selector.matches(&subject) {
                continue;
            }
            let mut key = rule.id.clone();
            for k in &rule.group_by {
                key.push('\u{1f}');
                key.push_str(group_value(k, a));
            }
            if self.foreign.contains(&key) {
                continue;
            }
            let group = match self.groups.entry(key.clone()) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let values: BTreeMap<String, String> =
                        rule.group_by.iter().map(|k| (k.label().to_owned(), group_value(k, a).to_owned())).collect();
                    let fingerprint = fingerprint(&rule.id, &values);
                    if !owns(&self.shards, &fingerprint) {
                        self.foreign.insert(key);
                        continue;
                    }
                    let severity = rule.severity.unwrap_or(a.severity);
                    entry.insert(Group {
                        fingerprint,
                        labels: alert_labels(rule, &values, severity),
                        severity,
                        rule: rule.clone(),
                        data: match rule.condition {
                            Condition::Outliers { .. } => Data::PerInstance(BTreeMap::new()),
                            _ => Data::Total(Window::new(rule.window_ms)),
                        },
                        message: String::new(),
                    })
                }
            };
            match &mut group.data {
                Data::Total(w) => w.add(a.ts, a.outcome, a.count, now),
                Data::PerInstance(map) => match map.get_mut(&a.instance) {
                    Some(w) => w.add(a.ts, a.outcome, a.count, now),
                    None => {
                        let mut w = Window::new(rule.window_ms);
                        w.add(a.ts, a.outcome, a.count, now);
                        map.insert(a.instance.clone(), w);
                    }
                },
            }
            if a.outcome == Outcome::Fail && !a.message.is_empty() {
                a.message.clone_into(&mut group.message);
            }
            self.touched.insert(key);
        }
    }

    /// Evaluates only the groups that took assertions since the last evaluation: the fast
    /// path that notifies within milliseconds of a failure arriving.
    pub fn evaluate_touched(&mut self, now: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        for key in std::mem::take(&mut self.touched) {
            if let Some(group) = self.groups.get_mut(&key) {
                let finding = judge(group, now);
                self.alarms.step(group_input(group), finding, now, &mut out);
            }
        }
        out
    }

    /// Evaluates everything: windows that emptied, silence, stale versions, alarms whose
    /// group is gone, and repeats due.
    pub fn evaluate(&mut self, now: i64) -> Vec<Transition> {
        self.touched.clear();
        if self.foreign.len() > FOREIGN_KEYS {
            // Other copies' groups come and go: bound what is remembered of them.
            self.foreign.clear();
        }
        let mut out = Vec::new();
        let mut visited: HashSet<String> = HashSet::new();
        let mut empty = Vec::new();
        for (key, group) in &mut self.groups {
            let finding = judge(group, now);
            self.alarms.step(group_input(group), finding, now, &mut out);
            visited.insert(group.fingerprint.clone());
            let idle = match &group.data {
                Data::Total(w) => w.is_empty(),
                // `judge` dropped the instances whose window emptied.
                Data::PerInstance(map) => map.is_empty(),
            };
            if idle && self.alarms.phase(&group.fingerprint).is_none() {
                empty.push(key.clone());
            }
        }
        for key in empty {
            self.groups.remove(&key);
        }
        self.agents.retain(|_, a| now - a.ts <= self.agent_timeout_ms);
        let rules: Vec<Arc<Rule>> = self.all_rules().filter(|r| !r.condition.uses_window()).cloned().collect();
        for rule in rules {
            let findings = match rule.condition {
                Condition::SilentFor(_) => self.silences(&rule, now),
                _ => self.stale_agents(&rule),
            };
            for (values, severity, finding) in findings {
                let fp = fingerprint(&rule.id, &values);
                if !owns(&self.shards, &fp) {
                    continue;
                }
                let labels = alert_labels(&rule, &values, severity);
                self.alarms.step(input(&rule, &fp, labels, severity, ""), finding, now, &mut out);
                visited.insert(fp);
            }
        }
        // Alarms no group speaks for any more (rule removed, group emptied, recovered
        // from the log with nothing left in the replayed window): their condition is gone.
        for fp in self.alarms.fingerprints() {
            if !visited.contains(&fp) {
                let input = Input {
                    fingerprint: &fp,
                    rule_id: "",
                    rule_name: "",
                    hold_ms: 0,
                    labels: BTreeMap::new(),
                    severity: Severity::default(),
                    message: "",
                };
                self.alarms.step(input, None, now, &mut out);
            }
        }
        self.alarms.repeats(now, &mut out);
        out
    }

    /// Per silence group: its values, severity, and the finding if silent long enough.
    fn silences(&self, rule: &Rule, now: i64) -> Vec<Verdict> {
        let mut groups: BTreeMap<BTreeMap<String, String>, (Severity, i64)> = BTreeMap::new();
        for (spec, state) in &self.specs {
            let seen = self.seen.get(spec);
            for item in &state.expected {
                let labels = BTreeMap::new();
                let subject = Subject {
                    spec,
                    component: &item.component,
                    requirement: &item.requirement,
                    severity: item.severity,
                    labels: &labels,
                };
                if !rule.selector.matches(&subject) {
                    continue;
                }
                let last = seen.and_then(|s| s.get(&item.requirement)).copied().unwrap_or(i64::MIN).max(item.since);
                let silent = now - last;
                let values: BTreeMap<String, String> = rule
                    .group_by
                    .iter()
                    .map(|k| {
                        let v = match k {
                            GroupKey::Spec => spec.as_str(),
                            GroupKey::Component => item.component.as_str(),
                            _ => item.requirement.as_str(),
                        };
                        (k.label().to_owned(), v.to_owned())
                    })
                    .collect();
                let entry = groups.entry(values).or_insert((item.severity, i64::MAX));
                entry.0 = entry.0.min(item.severity); // Critical sorts first: the gravest
                entry.1 = entry.1.min(silent);
            }
        }
        groups
            .into_iter()
            .map(|(values, (severity, silent))| {
                (values, rule.severity.unwrap_or(severity), rule.condition.check_silence(silent))
            })
            .collect()
    }

    /// Per group of agents: the agents still on an old version `D` after a new one landed,
    /// proven by a heartbeat sent at least `D` after it.
    fn stale_agents(&self, rule: &Rule) -> Vec<Verdict> {
        let Condition::StaleVersionFor(limit) = rule.condition else { return Vec::new() };
        let mut groups: BTreeMap<Values, (Severity, Stale)> = BTreeMap::new();
        for (agent_id, agent) in &self.agents {
            for in_use in &agent.specs {
                let Some(latest) = self.specs.get(&in_use.spec) else { continue };
                let Some(severity) = agent_severity(rule, &in_use.spec, agent, latest) else { continue };
                let values: BTreeMap<String, String> = rule
                    .group_by
                    .iter()
                    .map(|k| {
                        let v = match k {
                            GroupKey::Spec => in_use.spec.as_str(),
                            GroupKey::Component => agent.component.as_str(),
                            _ => agent.instance.as_str(),
                        };
                        (k.label().to_owned(), v.to_owned())
                    })
                    .collect();
                let (gravest, stale) = groups.entry(values).or_insert((severity, Vec::new()));
                *gravest = (*gravest).min(severity); // Critical sorts first
                if in_use.version < latest.version && agent.ts >= latest.ts + limit {
                    stale.push((agent_id.clone(), in_use.version, latest.version));
                }
            }
        }
        groups
            .into_iter()
            .map(|(values, (severity, stale))| (values, rule.severity.unwrap_or(severity), rule.condition.check_stale(&stale)))
            .collect()
    }
}

/// Whether `rule` selects `agent` as a runner of `spec`, and if so the severity it stands for.
///
/// An agent has no severity of its own: it stands for the requirements the latest version
/// of the spec sets its component (its own and its parents', by inheritance). So
/// `match.severity` and `match.requirement` select the agents for which one of those
/// requirements matches (`severity = "critical"`: the agents left on an old version of
/// critical requirements), and the agent stands for the gravest requirement that matched.
/// An agent the spec sets no requirement is selected only by a rule asking for no
/// severity or requirement, and counts as major (a requirement's default).
fn agent_severity(rule: &Rule, spec: &str, agent: &Agent, latest: &SpecState) -> Option<Severity> {
    let subject = |requirement, severity| Subject { spec, component: &agent.component, requirement, severity, labels: &agent.labels };
    let mut applies = latest.expected.iter().filter(|item| component_under(&agent.component, &item.component)).peekable();
    if applies.peek().is_none() {
        let unconstrained = rule.selector.severity.is_empty() && rule.selector.requirement.is_none();
        return (unconstrained && rule.selector.matches(&subject("", Severity::default()))).then_some(Severity::default());
    }
    applies.filter(|item| rule.selector.matches(&subject(&item.requirement, item.severity))).map(|item| item.severity).min()
}

fn group_value<'a>(key: &GroupKey, a: &'a Assertion) -> &'a str {
    match key {
        GroupKey::Spec => &a.spec,
        GroupKey::Component => &a.component,
        GroupKey::Requirement => &a.requirement,
        GroupKey::Instance => &a.instance,
        GroupKey::Label(name) => a.labels.get(name).map(String::as_str).unwrap_or(""),
    }
}

fn judge(group: &mut Group, now: i64) -> Option<Finding> {
    let rule = &group.rule;
    match &mut group.data {
        Data::Total(w) => rule.condition.check_counts(w.counts(now), rule.window_ms),
        Data::PerInstance(map) => {
            // Instances come and go (pod churn): forget one once its window is empty. It
            // had no samples, so the judgement is the same without it.
            map.retain(|_, w| {
                w.expire(now);
                !w.is_empty()
            });
            rule.condition.check_instances(map.iter_mut().map(|(i, w)| (i.as_str(), w.counts(now))))
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
