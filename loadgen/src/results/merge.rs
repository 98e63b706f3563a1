//! Merging results of runs that ran at the same time (several load machines against one
//! target) into one document: counters summed (saturating, never wrapping), histograms
//! added (refused past what V2 carries), percentiles recomputed from the sum — never
//! averaged. The merged rate is the summed count over the longest window, which is only
//! a rate the target saw if the runs ran together: runs whose measured windows do not
//! overlap are refused (unless forced), and a partial overlap is said.

use super::{ResultError, Saved};
use crate::document::{self, ResultDoc, WarningEntry};
use crate::engine::Counters;
use crate::hist::{self, Hist};
use crate::plan::Model;
use crate::report::Warning;
use std::fmt;

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
fn admissible(results: &[Saved], force: bool) -> Result<Vec<MergeWarning>, ResultError> {
    let first = results.first().ok_or(ResultError::NoResults)?;
    let mut warnings = Vec::new();
    for r in &results[1..] {
        if r.doc.transport != first.doc.transport {
            return Err(ResultError::MixedTransports {
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
            return Err(ResultError::WindowsApart {
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
pub fn merge(results: &[Saved], force: bool) -> Result<(ResultDoc, Vec<MergeWarning>), ResultError> {
    let warnings = admissible(results, force)?;
    let first = &results[0];
    let mut counters = Counters::default();
    let (mut corrected, mut service, mut connect) = (hist::new(), hist::new(), hist::new());
    let mut elapsed_s: f64 = 0.0;
    let mut load_cpu_s: f64 = 0.0;
    // An open loop's send lag adds up only when every input has one.
    let mut send_lag = results.iter().all(|r| r.doc.latency.send_lag.is_some()).then(hist::new);
    for r in results {
        counters = document::saturating_sum(&counters, &r.doc.counters);
        let latency = &r.doc.latency;
        add(&mut corrected, &latency.corrected.histogram, r, "corrected")?;
        add(&mut service, &latency.service.histogram, r, "service")?;
        add(&mut connect, &latency.connect.histogram, r, "connect")?;
        if let (Some(sum), Some(lag)) = (&mut send_lag, &latency.send_lag) {
            add(sum, &lag.histogram, r, "send_lag")?;
        }
        elapsed_s = elapsed_s.max(r.doc.elapsed_s);
        load_cpu_s = (load_cpu_s + r.doc.load_cpu_s).min(f64::MAX);
    }
    // A result that does not know what it sent (0) makes the sum unknown too: a partial
    // sum below the answers would break completed ≤ sent.
    if results.iter().any(|r| r.doc.counters.sent == 0 && r.doc.counters.completed > 0) {
        counters.sent = 0;
    }
    let mut doc = first.doc.clone();
    doc.counters = counters;
    doc.elapsed_s = elapsed_s;
    doc.started_unix = results.iter().map(|r| r.doc.started_unix).fold(f64::INFINITY, f64::min);
    doc.load_cpu_s = load_cpu_s;
    doc.latency.corrected.histogram = corrected;
    doc.latency.service.histogram = service;
    doc.latency.connect.histogram = connect;
    doc.latency.send_lag = send_lag.map(document::Summary::of);
    doc.label = Some(format!("merged ({})", results.len()));
    doc.merged_from = Some(results.iter().map(|r| r.name.clone()).collect());
    // Repeats and search steps belong to the first result alone, not to the merge.
    doc.repeats.clear();
    doc.search = None;
    // Byte figures add up when every run has them in the same mode; else there are none
    // (never the first run's alone).
    doc.bulk = crate::throughput::figures::Bulk::merged(results.iter().map(|r| r.doc.bulk.as_ref()));
    doc.background =
        crate::throughput::figures::Bulk::merged(results.iter().map(|r| r.doc.background.as_ref()));
    doc.failed_checks.clear();
    doc.interrupted = results.iter().any(|r| r.doc.interrupted);
    doc.exit_code = if counters.completed == 0 { 2 } else { 0 };
    doc.derive();
    doc.warnings = carried_warnings(results, &doc, &warnings).iter().map(WarningEntry::from).collect();
    if doc.warnings.iter().any(|w| w.warning.is_failure()) {
        doc.exit_code = 2;
    }
    Ok((doc, warnings))
}

fn add(sum: &mut Hist, h: &Hist, from: &Saved, which: &'static str) -> Result<(), ResultError> {
    hist::add(sum, h).map_err(|cause| ResultError::Histogram { name: from.name.clone(), which, cause })
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
mod tests {
    use super::*;
    use crate::results::testing::fake;

    #[test]
    fn merge_sums_and_refuses_mixed_transports() {
        let a = fake("a", 1000, 10.0, 50_000);
        let b = fake("b", 3000, 9.0, 150_000);
        let (m, warnings) = merge(&[a.clone(), b.clone()], false).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(m.counters.completed, 4000);
        assert_eq!(m.elapsed_s, 10.0);
        assert_eq!(m.throughput.msgs_per_s, 400.0);
        let mut both = a.doc.latency.corrected.histogram.clone();
        both.add(&b.doc.latency.corrected.histogram).unwrap();
        assert_eq!(m.latency.corrected.p99, both.value_at_quantile(0.99));
        assert_eq!(m.latency.corrected.histogram, both);
        assert_eq!(m.label.as_deref(), Some("merged (2)"));
        assert_eq!(m.merged_from, Some(vec!["a".to_string(), "b".to_string()]));
        let mut udp = b.clone();
        udp.doc.transport = "udp".into();
        assert!(matches!(merge(&[a, udp], false), Err(ResultError::MixedTransports { .. })));
        assert!(matches!(merge(&[], false), Err(ResultError::NoResults)));
    }

    /// Open-loop send lags add up; one input without a lag (a closed loop, an older
    /// document) leaves the merge without one; the worst `client_behind` is carried.
    #[test]
    fn send_lags_add_up_only_when_every_input_has_one() {
        let lag = |values: &[u64]| {
            let mut h = hist::new();
            values.iter().for_each(|&v| hist::record(&mut h, v));
            Some(document::Summary::of(h))
        };
        let mut a = fake("a", 1000, 10.0, 50_000);
        a.doc.latency.send_lag = lag(&[10_000, 20_000]);
        a.doc
            .warnings
            .push((&Warning::ClientBehind { lag_p99_ns: 150_000, limit_ns: 100_000, busy: 0.9 }).into());
        let mut b = fake("b", 1000, 10.0, 50_000);
        b.doc.latency.send_lag = lag(&[30_000]);
        b.doc
            .warnings
            .push((&Warning::ClientBehind { lag_p99_ns: 400_000, limit_ns: 100_000, busy: 0.7 }).into());
        let (m, _) = merge(&[a.clone(), b], false).unwrap();
        let merged = m.latency.send_lag.expect("both had one");
        assert_eq!((merged.count, merged.max), (3, 30_015));
        let behind: Vec<_> =
            m.warnings.iter().filter(|w| matches!(w.warning, Warning::ClientBehind { .. })).collect();
        assert_eq!(behind.len(), 1);
        assert!(matches!(behind[0].warning, Warning::ClientBehind { lag_p99_ns: 400_000, .. }));
        let closed = fake("c", 1000, 10.0, 50_000);
        let (m, _) = merge(&[a.clone(), closed], false).unwrap();
        assert!(m.latency.send_lag.is_none());
        // Pooled repeats: the same rule, one warning for the furthest behind.
        let mut c = a.clone();
        c.doc.warnings[0] =
            (&Warning::ClientBehind { lag_p99_ns: 900_000, limit_ns: 100_000, busy: 0.8 }).into();
        let pooled = crate::repeat::pool(vec![a.doc.clone(), c.doc]);
        assert_eq!(pooled.latency.send_lag.as_ref().map(|l| l.count), Some(4));
        let behind: Vec<_> =
            pooled.warnings.iter().filter(|w| matches!(w.warning, Warning::ClientBehind { .. })).collect();
        assert_eq!(behind.len(), 1, "{:?}", pooled.warnings);
        assert!(matches!(behind[0].warning, Warning::ClientBehind { lag_p99_ns: 900_000, .. }));
        let mut old = fake("d", 1000, 10.0, 50_000).doc;
        old.latency.send_lag = None;
        assert!(crate::repeat::pool(vec![a.doc, old]).latency.send_lag.is_none());
    }

    #[test]
    fn different_plans_merge_with_a_warning() {
        let a = fake("a", 1000, 10.0, 50_000);
        let mut b = fake("b", 1000, 10.0, 50_000);
        if let Some(p) = b.doc.plan.as_mut() {
            p.model = crate::plan::Model::Open { rate: 100.0 };
        }
        let (_, warnings) = merge(&[a, b], false).unwrap();
        assert_eq!(
            warnings,
            [MergeWarning::PlanDiffers { first: "a".into(), other: "b".into(), field: "model" }]
        );
        assert_eq!(warnings[0].to_string(), "a and b differ in plan.model; merged anyway");
    }

    /// Lost datagrams count as failed in a merge too: the one definition.
    #[test]
    fn merged_failed_is_counters_failed() {
        let mut a = fake("a", 1000, 10.0, 50_000);
        a.doc.counters.lost = 7;
        a.doc.counters.failed_messages = 3;
        let mut b = fake("b", 1000, 10.0, 50_000);
        b.doc.counters.unanswered_at_end = 2;
        b.doc.counters.backlog_overflow = 1;
        b.doc.counters.mismatched_messages = 4;
        let (m, _) = merge(&[a, b], false).unwrap();
        assert_eq!(m.failed, m.counters.failed());
        assert_eq!(m.failed, 17);
        assert_eq!(m.error_rate, 17.0 / 2017.0);
    }

    /// Huge counters saturate at u64::MAX instead of wrapping (or panicking), and the
    /// figures derived from them stay finite; the merged document reads back.
    #[test]
    fn huge_counters_saturate() {
        let mut a = fake("a", 1000, 10.0, 50_000);
        let mut b = fake("b", 1000, 10.0, 50_000);
        for c in [&mut a.doc.counters, &mut b.doc.counters] {
            c.lost = u64::MAX / 2 + 1;
            c.failed_messages = u64::MAX / 2 + 1;
            c.bytes_echoed = u64::MAX;
            c.sent = u64::MAX - 1;
        }
        let (m, _) = merge(&[a, b], false).unwrap();
        assert_eq!(m.counters.completed, 2000);
        assert_eq!(m.counters.lost, u64::MAX);
        assert_eq!(m.counters.bytes_echoed, u64::MAX);
        assert_eq!(m.counters.sent, u64::MAX);
        assert_eq!(m.failed, u64::MAX);
        assert!(m.error_rate.is_finite() && m.throughput.msgs_per_s.is_finite());
        let again = Saved::from_doc("m".into(), serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(again.doc, m);
    }

    /// Histograms whose samples together pass what V2 carries are refused, not
    /// saturated (hdrhistogram would, and every percentile would be wrong).
    #[test]
    fn histograms_past_v2_are_refused() {
        let mut a = fake("a", 1000, 10.0, 50_000);
        let mut huge = crate::hist::new();
        huge.record_n(50_000, crate::hist::MAX_SAMPLES - 10).unwrap();
        a.doc.latency.corrected.histogram = huge;
        let b = fake("b", 1000, 10.0, 50_000);
        let e = merge(&[a, b], false).unwrap_err().to_string();
        assert_eq!(
            e,
            "cannot merge: b: latency.corrected.histogram: the histogram's counts add up to more than 9223372036854775807 samples"
        );
    }

    fn at(name: &str, started: f64, elapsed: f64) -> Saved {
        let mut r = fake(name, 1000, elapsed, 50_000);
        r.doc.started_unix = started;
        r
    }

    /// Runs a minute apart were summed into one rate without a word: refused, saying
    /// how far apart; merged with --force, with the warning in the document too.
    #[test]
    fn runs_that_did_not_overlap_are_refused_unless_forced() {
        let t = crate::results::testing::STARTED;
        let (a, b) = (at("a", t, 10.0), at("b", t + 70.0, 10.0));
        let e = merge(&[a.clone(), b.clone()], false).unwrap_err();
        assert!(
            matches!(e, ResultError::WindowsApart { ref earlier, ref later, apart_s } if earlier == "a" && later == "b" && apart_s == 60.0),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "cannot merge: a ended 60.000 s before b began; merged runs must run at the same time (--force merges them anyway, and the merged rate is then wrong)"
        );
        // In either order.
        assert!(matches!(merge(&[b.clone(), a.clone()], false), Err(ResultError::WindowsApart { .. })));
        let (m, warnings) = merge(&[a, b], true).unwrap();
        assert_eq!(warnings, [MergeWarning::NotConcurrent { overlap_s: -60.0, span_s: 80.0 }]);
        assert!(warnings[0].to_string().contains("60.000 s apart, --force"), "{}", warnings[0]);
        assert_eq!(m.warnings.len(), 1);
        assert_eq!(m.warnings[0].warning, Warning::NotConcurrent { overlap_s: -60.0, span_s: 80.0 });
        assert_eq!(m.started_unix, t);
    }

    #[test]
    fn partial_overlap_and_unknown_starts_are_said() {
        let t = crate::results::testing::STARTED;
        let (_, w) = merge(&[at("a", t, 10.0), at("b", t + 0.05, 10.0)], false).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let (m, w) = merge(&[at("a", t, 10.0), at("b", t + 5.0, 10.0)], false).unwrap();
        assert_eq!(w, [MergeWarning::NotConcurrent { overlap_s: 5.0, span_s: 15.0 }]);
        assert!(m.warnings.iter().any(|e| matches!(e.warning, Warning::NotConcurrent { .. })));
        let (_, w) = merge(&[at("a", t, 10.0), at("old", 0.0, 10.0)], false).unwrap();
        assert_eq!(w, [MergeWarning::StartUnknown { name: "old".into() }]);
    }

    /// A saturated client stays saturated in the merge; errors are recounted.
    #[test]
    fn inputs_warnings_are_carried() {
        let mut a = fake("a", 1000, 10.0, 50_000);
        a.doc.warnings.push((&Warning::ClientSaturated { busy: 0.93 }).into());
        let mut b = fake("b", 1000, 10.0, 50_000);
        b.doc.warnings.push((&Warning::ClientSaturated { busy: 0.97 }).into());
        b.doc.warnings.push((&Warning::SharedCpu).into());
        b.doc.counters.lost = 3;
        b.doc.derive();
        let (m, _) = merge(&[a, b], false).unwrap();
        let got: Vec<Warning> = m.warnings.iter().map(|w| w.warning.clone()).collect();
        assert_eq!(
            got,
            [Warning::ClientSaturated { busy: 0.97 }, Warning::Errors { failed: 3 }, Warning::SharedCpu]
        );
        assert_eq!(m.exit_code, 0);
    }

    /// A failed input (here: connections lost) makes a failed merge (exit 2), its failure
    /// said again.
    #[test]
    fn a_failed_input_fails_the_merge() {
        let a = fake("a", 1000, 10.0, 50_000);
        let mut b = fake("b", 1000, 10.0, 50_000);
        let lost = Warning::ConnectionsLost { conns_lost: 2, connections: 4 };
        b.doc.warnings.push((&lost).into());
        let (m, _) = merge(&[a, b], false).unwrap();
        assert!(m.warnings.iter().any(|w| w.warning == lost), "{:?}", m.warnings);
        assert_eq!(m.exit_code, 2);
    }
}
