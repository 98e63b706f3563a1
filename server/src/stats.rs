//! Per-worker counters and their sum.
//!
//! Each worker owns one [`WorkerStats`], on its own cache lines, and is its only writer:
//! it counts into plain integers on the hot path and publishes them with relaxed stores
//! once per loop turn. Readers sum the workers on demand; a snapshot is consistent per
//! counter, not across counters.

use crate::parthist::{AtomicHistogram, Histogram};
use crossbeam_utils::CachePadded;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( #[doc = $doc:literal] $name:ident: $kind:ident ),* $(,)?) => {
        /// One worker's figures, as plain numbers (a worker's private tally, or a sum).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct Counters {
            $( #[doc = $doc] pub $name: u64, )*
        }

        /// Each figure's name, description, and whether it is a gauge (a level that goes
        /// up and down) rather than a counter.
        pub const FIELDS: &[(&str, &str, bool)] = &[ $( (stringify!($name), $doc.trim_ascii(), is_gauge(stringify!($name))), )* ];

        /// The published copy of one worker's [`Counters`].
        #[derive(Debug, Default)]
        pub struct WorkerStats {
            $( $name: AtomicU64, )*
        }

        impl WorkerStats {
            /// Publishes `c`; only the owning worker calls this.
            pub(crate) fn publish(&self, c: &Counters) {
                $( self.$name.store(c.$name, Ordering::Relaxed); )*
            }

            /// Reads the last published figures.
            pub fn load(&self) -> Counters {
                Counters { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }

        impl Counters {
            /// Adds `other` into `self`: sums for counters and gauges, the lowest for
            /// low-water marks, the highest for high-water marks.
            pub fn merge(&mut self, other: &Counters) {
                $( merge_one!($kind, self.$name, other.$name); )*
            }

            /// The names and values, in declaration order (for the text format).
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![ $( (stringify!($name), self.$name), )* ]
            }
        }
    };
}

/// Figures that are levels, not running totals.
const GAUGES: &[&str] = &[
    "open",
    "paused",
    "queued_bytes",
    "conn_queue_high_water",
    "buf_ring_available",
    "buf_ring_low_water",
    "buf_ring_size",
];

const fn is_gauge(name: &str) -> bool {
    let mut i = 0;
    while i < GAUGES.len() {
        if const_str_eq(GAUGES[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

macro_rules! merge_one {
    (sum, $a:expr, $b:expr) => {
        $a += $b
    };
    (min, $a:expr, $b:expr) => {
        $a = $a.min($b)
    };
    (max, $a:expr, $b:expr) => {
        $a = $a.max($b)
    };
}

counters! {
    /// Connections accepted and kept.
    accepted: sum,
    /// Connections open now.
    open: sum,
    /// Connections closed (after being accepted and kept).
    closed: sum,
    /// Connections closed at once because `--max-conns` were already open.
    refused: sum,
    /// Connections closed by `--idle-timeout`.
    idle_closed: sum,
    /// Connections closed when the drain timeout ran out.
    drain_closed: sum,
    /// Stuck connections closed to free buffers others were starving for.
    evicted: sum,
    /// Bytes received.
    bytes_in: sum,
    /// Bytes sent.
    bytes_out: sum,
    /// Receive completions that carried data.
    recv_ops: sum,
    /// Send completions.
    sends: sum,
    /// Sends that moved fewer bytes than asked, and were resubmitted for the rest.
    short_sends: sum,
    /// Sends that went out as SEND_ZC.
    zc_sends: sum,
    /// SEND_ZC notifications saying the kernel copied after all (always on loopback).
    zc_copied: sum,
    /// Times a connection stopped receiving because its queue reached `--max-conn-buffer`.
    pauses: sum,
    /// Connections paused now.
    paused: sum,
    /// Bytes received and not yet sent, now.
    queued_bytes: sum,
    /// The most bytes any one connection held queued at once.
    conn_queue_high_water: max,
    /// Provided buffers in the kernel's hands now.
    buf_ring_available: sum,
    /// The fewest provided buffers the kernel had at any moment (per worker; lowest shown).
    buf_ring_low_water: min,
    /// Provided buffers per worker, in all.
    buf_ring_size: sum,
    /// Datagrams received.
    dgrams_in: sum,
    /// Datagrams answered.
    dgrams_echoed: sum,
    /// Datagrams read and dropped by a discard listener.
    dgrams_discarded: sum,
    /// Datagrams dropped because they did not fit a buffer (never echoed in part).
    dgram_drop_truncated: sum,
    /// Datagrams dropped by `--udp-rate-limit`.
    dgram_drop_rate_limited: sum,
    /// Datagrams from an unbound Unix sender, which cannot be answered.
    dgram_drop_unanswerable: sum,
    /// Datagram replies the kernel refused to send.
    dgram_drop_send_error: sum,
    /// Receives that ended because the buffer ring was empty (re-armed later).
    enobufs: sum,
    /// Connections reset by the peer.
    err_reset: sum,
    /// Sends to a peer that had gone (EPIPE).
    err_pipe: sum,
    /// Accept failures.
    err_accept: sum,
    /// Other socket errors.
    err_other: sum,
    /// Buffer bookkeeping refusals (an id handed out twice, a return refused); always 0, else a bug.
    buf_errors: sum,
    /// `--timestamps`: receives without a usable kernel stamp, and sampled sends whose stamp did not come.
    stamps_missing: sum,
}

/// One worker's timed parts (`--timestamps`), written by that worker alone: `wake`, a
/// receive's kernel stamp → the worker takes its completion; `send`, the worker queues an
/// echo → the kernel's send stamp (sampled).
#[derive(Debug, Default)]
pub struct PartStats {
    /// Kernel receive stamp → the worker takes the completion.
    pub wake: AtomicHistogram,
    /// The worker queues the echo → the kernel's send stamp.
    pub send: AtomicHistogram,
}

/// Every worker's timed parts, summed: what `--metrics` and the exit line show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Parts {
    /// See [`PartStats::wake`].
    pub wake: Histogram,
    /// See [`PartStats::send`].
    pub send: Histogram,
}

/// The published figures of every worker.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    workers: Vec<CachePadded<WorkerStats>>,
    parts: Vec<CachePadded<PartStats>>,
    /// `--timestamps`: the workers time their parts.
    timed: bool,
}

impl StatsRegistry {
    pub(crate) fn new(workers: usize, timed: bool) -> Self {
        StatsRegistry {
            timed,
            workers: (0..workers).map(|_| CachePadded::new(WorkerStats::default())).collect(),
            parts: (0..workers).map(|_| CachePadded::new(PartStats::default())).collect(),
        }
    }

    pub(crate) fn worker(&self, index: usize) -> &WorkerStats {
        &self.workers[index]
    }

    pub(crate) fn parts_of(&self, index: usize) -> &PartStats {
        &self.parts[index]
    }

    /// Each worker's timed parts (`--timestamps`; empty histograms without it), in
    /// worker order.
    pub fn parts(&self) -> Vec<Parts> {
        self.parts.iter().map(|p| Parts { wake: p.wake.load(), send: p.send.load() }).collect()
    }

    /// A snapshot: each worker's figures and their total.
    pub fn snapshot(&self) -> Snapshot {
        let per_worker: Vec<Counters> = self.workers.iter().map(|w| w.load()).collect();
        let mut total = Counters { buf_ring_low_water: u64::MAX, ..Counters::default() };
        for w in &per_worker {
            total.merge(w);
        }
        if per_worker.is_empty() {
            total.buf_ring_low_water = 0;
        }
        let parts = if self.timed { self.parts() } else { Vec::new() };
        let timing = self.timed.then(|| Timing::of(&parts));
        Snapshot { total, per_worker, timing, parts }
    }
}

/// The server's figures at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// All workers together.
    pub total: Counters,
    /// Each worker, in worker order.
    pub per_worker: Vec<Counters>,
    /// `--timestamps`: the timed parts of all workers together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    /// `--timestamps`: each worker's timed parts, in worker order (empty without).
    #[serde(skip)]
    pub parts: Vec<Parts>,
}

/// The timed parts of all workers together, summed up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timing {
    /// See [`PartStats::wake`].
    pub wake: PartSummary,
    /// See [`PartStats::send`].
    pub send: PartSummary,
}

/// One part summed up: how many were timed, and the median, 99th percentile and mean in
/// µs (estimated from the buckets, within 19%; the mean is exact), `None` when none was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PartSummary {
    /// Values counted.
    pub count: u64,
    /// Median, µs.
    pub p50_us: Option<f64>,
    /// 99th percentile, µs.
    pub p99_us: Option<f64>,
    /// Mean, µs.
    pub mean_us: Option<f64>,
}

impl PartSummary {
    fn of(h: &Histogram) -> PartSummary {
        let us = |v: Option<f64>| v.map(|ns| (ns / 10.0).round() / 100.0);
        PartSummary {
            count: h.count(),
            p50_us: us(h.quantile(0.5)),
            p99_us: us(h.quantile(0.99)),
            mean_us: us(h.mean()),
        }
    }

    /// `name=count` and its figures, for the text line.
    fn text(&self, name: &str) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v}"));
        format!(
            "{name}_count={} {name}_p50_us={} {name}_p99_us={} {name}_mean_us={}",
            self.count,
            f(self.p50_us),
            f(self.p99_us),
            f(self.mean_us)
        )
    }
}

impl Parts {
    /// Every worker's parts together.
    pub fn sum(parts: &[Parts]) -> Parts {
        let mut all = Parts::default();
        for p in parts {
            all.wake.merge(&p.wake);
            all.send.merge(&p.send);
        }
        all
    }
}

impl Timing {
    fn of(parts: &[Parts]) -> Timing {
        let all = Parts::sum(parts);
        Timing { wake: PartSummary::of(&all.wake), send: PartSummary::of(&all.send) }
    }
}

impl Snapshot {
    /// One line of `name=value` pairs for the total, leaving out zero error counters.
    pub fn text_line(&self) -> String {
        let mut line = self
            .total
            .fields()
            .into_iter()
            .filter(|(name, v)| *v != 0 || !(name.starts_with("err_") || *name == "stamps_missing"))
            .map(|(name, v)| format!("{name}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(t) = &self.timing {
            line = format!("{line} {} {}", t.wake.text("server_wake"), t.send.text("server_send"));
        }
        line
    }

    /// The snapshot as one line of JSON.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Per-second rates between two snapshots' totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Bytes received per second.
    pub bytes_in: f64,
    /// Bytes sent per second.
    pub bytes_out: f64,
    /// Receive completions per second.
    pub recv_ops: f64,
    /// Send completions per second.
    pub sends: f64,
    /// Datagrams received per second.
    pub dgrams_in: f64,
    /// Datagrams answered per second.
    pub dgrams_echoed: f64,
    /// Connections accepted per second.
    pub accepted: f64,
}

impl Rates {
    /// The rates from `before` to `after`, `secs` apart (zero when no time passed).
    pub fn between(before: &Counters, after: &Counters, secs: f64) -> Rates {
        if secs <= 0.0 {
            return Rates::default();
        }
        let r = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        Rates {
            bytes_in: r(before.bytes_in, after.bytes_in),
            bytes_out: r(before.bytes_out, after.bytes_out),
            recv_ops: r(before.recv_ops, after.recv_ops),
            sends: r(before.sends, after.sends),
            dgrams_in: r(before.dgrams_in, after.dgrams_in),
            dgrams_echoed: r(before.dgrams_echoed, after.dgrams_echoed),
            accepted: r(before.accepted, after.accepted),
        }
    }

    /// The rates as text: `in 12.3 MB/s out 12.3 MB/s recv 45.6K/s ...`.
    pub fn text(&self) -> String {
        let mb = |v: f64| format!("{:.2} MB/s", v / 1e6);
        let per = |v: f64| {
            if v >= 1e6 {
                format!("{:.2}M/s", v / 1e6)
            } else if v >= 1e3 {
                format!("{:.1}K/s", v / 1e3)
            } else {
                format!("{v:.0}/s")
            }
        };
        format!(
            "in {} out {} recv {} sends {} dgrams {} echoed {} accepted {}",
            mb(self.bytes_in),
            mb(self.bytes_out),
            per(self.recv_ops),
            per(self.sends),
            per(self.dgrams_in),
            per(self.dgrams_echoed),
            per(self.accepted)
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_per_second() {
        let a = Counters { bytes_in: 1000, accepted: 1, ..Counters::default() };
        let b = Counters { bytes_in: 3000, accepted: 5, ..Counters::default() };
        let r = Rates::between(&a, &b, 2.0);
        assert_eq!((r.bytes_in, r.accepted), (1000.0, 2.0));
        assert_eq!(Rates::between(&a, &b, 0.0), Rates::default());
        assert!(r.text().starts_with("in 0.00 MB/s"), "{}", r.text());
    }

    use super::*;

    #[test]
    fn merge_sums_and_keeps_extremes() {
        let reg = StatsRegistry::new(2, false);
        reg.worker(0).publish(&Counters {
            bytes_in: 10,
            buf_ring_low_water: 5,
            conn_queue_high_water: 7,
            ..Counters::default()
        });
        reg.worker(1).publish(&Counters {
            bytes_in: 32,
            buf_ring_low_water: 3,
            conn_queue_high_water: 2,
            ..Counters::default()
        });
        let s = reg.snapshot();
        assert_eq!(s.total.bytes_in, 42);
        assert_eq!(s.total.buf_ring_low_water, 3);
        assert_eq!(s.total.conn_queue_high_water, 7);
        assert_eq!(s.per_worker.len(), 2);
        assert!(s.text_line().contains("bytes_in=42"));
        let json: serde_json::Value = serde_json::from_str(&s.json_line()).unwrap();
        assert_eq!(json["total"]["bytes_in"], 42);
    }
}
