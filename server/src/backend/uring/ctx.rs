//! What a uring worker lends each of its parts (the stream listeners and their
//! connections, the datagram listeners) on every call: the ring's [`Driver`], the
//! counters, the time of the turn and whether the worker is draining. The parts own
//! their state and build their own entries; the worker owns the loop and this context.
//!
//! Invariant: an operation a part submits through [`Ctx::push`] points only into memory
//! that outlives its last completion: the ring's buffers (owned by the [`crate::ring::Ring`],
//! dropped after its io_uring), static data, or heap memory the part owns at a stable
//! address, which the worker keeps alive until the kernel has answered every operation
//! (or, if it never does, leaks). The parts and the worker depend on this module, never
//! the reverse.

use super::stamps::Stamps;
use crate::ring::{Driver, PushError};
use crate::stats::Counters;
use io_uring::squeue;
use std::time::Instant;

/// What a worker lends its parts for one call.
pub(super) struct Ctx<'r> {
    /// Submits and reaps (the worker waits on it; the parts only push).
    pub driver: Driver<'r>,
    /// The first push the ring refused: the loop stops after this turn.
    push_error: Option<PushError>,
    /// This worker's counters, published once per turn.
    pub counters: Counters,
    /// Now: read once per turn, after waiting.
    pub now: Instant,
    /// When shutdown began, the instant open connections are forced closed; nothing new
    /// is accepted or received once it is set.
    pub draining: Option<Instant>,
    /// `--timestamps`: the clocks and where the parts go.
    pub stamps: Option<Stamps<'r>>,
}

impl<'r> Ctx<'r> {
    pub fn new(driver: Driver<'r>, now: Instant, stamps: Option<Stamps<'r>>) -> Ctx<'r> {
        Ctx { driver, push_error: None, counters: Counters::default(), now, draining: None, stamps }
    }

    /// Queues `entry` for the kernel. A refusal is kept and stops the loop after this
    /// turn (the part carries on as if the entry had gone; it is never retried).
    ///
    /// # Safety
    /// As [`Driver::push`]: whatever `entry` points to must stay valid until the
    /// operation's last completion (see the module's invariant).
    #[inline]
    pub unsafe fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: the caller's contract is `Driver::push`'s.
        if let Err(e) = unsafe { self.driver.push(&entry) } {
            self.push_error.get_or_insert(e);
        }
    }

    /// The first refused push since the last call, if any.
    pub fn take_push_error(&mut self) -> Option<PushError> {
        self.push_error.take()
    }

    /// Whether shutdown has begun.
    #[inline]
    pub fn draining(&self) -> bool {
        self.draining.is_some()
    }
}
