//! The figures a run's data gives, each computed in one place: the message figures
//! derived from the counters over the measured window ([`Figures::of`]: failed, error
//! rate, rates), the client's busy share ([`busy_share`]), and the byte figures of bulk
//! connections ([`Bulk`]: bytes, MB/s, Gbit/s, per-second intervals like iperf3's, CPU per
//! byte) made from the workers' tallies.
//!
//! Invariant: only bytes moved inside the measured window (after the warm-up, before the
//! stop) reach a [`Bulk`]'s intervals, so `bytes_sent` and `bytes_received` are the sums of
//! the intervals; the totals of the whole run (warm-up and the closing drain included) are
//! the counters'. A rate over no measured time is 0, never infinite.

use crate::counters::Counters;
use crate::engine::Tally;
use crate::plan::{Mode, ThroughputPlan};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Rates over the measured time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Answered messages per second.
    pub msgs_per_s: f64,
    /// Echoed bytes per second, each way.
    pub bytes_per_s_each_way: f64,
}

/// Figures derived from the counters and the measured time. [`Figures::of`] is the one
/// place they are computed; the report's text, its document and `merge` all use it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// [`Counters::failed`], saturating.
    pub failed: u64,
    /// failed ÷ (completed + failed), 0 when both are 0.
    pub error_rate: f64,
    /// Rates over the measured time, 0 when none was measured.
    pub throughput: Throughput,
}

impl Figures {
    /// The figures of `counters` over `elapsed_s` measured seconds.
    pub fn of(counters: &Counters, elapsed_s: f64) -> Figures {
        let failed = counters.failed();
        let total = failed.saturating_add(counters.completed);
        let per_second = |n: u64| {
            if elapsed_s > 0.0 { (n as f64 / elapsed_s).min(f64::MAX) } else { 0.0 }
        };
        Figures {
            failed,
            error_rate: if total == 0 { 0.0 } else { failed as f64 / total as f64 },
            throughput: Throughput {
                msgs_per_s: per_second(counters.completed),
                bytes_per_s_each_way: per_second(counters.bytes_echoed),
            },
        }
    }
}

/// The load workers' busy share: CPU time ÷ (wall time × workers), 0 when no time
/// passed. The one definition: the report's `load CPU` line, a search step's `client`
/// column and `ab`'s client figure all use it.
pub fn busy_share(cpu: Duration, wall: Duration, workers: usize) -> f64 {
    let capacity = wall.as_secs_f64() * workers as f64;
    if capacity > 0.0 { cpu.as_secs_f64() / capacity } else { 0.0 }
}

/// One second of the measured window (the last may be shorter).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Start, seconds after the warm-up.
    pub start_s: f64,
    /// Length, seconds.
    pub length_s: f64,
    /// Bytes sent in it.
    pub bytes_sent: u64,
    /// Bytes received in it.
    pub bytes_received: u64,
    /// The bytes of the mode (sent for send, received otherwise) as Gbit/s.
    pub gbit_per_s: f64,
}

/// The figures of a run's bulk connections (the measured ones in `--mode send|receive|
/// bulk`, or the background ones of `--background`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bulk {
    /// What the connections did.
    pub mode: Mode,
    /// Connections.
    pub connections: u32,
    /// Bytes per send.
    pub write_size: u32,
    /// SEND_ZC sends.
    #[serde(default)]
    pub zerocopy: bool,
    /// SO_SNDBUF as the kernel set it on the first connection (0: unknown).
    #[serde(default)]
    pub sndbuf: u32,
    /// SO_RCVBUF as the kernel set it on the first connection (0: unknown).
    #[serde(default)]
    pub rcvbuf: u32,
    /// Measured seconds.
    pub elapsed_s: f64,
    /// Bytes sent in the measured window.
    pub bytes_sent: u64,
    /// Bytes received in the measured window.
    pub bytes_received: u64,
    /// The figure of the mode: sent (send), received (receive, and bulk: what came back),
    /// bytes per second.
    pub bytes_per_s: f64,
    /// `bytes_per_s` in MB/s (10⁶ bytes).
    pub mb_per_s: f64,
    /// `bytes_per_s` in Gbit/s (10⁹ bits).
    pub gbit_per_s: f64,
    /// CPU seconds (utime + stime) the load workers of these connections used in the window.
    pub cpu_s: f64,
    /// `cpu_s` per byte moved (sent + received) in the window, ns.
    pub cpu_ns_per_byte: f64,
    /// Per second of the window.
    pub intervals: Vec<Interval>,
}

impl Bulk {
    /// The figures of `tallies` (with each worker's CPU at its exit) over `elapsed`.
    pub fn of(
        mode: Mode,
        connections: u32,
        plan: &ThroughputPlan,
        tallies: &[(&Tally, Duration)],
        elapsed: Duration,
    ) -> Bulk {
        let mut per_second: Vec<[u64; 2]> = Vec::new();
        let mut cpu = Duration::ZERO;
        let (mut sndbuf, mut rcvbuf, mut zc) = (0, 0, 0);
        for (t, at_exit) in tallies {
            if per_second.len() < t.per_second.len() {
                per_second.resize(t.per_second.len(), [0, 0]);
            }
            for (sum, s) in per_second.iter_mut().zip(&t.per_second) {
                sum[0] += s[0];
                sum[1] += s[1];
            }
            cpu += t.window_cpu(*at_exit);
            if sndbuf == 0 {
                (sndbuf, rcvbuf) = t.buffers;
            }
            zc += t.zerocopy_sends;
        }
        let elapsed_s = elapsed.as_secs_f64();
        let pick = |s: [u64; 2]| if mode == Mode::Send { s[0] } else { s[1] };
        let intervals: Vec<Interval> = per_second
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let start_s = k as f64;
                let length_s = (elapsed_s - start_s).clamp(1e-9, 1.0);
                let gbit_per_s = pick(*s) as f64 * 8.0 / 1e9 / length_s;
                Interval { start_s, length_s, bytes_sent: s[0], bytes_received: s[1], gbit_per_s }
            })
            .collect();
        let bytes_sent = per_second.iter().map(|s| s[0]).sum::<u64>();
        let bytes_received = per_second.iter().map(|s| s[1]).sum::<u64>();
        let bytes_per_s =
            if elapsed_s > 0.0 { pick([bytes_sent, bytes_received]) as f64 / elapsed_s } else { 0.0 };
        let moved = bytes_sent.saturating_add(bytes_received);
        Bulk {
            mode,
            connections,
            write_size: plan.write_size,
            zerocopy: plan.zerocopy && zc > 0,
            sndbuf,
            rcvbuf,
            elapsed_s,
            bytes_sent,
            bytes_received,
            bytes_per_s,
            mb_per_s: bytes_per_s / 1e6,
            gbit_per_s: bytes_per_s * 8.0 / 1e9,
            cpu_s: cpu.as_secs_f64(),
            cpu_ns_per_byte: if moved > 0 { cpu.as_nanos() as f64 / moved as f64 } else { 0.0 },
            intervals,
        }
    }

    /// The figures of runs that ran together (`merge`): bytes, connections, CPU and each
    /// second's bytes summed, the longest window, the rates recomputed. `None` unless every
    /// part has figures of the same mode.
    pub fn merged<'a>(parts: impl IntoIterator<Item = Option<&'a Bulk>>) -> Option<Bulk> {
        let parts: Option<Vec<&Bulk>> = parts.into_iter().collect();
        let parts = parts?;
        let first = (*parts.first()?).clone();
        if parts.iter().any(|p| p.mode != first.mode) {
            return None;
        }
        let mut m = Bulk { intervals: Vec::new(), ..first };
        m.connections = 0;
        (m.bytes_sent, m.bytes_received, m.cpu_s, m.elapsed_s) = (0, 0, 0.0, 0.0);
        for p in &parts {
            m.connections = m.connections.saturating_add(p.connections);
            m.bytes_sent = m.bytes_sent.saturating_add(p.bytes_sent);
            m.bytes_received = m.bytes_received.saturating_add(p.bytes_received);
            m.cpu_s += p.cpu_s;
            m.elapsed_s = m.elapsed_s.max(p.elapsed_s);
            m.zerocopy &= p.zerocopy;
            for (k, i) in p.intervals.iter().enumerate() {
                match m.intervals.get_mut(k) {
                    Some(sum) => {
                        sum.bytes_sent = sum.bytes_sent.saturating_add(i.bytes_sent);
                        sum.bytes_received = sum.bytes_received.saturating_add(i.bytes_received);
                        sum.length_s = sum.length_s.max(i.length_s);
                    }
                    None => m.intervals.push(*i),
                }
            }
        }
        let pick = |sent: u64, received: u64| if m.mode == Mode::Send { sent } else { received };
        for i in &mut m.intervals {
            i.gbit_per_s = pick(i.bytes_sent, i.bytes_received) as f64 * 8.0 / 1e9 / i.length_s.max(1e-9);
        }
        m.bytes_per_s =
            if m.elapsed_s > 0.0 { pick(m.bytes_sent, m.bytes_received) as f64 / m.elapsed_s } else { 0.0 };
        m.mb_per_s = m.bytes_per_s / 1e6;
        m.gbit_per_s = m.bytes_per_s * 8.0 / 1e9;
        let moved = m.moved();
        m.cpu_ns_per_byte = if moved > 0 { m.cpu_s * 1e9 / moved as f64 } else { 0.0 };
        Some(m)
    }

    /// Bytes moved in the window, both ways.
    pub fn moved(&self) -> u64 {
        self.bytes_sent.saturating_add(self.bytes_received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn only_the_window_counts_and_intervals_sum_to_it() {
        let mut t = Tally::default();
        t.moved(SEC, 3 * SEC + SEC / 2, SEC - 1, 100, 0); // warm-up
        t.moved(SEC, 3 * SEC + SEC / 2, SEC, 10, 1);
        t.moved(SEC, 3 * SEC + SEC / 2, 2 * SEC + 5, 20, 2);
        t.moved(SEC, 3 * SEC + SEC / 2, 3 * SEC + 7, 30, 3);
        t.moved(SEC, 3 * SEC + SEC / 2, 3 * SEC + SEC / 2, 100, 0); // the stop
        t.cpu_start = Some(Duration::from_millis(10));
        let plan = crate::plan::ThroughputPlan::default();
        let b =
            Bulk::of(Mode::Send, 1, &plan, &[(&t, Duration::from_millis(60))], Duration::from_millis(2_500));
        assert_eq!((b.bytes_sent, b.bytes_received), (60, 6));
        assert_eq!(b.intervals.len(), 3);
        assert_eq!(b.intervals[2].length_s, 0.5);
        assert_eq!(b.intervals[2].gbit_per_s, 30.0 * 8.0 / 1e9 / 0.5);
        assert_eq!(b.bytes_per_s, 60.0 / 2.5);
        assert!((b.cpu_s - 0.05).abs() < 1e-12);
        assert!((b.cpu_ns_per_byte - 50e6 / 66.0).abs() < 1e-6);
    }

    #[test]
    fn merged_runs_add_up() {
        let mut t = Tally::default();
        t.moved(0, 2 * SEC, 5, 1_000, 0);
        t.moved(0, 2 * SEC, SEC + 5, 3_000, 0);
        t.cpu_start = Some(Duration::ZERO);
        let plan = crate::plan::ThroughputPlan::default();
        let one = Bulk::of(Mode::Send, 4, &plan, &[(&t, Duration::from_micros(4))], Duration::from_secs(2));
        let two = Bulk::merged([Some(&one), Some(&one)]).unwrap();
        assert_eq!((two.connections, two.bytes_sent), (8, 8_000));
        assert_eq!(two.intervals[1].bytes_sent, 6_000);
        assert_eq!(two.bytes_per_s, 4_000.0);
        assert!((two.cpu_ns_per_byte - one.cpu_ns_per_byte).abs() < 1e-9, "{two:?}");
        assert_eq!(Bulk::merged([Some(&one), None]), None, "a run without figures");
        let other = Bulk { mode: Mode::Receive, ..one.clone() };
        assert_eq!(Bulk::merged([Some(&one), Some(&other)]), None, "different modes");
    }
}
