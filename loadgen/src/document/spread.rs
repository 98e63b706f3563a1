//! The spread of repeated runs (`--repeat N`, a search step's repeats): for msg/s and
//! each latency percentile, the median, min–max and the CI of the median over the runs
//! ([`crate::stats::Spread`]). Derived from the repeats a document holds, and from
//! nothing else.

use super::latency::Summary;
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
    /// 99.99th percentile (absent in documents from before it was kept).
    #[serde(default)]
    pub p9999: Spread,
    /// Largest latency.
    pub max: Spread,
    /// Error rate.
    pub error_rate: Spread,
}

/// What the spread of repeats is made of, of each run.
#[derive(Debug, Clone, Copy)]
pub struct Repeat<'a> {
    /// Answered messages per second.
    pub msgs_per_s: f64,
    /// Latency from the intended send time.
    pub corrected: &'a Summary,
    /// Error rate.
    pub error_rate: f64,
    /// Share of the sent messages lost.
    pub loss: f64,
}

impl RepeatSpread {
    /// The spread of the repeats.
    pub fn of(runs: &[Repeat<'_>]) -> RepeatSpread {
        let pick = |f: &dyn Fn(&Repeat<'_>) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let latency = |f: fn(&Summary) -> u64| pick(&|d: &Repeat<'_>| f(d.corrected) as f64);
        RepeatSpread {
            runs: runs.len() as u32,
            ci_coverage: crate::stats::coverage(runs.len()),
            msgs_per_s: pick(&|d| d.msgs_per_s),
            p50: latency(|s| s.p50),
            p90: latency(|s| s.p90),
            p99: latency(|s| s.p99),
            p999: latency(|s| s.p999),
            p9999: latency(|s| s.p9999),
            max: latency(|s| s.max),
            error_rate: pick(&|d| d.error_rate),
        }
    }

    /// The SLO's figures at the medians of the repeats: loss is the median of each
    /// repeat's share lost.
    pub fn point(&self, runs: &[Repeat<'_>]) -> crate::slo::Point {
        let loss = crate::stats::median(&runs.iter().map(|r| r.loss).collect::<Vec<_>>());
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
