//! The human renderings, one module per kind of result: a run ([`run`]), a bulk run
//! ([`bulk`]), repeated runs ([`repeat`]), a capacity search ([`search`]), an A/B
//! comparison ([`ab`]), a comparison of two saved results ([`compare`]), and saved
//! results as rows ([`table`]). Each renders plain data (a report or a document) and
//! computes nothing the data does not already hold; the lines every run report shares
//! are here.
//!
//! Invariant: figures go through `crate::units`, text read from a file through
//! `crate::escape`.

pub mod ab;
pub mod breakdown;
pub mod bulk;
pub mod compare;
pub mod repeat;
pub mod run;
pub mod search;
pub mod table;

use crate::counters::Counters;
use crate::hist::{self, Hist};
use crate::plan::{Model, Plan};
use crate::units::{cpu_list, ns, plural, rate, size};
use crate::warning::Warning;
use std::fmt::Write as _;
use std::time::Duration;

/// The connection errors every report's `errors` line starts with, by their names.
fn connection_errors(c: &Counters) -> [(&'static str, u64); 7] {
    [
        ("connect refused", c.connect_refused),
        ("connect timeout", c.connect_timeout),
        ("connect failed", c.connect_other),
        ("reset", c.reset),
        ("unexpected EOF", c.unexpected_eof),
        ("socket errors", c.socket_errors),
        ("buffer ring refusals", c.buf_errors),
    ]
}

/// The report's `errors` line: the connection errors, then `more`, each non-zero count
/// by its name, or `none`.
fn errors_line(o: &mut String, c: &Counters, more: &[(&str, u64)]) {
    let errors: Vec<String> = connection_errors(c)
        .iter()
        .chain(more)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let _ = writeln!(o, "errors      {}", if errors.is_empty() { "none".into() } else { errors.join(", ") });
}

/// The `target` line: the target, and the built-in server's CPUs when there was one.
fn target_line(o: &mut String, target: &str, server_cpus: Option<&[usize]>) {
    let builtin = match server_cpus {
        Some(cpus) => format!(" (built-in ringecho on CPU {})", cpu_list(cpus)),
        None => String::new(),
    };
    let _ = writeln!(o, "target      {target}{builtin}");
}

/// The load a plan offers, in words: `closed loop, 50 connections × depth 1, 64 B
/// messages`.
pub fn load_words(p: &Plan) -> String {
    let model = match p.model {
        Model::Closed { depth } => format!("closed loop, {} connections × depth {depth}", p.connections),
        Model::Open { rate: r } => match p.send_window {
            Some(w) => format!(
                "open loop at {}, {} connections, send window {} (bursts of about {})",
                rate(r),
                p.connections,
                crate::units::ns(w.as_nanos() as f64),
                (r * w.as_secs_f64() * 0.75).ceil().max(1.0) as u64
            ),
            None => format!("open loop at {}, {} connections", rate(r), p.connections),
        },
    };
    let sizes = if p.size.min == p.size.max {
        size(p.size.min.into())
    } else {
        format!("{}..{}", size(p.size.min.into()), size(p.size.max.into()))
    };
    format!("{model}, {sizes} messages")
}

/// The `time` line: measured time, warm-up, load workers and their CPUs.
fn time_line(o: &mut String, p: &Plan, elapsed: Duration) {
    let _ = writeln!(
        o,
        "time        {:.2} s measured (+{:.2} s warm-up), {} worker{} on CPU {}",
        elapsed.as_secs_f64(),
        p.warmup.as_secs_f64(),
        p.cpus.len(),
        plural(p.cpus.len() as u64),
        cpu_list(&p.cpus)
    );
}

/// The closing lines: each warning (`FAILED:` for those that spoil the run), then each
/// check that failed.
fn verdict_lines(o: &mut String, warnings: &[Warning], failed_checks: &[String]) {
    for w in warnings {
        let kind = if w.is_failure() { "FAILED" } else { "warning" };
        let _ = writeln!(o, "{kind}: {}", w.message());
    }
    for f in failed_checks {
        let _ = writeln!(o, "FAILED: {f}");
    }
}

/// The header of the latency rows: the percentiles, the largest, mean ± stdev.
fn hist_header() -> String {
    let mut o = " ".repeat(11);
    for (name, _) in hist::QUANTILES.iter().chain(&[("max", 1.0)]) {
        let _ = write!(o, " {name:>10}");
    }
    o + "   mean ± stdev"
}

/// One latency row: its label, the percentiles, the largest, mean ± stdev.
fn hist_row(label: &str, h: &Hist) -> String {
    if h.is_empty() {
        return format!("{label:<11} (no samples)");
    }
    let mut o = format!("{label:<11}");
    for (_, q) in hist::QUANTILES {
        let _ = write!(o, " {:>10}", ns(h.value_at_quantile(q) as f64));
    }
    let _ = write!(o, " {:>10}   {} ± {}", ns(h.max() as f64), ns(h.mean()), ns(h.stdev()));
    o
}
