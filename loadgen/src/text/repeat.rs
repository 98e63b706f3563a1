//! The text of repeated runs (`--repeat N`): a row per run, then for each figure its
//! median, min–max and the CI of the median.

use crate::document::ResultDoc;
use crate::stats::Spread;
use crate::units::{ns, rate, rate_short, share};
use std::fmt::Write as _;

/// The whole report of repeated runs: the target, the runs and their spread, the
/// pooled warnings, and the checks the medians failed.
pub fn report(doc: &ResultDoc) -> String {
    let mut o = format!("target      {}\n", doc.target);
    o += &runs(doc);
    if let Some(line) = server_line(&doc.repeats) {
        let _ = writeln!(o, "{line}");
    }
    if let Some(limits) = limits(&doc.repeats) {
        let _ = writeln!(o, "{limits}");
    }
    for w in &doc.warnings {
        let _ = writeln!(o, "warning: {}", w.message);
    }
    if doc.interrupted {
        let _ = writeln!(o, "interrupted: the runs so far are shown");
    }
    if let Some(i) = doc.repeats.iter().position(|r| r.exit_code == crate::exit::ERROR) {
        let _ = writeln!(
            o,
            "FAILED: run {} could not be trusted (see its warnings in the JSON); the repeats stopped there",
            i + 1
        );
    }
    for f in &doc.failed_checks {
        let _ = writeln!(o, "FAILED (medians): {f}");
    }
    o
}

/// A row per run, then for each figure its median, min–max and the CI of the median.
pub fn runs(doc: &ResultDoc) -> String {
    let mut o = String::new();
    let Some(spread) = &doc.spread else { return o };
    let _ = writeln!(
        o,
        "{:<8} {:>14} {:>10} {:>10} {:>10} {:>10} {:>8}  limit",
        "run", "msg/s", "p50", "p99", "p99.9", "max", "errors"
    );
    for (i, r) in doc.repeats.iter().enumerate() {
        let h = &r.latency.corrected;
        let _ = writeln!(
            o,
            "{:<8} {:>14} {:>10} {:>10} {:>10} {:>10} {:>8}  {}",
            format!("#{}", i + 1),
            rate_short(r.throughput.msgs_per_s),
            ns(h.p50 as f64),
            ns(h.p99 as f64),
            ns(h.p999 as f64),
            ns(h.max as f64),
            r.failed,
            r.views.as_ref().map_or("—", |v| v.limit.short())
        );
    }
    let _ = writeln!(o);
    let ci = if spread.ci_coverage >= 0.95 {
        format!("{} CI of the median", share(spread.ci_coverage))
    } else {
        format!("min–max as CI: {} coverage", share(spread.ci_coverage))
    };
    let _ = writeln!(
        o,
        "{} runs, fresh connections each; median, min–max, and the order-statistic CI of the median ({ci})",
        spread.runs
    );
    for (name, s) in spread.figures() {
        let show = |v: f64| if name == "msg/s" { rate(v) } else { ns(v) };
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

/// The server's CPU per message over the runs (the median), when it was read.
fn server_line(runs: &[ResultDoc]) -> Option<String> {
    let per_msg: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let s = r.views.as_ref()?.server.as_ref().filter(|s| !s.cpu.busy.is_empty())?;
            (r.counters.completed > 0).then(|| s.cpu.cpu_s * 1e9 / r.counters.completed as f64)
        })
        .collect();
    if per_msg.is_empty() {
        return None;
    }
    let s = Spread::of(&per_msg);
    Some(format!(
        "server CPU  {} per message, median of {} runs (range {} – {})",
        ns(s.median),
        per_msg.len(),
        ns(s.min),
        ns(s.max)
    ))
}

/// What limited repeated runs, in one line: `limit: server CPU in 5 of 5 runs`, or each
/// limit with its count when they differ; `None` when no run was judged.
pub fn limits(runs: &[ResultDoc]) -> Option<String> {
    let mut counts: Vec<(crate::views::Limit, usize)> = Vec::new();
    for l in runs.iter().filter_map(|r| r.views.as_ref().map(|v| v.limit)) {
        match counts.iter_mut().find(|(have, _)| *have == l) {
            Some((_, n)) => *n += 1,
            None => counts.push((l, 1)),
        }
    }
    if counts.is_empty() {
        return None;
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let parts: Vec<String> =
        counts.iter().map(|(l, n)| format!("{} in {n} of {} runs", l.short(), runs.len())).collect();
    Some(format!("limit: {}", parts.join(", ")))
}
