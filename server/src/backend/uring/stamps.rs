//! `--timestamps` in a uring worker: the server's two parts timed from the kernel's
//! software stamps, recorded into the worker's [`PartStats`].
//!
//! - **wake**: a receive's kernel arrival stamp → the turn in which the worker takes its
//!   completion (the time read once per turn, after the wait). TCP and UDP receives carry
//!   the stamp in their control messages (TCP is then received with `recvmsg`); a read
//!   holding several segments carries the last one's.
//! - **send**: the turn in which the worker queues an echo → the kernel's send stamp of
//!   it. Sampled: at most one send per worker every [`SAMPLE_GAP`], read back from the
//!   socket's error queue when the send completes (on loopback, and for a datagram on most
//!   drivers, the stamp is taken before the send returns; a TCP segment held back by the
//!   peer's window or congestion control is stamped later, and that sample is counted
//!   missing). UDP sends carry a key (`SCM_TS_OPT_ID`, Linux 6.13); TCP ones none, so an
//!   older stamp read back is recognised by its time and skipped.
//!
//! For an echo queued in the turn that took its receive, wake + send is the whole time
//! the request spent in the server, kernel stamp to kernel stamp.
//!
//! Invariant: a stamp the clocks cannot place (missing, after the moment it is timed
//! against, or a part longer than [`IMPLAUSIBLE`]) is counted in `stamps_missing`, never
//! recorded.

use crate::stats::{Counters, PartStats};
use crate::tstamp::KernelClock;
use std::time::{Duration, Instant};

/// The least time between two sampled sends of one worker: at most 2,000 send stamps a
/// second, each one error-queue read.
pub(super) const SAMPLE_GAP: Duration = Duration::from_micros(500);

/// How often the realtime clock is placed on the worker's monotonic one again
/// (realtime is slewed by time keeping).
const RESAMPLE: Duration = Duration::from_secs(1);

/// A part longer than this is a stamp the clocks misplaced (a stepped clock), not a figure.
pub(super) const IMPLAUSIBLE: Duration = Duration::from_secs(10);

/// A worker's clocks and where its parts go.
pub(super) struct Stamps<'a> {
    origin: Instant,
    clock: KernelClock,
    sampled_at: Instant,
    next_sample: Instant,
    /// The key of the next sampled send.
    next_key: u32,
    parts: &'a PartStats,
}

impl<'a> Stamps<'a> {
    pub fn new(parts: &'a PartStats, now: Instant) -> Stamps<'a> {
        Stamps {
            origin: now,
            clock: KernelClock::sample(now),
            sampled_at: now,
            next_sample: now,
            next_key: 0,
            parts,
        }
    }

    /// Once per turn: places the clocks again when [`RESAMPLE`] has passed.
    pub fn tick(&mut self, now: Instant) {
        if now.duration_since(self.sampled_at) >= RESAMPLE {
            self.clock = KernelClock::sample(self.origin);
            self.sampled_at = now;
        }
    }

    /// A receive stamped `real` (ns of `CLOCK_REALTIME`, `None` when it came without one)
    /// taken in the turn of `now`.
    pub fn received(&mut self, real: Option<i128>, now: Instant, c: &mut Counters) {
        // A completion posted during the turn (an inline submission's) is stamped after
        // the turn began: it is timed against the moment it is taken instead.
        match real.and_then(|real| self.since(real, now).or_else(|| self.since(real, Instant::now()))) {
            Some(ns) => self.parts.wake.record(ns),
            None => c.stamps_missing += 1,
        }
    }

    /// Whether a send queued at `now` asks for a stamp; if so, its key.
    pub fn sample(&mut self, now: Instant) -> Option<u32> {
        if now < self.next_sample {
            return None;
        }
        self.next_sample = now + SAMPLE_GAP;
        self.next_key = self.next_key.wrapping_add(1);
        Some(self.next_key)
    }

    /// A send queued in the turn of `queued` was stamped `real` by the kernel (`None`: its
    /// stamp did not come).
    pub fn sent(&mut self, queued: Instant, real: Option<i128>, c: &mut Counters) {
        match real.and_then(|real| self.until(queued, real)) {
            Some(ns) => self.parts.send.record(ns),
            None => c.stamps_missing += 1,
        }
    }

    /// Whether a send stamp `real` is older than the send queued in the turn of `queued`
    /// (beyond the clocks' bound): an earlier sample's, read late.
    pub fn stale(&self, queued: Instant, real: i128) -> bool {
        let then = queued.saturating_duration_since(self.origin).as_nanos() as i128;
        self.clock.since_origin(real) - then < -i128::from(self.clock.bound_ns)
    }

    /// `now` − the stamp, ns; `None` when the stamp cannot be placed before `now` (within
    /// the conversion's error bound, which reads as 0) or is [`IMPLAUSIBLE`]ly far.
    fn since(&self, real: i128, now: Instant) -> Option<u64> {
        let stamp = self.clock.since_origin(real);
        let now = now.saturating_duration_since(self.origin).as_nanos() as i128;
        plausible(now - stamp, self.clock.bound_ns)
    }

    /// The stamp − `then`, ns, as [`Self::since`] the other way round.
    fn until(&self, then: Instant, real: i128) -> Option<u64> {
        let stamp = self.clock.since_origin(real);
        let then = then.saturating_duration_since(self.origin).as_nanos() as i128;
        plausible(stamp - then, self.clock.bound_ns)
    }
}

/// A part of `ns` (which the clocks place to within `bound` ns): negative beyond the
/// bound or longer than [`IMPLAUSIBLE`] is no figure; within the bound below zero reads
/// as zero.
fn plausible(ns: i128, bound: u64) -> Option<u64> {
    if ns < -i128::from(bound) || ns > IMPLAUSIBLE.as_nanos() as i128 {
        return None;
    }
    Some(ns.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_outside_the_bounds_are_no_figures() {
        assert_eq!(plausible(5_000, 100), Some(5_000));
        assert_eq!(plausible(-50, 100), Some(0), "within the error bound reads as zero");
        assert_eq!(plausible(-101, 100), None);
        assert_eq!(plausible(IMPLAUSIBLE.as_nanos() as i128 + 1, 100), None);
    }

    #[test]
    fn a_stamp_is_timed_against_the_turn_and_a_missing_one_counted() {
        let parts = PartStats::default();
        let t0 = Instant::now();
        let mut s = Stamps::new(&parts, t0);
        let mut c = Counters::default();
        // A stamp 30 µs before the turn at t0 + 1 ms.
        let turn = t0 + Duration::from_millis(1);
        let real = s.clock.real_at_origin + 1_000_000 - 30_000;
        s.received(Some(real), turn, &mut c);
        s.received(None, turn, &mut c);
        // A stamp from before the clocks existed by far: misplaced.
        s.received(Some(real - 60_000_000_000), turn, &mut c);
        let wake = parts.wake.load();
        assert_eq!((wake.count(), c.stamps_missing), (1, 2));
        let mean = wake.mean().unwrap();
        assert!((mean - 30_000.0).abs() <= s.clock.bound_ns as f64 + 1.0, "{mean}");
        // A send queued at the turn, stamped 12 µs later.
        s.sent(turn, Some(real + 30_000 + 12_000), &mut c);
        s.sent(turn, None, &mut c);
        let send = parts.send.load();
        assert_eq!((send.count(), c.stamps_missing), (1, 3));
        assert!((send.mean().unwrap() - 12_000.0).abs() <= s.clock.bound_ns as f64 + 1.0);
    }

    #[test]
    fn one_sample_per_gap_each_with_its_own_key() {
        let parts = PartStats::default();
        let t0 = Instant::now();
        let mut s = Stamps::new(&parts, t0);
        let first = s.sample(t0).unwrap();
        assert_eq!(s.sample(t0 + SAMPLE_GAP / 2), None);
        let second = s.sample(t0 + SAMPLE_GAP).unwrap();
        assert_ne!(first, second);
    }
}
