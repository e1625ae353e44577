//! A sliding time window of pass/fail counts, kept as a short run of time buckets.
//!
//! Time is always passed in (`now`, milliseconds): nothing here reads the clock, so the
//! same feed gives the same answer in a unit test, a replay after a restart, and live.
//! A count leaves the window when its whole bucket is older than the span, so edges are
//! exact to one bucket (a twentieth of the span, at least 10 ms).

use std::collections::VecDeque;

use specaudit_core::record::Outcome;

/// Passes and fails inside a window; errors and skips are not samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pass: u64,
    pub fail: u64,
}

impl Counts {
    pub fn samples(&self) -> u64 {
        self.pass + self.fail
    }

    pub fn failure_ratio(&self) -> f64 {
        if self.samples() == 0 {
            0.0
        } else {
            self.fail as f64 / self.samples() as f64
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    start: i64,
    pass: u32,
    fail: u32,
}

/// Counts of the last `span` milliseconds.
#[derive(Debug, Clone)]
pub struct Window {
    span: i64,
    width: i64,
    buckets: VecDeque<Bucket>,
    total: Counts,
}

/// Buckets per span: enough for sharp edges, few enough for 100,000 groups.
const BUCKETS_PER_SPAN: i64 = 20;

impl Window {
    pub fn new(span_ms: i64) -> Window {
        let span = span_ms.max(1);
        Window { span, width: (span / BUCKETS_PER_SPAN).max(10), buckets: VecDeque::new(), total: Counts::default() }
    }

    /// Adds `count` outcomes seen at `ts`; a timestamp from the future counts as `now`,
    /// one older than the window is ignored. A bucket holds at most `u32::MAX` of each
    /// outcome; what does not fit is not counted.
    pub fn add(&mut self, ts: i64, outcome: Outcome, count: i64, now: i64) {
        let ts = ts.min(now);
        if ts <= now - self.span {
            return;
        }
        let count = count.clamp(1, u32::MAX as i64) as u32;
        let start = ts.div_euclid(self.width) * self.width;
        let index = match self.buckets.iter().rposition(|b| b.start <= start) {
            Some(i) if self.buckets[i].start == start => i,
            found => {
                let at = found.map_or(0, |i| i + 1);
                self.buckets.insert(at, Bucket { start, pass: 0, fail: 0 });
                at
            }
        };
        let bucket = &mut self.buckets[index];
        let slots = match outcome {
            Outcome::Pass => Some((&mut bucket.pass, &mut self.total.pass)),
            Outcome::Fail => Some((&mut bucket.fail, &mut self.total.fail)),
            Outcome::Error | Outcome::Skip => None,
        };
        if let Some((slot, total)) = slots {
            // The total gains only what the bucket did, so the bucket's expiry takes it
            // all back out.
            let after = slot.saturating_add(count);
            *total += u64::from(after - *slot);
            *slot = after;
        }
        self.expire(now);
    }

    /// Drops the buckets that have left the window.
    pub fn expire(&mut self, now: i64) {
        while let Some(first) = self.buckets.front() {
            if first.start + self.width > now - self.span {
                break;
            }
            self.total.pass -= u64::from(first.pass);
            self.total.fail -= u64::from(first.fail);
            self.buckets.pop_front();
        }
    }

    /// The counts inside the window at `now`.
    pub fn counts(&mut self, now: i64) -> Counts {
        self.expire(now);
        self.total
    }

    /// Whether nothing is left in the window (the group can be forgotten).
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_enter_and_leave_with_time() {
        let mut w = Window::new(10_000);
        w.add(1_000, Outcome::Fail, 1, 1_000);
        w.add(2_000, Outcome::Pass, 5, 2_000);
        w.add(2_100, Outcome::Error, 1, 2_100);
        assert_eq!(w.counts(2_100), Counts { pass: 5, fail: 1 });
        // The failure's bucket [1000, 1500) leaves once it is entirely older than 10 s.
        assert_eq!(w.counts(11_400), Counts { pass: 5, fail: 1 });
        assert_eq!(w.counts(11_500), Counts { pass: 5, fail: 0 });
        assert_eq!(w.counts(12_500), Counts::default());
        assert!(w.is_empty());
    }

    #[test]
    fn late_and_future_timestamps_are_bounded() {
        let mut w = Window::new(1_000);
        w.add(0, Outcome::Fail, 1, 5_000);
        assert_eq!(w.counts(5_000).fail, 0, "older than the window");
        w.add(9_000, Outcome::Fail, 1, 5_000);
        assert_eq!(w.counts(5_000).fail, 1, "future counts as now");
        // Out of order inside the window still lands.
        w.add(4_500, Outcome::Fail, 2, 5_000);
        assert_eq!(w.counts(5_000).fail, 3);
        assert_eq!(w.counts(5_940).fail, 1);
    }

    #[test]
    fn a_full_bucket_leaves_nothing_behind_when_it_expires() {
        let mut w = Window::new(1_000);
        w.add(0, Outcome::Fail, i64::MAX, 0);
        w.add(0, Outcome::Fail, 5, 0);
        w.add(0, Outcome::Pass, 1, 0);
        assert_eq!(w.counts(0), Counts { pass: 1, fail: u64::from(u32::MAX) }, "a bucket holds at most u32::MAX");
        assert_eq!(w.counts(1_050), Counts::default());
    }

    #[test]
    fn ratio_of_an_empty_window_is_zero() {
        assert_eq!(Counts::default().failure_ratio(), 0.0);
        assert_eq!(Counts { pass: 3, fail: 1 }.failure_ratio(), 0.25);
    }
}
