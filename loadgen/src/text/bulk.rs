//! The human report of a bulk run (`--mode send|receive|bulk`) and the background lines of
//! a latency-under-load run: the header as the request/response report's, the figures in
//! MB/s and Gbit/s, one line per second as iperf3 prints them, and load CPU per byte.

use super::{errors_line, target_line, time_line, verdict_lines};
use crate::figures::Bulk;
use crate::plan::Mode;
use crate::report::Report;
use crate::units::{gbit_per_s, mb_per_s, plural, size, volume};
use std::fmt::Write as _;

/// The whole report of a run in a bulk mode.
pub fn report(r: &Report) -> String {
    let Some(b) = &r.bulk else { return String::new() };
    let p = &r.plan;
    let mut o = String::new();
    target_line(&mut o, &r.target, r.builtin.as_ref().map(|s| &s.server_cpus[..]));
    let verified = if p.verify && b.mode.receives() { ", verified" } else { "" };
    let _ = writeln!(o, "load        {}{verified}", describe(b));
    time_line(&mut o, p, r.elapsed);
    let _ = writeln!(o);
    interval_lines(&mut o, b);
    let _ = writeln!(o);
    if r.warnings.iter().any(|w| w.is_failure()) {
        // Bytes moved, but not what the mode measures: no figure that looks like one.
        let _ = writeln!(o, "throughput  not measured: see FAILED below");
    } else {
        let _ = writeln!(o, "throughput  {}", rate_line(b));
    }
    let c = &r.counters;
    let _ = writeln!(
        o,
        "bytes       {} sent, {} received in the window; {} and {} in all (warm-up and close included)",
        b.bytes_sent, b.bytes_received, c.bytes_sent, c.bytes_received
    );
    let _ = writeln!(o, "load CPU    {}", cpu_line(b));
    if let Some(s) = &r.builtin {
        let _ = writeln!(
            o,
            "server      {} in, {} out (built-in ringecho)",
            s.server_bytes_in, s.server_bytes_out
        );
    }
    let data = [("mismatched bytes", c.mismatched_bytes), ("unsolicited bytes", c.unsolicited_bytes)];
    errors_line(&mut o, c, &data);
    verdict_lines(&mut o, &r.warnings, &r.failed_checks);
    o
}

/// The background flows' lines, appended to a request/response report.
pub fn background(o: &mut String, b: &Bulk) {
    let _ = writeln!(o);
    let _ = writeln!(o, "background  {}", describe(b));
    let _ = writeln!(o, "            {}", rate_line(b));
    let _ = writeln!(o, "            load CPU {}", cpu_line(b));
}

/// What the connections did, in words.
fn describe(b: &Bulk) -> String {
    let what = match b.mode {
        Mode::Send => "send only",
        Mode::Receive => "receive only",
        Mode::Bulk | Mode::Rr => "bulk both ways",
    };
    let mut s = format!("{what}, {} connection{}", b.connections, plural(b.connections as u64));
    if b.mode.sends() {
        let _ = write!(s, " × {} writes", size(b.write_size.into()));
        if b.zerocopy {
            s.push_str(" (SEND_ZC)");
        }
    }
    if b.sndbuf > 0 || b.rcvbuf > 0 {
        let _ = write!(s, ", SO_SNDBUF {} SO_RCVBUF {}", size(b.sndbuf.into()), size(b.rcvbuf.into()));
    }
    s
}

/// The figure line: MB/s and Gbit/s, each way that moved.
fn rate_line(b: &Bulk) -> String {
    let secs = b.elapsed_s.max(1e-9);
    let way = |bytes: u64, name: &str| {
        let per_s = bytes as f64 / secs;
        format!("{}  {} {name}", mb_per_s(per_s), gbit_per_s(per_s))
    };
    match b.mode {
        Mode::Send => way(b.bytes_sent, "sent"),
        Mode::Receive => way(b.bytes_received, "received"),
        Mode::Bulk | Mode::Rr => {
            format!("{}, {}", way(b.bytes_sent, "sent"), way(b.bytes_received, "received"))
        }
    }
}

/// The CPU line.
fn cpu_line(b: &Bulk) -> String {
    format!(
        "{:.3} ns per byte ({:.2} s CPU over the window, {} moved)",
        b.cpu_ns_per_byte,
        b.cpu_s,
        volume(b.moved())
    )
}

/// The per-second lines, as iperf3 prints them.
fn interval_lines(o: &mut String, b: &Bulk) {
    let _ = writeln!(o, "  interval             sent     received   rate");
    for i in &b.intervals {
        let span = format!("{:.2}-{:.2} s", i.start_s, i.start_s + i.length_s);
        let _ = writeln!(
            o,
            "  {span:<13} {:>11}  {:>11}   {}",
            volume(i.bytes_sent),
            volume(i.bytes_received),
            gbit_per_s(i.gbit_per_s * 1e9 / 8.0)
        );
    }
}
