//! Everything that can go against the user's interest in a run, and every question
//! asked of it, answered in one place: its sentence ([`Warning::message`]), its short
//! form for a table cell ([`Warning::short`]), whether the run's figures cannot be trusted
//! at all ([`Warning::is_failure`], exit 2), and whether it makes a comparison with the
//! run not meaningful ([`Warning::spoils_comparison`]).
//!
//! Invariant: each question is one exhaustive `match` here, so a new warning does not
//! compile until every question is answered for it.

use crate::units::{ns, rate, share};
use ringecho::procfs::NET_COUNTERS;
use serde::{Deserialize, Serialize};

/// A warning, with its hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Warning {
    /// The load workers were busy nearly all the time (a closed loop, or an open loop
    /// that handed out no measured message, so its schedule cannot be judged).
    ClientSaturated {
        /// Share of the workers' wall time spent on CPU.
        busy: f64,
    },
    /// Open loop: the client fell behind its schedule (the p99 of its send lag passed
    /// the limit), so its own delay is in the latency figures.
    ClientBehind {
        /// p99 of how late messages were handed out after their intended send time, ns.
        lag_p99_ns: u64,
        /// The limit it was judged by, ns.
        limit_ns: u64,
        /// Share of the workers' wall time spent on CPU.
        busy: f64,
    },
    /// Open loop: the achieved rate fell short of the requested one.
    RateShortfall {
        /// Requested messages per second.
        requested: f64,
        /// Achieved messages per second.
        achieved: f64,
    },
    /// Some messages failed.
    Errors {
        /// Failed messages.
        failed: u64,
    },
    /// The built-in server and the load share a CPU.
    SharedCpu,
    /// Ctrl-C cut the run short.
    Interrupted,
    /// `--start-at` had passed when the run was ready.
    LateStart {
        /// Seconds late.
        late_s: f64,
    },
    /// A run stopped at `--max-duration` before its planned end (a request-bound run with
    /// requests unanswered; a time-bound one whose connecting took too long).
    TimeLimit {
        /// The limit, seconds.
        max_duration_s: f64,
    },
    /// `--repeat` stopped at `--max-duration`: the next run would not have fitted.
    RunsCut {
        /// Runs made.
        runs: u32,
        /// Runs asked for.
        planned: u32,
        /// The limit, seconds.
        max_duration_s: f64,
    },
    /// Datagrams up to some size were answered, larger ones lost.
    SizeLimit {
        /// The largest datagram answered, bytes.
        answered_max: u32,
        /// The smallest datagram lost, bytes.
        lost_min: u32,
    },
    /// Failure: connections the plan needs could not be made.
    ConnectsFailed {
        /// Connections not made.
        connects_failed: u64,
        /// Connections planned.
        connections: u64,
        /// The first error, with a hint.
        cause: String,
    },
    /// Failure: connections were lost mid-run (closed, reset or failed by the peer).
    ConnectionsLost {
        /// Connections lost.
        conns_lost: u64,
        /// Connections planned.
        connections: u64,
    },
    /// Failure: a stream target sent bytes it was not sent.
    NotEcho {
        /// Bytes received beyond what was sent.
        unsolicited_bytes: u64,
    },
    /// Failure: a datagram target answered some datagrams more than once.
    Duplicates {
        /// Replies beyond the first.
        duplicates: u64,
    },
    /// Failure: a stream target took messages and answered none.
    NoAnswer {
        /// Bytes sent to it.
        bytes_sent: u64,
    },
    /// Failure: no datagram was answered.
    NoDatagramAnswered {
        /// Datagrams lost.
        lost: u64,
    },
    /// Failure: the target answered, but no answer matched what was sent (the wrong size
    /// or, with `--verify`, the wrong bytes).
    Garbled {
        /// Answers that did not match.
        messages: u64,
        /// Bytes that differed.
        bytes: u64,
    },
    /// Failure: datagram replies that answer nothing this run sent (no ringload header,
    /// another flow's, a sequence never sent), beyond a small share of the answers.
    ForeignReplies {
        /// Such replies.
        garbage: u64,
        /// Measured answers beside them.
        answered: u64,
    },
    /// Fewer answers than a rate or a percentile needs: the figures are shown, but say
    /// little.
    FewAnswers {
        /// Measured messages answered.
        answered: u64,
    },
    /// Failure: a send-only run's target answered (an echo, not a discard server).
    AnsweredSendOnly {
        /// Bytes it sent back.
        bytes_received: u64,
    },
    /// Failure: a receive-only run received nothing (not a source server).
    NothingReceived,
    /// Failure: a run that writes could not send a byte.
    NothingSent,
    /// Failure: a background flow of a latency-under-load run failed.
    BackgroundFailed {
        /// What went wrong.
        problem: String,
    },
    /// A merge of runs that did not all run at the same time (`merge --force`, or
    /// windows that overlap for less than 90% of the time they span): the merged rate
    /// counts them as if they had.
    NotConcurrent {
        /// Seconds all of them ran together; negative: how far apart they were.
        overlap_s: f64,
        /// Seconds from the first start to the last end.
        span_s: f64,
    },
    /// `--server-metrics` could not be read: the report has no server CPU.
    ServerMetrics {
        /// The URL.
        url: String,
        /// Why.
        cause: String,
    },
    /// A kernel loss or stall counter grew during the window (this machine, all sockets).
    KernelCounter {
        /// The counter (`udp_rcvbuf_errors`, `listen_overflows`, ...).
        counter: String,
        /// How much it grew.
        grew: u64,
    },
    /// A worker of the client or the server waited for its CPU beyond a small share of
    /// the window (something else ran there): the figures measure the sharing too.
    CpuContention {
        /// `client` or `server`.
        side: String,
        /// The worker that waited longest.
        worker: usize,
        /// Its share of the window spent waiting for a CPU.
        waiting: f64,
    },
    /// A load worker could not be pinned to its CPU: it ran wherever the scheduler put
    /// it, so its figures are less steady and may share a CPU with the server.
    PinFailed {
        /// The CPU it was to run on.
        cpu: usize,
        /// Why the kernel refused.
        cause: String,
    },
}

impl Warning {
    /// The sentence shown to a person.
    pub fn message(&self) -> String {
        match self {
            Warning::ClientSaturated { busy } => format!(
                "load generator CPU saturated ({} busy) — results are bounded by the client; fewer connections, or more CPUs (--cpus) if the machine has spare ones",
                share(*busy)
            ),
            Warning::ClientBehind { lag_p99_ns, limit_ns, busy } => format!(
                "load generator behind its schedule: 1% of messages went out more than {} after their intended send time (limit {}; its CPU {} busy) — its own delay is in the latency; fewer connections (fewer wake-ups per message), --coalesce on a stream target, or a lower rate",
                ns(*lag_p99_ns as f64),
                ns(*limit_ns as f64),
                share(*busy)
            ),
            Warning::RateShortfall { requested, achieved } => format!(
                "achieved {} of the {} requested — the target (or the client) could not keep up; latency includes the backlog",
                rate(*achieved),
                rate(*requested)
            ),
            Warning::Errors { failed } => {
                format!(
                    "{failed} messages failed — see the error counts; latency covers the answered ones only"
                )
            }
            Warning::ServerMetrics { url, cause } if cause.starts_with("ignored") => {
                format!("--server-metrics {url}: {cause}")
            }
            Warning::ServerMetrics { url, cause } => {
                format!("--server-metrics {url}: {cause}; the report has no server CPU figures")
            }
            Warning::KernelCounter { counter, grew } => {
                format!(
                    "the kernel's {counter} grew by {grew} in the window: {}",
                    kernel_hint(counter)
                )
            }
            Warning::SharedCpu => {
                "the built-in server shares a CPU with the load: figures measure both at once".into()
            }
            Warning::Interrupted => "interrupted: the figures cover the run up to Ctrl-C".into(),
            Warning::LateStart { late_s } => {
                format!("--start-at passed {late_s:.3} s before the run was ready; it started then")
            }
            Warning::TimeLimit { max_duration_s } => format!(
                "stopped at --max-duration ({max_duration_s:.0} s) before the run's planned end; what was unanswered counts as failed"
            ),
            Warning::RunsCut { runs, planned, max_duration_s } => format!(
                "stopped at --max-duration ({max_duration_s:.0} s) after {runs} of {planned} runs: the next would not have fitted; the spread is of {runs} runs"
            ),
            Warning::SizeLimit { answered_max, lost_min } => format!(
                "datagrams of up to {answered_max} B were answered, none of {lost_min} B or more: the target (or the path) has a size limit; see its buffer size, or the MTU"
            ),
            Warning::ConnectsFailed { connects_failed, connections, cause } => format!(
                "{connects_failed} of {connections} connections could not be made: {cause}; the run measured fewer connections than planned"
            ),
            Warning::ConnectionsLost { conns_lost, connections } => format!(
                "{conns_lost} of {connections} connections were lost mid-run (closed or reset by the target): the figures cover a run that was cut short; did the server stop? (--churn is for connections that close on purpose)"
            ),
            Warning::NotEcho { unsolicited_bytes } => format!(
                "the target sent {unsolicited_bytes} bytes it was not sent: it is not an echo server (a source/chargen server, or one that answers more than it is asked), so nothing here measured echo round trips; for one-way throughput use a load mode made for it"
            ),
            Warning::Duplicates { duplicates } => format!(
                "the target answered {duplicates} datagrams more than once: an echo answers each datagram exactly once (is it an echo, or does it amplify?)"
            ),
            Warning::NoAnswer { bytes_sent } => format!(
                "the target took {bytes_sent} bytes and answered none: it is not an echo server (a discard server, RFC 863, reads and drops), or it stalled"
            ),
            Warning::NoDatagramAnswered { lost } => format!(
                "no datagram was answered ({lost} lost): no server on that port, a size limit below --size, or a firewall"
            ),
            Warning::Garbled { messages, bytes } => format!(
                "the target answered {messages} messages but none matched what was sent ({bytes} bytes differed, or the answers had the wrong size): it is not an echo of what it was sent"
            ),
            Warning::ForeignReplies { garbage, answered } => format!(
                "{garbage} datagram replies answer nothing this run sent (no ringload header, another flow's, or a sequence never sent), beside {answered} answers: the target is not an echo of these datagrams (or something else sends to these ports)"
            ),
            Warning::FewAnswers { answered } => format!(
                "only {answered} messages were answered in the window: too few for a rate or a percentile to mean anything; measure longer"
            ),
            Warning::AnsweredSendOnly { bytes_received } => format!(
                "the target sent back {bytes_received} bytes to a send-only run: it is not a discard server (an echo or a source server sends); use --mode send against a discard@ listener, --mode bulk against an echo"
            ),
            Warning::NothingReceived => "nothing received: is this a source@ listener? (--mode receive reads what the target sends unasked; an echo or a discard server sends nothing)".into(),
            Warning::NothingSent => "nothing could be sent in the measured window: the target took no byte (a full or closed socket; a target that stopped reading takes what its buffers hold in the warm-up, then nothing)".into(),
            Warning::BackgroundFailed { problem } => format!(
                "background flows failed: {problem}; the latency was not measured under the load asked for"
            ),
            Warning::NotConcurrent { overlap_s, .. } if *overlap_s <= 0.0 => format!(
                "merged runs that did not run together ({:.3} s apart, --force): the merged rate is no rate the target saw",
                -overlap_s
            ),
            Warning::NotConcurrent { overlap_s, span_s } => format!(
                "merged runs ran together for only {overlap_s:.3} s of the {span_s:.3} s they spanned: the merged rate counts them as simultaneous"
            ),
            Warning::CpuContention { side, worker, waiting } => format!(
                "the {side}'s worker {worker} waited for a CPU {} of the window: something else ran on its CPU, so the figures measure the sharing too",
                share(*waiting)
            ),
            Warning::PinFailed { cpu, cause } => format!(
                "a load worker could not be pinned to CPU {cpu} ({cause}): it ran unpinned, so its figures are less steady and it may have shared a CPU with the server"
            ),
        }
    }

    /// Whether the run's figures cannot be trusted at all: the run fails (exit 2).
    pub fn is_failure(&self) -> bool {
        match self {
            Warning::ConnectsFailed { .. }
            | Warning::ConnectionsLost { .. }
            | Warning::NotEcho { .. }
            | Warning::Duplicates { .. }
            | Warning::NoAnswer { .. }
            | Warning::NoDatagramAnswered { .. }
            | Warning::AnsweredSendOnly { .. }
            | Warning::NothingReceived
            | Warning::NothingSent
            | Warning::BackgroundFailed { .. }
            | Warning::Garbled { .. }
            | Warning::ForeignReplies { .. } => true,
            Warning::ClientSaturated { .. }
            | Warning::ClientBehind { .. }
            | Warning::RateShortfall { .. }
            | Warning::Errors { .. }
            | Warning::SharedCpu
            | Warning::Interrupted
            | Warning::LateStart { .. }
            | Warning::TimeLimit { .. }
            | Warning::RunsCut { .. }
            | Warning::SizeLimit { .. }
            | Warning::NotConcurrent { .. }
            | Warning::ServerMetrics { .. }
            | Warning::KernelCounter { .. }
            | Warning::CpuContention { .. }
            | Warning::FewAnswers { .. }
            | Warning::PinFailed { .. } => false,
        }
    }

    /// Its short name, for a table cell.
    pub fn short(&self) -> &'static str {
        match self {
            Warning::ClientSaturated { .. } => "client saturated",
            Warning::ClientBehind { .. } => "client behind",
            Warning::RateShortfall { .. } => "rate shortfall",
            Warning::Errors { .. } => "errors",
            Warning::SharedCpu => "shared CPU",
            Warning::Interrupted => "interrupted",
            Warning::NotConcurrent { .. } => "not concurrent",
            Warning::LateStart { .. } => "late start",
            Warning::TimeLimit { .. } => "time limit",
            Warning::RunsCut { .. } => "runs cut",
            Warning::SizeLimit { .. } => "size limit",
            Warning::ConnectsFailed { .. } => "connects failed",
            Warning::ConnectionsLost { .. } => "connections lost",
            Warning::NotEcho { .. } => "not an echo",
            Warning::Duplicates { .. } => "duplicates",
            Warning::NoAnswer { .. } => "no answer",
            Warning::NoDatagramAnswered { .. } => "no datagram answered",
            Warning::AnsweredSendOnly { .. } => "answered a send-only run",
            Warning::NothingReceived => "nothing received",
            Warning::NothingSent => "nothing sent",
            Warning::BackgroundFailed { .. } => "background failed",
            Warning::ServerMetrics { .. } => "no server metrics",
            Warning::KernelCounter { .. } => "kernel counter",
            Warning::CpuContention { .. } => "CPU contention",
            Warning::Garbled { .. } => "garbled answers",
            Warning::ForeignReplies { .. } => "foreign replies",
            Warning::FewAnswers { .. } => "few answers",
            Warning::PinFailed { .. } => "not pinned",
        }
    }

    /// Whether a run with this warning measured something other than the target.
    pub fn spoils_comparison(&self) -> bool {
        match self {
            Warning::ClientSaturated { .. }
            | Warning::ClientBehind { .. }
            | Warning::RateShortfall { .. }
            | Warning::Errors { .. }
            | Warning::SharedCpu
            | Warning::Interrupted
            | Warning::NotConcurrent { .. }
            | Warning::TimeLimit { .. }
            | Warning::SizeLimit { .. }
            | Warning::ConnectsFailed { .. }
            | Warning::ConnectionsLost { .. }
            | Warning::NotEcho { .. }
            | Warning::Duplicates { .. }
            | Warning::NoAnswer { .. }
            | Warning::NoDatagramAnswered { .. }
            | Warning::AnsweredSendOnly { .. }
            | Warning::NothingReceived
            | Warning::NothingSent
            | Warning::BackgroundFailed { .. }
            | Warning::Garbled { .. }
            | Warning::ForeignReplies { .. }
            | Warning::FewAnswers { .. }
            | Warning::CpuContention { .. } => true,
            // A late start moves the window, not the figures.
            Warning::LateStart { .. } => false,
            // Fewer runs: the spread is wider, and a comparison says so by itself.
            Warning::RunsCut { .. } => false,
            // No server figures: the client's are whole. Kernel counters are machine-wide:
            // they may be another program's; the loss they explain shows in the figures.
            Warning::ServerMetrics { .. } | Warning::KernelCounter { .. } => false,
            // An unpinned client measures less steadily, not something else; a CPU shared
            // with the server shows in the limit line.
            Warning::PinFailed { .. } => false,
        }
    }
}

/// The hint for a kernel counter by name: the setting to raise (empty when unknown).
pub fn kernel_hint(name: &str) -> &'static str {
    NET_COUNTERS.iter().find(|c| c.0 == name).map_or("", |c| c.3)
}
