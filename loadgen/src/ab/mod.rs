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

mod error;
mod plan;
mod process;
mod procs;
pub mod summary;
mod sys;

pub use crate::document::ab::{AbDocument, RunRecord, ServerFigures, Side, StrayProcess};
pub use error::{AbError, Stage};
pub use plan::AbPlan;
pub use process::{Address, parse_listening};
pub use summary::{AbResult, summarize};

use crate::engine::RunError;
use crate::plan::Plan;
use crate::report::Report;
use crate::run::Progress;
use process::{NotReady, ServerProcess};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

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

/// One run: start the server, wait for it to listen, run the load `plan.warmup_runs`
/// times unmeasured (their msg/s kept) and once measured, stop it. None when Ctrl-C cut
/// it short.
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
    let command = command.clone();
    let cut = |cut: Cut, stage: Stage, stderr: String| -> Result<Option<RunRecord>, AbError> {
        Err(match cut {
            Cut::Interrupted => return Ok(None),
            Cut::Died(status) => {
                AbError::DiedMidRun { side, stage, command, status: status.to_string(), stderr }
            }
            Cut::Failed(source) => AbError::Run { side, stage, source },
            Cut::Untrusted(why) => AbError::Untrusted { side, stage, why },
        })
    };
    let mut warmup_msgs_per_s = Vec::new();
    for warmup in 1..=plan.warmup_runs {
        match load_run(&load, &mut server, interrupted) {
            Ok(report) => warmup_msgs_per_s.push(report.throughput()),
            Err(c) => {
                let stopped = stop(server, plan, side)?;
                return cut(c, Stage::WarmUp { run, warmup }, stopped.stderr_tail);
            }
        }
    }
    let cpu_before = server.cpu();
    let outcome = load_run(&load, &mut server, interrupted);
    let cpu = server.cpu().saturating_sub(cpu_before);
    let pid = server.pid();
    let stopped = stop(server, plan, side)?;
    let mut report = match outcome {
        Ok(report) => report,
        Err(c) => return cut(c, Stage::Run(run), stopped.stderr_tail),
    };
    report.label = Some(format!("{side} run {run}"));
    report.check(plan.max_p99, plan.max_error_rate);
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
        warmup_msgs_per_s,
        result: report.document(),
    }))
}

/// Why a load run against a server gave no figures.
enum Cut {
    /// Ctrl-C.
    Interrupted,
    /// The server exited during it.
    Died(std::process::ExitStatus),
    /// The load could not run.
    Failed(RunError),
    /// Its figures cannot be trusted: the failures, as a run reports them.
    Untrusted(String),
}

/// One load run against a running server, measured or a warm-up: its report when the
/// server lived through it and its figures can be trusted.
fn load_run(load: &Plan, server: &mut ServerProcess, interrupted: &Arc<AtomicBool>) -> Result<Report, Cut> {
    let result = crate::run::run(load.clone(), interrupted.clone(), Progress::Hide);
    let died = server.exited();
    // Ctrl-C while the load was starting (connecting) ends the run with an error from
    // the engine: the interruption, not the error, is what happened (exit 130).
    if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Cut::Interrupted);
    }
    if let Some(status) = died {
        return Err(Cut::Died(status));
    }
    let report = result.map_err(Cut::Failed)?;
    if report.interrupted {
        return Err(Cut::Interrupted);
    }
    if report.exit_code() == crate::exit::ERROR {
        let mut why: Vec<String> =
            report.warnings.iter().filter(|w| w.is_failure()).map(|w| w.message()).collect();
        if why.is_empty() {
            why.push("no message was answered".into());
        }
        return Err(Cut::Untrusted(why.join("; ")));
    }
    Ok(report)
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
