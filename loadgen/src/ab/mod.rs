//! `ringload ab`: the same load against two server commands, A and B, each started fresh
//! for every run, interleaved N times (A B, B A, A B, …, so that a drift of the machine
//! falls on both sides alike), with medians, spreads and B/A ratios, server CPU per
//! message and whether the client saturated (`summary`).
//!
//! Invariants: every server this starts is stopped and reaped — its process group and
//! every process of its tree outside the group — before the next one starts and before
//! [`run`] returns, on every path, errors and Ctrl-C included (`process`);
//! a run whose figures cannot be trusted, or whose server died during it, ends the
//! comparison with an error naming the side and the run (exit 2), never a ratio.

mod process;
mod procs;
pub mod summary;
mod sys;

pub use crate::document::ab::{AbDocument, RunRecord, ServerFigures, Side, StrayProcess};
pub use process::{Address, parse_listening};
pub use summary::{AbResult, summarize};

use crate::engine::RunError;
use crate::escape;
use crate::plan::Plan;
use crate::run::Progress;
use process::{NotReady, ServerProcess};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// A validated `ab` comparison.
#[derive(Debug, Clone)]
pub struct AbPlan {
    /// The server commands, A then B, each run by `sh -c`.
    pub servers: [String; 2],
    /// CPUs each server is pinned to (None: not pinned).
    pub server_cpus: Option<Vec<usize>>,
    /// How a server's address is known.
    pub address: Address,
    /// The load of every run (its target is set per run).
    pub load: Plan,
    /// Runs per side.
    pub runs: u32,
    /// How long a server may take to listen.
    pub start_timeout: Duration,
    /// How long a server may take to exit after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// `--max-p99`, checked on every run.
    pub max_p99: Option<Duration>,
    /// `--max-error-rate`, checked on every run.
    pub max_error_rate: Option<f64>,
    /// `--max-slowdown`: B's median msg/s at most this far below A's, its p99 at most this
    /// far above.
    pub max_slowdown: Option<f64>,
}

/// Why the comparison could not be made (exit 2).
///
/// Its text may span lines (the end of a server's stderr, a line of it per line); each
/// line is safe for a terminal already (`crate::escape::terminal`), so a caller prints
/// it line by line rather than escaping the newlines between them.
#[derive(Debug, thiserror::Error)]
pub enum AbError {
    /// `sh` could not be started.
    #[error("server {side}: cannot run `sh -c {}`: {error}", quoted(.command))]
    Spawn {
        /// The side.
        side: Side,
        /// Its command.
        command: String,
        /// Why.
        error: std::io::Error,
    },
    /// The server exited before it listened.
    #[error("server {side} (`{}`) exited ({status}) before it listened{}", escape::terminal(.command), stderr_part(.stderr))]
    Exited {
        /// The side.
        side: Side,
        /// Its command.
        command: String,
        /// How it exited.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The server did not listen in time.
    #[error("server {side} (`{}`) did not listen within {timeout:?} (--start-timeout): {how}{}", escape::terminal(.command), stderr_part(.stderr))]
    NeverListened {
        /// The side.
        side: Side,
        /// Its command.
        command: String,
        /// The bound.
        timeout: Duration,
        /// What was waited for.
        how: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// Something already accepted at the given target before the server started.
    #[error(
        "server {side}: something already accepts connections at {target} before the server started{}; stop it, or give an address nothing else uses",
        holders_part(.holders, *.after_a_server)
    )]
    AddressInUse {
        /// The side.
        side: Side,
        /// The target.
        target: String,
        /// The processes (PID, name) that hold a socket listening there, as far as
        /// `/proc` shows this user.
        holders: Vec<(u32, String)>,
        /// A server of this comparison ran before (and may have left it).
        after_a_server: bool,
    },
    /// The server exited during a run.
    #[error("server {side} (`{}`) exited ({status}) during run {run}{}", escape::terminal(.command), stderr_part(.stderr))]
    DiedMidRun {
        /// The side.
        side: Side,
        /// The run, from 1.
        run: u32,
        /// Its command.
        command: String,
        /// How it exited.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// Processes of a server's tree were still there after SIGKILL.
    #[error("server {side}: {} of its processes still run 5 s after SIGKILL: {}", .left.len(), list(.left))]
    StillRunning {
        /// The side.
        side: Side,
        /// They.
        left: Vec<StrayProcess>,
    },
    /// The load could not run.
    #[error("server {side}, run {run}: {source}")]
    Run {
        /// The side.
        side: Side,
        /// The run, from 1.
        run: u32,
        /// Why.
        #[source]
        source: RunError,
    },
    /// The run's figures cannot be trusted (what a single run exits 2 for).
    #[error("server {side}, run {run}: {why}")]
    Untrusted {
        /// The side.
        side: Side,
        /// The run, from 1.
        run: u32,
        /// The failures, as a run reports them.
        why: String,
    },
    /// The plan does not fit the server's address.
    #[error("server {side}: {source}")]
    Plan {
        /// The side.
        side: Side,
        /// Why.
        #[source]
        source: crate::plan::PlanError,
    },
}

/// The end of a server's stderr, its last 10 lines each on a line of its own, indented
/// and escaped for a terminal (escaping the joined text would show the newlines between
/// them as `\n`).
fn stderr_part(stderr: &str) -> String {
    if stderr.is_empty() {
        return "; it wrote nothing on stderr".into();
    }
    let lines: Vec<&str> = stderr.lines().collect();
    let mut part = String::from("; the end of its stderr:");
    for line in &lines[lines.len().saturating_sub(10)..] {
        part.push_str("\n    ");
        part.push_str(&escape::terminal(line));
    }
    part
}

/// Who holds a listening socket, in words, for [`AbError::AddressInUse`].
fn holders_part(holders: &[(u32, String)], after_a_server: bool) -> String {
    let leftover = if after_a_server { ", likely a leftover of the previous run's server" } else { "" };
    match holders {
        [] if after_a_server => {
            " (which process listens there is hidden from this user; likely a leftover of the previous run's server)".into()
        }
        [] => String::new(),
        [(pid, name)] => format!(": process {pid} ({}) listens there{leftover}", escape::terminal(name)),
        many => {
            let named: Vec<String> =
                many.iter().map(|(pid, name)| format!("{pid} ({})", escape::terminal(name))).collect();
            format!(": processes {} listen there{leftover}", named.join(", "))
        }
    }
}

/// `1234 (sleep), 1240 (sh)`.
fn list(procs: &[StrayProcess]) -> String {
    procs.iter().map(|p| p.to_string()).collect::<Vec<String>>().join(", ")
}

/// A command as `{:?}` quotes it, escaped for a terminal.
fn quoted(command: &str) -> String {
    escape::terminal(&format!("{command:?}")).into_owned()
}

/// What the runs gave.
pub struct AbOutcome {
    /// Every finished run, in the order it ran.
    pub records: Vec<RunRecord>,
    /// Ctrl-C stopped it (the run cut short is not in `records`).
    pub interrupted: bool,
}

/// Runs the comparison: `plan.runs` rounds, each one run of A and one of B (A first in
/// odd rounds, B first in even ones). `on_run` sees each run as it finishes.
/// `interrupted` (Ctrl-C) stops the run in progress and its server; the runs before it
/// are returned.
pub fn run(
    plan: &AbPlan,
    interrupted: &Arc<AtomicBool>,
    mut on_run: impl FnMut(&RunRecord),
) -> Result<AbOutcome, AbError> {
    let mut records = Vec::new();
    for round in 1..=plan.runs {
        let order = if round % 2 == 1 { [Side::A, Side::B] } else { [Side::B, Side::A] };
        for side in order {
            match one_run(plan, side, round, !records.is_empty(), interrupted)? {
                Some(record) => {
                    on_run(&record);
                    records.push(record);
                }
                None => return Ok(AbOutcome { records, interrupted: true }),
            }
        }
    }
    Ok(AbOutcome { records, interrupted: false })
}

/// One run: start the server, wait for it to listen, run the load, stop it. None when
/// Ctrl-C cut it short.
fn one_run(
    plan: &AbPlan,
    side: Side,
    run: u32,
    after_a_server: bool,
    interrupted: &Arc<AtomicBool>,
) -> Result<Option<RunRecord>, AbError> {
    let command = &plan.servers[match side {
        Side::A => 0,
        Side::B => 1,
    }];
    if let Address::Given(t) = &plan.address {
        if process::accepts(t) {
            let holders = procs::listener_holders(t);
            return Err(AbError::AddressInUse { side, target: t.to_string(), holders, after_a_server });
        }
    }
    let mut server = ServerProcess::start(command, plan.server_cpus.as_deref())
        .map_err(|error| AbError::Spawn { side, command: command.clone(), error })?;
    let target = match server.wait_ready(&plan.address, plan.start_timeout, interrupted) {
        Ok(t) => t,
        Err(not_ready) => {
            let stopped = stop(server, plan, side)?;
            let (command, stderr) = (command.clone(), stopped.stderr_tail);
            return Err(match not_ready {
                NotReady::Interrupted => return Ok(None),
                NotReady::Exited(status) => AbError::Exited { side, command, status: status.to_string(), stderr },
                NotReady::Timeout => AbError::NeverListened {
                    side,
                    command,
                    timeout: plan.start_timeout,
                    how: match &plan.address {
                        Address::Given(t) if !t.is_datagram() => format!("{t} never accepted a connection"),
                        Address::Given(t) => format!("it printed no `listening {}` line on stdout", process::scheme_of(t)),
                        Address::Printed => "it printed no `listening <transport> <address>` line on stdout (give the target instead, e.g. tcp://127.0.0.1:7100, to probe it)".into(),
                    },
                    stderr,
                },
            });
        }
    };
    let mut load = plan.load.clone();
    load.target = Some(target.clone());
    if let Err(source) = load.validate() {
        stop(server, plan, side)?;
        return Err(AbError::Plan { side, source });
    }
    let cpu_before = server.cpu();
    let result = crate::run::run(load, interrupted.clone(), Progress::Hide);
    let cpu = server.cpu().saturating_sub(cpu_before);
    let died = server.exited();
    let pid = server.pid();
    let stopped = stop(server, plan, side)?;
    // Ctrl-C while the load was starting (connecting) ends the run with an error from
    // the engine: the interruption, not the error, is what happened (exit 130).
    if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(None);
    }
    if let Some(status) = died {
        return Err(AbError::DiedMidRun {
            side,
            run,
            command: command.clone(),
            status: status.to_string(),
            stderr: stopped.stderr_tail,
        });
    }
    let mut report = result.map_err(|source| AbError::Run { side, run, source })?;
    if report.interrupted {
        return Ok(None);
    }
    report.label = Some(format!("{side} run {run}"));
    report.check(plan.max_p99, plan.max_error_rate);
    if report.exit_code() == 2 {
        let mut why: Vec<String> =
            report.warnings.iter().filter(|w| w.is_failure()).map(|w| w.message()).collect();
        if why.is_empty() {
            why.push("no message was answered".into());
        }
        return Err(AbError::Untrusted { side, run, why: why.join("; ") });
    }
    let messages = report.counters.completed + report.counters.warmup_completed;
    Ok(Some(RunRecord {
        side,
        run,
        server: ServerFigures {
            pid,
            target: target.to_string(),
            cpu_s: cpu.as_secs_f64(),
            cpu_us_per_msg: cpu.as_secs_f64() * 1e6 / messages.max(1) as f64,
            killed: stopped.killed,
            strays: stopped.strays,
            strays_unlisted: stopped.strays_unlisted,
        },
        client_busy: report.client_busy(),
        result: report.document(),
    }))
}

/// Stops a server; an error only when processes of its group survive SIGKILL.
fn stop(server: ServerProcess, plan: &AbPlan, side: Side) -> Result<process::Stopped, AbError> {
    let stopped = server.stop(plan.stop_timeout);
    if stopped.left.is_empty() {
        Ok(stopped)
    } else {
        Err(AbError::StillRunning { side, left: stopped.left.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A taken address names who holds it when `/proc` shows it, and after a server of
    /// this comparison ran, says it is likely that server's leftover.
    #[test]
    fn a_taken_address_names_its_holder() {
        let taken = |holders: Vec<(u32, String)>, after_a_server| {
            AbError::AddressInUse {
                side: Side::B,
                target: "tcp://127.0.0.1:7100".into(),
                holders,
                after_a_server,
            }
            .to_string()
        };
        let text = taken(vec![(1234, "ringecho".into())], true);
        assert!(
            text.contains("started: process 1234 (ringecho) listens there, likely a leftover of the previous run's server; stop it"),
            "{text}"
        );
        let text = taken(vec![(1, "a".into()), (2, "b\u{1b}".into())], false);
        assert!(text.contains("processes 1 (a), 2 (b\\x1b) listen there; stop it"), "{text}");
        assert!(taken(Vec::new(), true).contains("is hidden from this user; likely a leftover"));
        assert!(taken(Vec::new(), false).contains("before the server started; stop it"));
    }
}
