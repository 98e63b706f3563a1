//! The text report of a search: the step table (offered and achieved rate, p50, p99,
//! p99.9, errors, client CPU and send lag, server CPU with `--server-pid`, verdict) and
//! the answer in words.

use crate::document::{Blame, MAX_STEPS, SearchDoc, Stopped};
use crate::units::{ns, rate, share};
use std::fmt::Write as _;

/// The report of `search` against `target`.
pub fn report(target: &str, search: &SearchDoc) -> String {
    let mut o = String::new();
    let runs = if search.repeat > 1 {
        format!(", each step the median of {} runs", search.repeat)
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "find-max-rate against {target}: SLO {}, precision {}{runs}",
        search.slo_text,
        share(search.precision)
    );
    let _ = writeln!(
        o,
        "a step passes when it achieves ≥ {} of the offered rate, the client keeps to its schedule (send lag p99 ≤ {}), and the SLO holds\n",
        share(search.min_achieved),
        ns(search.slo.lag_limit().as_nanos() as f64)
    );
    let server = search.steps.iter().any(|s| s.server_cpu.is_some());
    let _ = writeln!(
        o,
        "{:>4} {:>16} {:>16} {:>10} {:>10} {:>10} {:>8} {:>7} {:>9}{}  verdict",
        "step",
        "offered",
        "achieved",
        "p50",
        "p99",
        "p99.9",
        "errors",
        "client",
        "lag p99",
        if server { " server" } else { "" }
    );
    for (i, s) in search.steps.iter().enumerate() {
        let limit = step_limit(&s.run).map_or(String::new(), |l| format!(" (limit: {l})"));
        let verdict =
            if s.passed { format!("ok{limit}") } else { format!("FAIL: {}{limit}", s.reasons.join("; ")) };
        let server = match (server, s.server_cpu) {
            (false, _) => String::new(),
            (true, Some(cpu)) => format!(" {:>7}", share(cpu)),
            (true, None) => format!(" {:>7}", "?"),
        };
        let _ = writeln!(
            o,
            "{:>4} {:>16} {:>16} {:>10} {:>10} {:>10} {:>7.3}% {:>7} {:>9}{server}  {verdict}",
            i + 1,
            rate(s.offered),
            rate(s.achieved),
            ns(s.point.p50),
            ns(s.point.p99),
            ns(s.point.p999),
            s.point.errors * 100.0,
            share(s.client_busy),
            s.client_lag_p99_ns.map_or_else(|| "—".to_owned(), |lag| ns(lag as f64)),
        );
    }
    let _ = writeln!(o);
    answer(&mut o, search);
    match search.stopped {
        Some(Stopped::Interrupted) => {
            let _ = writeln!(o, "interrupted: the steps so far are shown; the search did not converge");
        }
        Some(Stopped::MaxDuration) => {
            let _ = writeln!(
                o,
                "stopped at --max-duration before the search converged: the answer is the highest rate that passed so far, a lower bound of what a full search would give"
            );
        }
        Some(Stopped::StepLimit) => {
            let _ = writeln!(o, "stopped after {} steps before the search converged", MAX_STEPS);
        }
        Some(Stopped::TargetFailed) | None => {}
    }
    o
}

/// The answer in words, blamed on what bounded it: the target that failed, the client
/// that could not keep its schedule, or the SLO that broke.
fn answer(o: &mut String, search: &SearchDoc) {
    let bound = search.bounding_step();
    let advice = search.advice.as_deref().unwrap_or("give the load generator more room");
    if search.stopped == Some(Stopped::TargetFailed) {
        let failed = search.steps.last();
        let (at, why) =
            failed.map_or((String::new(), String::new()), |s| (rate(s.offered), s.reasons.join("; ")));
        let _ =
            writeln!(o, "stopped: the target failed at {at} offered ({why}); no rate past it can be judged");
        let passed = search.steps.iter().filter(|s| s.passed).map(|s| s.offered).reduce(f64::max);
        if let Some(p) = passed {
            let _ = writeln!(
                o,
                "no answer: {} passed before, but a target that fails under load has no sustainable rate to report",
                rate(p)
            );
        }
        return;
    }
    match (search.answer, search.bounding_blame()) {
        (None, _) if search.stopped == Some(Stopped::Interrupted) => {
            let _ = writeln!(o, "no answer: interrupted before any step passed");
        }
        (None, _) if search.steps.is_empty() && search.stopped == Some(Stopped::MaxDuration) => {
            let _ = writeln!(o, "no answer: not one step fitted in --max-duration");
        }
        (None, _) if search.steps.is_empty() => {
            let _ = writeln!(o, "no answer: no step ran");
        }
        (None, Some(Blame::Client)) => {
            let s =
                bound.map_or(String::new(), |s| format!("{} ({})", rate(s.offered), s.reasons.join("; ")));
            let _ = writeln!(
                o,
                "no answer: the load generator could not keep its schedule even at the lowest rate tried, {s}: no step measured the target — {advice}"
            );
        }
        (None, _) => {
            let s = bound.or(search.steps.first());
            let s = s
                .map_or(String::new(), |s| format!("{}, failed ({})", rate(s.offered), s.reasons.join("; ")));
            let _ = writeln!(o, "no rate met the SLO: the lowest tried, {s}; try a lower --start-rate");
        }
        (Some(a), _) if search.lower_bound => {
            let at = bound.map_or(String::new(), |s| format!(" at {}", rate(s.offered)));
            let _ = writeln!(
                o,
                "answer: at least {} — a LOWER BOUND: the load generator fell behind its schedule{at} before the target broke the SLO — {advice}",
                rate(a)
            );
        }
        (Some(a), _) => {
            let next = match bound {
                Some(b) => {
                    format!("; {} did not (within {:.1}%)", rate(b.offered), (b.offered / a - 1.0) * 100.0)
                }
                None => String::new(),
            };
            let _ = writeln!(o, "answer: {} met the SLO{next}", rate(a));
        }
    }
}

/// What limited a step's run, in a few words: its own verdict, or its repeats' when they
/// agree.
fn step_limit(run: &crate::document::ResultDoc) -> Option<&'static str> {
    if let Some(v) = &run.views {
        return Some(v.limit.short());
    }
    let mut limits = run.repeats.iter().filter_map(|r| r.views.as_ref().map(|v| v.limit));
    let first = limits.next()?;
    limits.all(|l| l == first).then(|| first.short())
}
