//! The `ab` document (`ringload ab --json`): both sides' runs, each with its own result
//! document and its server's figures, the summary of each side (median, min–max and the
//! CI of the median of each figure) and B against A. Plain data: `crate::ab` makes it,
//! `crate::text::ab` shows it.
//!
//! Written, never read: no command reads an `ab` document (`report`, `merge`, `compare`
//! and `plot` refuse its `tool`), so its types are `Serialize` only. A reader added later
//! must bound what it reads as `super::read` does (each run is a whole result document).

use super::ResultDoc;
use crate::slo::Schedule;
use crate::stats::Spread;
use crate::warning::Warning;
use serde::Serialize;
use std::fmt;

/// Version of the `ab` document's shape. 2: a server's CPU (`cpu_s`, and the CPU per
/// message from it) is its whole process tree's — its process group and every process
/// that left it — where 1 counted the group only; `strays` added.
pub const AB_SCHEMA_VERSION: u64 = 2;
/// The `tool` of an `ab` document.
pub const AB_TOOL: &str = "ringload-ab";

/// A or B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Side {
    /// The first server command (the baseline of the ratios).
    A,
    /// The second.
    B,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// The server's part in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerFigures {
    /// The PID `sh -c` ran as (also its process group's ID); gone when `ab` returns.
    pub pid: u32,
    /// The target the load went to.
    pub target: String,
    /// CPU seconds (utime + stime, threads and reaped children) of its process tree over
    /// the run, warm-up and drain included: its process group and every process that left
    /// it (`crate::ab`'s tree).
    pub cpu_s: f64,
    /// `cpu_s` per answered message (warm-up included), µs.
    pub cpu_us_per_msg: f64,
    /// It did not exit within --stop-timeout of SIGTERM and was killed.
    pub killed: bool,
    /// Processes of its tree that stopping it had to seek out: every one outside its
    /// process group (escaped: `setsid`, a daemon's double fork), and every one killed;
    /// the first 100, by PID.
    pub strays: Vec<StrayProcess>,
    /// How many more there were than `strays` lists.
    pub strays_unlisted: u64,
}

/// A process of a server's tree named when it was stopped (or found still running).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrayProcess {
    /// Its PID.
    pub pid: u32,
    /// Its command name, from `/proc/PID/comm` (set by the process: untrusted text).
    pub name: String,
    /// It ran outside the server's process group: a signal to the group missed it.
    pub escaped: bool,
    /// It was still running --stop-timeout after SIGTERM and got SIGKILL.
    pub killed: bool,
}

impl fmt::Display for StrayProcess {
    /// `1234 (sleep)`, the name escaped for a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.pid, crate::escape::terminal(&self.name))
    }
}

/// One run of one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// The side.
    pub side: Side,
    /// The run's number on its side, from 1.
    pub run: u32,
    /// The server.
    pub server: ServerFigures,
    /// Share of the client's CPUs busy over the run (load CPU ÷ wall × workers).
    pub client_busy: f64,
    /// Answered messages per second of each unmeasured warm-up run against this run's
    /// server, before this run (`--warmup-runs`), in order; not in any figure.
    pub warmup_msgs_per_s: Vec<f64>,
    /// The run's own result document, as `ringload --json` writes it.
    pub result: ResultDoc,
}

/// Why the client limited a run, by the one rule that applies to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClientLimit {
    /// An open loop fell behind its schedule (the p99 of its send lag above the limit).
    Behind(Schedule),
    /// A closed loop's client was saturated (its CPUs this share busy).
    Busy(f64),
}

impl RunRecord {
    /// Whether, and by which rule, the client limited this run: the run's own verdict,
    /// as its report gave it (a [`Warning::ClientBehind`] in an open loop, whatever its
    /// CPU; a [`Warning::ClientSaturated`] in a closed loop), so that `ab`, `compare`
    /// and the run's report judge a run by one rule.
    pub fn client_limit(&self) -> Option<ClientLimit> {
        self.result.warnings.iter().find_map(|w| match w.warning {
            Warning::ClientBehind { lag_p99_ns, limit_ns, .. } => {
                Some(ClientLimit::Behind(Schedule { lag_p99_ns, limit_ns }))
            }
            Warning::ClientSaturated { busy } => Some(ClientLimit::Busy(busy)),
            _ => None,
        })
    }

    /// What makes this run's figures measure something other than the target alone:
    /// its warnings that spoil a comparison ([`Warning::spoils_comparison`], the rule
    /// `compare` applies), each in its short form. An interruption is left out: `ab`
    /// says it once, and exits 130.
    pub fn spoilers(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.result
            .warnings
            .iter()
            .map(|w| &w.warning)
            .filter(|w| w.spoils_comparison() && !matches!(w, Warning::Interrupted))
            .map(Warning::short)
    }

    /// The client limited this run ([`client_limit`](Self::client_limit)).
    pub fn client_saturated(&self) -> bool {
        self.client_limit().is_some()
    }

    /// Answered messages per second.
    pub fn msgs_per_s(&self) -> f64 {
        self.result.throughput.msgs_per_s
    }
}

/// One side's figures over its runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideSummary {
    /// The server command.
    pub command: String,
    /// Runs that completed.
    pub runs: usize,
    /// Answered messages per second.
    pub msgs_per_s: Spread,
    /// Latency p50 from the intended send time, ns.
    pub p50_ns: Spread,
    /// Latency p99 from the intended send time, ns.
    pub p99_ns: Spread,
    /// Server CPU (utime + stime of its process tree) per answered message, µs.
    pub server_cpu_us_per_msg: Spread,
    /// Share of the client's CPUs busy over the run.
    pub client_busy: Spread,
    /// Runs whose client limited them ([`RunRecord::client_saturated`]: as each run's
    /// report judged it, in a closed loop saturated, in an open loop behind its
    /// schedule): their figures are bounded by the client.
    pub client_saturated_runs: usize,
    /// The first run against the others, from 3 runs on.
    pub first_run: Option<FirstRun>,
}

/// A side's first measured run against its others (msg/s): a server slow on its first
/// run (a JIT, cold caches) shows here, and wants more `--warmup-runs`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FirstRun {
    /// Its msg/s ÷ the median msg/s of the others.
    pub ratio: f64,
    /// It stands apart from the others beyond their spread ([`crate::stats::stands_apart`]).
    pub apart: bool,
}

/// B against A for one figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratio {
    /// B's median ÷ A's median.
    pub ratio: f64,
    /// The smallest and largest B ÷ A of the runs paired in order (run i of B with run
    /// i of A): how much the ratio moves from run to run.
    pub pairs_min: f64,
    /// See `pairs_min`.
    pub pairs_max: f64,
    /// The two sides' ranges do not overlap: the difference is beyond the spread of the
    /// runs.
    pub beyond_spread: bool,
    /// The side that did better, when the difference is beyond the spread.
    pub better: Option<Side>,
    /// The verdict, in words.
    pub verdict: String,
}

/// B against A.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbComparison {
    /// Messages per second (higher is better).
    pub msgs_per_s: Ratio,
    /// Latency p50 (lower is better).
    pub p50: Ratio,
    /// Latency p99 (lower is better).
    pub p99: Ratio,
    /// Server CPU per message (lower is better).
    pub server_cpu_per_msg: Ratio,
    /// Why the ratios are not meaningful, a run each (`A run 2: client saturated`):
    /// the same rule as `compare`'s. Empty when they are.
    pub not_meaningful: Vec<String>,
}

/// One side of the document: its command, summary and every run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideDoc {
    /// The figures over its runs.
    pub summary: SideSummary,
    /// Every run, in the order it ran.
    pub runs: Vec<RunRecord>,
}

/// The `ab` result document (`ringload ab --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbDocument {
    /// [`AB_SCHEMA_VERSION`].
    pub schema_version: u64,
    /// Always [`AB_TOOL`].
    pub tool: String,
    /// The version of ringload that wrote it.
    pub version: String,
    /// Runs planned per side.
    pub runs_planned: u32,
    /// `--warmup-runs`: unmeasured runs against each fresh server before its measured run.
    pub warmup_runs: u32,
    /// CPUs each server was pinned to (none: not pinned).
    pub server_cpus: Option<Vec<usize>>,
    /// Side A.
    pub a: SideDoc,
    /// Side B.
    pub b: SideDoc,
    /// B against A (absent when a side has no run).
    pub comparison: Option<AbComparison>,
    /// Thresholds that failed, as shown to a person.
    pub failed_checks: Vec<String>,
    /// Ctrl-C cut it short.
    pub interrupted: bool,
    /// The exit code: 0, 1 (a threshold failed) or 130 (interrupted).
    pub exit_code: i32,
}
