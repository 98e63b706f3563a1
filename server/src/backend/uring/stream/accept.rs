//! The stream part's accepts: arming each listener's accept (multishot while the
//! descriptor table has plenty of room, single-shot when it is nearly full, none when it
//! is full), stopping them at shutdown, their completions, and the admission of each
//! connection they bring (`--max-conns`, nobody while draining; a refused one is closed
//! at once and its slot freed when that close completes).
//!
//! Invariant: an accept is armed only while a slot of the table is free, and multishot
//! only while more are free than a full backlog could take, so the kernel never accepts
//! into a full table (it would reset the connection); `slots_free` counts them.

use super::state::{Streams, push};
use crate::backend::contract::Family;
use crate::backend::uring::conn::Phase;
use crate::backend::uring::ctx::Ctx;
use crate::backend::uring::token::{Kind, Token};
use crate::policy::CloseReason;
use io_uring::{opcode, types};
use std::os::fd::AsRawFd;

/// Multishot accept only while more direct-descriptor slots are free than a full listen
/// backlog: one multishot accept can take the whole backlog in one go, and a connection
/// accepted into a full table is closed by the kernel (reset). Below that, accepts are
/// single-shot, one per free slot, and connections wait in the backlog instead.
const MULTISHOT_ACCEPT_MIN_FREE: u32 = 4096 + 64;

impl<'a> Streams<'a> {
    /// Arms every listener's accept.
    pub fn arm_all(&mut self, ctx: &mut Ctx<'a>) {
        for listener in 0..self.listeners.len() {
            self.arm_accept(ctx, listener);
        }
    }

    /// Shutdown: stops accepting (open connections go on).
    pub fn stop_accepting(&mut self, ctx: &mut Ctx<'a>) {
        for (i, l) in self.listeners.iter_mut().enumerate() {
            l.backoff = false;
            let target = Token::new(Kind::Accept, i as u32, 0).encode();
            let token = Token::new(Kind::Cancel, u32::MAX, 0).encode();
            push(ctx, opcode::AsyncCancel::new(target).build().user_data(token));
        }
    }

    /// Arms the listener's accept: multishot while the descriptor table has plenty of
    /// room, single-shot when it is nearly full, not at all when it is full (a freed
    /// slot re-arms it).
    pub(super) fn arm_accept(&mut self, ctx: &mut Ctx<'a>, listener: usize) {
        let l = &mut self.listeners[listener];
        if l.armed || self.slots_free == 0 || ctx.draining() {
            return;
        }
        let multishot = self.slots_free > MULTISHOT_ACCEPT_MIN_FREE;
        (l.armed, l.multishot, l.cancelling) = (true, multishot, false);
        let fd = types::Fd(l.listener.fd.as_raw_fd());
        let token = Token::new(Kind::Accept, listener as u32, 0).encode();
        let entry = if multishot {
            opcode::AcceptMulti::new(fd).allocate_file_index(true).build()
        } else {
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .file_index(Some(types::DestinationSlot::auto_target()))
                .build()
        };
        push(ctx, entry.user_data(token));
    }

    /// A slot came free: re-arm the accepts that stopped for want of one.
    pub(super) fn slot_freed(&mut self, ctx: &mut Ctx<'a>) {
        self.slots_free += 1;
        for listener in 0..self.listeners.len() {
            let l = &self.listeners[listener];
            if !l.armed && !l.backoff {
                self.arm_accept(ctx, listener);
            }
        }
    }

    pub fn on_accept(&mut self, ctx: &mut Ctx<'a>, listener: usize, res: i32, more: bool) {
        let Some(l) = self.listeners.get_mut(listener) else {
            ctx.counters.err_other += 1;
            return;
        };
        if !more {
            (l.armed, l.cancelling) = (false, false);
        }
        if res >= 0 {
            self.slots_free = self.slots_free.saturating_sub(1);
            if more && l.multishot && !l.cancelling && self.slots_free <= MULTISHOT_ACCEPT_MIN_FREE {
                // Nearly full: stop the multishot accept; it is re-armed single-shot.
                l.cancelling = true;
                let target = Token::new(Kind::Accept, listener as u32, 0).encode();
                let token = Token::new(Kind::Cancel, u32::MAX, 0).encode();
                push(ctx, opcode::AsyncCancel::new(target).build().user_data(token));
            }
            self.admit(ctx, listener, res as u32);
        } else if res != -libc::ECANCELED {
            ctx.counters.err_accept += 1;
        }
        if !more && !ctx.draining() {
            if res >= 0 || res == -libc::ECANCELED {
                self.arm_accept(ctx, listener);
            } else {
                self.listeners[listener].backoff = true;
            }
        }
    }

    /// A connection was accepted into direct-descriptor `slot`: serve it, or close it at
    /// once (past `--max-conns`, or draining).
    fn admit(&mut self, ctx: &mut Ctx<'a>, listener: usize, slot: u32) {
        let admitted = self.admission().admit(ctx.draining(), &mut ctx.counters);
        let l = self.listeners[listener].listener;
        let zc = self.send_zc && l.family != Family::Unix;
        let now = ctx.now;
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            // Cannot happen (the table is ours); close the descriptor all the same.
            ctx.counters.err_other += 1;
            if admitted {
                self.admission().release(CloseReason::Error, &mut ctx.counters);
            }
            self.slots_free += 1;
            let token = Token::new(Kind::Cancel, u32::MAX, 0).encode();
            push(ctx, opcode::Close::new(types::Fixed(slot)).build().user_data(token));
            return;
        };
        if admitted {
            conn.open(l.mode, zc, now);
            conn.stamped = self.listeners[listener].stamped;
            self.open += 1;
            self.progress(ctx, slot);
        } else {
            conn.phase = Phase::Refused;
            let token = Token::new(Kind::CloseRefused, slot, conn.generation).encode();
            push(ctx, opcode::Close::new(types::Fixed(slot)).build().user_data(token));
        }
    }

    pub fn on_refused_closed(&mut self, ctx: &mut Ctx<'a>, token: Token) {
        if let Some(conn) = self.conn_mut(token) {
            conn.free();
            self.slot_freed(ctx);
        }
    }
}
