//! What a saved capacity search says (`--find-max-rate`): the step its answer came from,
//! the step that bounds it, what that step is blamed on and the exit code it implies.
//! The search's data ([`SearchDoc`]) is part of the document's recursive shape, in
//! `super::run`: `crate::capacity` makes it, `crate::text::search` and `crate::plot`
//! show it.

use super::run::{Blame, SearchDoc, StepDoc, Stopped};

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
