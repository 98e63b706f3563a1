//! The human report of a bulk run (`--mode send|receive|bulk`) and the background lines of
//! a latency-under-load run: the header as the request/response report's, the figures in
//! MB/s and Gbit/s, one line per second as iperf3 prints them, and load CPU per byte.

use super::figures::Bulk;
use crate::report::Report;
use std::fmt::Write as _;

/// The whole report of a run in a bulk mode.
pub(crate) fn bulk(r: &Report) -> String {
    let Some(b) = &r.bulk else { return String::new() };
    let p = &r.plan;
    let mut o = String::new();
    let builtin = match &r.builtin {
        Some(s) => format!(" (built-in ringecho on CPU {})", list(&s.server_cpus)),
        None => String::new(),
    };
    let _ = writeln!(o, "target      {}{builtin}", r.target);
    let verified = if p.verify && b.mode.receives() { ", verified" } else { "" };
    let _ = writeln!(o, "load        {}{verified}", b.describe());
    crate::report::time_line(&mut o, p, r.elapsed);
    let _ = writeln!(o);
    b.interval_lines(&mut o);
    let _ = writeln!(o);
    if r.warnings.iter().any(|w| w.is_failure()) {
        // Bytes moved, but not what the mode measures: no figure that looks like one.
        let _ = writeln!(o, "throughput  not measured: see FAILED below");
    } else {
        let _ = writeln!(o, "throughput  {}", b.rate_line());
    }
    let c = &r.counters;
    let _ = writeln!(
        o,
        "bytes       {} sent, {} received in the window; {} and {} in all (warm-up and close included)",
        b.bytes_sent, b.bytes_received, c.bytes_sent, c.bytes_received
    );
    let _ = writeln!(o, "load CPU    {}", b.cpu_line());
    if let Some(s) = &r.builtin {
        let _ = writeln!(
            o,
            "server      {} in, {} out (built-in ringecho)",
            s.server_bytes_in, s.server_bytes_out
        );
    }
    let data = [("mismatched bytes", c.mismatched_bytes), ("unsolicited bytes", c.unsolicited_bytes)];
    crate::report::errors_line(&mut o, &[&crate::report::connection_errors(c)[..], &data[..]].concat());
    for w in &r.warnings {
        let kind = if w.is_failure() { "FAILED" } else { "warning" };
        let _ = writeln!(o, "{kind}: {}", w.message());
    }
    for f in &r.failed_checks {
        let _ = writeln!(o, "FAILED: {f}");
    }
    o
}

/// The background flows' lines, appended to a request/response report.
pub(crate) fn background(o: &mut String, b: &Bulk) {
    let _ = writeln!(o);
    let _ = writeln!(o, "background  {}", b.describe());
    let _ = writeln!(o, "            {}", b.rate_line());
    let _ = writeln!(o, "            load CPU {}", b.cpu_line());
}

fn list(cpus: &[usize]) -> String {
    cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}
