//! The text of `ringload compare`: each side's name, warnings and limit, the ratios with
//! their verdicts, what each side's warnings mean for them, and how much of a change
//! could be noise.

use crate::document::comparison::{Comparison, Noise, Side};
use crate::escape;
use crate::saved::Saved;
use crate::units::{ns, rate_short, share};
use std::fmt::Write as _;

/// Renders a comparison as aligned text: the ratios, then each side's warnings and what
/// they mean for the ratios, then what one run per side cannot tell.
pub fn report(base: &Saved, new: &Saved, c: &Comparison) -> String {
    let mut out = String::new();
    let side_line = |side: Side, s: &Saved| {
        let codes: Vec<&str> =
            c.warnings.iter().filter(|(w, _)| *w == side).map(|(_, w)| w.short()).collect();
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
            "msg/s" => rate_short(v),
            "Gbit/s" | "CPU ns/B" | "bg Gbit/s" => format!("{v:.3}"),
            _ => ns(v),
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
                "note: medians of {base} (base) and {new} (new) runs; a ratio counts as a change only when the two medians' confidence intervals (order statistics, {} coverage) do not overlap — otherwise it is within the noise the repeats show",
                share(coverage)
            );
        }
    }
    out
}
