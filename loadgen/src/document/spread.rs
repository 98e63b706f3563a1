//! The spread of repeated runs (`--repeat N`, a search step's repeats): for msg/s and
//! each latency percentile, the median, min–max and the CI of the median over the runs
//! ([`crate::stats::Spread`]). Derived from the repeats a document holds, and from
//! nothing else.

use super::ResultDoc;
use crate::stats::Spread;
use serde::{Deserialize, Serialize};

/// How the repeats spread: msg/s and the percentiles of latency from the intended send
/// time (ns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RepeatSpread {
    /// Runs.
    pub runs: u32,
    /// Probability that [`Spread::ci_low`]..[`Spread::ci_high`] covers the true median
    /// (order statistics; 0.95 or more from 6 runs).
    pub ci_coverage: f64,
    /// Answered messages per second.
    pub msgs_per_s: Spread,
    /// Median latency.
    pub p50: Spread,
    /// 90th percentile.
    pub p90: Spread,
    /// 99th percentile.
    pub p99: Spread,
    /// 99.9th percentile.
    pub p999: Spread,
    /// Largest latency.
    pub max: Spread,
    /// Error rate.
    pub error_rate: Spread,
}

impl RepeatSpread {
    /// The spread of the repeats.
    pub fn of(runs: &[ResultDoc]) -> RepeatSpread {
        let pick = |f: &dyn Fn(&ResultDoc) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let q = |quantile: f64| {
            pick(&|d: &ResultDoc| d.latency.corrected.histogram.value_at_quantile(quantile) as f64)
        };
        RepeatSpread {
            runs: runs.len() as u32,
            ci_coverage: crate::stats::coverage(runs.len()),
            msgs_per_s: pick(&|d| d.throughput.msgs_per_s),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: pick(&|d| d.latency.corrected.histogram.max() as f64),
            error_rate: pick(&|d| d.error_rate),
        }
    }

    /// The SLO's figures at the medians of the repeats: loss is the median of each
    /// repeat's share lost.
    pub fn point(&self, runs: &[ResultDoc]) -> crate::slo::Point {
        let loss = crate::stats::median(
            &runs
                .iter()
                .map(|d| {
                    let c = &d.counters;
                    if c.sent == 0 { 0.0 } else { c.lost as f64 / c.sent as f64 }
                })
                .collect::<Vec<_>>(),
        );
        crate::slo::Point {
            p50: self.p50.median,
            p90: self.p90.median,
            p99: self.p99.median,
            p999: self.p999.median,
            max: self.max.median,
            errors: self.error_rate.median,
            loss,
        }
    }

    /// Each figure by name, as `compare` and the text show them.
    pub fn figures(&self) -> [(&'static str, Spread); 6] {
        [
            ("msg/s", self.msgs_per_s),
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p99.9", self.p999),
            ("max", self.max),
        ]
    }
}
