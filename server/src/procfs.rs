//! Reading the kernel's own figures from `/proc`: a process's and a thread's CPU time
//! (`stat`, `schedstat`) and the network counters that explain loss and stalls
//! (`/proc/net/snmp`, `/proc/net/netstat`).
//!
//! The text is the kernel's, but its format is treated as untrusted: every parser here
//! takes a `&str`, never panics, and returns `None` (or leaves a figure out) for anything
//! it does not recognise, so a kernel with other columns, or a file cut short, costs a
//! figure, not the run. Readers of live files are thin wrappers around the parsers.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A thread's or a process's CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuTime {
    /// Seconds in user mode.
    pub user_s: f64,
    /// Seconds in the kernel on its behalf.
    pub system_s: f64,
    /// Seconds it was runnable but waiting for a CPU (from `schedstat`; 0 where the
    /// kernel does not keep it).
    #[serde(default)]
    pub wait_s: f64,
    /// Seconds on a CPU, from `schedstat` (nanosecond resolution; 0 where the kernel does
    /// not keep it, and `user_s + system_s` is used instead).
    #[serde(default)]
    pub run_s: f64,
}

impl CpuTime {
    /// Seconds on a CPU: the fine `schedstat` figure when there is one, else user + system.
    pub fn on_cpu_s(&self) -> f64 {
        if self.run_s > 0.0 { self.run_s } else { self.user_s + self.system_s }
    }

    /// Seconds it wanted a CPU: on one, or runnable and waiting for one.
    pub fn demand_s(&self) -> f64 {
        self.on_cpu_s() + self.wait_s
    }

    /// `self − earlier`, each figure at least 0.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        let d = |a: f64, b: f64| (a - b).max(0.0);
        CpuTime {
            user_s: d(self.user_s, earlier.user_s),
            system_s: d(self.system_s, earlier.system_s),
            wait_s: d(self.wait_s, earlier.wait_s),
            run_s: d(self.run_s, earlier.run_s),
        }
    }
}

/// The fields after the command name in a `stat` line (the first is the state, stat(5)'s
/// field 3). The name is in parentheses and may itself hold spaces and ')', so the fields
/// start after the *last* ')'. `None` when the line is too short to hold utime and stime.
pub fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are the 12th and 13th fields after the name.
    (fields.len() > 12).then_some(fields)
}

/// User and system CPU time from a `/proc/PID/stat` or `/proc/PID/task/TID/stat` line,
/// with `ticks` clock ticks per second.
pub fn parse_stat_cpu(stat: &str, ticks: u64) -> Option<CpuTime> {
    let fields = stat_fields(stat)?;
    let ticks = ticks.max(1) as f64;
    let utime: u64 = fields[11].parse().ok()?;
    let stime: u64 = fields[12].parse().ok()?;
    Some(CpuTime { user_s: utime as f64 / ticks, system_s: stime as f64 / ticks, ..CpuTime::default() })
}

/// `(on CPU, waiting for a CPU)` from a `schedstat` line: nanoseconds run, nanoseconds
/// runnable on a run queue, time slices.
pub fn parse_schedstat(text: &str) -> Option<(Duration, Duration)> {
    let mut it = text.split_whitespace();
    let run: u64 = it.next()?.parse().ok()?;
    let wait: u64 = it.next()?.parse().ok()?;
    Some((Duration::from_nanos(run), Duration::from_nanos(wait)))
}

/// The CPU time of the thing whose `/proc` directory is `dir` (`/proc/self`,
/// `/proc/self/task/TID`); `None` when it is gone or unreadable.
pub fn read_cpu(dir: &str) -> Option<CpuTime> {
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let mut cpu = parse_stat_cpu(&stat, crate::sys::clock_ticks_per_second())?;
    if let Some((run, wait)) =
        std::fs::read_to_string(format!("{dir}/schedstat")).ok().as_deref().and_then(parse_schedstat)
    {
        cpu.run_s = run.as_secs_f64();
        cpu.wait_s = wait.as_secs_f64();
    }
    Some(cpu)
}

/// This process's CPU time (every thread, living or ended): user and system time only.
/// `/proc/self/schedstat` is the main thread's alone, so it is not read here.
pub fn process_cpu() -> Option<CpuTime> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat_cpu(&stat, crate::sys::clock_ticks_per_second())
}

/// One thread of this process's CPU time.
pub fn thread_cpu(tid: i32) -> Option<CpuTime> {
    read_cpu(&format!("/proc/self/task/{tid}"))
}

/// The calling thread's CPU time.
pub fn current_thread_cpu() -> Option<CpuTime> {
    read_cpu("/proc/thread-self")
}

/// This process's threads whose name is `prefix` followed by a number: `(number, tid)`,
/// sorted by number (`ringecho-0`, `ringload-3`; thread names are cut at 15 bytes).
pub fn threads_named(prefix: &str) -> Vec<(usize, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    let mut found: Vec<(usize, i32)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let tid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let index = comm.trim_end().strip_prefix(prefix)?.parse().ok()?;
            Some((index, tid))
        })
        .collect();
    found.sort_unstable();
    found
}

/// The network counters that explain loss and stalls, machine-wide (the network
/// namespace's), as the kernel counts them since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetCounters {
    /// TCP segments retransmitted (`Tcp: RetransSegs`).
    #[serde(default)]
    pub tcp_retrans_segs: u64,
    /// Connections a full accept queue could not take (`TcpExt: ListenOverflows`).
    #[serde(default)]
    pub listen_overflows: u64,
    /// Connection requests dropped at a listener, overflows included (`TcpExt: ListenDrops`).
    #[serde(default)]
    pub listen_drops: u64,
    /// UDP datagrams dropped because a socket's receive buffer was full (`Udp: RcvbufErrors`).
    #[serde(default)]
    pub udp_rcvbuf_errors: u64,
    /// UDP sends refused because a socket's send buffer was full (`Udp: SndbufErrors`).
    #[serde(default)]
    pub udp_sndbuf_errors: u64,
    /// UDP datagrams received in error, buffer drops included (`Udp: InErrors`).
    #[serde(default)]
    pub udp_in_errors: u64,
}

/// Each counter: its field name, the `/proc` section and key, and the hint for when it grows.
pub const NET_COUNTERS: &[(&str, &str, &str, &str)] = &[
    (
        "tcp_retrans_segs",
        "Tcp",
        "RetransSegs",
        "TCP retransmitted: loss or a full queue on the path; check the other counters and the NIC",
    ),
    (
        "listen_overflows",
        "TcpExt",
        "ListenOverflows",
        "raise net.core.somaxconn and the listener's backlog (listen(2)), or accept faster",
    ),
    (
        "listen_drops",
        "TcpExt",
        "ListenDrops",
        "raise net.core.somaxconn / net.ipv4.tcp_max_syn_backlog and the listener's backlog",
    ),
    (
        "udp_rcvbuf_errors",
        "Udp",
        "RcvbufErrors",
        "raise net.core.rmem_max (and net.core.rmem_default) and the socket's SO_RCVBUF",
    ),
    (
        "udp_sndbuf_errors",
        "Udp",
        "SndbufErrors",
        "raise net.core.wmem_max (and net.core.wmem_default) and the socket's SO_SNDBUF",
    ),
    (
        "udp_in_errors",
        "Udp",
        "InErrors",
        "UDP receive errors (buffer drops, bad checksums): see RcvbufErrors; raise SO_RCVBUF / net.core.rmem_max",
    ),
];

impl NetCounters {
    /// The names and values, in [`NET_COUNTERS`] order.
    pub fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("tcp_retrans_segs", self.tcp_retrans_segs),
            ("listen_overflows", self.listen_overflows),
            ("listen_drops", self.listen_drops),
            ("udp_rcvbuf_errors", self.udp_rcvbuf_errors),
            ("udp_sndbuf_errors", self.udp_sndbuf_errors),
            ("udp_in_errors", self.udp_in_errors),
        ]
    }

    fn set(&mut self, name: &str, v: u64) {
        match name {
            "tcp_retrans_segs" => self.tcp_retrans_segs = v,
            "listen_overflows" => self.listen_overflows = v,
            "listen_drops" => self.listen_drops = v,
            "udp_rcvbuf_errors" => self.udp_rcvbuf_errors = v,
            "udp_sndbuf_errors" => self.udp_sndbuf_errors = v,
            "udp_in_errors" => self.udp_in_errors = v,
            _ => {}
        }
    }

    /// `self − earlier`, counter by counter (0 where a counter went backwards).
    pub fn since(&self, earlier: &NetCounters) -> NetCounters {
        let mut d = NetCounters::default();
        for ((name, a), (_, b)) in self.fields().into_iter().zip(earlier.fields()) {
            d.set(name, a.saturating_sub(b));
        }
        d
    }

    /// Reads the counters from `snmp` and `netstat` texts (the formats of
    /// `/proc/net/snmp` and `/proc/net/netstat`); a counter not found stays 0.
    pub fn parse(snmp: &str, netstat: &str) -> NetCounters {
        let mut c = NetCounters::default();
        for text in [snmp, netstat] {
            for (section, key, value) in parse_pairs(text) {
                if let Some((name, ..)) = NET_COUNTERS.iter().find(|(_, s, k, _)| *s == section && *k == key)
                {
                    c.set(name, value);
                }
            }
        }
        c
    }

    /// Reads the live counters; `None` when neither file can be read.
    pub fn read() -> Option<NetCounters> {
        let snmp = std::fs::read_to_string("/proc/net/snmp");
        let netstat = std::fs::read_to_string("/proc/net/netstat");
        if snmp.is_err() && netstat.is_err() {
            return None;
        }
        Some(NetCounters::parse(&snmp.unwrap_or_default(), &netstat.unwrap_or_default()))
    }
}

/// `(section, key, value)` from the kernel's header/value line pairs:
/// `Udp: InDatagrams NoPorts ...` followed by `Udp: 12 0 ...`. A header is paired only
/// with the next line, and only when that line has the same section and as many fields;
/// values that are not unsigned integers (`Tcp: MaxConn` is -1) are left out.
pub fn parse_pairs(text: &str) -> Vec<(&str, &str, u64)> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(header) = lines.next() {
        let Some((section, keys)) = header.split_once(':') else { continue };
        let Some(values_line) = lines.peek() else { break };
        let Some((vsection, values)) = values_line.split_once(':') else { continue };
        if vsection != section {
            continue;
        }
        let keys: Vec<&str> = keys.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        // A header's keys are names; its value line's are numbers. Two headers in a row
        // (a line lost) must not pair the first with the second.
        if keys.len() != values.len() || values.iter().any(|v| v.parse::<i64>().is_err()) {
            continue;
        }
        lines.next();
        for (k, v) in keys.into_iter().zip(values) {
            if let Ok(v) = v.parse::<u64>() {
                out.push((section, k, v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str =
        "1234 (ring echo) R) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 5000 1000000 300";

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parens() {
        let cpu = parse_stat_cpu(STAT, 100).unwrap();
        assert_eq!((cpu.user_s, cpu.system_s), (2.5, 0.75));
        assert_eq!(cpu.on_cpu_s(), 3.25);
    }

    #[test]
    fn bad_stat_lines_give_none() {
        for bad in ["", "1234 (x", "1234 (x) S 1 2", "1 (x) S 1 1 1 0 -1 4 1 0 0 0 abc 75 0", "\u{0}\u{ff})"]
        {
            assert_eq!(parse_stat_cpu(bad, 100), None, "{bad:?}");
        }
        assert!(parse_stat_cpu(STAT, 0).is_some(), "zero ticks is not a division by zero");
    }

    #[test]
    fn schedstat() {
        assert_eq!(
            parse_schedstat("186617 2528740 2\n"),
            Some((Duration::from_nanos(186_617), Duration::from_nanos(2_528_740)))
        );
        assert_eq!(parse_schedstat("12"), None);
        assert_eq!(parse_schedstat("a b c"), None);
    }

    #[test]
    fn demand_and_since() {
        let a = CpuTime { user_s: 1.0, system_s: 1.0, wait_s: 0.5, run_s: 0.0 };
        assert_eq!(a.demand_s(), 2.5);
        let b = CpuTime { user_s: 2.0, system_s: 1.0, wait_s: 0.25, run_s: 3.0 };
        let d = b.since(&a);
        assert_eq!((d.user_s, d.system_s, d.wait_s, d.run_s), (1.0, 0.0, 0.0, 3.0));
    }

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm MaxConn RetransSegs InErrs\nTcp: 1 -1 17 0\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 100 2 9 100 8 1\nUdpLite: InDatagrams\nUdpLite: 0\n";
    const NETSTAT: &str =
        "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 5 6\nIpExt: InNoRoutes\nIpExt: 0\n";

    #[test]
    fn net_counters_from_both_files() {
        let c = NetCounters::parse(SNMP, NETSTAT);
        assert_eq!(
            c,
            NetCounters {
                tcp_retrans_segs: 17,
                listen_overflows: 5,
                listen_drops: 6,
                udp_rcvbuf_errors: 8,
                udp_sndbuf_errors: 1,
                udp_in_errors: 9,
            }
        );
        let later = NetCounters { udp_rcvbuf_errors: 10, tcp_retrans_segs: 3, ..c };
        let d = later.since(&c);
        assert_eq!((d.udp_rcvbuf_errors, d.tcp_retrans_segs, d.listen_drops), (2, 0, 0));
    }

    #[test]
    fn malformed_pairs_are_skipped() {
        // A lost value line: the Tcp header must not pair with the Udp header.
        let text = "Tcp: RetransSegs\nUdp: InErrors RcvbufErrors\nUdp: 4 5\nUdp: 1\nTcpExt: ListenDrops\nTcpExt: 1 2\nX\n:\n";
        let pairs = parse_pairs(text);
        assert_eq!(pairs, vec![("Udp", "InErrors", 4), ("Udp", "RcvbufErrors", 5)]);
        assert!(parse_pairs("").is_empty());
        assert!(parse_pairs("Udp: A\n").is_empty());
        assert!(parse_pairs("Udp: A\nTcp: 1\n").is_empty());
        let c = NetCounters::parse(
            "garbage\u{0}\n\n",
            "TcpExt: ListenOverflows\nTcpExt: 99999999999999999999999\n",
        );
        assert_eq!(c, NetCounters::default(), "a value past u64 is left out");
    }

    #[test]
    fn live_readings() {
        let me = process_cpu().unwrap();
        assert!(me.user_s + me.system_s >= 0.0);
        assert!(current_thread_cpu().is_some());
        assert!(NetCounters::read().is_some());
        let name = "procfs-t-7";
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = ready_tx.send(());
                rx.recv()
            })
            .unwrap();
        // The thread names itself before it runs the closure.
        ready.recv().unwrap();
        let found = threads_named("procfs-t-");
        assert!(found.iter().any(|(i, tid)| *i == 7 && thread_cpu(*tid).is_some()), "{found:?}");
        drop(tx);
        let _ = t.join();
    }
}
