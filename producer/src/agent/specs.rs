//! The specs an agent runs, compiled for its component: each check compiled once per
//! spec version.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use specaudit_core::check::{cel_value, CompiledCheck};
use specaudit_core::record::{Severity, SpecInUse, SpecVersion};
use specaudit_core::spec::Spec;

/// A spec name or requirement id, kept for the rest of the process, each distinct name
/// once: results carry names without reference counting, which costs on every `check`
/// and contends when many threads check the same requirement. The memory is bounded by
/// the names the specs ever used.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    match names.get(name) {
        Some(name) => name,
        None => {
            let name: &'static str = Box::leak(name.into());
            names.insert(name);
            name
        }
    }
}

/// One requirement that applies to the agent's component.
#[derive(Debug)]
pub(super) struct CompiledRequirement {
    pub(super) id: &'static str,
    pub(super) severity: Severity,
    pub(super) tasks: Option<Vec<String>>,
    /// None: the component's own code asserts it.
    pub(super) check: Option<CompiledCheck>,
    /// Outcomes counted, for rollup flushes, heartbeats and the agent's counters.
    pub(super) tally: Tally,
}

/// What one requirement has collected. A pass of a task the requirement names (or, for a
/// requirement of every task, of the first task it sees) costs one atomic add in that
/// task's slot: no lock, no lookup. So does a skip by one of the first [`SKIP_SLOTS`]
/// other tasks the component checks (every check of another task skips the requirement,
/// from every thread). Other outcomes take a lock and a lookup by the task name.
///
/// Task names come from callers (through the sidecar, from any request), so the outcomes
/// counted by name are kept for at most `max_tasks` tasks per interval; those of further
/// tasks are counted under [`OTHER_TASK`], never dropped, and the flush reports how many.
///
/// Counters only grow; a flush or a heartbeat takes what was added since the previous
/// one, so an add racing either is counted once, in this call or the next.
#[derive(Debug)]
pub(super) struct Tally {
    /// One per task the requirement names, in order; one for the first task seen when it
    /// names none.
    slots: Box<[Slot]>,
    /// Skips, one slot per task, taken by the first tasks that skip.
    skip_slots: [Slot; SKIP_SLOTS],
    every_task: bool,
    rollups: Mutex<Rollups>,
    /// Outcomes counted outside the slots.
    others: AtomicI64,
    /// The outcomes total the previous heartbeat reported up to.
    reported: AtomicI64,
    /// Fails and errors sent one by one in this interval (for the per-requirement cap).
    sent: AtomicI64,
    /// Most tasks counted by name in `rollups` per interval.
    max_tasks: usize,
}

/// The task under which a requirement rolls up the outcomes of tasks beyond its
/// `max_tasks_per_interval`.
pub const OTHER_TASK: &str = "(other)";

/// Tasks whose skips of one requirement are counted without a lock.
const SKIP_SLOTS: usize = 8;

#[derive(Debug, Default)]
struct Slot {
    task: OnceLock<Box<str>>,
    /// Passes in a pass slot, skips in a skip slot.
    count: AtomicI64,
}

impl Slot {
    /// Counts one for `task` if this slot is (or now becomes) `task`'s.
    fn count_for(&self, task: &str) -> bool {
        let taken = **self.task.get_or_init(|| task.into()) == *task;
        if taken {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// What was counted since `flushed`, which moves up to it.
    fn take(&self, flushed: &mut i64) -> Option<(&str, i64)> {
        let count = self.count.load(Ordering::Relaxed);
        let task = self.task.get().filter(|_| count > *flushed)?;
        let since = count - std::mem::replace(flushed, count);
        Some((task, since))
    }
}

#[derive(Debug, Default)]
struct Rollups {
    /// task → counts rolled up into one assertion per (task, kind) at the next flush;
    /// emptied by each flush, so it holds at most `max_tasks` tasks and [`OTHER_TASK`].
    by_task: rustc_hash::FxHashMap<Box<str>, Counts>,
    /// Outcomes counted under [`OTHER_TASK`] since the previous flush.
    over_cap: i64,
    /// Each pass slot's count at the previous flush.
    flushed: Vec<i64>,
    /// Each skip slot's count at the previous flush.
    skips_flushed: [i64; SKIP_SLOTS],
}

/// Rolled-up outcomes of one task.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) passes: i64,
    pub(super) skips: i64,
    /// Fails and errors beyond the per-requirement cap, sent as one counted assertion.
    pub(super) excess_fails: i64,
    pub(super) excess_errors: i64,
}

impl Tally {
    /// A tally for a requirement of `tasks` (None: of every task) that counts at most
    /// `max_tasks` further tasks by name per interval.
    pub(super) fn new(tasks: Option<&[String]>, max_tasks: usize) -> Tally {
        let slots: Box<[Slot]> = match tasks {
            None => Box::new([Slot::default()]),
            Some(tasks) => tasks.iter().map(|t| Slot { task: OnceLock::from(Box::from(t.as_str())), ..Slot::default() }).collect(),
        };
        Tally {
            rollups: Mutex::new(Rollups { flushed: vec![0; slots.len()], ..Rollups::default() }),
            slots,
            skip_slots: Default::default(),
            every_task: tasks.is_none(),
            others: AtomicI64::new(0),
            reported: AtomicI64::new(0),
            sent: AtomicI64::new(0),
            max_tasks,
        }
    }

    /// Counts a pass of `task`, at `index` in the requirement's tasks (see
    /// [`CompiledRequirement::task_index`]).
    #[inline]
    pub(super) fn pass(&self, task: &str, index: Option<usize>) {
        if let Some(slot) = index.and_then(|i| self.slots.get(i)) {
            // A named task's index already matched it; the first-seen slot must compare.
            if !self.every_task {
                slot.count.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if slot.count_for(task) {
                return;
            }
        }
        self.add(task, |c| c.passes += 1);
    }

    /// Counts a skip by `task`, which the requirement does not name.
    #[inline]
    pub(super) fn skip(&self, task: &str) {
        if !self.skip_slots.iter().any(|slot| slot.count_for(task)) {
            self.add(task, |c| c.skips += 1);
        }
    }

    /// Counts an outcome by task name, under the lock; under [`OTHER_TASK`] when the task
    /// is new and `max_tasks` tasks were counted by name in this interval.
    pub(super) fn add(&self, task: &str, count: impl FnOnce(&mut Counts)) {
        self.others.fetch_add(1, Ordering::Relaxed);
        let mut rollups = self.rollups.lock().unwrap_or_else(|e| e.into_inner());
        let Rollups { by_task, over_cap, .. } = &mut *rollups;
        if let Some(counts) = by_task.get_mut(task) {
            return count(counts);
        }
        let task = if by_task.len() < self.max_tasks {
            task
        } else {
            *over_cap += 1;
            OTHER_TASK
        };
        count(by_task.entry(task.into()).or_default());
    }

    /// Counts one fail or error to send now; false once `cap` of them were sent this
    /// interval (the caller then counts it with [`add`](Self::add)).
    pub(super) fn may_send(&self, cap: Option<u32>) -> bool {
        let sent = self.sent.fetch_add(1, Ordering::Relaxed);
        let may = cap.is_none_or(|cap| sent < i64::from(cap));
        if may {
            self.others.fetch_add(1, Ordering::Relaxed);
        }
        may
    }

    /// Takes what was collected since the previous drain, for a rollup flush, and how many
    /// of those outcomes were counted under [`OTHER_TASK`].
    pub(super) fn drain(&self) -> (Vec<(String, Counts)>, i64) {
        self.sent.store(0, Ordering::Relaxed);
        let mut rollups = self.rollups.lock().unwrap_or_else(|e| e.into_inner());
        let Rollups { by_task, over_cap, flushed, skips_flushed } = &mut *rollups;
        let mut out: Vec<(String, Counts)> = Vec::new();
        for (slot, flushed) in self.slots.iter().zip(flushed.iter_mut()) {
            if let Some((task, passes)) = slot.take(flushed) {
                out.push((task.to_owned(), Counts { passes, ..Counts::default() }));
            }
        }
        for (slot, flushed) in self.skip_slots.iter().zip(skips_flushed.iter_mut()) {
            if let Some((task, skips)) = slot.take(flushed) {
                out.push((task.to_owned(), Counts { skips, ..Counts::default() }));
            }
        }
        // Emptied, not zeroed: the next interval has room for `max_tasks` tasks again.
        out.extend(by_task.drain().map(|(task, counts)| (task.into_string(), counts)));
        (out, std::mem::take(over_cap))
    }

    /// Every outcome counted since the tally was made.
    pub(super) fn outcomes(&self) -> i64 {
        let slots = self.slots.iter().chain(&self.skip_slots);
        slots.map(|s| s.count.load(Ordering::Relaxed)).sum::<i64>() + self.others.load(Ordering::Relaxed)
    }

    /// Evaluations since the previous call.
    pub(super) fn take_evaluations(&self) -> i64 {
        let total = self.outcomes();
        // fetch_max: of two racing callers, the one with the older total reports nothing.
        (total - self.reported.fetch_max(total, Ordering::Relaxed)).max(0)
    }
}

impl CompiledRequirement {
    /// Where `task` is in the requirement's tasks (0 when it names none, as it applies to
    /// every task); None when the requirement does not apply to it.
    pub(super) fn task_index(&self, task: &str) -> Option<usize> {
        match &self.tasks {
            None => Some(0),
            Some(tasks) => tasks.iter().position(|t| t == task),
        }
    }
}

/// One spec version, reduced to what applies to the component.
#[derive(Debug)]
pub(super) struct CompiledSpec {
    pub(super) name: &'static str,
    pub(super) version: i64,
    pub(super) params: Value,
    /// The params as CEL values, converted once per version.
    pub(super) cel_params: cel::Value,
    pub(super) requirements: Vec<CompiledRequirement>,
}

impl CompiledSpec {
    /// Every outcome its requirements counted.
    pub(super) fn outcomes(&self) -> i64 {
        self.requirements.iter().map(|r| r.tally.outcomes()).sum()
    }

    /// Compiles what of `version` applies to `component`, each requirement counting at most
    /// `max_tasks` tasks by name per interval; None for a delete or a spec that says
    /// nothing about the component.
    pub(super) fn compile(version: &SpecVersion, component: &str, max_tasks: usize) -> Option<Result<CompiledSpec, String>> {
        if version.deleted {
            return None;
        }
        let spec = match Spec::from_json(&version.document) {
            Ok(spec) => spec,
            Err(error) => return Some(Err(error.to_string())),
        };
        let applicable = spec.applicable(component);
        if applicable.requirements.is_empty() {
            return None;
        }
        let mut requirements = Vec::with_capacity(applicable.requirements.len());
        for r in applicable.requirements {
            let check = match r.requirement.check.as_ref().map(CompiledCheck::compile).transpose() {
                Ok(check) => check,
                Err(error) => return Some(Err(format!("{}: {error}", r.id))),
            };
            requirements.push(CompiledRequirement {
                id: intern(&r.id),
                severity: r.requirement.severity(),
                tasks: r.requirement.tasks.clone(),
                check,
                tally: Tally::new(r.requirement.tasks.as_deref(), max_tasks),
            });
        }
        let params = Value::Object(applicable.params);
        let cel_params = match cel_value(&params) {
            Ok(v) => v,
            Err(error) => return Some(Err(format!("params cannot be given to CEL: {error}"))),
        };
        Some(Ok(CompiledSpec { name: intern(&spec.spec), version: version.version, params, cel_params, requirements }))
    }
}

/// Every spec the agent runs; replaced whole when a version lands.
#[derive(Debug, Default)]
pub(super) struct SpecSet {
    pub(super) specs: Vec<Arc<CompiledSpec>>,
    /// Requirements with a check: the results of one `check`.
    pub(super) checks: usize,
}

impl SpecSet {
    pub(super) fn in_use(&self) -> Vec<SpecInUse> {
        self.specs.iter().map(|s| SpecInUse { spec: s.name.to_string(), version: s.version }).collect()
    }

    /// A new set with `name` replaced by `compiled` (or removed when None), and the
    /// version it replaced.
    pub(super) fn with(&self, name: &str, compiled: Option<Arc<CompiledSpec>>) -> (SpecSet, Option<Arc<CompiledSpec>>) {
        let replaced = self.specs.iter().find(|s| s.name == name).cloned();
        let mut specs: Vec<Arc<CompiledSpec>> = self.specs.iter().filter(|s| s.name != name).cloned().collect();
        specs.extend(compiled);
        specs.sort_by(|a, b| a.name.cmp(b.name));
        let checks = specs.iter().flat_map(|s| &s.requirements).filter(|r| r.check.is_some()).count();
        (SpecSet { specs, checks }, replaced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Runs `threads` × `per_thread` calls of `work` while the main thread drains and takes
    /// evaluations as a flush and heartbeats would; returns what all the drains and the
    /// heartbeats took.
    fn race(tally: &Tally, threads: usize, per_thread: usize, work: impl Fn(usize, usize) + Sync) -> (BTreeMap<String, Counts>, i64) {
        let mut drained: BTreeMap<String, Counts> = BTreeMap::new();
        let mut evaluations = 0;
        let mut take = |drained: &mut BTreeMap<String, Counts>| {
            for (task, c) in tally.drain().0 {
                let sum = drained.entry(task).or_default();
                sum.passes += c.passes;
                sum.skips += c.skips;
                sum.excess_fails += c.excess_fails;
                sum.excess_errors += c.excess_errors;
            }
            evaluations += tally.take_evaluations();
        };
        std::thread::scope(|s| {
            let running: Vec<_> = (0..threads).map(|t| s.spawn({
                let work = &work;
                move || (0..per_thread).for_each(|i| work(t, i))
            })).collect();
            while running.iter().any(|h| !h.is_finished()) {
                take(&mut drained);
            }
        });
        take(&mut drained);
        (drained, evaluations)
    }

    fn counts(passes: i64, skips: i64) -> Counts {
        Counts { passes, skips, ..Counts::default() }
    }

    #[test]
    fn named_tasks_count_exactly_across_threads_and_racing_drains() {
        let tally = Tally::new(Some(&["serve".to_owned(), "admin".to_owned()]), 100);
        let (threads, n) = (4, 50_000);
        let (drained, evaluations) = race(&tally, threads, n, |t, i| match (t + i) % 4 {
            0 | 1 => tally.pass("serve", Some(0)),
            2 => tally.pass("admin", Some(1)),
            // A pass of a task the requirement does not name (from `assert`) and a skip.
            _ if i % 2 == 0 => tally.pass("other", None),
            _ => tally.add("other", |c| c.skips += 1),
        });
        let total = (threads * n) as i64;
        let expected: BTreeMap<String, Counts> =
            [("admin".to_owned(), counts(total / 4, 0)), ("other".to_owned(), counts(total / 8, total / 8)), ("serve".to_owned(), counts(total / 2, 0))]
                .into_iter()
                .collect();
        assert_eq!(drained, expected);
        assert_eq!(evaluations, total);
        assert_eq!(tally.outcomes(), total);
        assert!(tally.drain().0.is_empty());
    }

    #[test]
    fn skips_by_more_tasks_than_there_are_skip_slots_count_exactly_across_threads() {
        let tally = Tally::new(Some(&["backup".to_owned()]), 100);
        let tasks: Vec<String> = (0..SKIP_SLOTS + 4).map(|i| format!("task-{i}")).collect();
        let (threads, n) = (4, 24_000);
        let (drained, evaluations) = race(&tally, threads, n, |t, i| tally.skip(&tasks[(t + i) % tasks.len()]));
        let total = (threads * n) as i64;
        let each = total / tasks.len() as i64;
        let expected: BTreeMap<String, Counts> = tasks.iter().map(|t| (t.clone(), counts(0, each))).collect();
        assert_eq!(drained, expected);
        assert_eq!(evaluations, total);
        assert_eq!(tally.outcomes(), total);
        assert!(tally.drain().0.is_empty());
    }

    #[test]
    fn a_requirement_of_every_task_counts_its_first_task_in_the_slot_and_the_rest_by_name() {
        let tally = Tally::new(None, 100);
        let (threads, n) = (4, 50_000);
        let (drained, evaluations) = race(&tally, threads, n, |t, i| tally.pass(if (t + i) % 2 == 0 { "a" } else { "b" }, Some(0)));
        let total = (threads * n) as i64;
        let expected: BTreeMap<String, Counts> = [("a".to_owned(), counts(total / 2, 0)), ("b".to_owned(), counts(total / 2, 0))].into_iter().collect();
        assert_eq!(drained, expected);
        assert_eq!(evaluations, total);
    }

    #[test]
    fn fails_within_the_cap_are_sent_and_counted_as_evaluations() {
        let tally = Tally::new(Some(&["serve".to_owned()]), 100);
        let sent = (0..5).filter(|_| tally.may_send(Some(3))).count();
        for _ in sent..5 {
            tally.add("serve", |c| c.excess_fails += 1);
        }
        assert_eq!(sent, 3);
        assert_eq!(tally.drain(), (vec![("serve".to_owned(), Counts { excess_fails: 2, ..Counts::default() })], 0));
        assert_eq!(tally.take_evaluations(), 5);
        assert_eq!(tally.take_evaluations(), 0);
        // The cap starts again with each flush.
        assert!(tally.may_send(Some(3)));
    }

    #[test]
    fn tasks_beyond_max_tasks_in_one_interval_are_counted_under_other_and_each_flush_makes_room_again() {
        let tally = Tally::new(Some(&["serve".to_owned()]), 3);
        // The first SKIP_SLOTS tasks take the skip slots, the next 3 are counted by name,
        // the rest under OTHER_TASK: two skips each.
        let tasks: Vec<String> = (0..SKIP_SLOTS + 10).map(|i| format!("task-{i}")).collect();
        for task in tasks.iter().chain(&tasks) {
            tally.skip(task);
        }
        // A task already counted by name stays so; a pass of a new one (from `assert`) goes
        // under OTHER_TASK too.
        tally.skip(&tasks[SKIP_SLOTS]);
        tally.pass("asserted", None);
        let (drained, over_cap) = tally.drain();
        let drained: BTreeMap<String, Counts> = drained.into_iter().collect();
        let mut expected: BTreeMap<String, Counts> = tasks[..SKIP_SLOTS + 3].iter().map(|t| (t.clone(), counts(0, 2))).collect();
        expected.insert(tasks[SKIP_SLOTS].clone(), counts(0, 3));
        expected.insert(OTHER_TASK.to_owned(), counts(1, 14));
        assert_eq!(drained, expected);
        assert_eq!(over_cap, 15);
        assert_eq!(tally.take_evaluations(), 2 * tasks.len() as i64 + 2);

        let last = tasks.last().map(String::as_str).unwrap_or_default();
        tally.skip(last);
        assert_eq!(tally.drain(), (vec![(last.to_owned(), counts(0, 1))], 0), "the cap starts again with each flush");
    }
}
