//! Repeated runs (`--repeat N`): N measured runs, each with fresh connections, pooled
//! into one document that keeps every repeat and their spread (the median, min–max and a
//! distribution-free confidence interval of the median for msg/s and each percentile, as
//! hyperfine reports repeated commands: `crate::stats`). The checks are judged on the
//! medians; a run whose figures cannot be trusted makes the whole untrusted.
//!
//! Invariant: the pooled document's figures are those of all repeats' samples together
//! (counters summed, measured times added, histograms added), derived like any
//! document's; the spread is derived from the repeats and nothing else; the exit code is
//! [`crate::exit::code`]'s. With `--max-duration`, the runs together end by it: a run that
//! would not fit is not started, and the document says how many were made.

use crate::counters::Counters;
use crate::document::{ResultDoc, Summary, WarningEntry};
use crate::engine::RunError;
use crate::hist;
use crate::plan::Plan;
use crate::report::Report;
use crate::run::{Progress, run_until};
use crate::slo::Slo;
use crate::warning::Warning;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How the runs are made and judged.
pub struct Repeat<'a> {
    /// Every run's plan.
    pub plan: &'a Plan,
    /// How many runs.
    pub runs: u32,
    /// Judged on the medians (with `--verify`'s check of every run).
    pub slo: &'a Slo,
    /// `--start-at`, for the first run.
    pub start_at: Option<SystemTime>,
    /// `--label`, for every run.
    pub label: Option<String>,
    /// `--max-duration`, when given: the bound of all the runs together (a run starts only
    /// if it fits in what is left); none: each run is bounded by its plan alone.
    pub bound: Option<Duration>,
}

/// Makes the runs one after another and pools them. `on_run` sees each run's report as
/// it ends (a progress line). `None` when Ctrl-C came before the first run ended:
/// nothing was measured. With a `bound`, a run after the first starts only if its planned
/// length (and the longest run so far) fits in what is left; a repeat stopped there says
/// so (a [`Warning::RunsCut`]) and exits 2: it is not the measurement asked for.
pub fn run(
    r: &Repeat<'_>,
    interrupted: &Arc<AtomicBool>,
    mut on_run: impl FnMut(u32, &Report),
) -> Result<Option<ResultDoc>, RunError> {
    let mut runs = Vec::new();
    let mut verify_failed = Vec::new();
    let mut untrusted = false;
    let deadline = r.bound.map(|max| crate::run::deadline(max, r.start_at));
    let planned = r.plan.planned_length().unwrap_or_default();
    let mut longest = Duration::ZERO;
    let mut cut = false;
    for i in 0..r.runs {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        if deadline.is_some_and(|d| i > 0 && Instant::now() + planned.max(longest) > d) {
            cut = true;
            break;
        }
        let start_at = if i == 0 { r.start_at } else { None };
        let began = Instant::now();
        let run = run_until(r.plan.clone(), interrupted.clone(), Progress::Hide, start_at, deadline);
        if start_at.is_none() {
            longest = longest.max(began.elapsed());
        }
        let mut report = match run {
            Ok(report) => report,
            Err(_) if interrupted.load(Ordering::Relaxed) => break,
            Err(e) => return Err(e),
        };
        report.label = r.label.clone();
        report.check_slo(r.slo);
        on_run(i + 1, &report);
        // A run that cannot be trusted (the target failed) ends the repeats: the runs
        // after it would measure a target that is not what the first ones measured.
        let failed = report.exit_code() == crate::exit::ERROR;
        untrusted |= failed;
        verify_failed.extend(report.verify_failed());
        let stop = report.interrupted || failed;
        runs.push(report.document());
        if stop {
            break;
        }
    }
    if runs.is_empty() {
        return Ok(None);
    }
    let made = runs.len() as u32;
    let mut doc = pool(runs);
    doc.interrupted |= interrupted.load(Ordering::Relaxed);
    if let (true, Some(max)) = (cut, r.bound) {
        let cut = Warning::RunsCut { runs: made, planned: r.runs, max_duration_s: max.as_secs_f64() };
        doc.warnings.push((&cut).into());
    }
    let point = doc.repeat_point().unwrap_or_default();
    doc.failed_checks = r.slo.breaches(&point);
    doc.failed_checks.extend(verify_failed);
    doc.exit_code = crate::exit::code(doc.interrupted, untrusted || cut, !doc.failed_checks.is_empty());
    Ok(Some(doc))
}

/// One document for sequential runs: counters summed, measured times added, histograms
/// added, warnings carried (each once), the first run's plan and target; with every
/// repeat kept in `repeats` and their spread ([`crate::document::RepeatSpread`]).
pub fn pool(runs: Vec<ResultDoc>) -> ResultDoc {
    let Some(first) = runs.first() else {
        // Callers pool at least one run; an empty pool is an empty document.
        return ResultDoc::empty(String::new(), None);
    };
    let mut doc = first.clone();
    let (mut corrected, mut service, mut connect) = (hist::new(), hist::new(), hist::new());
    let mut counters = Counters::default();
    let mut warnings: Vec<WarningEntry> = Vec::new();
    let (mut elapsed_s, mut load_cpu_s) = (0.0, 0.0);
    let mut send_lag = runs.iter().all(|r| r.latency.send_lag.is_some()).then(hist::new);
    // The breakdown by kernel timestamps adds up only when every run has one.
    let mut breakdown =
        runs.iter().all(|r| r.latency.breakdown.is_some()).then(crate::engine::Breakdown::default);
    for r in &runs {
        counters.merge(&r.counters);
        // Histograms of ringload's own runs have the same bounds: adding cannot fail.
        let _ = hist::add(&mut corrected, &r.latency.corrected.histogram());
        let _ = hist::add(&mut service, &r.latency.service.histogram());
        let _ = hist::add(&mut connect, &r.latency.connect.histogram());
        if let (Some(sum), Some(lag)) = (&mut send_lag, &r.latency.send_lag) {
            let _ = hist::add(sum, &lag.histogram());
        }
        if let (Some(sum), Some(b)) = (&mut breakdown, &r.latency.breakdown) {
            let _ = b.add_to(sum);
        }
        elapsed_s += r.elapsed_s;
        load_cpu_s += r.load_cpu_s;
        for w in &r.warnings {
            if let Warning::ClientBehind { lag_p99_ns: lag, .. } = w.warning {
                // One warning for the pool: the run that fell furthest behind.
                let have = warnings.iter_mut().find(|h| matches!(h.warning, Warning::ClientBehind { .. }));
                match have {
                    Some(h) if matches!(h.warning, Warning::ClientBehind { lag_p99_ns, .. } if lag_p99_ns >= lag) =>
                        {}
                    Some(h) => *h = w.clone(),
                    None => warnings.push(w.clone()),
                }
            } else if !warnings.iter().any(|have| have.warning == w.warning) {
                warnings.push(w.clone());
            }
        }
    }
    doc.counters = counters;
    doc.elapsed_s = elapsed_s;
    doc.load_cpu_s = load_cpu_s;
    doc.latency.corrected = Summary::of(&corrected);
    doc.latency.service = Summary::of(&service);
    doc.latency.connect = Summary::of(&connect);
    doc.latency.send_lag = send_lag.as_ref().map(Summary::of);
    doc.latency.breakdown = breakdown.as_ref().and_then(crate::document::LatencyBreakdown::of);
    doc.warnings = warnings;
    doc.interrupted = runs.iter().any(|r| r.interrupted);
    doc.exit_code = runs.iter().map(|r| r.exit_code).max().unwrap_or(0);
    doc.failed_checks.clear();
    // Each run's own verdict stays in its document; the pool's figures are no one run's.
    doc.views = None;
    doc.repeats = runs;
    doc.derive();
    doc
}
