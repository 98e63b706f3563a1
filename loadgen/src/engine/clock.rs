//! A worker's schedule: when the warm-up ends and the run stops, its share of a
//! request budget, the open loop's due times (or the closed loop's depth), and the
//! sizes of its messages.
//!
//! Invariant: a message is admitted only before the stop and within the budget; only
//! those due after the warm-up count as sent.

use super::types::Shared;
use crate::counters::Counters;
use crate::plan::{Model, Stop};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::Instant;

/// A worker's schedule: the warm-up, the stop, its share of a request budget, the
/// open loop's due times (or the closed loop's depth) and the message sizes.
pub(crate) struct Clock {
    pub start: Instant,
    /// Warm-up ends, ns.
    pub warm_end: u64,
    /// Scheduling stops, ns: the planned stop, or earlier, so that the drain ends by the
    /// run's deadline (`--max-duration`; see [`Clock::end_by`]).
    pub stop_at: u64,
    /// The deadline brought the stop forward (a request-bound run's always is).
    pub cut: bool,
    /// Measured messages this worker should complete (request-bound runs).
    pub budget: Option<u64>,
    /// Open loop: ns between this worker's messages, and when the next is due.
    pub interval: Option<f64>,
    pub next_due: f64,
    /// Closed loop: messages in flight per connection.
    pub depth: u32,
    rng: StdRng,
    size: (u32, u32),
}

impl Clock {
    pub fn new(shared: &Shared, worker: usize, workers: usize) -> Clock {
        let plan = &shared.plan;
        let warm_end = plan.warmup.as_nanos() as u64;
        let (stop_at, budget) = match plan.stop {
            Stop::Duration(d) => (warm_end + d.as_nanos() as u64, None),
            Stop::Requests(n) => {
                let share = n / workers as u64 + u64::from((worker as u64) < n % workers as u64);
                // Bounded in time by the deadline alone (end_by): a target that stops
                // answering cannot hold the run.
                (u64::MAX, Some(share))
            }
        };
        let (interval, depth) = match plan.model {
            Model::Open { rate } => (Some(1e9 * workers as f64 / rate), 0),
            Model::Closed { depth } => (None, depth),
        };
        Clock {
            // Replaced by the common start once every worker is connected.
            start: Instant::now(),
            warm_end,
            stop_at,
            cut: false,
            budget,
            interval,
            // Workers start evenly staggered through one interval, not all at once.
            next_due: interval.map_or(0.0, |i| i * worker as f64 / workers as f64),
            depth,
            rng: StdRng::seed_from_u64(plan.seed ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            size: (plan.size.min, plan.size.max),
        }
    }

    /// Once the clock has started: brings the stop forward, if need be, so that a drain of
    /// `drain` after it ends by `deadline`.
    pub fn end_by(&mut self, deadline: std::time::Instant, drain: std::time::Duration) {
        let last = deadline.saturating_duration_since(self.start).saturating_sub(drain);
        let last = u64::try_from(last.as_nanos()).unwrap_or(u64::MAX);
        if last < self.stop_at {
            self.stop_at = last;
            self.cut = true;
        }
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Admits one more message due at `intended`: false when a request-bound run has
    /// handed out its share; counts it as sent when it falls after the warm-up.
    pub fn admit(&mut self, intended: u64, counters: &mut Counters) -> bool {
        if intended >= self.stop_at {
            return false;
        }
        if intended >= self.warm_end {
            match self.budget.as_mut() {
                Some(0) => return false,
                Some(b) => *b -= 1,
                None => {}
            }
            counters.sent += 1;
        }
        true
    }

    /// The size of the next message.
    pub fn next_size(&mut self) -> u32 {
        if self.size.0 == self.size.1 {
            self.size.0
        } else {
            self.rng.random_range(self.size.0..=self.size.1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Model;
    use std::time::Duration;

    fn shared(model: Model, stop: Stop) -> Shared {
        super::super::tests::shared(model, stop)
    }

    #[test]
    fn a_request_budget_is_shared_exactly() {
        let s = shared(Model::Closed { depth: 1 }, Stop::Requests(10));
        let budgets: Vec<_> = (0..3).map(|w| Clock::new(&s, w, 3).budget).collect();
        assert_eq!(budgets, [Some(4), Some(3), Some(3)]);
        let mut clock = Clock::new(&s, 1, 3);
        let mut counters = Counters::default();
        let warm_end = clock.warm_end;
        assert!(clock.admit(warm_end - 1, &mut counters), "warm-up messages are free");
        assert_eq!(counters.sent, 0);
        let admitted = (0..10).filter(|_| clock.admit(warm_end, &mut counters)).count();
        assert_eq!((admitted, counters.sent, clock.budget), (3, 3, Some(0)));
    }

    #[test]
    fn nothing_is_admitted_after_the_stop() {
        let s = shared(Model::Closed { depth: 1 }, Stop::Duration(Duration::from_secs(2)));
        let mut clock = Clock::new(&s, 0, 1);
        let mut counters = Counters::default();
        assert_eq!(clock.stop_at, 3_000_000_000, "warm-up, then the duration");
        assert!(clock.admit(clock.stop_at - 1, &mut counters));
        assert!(!clock.admit(clock.stop_at, &mut counters));
        assert_eq!(counters.sent, 1);
    }

    /// The deadline brings the stop forward, leaving room for the drain; a stop well
    /// before it stays where it was.
    #[test]
    fn the_deadline_brings_the_stop_forward() {
        let second = Duration::from_secs(1);
        let s = shared(Model::Closed { depth: 1 }, Stop::Duration(Duration::from_secs(2)));
        let mut clock = Clock::new(&s, 0, 1);
        clock.end_by(clock.start + 10 * second, second);
        assert_eq!((clock.stop_at, clock.cut), (3_000_000_000, false));
        clock.end_by(clock.start + 2 * second + second / 2, second);
        assert_eq!((clock.stop_at, clock.cut), (1_500_000_000, true));
        clock.end_by(clock.start, second);
        assert_eq!(clock.stop_at, 0, "a deadline already past stops at once");
        let s = shared(Model::Closed { depth: 1 }, Stop::Requests(10));
        let mut clock = Clock::new(&s, 0, 1);
        clock.end_by(clock.start + 5 * second, second);
        assert_eq!(
            (clock.stop_at, clock.cut),
            (4_000_000_000, true),
            "a request-bound run stops by its deadline"
        );
    }

    #[test]
    fn open_loop_workers_start_staggered() {
        let s = shared(Model::Open { rate: 3000.0 }, Stop::Duration(Duration::from_secs(1)));
        let clocks: Vec<_> = (0..3).map(|w| Clock::new(&s, w, 3)).collect();
        let interval = 1e9 * 3.0 / 3000.0;
        for (w, c) in clocks.iter().enumerate() {
            assert_eq!(c.interval, Some(interval));
            assert_eq!(c.depth, 0);
            assert!((c.next_due - interval * w as f64 / 3.0).abs() < 1e-6, "worker {w}: {}", c.next_due);
        }
    }
}
