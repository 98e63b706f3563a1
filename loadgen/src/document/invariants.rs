//! The rules every result document keeps, whoever wrote it: what ringload's own runs,
//! merges and searches guarantee, checked on every document read, so a broken or edited
//! file is an error naming the rule instead of figures that cannot all be true (a plot of
//! "answer: at least -5.0 msg/s").
//!
//! Every figure read is in its [`Range`]: finite (JSON has no NaN, but a document made in
//! this process could), not negative, a share at most 1, a rate above 0.

mod ranges;

use super::run::{ResultDoc, SearchDoc};
use super::violation::{MAX_REPEATS, Range, Violation};
use ranges::{figure, step_rules};

/// The latest `started_unix` taken for a real time (the year 5138), as `--start-at`.
const MAX_UNIX_S: f64 = 1e11;

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
            ("repeats", repeats, MAX_REPEATS as usize, "repeats"),
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
        if !(1..=MAX_REPEATS).contains(&self.repeat) {
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
