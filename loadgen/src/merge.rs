//! Merging results of runs that ran at the same time (several load machines against one
//! target) into one document: counters summed (saturating, never wrapping), histograms
//! added (refused past what V2 carries), percentiles recomputed from the sum — never
//! averaged. The merged rate is the summed count over the longest window, which is only
//! a rate the target saw if the runs ran together: runs whose measured windows do not
//! overlap are refused (unless forced), and a partial overlap is said.

use crate::counters::Counters;
use crate::document::{LatencyBreakdown, ResultDoc, Summary, WarningEntry};
use crate::engine::Breakdown;
use crate::figures::Bulk;
use crate::hist::{self, Hist, HistError};
use crate::plan::Model;
use crate::saved::Saved;
use crate::warning::Warning;
use std::fmt;

/// Why results could not be merged. Every message is a sentence naming the results.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// `merge` was given nothing.
    #[error("cannot merge: no results given")]
    NoResults,
    /// `merge` was given results of different transports.
    #[error("cannot merge: {first} is {first_transport} but {other} is {other_transport}")]
    MixedTransports {
        /// The first result.
        first: String,
        /// Its transport.
        first_transport: String,
        /// The one that differs.
        other: String,
        /// Its transport.
        other_transport: String,
    },
    /// A histogram does not fit the merged one.
    #[error("cannot merge: {name}: latency.{which}.histogram: {cause}")]
    Histogram {
        /// The result.
        name: String,
        /// Which histogram (`corrected`, `service`, `connect`, `send_lag`, `breakdown`).
        which: &'static str,
        /// Why.
        cause: HistError,
    },
    /// `merge` was given runs whose measured windows do not overlap.
    #[error(
        "cannot merge: {earlier} ended {apart_s:.3} s before {later} began; merged runs must run at the same time (--force merges them anyway, and the merged rate is then wrong)"
    )]
    WindowsApart {
        /// The run that ended first.
        earlier: String,
        /// The run that began after it ended.
        later: String,
        /// Seconds between the end of one and the start of the other.
        apart_s: f64,
    },
}

/// The share of the time spanned that the runs must all have run together to merge
/// without a warning.
const CONCURRENT_SHARE: f64 = 0.9;

/// Something `merge` did that the user should hear about.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeWarning {
    /// Two results ran different plans.
    PlanDiffers {
        /// The first result.
        first: String,
        /// The one that differs.
        other: String,
        /// The plan's field that differs (`size`, `model`).
        field: &'static str,
    },
    /// A result does not say when it ran (`started_unix` 0): whether the runs ran
    /// together cannot be checked.
    StartUnknown {
        /// The result.
        name: String,
    },
    /// The runs did not all run together for most of the time they span.
    NotConcurrent {
        /// Seconds all ran together; negative: how far apart (forced).
        overlap_s: f64,
        /// Seconds from the first start to the last end.
        span_s: f64,
    },
}

impl fmt::Display for MergeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeWarning::PlanDiffers { first, other, field } => {
                write!(f, "{first} and {other} differ in plan.{field}; merged anyway")
            }
            MergeWarning::StartUnknown { name } => write!(
                f,
                "{name} does not say when it ran (no started_unix): cannot check that the runs ran together"
            ),
            MergeWarning::NotConcurrent { overlap_s, span_s } => {
                f.write_str(&Warning::NotConcurrent { overlap_s: *overlap_s, span_s: *span_s }.message())
            }
        }
    }
}

/// How the measured windows of the results lie: `None` when some start is unknown.
struct Windows {
    /// Seconds all ran together (negative: the gap between the first end and the last
    /// start).
    overlap_s: f64,
    /// Seconds from the first start to the last end.
    span_s: f64,
    /// The result that ended first.
    first_end: usize,
    /// The result that began last.
    last_start: usize,
}

fn windows(results: &[Saved]) -> Option<Windows> {
    if results.iter().any(|r| r.doc.started_unix <= 0.0) {
        return None;
    }
    // The measured window begins after the warm-up; `started_unix` is the run's start.
    let start = |r: &Saved| r.doc.started_unix + r.doc.plan.as_ref().map_or(0.0, |p| p.warmup.as_secs_f64());
    let end = |r: &Saved| start(r) + r.doc.elapsed_s;
    let by = |f: &dyn Fn(&Saved) -> f64, later: bool| {
        (0..results.len())
            .reduce(|a, b| if (f(&results[b]) > f(&results[a])) == later { b } else { a })
            .unwrap_or(0)
    };
    let first_end = by(&end, false);
    let last_start = by(&start, true);
    let first_start = by(&start, false);
    let last_end = by(&end, true);
    Some(Windows {
        overlap_s: end(&results[first_end]) - start(&results[last_start]),
        span_s: end(&results[last_end]) - start(&results[first_start]),
        first_end,
        last_start,
    })
}

/// Checks that the results can be merged: one transport, windows that overlap (or
/// `force`); returns what to warn about.
fn admissible(results: &[Saved], force: bool) -> Result<Vec<MergeWarning>, MergeError> {
    let first = results.first().ok_or(MergeError::NoResults)?;
    let mut warnings = Vec::new();
    for r in &results[1..] {
        if r.doc.transport != first.doc.transport {
            return Err(MergeError::MixedTransports {
                first: first.name.clone(),
                first_transport: first.doc.transport.clone(),
                other: r.name.clone(),
                other_transport: r.doc.transport.clone(),
            });
        }
        let (a, b) = (first.doc.plan.as_ref(), r.doc.plan.as_ref());
        let differs = [
            ("size", a.map(|p| p.size) != b.map(|p| p.size)),
            ("model", a.map(|p| p.model) != b.map(|p| p.model)),
            ("send_window", a.map(|p| p.send_window) != b.map(|p| p.send_window)),
        ];
        for (field, differs) in differs {
            if differs {
                warnings.push(MergeWarning::PlanDiffers {
                    first: first.name.clone(),
                    other: r.name.clone(),
                    field,
                });
            }
        }
    }
    match windows(results) {
        None => warnings.extend(
            results
                .iter()
                .filter(|r| r.doc.started_unix <= 0.0)
                .map(|r| MergeWarning::StartUnknown { name: r.name.clone() }),
        ),
        Some(w) if w.overlap_s <= 0.0 && !force => {
            return Err(MergeError::WindowsApart {
                earlier: results[w.first_end].name.clone(),
                later: results[w.last_start].name.clone(),
                apart_s: -w.overlap_s,
            });
        }
        Some(w) if w.overlap_s < CONCURRENT_SHARE * w.span_s => {
            warnings.push(MergeWarning::NotConcurrent { overlap_s: w.overlap_s, span_s: w.span_s });
        }
        Some(_) => {}
    }
    Ok(warnings)
}

/// Merges `results`: counters are summed, histograms added, the measured window starts
/// at the first start and is the longest of them, and every derived figure is
/// recomputed ([`ResultDoc::derive`]). The rest (plan, target) is the first result's.
/// Different transports are refused; so are runs whose measured windows do not overlap,
/// unless `force` (then with a warning, also written into the document); different
/// plans are merged with a warning each. The inputs' warnings are carried into the
/// merged document.
pub fn merge(results: &[Saved], force: bool) -> Result<(ResultDoc, Vec<MergeWarning>), MergeError> {
    let warnings = admissible(results, force)?;
    let first = &results[0];
    let mut counters = Counters::default();
    let (mut corrected, mut service, mut connect) = (hist::new(), hist::new(), hist::new());
    let mut elapsed_s: f64 = 0.0;
    let mut load_cpu_s: f64 = 0.0;
    // An open loop's send lag adds up only when every input has one.
    let mut send_lag = results.iter().all(|r| r.doc.latency.send_lag.is_some()).then(hist::new);
    // So does the breakdown by kernel timestamps.
    let mut breakdown = results.iter().all(|r| r.doc.latency.breakdown.is_some()).then(Breakdown::default);
    for r in results {
        counters.merge(&r.doc.counters);
        let latency = &r.doc.latency;
        add(&mut corrected, &latency.corrected, r, "corrected")?;
        add(&mut service, &latency.service, r, "service")?;
        add(&mut connect, &latency.connect, r, "connect")?;
        if let (Some(sum), Some(lag)) = (&mut send_lag, &latency.send_lag) {
            add(sum, lag, r, "send_lag")?;
        }
        if let (Some(sum), Some(b)) = (&mut breakdown, &latency.breakdown) {
            b.add_to(sum).map_err(|cause| MergeError::Histogram {
                name: r.name.clone(),
                which: "breakdown",
                cause,
            })?;
        }
        elapsed_s = elapsed_s.max(r.doc.elapsed_s);
        load_cpu_s = (load_cpu_s + r.doc.load_cpu_s).min(f64::MAX);
    }
    // A result that does not know what it sent (0) makes the sum unknown too: a partial
    // sum below the answers would break completed ≤ sent.
    if results.iter().any(|r| r.doc.counters.sent == 0 && r.doc.counters.completed > 0) {
        counters.sent = 0;
    }
    // Repeats and search steps belong to the first result alone, not to the merge.
    let mut doc = first.doc.without_runs();
    doc.counters = counters;
    doc.elapsed_s = elapsed_s;
    doc.started_unix = results.iter().map(|r| r.doc.started_unix).fold(f64::INFINITY, f64::min);
    doc.load_cpu_s = load_cpu_s;
    doc.latency.corrected = Summary::of(&corrected);
    doc.latency.service = Summary::of(&service);
    doc.latency.connect = Summary::of(&connect);
    doc.latency.send_lag = send_lag.as_ref().map(Summary::of);
    doc.latency.breakdown = breakdown.as_ref().and_then(LatencyBreakdown::of);
    doc.label = Some(format!("merged ({})", results.len()));
    doc.merged_from = Some(results.iter().map(|r| r.name.clone()).collect());
    // Byte figures add up when every run has them in the same mode; else there are none
    // (never the first run's alone).
    doc.bulk = Bulk::merged(results.iter().map(|r| r.doc.bulk.as_ref()));
    doc.background = Bulk::merged(results.iter().map(|r| r.doc.background.as_ref()));
    doc.failed_checks.clear();
    doc.interrupted = results.iter().any(|r| r.doc.interrupted);
    doc.derive();
    doc.warnings = carried_warnings(results, &doc, &warnings).iter().map(WarningEntry::from).collect();
    let untrusted = counters.completed == 0 || doc.warnings.iter().any(|w| w.warning.is_failure());
    doc.exit_code = crate::exit::code(false, untrusted, false);
    Ok((doc, warnings))
}

fn add(sum: &mut Hist, s: &Summary, from: &Saved, which: &'static str) -> Result<(), MergeError> {
    hist::add(sum, &s.histogram()).map_err(|cause| MergeError::Histogram {
        name: from.name.clone(),
        which,
        cause,
    })
}

/// The warnings of the merged run: the inputs' (a saturated client stays saturated in
/// the merge), with their figures recomputed for the merged run where they have any.
fn carried_warnings(results: &[Saved], merged: &ResultDoc, said: &[MergeWarning]) -> Vec<Warning> {
    let inputs = || results.iter().flat_map(|r| r.doc.warnings.iter().map(|w| &w.warning));
    let mut out = Vec::new();
    let busy = inputs()
        .filter_map(|w| match w {
            Warning::ClientSaturated { busy } => Some(*busy),
            _ => None,
        })
        .reduce(f64::max);
    if let Some(busy) = busy {
        out.push(Warning::ClientSaturated { busy });
    }
    // A client behind its schedule in one input is behind in the merge: the worst lag.
    let behind = inputs()
        .filter_map(|w| match w {
            Warning::ClientBehind { lag_p99_ns, limit_ns, busy } => Some((*lag_p99_ns, *limit_ns, *busy)),
            _ => None,
        })
        .max_by_key(|&(lag, ..)| lag);
    if let Some((lag_p99_ns, limit_ns, busy)) = behind {
        out.push(Warning::ClientBehind { lag_p99_ns, limit_ns, busy });
    }
    if inputs().any(|w| matches!(w, Warning::RateShortfall { .. })) {
        let requested = results
            .iter()
            .filter_map(|r| match r.doc.plan.as_ref().map(|p| p.model) {
                Some(Model::Open { rate }) => Some(rate),
                _ => None,
            })
            .sum();
        out.push(Warning::RateShortfall { requested, achieved: merged.throughput.msgs_per_s });
    }
    if merged.failed > 0 {
        out.push(Warning::Errors { failed: merged.failed });
    }
    if inputs().any(|w| matches!(w, Warning::SharedCpu)) {
        out.push(Warning::SharedCpu);
    }
    if merged.interrupted {
        out.push(Warning::Interrupted);
    }
    let not_concurrent = said.iter().find_map(|w| match w {
        MergeWarning::NotConcurrent { overlap_s, span_s } => {
            Some(Warning::NotConcurrent { overlap_s: *overlap_s, span_s: *span_s })
        }
        _ => None,
    });
    let carried = || inputs().find(|w| matches!(w, Warning::NotConcurrent { .. })).cloned();
    out.extend(not_concurrent.or_else(carried));
    // What one input said about itself holds for the merge: a failed run (not an echo,
    // connections lost, ...) makes a failed merge; its limits and late start stay said.
    for w in inputs() {
        let own = w.is_failure()
            || matches!(w, Warning::TimeLimit { .. } | Warning::SizeLimit { .. } | Warning::LateStart { .. });
        if own && !out.contains(w) {
            out.push(w.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
