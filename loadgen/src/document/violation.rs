//! The rules a document can break, named ([`Violation`]), and the range each figure
//! must be in ([`Range`]): what reading a file and checking a document
//! (`super::invariants`) report.

use std::fmt;

/// The most repeats a run (or a search step) makes, and a document holds.
pub const MAX_REPEATS: u32 = 100;

/// The most runs one document holds in all (itself, its repeats, its search steps and
/// their repeats), and so at most ten times as many histograms (a run's `super::Latency`):
/// what 8 MiB ([`crate::input::MAX_DOCUMENT_BYTES`]) holds of ringload's own runs at
/// their smallest (about 2 KB each: a plan, the figures, histograms of a few samples). A
/// search of 200 steps of 100 repeats could be written, but no file that size is read.
pub const MAX_RUNS: usize = 4096;

/// The most steps a search makes (a document holds at most this many).
pub const MAX_STEPS: usize = 200;

/// A rule a document breaks. Each message names the fields and their values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Violation {
    /// More messages answered than sent.
    #[error(
        "counters.completed ({completed}) is more than counters.sent ({sent}): more answers than messages"
    )]
    CompletedAboveSent {
        /// Answered.
        completed: u64,
        /// Sent.
        sent: u64,
    },
    /// A latency histogram does not hold one sample per answered message.
    #[error(
        "latency.{which}.histogram holds {samples} samples but counters.completed is {completed}: every answered message has one"
    )]
    HistogramCount {
        /// `corrected` or `service`.
        which: &'static str,
        /// Samples in the histogram.
        samples: u64,
        /// Answered messages.
        completed: u64,
    },
    /// Percentiles that do not rise with the percentile.
    #[error("latency.{which}: {lower} ({lower_ns} ns) is above {upper} ({upper_ns} ns)")]
    PercentilesOutOfOrder {
        /// The summary.
        which: &'static str,
        /// The lower percentile's name.
        lower: &'static str,
        /// Its value.
        lower_ns: u64,
        /// The higher percentile's name.
        upper: &'static str,
        /// Its value.
        upper_ns: u64,
    },
    /// Answers without any measured time: every rate would be wrong.
    #[error("counters.completed is {completed} but elapsed_s is 0: answers need a measured time")]
    NoMeasuredTime {
        /// Answered.
        completed: u64,
    },
    /// A start time no clock gives.
    #[error("started_unix ({0:e}) is not a time ringload writes (Unix seconds before the year 5138)")]
    StartedUnix(f64),
    /// A plan no run could have had (ringload validates every plan before it runs).
    #[error("plan: no run has this plan: {0}")]
    Plan(String),
    /// More repeats or search steps than ringload makes.
    #[error("more than {max} {what}: ringload writes at most {max}")]
    TooMany {
        /// `repeats` or `search steps`.
        what: &'static str,
        /// The most written.
        max: usize,
    },
    /// More runs in one document, however they nest, than ringload reads
    /// ([`MAX_RUNS`]).
    #[error(
        "more than {} runs in one document, counting every repeat and search step: ringload reads at most {}",
        MAX_RUNS,
        MAX_RUNS
    )]
    TooManyRuns,
    /// A figure out of its range.
    #[error("{field} is {value}, not {range}")]
    Figure {
        /// Its path (`search.steps[2].achieved`, `views.client.busy[0]`).
        field: String,
        /// Its value.
        value: f64,
        /// What it may be.
        range: Range,
    },
    /// An exit code ringload does not give.
    #[error("exit_code is {0}; ringload exits 0, 1, 2 or 130")]
    ExitCode(i32),
    /// The figures a search step was judged on (medians over its repeats) out of order.
    #[error("point: {lower} ({lower_ns} ns) is above {upper} ({upper_ns} ns)")]
    PointOutOfOrder {
        /// The lower percentile's name.
        lower: &'static str,
        /// Its value.
        lower_ns: f64,
        /// The higher one's name.
        upper: &'static str,
        /// Its value.
        upper_ns: f64,
    },
    /// A search step's verdict that contradicts its reasons.
    #[error("passed is {passed} with {reasons} reasons: a step passes exactly when nothing failed")]
    Verdict {
        /// The step's `passed`.
        passed: bool,
        /// How many reasons it gives.
        reasons: usize,
    },
    /// A search step with more repeats than the search runs a step.
    #[error("run.repeats has {repeats} runs; the search runs {repeat} a step")]
    StepRepeats {
        /// The step's repeats.
        repeats: usize,
        /// The search's `repeat`.
        repeat: u32,
    },
    /// A search's runs per step out of what ringload makes.
    #[error("search.repeat is {0}; ringload runs a step 1 to {max} times", max = MAX_REPEATS)]
    SearchRepeat(u32),
    /// An SLO that constrains one figure twice (ringload's parser refuses it).
    #[error("search.slo constrains {0} twice")]
    SloTwice(&'static str),
    /// A search's answer that is not the highest offered rate of a passing step.
    #[error(
        "search.answer is {}, but {}: the answer is the highest rate a step passed at",
        rate_or_null(*answer),
        match highest_passed { Some(h) => format!("the highest passing step offered {h} msg/s"), None => "no step passed".into() }
    )]
    Answer {
        /// The stated answer, msg/s.
        answer: Option<f64>,
        /// The highest offered rate of a passing step.
        highest_passed: Option<f64>,
    },
    /// A lower bound without an answer.
    #[error("search.lower_bound is true but there is no answer to bound")]
    LowerBoundWithoutAnswer,
    /// A repeat holding repeats or a search, or a step holding a search: ringload nests
    /// one level (a step's run may hold its repeats), no more.
    #[error("{what}[{index}] holds {inner}: ringload does not nest them")]
    NestedTooDeep {
        /// `repeats` or `search.steps`.
        what: &'static str,
        /// Which one.
        index: usize,
        /// What it should not hold.
        inner: &'static str,
    },
    /// A repeat or a search step breaks a rule.
    #[error("{what}[{index}]: {cause}")]
    Nested {
        /// `repeats` or `search.steps`.
        what: &'static str,
        /// Which one.
        index: usize,
        /// The rule it breaks.
        cause: Box<Violation>,
    },
}

/// What a figure may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Finite and above 0: an offered rate.
    AboveZero,
    /// Finite and at least 0: an achieved rate, seconds, CPU, a client's busy share (its
    /// workers' CPU over the measured window, which counts their connecting too, so it
    /// may pass 1).
    AtLeastZero,
    /// From 0 to 1: a thread's share of the window, an error rate, a loss.
    Share,
    /// Above 0 and at most 1: a search's precision, its least achieved share.
    Fraction,
    /// Any finite number (an overlap, negative when runs were apart).
    Any,
}

impl Range {
    /// Whether `value` is in the range.
    pub fn admits(self, value: f64) -> bool {
        value.is_finite()
            && match self {
                Range::AboveZero => value > 0.0,
                Range::AtLeastZero => value >= 0.0,
                Range::Share => (0.0..=1.0).contains(&value),
                Range::Fraction => value > 0.0 && value <= 1.0,
                Range::Any => true,
            }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Range::AboveZero => "a finite number above 0",
            Range::AtLeastZero => "a finite number of at least 0",
            Range::Share => "a share from 0 to 1",
            Range::Fraction => "a share above 0, at most 1",
            Range::Any => "a finite number",
        })
    }
}

/// A rate as a message shows it, or `null`.
fn rate_or_null(rate: Option<f64>) -> String {
    rate.map_or_else(|| "null".into(), |r| format!("{r} msg/s"))
}
