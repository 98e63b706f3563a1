//! A worker's record of what it measured: the counters, the latency histograms (from the
//! intended and from the actual send time), the per-second interval histograms and the
//! connection set-up times.
//!
//! Invariant: only messages due after the warm-up reach the histograms and the measured
//! counts; a message due during the warm-up counts as `warmup_completed` and nothing else.
//! Every interval histogram covers whole seconds from the end of the warm-up, except the
//! last, which ends at the stop. Likewise only bulk bytes moved inside the window reach
//! a [`Tally`]'s seconds, so their sums are the window's bytes (the counters keep the
//! whole run's).

use super::clock::Clock;
use super::stamps::Probe;
use super::types::{Breakdown, Live, SizeFates, Tally, WorkerResult};
use crate::counters::Counters;
use crate::hist::{self, Hist};
use std::sync::atomic::Ordering;
use std::time::Duration;

const SEC: u64 = 1_000_000_000;

pub(crate) struct Recorder {
    pub counters: Counters,
    latency: Hist,
    service: Hist,
    /// Open loop: hand-out time minus intended send time, per measured message.
    lag: Hist,
    /// Closed per-second intervals, each encoded (a few KB, not a full histogram), kept
    /// only when the plan asks for them (`--hdr-log`).
    intervals: Vec<(u64, u64, String)>,
    keep_intervals: bool,
    /// The interval histogram being filled, and when its second began (ns; 0 until the
    /// first measured answer).
    current: Hist,
    interval_start: u64,
    connect: Hist,
    worker: usize,
    last_completion: u64,
    sizes: SizeFates,
    /// Bulk connections' bytes per second and window CPU.
    pub bulk: Tally,
    /// Where the time to a reply went, by the kernel's stamps.
    pub breakdown: Breakdown,
}

impl Recorder {
    pub fn new(worker: usize, keep_intervals: bool) -> Recorder {
        Recorder {
            counters: Counters::default(),
            latency: hist::new(),
            service: hist::new(),
            lag: hist::new(),
            intervals: Vec::new(),
            keep_intervals,
            current: hist::new(),
            interval_start: 0,
            connect: hist::new(),
            worker,
            last_completion: 0,
            sizes: SizeFates::default(),
            bulk: Default::default(),
            breakdown: Breakdown::default(),
        }
    }

    /// Records a message of `size` bytes due at `intended`, sent at `sent` and answered in
    /// full at `now`: its reply arrived at `now`, or, by the kernel's stamp, at `stamped`
    /// (the time from there to `now` is the client's receive).
    #[inline]
    pub fn complete(
        &mut self,
        clock: &Clock,
        now: u64,
        stamped: Option<u64>,
        intended: u64,
        sent: u64,
        size: u64,
    ) {
        if intended < clock.warm_end {
            self.counters.warmup_completed += 1;
            return;
        }
        self.counters.completed += 1;
        self.counters.bytes_echoed += size;
        let arrived = match stamped {
            Some(at) => {
                hist::record(&mut self.breakdown.client_receive, now.saturating_sub(at));
                hist::record(&mut self.breakdown.user_to_user, now.saturating_sub(intended));
                at
            }
            None => now,
        };
        let now = arrived;
        self.last_completion = self.last_completion.max(now);
        let corrected = now.saturating_sub(intended);
        hist::record(&mut self.latency, corrected);
        hist::record(&mut self.service, now.saturating_sub(sent));
        // Answers that arrive in the drain after the stop belong to the last interval of
        // the measured window, not to a sliver of an interval after it.
        self.roll(clock, now.min(clock.stop_at.saturating_sub(1)));
        hist::record(&mut self.current, corrected);
    }

    /// A probe's parts, for a measured message (due at `intended`): the client's send path
    /// and the network and server, when both stamps came.
    pub fn split(&mut self, clock: &Clock, intended: u64, probe: &Probe) {
        let (Some(tx), Some(rx)) = (probe.tx, probe.rx) else {
            self.breakdown.tally.probes_missing += 1;
            return;
        };
        self.breakdown.tally.split += 1;
        if intended >= clock.warm_end {
            let b = &mut self.breakdown;
            hist::record(&mut b.client_send, tx.saturating_sub(probe.user_send));
            hist::record(&mut b.network_server, rx.saturating_sub(tx));
            hist::record(&mut b.probe_lag, probe.user_send.saturating_sub(intended));
            hist::record(&mut b.probe_latency, rx.saturating_sub(intended));
        }
    }

    /// Open loop: a message due at `intended` was handed out at `now` (to a connection
    /// that took it: one refused by the backlog bound is counted there, not here).
    /// Records how late, for messages due in the measured window: the client's lag
    /// behind its schedule.
    #[inline]
    pub fn handed_out(&mut self, clock: &Clock, intended: u64, now: u64) {
        if intended >= clock.warm_end && intended < clock.stop_at {
            hist::record(&mut self.lag, now.saturating_sub(intended));
        }
    }

    /// Bulk bytes `sent` and `received` at `now`: counted in the window's seconds.
    #[inline]
    pub fn moved(&mut self, clock: &Clock, now: u64, sent: u64, received: u64) {
        if now >= clock.warm_end && now < clock.stop_at {
            self.last_completion = self.last_completion.max(now);
        }
        self.bulk.moved(clock.warm_end, clock.stop_at, now, sent, received);
    }

    /// A datagram of `size` bytes was answered in full.
    #[inline]
    pub fn answered_size(&mut self, size: u32) {
        self.sizes.answered_max = self.sizes.answered_max.max(size);
    }

    /// A datagram of `size` bytes was lost.
    pub fn lost_size(&mut self, size: u32) {
        self.sizes.lost_min = self.sizes.lost_min.min(size);
    }

    /// Records a connection set up in `ns`.
    pub fn connected(&mut self, ns: u64) {
        hist::record(&mut self.connect, ns);
    }

    /// Counts a failed connect by its cause.
    pub fn connect_failed(&mut self, e: &std::io::Error) {
        let c = &mut self.counters;
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => c.connect_refused += 1,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => c.connect_timeout += 1,
            _ => c.connect_other += 1,
        }
    }

    /// Starts a new per-second interval histogram when a second boundary has passed.
    fn roll(&mut self, clock: &Clock, now: u64) {
        if now < clock.warm_end {
            return;
        }
        if self.interval_start == 0 {
            self.interval_start = clock.warm_end;
        }
        while now >= self.interval_start + SEC {
            self.close_interval(SEC);
            self.interval_start += SEC;
        }
    }

    /// Ends the interval that began at `interval_start`, `length` ns long: kept encoded
    /// (when asked for), its histogram reset in place.
    fn close_interval(&mut self, length: u64) {
        if self.keep_intervals && !self.current.is_empty() {
            self.intervals.push((self.interval_start, length, hist::encode(&self.current)));
        }
        self.current.reset();
    }

    /// Shows the figures so far to the progress line.
    pub fn publish(&self, live: &Live) {
        live.completed[self.worker].store(self.counters.completed, Ordering::Relaxed);
        live.failed[self.worker].store(self.counters.failed(), Ordering::Relaxed);
        if let Some(b) = live.bytes.get(self.worker) {
            b[0].store(self.counters.bytes_sent, Ordering::Relaxed);
            b[1].store(self.counters.bytes_received, Ordering::Relaxed);
        }
    }

    /// The worker's result, the last interval closed at the stop (or now, if earlier).
    pub fn finish(mut self, clock: &Clock, cpu: Duration) -> WorkerResult {
        let end = clock.now().min(clock.stop_at);
        self.roll(clock, end.saturating_sub(1));
        if !self.current.is_empty() {
            self.close_interval(end.saturating_sub(self.interval_start).clamp(1, SEC));
        }
        WorkerResult {
            counters: self.counters,
            latency: self.latency,
            service: self.service,
            lag: self.lag,
            intervals: self.intervals,
            cpu,
            connect: self.connect,
            last_completion: self.last_completion,
            connected: 0,
            connect_error: None,
            all_gone_at: None,
            time_limit_hit: false,
            stop_at: clock.stop_at,
            sizes: self.sizes,
            bulk: self.bulk,
            breakdown: self.breakdown,
            background: false,
            pin_error: None,
        }
    }
}
