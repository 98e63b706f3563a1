//! A comparison of two saved results (`ringload compare`): each figure's ratio and
//! whether it is a regression, each side's warnings, and how much of a change could be
//! noise. Plain data: `crate::compare` makes it, `crate::text::compare` shows it.

use crate::warning::Warning;

/// One line of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    /// What is compared.
    pub metric: String,
    /// Base value.
    pub base: f64,
    /// New value.
    pub new: f64,
    /// new / base.
    pub ratio: f64,
    /// Worse than the tolerance allows (and, with repeats, outside the noise).
    pub regression: bool,
    /// Better than the tolerance (and, with repeats, outside the noise).
    pub improvement: bool,
    /// With repeats on both sides: whether the confidence intervals of the two medians
    /// are apart (the change is more than the noise the repeats show). `None` for single
    /// runs.
    pub outside_noise: Option<bool>,
}

/// Which side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The baseline.
    Base,
    /// The result judged.
    New,
}

impl Side {
    /// `base` or `new`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Base => "base",
            Side::New => "new",
        }
    }
}

/// How much of a difference could be noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Noise {
    /// One run per side (or on one side): the spread of repeated runs is unknown, so no
    /// difference can be told from noise.
    SingleRuns,
    /// Both sides repeated (`--repeat`): each figure is the median of its side's runs,
    /// and a ratio counts only when the two medians' confidence intervals (order
    /// statistics; min–max below 6 runs) do not overlap.
    Repeats {
        /// Runs of the base.
        base: u32,
        /// Runs of the new result.
        new: u32,
        /// The smaller of the two intervals' coverage.
        coverage: f64,
    },
}

/// A comparison: the ratios, the warnings of each side, and what they allow.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Throughput, then each percentile.
    pub deltas: Vec<Delta>,
    /// Each side's warnings.
    pub warnings: Vec<(Side, Warning)>,
    /// How much of a change could be noise.
    pub noise: Noise,
}

impl Comparison {
    /// The ratios mean something: neither side has a warning that spoils them.
    pub fn meaningful(&self) -> bool {
        !self.warnings.iter().any(|(_, w)| w.spoils_comparison())
    }

    /// 1 when a ratio is worse than the tolerance, or when the ratios are not
    /// meaningful (a regression could not be ruled out); else 0.
    pub fn exit_code(&self) -> i32 {
        crate::exit::code(false, false, !self.meaningful() || self.deltas.iter().any(|d| d.regression))
    }
}
