//! The text report of a search: the step table (offered and achieved rate, p50, p99,
//! p99.9, errors, client CPU and send lag, server CPU with `--server-pid`, verdict) and
//! the answer in words.

use crate::document::{MAX_STEPS, SearchDoc, Stopped};
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
        let verdict = if s.passed { "ok".to_owned() } else { format!("FAIL: {}", s.reasons.join("; ")) };
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
    let first_bad = search
        .steps
        .iter()
        .filter(|s| !s.passed && !s.interrupted && search.answer.is_some_and(|a| s.offered > a))
        .map(|s| s.offered)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.min(r))));
    match (search.answer, search.lower_bound) {
        (None, _) if search.stopped == Some(Stopped::Interrupted) => {
            let _ = writeln!(o, "no answer: interrupted before any step passed");
        }
        (None, _) if search.steps.is_empty() && search.stopped == Some(Stopped::MaxDuration) => {
            let _ = writeln!(o, "no answer: not one step fitted in --max-duration");
        }
        (None, _) => {
            let _ = writeln!(
                o,
                "no rate met the SLO{}",
                match search.steps.first() {
                    Some(s) => format!(
                        ": the lowest tried, {}, failed ({}); try a lower --start-rate",
                        rate(s.offered),
                        s.reasons.join("; ")
                    ),
                    None => " (no step ran)".to_owned(),
                }
            );
        }
        (Some(a), false) => {
            let bound = match first_bad {
                Some(b) => format!("; {} did not (within {:.1}%)", rate(b), (b / a - 1.0) * 100.0),
                None => String::new(),
            };
            let _ = writeln!(o, "answer: {} met the SLO{bound}", rate(a));
        }
        (Some(a), true) => {
            let _ = writeln!(
                o,
                "answer: at least {} — a LOWER BOUND: the load generator fell behind its schedule before the target broke the SLO; give it more CPUs (--cpus)",
                rate(a)
            );
        }
    }
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
        None => {}
    }
    o
}
