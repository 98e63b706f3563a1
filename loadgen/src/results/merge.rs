//! Merging results of runs that ran at the same time (several load machines against one
//! target) into one document: counters summed (saturating, never wrapping), histograms
//! added, percentiles recomputed from the sum — never averaged.

use super::{ResultError, Saved};
use crate::document::{self, ResultDoc};
use crate::engine::Counters;
use crate::hist::{self, Hist};
use std::fmt;

/// Something `merge` did that the user should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl fmt::Display for MergeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeWarning::PlanDiffers { first, other, field } => {
                write!(f, "{first} and {other} differ in plan.{field}; merged anyway")
            }
        }
    }
}

/// Merges `results`: counters are summed, histograms added, the measured window is the
/// longest of them, and every derived figure is recomputed ([`ResultDoc::derive`]).
/// The rest (plan, target, start time) is the first result's. Different transports are
/// refused; different plans are merged with a warning each.
pub fn merge(results: &[Saved]) -> Result<(ResultDoc, Vec<MergeWarning>), ResultError> {
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
    let mut counters = Counters::default();
    let (mut corrected, mut service, mut connect) = (hist::new(), hist::new(), hist::new());
    let mut elapsed_s: f64 = 0.0;
    let mut load_cpu_s: f64 = 0.0;
    for r in results {
        counters = document::saturating_sum(&counters, &r.doc.counters);
        let latency = &r.doc.latency;
        add(&mut corrected, &latency.corrected.histogram, r, "corrected")?;
        add(&mut service, &latency.service.histogram, r, "service")?;
        add(&mut connect, &latency.connect.histogram, r, "connect")?;
        elapsed_s = elapsed_s.max(r.doc.elapsed_s);
        load_cpu_s = (load_cpu_s + r.doc.load_cpu_s).min(f64::MAX);
    }
    let mut doc = first.doc.clone();
    doc.counters = counters;
    doc.elapsed_s = elapsed_s;
    doc.load_cpu_s = load_cpu_s;
    doc.latency.corrected.histogram = corrected;
    doc.latency.service.histogram = service;
    doc.latency.connect.histogram = connect;
    doc.label = Some(format!("merged ({})", results.len()));
    doc.merged_from = Some(results.iter().map(|r| r.name.clone()).collect());
    doc.warnings.clear();
    doc.failed_checks.clear();
    doc.interrupted = results.iter().any(|r| r.doc.interrupted);
    doc.exit_code = if counters.completed == 0 { 2 } else { 0 };
    doc.derive();
    Ok((doc, warnings))
}

fn add(sum: &mut Hist, h: &Hist, from: &Saved, which: &'static str) -> Result<(), ResultError> {
    sum.add(h).map_err(|source| ResultError::Histogram { name: from.name.clone(), which, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::testing::fake;

    #[test]
    fn merge_sums_and_refuses_mixed_transports() {
        let a = fake("a", 1000, 10.0, 50_000);
        let b = fake("b", 3000, 9.0, 150_000);
        let (m, warnings) = merge(&[a.clone(), b.clone()]).unwrap();
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
        assert!(matches!(merge(&[a, udp]), Err(ResultError::MixedTransports { .. })));
        assert!(matches!(merge(&[]), Err(ResultError::NoResults)));
    }

    #[test]
    fn different_plans_merge_with_a_warning() {
        let a = fake("a", 1000, 10.0, 50_000);
        let mut b = fake("b", 1000, 10.0, 50_000);
        if let Some(p) = b.doc.plan.as_mut() {
            p.model = crate::plan::Model::Open { rate: 100.0 };
        }
        let (_, warnings) = merge(&[a, b]).unwrap();
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
        let (m, _) = merge(&[a, b]).unwrap();
        assert_eq!(m.failed, m.counters.failed());
        assert_eq!(m.failed, 17);
        assert_eq!(m.error_rate, 17.0 / 2017.0);
    }

    /// Huge counters saturate at u64::MAX instead of wrapping (or panicking), and the
    /// figures derived from them stay finite.
    #[test]
    fn huge_counters_saturate() {
        let mut a = fake("a", 1000, 10.0, 50_000);
        let mut b = fake("b", 1000, 10.0, 50_000);
        for c in [&mut a.doc.counters, &mut b.doc.counters] {
            c.completed = u64::MAX - 1;
            c.lost = u64::MAX / 2 + 1;
            c.failed_messages = u64::MAX / 2 + 1;
            c.bytes_echoed = u64::MAX;
        }
        b.doc.counters.sent = 5;
        let (m, _) = merge(&[a, b]).unwrap();
        assert_eq!(m.counters.completed, u64::MAX);
        assert_eq!(m.counters.lost, u64::MAX);
        assert_eq!(m.counters.bytes_echoed, u64::MAX);
        assert_eq!(m.counters.sent, 5);
        assert_eq!(m.failed, u64::MAX);
        assert!(m.error_rate.is_finite() && m.throughput.msgs_per_s.is_finite());
        // And the merged document reads back.
        let again = Saved::from_doc("m".into(), serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(again.doc, m);
    }
}
