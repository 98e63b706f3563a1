//! The text of `ringload ab`: the sides' commands, the load and its warm-up runs, a row
//! per figure with each side's median (min–max) and B/A with the run pairs' range, the
//! verdict on each ratio, a first run apart from the others, whether a client limited a
//! side (by which rule), each side's run warnings by kind, the processes a server left
//! outside its group, and the checks that failed.

use crate::document::ab::{AbDocument, ClientLimit, Ratio, RunRecord, SideDoc, SideSummary, StrayProcess};
use crate::escape;
use crate::slo::Schedule;
use crate::stats::{Spread, median};
use crate::units::{ns, rate, rate_short, share};
use crate::views::SATURATED;
use crate::warning::{Warning, kernel_hint};
use std::fmt::Write as _;

/// The report of `d`; `plan_line` says the load every run ran.
pub fn report(d: &AbDocument, plan_line: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "ringload ab: {} of {} runs per side, A and B interleaved (A B, B A, …), a fresh server each run",
        d.a.runs.len().min(d.b.runs.len()),
        d.runs_planned
    );
    let _ = writeln!(o, "A           {}", d.a.summary.command);
    let _ = writeln!(o, "B           {}", d.b.summary.command);
    let _ = writeln!(o, "load        {plan_line}");
    if d.warmup_runs > 0 {
        let warm = |side: &SideDoc| {
            let v: Vec<f64> = side.runs.iter().flat_map(|r| r.warmup_msgs_per_s.iter().copied()).collect();
            if v.is_empty() { "—".to_owned() } else { rate(median(&v)) }
        };
        let _ = writeln!(
            o,
            "warm-up     {} unmeasured run{} against each fresh server first, not in the figures: A {}, B {} (medians)",
            d.warmup_runs,
            if d.warmup_runs == 1 { "" } else { "s" },
            warm(&d.a),
            warm(&d.b)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<16} {:>28}  {:>28}  {:>8}  {:>15}",
        "", "A median (min–max)", "B median (min–max)", "B/A", "run pairs"
    );
    let rows: [Row<'_>; 5] = [
        ("msg/s", |s| s.msgs_per_s, rate_short, d.comparison.as_ref().map(|c| &c.msgs_per_s)),
        ("p50", |s| s.p50_ns, |v| ns(v), d.comparison.as_ref().map(|c| &c.p50)),
        ("p99", |s| s.p99_ns, |v| ns(v), d.comparison.as_ref().map(|c| &c.p99)),
        (
            "server CPU/msg",
            |s| s.server_cpu_us_per_msg,
            |v| ns(v * 1e3),
            d.comparison.as_ref().map(|c| &c.server_cpu_per_msg),
        ),
        ("client CPU busy", |s| s.client_busy, share, None),
    ];
    for (name, get, unit, r) in rows {
        let cell = |s: &SideSummary| {
            if s.runs == 0 {
                "—".to_owned()
            } else {
                let sp = get(s);
                format!("{} ({}–{})", unit(sp.median), unit(sp.min), unit(sp.max))
            }
        };
        let (ratio, pairs) = match r {
            Some(r) if r.ratio.is_finite() => {
                (format!("{:.3}×", r.ratio), format!("{:.3}–{:.3}×", r.pairs_min, r.pairs_max))
            }
            _ => (String::new(), String::new()),
        };
        let _ = writeln!(
            o,
            "{name:<16} {:>28}  {:>28}  {ratio:>8}  {pairs:>15}",
            cell(&d.a.summary),
            cell(&d.b.summary)
        );
    }
    let _ = writeln!(o);
    if let Some(c) = &d.comparison {
        for r in [&c.msgs_per_s, &c.p50, &c.p99, &c.server_cpu_per_msg] {
            let _ = writeln!(o, "{}", r.verdict);
        }
    }
    for (side, doc) in [("A", &d.a), ("B", &d.b)] {
        first_run_line(&mut o, side, doc, d.warmup_runs);
        client_lines(&mut o, side, &doc.runs);
        warning_lines(&mut o, side, &doc.runs);
    }
    if d.a.summary.client_saturated_runs == 0 && d.b.summary.client_saturated_runs == 0 {
        let _ = writeln!(
            o,
            "client      not saturated on either side (median {} busy for A, {} for B)",
            share(d.a.summary.client_busy.median),
            share(d.b.summary.client_busy.median)
        );
    }
    for r in d.a.runs.iter().chain(&d.b.runs) {
        // The processes a line names, at most SHOWN of them, and how many in all (those
        // the record does not list are counted with the escaped ones).
        let list = |keep: fn(&StrayProcess) -> bool, unlisted: u64| {
            let named: Vec<String> =
                r.server.strays.iter().filter(|p| keep(p)).map(|p| p.to_string()).collect();
            let all = named.len() as u64 + unlisted;
            let mut text = named[..named.len().min(SHOWN)].join(", ");
            if all > SHOWN as u64 {
                let _ = write!(text, " and {} more", all - SHOWN as u64);
            }
            (all, text)
        };
        let (n, escaped) = list(|p| p.escaped, r.server.strays_unlisted);
        if n > 0 {
            let _ = writeln!(
                o,
                "warning: server {} left {n} process{} outside its process group in run {} (setsid, a daemon's double fork), stopped with it: {escaped}",
                r.side,
                if n == 1 { "" } else { "es" },
                r.run
            );
        }
        if r.server.killed {
            let (n, killed) = list(|p| p.killed, 0);
            let _ = writeln!(
                o,
                "warning: server {} did not exit within --stop-timeout of SIGTERM after run {}: killed{}{killed}",
                r.side,
                r.run,
                if n > 0 { " " } else { "" }
            );
        }
    }
    if d.interrupted {
        let _ = writeln!(o, "warning: interrupted: the figures cover the runs that finished before Ctrl-C");
    }
    for f in &d.failed_checks {
        let _ = writeln!(o, "FAILED: {f}");
    }
    o
}

/// A side's first run when it stands apart from the others (`SideSummary::first_run`):
/// slower, it likely met a cold server; faster, the later runs met something the earlier
/// ones left.
fn first_run_line(o: &mut String, side: &str, doc: &SideDoc, warmup_runs: u32) {
    let (Some(first), Some(run)) = (&doc.summary.first_run, doc.runs.first()) else { return };
    if !(first.apart && first.ratio.is_finite() && first.ratio > 0.0) {
        return;
    }
    let figures =
        format!("{} against a median of {}", rate(run.msgs_per_s()), rate(run.msgs_per_s() / first.ratio));
    let _ = if first.ratio < 1.0 {
        writeln!(
            o,
            "warning: {side}'s first run was {:.1}× slower than its others ({figures}): the server may need more warm-up (--warmup-runs, {warmup_runs} now), or the machine was busy then",
            1.0 / first.ratio
        )
    } else {
        writeln!(
            o,
            "warning: {side}'s first run was {:.1}× faster than its others ({figures}): the later runs may meet something the earlier ones left behind",
            first.ratio
        )
    };
}

/// The client's limit on a side's runs, by the rule that fired: in an open loop behind
/// its schedule, in a closed loop its CPU busy (never one sentence for both).
fn client_lines(o: &mut String, side: &str, runs: &[RunRecord]) {
    let limits: Vec<ClientLimit> = runs.iter().filter_map(RunRecord::client_limit).collect();
    let of = |n: usize| format!("{n} of {} run{}", runs.len(), if runs.len() == 1 { "" } else { "s" });
    let lags: Vec<Schedule> =
        limits.iter().filter_map(|l| if let ClientLimit::Behind(s) = l { Some(*s) } else { None }).collect();
    if let Some(first) = lags.first() {
        let lag: Vec<String> = lags.iter().map(|s| ns(s.lag_p99_ns as f64)).collect();
        let _ = writeln!(
            o,
            "warning: {side}'s client fell behind its schedule in {} (send lag p99 {} > limit {}): those figures are bounded by the client, not the server; fewer connections (fewer wake-ups per message), --coalesce on a stream target, or a lower rate",
            of(lags.len()),
            lag.join(", "),
            ns(first.limit_ns as f64)
        );
    }
    let busy: Vec<String> = limits
        .iter()
        .filter_map(|l| if let ClientLimit::Busy(b) = l { Some(share(*b)) } else { None })
        .collect();
    if !busy.is_empty() {
        let _ = writeln!(
            o,
            "warning: {side}'s client was saturated in {} ({} of its CPU busy, ≥{}): those figures are bounded by the client, not the server; fewer connections, or more CPUs (--cpus) if the machine has spare ones",
            of(busy.len()),
            busy.join(", "),
            share(SATURATED)
        );
    }
}

/// The runs' own warnings, a line per kind (a kernel counter per counter) for the side:
/// in how many of its runs, which, and what (a counter's growth in each; else the first
/// run's sentence). Left out: the client's (its line above says it by ab's rule), an
/// interruption (said once, below), failures (they end the comparison before this).
fn warning_lines(o: &mut String, side: &str, runs: &[RunRecord]) {
    // Kinds in the order first seen, each with the runs that had it.
    let mut kinds: Vec<(String, Vec<(u32, &Warning)>)> = Vec::new();
    for r in runs {
        for w in r.result.warnings.iter().map(|e| &e.warning) {
            if w.is_failure()
                || matches!(
                    w,
                    Warning::ClientSaturated { .. } | Warning::ClientBehind { .. } | Warning::Interrupted
                )
            {
                continue;
            }
            let kind = match w {
                Warning::KernelCounter { counter, .. } => format!("kernel {counter}"),
                other => other.short().to_owned(),
            };
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, hits)) => hits.push((r.run, w)),
                None => kinds.push((kind, vec![(r.run, w)])),
            }
        }
    }
    for (kind, hits) in kinds {
        let mut numbers: Vec<u32> = hits.iter().map(|(run, _)| *run).collect();
        numbers.dedup();
        let in_runs =
            format!("in {} of {} run{}", numbers.len(), runs.len(), if runs.len() == 1 { "" } else { "s" });
        let line = match hits[0].1 {
            Warning::KernelCounter { counter, .. } => {
                let grew: Vec<String> = hits
                    .iter()
                    .filter_map(|(_, w)| match w {
                        Warning::KernelCounter { grew, .. } => Some(format!("+{grew}")),
                        _ => None,
                    })
                    .collect();
                let hint = kernel_hint(counter);
                let hint = if hint.is_empty() { String::new() } else { format!(": {hint}") };
                format!("{side}: the kernel's {counter} grew {in_runs} ({}){hint}", grew.join(", "))
            }
            first => {
                let which: Vec<String> = numbers.iter().map(u32::to_string).collect();
                let s = if which.len() == 1 { "" } else { "s" };
                format!(
                    "{side}: {kind} {in_runs} (run{s} {}); in run {}: {}",
                    which.join(", "),
                    hits[0].0,
                    first.message()
                )
            }
        };
        let _ = writeln!(o, "warning: {}", escape::terminal(&line));
    }
}

/// Processes named in a line at most.
const SHOWN: usize = 8;

/// A row of the text table: its name, the figure of a side, its unit, its ratio.
type Row<'a> = (&'a str, fn(&SideSummary) -> Spread, fn(f64) -> String, Option<&'a Ratio>);
