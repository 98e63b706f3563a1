//! Whether a run measured what it claims to: the checks that turn a figure that looks
//! right but is not (a target that is not an echo, a server that died mid-run,
//! connections that were never made) into a failed run that says why, with a hint.
//!
//! The bulk modes have their own: a send-only target that answers, a receive-only one
//! that sends nothing, and a background flow that failed (latency "under load" measured
//! without the load is not what was asked for).
//!
//! Invariant: every check here adds a [`Warning`]; those whose [`Warning::is_failure`]
//! holds make the run exit 2 (the figures cannot be trusted), the others only warn.

use crate::counters::Counters;
use crate::engine::{SizeFates, WorkerResult, connect_hint};
use crate::figures::Bulk;
use crate::plan::Mode;
use crate::report::Report;
use crate::target::Target;
use crate::warning::Warning;

/// Fewer measured answers than this make no rate or percentile worth printing as a
/// plain figure.
pub const MIN_ANSWERS: u64 = 10;

/// Adds every verdict on whether the run measured what it claims to `report`.
pub(crate) fn judge(report: &mut Report, results: &[WorkerResult]) {
    truth(report, results);
    bulk(report, results);
}

/// The truth checks of every run: connections made and kept, an echo that answers.
fn truth(report: &mut Report, results: &[WorkerResult]) {
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
    // Replies that answer nothing this run sent, beyond a small share of the answers: not
    // an echo of these datagrams (as duplicates are not), whoever sent them.
    if datagram && c.garbage > 0 && c.garbage.saturating_mul(100) > c.completed + c.warmup_completed {
        found.push(Warning::ForeignReplies { garbage: c.garbage, answered: c.completed });
    }
    // Request/response only: something must have been sent (in the warm-up too) for
    // "answered none" to blame the target.
    let answered = c.completed + c.warmup_completed;
    if report.bulk.is_none() && answered == 0 && c.bytes_sent > 0 && !interrupted && made > 0 {
        found.push(if c.mismatched_messages > 0 {
            Warning::Garbled { messages: c.mismatched_messages, bytes: c.mismatched_bytes }
        } else if datagram {
            Warning::NoDatagramAnswered { lost: c.lost }
        } else {
            Warning::NoAnswer { bytes_sent: c.bytes_sent }
        });
    } else if report.bulk.is_none() && c.completed > 0 && c.completed < MIN_ANSWERS && !interrupted {
        found.push(Warning::FewAnswers { answered: c.completed });
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

/// Adds the bulk verdicts to `report`: the measured connections' misuse (a send-only
/// target that answers, a receive-only one that sends nothing), and any background flow
/// that failed.
fn bulk(report: &mut Report, results: &[WorkerResult]) {
    if report.interrupted {
        return;
    }
    if let Some(b) = &report.bulk {
        let found = problems(b.mode, &report.counters, b);
        report.warnings.extend(found);
    }
    let Some(bg) = &report.background else { return };
    let mut c = Counters::default();
    let mut made = 0u64;
    let mut cause = None;
    for r in results.iter().filter(|r| r.background) {
        c.merge(&r.counters);
        made += r.connected as u64;
        if cause.is_none() {
            cause = r.connect_error.as_ref().map(|e| format!("{e} ({})", connect_hint(e)));
        }
    }
    let planned = u64::from(report.plan.throughput.background);
    let mut why = Vec::new();
    if made < planned {
        why.push(format!(
            "{} of {planned} could not connect: {}",
            planned - made,
            cause.unwrap_or_else(|| "unknown error".into())
        ));
    }
    if c.conns_lost > 0 {
        why.push(format!("{} of {planned} were lost mid-run", c.conns_lost));
    }
    if c.unsolicited_bytes > 0 {
        why.push(format!("the target sent {} bytes it was not sent (not an echo)", c.unsolicited_bytes));
    }
    if made > 0 {
        why.extend(problems(bg.mode, &c, bg).iter().map(Warning::message));
    }
    if !why.is_empty() {
        report.warnings.push(Warning::BackgroundFailed { problem: why.join("; ") });
    }
}

/// Checks that bulk connections in `mode` measured what they say, from their counters
/// (the whole run): the problems, each in a sentence.
fn problems(mode: Mode, c: &Counters, bulk: &Bulk) -> Vec<Warning> {
    let mut found = Vec::new();
    match mode {
        Mode::Send if c.bytes_received > 0 => {
            found.push(Warning::AnsweredSendOnly { bytes_received: c.bytes_received })
        }
        Mode::Receive if c.bytes_received == 0 => found.push(Warning::NothingReceived),
        Mode::Bulk if c.bytes_sent > 0 && c.bytes_received == 0 => {
            found.push(Warning::NoAnswer { bytes_sent: c.bytes_sent })
        }
        _ => {}
    }
    // Nothing moved in the measured window, whatever the warm-up took: a target that
    // stopped reading once the buffers on both sides were full measured nothing.
    if mode.sends() && bulk.moved() == 0 {
        found.push(Warning::NothingSent);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misuse_is_named() {
        let mut b = Bulk::of(Mode::Send, 1, &Default::default(), &[], std::time::Duration::from_secs(1));
        // Bytes moved in the window: the misuse is what the counters show.
        b.bytes_sent = 10;
        let answered = Counters { bytes_sent: 10, bytes_received: 5, ..Counters::default() };
        assert_eq!(problems(Mode::Send, &answered, &b), [Warning::AnsweredSendOnly { bytes_received: 5 }]);
        let silent = Counters::default();
        assert_eq!(problems(Mode::Receive, &silent, &b), [Warning::NothingReceived]);
        let discarded = Counters { bytes_sent: 10, ..Counters::default() };
        assert_eq!(problems(Mode::Bulk, &discarded, &b), [Warning::NoAnswer { bytes_sent: 10 }]);
    }

    /// Issue 23 item 12: a target that took bytes in the warm-up and then stopped reading
    /// (both sides' buffers full) moved nothing in the window: the run says so and fails.
    #[test]
    fn a_target_that_stopped_reading_is_named() {
        let still = Bulk::of(Mode::Send, 1, &Default::default(), &[], std::time::Duration::from_secs(1));
        let warm_up_only = Counters { bytes_sent: 3_910_656, ..Counters::default() };
        assert_eq!(problems(Mode::Send, &warm_up_only, &still), [Warning::NothingSent]);
        assert!(Warning::NothingSent.is_failure());
    }
}
