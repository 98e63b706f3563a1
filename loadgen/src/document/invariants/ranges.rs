//! The range of every figure a document holds ([`Range`]), and the rules of a search
//! step's own figures: what `super` checks of each part.

use crate::document::run::{ResultDoc, StepDoc};
use crate::document::violation::{Range, Violation};
use crate::figures::Bulk;
use crate::slo::Point;
use crate::views::SideCpu;
use crate::warning::Warning;

impl ResultDoc {
    /// The figures of the run's own parts (warnings, views, byte figures) in their
    /// ranges, and its exit code one ringload gives. The counters are counts, the
    /// measured and start times are checked as they are read, the rest is derived.
    pub(super) fn check_figures(&self) -> Result<(), Violation> {
        let codes =
            [crate::exit::OK, crate::exit::CHECK_FAILED, crate::exit::ERROR, crate::exit::INTERRUPTED];
        if !codes.contains(&self.exit_code) {
            return Err(Violation::ExitCode(self.exit_code));
        }
        for (i, w) in self.warnings.iter().enumerate() {
            for (name, value, range) in warning_figures(&w.warning) {
                figure(|| format!("warnings[{i}].{name}"), value, range)?;
            }
        }
        if let Some(v) = &self.views {
            figure(|| "views.window_s".into(), v.window_s, Range::AtLeastZero)?;
            side("views.client", &v.client)?;
            if let Some(s) = &v.server {
                side("views.server.cpu", &s.cpu)?;
                if let Some(cpu) = s.process_cpu_s {
                    figure(|| "views.server.process_cpu_s".into(), cpu, Range::AtLeastZero)?;
                }
            }
        }
        for (name, b) in [("bulk", &self.bulk), ("background", &self.background)] {
            if let Some(b) = b {
                bulk(name, b)?;
            }
        }
        Ok(())
    }
}

/// One search step's own rules (its run is checked as a document).
pub(super) fn step_rules(step: &StepDoc, repeat: u32) -> Result<(), Violation> {
    figure(|| "offered".into(), step.offered, Range::AboveZero)?;
    figure(|| "achieved".into(), step.achieved, Range::AtLeastZero)?;
    figure(|| "client_busy".into(), step.client_busy, Range::AtLeastZero)?;
    if let Some(cpu) = step.server_cpu {
        figure(|| "server_cpu".into(), cpu, Range::AtLeastZero)?;
    }
    point(&step.point)?;
    if step.passed != step.reasons.is_empty() {
        return Err(Violation::Verdict { passed: step.passed, reasons: step.reasons.len() });
    }
    if step.run.repeats.len() > repeat as usize {
        return Err(Violation::StepRepeats { repeats: step.run.repeats.len(), repeat });
    }
    Ok(())
}

/// A step's judged figures: latencies not negative and in order, shares within 0..=1.
fn point(p: &Point) -> Result<(), Violation> {
    let latency = [("p50", p.p50), ("p90", p.p90), ("p99", p.p99), ("p999", p.p999), ("max", p.max)];
    for (name, value) in latency {
        figure(|| format!("point.{name}"), value, Range::AtLeastZero)?;
    }
    for (name, value) in [("errors", p.errors), ("loss", p.loss)] {
        figure(|| format!("point.{name}"), value, Range::Share)?;
    }
    for pair in latency.windows(2) {
        let ((lower, lower_ns), (upper, upper_ns)) = (pair[0], pair[1]);
        if lower_ns > upper_ns {
            return Err(Violation::PointOutOfOrder { lower, lower_ns, upper, upper_ns });
        }
    }
    Ok(())
}

/// `field` (named only when it is out of range) is in `range`.
pub(super) fn figure(field: impl FnOnce() -> String, value: f64, range: Range) -> Result<(), Violation> {
    if range.admits(value) { Ok(()) } else { Err(Violation::Figure { field: field(), value, range }) }
}

/// One side's worker threads: CPU seconds, and each thread's shares of the window.
fn side(at: &str, s: &SideCpu) -> Result<(), Violation> {
    figure(|| format!("{at}.cpu_s"), s.cpu_s, Range::AtLeastZero)?;
    for (list, shares) in [("busy", &s.busy), ("waiting", &s.waiting)] {
        for (i, &share) in shares.iter().enumerate() {
            figure(|| format!("{at}.{list}[{i}]"), share, Range::Share)?;
        }
    }
    Ok(())
}

/// Byte figures: rates, times and CPU, each not negative.
fn bulk(at: &str, b: &Bulk) -> Result<(), Violation> {
    let figures = [
        ("elapsed_s", b.elapsed_s),
        ("bytes_per_s", b.bytes_per_s),
        ("mb_per_s", b.mb_per_s),
        ("gbit_per_s", b.gbit_per_s),
        ("cpu_s", b.cpu_s),
        ("cpu_ns_per_byte", b.cpu_ns_per_byte),
    ];
    for (name, value) in figures {
        figure(|| format!("{at}.{name}"), value, Range::AtLeastZero)?;
    }
    for (i, interval) in b.intervals.iter().enumerate() {
        for (name, value) in [
            ("start_s", interval.start_s),
            ("length_s", interval.length_s),
            ("gbit_per_s", interval.gbit_per_s),
        ] {
            figure(|| format!("{at}.intervals[{i}].{name}"), value, Range::AtLeastZero)?;
        }
    }
    Ok(())
}

/// A warning's figures and their ranges (the counts are counts; texts are texts).
fn warning_figures(w: &Warning) -> Vec<(&'static str, f64, Range)> {
    match *w {
        Warning::ClientSaturated { busy } | Warning::ClientBehind { busy, .. } => {
            vec![("busy", busy, Range::AtLeastZero)]
        }
        // A merge of runs without plans requests 0 msg/s.
        Warning::RateShortfall { requested, achieved } => {
            vec![("requested", requested, Range::AtLeastZero), ("achieved", achieved, Range::AtLeastZero)]
        }
        Warning::LateStart { late_s } => vec![("late_s", late_s, Range::AtLeastZero)],
        Warning::TimeLimit { max_duration_s } | Warning::RunsCut { max_duration_s, .. } => {
            vec![("max_duration_s", max_duration_s, Range::AtLeastZero)]
        }
        Warning::CpuContention { waiting, .. } => vec![("waiting", waiting, Range::Share)],
        // The overlap is negative when the runs were apart.
        Warning::NotConcurrent { overlap_s, span_s } => {
            vec![("overlap_s", overlap_s, Range::Any), ("span_s", span_s, Range::AtLeastZero)]
        }
        Warning::Errors { .. }
        | Warning::SharedCpu
        | Warning::Interrupted
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
        | Warning::ServerMetrics { .. }
        | Warning::KernelCounter { .. }
        | Warning::PinFailed { .. }
        | Warning::Garbled { .. }
        | Warning::ForeignReplies { .. }
        | Warning::FewAnswers { .. } => Vec::new(),
    }
}
