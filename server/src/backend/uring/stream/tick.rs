//! The stream part's periodic and turn-end work: at each tick, re-arm the accepts that
//! failed, close idle connections (`--idle-timeout`) and evict under pool pressure; at the
//! drain deadline, close every open connection; after each turn, re-arm the receives that
//! ran dry once buffers are back.
//!
//! Invariant: pool pressure closes only a stuck connection (queued bytes, nothing moved
//! for a while), the one holding most, and only while receives starve on an empty pool.

use super::state::Streams;
use crate::backend::uring::conn::Phase;
use crate::backend::uring::ctx::Ctx;
use crate::policy::CloseReason;
use std::time::Duration;

impl<'a> Streams<'a> {
    /// The periodic tick: re-arms accepts that failed, closes idle connections, and
    /// evicts under pool pressure.
    pub fn on_tick(&mut self, ctx: &mut Ctx<'a>, evict_after: Duration) {
        for listener in 0..self.listeners.len() {
            if std::mem::take(&mut self.listeners[listener].backoff) && !ctx.draining() {
                self.arm_accept(ctx, listener);
            }
        }
        if let Some(idle) = self.config().idle_timeout {
            self.close_idle(ctx, idle);
        }
        self.evict_under_pressure(ctx, evict_after);
    }

    fn close_idle(&mut self, ctx: &mut Ctx<'a>, idle: Duration) {
        let Some(cutoff) = ctx.now.checked_sub(idle) else { return };
        for slot in 0..self.conns.len() {
            let c = &self.conns[slot];
            if c.phase == Phase::Open && c.last_active.is_some_and(|t| t < cutoff) {
                self.begin_close(slot as u32, CloseReason::Idle);
                self.progress(ctx, slot as u32);
            }
        }
    }

    /// Pool pressure: receives are starving for buffers while the pool is empty. Each
    /// connection is bounded, but together stuck ones (holding queued bytes their peer
    /// does not read, nothing moved for `stuck_for`) can hold every buffer; close the one
    /// holding most, so the others can be served. Counted as `evicted`.
    fn evict_under_pressure(&mut self, ctx: &mut Ctx<'a>, stuck_for: Duration) {
        if self.starved.is_empty() || self.buffers.available() > 0 {
            return;
        }
        let Some(cutoff) = ctx.now.checked_sub(stuck_for) else { return };
        let victim = (0..self.conns.len())
            .filter(|&i| {
                let c = &self.conns[i];
                c.phase == Phase::Open && c.queue.bytes() > 0 && c.last_active.is_some_and(|t| t < cutoff)
            })
            .max_by_key(|&i| self.conns[i].queue.bytes());
        if let Some(slot) = victim {
            self.begin_close(slot as u32, CloseReason::Evicted);
            self.progress(ctx, slot as u32);
        }
    }

    /// The drain deadline passed: close every open connection.
    pub fn force_close_all(&mut self, ctx: &mut Ctx<'a>) {
        for slot in 0..self.conns.len() as u32 {
            if self.conns[slot as usize].phase == Phase::Open {
                self.begin_close(slot, CloseReason::Drain);
                self.progress(ctx, slot);
            }
        }
    }

    /// Buffers came back (or the ring has some): re-arm the receives that ran dry.
    pub fn rearm_starved(&mut self, ctx: &mut Ctx<'a>) {
        // Not only when this turn returned buffers: an ENOBUFS that raced with an earlier
        // return would otherwise wait for ever on a ring that is full again.
        if self.starved.is_empty() || !(self.buffers.take_returned() || self.buffers.available() > 0) {
            return;
        }
        // Publish first: a re-armed receive that the kernel runs at once (a full submission
        // queue is flushed mid-dispatch) must see the returned buffers. Re-arm no more
        // receives than there are buffers, oldest first; the rest wait for the next turn.
        self.buffers.publish();
        let n =
            (self.buffers.available() as usize).clamp(1, self.starved.len().max(1)).min(self.starved.len());
        for slot in self.starved.drain(..n).collect::<Vec<_>>() {
            self.conns[slot as usize].starved = false;
            self.progress(ctx, slot);
        }
    }
}
