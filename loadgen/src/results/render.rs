//! Re-rendering saved results (one row each, as text, Markdown or CSV) and comparing
//! two: throughput and the percentiles of latency from the intended send time, with
//! the ratio of each and whether it is a regression.

use super::Saved;
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

const QUANTILES: [(&str, f64); 5] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999)];

/// Renders results, one row each.
pub fn render(results: &[Saved], format: Format) -> String {
    let mut header = vec!["result".to_string(), "transport".into(), "msg/s".into(), "errors".into()];
    header.extend(QUANTILES.iter().map(|(n, _)| n.to_string()));
    header.push("max".into());
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let mut row = vec![
                r.name.clone(),
                r.doc.transport.clone(),
                format!("{:.0}", r.throughput()),
                r.doc.failed.to_string(),
            ];
            let latency = &r.doc.latency.corrected.histogram;
            let fmt =
                |ns: u64| if format == Format::Csv { ns.to_string() } else { crate::report::ns(ns as f64) };
            row.extend(QUANTILES.iter().map(|(_, q)| fmt(latency.value_at_quantile(*q))));
            row.push(fmt(latency.max()));
            row
        })
        .collect();
    let mut out = String::new();
    match format {
        Format::Csv => {
            if let Some(h) = header.first_mut() {
                *h = "result".into();
            }
            let _ = writeln!(out, "{}", header.join(","));
            for row in rows {
                let _ = writeln!(out, "{}", row.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
            }
        }
        Format::Markdown => {
            let _ = writeln!(out, "| {} |", header.join(" | "));
            let _ = writeln!(
                out,
                "|{}|",
                header
                    .iter()
                    .enumerate()
                    .map(|(i, _)| if i < 2 { "---" } else { "---:" })
                    .collect::<Vec<_>>()
                    .join("|")
            );
            for row in rows {
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
        }
        Format::Text => {
            let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for row in &rows {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: &[String]| {
                cells
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(i, (c, w))| if i < 2 { format!("{c:<w$}") } else { format!("{c:>w$}") })
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            let _ = writeln!(out, "{}", line(&header));
            for row in &rows {
                let _ = writeln!(out, "{}", line(row));
            }
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

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

/// Compares `new` against `base`: throughput (higher is better) and each percentile
/// (lower is better). A change for the worse beyond `tolerance` (0.05 = 5%) is a
/// regression.
pub fn compare(base: &Saved, new: &Saved, tolerance: f64) -> Vec<Delta> {
    let mut out = Vec::new();
    let (b, n) = (base.throughput(), new.throughput());
    let ratio = if b > 0.0 { n / b } else { f64::INFINITY };
    out.push(Delta { metric: "msg/s".into(), base: b, new: n, ratio, regression: ratio < 1.0 - tolerance });
    for (name, q) in QUANTILES {
        let (b, n) = (
            base.doc.latency.corrected.histogram.value_at_quantile(q) as f64,
            new.doc.latency.corrected.histogram.value_at_quantile(q) as f64,
        );
        let ratio = if b > 0.0 { n / b } else { 1.0 };
        out.push(Delta { metric: name.into(), base: b, new: n, ratio, regression: ratio > 1.0 + tolerance });
    }
    out
}

/// Renders a comparison as aligned text.
pub fn render_compare(base: &Saved, new: &Saved, deltas: &[Delta]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "base: {}\nnew:  {}\n", base.name, new.name);
    let _ = writeln!(out, "{:<8} {:>14} {:>14} {:>8}", "metric", "base", "new", "ratio");
    for d in deltas {
        let show = |v: f64| if d.metric == "msg/s" { format!("{v:.0}") } else { crate::report::ns(v) };
        let _ = writeln!(
            out,
            "{:<8} {:>14} {:>14} {:>8.3}{}",
            d.metric,
            show(d.base),
            show(d.new),
            d.ratio,
            if d.regression { "  REGRESSION" } else { "" }
        );
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
        assert!(compare(&base, &worse, 0.05)[0].regression);
        assert!(!compare(&base, &same, 0.05)[0].regression);
        let slower = fake("slower", 100_000, 10.0, 130_000);
        assert!(compare(&base, &slower, 0.05).iter().any(|d| d.metric == "p99" && d.regression));
    }

    #[test]
    fn renders_every_format() {
        let rs = [fake("a,1", 1000, 1.0, 50_000), fake("b", 2000, 1.0, 70_000)];
        assert!(render(&rs, Format::Text).contains("msg/s"));
        assert!(render(&rs, Format::Markdown).starts_with("| result"));
        let csv = render(&rs, Format::Csv);
        assert!(csv.contains("\"a,1\"") && csv.lines().count() == 3);
    }

    /// The errors column is `Counters::failed`: lost datagrams count.
    #[test]
    fn errors_column_counts_lost_datagrams() {
        let mut r = fake("u", 1000, 1.0, 50_000);
        r.doc.counters.lost = 5;
        r.doc.counters.failed_messages = 2;
        r.doc.derive();
        let csv = render(std::slice::from_ref(&r), Format::Csv);
        let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
        assert_eq!(row[3], "7", "{csv}");
    }
}
