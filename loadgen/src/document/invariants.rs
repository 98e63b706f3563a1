//! The rules every result document keeps, whoever wrote it: what ringload's own runs,
//! merges and searches guarantee, checked on every document read, so a broken or edited
//! file is an error naming the rule instead of figures that cannot all be true (a plot of
//! "answer: at least -5.0 msg/s").
//!
//! Every figure read is in its [`Range`]: finite (JSON has no NaN, but a document made in
//! this process could), not negative, a share at most 1, a rate above 0.

mod ranges;

pub use ranges::Range;

use super::ResultDoc;
use super::search::SearchDoc;
use ranges::{figure, step_rules};

/// The latest `started_unix` taken for a real time (the year 5138), as `--start-at`.
const MAX_UNIX_S: f64 = 1e11;

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
    /// ([`super::MAX_RUNS`]).
    #[error(
        "more than {} runs in one document, counting every repeat and search step: ringload reads at most {}",
        super::MAX_RUNS,
        super::MAX_RUNS
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
    #[error("search.repeat is {0}; ringload runs a step 1 to {max} times", max = super::MAX_REPEATS)]
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

impl ResultDoc {
    /// Checks the document's invariants: every figure in its [`Range`], an exit code
    /// ringload gives, completed ≤ sent (when sent is known, i.e. not 0), one corrected
    /// and one service sample per answered message, percentiles in order, a measured time
    /// when anything was answered, a real start time, a plan that passes
    /// [`crate::plan::Plan::validate`], a search that could have run
    /// ([`SearchDoc::check`]); and the same of every repeat and search step it holds
    /// (bounded in number, nested one level at most).
    pub fn check(&self) -> Result<(), Violation> {
        self.check_figures()?;
        let c = &self.counters;
        if c.sent > 0 && c.completed > c.sent {
            return Err(Violation::CompletedAboveSent { completed: c.completed, sent: c.sent });
        }
        for (which, s) in [("corrected", &self.latency.corrected), ("service", &self.latency.service)] {
            if s.count != c.completed {
                return Err(Violation::HistogramCount { which, samples: s.count, completed: c.completed });
            }
        }
        for (which, s) in [
            ("corrected", &self.latency.corrected),
            ("service", &self.latency.service),
            ("connect", &self.latency.connect),
        ] {
            in_order(which, &s.figures())?;
        }
        if c.completed > 0 && self.elapsed_s <= 0.0 {
            return Err(Violation::NoMeasuredTime { completed: c.completed });
        }
        if !(0.0..MAX_UNIX_S).contains(&self.started_unix) {
            return Err(Violation::StartedUnix(self.started_unix));
        }
        if let Some(plan) = &self.plan {
            plan.validate().map_err(|e| Violation::Plan(e.to_string()))?;
        }
        if let Some(search) = &self.search {
            search.check()?;
        }
        let steps: Vec<&ResultDoc> =
            self.search.iter().flat_map(|s| s.steps.iter().map(|step| &step.run)).collect();
        let repeats: Vec<&ResultDoc> = self.repeats.iter().collect();
        for (what, docs, max, many) in [
            ("repeats", repeats, super::MAX_REPEATS as usize, "repeats"),
            ("search.steps", steps, super::MAX_STEPS, "search steps"),
        ] {
            if docs.len() > max {
                return Err(Violation::TooMany { what: many, max });
            }
            for (index, d) in docs.iter().enumerate() {
                if d.search.is_some() {
                    return Err(Violation::NestedTooDeep { what, index, inner: "a search" });
                }
                if what == "repeats" && !d.repeats.is_empty() {
                    return Err(Violation::NestedTooDeep { what, index, inner: "repeats" });
                }
                d.check().map_err(|cause| Violation::Nested { what, index, cause: Box::new(cause) })?;
            }
        }
        Ok(())
    }
}

impl SearchDoc {
    /// The rules of a search as ringload runs one: its settings in range, each step's
    /// figures in range and in order, a verdict that agrees with its reasons, no more
    /// repeats than a step runs, and the answer the highest offered rate a step passed at
    /// (none when none passed), a lower bound only of an answer.
    pub fn check(&self) -> Result<(), Violation> {
        figure(|| "search.precision".into(), self.precision, Range::Fraction)?;
        figure(|| "search.min_achieved".into(), self.min_achieved, Range::Fraction)?;
        if !(1..=super::MAX_REPEATS).contains(&self.repeat) {
            return Err(Violation::SearchRepeat(self.repeat));
        }
        for (i, c) in self.slo.clauses.iter().enumerate() {
            let range = if c.metric.is_latency() { Range::AboveZero } else { Range::Share };
            figure(|| format!("search.slo.clauses[{i}].limit"), c.limit, range)?;
            if self.slo.clauses[..i].iter().any(|earlier| earlier.metric == c.metric) {
                return Err(Violation::SloTwice(c.metric.name()));
            }
        }
        for (index, step) in self.steps.iter().enumerate() {
            let nested = |cause| Violation::Nested { what: "search.steps", index, cause: Box::new(cause) };
            step_rules(step, self.repeat).map_err(nested)?;
        }
        let highest_passed = self.steps.iter().filter(|s| s.passed).map(|s| s.offered).reduce(f64::max);
        if self.answer != highest_passed {
            return Err(Violation::Answer { answer: self.answer, highest_passed });
        }
        if self.lower_bound && self.answer.is_none() {
            return Err(Violation::LowerBoundWithoutAnswer);
        }
        Ok(())
    }
}

/// A rate as a message shows it, or `null`.
fn rate_or_null(rate: Option<f64>) -> String {
    rate.map_or_else(|| "null".into(), |r| format!("{r} msg/s"))
}

fn in_order(which: &'static str, figures: &[(&'static str, u64)]) -> Result<(), Violation> {
    for pair in figures.windows(2) {
        let ((lower, lower_ns), (upper, upper_ns)) = (pair[0], pair[1]);
        if lower_ns > upper_ns {
            return Err(Violation::PercentilesOutOfOrder { which, lower, lower_ns, upper, upper_ns });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
