//! Comparing two saved results: throughput and the percentiles of latency from the
//! intended send time, with the ratio of each and whether it is a regression; and
//! whether the ratios mean anything at all.
//!
//! A ratio between two runs means something only when both measured the target: a
//! saturated client, a missed open-loop rate, failed messages, a CPU shared with the
//! built-in server, an interrupted run or a merge of runs that did not run together all
//! make a run's figures measure something else. Each side's warnings are carried into
//! the comparison, and ratios are marked not meaningful when either side has one.
//! One run per side also cannot separate noise from change ([`Noise`]).

use super::Saved;
use super::escape;
use super::render::{QUANTILES, short};
use crate::repeat::Stat;
use crate::report::Warning;
use std::fmt::Write as _;

/// One line of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    /// What is compared.
    pub metric: String,
    /// Base value.
    pub base: f64,
    /// New value.
    pub new: f64,
    /// new / base.
    pub ratio: f64,
    /// Worse than the tolerance allows (and, with repeats, outside the noise).
    pub regression: bool,
    /// Better than the tolerance (and, with repeats, outside the noise).
    pub improvement: bool,
    /// With repeats on both sides: whether the confidence intervals of the two medians
    /// are apart (the change is more than the noise the repeats show). `None` for single
    /// runs.
    pub outside_noise: Option<bool>,
}

/// Which side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The baseline.
    Base,
    /// The result judged.
    New,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Base => "base",
            Side::New => "new",
        }
    }
}

/// How much of a difference could be noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Noise {
    /// One run per side (or on one side): the spread of repeated runs is unknown, so no
    /// difference can be told from noise.
    SingleRuns,
    /// Both sides repeated (`--repeat`): each figure is the median of its side's runs,
    /// and a ratio counts only when the two medians' confidence intervals (order
    /// statistics; min–max below 6 runs) do not overlap.
    Repeats {
        /// Runs of the base.
        base: u32,
        /// Runs of the new result.
        new: u32,
        /// The smaller of the two intervals' coverage.
        coverage: f64,
    },
}

/// A comparison: the ratios, the warnings of each side, and what they allow.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Throughput, then each percentile.
    pub deltas: Vec<Delta>,
    /// Each side's warnings.
    pub warnings: Vec<(Side, Warning)>,
    /// How much of a change could be noise.
    pub noise: Noise,
}

/// Whether a run with this warning measured something other than the target. The match
/// is exhaustive: a new warning must be decided here.
pub fn spoils_comparison(w: &Warning) -> bool {
    match w {
        Warning::ClientSaturated { .. }
        | Warning::ClientBehind { .. }
        | Warning::RateShortfall { .. }
        | Warning::Errors { .. }
        | Warning::SharedCpu
        | Warning::Interrupted
        | Warning::NotConcurrent { .. }
        | Warning::TimeLimit { .. }
        | Warning::SizeLimit { .. }
        | Warning::ConnectsFailed { .. }
        | Warning::ConnectionsLost { .. }
        | Warning::NotEcho { .. }
        | Warning::Duplicates { .. }
        | Warning::NoAnswer { .. }
        | Warning::NoDatagramAnswered { .. }
        | Warning::AnsweredSendOnly { .. }
        | Warning::NothingReceived
        | Warning::NothingSent
        | Warning::BackgroundFailed { .. } => true,
        // A late start moves the window, not the figures.
        Warning::LateStart { .. } => false,
        // No server figures: the client's are whole. Kernel counters are machine-wide:
        // they may be another program's; the loss they explain shows in the figures.
        Warning::ServerMetrics { .. } | Warning::KernelCounter { .. } => false,
    }
}

impl Comparison {
    /// The ratios mean something: neither side has a warning that spoils them.
    pub fn meaningful(&self) -> bool {
        !self.warnings.iter().any(|(_, w)| spoils_comparison(w))
    }

    /// 1 when a ratio is worse than the tolerance, or when the ratios are not
    /// meaningful (a regression could not be ruled out); else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.meaningful() || self.deltas.iter().any(|d| d.regression))
    }
}

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
        ("Gbit/s", (|d: &crate::ResultDoc| d.bulk.as_ref().map(|b| b.gbit_per_s)) as fn(&_) -> _),
        ("CPU ns/B", |d| d.bulk.as_ref().map(|b| b.cpu_ns_per_byte)),
        ("bg Gbit/s", |d| d.background.as_ref().map(|b| b.gbit_per_s)),
    ]
    .into_iter()
    .filter_map(|(name, pick)| Some((name, pick(&base.doc)?, pick(&new.doc)?)))
    .collect();
    let mut push = |metric: &str, b: f64, n: f64, higher_is_better: bool, noise: Option<(Stat, Stat)>| {
        let ratio = if b > 0.0 {
            n / b
        } else if higher_is_better {
            f64::INFINITY
        } else {
            1.0
        };
        let outside_noise = noise.map(|(b, n)| n.ci_low > b.ci_high || n.ci_high < b.ci_low);
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
            for (name, q) in QUANTILES {
                let value = |s: &Saved| s.doc.latency.corrected.histogram.value_at_quantile(q) as f64;
                push(name, value(base), value(new), false, None);
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

/// Renders a comparison as aligned text: the ratios, then each side's warnings and what
/// they mean for the ratios, then what one run per side cannot tell.
pub fn render_compare(base: &Saved, new: &Saved, c: &Comparison) -> String {
    let mut out = String::new();
    let side_line = |side: Side, s: &Saved| {
        let codes: Vec<&str> = c.warnings.iter().filter(|(w, _)| *w == side).map(|(_, w)| short(w)).collect();
        let warned = if codes.is_empty() { String::new() } else { format!("   [{}]", codes.join(", ")) };
        format!("{:<5} {}{warned}", format!("{}:", side.name()), escape::terminal(&s.name))
    };
    let _ = writeln!(out, "{}\n{}", side_line(Side::Base, base), side_line(Side::New, new));
    // What limited each run, when it was recorded (a limit that moved explains a ratio).
    for (side, s) in [(Side::Base, base), (Side::New, new)] {
        if let Some(v) = &s.doc.views {
            let _ = writeln!(out, "{:<5} {}", format!("{}:", side.name()), escape::terminal(&v.limit_text));
        }
    }
    out.push('\n');
    let _ = writeln!(out, "{:<8} {:>14} {:>14} {:>8}", "metric", "base", "new", "ratio");
    let meaningful = c.meaningful();
    for d in &c.deltas {
        let show = |v: f64| match d.metric.as_str() {
            "msg/s" => format!("{v:.0}"),
            "Gbit/s" | "CPU ns/B" | "bg Gbit/s" => format!("{v:.3}"),
            _ => crate::report::ns(v),
        };
        let verdict = match (meaningful, d.regression, d.improvement, d.outside_noise) {
            (false, ..) => "  not meaningful",
            (true, true, _, Some(_)) => "  REGRESSION (outside the noise)",
            (true, true, ..) => "  REGRESSION",
            (true, _, true, Some(_)) => "  improvement (outside the noise)",
            (true, _, true, None) => "  improvement",
            (true, false, false, Some(false)) if (d.ratio - 1.0).abs() > 1e-9 => "  within the noise",
            _ => "",
        };
        let _ = writeln!(
            out,
            "{:<8} {:>14} {:>14} {:>8.3}{verdict}",
            d.metric,
            show(d.base),
            show(d.new),
            d.ratio
        );
    }
    if !c.warnings.is_empty() {
        out.push('\n');
    }
    for (side, w) in &c.warnings {
        let _ = writeln!(out, "{} warning: {}", side.name(), escape::terminal(&w.message()));
    }
    if !meaningful {
        let _ = writeln!(
            out,
            "ratios not meaningful: a side's figures do not measure the target alone (see its warnings); fix the run and compare again"
        );
    }
    match c.noise {
        Noise::SingleRuns => {
            let _ = writeln!(
                out,
                "note: one run per side: ringload cannot tell noise from change; run each side with --repeat N (N ≥ 6 for a 95% interval) to judge a ratio against the spread"
            );
        }
        Noise::Repeats { base, new, coverage } => {
            let _ = writeln!(
                out,
                "note: medians of {base} (base) and {new} (new) runs; a ratio counts as a change only when the two medians' confidence intervals (order statistics, {:.0}% coverage) do not overlap — otherwise it is within the noise the repeats show",
                coverage * 100.0
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::testing::fake;

    /// Bulk runs compare by Gbit/s (higher is better) and CPU per byte (lower is better).
    #[test]
    fn bulk_runs_compare_by_bytes_and_cpu_per_byte() {
        let with = |name, gbit: f64, cpu: f64| {
            let mut s = fake(name, 0, 10.0, 0);
            let plan = crate::throughput::ThroughputPlan::default();
            let mut b = crate::throughput::figures::Bulk::of(
                crate::throughput::Mode::Send,
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
