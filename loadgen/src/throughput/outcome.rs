//! From the workers' results to a run's bulk figures and verdicts: the measured bulk
//! connections (`--mode send|receive|bulk`) and the background flows (`--background`).
//!
//! Invariant: a background flow that failed (never connected, lost, nothing moved the way
//! its mode moves bytes) fails the whole run (exit 2): latency "under load" measured
//! without the load is not what was asked for.

use super::figures::{Bulk, problems};
use crate::counters::Counters;
use crate::engine::WorkerResult;
use crate::plan::Plan;
use crate::report::{Report, Warning};
use std::time::Duration;

fn figures(plan: &Plan, results: &[WorkerResult], elapsed: Duration, background: bool) -> Bulk {
    let t = &plan.throughput;
    let (mode, connections) =
        if background { (t.background_mode, t.background) } else { (t.mode, plan.connections) };
    let tallies: Vec<_> =
        results.iter().filter(|r| r.background == background).map(|r| (&r.bulk, r.cpu)).collect();
    Bulk::of(mode, connections, t, &tallies, elapsed)
}

/// The measured connections' figures, in a bulk mode.
pub(crate) fn measured(plan: &Plan, results: &[WorkerResult], elapsed: Duration) -> Option<Bulk> {
    plan.throughput.mode.is_bulk().then(|| figures(plan, results, elapsed, false))
}

/// The background flows' figures, when there are some.
pub(crate) fn background(plan: &Plan, results: &[WorkerResult], elapsed: Duration) -> Option<Bulk> {
    (plan.throughput.background > 0).then(|| figures(plan, results, elapsed, true))
}

/// Adds the bulk verdicts to `report`: the measured connections' misuse (a send-only
/// target that answers, a receive-only one that sends nothing), and any background flow
/// that failed.
pub(crate) fn judge(report: &mut Report, results: &[WorkerResult]) {
    if report.interrupted {
        return;
    }
    if let Some(b) = &report.bulk {
        let found = problems(b.mode, &report.counters, b);
        report.warnings.extend(found);
    }
    let Some(bg) = &report.background else { return };
    let mut c = Counters::default();
    let mut made = 0u64;
    let mut cause = None;
    for r in results.iter().filter(|r| r.background) {
        c.merge(&r.counters);
        made += r.connected as u64;
        if cause.is_none() {
            cause = r.connect_error.as_ref().map(|e| format!("{e} ({})", crate::verdict::connect_hint(e)));
        }
    }
    let planned = u64::from(report.plan.throughput.background);
    let mut why = Vec::new();
    if made < planned {
        why.push(format!(
            "{} of {planned} could not connect: {}",
            planned - made,
            cause.unwrap_or_else(|| "unknown error".into())
        ));
    }
    if c.conns_lost > 0 {
        why.push(format!("{} of {planned} were lost mid-run", c.conns_lost));
    }
    if c.unsolicited_bytes > 0 {
        why.push(format!("the target sent {} bytes it was not sent (not an echo)", c.unsolicited_bytes));
    }
    if made > 0 {
        why.extend(problems(bg.mode, &c, bg).iter().map(Warning::message));
    }
    if !why.is_empty() {
        report.warnings.push(Warning::BackgroundFailed { problem: why.join("; ") });
    }
}
