//! Readings of processes on this machine from `/proc`, untrusted text read through
//! `ringecho::procfs`: a server process's threads (`--server-pid`), any process's CPU,
//! and every process's CPU so the ones that ran beside the load can be named.
//!
//! Invariant: a process or thread that cannot be read (gone, not ours to see) costs its
//! figure, never the reading; at most [`MAX_PROCESSES`] processes and
//! [`MAX_THREADS`] threads are read.

use crate::views::OtherProcess;
use ringecho::procfs::{self, CpuTime};
use std::collections::HashMap;
use std::time::Duration;

/// The most processes read for the names of what else ran.
const MAX_PROCESSES: usize = 65_536;
/// The most threads of a server process read.
const MAX_THREADS: usize = 4_096;
/// How many other processes are named, at most.
const NAMED: usize = 3;
/// A process named as what else ran used at least this much of a CPU in the window.
const NAMED_SHARE: f64 = 0.05;

/// CPU time (user + system) of process `pid`; `None` when it cannot be read.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let cpu = procfs::parse_stat_cpu(&stat, ringecho::sys::clock_ticks_per_second())?;
    Some(Duration::from_secs_f64(cpu.user_s + cpu.system_s))
}

/// Each thread of process `pid` (by thread id), with its CPU and run-queue wait.
pub fn threads(pid: u32) -> Vec<(i32, CpuTime)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out: Vec<(i32, CpuTime)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .take(MAX_THREADS)
        .filter_map(|tid| Some((tid, procfs::read_cpu(&format!("/proc/{pid}/task/{tid}"))?)))
        .collect();
    out.sort_by_key(|(tid, _)| *tid);
    out
}

/// Every process's name and CPU seconds so far.
pub fn all() -> HashMap<u32, (String, f64)> {
    let ticks = ringecho::sys::clock_ticks_per_second();
    let Ok(dir) = std::fs::read_dir("/proc") else { return HashMap::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .take(MAX_PROCESSES)
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let cpu = procfs::parse_stat_cpu(&stat, ticks)?;
            let comm = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')).map(|(c, _)| c)?;
            Some((pid, (comm.chars().take(32).collect(), cpu.user_s + cpu.system_s)))
        })
        .collect()
}

/// The processes other than `ours` that used most CPU between two readings `window_s`
/// apart: at most [`NAMED`], each at least [`NAMED_SHARE`] of a CPU, the busiest first.
pub fn others(
    first: &HashMap<u32, (String, f64)>,
    last: &HashMap<u32, (String, f64)>,
    window_s: f64,
    ours: &[u32],
) -> Vec<OtherProcess> {
    let mut out: Vec<OtherProcess> = last
        .iter()
        .filter(|(pid, _)| !ours.contains(pid))
        .filter_map(|(pid, (comm, cpu))| {
            let before = first.get(pid).map_or(0.0, |(_, c)| *c);
            let share = (cpu - before) / window_s.max(1e-9);
            (share.is_finite() && share >= NAMED_SHARE).then(|| OtherProcess {
                pid: *pid,
                comm: comm.clone(),
                cpu: share,
            })
        })
        .collect();
    out.sort_by(|a, b| b.cpu.total_cmp(&a.cpu));
    out.truncate(NAMED);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_its_threads_read() {
        assert!(process_cpu(std::process::id()).is_some());
        let mine = threads(std::process::id());
        assert!(mine.iter().any(|(tid, _)| *tid == ringecho::sys::gettid()), "{mine:?}");
        assert!(process_cpu(u32::MAX).is_none(), "no such process: no figure");
    }

    #[test]
    fn the_busiest_others_are_named() {
        let p = |c: &str, s: f64| (c.to_string(), s);
        let first = HashMap::from([(1, p("init", 1.0)), (2, p("spinner", 10.0)), (3, p("us", 0.0))]);
        let last = HashMap::from([
            (1, p("init", 1.01)),
            (2, p("spinner", 11.9)),
            (3, p("us", 2.0)),
            (4, p("new", 0.5)),
        ]);
        let o = others(&first, &last, 2.0, &[3]);
        let named: Vec<(&str, u32)> =
            o.iter().map(|o| (o.comm.as_str(), (o.cpu * 100.0).round() as u32)).collect();
        assert_eq!(named, [("spinner", 95), ("new", 25)], "ours left out, the idle left out");
    }
}
