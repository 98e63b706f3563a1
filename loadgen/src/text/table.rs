//! Re-rendering saved results, one row each, as text, Markdown or CSV, in the order of
//! their plans (transport, then offered load, then connections, then size), with the
//! offered rate beside the achieved one and each result's warnings.
//!
//! Every text from a file goes through [`crate::escape`] for its format; columns are
//! padded by hand (no `{:<w$}`, which panics past 65,535).

use crate::escape;
use crate::hist::QUANTILES;
use crate::plan::{Model, Plan};
use crate::saved::Saved;
use crate::units::{ns, rate_short};
use std::cmp::Ordering;
use std::fmt::Write as _;

/// Output formats of `ringload report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Text,
    /// A Markdown table.
    Markdown,
    /// Comma-separated values with a header.
    Csv,
}

/// The order of rows: transport, then the offered load (closed loop by depth before
/// open loop by rate), then connections, then message size; results without a plan
/// last; the name breaks ties.
pub fn plan_order(a: &Saved, b: &Saved) -> Ordering {
    fn key(p: &Plan) -> (u8, f64, u32, u32, u32) {
        let (loop_kind, load) = match p.model {
            Model::Closed { depth } => (0, f64::from(depth)),
            Model::Open { rate } => (1, rate),
        };
        (loop_kind, load, p.connections, p.size.min, p.size.max)
    }
    let by_plan = match (&a.doc.plan, &b.doc.plan) {
        (Some(pa), Some(pb)) => {
            let (ka, kb) = (key(pa), key(pb));
            ka.0.cmp(&kb.0)
                .then(ka.1.total_cmp(&kb.1))
                .then(ka.2.cmp(&kb.2))
                .then(ka.3.cmp(&kb.3))
                .then(ka.4.cmp(&kb.4))
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    a.doc.transport.cmp(&b.doc.transport).then(by_plan).then_with(|| a.name.cmp(&b.name))
}

fn header() -> Vec<String> {
    let mut h: Vec<String> =
        ["result", "transport", "offered", "conns", "size", "msg/s", "errors"].map(String::from).into();
    h.extend(QUANTILES.iter().map(|(n, _)| n.to_string()));
    h.extend(["max".to_string(), "warnings".to_string()]);
    h
}

/// Columns holding text (left-aligned); the rest are figures.
const TEXT_COLUMNS: [usize; 3] = [0, 1, 13];

/// One result's cells, not yet escaped.
fn row(r: &Saved, format: Format) -> Vec<String> {
    let csv = format == Format::Csv;
    // Machine-read CSV keeps plain numbers; text and Markdown use the units.
    let msgs = |v: f64| if csv { format!("{v:.0}") } else { rate_short(v) };
    let (offered, conns, size) = match &r.doc.plan {
        Some(p) => (
            match p.model {
                Model::Open { rate } => msgs(rate),
                Model::Closed { depth } if csv => format!("closed depth {depth}"),
                Model::Closed { depth } => format!("closed ×{depth}"),
            },
            p.connections.to_string(),
            if p.size.min == p.size.max {
                p.size.min.to_string()
            } else {
                format!("{}..{}", p.size.min, p.size.max)
            },
        ),
        None => (String::new(), String::new(), String::new()),
    };
    let show = |v: u64| if csv { v.to_string() } else { ns(v as f64) };
    let latency = &r.doc.latency.corrected;
    // Repeated runs show the medians of their runs (as `--repeat` printed them), and say
    // so; a single run its own figures.
    let (name, rate, figures): (String, f64, Vec<u64>) = match &r.doc.spread {
        Some(s) if r.doc.repeats.len() > 1 => (
            format!("{} (median of {})", r.name, r.doc.repeats.len()),
            s.msgs_per_s.median,
            [s.p50, s.p90, s.p99, s.p999, s.p9999, s.max].iter().map(|x| x.median as u64).collect(),
        ),
        _ => (
            r.name.clone(),
            r.throughput(),
            latency.quantiles().iter().map(|&(_, v)| v).chain([latency.max]).collect(),
        ),
    };
    let mut cells = vec![name, r.doc.transport.clone(), offered, conns, size, msgs(rate)];
    cells.push(r.doc.failed.to_string());
    cells.extend(figures.into_iter().map(show));
    let warnings: Vec<&str> = r.doc.warnings.iter().map(|w| w.warning.short()).collect();
    cells.push(warnings.join(", "));
    cells
}

/// Renders results, one row each, in [`plan_order`]; text and Markdown list each
/// result's warnings in full under the table.
pub fn render(results: &[Saved], format: Format) -> String {
    let mut sorted: Vec<&Saved> = results.iter().collect();
    sorted.sort_by(|a, b| plan_order(a, b));
    let rows: Vec<Vec<String>> = sorted.iter().map(|r| row(r, format)).collect();
    let header = header();
    let mut out = String::new();
    match format {
        Format::Csv => {
            let line = |cells: &[String]| cells.iter().map(|c| escape::csv(c)).collect::<Vec<_>>().join(",");
            let _ = writeln!(out, "{}", line(&header));
            for row in &rows {
                let _ = writeln!(out, "{}", line(row));
            }
        }
        Format::Markdown => {
            let line =
                |cells: &[String]| cells.iter().map(|c| escape::markdown(c)).collect::<Vec<_>>().join(" | ");
            let _ = writeln!(out, "| {} |", line(&header));
            let align: Vec<&str> =
                (0..header.len()).map(|i| if TEXT_COLUMNS.contains(&i) { "---" } else { "---:" }).collect();
            let _ = writeln!(out, "|{}|", align.join("|"));
            for row in &rows {
                let _ = writeln!(out, "| {} |", line(row));
            }
            notes(&mut out, &sorted, |s| format!("- {}", escape::markdown(s)));
        }
        Format::Text => {
            let escaped: Vec<Vec<String>> = std::iter::once(&header)
                .chain(&rows)
                .map(|r| r.iter().map(|c| escape::terminal(c).into_owned()).collect())
                .collect();
            let _ = write!(out, "{}", aligned(&escaped));
            notes(&mut out, &sorted, |s| escape::terminal(s).into_owned());
        }
    }
    out
}

/// Each result's warnings in full, one line each, after a blank line; then its limit and,
/// when the kernel stamped its replies, where the time went.
fn notes(out: &mut String, results: &[&Saved], show: impl Fn(&str) -> String) {
    let lines: Vec<String> = results
        .iter()
        .flat_map(|r| {
            let repeated = super::repeat::limits(&r.doc.repeats);
            let server = r.doc.views.as_ref().and_then(|v| v.server.as_ref()).and_then(|s| s.timing.as_ref());
            let timing = r.doc.latency.breakdown.as_ref().map(|b| super::breakdown::summary(b, server));
            let limit = r
                .doc
                .views
                .iter()
                .map(|v| v.limit_text.clone())
                .chain(repeated)
                .chain(timing)
                .map(move |l| format!("{}: {l}", r.name));
            r.doc
                .warnings
                .iter()
                .map(move |w| format!("{}: warning: {}", r.name, w.warning.message()))
                .chain(limit)
        })
        .collect();
    if !lines.is_empty() {
        out.push('\n');
        for l in lines {
            let _ = writeln!(out, "{}", show(&l));
        }
    }
}

/// Aligned columns, two spaces apart: text left, figures right. The last column is not
/// padded.
fn aligned(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (cell, width)) in r.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(width - cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if TEXT_COLUMNS.contains(&i) {
                line.push_str(cell);
                if i + 1 < r.len() {
                    line.push_str(&pad);
                }
            } else {
                line.push_str(&pad);
                line.push_str(cell);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests;
