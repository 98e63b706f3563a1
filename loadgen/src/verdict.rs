//! Whether a run measured what it claims to: the checks that turn a figure that looks
//! right but is not (a target that is not an echo, a server that died mid-run,
//! connections that were never made) into a failed run that says why, with a hint.
//!
//! Invariant: every check here adds a [`Warning`]; those whose [`Warning::is_failure`]
//! holds make the run exit 2 (the figures cannot be trusted), the others only warn.

use crate::engine::{SizeFates, WorkerResult};
use crate::report::{Report, Warning};
use crate::target::Target;
use std::io;

/// Adds the truth checks' verdicts to `report`.
pub(crate) fn judge(report: &mut Report, results: &[WorkerResult]) {
    let c = report.counters;
    let datagram = report.plan.target.as_ref().is_some_and(Target::is_datagram)
        || report.target.starts_with("udp")
        || report.target.starts_with("unixgram");
    let interrupted = report.interrupted;
    let mut found = Vec::new();
    // Connections the plan needs that were never made.
    let planned = u64::from(report.plan.connections);
    let made: u64 = results.iter().map(|r| r.connected as u64).sum();
    if made < planned {
        let cause = results
            .iter()
            .find_map(|r| r.connect_error.as_ref())
            .map_or_else(|| "unknown error".to_string(), |e| format!("{e} ({})", connect_hint(e)));
        found.push(Warning::ConnectsFailed { connects_failed: planned - made, connections: planned, cause });
    }
    if c.conns_lost > 0 {
        found.push(Warning::ConnectionsLost { conns_lost: c.conns_lost, connections: planned });
    }
    if !datagram && c.unsolicited_bytes > 0 {
        found.push(Warning::NotEcho { unsolicited_bytes: c.unsolicited_bytes });
    }
    if datagram && c.duplicates > 0 {
        found.push(Warning::Duplicates { duplicates: c.duplicates });
    }
    // Something must have been sent for "answered none" to blame the target.
    if c.completed == 0 && c.sent > 0 && !interrupted && made > 0 {
        found.push(if datagram {
            Warning::NoDatagramAnswered { lost: c.lost }
        } else {
            Warning::NoAnswer { bytes_sent: c.bytes_sent }
        });
    }
    let mut sizes = SizeFates::default();
    for r in results {
        sizes.merge(&r.sizes);
    }
    if datagram && c.lost > 0 && c.completed > 0 && sizes.lost_min > sizes.answered_max {
        found.push(Warning::SizeLimit { answered_max: sizes.answered_max, lost_min: sizes.lost_min });
    }
    if results.iter().any(|r| r.time_limit_hit) {
        found.push(Warning::TimeLimit { max_duration_s: report.plan.max_duration.as_secs_f64() });
    }
    report.warnings.extend(found);
}

/// What to look at when a connect fails this way.
pub(crate) fn connect_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => {
            "this process ran out of descriptors: raise the hard limit of ulimit -n (limits.conf, LimitNOFILE)"
        }
        Some(libc::EADDRNOTAVAIL) => {
            "out of local ports: widen net.ipv4.ip_local_port_range, or use more target addresses"
        }
        Some(libc::ECONNREFUSED) => {
            "nothing listens there, or its listen backlog overflowed (net.core.somaxconn, the server's backlog)"
        }
        Some(libc::ETIMEDOUT | libc::EAGAIN) => {
            "no answer within --connect-timeout: a full SYN backlog (net.ipv4.tcp_max_syn_backlog) or a firewall"
        }
        Some(libc::ENOENT) => "no socket file at that path",
        Some(libc::EACCES | libc::EPERM) => "permission denied",
        Some(libc::ENETUNREACH | libc::EHOSTUNREACH) => "no route to that address",
        _ => match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                "no answer within --connect-timeout: a full SYN backlog or a firewall"
            }
            _ => "see the error",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_remedy() {
        assert!(connect_hint(&io::Error::from_raw_os_error(libc::EMFILE)).contains("ulimit -n"));
        assert!(connect_hint(&io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)).contains("port_range"));
        assert!(connect_hint(&io::Error::from_raw_os_error(libc::ECONNREFUSED)).contains("listens"));
    }
}
