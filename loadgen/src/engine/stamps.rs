//! A worker's kernel timestamps (`--user-timestamps` turns them off): the conversion of
//! the kernel's realtime stamps to the run's clock, re-sampled as the run goes, the
//! plausibility check every stamp passes, and the sampling of sends whose send stamp is
//! asked for ("probes"), which split the time to a reply's arrival into the client's send
//! path and the network and server.
//!
//! Invariant: a stamp used is within the conversion's error bound of where it can be —
//! not after the moment the worker saw it, not before the message was sent; any other is
//! counted as implausible and the worker's own time is used instead. At most one probe
//! per connection is in flight, and probes start no closer than [`PROBE_GAP`] apart, so
//! their cost (a stamped send and an error-queue read each) stays a few thousand a
//! second whatever the rate.

use ringecho::tstamp::{self, KernelClock};
use std::os::fd::BorrowedFd;
use std::time::Instant;

/// How often the realtime clock is placed against the run's clock again (time keeping
/// slews realtime by up to 500 ppm: 5 µs in 10 ms).
const RESAMPLE: u64 = 10_000_000;
/// The least time between two probes of one worker.
const PROBE_GAP: u64 = 500_000;
/// The arrival of a receive whose stamp cannot be right (from the future, or before the
/// run): the replies it holds are counted as implausible and timed when seen.
pub const IMPLAUSIBLE: u64 = u64::MAX;
/// Error-queue entries read per connection and turn, at most.
const ERRQUEUE_BATCH: usize = 8;

/// What a worker knows of the kernel's stamps.
pub(crate) struct Stamps {
    /// Stamps are asked for (not `--user-timestamps`).
    pub on: bool,
    origin: Instant,
    clock: KernelClock,
    sampled_at: u64,
    next_probe: u64,
    /// Counts, for the report.
    pub tally: StampTally,
}

/// What the stamps gave over a run (saved as a document's `latency.breakdown.stamps`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StampTally {
    /// Replies timed by the kernel's receive stamp.
    pub stamped: u64,
    /// Replies the kernel gave no stamp (timed when the worker saw them).
    pub unstamped: u64,
    /// Stamps refused as implausible (timed when the worker saw them).
    pub implausible: u64,
    /// Sends that asked for their send stamp.
    pub probes: u64,
    /// Probes split into the send path and the network and server.
    pub split: u64,
    /// Probes whose send stamp never came (or came implausible).
    pub probes_missing: u64,
    /// Error-queue entries that were not a probe's send stamp.
    pub stray: u64,
    /// The largest error bound of the clock conversion, ns.
    pub bound_ns: u64,
}

impl StampTally {
    /// Adds another's (a worker's, or a saved run's: saturating, as files are untrusted).
    pub fn merge(&mut self, o: &StampTally) {
        self.stamped = self.stamped.saturating_add(o.stamped);
        self.unstamped = self.unstamped.saturating_add(o.unstamped);
        self.implausible = self.implausible.saturating_add(o.implausible);
        self.probes = self.probes.saturating_add(o.probes);
        self.split = self.split.saturating_add(o.split);
        self.probes_missing = self.probes_missing.saturating_add(o.probes_missing);
        self.stray = self.stray.saturating_add(o.stray);
        self.bound_ns = self.bound_ns.max(o.bound_ns);
    }
}

impl Stamps {
    /// A worker's stamps against the run's clock, whose zero is `origin`.
    pub fn new(on: bool, origin: Instant) -> Stamps {
        let clock = KernelClock::sample(origin);
        let tally = StampTally { bound_ns: clock.bound_ns, ..StampTally::default() };
        Stamps { on, origin, clock, sampled_at: 0, next_probe: 0, tally }
    }

    /// Once per turn: samples the clocks again when it is time.
    #[inline]
    pub fn tick(&mut self, now: u64) {
        if self.on && now >= self.sampled_at + RESAMPLE {
            self.clock = KernelClock::sample(self.origin);
            self.sampled_at = now;
            self.tally.bound_ns = self.tally.bound_ns.max(self.clock.bound_ns);
        }
    }

    /// A realtime stamp on the run's clock, if it is no later than `now` (within the
    /// bound; a little later is `now`).
    fn place(&self, real_ns: i128, now: u64) -> Option<u64> {
        let at = self.clock.since_origin(real_ns);
        let slack = i128::from(self.clock.bound_ns);
        if at < 0 || at > i128::from(now) + slack {
            return None;
        }
        Some((at as u64).min(now))
    }

    /// The arrival a receive's control messages state, on the run's clock: `None`
    /// without a stamp, [`IMPLAUSIBLE`] for one that cannot be right (counted per reply
    /// by [`Stamps::reply_at`], as every other outcome).
    #[inline]
    pub fn arrival(&self, control: &[u8], now: u64) -> Option<u64> {
        let real = tstamp::rx_stamp(control)?;
        Some(self.place(real, now).unwrap_or(IMPLAUSIBLE))
    }

    /// When the reply to a message sent at `sent` arrived: the kernel's stamp when there
    /// is a plausible one (no earlier than the send), else `now`; counted either way.
    #[inline]
    pub fn reply_at(&mut self, arrival: Option<u64>, sent: u64, now: u64) -> (u64, bool) {
        match arrival {
            Some(at) if at != IMPLAUSIBLE && at.saturating_add(self.clock.bound_ns) >= sent => {
                self.tally.stamped += 1;
                (at.max(sent), true)
            }
            Some(_) => {
                self.tally.implausible += 1;
                (now, false)
            }
            None => {
                self.tally.unstamped += 1;
                (now, false)
            }
        }
    }

    /// Whether a send at `now` may ask for its send stamp; if so, it is counted as one.
    #[inline]
    pub fn probe(&mut self, now: u64) -> bool {
        if now < self.next_probe {
            return false;
        }
        self.next_probe = now + PROBE_GAP;
        self.tally.probes += 1;
        true
    }

    /// Reads `fd`'s error queue for the send stamp keyed `key`, placed on the run's clock;
    /// other entries (a probe given up earlier) are counted and dropped.
    pub fn read_send_stamp(&mut self, fd: BorrowedFd<'_>, key: u32, now: u64) -> Option<u64> {
        let mut found = None;
        let (read, other) = tstamp::read_tx_stamps(fd, ERRQUEUE_BATCH, |k, real| {
            if k == key && found.is_none() {
                found = Some(real);
            }
        });
        let _ = other; // not a send stamp at all: stray too
        self.tally.stray += (read - usize::from(found.is_some())) as u64;
        // A stamp that cannot be placed leaves the probe without a send stamp (counted in
        // `probes_missing` when it is split); `implausible` counts replies only.
        found.and_then(|real| self.place(real, now))
    }
}

/// One probe's times on the run's clock: handed to the kernel, the kernel's send stamp,
/// the reply's arrival stamp, and when the worker saw the reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Probe {
    pub user_send: u64,
    pub tx: Option<u64>,
    pub rx: Option<u64>,
    pub seen: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamps() -> Stamps {
        let mut s = Stamps::new(true, Instant::now());
        // A clock known exactly: realtime 1e18 ns at the origin, bound 100 ns.
        s.clock = KernelClock { real_at_origin: 1_000_000_000_000_000_000, bound_ns: 100 };
        s
    }

    #[test]
    fn a_stamp_is_placed_on_the_runs_clock_or_refused() {
        let s = stamps();
        let real = |ns: i128| 1_000_000_000_000_000_000 + ns;
        assert_eq!(s.place(real(5_000), 10_000), Some(5_000));
        assert_eq!(s.place(real(10_050), 10_000), Some(10_000), "within the bound after now: now");
        assert_eq!(s.place(real(10_200), 10_000), None, "from the future");
        assert_eq!(s.place(real(-1), 10_000), None, "before the run");
        assert_eq!(s.tally.implausible, 0, "a read is not a reply: replies are counted");
    }

    #[test]
    fn a_reply_is_timed_by_its_stamp_only_when_it_can_be_right() {
        let mut s = stamps();
        assert_eq!(s.reply_at(Some(7_000), 5_000, 9_000), (7_000, true));
        assert_eq!(s.reply_at(Some(4_950), 5_000, 9_000), (5_000, true), "within the bound: the send");
        assert_eq!(s.reply_at(Some(1_000), 5_000, 9_000), (9_000, false), "before its send");
        assert_eq!(s.reply_at(None, 5_000, 9_000), (9_000, false));
        assert_eq!(s.reply_at(Some(IMPLAUSIBLE), 5_000, 9_000), (9_000, false), "a stamp from the future");
        let t = s.tally;
        assert_eq!((t.stamped, t.implausible, t.unstamped), (2, 2, 1), "each reply counted once");
    }

    #[test]
    fn probes_are_spaced() {
        let mut s = stamps();
        assert!(s.probe(1_000));
        assert!(!s.probe(1_000 + PROBE_GAP - 1));
        assert!(s.probe(1_000 + PROBE_GAP));
        assert_eq!(s.tally.probes, 2);
    }
}
