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
    /// Worse than the tolerance allows.
    pub regression: bool,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noise {
    /// One run per side: the spread of repeated runs is unknown, so no difference can be
    /// told from noise. (The hook for repeats: with several runs per side, a variant
    /// holding each side's spread goes here, and [`compare`] judges a ratio against it.)
    SingleRuns,
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
        | Warning::NoDatagramAnswered { .. } => true,
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
/// regression.
pub fn compare(base: &Saved, new: &Saved, tolerance: f64) -> Comparison {
    let mut deltas = Vec::new();
    let (b, n) = (base.throughput(), new.throughput());
    let ratio = if b > 0.0 { n / b } else { f64::INFINITY };
    deltas.push(Delta {
        metric: "msg/s".into(),
        base: b,
        new: n,
        ratio,
        regression: ratio < 1.0 - tolerance,
    });
    for (name, q) in QUANTILES {
        let (b, n) = (
            base.doc.latency.corrected.histogram.value_at_quantile(q) as f64,
            new.doc.latency.corrected.histogram.value_at_quantile(q) as f64,
        );
        let ratio = if b > 0.0 { n / b } else { 1.0 };
        deltas.push(Delta {
            metric: name.into(),
            base: b,
            new: n,
            ratio,
            regression: ratio > 1.0 + tolerance,
        });
    }
    let warnings = [(Side::Base, base), (Side::New, new)]
        .into_iter()
        .flat_map(|(side, s)| s.doc.warnings.iter().map(move |w| (side, w.warning.clone())))
        .collect();
    Comparison { deltas, warnings, noise: Noise::SingleRuns }
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
        let show = |v: f64| if d.metric == "msg/s" { format!("{v:.0}") } else { crate::report::ns(v) };
        let verdict = match (meaningful, d.regression) {
            (false, _) => "  not meaningful",
            (true, true) => "  REGRESSION",
            (true, false) => "",
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
                "note: one run per side: ringload cannot tell noise from change; repeat each run and compare the spread before trusting a small ratio"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::testing::fake;

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
