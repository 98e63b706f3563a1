//! Repeated runs (`--repeat N`): N measured runs, each with fresh connections, pooled
//! into one document that keeps every repeat, and their spread — the median, min–max and
//! a distribution-free confidence interval of the median for msg/s and each percentile,
//! as hyperfine reports repeated commands.
//!
//! The interval is the order-statistic CI of the median: with the runs sorted, the
//! interval [x(j), x(n+1−j)] covers the true median with probability
//! 1 − 2·P(Binomial(n, ½) < j). The widest j whose coverage is at least 95% is taken;
//! with fewer than 6 runs no interval reaches 95%, so min–max is taken and its coverage
//! (1 − 2⁻⁽ⁿ⁻¹⁾) is stated instead.
//!
//! Invariant: the pooled document's figures are those of all repeats' samples together
//! (counters summed, measured times added, histograms added), derived like any
//! document's; the spread is derived from the repeats and nothing else.

use crate::document::{ResultDoc, WarningEntry};
use crate::hist;
use crate::report::Warning;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The most repeats a run (or a search step) may make.
pub const MAX_REPEATS: u32 = 100;

/// A figure across the repeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// The median of the repeats' values.
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// The confidence interval of the median: its lower end.
    pub ci_low: f64,
    /// Its upper end.
    pub ci_high: f64,
}

/// How the repeats spread: msg/s and the percentiles of latency from the intended send
/// time (ns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Runs.
    pub runs: u32,
    /// Probability that [`Stat::ci_low`]..[`Stat::ci_high`] covers the true median
    /// (order statistics; 0.95 or more from 6 runs).
    pub ci_coverage: f64,
    /// Answered messages per second.
    pub msgs_per_s: Stat,
    /// Median latency.
    pub p50: Stat,
    /// 90th percentile.
    pub p90: Stat,
    /// 99th percentile.
    pub p99: Stat,
    /// 99.9th percentile.
    pub p999: Stat,
    /// Largest latency.
    pub max: Stat,
    /// Error rate.
    pub error_rate: Stat,
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The order-statistic interval of the median for `n` runs: (j, coverage), the interval
/// being the j-th smallest to the j-th largest (1-based).
pub fn median_ci_rank(n: usize) -> (usize, f64) {
    if n < 2 {
        return (1, 0.0);
    }
    // P(Binomial(n, 1/2) <= k), summed exactly in f64 (n ≤ MAX_REPEATS).
    let mut pmf = 0.5f64.powi(n as i32);
    let mut cdf = Vec::with_capacity(n + 1);
    let mut acc = 0.0;
    for k in 0..=n {
        acc += pmf;
        cdf.push(acc);
        pmf = pmf * (n - k) as f64 / (k + 1) as f64;
    }
    let coverage = |j: usize| 1.0 - 2.0 * cdf[j - 1];
    let mut best = 1;
    for j in 1..=n.div_ceil(2) {
        if coverage(j) >= 0.95 {
            best = j;
        }
    }
    (best, coverage(best))
}

/// The spread of `values`.
pub fn stat(values: &[f64]) -> Stat {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Stat::default();
    }
    let (j, _) = median_ci_rank(v.len());
    Stat { median: median(&v), min: v[0], max: v[v.len() - 1], ci_low: v[j - 1], ci_high: v[v.len() - j] }
}

impl Spread {
    /// The spread of the repeats.
    pub fn of(runs: &[ResultDoc]) -> Spread {
        let pick = |f: &dyn Fn(&ResultDoc) -> f64| stat(&runs.iter().map(f).collect::<Vec<_>>());
        let q = |quantile: f64| {
            pick(&|d: &ResultDoc| d.latency.corrected.histogram.value_at_quantile(quantile) as f64)
        };
        Spread {
            runs: runs.len() as u32,
            ci_coverage: median_ci_rank(runs.len()).1,
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
        let loss = median(
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
    pub fn figures(&self) -> [(&'static str, Stat); 6] {
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

/// One document for sequential runs: counters summed, measured times added, histograms
/// added, warnings carried (each once), the first run's plan and target; with every
/// repeat kept in `repeats` and their [`Spread`].
pub fn pool(runs: Vec<ResultDoc>) -> ResultDoc {
    let Some(first) = runs.first() else {
        // Callers pool at least one run; an empty pool is an empty document.
        return ResultDoc::empty(String::new(), None);
    };
    let mut doc = first.clone();
    let (mut corrected, mut service, mut connect) = (hist::new(), hist::new(), hist::new());
    let mut counters = crate::engine::Counters::default();
    let mut warnings: Vec<WarningEntry> = Vec::new();
    let (mut elapsed_s, mut load_cpu_s) = (0.0, 0.0);
    let mut send_lag = runs.iter().all(|r| r.latency.send_lag.is_some()).then(hist::new);
    for r in &runs {
        counters.merge(&r.counters);
        // Histograms of ringload's own runs have the same bounds: adding cannot fail.
        let _ = hist::add(&mut corrected, &r.latency.corrected.histogram);
        let _ = hist::add(&mut service, &r.latency.service.histogram);
        let _ = hist::add(&mut connect, &r.latency.connect.histogram);
        if let (Some(sum), Some(lag)) = (&mut send_lag, &r.latency.send_lag) {
            let _ = hist::add(sum, &lag.histogram);
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
    doc.latency.corrected.histogram = corrected;
    doc.latency.service.histogram = service;
    doc.latency.connect.histogram = connect;
    doc.latency.send_lag = send_lag.map(crate::document::Summary::of);
    doc.warnings = warnings;
    doc.interrupted = runs.iter().any(|r| r.interrupted);
    doc.exit_code = runs.iter().map(|r| r.exit_code).max().unwrap_or(0);
    doc.failed_checks.clear();
    doc.repeats = runs;
    doc.derive();
    doc
}

/// The text of repeated runs: a row per run, then for each figure its median, min–max
/// and the CI of the median.
pub fn text(doc: &ResultDoc) -> String {
    let mut o = String::new();
    let Some(spread) = &doc.spread else { return o };
    let ns = |v: f64| crate::report::ns(v);
    let _ = writeln!(
        o,
        "{:<8} {:>14} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "run", "msg/s", "p50", "p99", "p99.9", "max", "errors"
    );
    for (i, r) in doc.repeats.iter().enumerate() {
        let h = &r.latency.corrected.histogram;
        let _ = writeln!(
            o,
            "{:<8} {:>14.0} {:>10} {:>10} {:>10} {:>10} {:>8}",
            format!("#{}", i + 1),
            r.throughput.msgs_per_s,
            ns(h.value_at_quantile(0.5) as f64),
            ns(h.value_at_quantile(0.99) as f64),
            ns(h.value_at_quantile(0.999) as f64),
            ns(h.max() as f64),
            r.failed
        );
    }
    let _ = writeln!(o);
    let ci = if spread.ci_coverage >= 0.95 {
        format!("{:.0}% CI of the median", spread.ci_coverage * 100.0)
    } else {
        format!("min–max as CI: {:.0}% coverage", spread.ci_coverage * 100.0)
    };
    let _ = writeln!(
        o,
        "{} runs, fresh connections each; median, min–max, and the order-statistic CI of the median ({ci})",
        spread.runs
    );
    for (name, s) in spread.figures() {
        let show = |v: f64| if name == "msg/s" { crate::report::rate(v) } else { ns(v) };
        let _ = writeln!(
            o,
            "{name:<8} {:>14}   range {} – {}   CI {} – {}",
            show(s.median),
            show(s.min),
            show(s.max),
            show(s.ci_low),
            show(s.ci_high)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_order_statistic_intervals() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        // Five runs: min–max covers the median with 1 − 2/32.
        let (j, c) = median_ci_rank(5);
        assert_eq!(j, 1);
        assert!((c - 0.9375).abs() < 1e-12);
        // Six runs reach 96.9% with min–max; ten runs give the 2nd..9th (97.9%).
        assert!((median_ci_rank(6).1 - 0.96875).abs() < 1e-12);
        assert_eq!(median_ci_rank(10).0, 2);
        assert!(median_ci_rank(10).1 >= 0.95);
        assert_eq!(median_ci_rank(1), (1, 0.0));
        let s = stat(&[5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0]);
        assert_eq!((s.median, s.min, s.max, s.ci_low, s.ci_high), (5.5, 1.0, 10.0, 2.0, 9.0));
    }
}
