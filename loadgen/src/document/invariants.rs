//! The rules every result document keeps, whoever wrote it: what ringload's own runs
//! and merges guarantee, checked on every document read, so a broken or edited file is
//! an error naming the rule instead of figures that cannot all be true.

use super::ResultDoc;
use crate::hist::{self, Hist};

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
    #[error("{what}: {count} entries; ringload writes at most {max}")]
    TooMany {
        /// `repeats` or `search.steps`.
        what: &'static str,
        /// Entries found.
        count: usize,
        /// The most written.
        max: usize,
    },
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
    /// Checks the document's invariants: completed ≤ sent (when sent is known, i.e. not
    /// 0), one corrected and one service sample per answered message, percentiles in
    /// order, a measured time when anything was answered, a real start time, a plan
    /// that passes [`crate::plan::Plan::validate`]; and the same of every repeat and search
    /// step it holds (bounded in number, nested one level at most).
    pub fn check(&self) -> Result<(), Violation> {
        let c = &self.counters;
        if c.sent > 0 && c.completed > c.sent {
            return Err(Violation::CompletedAboveSent { completed: c.completed, sent: c.sent });
        }
        for (which, h) in
            [("corrected", &self.latency.corrected.histogram), ("service", &self.latency.service.histogram)]
        {
            if h.len() != c.completed {
                return Err(Violation::HistogramCount { which, samples: h.len(), completed: c.completed });
            }
        }
        for (which, s) in [
            ("corrected", &self.latency.corrected),
            ("service", &self.latency.service),
            ("connect", &self.latency.connect),
        ] {
            ordered(which, &s.histogram)?;
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
        let steps: Vec<&ResultDoc> =
            self.search.iter().flat_map(|s| s.steps.iter().map(|step| &step.run)).collect();
        let repeats: Vec<&ResultDoc> = self.repeats.iter().collect();
        for (what, docs, max) in
            [("repeats", repeats, super::MAX_REPEATS as usize), ("search.steps", steps, super::MAX_STEPS)]
        {
            if docs.len() > max {
                return Err(Violation::TooMany { what, count: docs.len(), max });
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

/// The histogram's own percentiles rise with the percentile.
fn ordered(which: &'static str, h: &Hist) -> Result<(), Violation> {
    let mut figures: Vec<(&'static str, u64)> =
        hist::QUANTILES.iter().map(|&(name, q)| (name, h.value_at_quantile(q))).collect();
    figures.push(("max", h.max()));
    in_order(which, &figures)
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
