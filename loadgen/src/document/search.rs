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
    /// A step's run could not be trusted (the target failed: it stopped answering, is
    /// not an echo, lost connections): no later rate can be judged.
    TargetFailed,
}

/// What a failed step is blamed on, the first that applies in this order: the target
/// failed (its figures cannot be trusted), the load generator fell behind its schedule
/// (its own delay is in the figures), or the target did not sustain the rate under the
/// SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// Ctrl-C cut the step short: it is not judged.
    Interrupted,
    /// The target failed.
    Target,
    /// The load generator could not keep its schedule.
    Client,
    /// The SLO broke, or the target did not achieve the offered rate.
    Slo,
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
    #[serde(default, deserialize_with = "super::read::reasons")]
    pub reasons: Vec<String>,
    /// What its failure is blamed on (absent when it passed, and in documents from
    /// before blame was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blame: Option<Blame>,
    /// The server's CPU over the step (warm-up and drain included), in CPUs (1.0 = one
    /// CPU busy all the time): read from /proc/PID/stat of `--server-pid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu: Option<f64>,
    /// The step's run.
    #[serde(deserialize_with = "super::read::run")]
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
    /// The answer is a lower bound: the lowest failing step above it is blamed on the
    /// client.
    pub lower_bound: bool,
    /// What would help a client that stopped the search, on the machine it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// Why the search stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
    /// Every step, in the order run.
    #[serde(deserialize_with = "super::read::steps")]
    pub steps: Vec<StepDoc>,
}

impl SearchDoc {
    /// The step the answer came from.
    pub fn answer_step(&self) -> Option<&StepDoc> {
        let a = self.answer?;
        self.steps.iter().find(|s| s.passed && s.offered == a)
    }

    /// The failed step that bounds the answer from above: the lowest failing rate above
    /// the answer (the lowest failing rate when there is none), not interrupted.
    pub fn bounding_step(&self) -> Option<&StepDoc> {
        self.steps
            .iter()
            .filter(|s| !s.passed && !s.interrupted && self.answer.is_none_or(|a| s.offered > a))
            .min_by(|a, b| a.offered.total_cmp(&b.offered))
    }

    /// What the bounding step is blamed on (old documents: from its figures).
    pub fn bounding_blame(&self) -> Option<Blame> {
        let s = self.bounding_step()?;
        Some(s.blame.unwrap_or(if s.client_saturated { Blame::Client } else { Blame::Slo }))
    }

    /// The exit code ([`crate::exit::code`]): interrupted; an error when a step's target
    /// failed, when nothing but the client stopped a search without an answer (no step
    /// measured the target), or when the search stopped before it converged
    /// (`--max-duration`, the step limit: its answer is only a lower bound of the
    /// search's); a failed check when no rate met the SLO.
    pub fn exit_code(&self) -> i32 {
        let none = self.answer.is_none();
        let target_failed = self.stopped == Some(Stopped::TargetFailed)
            || (none && self.steps.iter().any(|s| s.run.exit_code == crate::exit::ERROR));
        let client_only = none && self.bounding_blame() == Some(Blame::Client);
        let cut = matches!(self.stopped, Some(Stopped::MaxDuration | Stopped::StepLimit));
        crate::exit::code(
            self.stopped == Some(Stopped::Interrupted),
            target_failed || client_only || cut,
            none,
        )
    }
}
