//! Comparing two saved results: throughput and the percentiles of latency from the
//! intended send time, with the ratio of each and whether it is a regression; and
//! whether the ratios mean anything at all.
//!
//! A ratio between two runs means something only when both measured the target: a
//! saturated client, a missed open-loop rate, failed messages, a CPU shared with the
//! built-in server, an interrupted run or a merge of runs that did not run together all
//! make a run's figures measure something else. Each side's warnings are carried into
//! the comparison, and ratios are marked not meaningful when either side has one.
//! One run per side also cannot separate noise from change ([`Noise`]); with repeats on
//! both sides a change counts only beyond the noise, by [`crate::stats::differs`] (the
//! test `ab` and `--repeat` use too).

pub use crate::document::comparison::{Comparison, Delta, Noise, Side};

use crate::document::ResultDoc;
use crate::saved::Saved;
use crate::stats::{Spread, differs};

/// Compares `new` against `base`: throughput (higher is better) and each percentile
/// (lower is better). A change for the worse beyond `tolerance` (0.05 = 5%) is a
/// regression, one for the better an improvement; when both sides were repeated, the
/// figures are the medians of their runs and a change counts only outside the noise
/// ([`Noise::Repeats`]).
pub fn compare(base: &Saved, new: &Saved, tolerance: f64) -> Comparison {
    let spreads = match (&base.doc.spread, &new.doc.spread) {
        (Some(b), Some(n)) if b.runs > 1 && n.runs > 1 => Some((b, n)),
        _ => None,
    };
    let mut deltas = Vec::new();
    // Bulk runs: bytes per second (higher is better) and load CPU per byte (lower).
    let bulk: Vec<(&str, f64, f64)> = [
        ("Gbit/s", (|d: &ResultDoc| d.bulk.as_ref().map(|b| b.gbit_per_s)) as fn(&_) -> _),
        ("CPU ns/B", |d| d.bulk.as_ref().map(|b| b.cpu_ns_per_byte)),
        ("bg Gbit/s", |d| d.background.as_ref().map(|b| b.gbit_per_s)),
    ]
    .into_iter()
    .filter_map(|(name, pick)| Some((name, pick(&base.doc)?, pick(&new.doc)?)))
    .collect();
    let mut push = |metric: &str, b: f64, n: f64, higher_is_better: bool, noise: Option<(Spread, Spread)>| {
        let ratio = if b > 0.0 {
            n / b
        } else if higher_is_better {
            f64::INFINITY
        } else {
            1.0
        };
        let outside_noise = match (noise, spreads) {
            (Some((bs, ns)), Some((sb, sn))) => {
                Some(differs(&bs, sb.runs as usize, &ns, sn.runs as usize).is_real())
            }
            _ => None,
        };
        let (worse, better) = if higher_is_better {
            (ratio < 1.0 - tolerance, ratio > 1.0 + tolerance)
        } else {
            (ratio > 1.0 + tolerance, ratio < 1.0 - tolerance)
        };
        let real = outside_noise.unwrap_or(true);
        deltas.push(Delta {
            metric: metric.into(),
            base: b,
            new: n,
            ratio,
            regression: worse && real,
            improvement: better && real,
            outside_noise,
        });
    };
    match spreads {
        Some((b, n)) => {
            for ((name, bs), (_, ns)) in b.figures().into_iter().zip(n.figures()).take(6) {
                if name == "max" {
                    continue;
                }
                push(name, bs.median, ns.median, name == "msg/s", Some((bs, ns)));
            }
            for (name, b, n) in bulk {
                push(name, b, n, name != "CPU ns/B", None);
            }
        }
        None => {
            push("msg/s", base.throughput(), new.throughput(), true, None);
            for (name, b, n) in bulk {
                push(name, b, n, name != "CPU ns/B", None);
            }
            let (b, n) = (base.doc.latency.corrected.quantiles(), new.doc.latency.corrected.quantiles());
            for ((name, b), (_, n)) in b.into_iter().zip(n) {
                push(name, b as f64, n as f64, false, None);
            }
            // Both timed by the kernel: the network + server's share of the round trip
            // (the probes' median), which the client's own costs do not move.
            if let (Some(b), Some(n)) = (&base.doc.latency.breakdown, &new.doc.latency.breakdown) {
                if b.network_server.count > 0 && n.network_server.count > 0 {
                    push(
                        "net+server p50",
                        b.network_server.p50 as f64,
                        n.network_server.p50 as f64,
                        false,
                        None,
                    );
                }
            }
        }
    }
    let warnings = [(Side::Base, base), (Side::New, new)]
        .into_iter()
        .flat_map(|(side, s)| s.doc.warnings.iter().map(move |w| (side, w.warning.clone())))
        .collect();
    let noise = match spreads {
        Some((b, n)) => {
            Noise::Repeats { base: b.runs, new: n.runs, coverage: b.ci_coverage.min(n.ci_coverage) }
        }
        None => Noise::SingleRuns,
    };
    Comparison { deltas, warnings, noise }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saved::testing::fake;
    use crate::text::compare::report as render_compare;
    use crate::warning::Warning;

    /// Bulk runs compare by Gbit/s (higher is better) and CPU per byte (lower is better).
    #[test]
    fn bulk_runs_compare_by_bytes_and_cpu_per_byte() {
        let with = |name, gbit: f64, cpu: f64| {
            let mut s = fake(name, 0, 10.0, 0);
            let plan = crate::plan::ThroughputPlan::default();
            let mut b = crate::figures::Bulk::of(
                crate::plan::Mode::Send,
                1,
                &plan,
                &[],
                std::time::Duration::from_secs(10),
            );
            (b.gbit_per_s, b.cpu_ns_per_byte) = (gbit, cpu);
            s.doc.bulk = Some(b);
            s
        };
        let base = with("base", 10.0, 0.2);
        let c = compare(&base, &with("slower", 8.0, 0.2), 0.05);
        let gbit = c.deltas.iter().find(|d| d.metric == "Gbit/s").unwrap();
        assert!(gbit.regression && (gbit.ratio - 0.8).abs() < 1e-12);
        let c = compare(&base, &with("costlier", 10.0, 0.3), 0.05);
        assert!(c.deltas.iter().any(|d| d.metric == "CPU ns/B" && d.regression));
        assert_eq!(c.exit_code(), 1);
        let c = compare(&base, &with("same", 10.1, 0.2), 0.05);
        assert!(!c.deltas.iter().any(|d| d.regression));
        assert!(render_compare(&base, &with("same", 10.1, 0.2), &c).contains("10.100"));
        assert!(
            !compare(&fake("rr", 10, 1.0, 5), &fake("rr2", 10, 1.0, 5), 0.05)
                .deltas
                .iter()
                .any(|d| d.metric == "Gbit/s")
        );
    }

    #[test]
    fn compare_flags_twenty_not_one_percent() {
        let base = fake("base", 100_000, 10.0, 100_000);
        let worse = fake("worse", 80_000, 10.0, 100_000);
        let same = fake("same", 99_000, 10.0, 100_000);
        assert!(compare(&base, &worse, 0.05).deltas[0].regression);
        assert_eq!(compare(&base, &worse, 0.05).exit_code(), 1);
        assert!(!compare(&base, &same, 0.05).deltas[0].regression);
        assert_eq!(compare(&base, &same, 0.05).exit_code(), 0);
        let slower = fake("slower", 100_000, 10.0, 130_000);
        assert!(compare(&base, &slower, 0.05).deltas.iter().any(|d| d.metric == "p99" && d.regression));
    }

    /// A client-saturated run against a clean one: the 1.79× ratio is printed, marked not
    /// meaningful, beside the warning; and the comparison does not pass.
    #[test]
    fn warnings_make_ratios_not_meaningful() {
        let base = fake("server-bound", 100_000, 10.0, 100_000);
        let mut new = fake("client-bound", 179_000, 10.0, 100_000);
        new.doc.warnings.push((&Warning::ClientSaturated { busy: 0.97 }).into());
        let c = compare(&base, &new, 0.05);
        assert!(!c.meaningful());
        assert_eq!(c.exit_code(), 1, "a comparison that cannot be judged does not pass");
        assert_eq!(c.warnings, [(Side::New, Warning::ClientSaturated { busy: 0.97 })]);
        let text = render_compare(&base, &new, &c);
        assert!(text.contains("new:  client-bound   [client saturated]"), "{text}");
        assert!(text.contains("1.790  not meaningful"), "{text}");
        assert!(text.contains("new warning: load generator CPU saturated (97% busy)"), "{text}");
        assert!(text.contains("ratios not meaningful"), "{text}");
        assert!(!text.contains("REGRESSION"), "{text}");
    }

    /// Repeats: a 20% change outside the spread is a regression said in words; the same
    /// ratio within a wide spread is called noise and passes.
    #[test]
    fn repeats_judge_ratios_against_their_noise() {
        let side = |name: &str, rates: &[u64]| {
            let runs: Vec<_> = rates.iter().map(|r| fake(name, *r, 1.0, 50_000).doc).collect();
            let doc = crate::repeat::pool(runs);
            Saved { name: name.into(), doc }
        };
        let base = side("base", &[100_000, 101_000, 99_000, 100_500, 99_500, 100_200]);
        let tight = side("tight", &[80_000, 81_000, 79_000, 80_500, 79_500, 80_200]);
        let c = compare(&base, &tight, 0.05);
        assert!(matches!(c.noise, Noise::Repeats { base: 6, new: 6, .. }));
        assert!(c.deltas[0].regression && c.deltas[0].outside_noise == Some(true));
        assert_eq!(c.exit_code(), 1);
        let text = render_compare(&base, &tight, &c);
        assert!(text.contains("REGRESSION (outside the noise)"), "{text}");
        assert!(text.contains("medians of 6 (base) and 6 (new) runs"), "{text}");
        let wide = side("wide", &[60_000, 140_000, 70_000, 130_000, 80_000, 90_000]);
        let c = compare(&base, &wide, 0.05);
        assert_eq!(c.deltas[0].ratio, 85_000.0 / 100_100.0);
        assert!(!c.deltas[0].regression && c.deltas[0].outside_noise == Some(false));
        assert_eq!(c.exit_code(), 0);
        assert!(render_compare(&base, &wide, &c).contains("within the noise"));
        let better = side("better", &[130_000, 131_000, 129_000, 130_500, 129_500, 130_200]);
        let c = compare(&base, &better, 0.05);
        assert!(c.deltas[0].improvement);
        assert!(render_compare(&base, &better, &c).contains("improvement (outside the noise)"));
    }

    #[test]
    fn single_runs_say_noise_is_unknown() {
        let (a, b) = (fake("a", 1000, 1.0, 50_000), fake("b", 1000, 1.0, 50_000));
        let c = compare(&a, &b, 0.05);
        assert_eq!(c.noise, Noise::SingleRuns);
        assert!(c.meaningful() && c.warnings.is_empty());
        let text = render_compare(&a, &b, &c);
        assert!(text.contains("cannot tell noise from change"), "{text}");
        assert!(!text.contains("not meaningful"), "{text}");
    }
}
