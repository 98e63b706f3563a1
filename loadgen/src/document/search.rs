//! A capacity search as saved in a result document's `search` (`--find-max-rate`): the
//! objective, every step with its verdict, figures and its own run's document, and the
//! answer. Plain data: `crate::capacity` makes it, `crate::text::search` and
//! `crate::plot` show it.

use super::ResultDoc;
use crate::slo::{Point, Slo};
use serde::{Deserialize, Serialize};

/// The most steps a search makes (a document holds at most this many).
pub const MAX_STEPS: usize = 200;

/// Why a search stopped before it converged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// Ctrl-C.
    Interrupted,
    /// The next step would not fit in `--max-duration`.
    MaxDuration,
    /// [`MAX_STEPS`] steps made.
    StepLimit,
}

/// One step as saved: its verdict and figures, and its run's document (pooled over the
/// repeats, each kept in its `repeats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDoc {
    /// Offered rate, msg/s.
    pub offered: f64,
    /// Achieved rate (the median over repeats), msg/s.
    pub achieved: f64,
    /// It met every rule of a passing step.
    pub passed: bool,
    /// The load workers' CPU share (median over repeats).
    pub client_busy: f64,
    /// The load generator fell behind its schedule (or the hidden test knob
    /// `--test-saturate-above` marked the step): it says nothing of the target's limit.
    pub client_saturated: bool,
    /// The p99 of the client's send lag (median over repeats), ns; absent in documents
    /// from before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_lag_p99_ns: Option<u64>,
    /// Ctrl-C cut the step short: it is not judged.
    #[serde(default)]
    pub interrupted: bool,
    /// The figures judged (medians over repeats).
    pub point: Point,
    /// Why it failed, one sentence each; empty when it passed.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The server's CPU over the step (warm-up and drain included), in CPUs (1.0 = one
    /// CPU busy all the time): read from /proc/PID/stat of `--server-pid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu: Option<f64>,
    /// The step's run.
    pub run: ResultDoc,
}

/// A search as saved in the document's `search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchDoc {
    /// The objective.
    pub slo: Slo,
    /// The SLO as written.
    pub slo_text: String,
    /// The bisection's stated precision (0.05 = 5%).
    pub precision: f64,
    /// The least achieved share of the offered rate a passing step has.
    pub min_achieved: f64,
    /// Runs per step.
    pub repeat: u32,
    /// The highest offered rate that met the SLO, msg/s; none when no rate did.
    pub answer: Option<f64>,
    /// The answer is a lower bound: the lowest failing step had a saturated client.
    pub lower_bound: bool,
    /// Why the search stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
    /// Every step, in the order run.
    pub steps: Vec<StepDoc>,
}

impl SearchDoc {
    /// The step the answer came from.
    pub fn answer_step(&self) -> Option<&StepDoc> {
        let a = self.answer?;
        self.steps.iter().find(|s| s.passed && s.offered == a)
    }

    /// The exit code ([`crate::exit::code`]): interrupted; an error when the search
    /// stopped before it converged (`--max-duration`, the step limit: its answer is only a
    /// lower bound of the search's), or when the target failed and no rate passed; a
    /// failed check when no rate met the SLO.
    pub fn exit_code(&self) -> i32 {
        let none = self.answer.is_none();
        crate::exit::code(
            self.stopped == Some(Stopped::Interrupted),
            self.stopped.is_some()
                || none && self.steps.iter().any(|s| s.run.exit_code == crate::exit::ERROR),
            none,
        )
    }
}
