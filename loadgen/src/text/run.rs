//! The human report of one run (stdout): what ran, the throughput and latency rows, the
//! messages and their errors, the client's and the server's CPU, what limited the run,
//! then every warning and failed check. A bulk run's report is [`super::bulk`]'s.

use super::{errors_line, hist_header, hist_row, load_words, target_line, time_line, verdict_lines};
use crate::figures::Figures;
use crate::plan::Model;
use crate::report::Report;
use crate::units::{mb_per_s, ns, plural, rate, share};
use crate::verdict::MIN_ANSWERS;
use crate::views::{Views, worker_figure};
use std::fmt::Write as _;

/// The whole report of `r`.
pub fn report(r: &Report) -> String {
    if r.bulk.is_some() {
        return super::bulk::report(r);
    }
    let mut o = String::new();
    head(&mut o, r);
    let figures = r.figures();
    latency(&mut o, r, &figures);
    messages(&mut o, r, &figures);
    cost(&mut o, r);
    if let Some(bg) = &r.background {
        super::bulk::background(&mut o, bg);
    }
    if let Some(v) = &r.views {
        views(&mut o, v, r.counters.completed);
    }
    verdict_lines(&mut o, &r.warnings, &r.failed_checks);
    o
}

/// `target`, `load` and `time`.
fn head(o: &mut String, r: &Report) {
    target_line(o, &r.target, r.builtin.as_ref().map(|b| &b.server_cpus[..]));
    let verified = if r.plan.verify { ", verified" } else { "" };
    let _ = writeln!(o, "load        {}{verified}", load_words(&r.plan));
    time_line(o, &r.plan, r.elapsed);
    let _ = writeln!(o);
}

/// `throughput` and the latency rows: a rate only from enough answers
/// ([`MIN_ANSWERS`]).
fn latency(o: &mut String, r: &Report, figures: &Figures) {
    let t = &figures.throughput;
    let answered = r.counters.completed;
    if answered >= MIN_ANSWERS {
        let _ =
            writeln!(o, "throughput  {}   {} each way", rate(t.msgs_per_s), mb_per_s(t.bytes_per_s_each_way));
    } else {
        let _ = writeln!(
            o,
            "throughput  no rate: {answered} messages answered in the window, too few to form one"
        );
    }
    let _ = writeln!(o, "{}", hist_header());
    let open = matches!(r.plan.model, Model::Open { .. });
    let _ = writeln!(o, "{}", hist_row(if open { "latency*" } else { "latency" }, &r.latency));
    if open {
        let _ = writeln!(o, "{}", hist_row("service", &r.service));
        let _ = writeln!(o, "{}", hist_row("send lag", &r.lag));
        let _ = writeln!(o, "            * from the intended send time (coordinated omission corrected)");
    }
    let server = r.views.as_ref().and_then(|v| v.server.as_ref()).and_then(|s| s.timing.as_ref());
    super::breakdown::lines(o, &r.plan, &r.latency, &r.breakdown, server);
    let _ = writeln!(o);
}

/// `messages`, `errors`, the datagrams' fates and churn's connects.
fn messages(o: &mut String, r: &Report, figures: &Figures) {
    let c = &r.counters;
    let warmup =
        if c.warmup_completed > 0 { format!(", {} in warm-up", c.warmup_completed) } else { String::new() };
    let _ = writeln!(
        o,
        "messages    {} answered, {} failed ({:.3}%){warmup}",
        c.completed,
        figures.failed,
        figures.error_rate * 100.0,
    );
    let more = [
        ("lost with connection", c.failed_messages),
        ("mismatched messages", c.mismatched_messages),
        ("mismatched bytes", c.mismatched_bytes),
        ("unsolicited bytes", c.unsolicited_bytes),
        ("unanswered at end", c.unanswered_at_end),
        ("backlog overflow", c.backlog_overflow),
        ("garbage replies", c.garbage),
    ];
    errors_line(o, c, &more);
    if r.target.starts_with("udp") || r.target.starts_with("unixgram") {
        let sent = c.sent.max(1) as f64;
        let _ = writeln!(
            o,
            "datagrams   lost {} ({:.2}%), reordered {}, duplicates {}, late {}",
            c.lost,
            c.lost as f64 / sent * 100.0,
            c.reordered,
            c.duplicates,
            c.late
        );
        if c.lost > 0 {
            let _ = writeln!(o, "            {}", loss_line(r));
        }
    }
    if r.plan.churn.is_some() {
        let secs = r.elapsed.as_secs_f64().max(1e-9);
        let q = |q: f64| ns(r.connect.value_at_quantile(q) as f64);
        let _ = writeln!(
            o,
            "connects    {} ({:.0}/s), connect p50 {} p99 {} max {}",
            c.connects,
            c.connects as f64 / secs,
            q(0.5),
            q(0.99),
            ns(r.connect.max() as f64)
        );
    }
}

/// Where the lost datagrams went, as far as each side's counters tell: late replies,
/// the client's send errors, what the server received, echoed and dropped (when its
/// figures were read), the kernel's drop counters (machine-wide); and what none of
/// them explains.
fn loss_line(r: &Report) -> String {
    let c = &r.counters;
    let mut parts = vec![format!("{} came back after --udp-timeout", c.late)];
    let mut explained = c.late;
    if c.socket_errors > 0 {
        parts.push(format!("{} client send or receive errors", c.socket_errors));
        explained += c.socket_errors;
    }
    let server = r.views.as_ref().and_then(|v| v.server.as_ref());
    match server.and_then(|s| s.dgrams.map(|d| (s, d))) {
        Some((s, d)) => {
            parts.push(format!(
                "the server received {}, echoed {} and dropped {} ({} receives starved of buffers)",
                s.dgrams_in, d.echoed, d.dropped, d.enobufs
            ));
            explained += d.dropped;
        }
        None => parts.push(
            "the server's counts are unknown (the built-in server or --server-metrics tell them)".into(),
        ),
    }
    let kernel: u64 = r
        .views
        .as_ref()
        .map_or(0, |v| v.kernel.udp_rcvbuf_errors + v.kernel.udp_sndbuf_errors + v.kernel.udp_in_errors);
    if kernel > 0 {
        parts.push(format!("the kernel dropped {kernel} (UDP buffers, this machine, all sockets)"));
        explained += kernel;
    }
    let unexplained = c.lost.saturating_sub(explained);
    format!("lost: {}; {unexplained} of {} not explained by these counts", parts.join(", "), c.lost)
}

/// `load CPU` (when the window's own figures were not read: one client CPU line, not
/// two) and `sends`: what the client paid per message, and how messages went out.
fn cost(o: &mut String, r: &Report) {
    let (p, c) = (&r.plan, &r.counters);
    let all_msgs = c.completed + c.warmup_completed;
    let window_read = r.views.as_ref().is_some_and(|v| !v.client.busy.is_empty());
    if !window_read {
        let per_msg = if all_msgs > 0 {
            format!("{} per message", ns(r.load_cpu.as_nanos() as f64 / all_msgs as f64))
        } else {
            format!("{} (no message answered)", ns(r.load_cpu.as_nanos() as f64))
        };
        let cpus = p.cpus.len();
        let busy = share(r.client_busy());
        let _ = writeln!(o, "load CPU    {per_msg} ({busy} of {cpus} CPU{} busy)", plural(cpus as u64));
    }
    if c.sends == 0 || all_msgs + c.failed() == 0 {
        return;
    }
    if p.target.as_ref().is_some_and(crate::target::Target::is_datagram) {
        // Datagrams sent (the warm-up's included, as in `sends`) over send operations:
        // above 1 only with UDP batching.
        let per_send = (c.sent + c.warmup_completed) as f64 / c.sends as f64;
        let how = match (c.gso_trains, c.gro_trains) {
            (0, 0) if r.target.starts_with("unixgram") => {
                "one datagram per send: Unix datagram sockets do not batch".into()
            }
            (0, 0) if !p.gso => "one datagram per send: --no-gso".into(),
            (0, 0) => "one datagram per send: none were due together".into(),
            (s, g) => format!("{s} UDP_SEGMENT trains sent, {g} UDP_GRO trains received"),
        };
        let _ = writeln!(o, "sends       {per_send:.2} datagrams per send ({how})");
    } else {
        let all_sent = (c.completed + c.warmup_completed + c.failed()).max(1) as f64;
        let server = match &r.builtin {
            Some(b) if b.server_recv_ops > 0 => {
                format!(", {:.2} per server receive", all_sent / b.server_recv_ops as f64)
            }
            _ => String::new(),
        };
        let _ = writeln!(o, "sends       {:.2} messages per send{server}", all_sent / c.sends as f64);
    }
}

/// The views' lines: the client's and the server's CPU per message, the kernel counters
/// that grew, busy polling, and the limit.
pub fn views(o: &mut String, v: &Views, messages: u64) {
    // No figure per message from no message.
    let per_msg = |cpu_s: f64| {
        if messages == 0 {
            format!("{} (no message answered)", ns(cpu_s * 1e9))
        } else {
            format!("{} per message", ns(cpu_s * 1e9 / messages as f64))
        }
    };
    if !v.client.busy.is_empty() {
        let _ = writeln!(
            o,
            "client CPU  {} in the window ({} worker{}, busiest {})",
            per_msg(v.client.cpu_s),
            v.client.busy.len(),
            plural(v.client.busy.len() as u64),
            share(v.client.peak())
        );
    }
    if let Some(s) = &v.server {
        let receives = s.recv_ops.max(s.dgrams_in.min(s.recv_ops));
        let per_recv = if receives > 0 {
            format!(", {:.2} messages per server receive", messages as f64 / receives as f64)
        } else {
            String::new()
        };
        if v.server_known() {
            let (cpu, figure) = (per_msg(s.cpu.cpu_s), worker_figure(&s.cpu));
            let _ = writeln!(o, "server CPU  {cpu} ({}, {figure}){per_recv}", s.source);
        } else {
            let _ = writeln!(o, "server CPU  unknown ({}){per_recv}", s.source);
        }
    }
    let grown: Vec<String> =
        v.kernel.fields().iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k} +{n}")).collect();
    if !grown.is_empty() {
        let _ = writeln!(o, "kernel      {} (this machine, all sockets)", grown.join(", "));
    }
    if v.spin {
        let _ = writeln!(o, "spin        on: workers busy-poll their rings (each costs a whole CPU)");
    }
    let _ = writeln!(o, "{}", v.limit_text);
}

#[cfg(test)]
mod tests {
    use crate::views::{Limit, ServerView, SideCpu, Views};

    #[test]
    fn views_show_grown_kernel_counters_and_spin() {
        let side = |b: &[f64]| SideCpu { cpu_s: 1.0, busy: b.to_vec(), waiting: vec![0.0; b.len()] };
        let mut v = Views {
            window_s: 1.0,
            client: side(&[0.5]),
            server: Some(ServerView { source: "built-in".into(), cpu: side(&[0.5]), ..Default::default() }),
            kernel: Default::default(),
            others: Vec::new(),
            limit: Limit::Unknown,
            limit_text: String::new(),
            spin: true,
        };
        v.kernel.udp_rcvbuf_errors = 12;
        let kept = crate::slo::Schedule { lag_p99_ns: 10_000, limit_ns: 100_000 };
        v.conclude(&crate::views::Context { schedule: Some(kept), ..Default::default() });
        let mut t = String::new();
        super::views(&mut t, &v, 1000);
        assert!(t.contains("kernel      udp_rcvbuf_errors +12"), "{t}");
        assert!(!t.contains("listen_overflows"), "only counters that grew: {t}");
        assert!(t.contains("whole CPU"), "{t}");
        assert!(t.contains("server CPU  1.00ms per message (built-in"), "{t}");
    }
}
