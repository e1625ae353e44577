//! The life of one alarm: pending → firing → resolved, or waived while a waiver covers it.
//! Every transition yields an [`AlarmEvent`] for the log and, where on-call must hear of
//! it, a [`Notice`] for the receivers. Pure: time comes in as `now`.

use std::collections::{BTreeMap, HashMap};

use specaudit_core::record::{AlarmEvent, AlarmState, Severity};

use crate::conditions::Finding;
use crate::routes::Router;
use crate::selector::Subject;
use crate::waivers::Waiver;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Firing,
    Waived,
}

/// Whether a notice opens or closes an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Firing,
    Resolved,
}

/// What receivers are sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub fingerprint: String,
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When the alarm started firing (ms).
    pub starts_at: i64,
    /// When it resolved (ms); none while firing.
    pub ends_at: Option<i64>,
    pub receivers: Vec<String>,
    /// A repeat of a firing alarm already notified (not a transition).
    pub repeat: bool,
}

/// The output of a step: a log record, a notice, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub event: Option<AlarmEvent>,
    pub notice: Option<Notice>,
}

/// What the evaluation knows of an alarm's group right now.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub fingerprint: &'a str,
    pub rule_id: &'a str,
    pub rule_name: &'a str,
    pub hold_ms: i64,
    /// Full alert labels: alertname, severity, the group's values and the rule's labels.
    pub labels: BTreeMap<String, String>,
    pub severity: Severity,
    /// The latest failure message of the group, for people.
    pub message: &'a str,
}

#[derive(Debug, Clone)]
struct Alarm {
    rule_id: String,
    rule_name: String,
    labels: BTreeMap<String, String>,
    severity: Severity,
    phase: Phase,
    /// Start of the current phase (for firing: `startsAt`).
    since: i64,
    finding: Finding,
    message: String,
    /// Receivers notified of the firing, with when each is due a repeat.
    receivers: Vec<(String, i64)>,
}

/// Every alarm that is not resolved, by fingerprint.
#[derive(Debug, Default)]
pub struct Alarms {
    map: HashMap<String, Alarm>,
    router: Router,
    waivers: Vec<Waiver>,
}

fn subject(labels: &BTreeMap<String, String>, severity: Severity) -> Subject<'_> {
    let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
    Subject { spec: get("spec"), component: get("component"), requirement: get("requirement"), severity, labels }
}

/// Labels written with a waived event; not part of the alert's identity.
const WAIVER_LABELS: [&str; 3] = ["waiver_author", "waiver_reason", "waiver_until"];
/// Label that events logged by earlier releases carried (the assertions partition of the
/// alarm); dropped when read, the shard is a function of the fingerprint now.
const LEGACY_PARTITION_LABEL: &str = "specaudit_partition";

impl Alarms {
    pub fn new(router: Router, waivers: Vec<Waiver>) -> Alarms {
        Alarms { map: HashMap::new(), router, waivers }
    }

    /// Rebuilds the alarms from the log, the last event per fingerprint deciding. A
    /// firing alarm comes back as notified: its firing event is written only after the
    /// receivers took it (see the crate documentation). `events` come in log order: a
    /// fingerprint's events share a partition (it is their key), so the last one read is
    /// the last one written, whatever the clocks of the copies that wrote them said.
    pub fn recover(&mut self, events: impl IntoIterator<Item = AlarmEvent>, now: i64) {
        let mut latest: HashMap<String, AlarmEvent> = HashMap::new();
        for event in events {
            latest.insert(event.fingerprint.clone(), event);
        }
        for (fingerprint, mut event) in latest {
            let phase = match event.state {
                AlarmState::Pending => Phase::Pending,
                AlarmState::Firing => Phase::Firing,
                AlarmState::Waived => Phase::Waived,
                AlarmState::Resolved => continue,
            };
            event.labels.retain(|k, _| !WAIVER_LABELS.contains(&k.as_str()));
            event.labels.remove(LEGACY_PARTITION_LABEL);
            let receivers = if phase == Phase::Firing { self.schedule(&event.labels, event.severity, event.ts, now) } else { Vec::new() };
            let rule_name = event.labels.get("alertname").cloned().unwrap_or_else(|| event.rule.clone());
            self.map.insert(
                fingerprint,
                Alarm {
                    rule_id: event.rule,
                    rule_name,
                    labels: event.labels,
                    severity: event.severity,
                    phase,
                    since: event.ts,
                    finding: Finding { value: event.value, summary: event.summary },
                    message: String::new(),
                    receivers,
                },
            );
        }
    }

    /// Forgets every alarm, silently (a rebalance: the log is read again).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Forgets, silently, the alarms whose fingerprint `owned` does not accept: another
    /// copy of the alarmer evaluates them.
    pub fn retain_owned(&mut self, owned: impl Fn(&str) -> bool) {
        self.map.retain(|fp, _| owned(fp));
    }

    /// The receivers of an alarm firing since `since`, each due its next repeat after
    /// `now`; idempotent receivers (Alertmanager) are refreshed at once.
    fn schedule(&self, labels: &BTreeMap<String, String>, severity: Severity, since: i64, now: i64) -> Vec<(String, i64)> {
        self.router
            .receivers_for(&subject(labels, severity))
            .into_iter()
            .map(|r| {
                let every = self.router.repeat_ms(&r).max(1);
                let due = if self.router.idempotent.contains(&r) {
                    now
                } else {
                    since + ((now - since).max(0) / every + 1) * every
                };
                (r, due)
            })
            .collect()
    }

    pub fn phase(&self, fingerprint: &str) -> Option<Phase> {
        self.map.get(fingerprint).map(|a| a.phase)
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    /// (pending, firing, waived).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.map.values().fold((0, 0, 0), |(p, f, w), a| match a.phase {
            Phase::Pending => (p + 1, f, w),
            Phase::Firing => (p, f + 1, w),
            Phase::Waived => (p, f, w + 1),
        })
    }

    fn waiver(&self, rule_name: &str, labels: &BTreeMap<String, String>, severity: Severity, now: i64) -> Option<&Waiver> {
        self.waivers.iter().find(|w| w.covers(rule_name, &subject(labels, severity), now))
    }

    /// Moves the alarm of `input` on, given what its condition found (`None`: it does
    /// not hold).
    pub fn step(&mut self, input: Input<'_>, finding: Option<Finding>, now: i64, out: &mut Vec<Transition>) {
        let fp = input.fingerprint;
        match (self.map.get(fp).map(|a| a.phase), finding) {
            (None, None) => {}
            (None, Some(finding)) => {
                let alarm = Alarm {
                    rule_id: input.rule_id.to_owned(),
                    rule_name: input.rule_name.to_owned(),
                    labels: input.labels,
                    severity: input.severity,
                    phase: Phase::Pending,
                    since: now,
                    finding,
                    message: input.message.to_owned(),
                    receivers: Vec::new(),
                };
                if input.hold_ms > 0 {
                    out.push(Transition { event: Some(event(fp, &alarm, AlarmState::Pending, now)), notice: None });
                    self.map.insert(fp.to_owned(), alarm);
                } else {
                    self.map.insert(fp.to_owned(), alarm);
                    self.fire(fp, now, out);
                }
            }
            (Some(phase), Some(finding)) => {
                if let Some(alarm) = self.map.get_mut(fp) {
                    alarm.finding = finding;
                    if !input.message.is_empty() {
                        input.message.clone_into(&mut alarm.message);
                    }
                }
                match phase {
                    Phase::Pending if self.map.get(fp).is_some_and(|a| now - a.since >= input.hold_ms) => {
                        self.fire(fp, now, out)
                    }
                    Phase::Pending => {}
                    Phase::Firing => self.waive_if_covered(fp, now, out),
                    Phase::Waived => {
                        let lifted = self
                            .map
                            .get(fp)
                            .is_some_and(|a| self.waiver(&a.rule_name, &a.labels, a.severity, now).is_none());
                        if lifted {
                            self.fire(fp, now, out);
                        }
                    }
                }
            }
            (Some(_), None) => self.resolve(fp, now, out),
        }
    }

    fn fire(&mut self, fp: &str, now: i64, out: &mut Vec<Transition>) {
        let Some(alarm) = self.map.get(fp) else { return };
        if let Some(waiver) = self.waiver(&alarm.rule_name, &alarm.labels, alarm.severity, now).cloned() {
            self.waive(fp, &waiver, now, out);
            return;
        }
        let receivers = self.schedule(&alarm.labels, alarm.severity, now, now);
        let Some(alarm) = self.map.get_mut(fp) else { return };
        alarm.phase = Phase::Firing;
        alarm.since = now;
        alarm.receivers = receivers;
        let names: Vec<String> = alarm.receivers.iter().map(|(r, _)| r.clone()).collect();
        out.push(Transition {
            event: Some(event(fp, alarm, AlarmState::Firing, now)),
            notice: Some(notice(fp, alarm, Status::Firing, None, names, false)),
        });
    }

    fn waive_if_covered(&mut self, fp: &str, now: i64, out: &mut Vec<Transition>) {
        let waiver = self.map.get(fp).and_then(|a| self.waiver(&a.rule_name, &a.labels, a.severity, now)).cloned();
        if let Some(waiver) = waiver {
            self.waive(fp, &waiver, now, out);
        }
    }

    /// Waives an alarm; if on-call was told it fires, they are told it no longer does.
    fn waive(&mut self, fp: &str, waiver: &Waiver, now: i64, out: &mut Vec<Transition>) {
        let Some(alarm) = self.map.get_mut(fp) else { return };
        let notice = (alarm.phase == Phase::Firing).then(|| {
            let names = std::mem::take(&mut alarm.receivers).into_iter().map(|(r, _)| r).collect();
            let mut n = notice(fp, alarm, Status::Resolved, Some(now), names, false);
            n.annotations.insert("waived_by".into(), format!("{}: {}", waiver.author, waiver.reason));
            n
        });
        alarm.phase = Phase::Waived;
        alarm.since = now;
        let mut record = event(fp, alarm, AlarmState::Waived, now);
        record.summary = format!("waived by {} until {}: {} ({})", waiver.author, waiver.until(), waiver.reason, record.summary);
        record.labels.insert("waiver_author".into(), waiver.author.clone());
        record.labels.insert("waiver_reason".into(), waiver.reason.clone());
        record.labels.insert("waiver_until".into(), waiver.until());
        out.push(Transition { event: Some(record), notice });
    }

    fn resolve(&mut self, fp: &str, now: i64, out: &mut Vec<Transition>) {
        let Some(alarm) = self.map.remove(fp) else { return };
        let notice = (alarm.phase == Phase::Firing).then(|| {
            let names = alarm.receivers.iter().map(|(r, _)| r.clone()).collect();
            notice(fp, &alarm, Status::Resolved, Some(now), names, false)
        });
        out.push(Transition { event: Some(event(fp, &alarm, AlarmState::Resolved, now)), notice });
    }

    /// Repeats of firing alarms whose receivers are due one.
    pub fn repeats(&mut self, now: i64, out: &mut Vec<Transition>) {
        for (fp, alarm) in &mut self.map {
            if alarm.phase != Phase::Firing {
                continue;
            }
            let mut due = Vec::new();
            for (receiver, next) in &mut alarm.receivers {
                if *next <= now {
                    let every = self.router.repeat_ms(receiver).max(1);
                    while *next <= now {
                        *next += every;
                    }
                    due.push(receiver.clone());
                }
            }
            if !due.is_empty() {
                out.push(Transition { event: None, notice: Some(notice(fp, alarm, Status::Firing, None, due, true)) });
            }
        }
    }
}

fn event(fp: &str, alarm: &Alarm, state: AlarmState, now: i64) -> AlarmEvent {
    let get = |k: &str| alarm.labels.get(k).cloned().unwrap_or_default();
    AlarmEvent {
        fingerprint: fp.to_owned(),
        ts: now,
        rule: alarm.rule_id.clone(),
        state,
        severity: alarm.severity,
        spec: get("spec"),
        component: get("component"),
        requirement: get("requirement"),
        summary: alarm.finding.summary.clone(),
        value: alarm.finding.value,
        labels: alarm.labels.clone(),
    }
}

fn notice(fp: &str, alarm: &Alarm, status: Status, ends_at: Option<i64>, receivers: Vec<String>, repeat: bool) -> Notice {
    let mut annotations = BTreeMap::from([
        ("summary".to_owned(), alarm.finding.summary.clone()),
        ("value".to_owned(), alarm.finding.value.to_string()),
        ("rule".to_owned(), alarm.rule_id.clone()),
    ]);
    if !alarm.message.is_empty() {
        annotations.insert("last_failure".into(), alarm.message.clone());
    }
    Notice {
        fingerprint: fp.to_owned(),
        status,
        labels: alarm.labels.clone(),
        annotations,
        starts_at: alarm.since,
        ends_at,
        receivers,
        repeat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Route;
    use crate::selector::Selector;

    fn event(state: AlarmState, ts: i64) -> AlarmEvent {
        AlarmEvent {
            fingerprint: "fp".into(),
            ts,
            rule: "fails".into(),
            state,
            severity: Severity::Major,
            spec: "svc".into(),
            component: "api".into(),
            requirement: "api/auth".into(),
            summary: String::new(),
            value: 1.0,
            labels: BTreeMap::from([("alertname".to_owned(), "fails".to_owned())]),
        }
    }

    #[test]
    fn recovery_follows_the_log_order_not_the_clocks_of_the_writers() {
        let router = Router {
            routes: vec![Route { selector: Selector::default(), receivers: vec!["hook".into()], keep_going: false }],
            repeat_ms: HashMap::from([("hook".to_owned(), 60_000)]),
            idempotent: Default::default(),
        };
        // The copy that logged the firing ran two seconds ahead of the one that resolved it.
        let mut alarms = Alarms::new(router, Vec::new());
        alarms.recover([event(AlarmState::Firing, 5_000), event(AlarmState::Resolved, 4_000)], 10_000);
        assert!(alarms.map.is_empty(), "the alarm was resolved last");
        alarms.recover([event(AlarmState::Resolved, 5_000), event(AlarmState::Firing, 4_000)], 10_000);
        assert_eq!(alarms.map.get("fp").map(|a| a.phase), Some(Phase::Firing));
    }
}
