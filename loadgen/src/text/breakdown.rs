//! Where a reply's time went, by the kernel's stamps: the client's send path, the network
//! and server, the client's receive, as latency rows, and the sums that show the parts
//! add up (means: a percentile of a sum is not the sum of percentiles).

use super::hist_row;
use crate::document::LatencyBreakdown;
use crate::engine::Breakdown;
use crate::hist::Hist;
use crate::plan::{Model, Plan, Timestamps};
use crate::units::{ns, plural};
use crate::views::{PartFigures, ServerTiming};
use std::fmt::Write as _;

/// The breakdown's lines under the latency rows, or the one line that says how replies
/// were timed when there is none; the server's own parts beside them when it timed them
/// (`ringecho --timestamps`, read through `--server-metrics` or the built-in server).
pub fn lines(o: &mut String, plan: &Plan, latency: &Hist, b: &Breakdown, server: Option<&ServerTiming>) {
    client_lines(o, plan, latency, b);
    if let Some(s) = server {
        server_lines(o, b, s);
    }
}

/// The server's parts, and how they sit inside the client's `net+server` (means).
fn server_lines(o: &mut String, b: &Breakdown, s: &ServerTiming) {
    let row = |label: &str, p: &PartFigures, what: &str| {
        if p.count == 0 {
            return format!("{label:<11} (none timed)");
        }
        format!(
            "{label:<11} {:>10}   p99 {}, mean {}; {} {what}{} (the server's buckets: ±19%)",
            ns(p.p50_ns),
            ns(p.p99_ns),
            ns(p.mean_ns),
            p.count,
            plural(p.count)
        )
    };
    let _ = writeln!(o, "{}", row("server wake", &s.wake, "receive"));
    let _ = writeln!(o, "{}", row("server send", &s.send, "sampled send"));
    if !b.network_server.is_empty() && s.wake.count > 0 && s.send.count > 0 {
        let server = s.wake.mean_ns + s.send.mean_ns;
        let _ = writeln!(
            o,
            "            net+server {} = server wake {} + server send {} + the rest {} (loopback both ways; means)",
            ns(b.network_server.mean()),
            ns(s.wake.mean_ns),
            ns(s.send.mean_ns),
            signed(b.network_server.mean() - server)
        );
    }
}

/// `ns` of a value that may be below zero.
fn signed(v: f64) -> String {
    if v < 0.0 { format!("-{}", ns(-v)) } else { ns(v) }
}

fn client_lines(o: &mut String, plan: &Plan, latency: &Hist, b: &Breakdown) {
    let t = &b.tally;
    let replies = t.stamped + t.unstamped + t.implausible;
    if plan.timestamps == Timestamps::User {
        let _ = writeln!(o, "timing      replies timed when the worker saw them (--user-timestamps)");
        return;
    }
    if t.stamped == 0 {
        let why = if replies == 0 { "no reply" } else { "the sockets gave no receive stamp" };
        let _ = writeln!(o, "timing      replies timed when the worker saw them: {why}");
        return;
    }
    let unstamped = t.unstamped + t.implausible;
    let mut head = format!(
        "timing      kernel receive stamps: {} of {replies} replies timed at their arrival",
        t.stamped
    );
    if unstamped > 0 {
        let _ = write!(head, " ({unstamped} when the worker saw them: no stamp, or an implausible one)");
    }
    let _ = write!(head, "; clock ±{}", ns(t.bound_ns as f64));
    let _ = writeln!(o, "{head}");
    if t.split > 0 || t.probes > 0 {
        let _ = writeln!(
            o,
            "            send path split on {} probe{} ({} without a send stamp)",
            t.split,
            plural(t.split),
            t.probes_missing
        );
    }
    if !b.client_send.is_empty() {
        let _ = writeln!(o, "{}", hist_row("client send", &b.client_send));
        let _ = writeln!(o, "{}", hist_row("net+server", &b.network_server));
    }
    let _ = writeln!(o, "{}", hist_row("client recv", &b.client_receive));
    let open = matches!(plan.model, Model::Open { .. });
    if !b.probe_latency.is_empty() {
        let lag = if open { format!("send lag {} + ", ns(b.probe_lag.mean())) } else { String::new() };
        let sum = b.probe_lag.mean() + b.client_send.mean() + b.network_server.mean();
        let _ = writeln!(
            o,
            "            probes: {lag}client send {} + net+server {} = {}; their latency {} (means)",
            ns(b.client_send.mean()),
            ns(b.network_server.mean()),
            ns(sum),
            ns(b.probe_latency.mean())
        );
    }
    if !b.user_to_user.is_empty() {
        let _ = writeln!(
            o,
            "            replies: latency {} + client recv {} = {}; user to user {} (means)",
            ns(latency.mean()),
            ns(b.client_receive.mean()),
            ns(latency.mean() + b.client_receive.mean()),
            ns(b.user_to_user.mean())
        );
    }
}

/// A saved run's breakdown in one line (`report`): the medians of its parts (the
/// server's too, when it timed them) and how many replies the kernel stamped.
pub fn summary(b: &LatencyBreakdown, server: Option<&ServerTiming>) -> String {
    let t = &b.stamps;
    let replies = t.stamped + t.unstamped + t.implausible;
    let mut line = String::from("timing (kernel stamps, p50):");
    if b.network_server.count > 0 {
        let _ = write!(
            line,
            " client send {}, net+server {},",
            ns(b.client_send.p50 as f64),
            ns(b.network_server.p50 as f64)
        );
    }
    let _ = write!(
        line,
        " client recv {}; {} of {replies} replies stamped, {} probe{} split; clock ±{}",
        ns(b.client_receive.p50 as f64),
        t.stamped,
        t.split,
        plural(t.split),
        ns(t.bound_ns as f64)
    );
    if let Some(s) = server.filter(|s| s.wake.count > 0) {
        let _ = write!(line, "; server wake {}", ns(s.wake.p50_ns));
        if s.send.count > 0 {
            let _ = write!(line, ", server send {}", ns(s.send.p50_ns));
        }
    }
    line
}
