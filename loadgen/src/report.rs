//! The result of a run: figures, warnings, the exit code they imply, and their two
//! renderings — a human report (stdout) and the result document
//! ([`ResultDoc`], `schema/result.schema.json`) that carries the full histograms. Both
//! take their derived figures from [`Figures::of`].

pub use crate::document::SCHEMA_VERSION;
use crate::document::{Figures, Latency, ResultDoc, TOOL, Throughput, WarningEntry};
use crate::engine::Counters;
use crate::hist::Hist;
use crate::plan::{Model, Plan};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::time::Duration;

/// An open loop's client is behind its schedule when it hands out more than 1% of its
/// messages later than this after their intended send time (the p99 of its send lag);
/// `--find-max-rate` judges against a tenth of the SLO's tightest latency bound instead
/// ([`crate::slo::Slo::lag_limit`]). Its own delay is then in the latency figures, and
/// they say more of the client than of the target.
pub const LAG_LIMIT: Duration = Duration::from_micros(100);

/// A run's result.
pub struct Report {
    /// The plan as run.
    pub plan: Plan,
    /// The target as resolved.
    pub target: String,
    /// The built-in server, when there was one.
    pub builtin: Option<Builtin>,
    /// Measured time (after warm-up), actual.
    pub elapsed: Duration,
    /// Counts.
    pub counters: Counters,
    /// Latency from the intended send time.
    pub latency: Hist,
    /// Latency from the actual send.
    pub service: Hist,
    /// Open loop: how late the client handed each measured message out after its
    /// intended send time (empty in a closed loop).
    pub lag: Hist,
    /// Connection set-up times.
    pub connect: Hist,
    /// Per-second latency histograms, encoded (start and length, ns since the run
    /// began); kept only when the plan asks for them (`--hdr-log`).
    pub intervals: Vec<(u64, u64, String)>,
    /// CPU time the load workers used.
    pub load_cpu: Duration,
    /// Wall time the load workers ran (warm-up, measure and drain).
    pub wall: Duration,
    /// The run was cut short by Ctrl-C.
    pub interrupted: bool,
    /// What went against the user's interest.
    pub warnings: Vec<Warning>,
    /// Thresholds that failed.
    pub failed_checks: Vec<String>,
    /// The run's label (`--label`).
    pub label: Option<String>,
    /// When the measured run began (after any `--start-at` wait), Unix seconds.
    pub started_unix: f64,
    /// The measured connections' byte figures, in a bulk mode (`--mode send|receive|bulk`).
    pub bulk: Option<crate::throughput::figures::Bulk>,
    /// The background flows' figures (`--background`).
    pub background: Option<crate::throughput::figures::Bulk>,
    /// Client and server CPU over the window, the kernel's counters, what limited the run.
    pub views: Option<crate::views::Views>,
}

/// The built-in ringecho server's part in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builtin {
    /// CPUs the server ran on.
    pub server_cpus: Vec<usize>,
    /// Messages the server echoed during the whole run (warm-up included), as bytes in.
    pub server_bytes_in: u64,
    /// Bytes the server sent.
    pub server_bytes_out: u64,
    /// Receive operations the server made (to tell messages per server receive).
    #[serde(default)]
    pub server_recv_ops: u64,
}

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
    /// A request-bound run stopped at `--max-duration`.
    TimeLimit {
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
}

impl Warning {
    /// The sentence shown to a person.
    pub fn message(&self) -> String {
        match self {
            Warning::ClientSaturated { busy } => format!(
                "load generator CPU saturated ({:.0}% busy) — results are bounded by the client; give it more CPUs (--cpus) or fewer connections",
                busy * 100.0
            ),
            Warning::ClientBehind { lag_p99_ns, limit_ns, busy } => format!(
                "load generator behind its schedule: 1% of messages went out more than {} after their intended send time (limit {}; its CPU {:.0}% busy) — its own delay is in the latency; give it more CPUs (--cpus) or a lower rate",
                ns(*lag_p99_ns as f64),
                ns(*limit_ns as f64),
                busy * 100.0
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
                    crate::views::kernel_hint(counter)
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
                "stopped at --max-duration ({max_duration_s:.0} s) before every request was answered; the rest count as failed"
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
            Warning::AnsweredSendOnly { bytes_received } => format!(
                "the target sent back {bytes_received} bytes to a send-only run: it is not a discard server (an echo or a source server sends); use --mode send against a discard@ listener, --mode bulk against an echo"
            ),
            Warning::NothingReceived => "nothing received: is this a source@ listener? (--mode receive reads what the target sends unasked; an echo or a discard server sends nothing)".into(),
            Warning::NothingSent => "nothing could be sent: the target took no byte (a full or closed socket)".into(),
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
        }
    }

    /// Whether the run's figures cannot be trusted at all: the run fails (exit 2).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
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
        )
    }
}

impl Report {
    /// The figures derived from the counters over the measured window.
    pub fn figures(&self) -> Figures {
        Figures::of(&self.counters, self.elapsed.as_secs_f64())
    }

    /// Answered messages per second in the measured window.
    pub fn throughput(&self) -> f64 {
        self.figures().throughput.msgs_per_s
    }

    /// Failed ÷ (answered + failed), failed as [`Counters::failed`] counts it.
    pub fn error_rate(&self) -> f64 {
        self.figures().error_rate
    }

    /// An open loop's keeping of its schedule, judged against `limit`: the p99 of the
    /// send lag of the measured messages. `None` in a closed loop, and when no measured
    /// message was handed out.
    pub fn schedule(&self, limit: Duration) -> Option<crate::views::Schedule> {
        if !matches!(self.plan.model, Model::Open { .. }) || self.lag.is_empty() {
            return None;
        }
        Some(crate::views::Schedule {
            lag_p99_ns: self.lag.value_at_quantile(0.99),
            limit_ns: limit.as_nanos() as u64,
        })
    }

    /// Fills `warnings`, and concludes the views' verdict.
    pub fn assess(&mut self) {
        let busy = if self.wall.is_zero() {
            0.0
        } else {
            self.load_cpu.as_secs_f64() / (self.wall.as_secs_f64() * self.plan.cpus.len() as f64)
        };
        let schedule = self.schedule(LAG_LIMIT);
        match schedule {
            // An open loop's client is judged by whether it kept to its schedule: its CPU
            // share includes the waiting for due times, which shrinks under load.
            Some(s) if s.behind() => self.warnings.push(Warning::ClientBehind {
                lag_p99_ns: s.lag_p99_ns,
                limit_ns: s.limit_ns,
                busy,
            }),
            Some(_) => {}
            None if busy >= 0.9 => self.warnings.push(Warning::ClientSaturated { busy }),
            None => {}
        }
        if let Some(v) = &mut self.views {
            v.conclude(schedule);
        }
        if let Model::Open { rate } = self.plan.model {
            let achieved = self.throughput();
            if achieved < rate * 0.98 && !self.interrupted {
                self.warnings.push(Warning::RateShortfall { requested: rate, achieved });
            }
        }
        let failed = self.figures().failed;
        if failed > 0 {
            self.warnings.push(Warning::Errors { failed });
        }
        if let Some(b) = &self.builtin {
            if b.server_cpus.iter().any(|c| self.plan.cpus.contains(c)) {
                self.warnings.push(Warning::SharedCpu);
            }
        }
        if self.interrupted {
            self.warnings.push(Warning::Interrupted);
        }
        if let Some(v) = &self.views {
            for (counter, grew, _) in v.kernel_hints() {
                self.warnings.push(Warning::KernelCounter { counter: counter.into(), grew });
            }
        }
    }

    /// The exit code: 130 interrupted (the partial report is printed); 2 the figures
    /// cannot be trusted (nothing answered, not an echo, connections lost or never made:
    /// a [`Warning::is_failure`]); 1 a check the user set failed; 0 success.
    pub fn exit_code(&self) -> i32 {
        if self.interrupted {
            130
        } else if self.nothing_measured() || self.warnings.iter().any(Warning::is_failure) {
            2
        } else if !self.failed_checks.is_empty() {
            1
        } else {
            0
        }
    }

    /// Nothing was measured: no message answered, or in a bulk mode no byte moved.
    pub fn nothing_measured(&self) -> bool {
        match &self.bulk {
            Some(b) => b.moved() == 0,
            None => self.counters.completed == 0,
        }
    }

    /// Checks the thresholds the user set (`--max-p99` and `--max-error-rate` are SLO
    /// clauses, judged as [`Report::check_slo`] judges any).
    pub fn check(&mut self, max_p99: Option<Duration>, max_error_rate: Option<f64>) {
        self.check_slo(&crate::slo::Slo::from_flags(max_p99, max_error_rate));
    }

    /// The SLO's figures of this run ([`crate::slo::Point::of`]).
    pub fn slo_point(&self) -> crate::slo::Point {
        crate::slo::Point::of(&self.latency, self.error_rate(), self.counters.lost, self.counters.sent)
    }

    /// Checks an SLO (and `--verify`): each clause broken is a failed check (exit 1).
    pub fn check_slo(&mut self, slo: &crate::slo::Slo) {
        let breaches = slo.breaches(&self.slo_point());
        self.failed_checks.extend(breaches);
        if self.plan.verify && self.counters.mismatched_bytes > 0 && self.bulk.is_some() {
            self.failed_checks.push(format!(
                "--verify: {} bytes differed from what the target should have sent",
                self.counters.mismatched_bytes
            ));
        } else if self.plan.verify && self.counters.mismatched_bytes > 0 {
            self.failed_checks.push(format!(
                "--verify: {} bytes in {} messages differed from what was sent",
                self.counters.mismatched_bytes, self.counters.mismatched_messages
            ));
        }
    }

    /// The human report.
    pub fn text(&self) -> String {
        if self.bulk.is_some() {
            return crate::throughput::text::bulk(self);
        }
        let p = &self.plan;
        let mut o = String::new();
        let builtin = match &self.builtin {
            Some(b) => format!(" (built-in ringecho on CPU {})", list(&b.server_cpus)),
            None => String::new(),
        };
        let _ = writeln!(o, "target      {}{builtin}", self.target);
        let model = match p.model {
            Model::Closed { depth } => format!("closed loop, {} connections × depth {depth}", p.connections),
            Model::Open { rate: r } => format!("open loop at {}, {} connections", rate(r), p.connections),
        };
        let size = if p.size.min == p.size.max {
            bytes(p.size.min)
        } else {
            format!("{}..{}", bytes(p.size.min), bytes(p.size.max))
        };
        let _ =
            writeln!(o, "load        {model}, {size} messages{}", if p.verify { ", verified" } else { "" });
        time_line(&mut o, p, self.elapsed);
        let _ = writeln!(o);
        let figures = self.figures();
        let mbps = figures.throughput.bytes_per_s_each_way / 1e6;
        let _ = writeln!(o, "throughput  {}   {mbps:.2} MB/s each way", rate(figures.throughput.msgs_per_s));
        let _ = writeln!(
            o,
            "            {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}   mean ± stdev",
            "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        let open = matches!(p.model, Model::Open { .. });
        let label = if open { "latency*" } else { "latency" };
        let _ = writeln!(o, "{}", hist_row(label, &self.latency));
        if open {
            let _ = writeln!(o, "{}", hist_row("service", &self.service));
            let _ = writeln!(o, "{}", hist_row("send lag", &self.lag));
            let _ = writeln!(o, "            * from the intended send time (coordinated omission corrected)");
        }
        let _ = writeln!(o);
        let c = &self.counters;
        let _ = writeln!(
            o,
            "messages    {} answered, {} failed ({:.3}%){}",
            c.completed,
            figures.failed,
            figures.error_rate * 100.0,
            if c.warmup_completed > 0 {
                format!(", {} in warm-up", c.warmup_completed)
            } else {
                String::new()
            }
        );
        errors_line(
            &mut o,
            &[
                &connection_errors(c)[..],
                &[
                    ("lost with connection", c.failed_messages),
                    ("mismatched messages", c.mismatched_messages),
                    ("mismatched bytes", c.mismatched_bytes),
                    ("unsolicited bytes", c.unsolicited_bytes),
                    ("unanswered at end", c.unanswered_at_end),
                    ("backlog overflow", c.backlog_overflow),
                    ("garbage replies", c.garbage),
                ],
            ]
            .concat(),
        );
        if self.target.starts_with("udp") || self.target.starts_with("unixgram") {
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
        }
        if p.churn.is_some() {
            let secs = self.elapsed.as_secs_f64().max(1e-9);
            let _ = writeln!(
                o,
                "connects    {} ({:.0}/s), connect p50 {} p99 {} max {}",
                c.connects,
                c.connects as f64 / secs,
                ns(self.connect.value_at_quantile(0.5) as f64),
                ns(self.connect.value_at_quantile(0.99) as f64),
                ns(self.connect.max() as f64)
            );
        }
        let all_msgs = (c.completed + c.warmup_completed).max(1) as f64;
        let _ = writeln!(
            o,
            "load CPU    {} per message ({:.0}% of {} CPU{} busy)",
            ns(self.load_cpu.as_nanos() as f64 / all_msgs),
            self.load_cpu.as_secs_f64() / (self.wall.as_secs_f64() * p.cpus.len() as f64).max(1e-9) * 100.0,
            p.cpus.len(),
            if p.cpus.len() == 1 { "" } else { "s" }
        );
        if c.sends > 0 && !p.target.as_ref().is_some_and(crate::target::Target::is_datagram) {
            let all_sent = (c.completed + c.warmup_completed + c.failed()).max(1) as f64;
            let server = match &self.builtin {
                Some(b) if b.server_recv_ops > 0 => {
                    format!(", {:.2} per server receive", all_sent / b.server_recv_ops as f64)
                }
                _ => String::new(),
            };
            let _ = writeln!(o, "sends       {:.2} messages per send{server}", all_sent / c.sends as f64);
        }
        if c.sends > 0 && p.target.as_ref().is_some_and(crate::target::Target::is_datagram) {
            // Datagrams sent (the warm-up's included, as in `sends`) over send operations:
            // above 1 only with UDP batching.
            let per_send = (c.sent + c.warmup_completed) as f64 / c.sends as f64;
            let how = if p.gso { "UDP_SEGMENT trains, UDP_GRO receives" } else { "--no-gso" };
            let _ = writeln!(o, "sends       {per_send:.2} datagrams per send ({how})");
        }
        if let Some(bg) = &self.background {
            crate::throughput::text::background(&mut o, bg);
        }
        if let Some(v) = &self.views {
            o += &v.text(c.completed);
        }
        for w in &self.warnings {
            let kind = if w.is_failure() { "FAILED" } else { "warning" };
            let _ = writeln!(o, "{kind}: {}", w.message());
        }
        for f in &self.failed_checks {
            let _ = writeln!(o, "FAILED: {f}");
        }
        o
    }

    /// The result document (`--json`).
    pub fn document(&self) -> ResultDoc {
        let open = matches!(self.plan.model, Model::Open { .. });
        let mut doc = ResultDoc {
            schema_version: SCHEMA_VERSION,
            tool: TOOL.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            label: self.label.clone(),
            target: self.target.clone(),
            transport: self.target.split("://").next().unwrap_or("").into(),
            builtin: self.builtin.clone(),
            plan: Some(self.plan.clone()),
            elapsed_s: self.elapsed.as_secs_f64(),
            started_unix: self.started_unix,
            interrupted: self.interrupted,
            counters: self.counters,
            // Derived: filled in by `derive` below.
            failed: 0,
            error_rate: 0.0,
            throughput: Throughput::default(),
            latency: Latency::of(&self.latency, &self.service, &self.connect, open.then_some(&self.lag)),
            load_cpu_s: self.load_cpu.as_secs_f64(),
            warnings: self.warnings.iter().map(WarningEntry::from).collect(),
            failed_checks: self.failed_checks.clone(),
            exit_code: self.exit_code(),
            merged_from: None,
            repeats: Vec::new(),
            spread: None,
            search: None,
            bulk: self.bulk.clone(),
            background: self.background.clone(),
            views: self.views.clone(),
        };
        doc.derive();
        doc
    }
}

/// The connection errors every report's `errors` line starts with, by their names.
pub(crate) fn connection_errors(c: &Counters) -> [(&'static str, u64); 6] {
    [
        ("connect refused", c.connect_refused),
        ("connect timeout", c.connect_timeout),
        ("connect failed", c.connect_other),
        ("reset", c.reset),
        ("unexpected EOF", c.unexpected_eof),
        ("socket errors", c.socket_errors),
    ]
}

/// The report's `errors` line: each non-zero count by its name, or `none`.
pub(crate) fn errors_line(o: &mut String, counts: &[(&str, u64)]) {
    let errors: Vec<String> =
        counts.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(o, "errors      {}", if errors.is_empty() { "none".into() } else { errors.join(", ") });
}

/// The report's `time` line: measured time, warm-up, load workers and their CPUs.
pub(crate) fn time_line(o: &mut String, p: &Plan, elapsed: Duration) {
    let _ = writeln!(
        o,
        "time        {:.2} s measured (+{:.2} s warm-up), {} worker{} on CPU {}",
        elapsed.as_secs_f64(),
        p.warmup.as_secs_f64(),
        p.cpus.len(),
        if p.cpus.len() == 1 { "" } else { "s" },
        list(&p.cpus)
    );
}

fn list(cpus: &[usize]) -> String {
    cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

fn hist_row(label: &str, h: &Hist) -> String {
    if h.is_empty() {
        return format!("{label:<11} (no samples)");
    }
    let q = |q: f64| ns(h.value_at_quantile(q) as f64);
    format!(
        "{label:<11} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}   {} ± {}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        q(0.9999),
        ns(h.max() as f64),
        ns(h.mean()),
        ns(h.stdev())
    )
}

/// A duration in nanoseconds, in the unit that suits it.
pub fn ns(v: f64) -> String {
    if v < 1e3 {
        format!("{v:.0}ns")
    } else if v < 1e6 {
        format!("{:.1}µs", v / 1e3)
    } else if v < 1e9 {
        format!("{:.2}ms", v / 1e6)
    } else {
        format!("{:.2}s", v / 1e9)
    }
}

/// A message rate in the unit that suits it.
pub fn rate(v: f64) -> String {
    if v < 1e3 {
        format!("{v:.1} msg/s")
    } else if v < 1e6 {
        format!("{:.2}K msg/s", v / 1e3)
    } else {
        format!("{:.3}M msg/s", v / 1e6)
    }
}

fn bytes(v: u32) -> String {
    if v >= 1 << 20 && v % (1 << 20) == 0 {
        format!("{} MiB", v >> 20)
    } else if v >= 1 << 10 && v % (1 << 10) == 0 {
        format!("{} KiB", v >> 10)
    } else {
        format!("{v} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_pick_themselves() {
        assert_eq!(ns(950.0), "950ns");
        assert_eq!(ns(13_200.0), "13.2µs");
        assert_eq!(ns(1_520_000.0), "1.52ms");
        assert_eq!(ns(2.5e9), "2.50s");
        assert_eq!(rate(999.0), "999.0 msg/s");
        assert_eq!(rate(174_320.0), "174.32K msg/s");
        assert_eq!(rate(2_000_000.0), "2.000M msg/s");
        assert_eq!(bytes(64), "64 B");
        assert_eq!(bytes(4096), "4 KiB");
    }
}
