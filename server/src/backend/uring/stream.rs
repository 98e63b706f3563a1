//! Stream listeners (TCP and Unix) and their connections: accept, receive,
//! echo/discard/source, close. [`Streams`] owns all of it — the accepts, the connection
//! table, the stream buffers — and builds its own entries; the worker lends it a [`Ctx`]
//! per call.
//!
//! A slot of the connection table is freed only after its close completes, and a close
//! is submitted only when no other operation of that connection is in flight, so no
//! completion can land on a reused slot (tokens carry the slot's generation as well).
//! Every entry built here points at nothing, at a stream buffer (owned by the ring) or at
//! the static source pattern (see [`super::ctx`]).

use super::buffers::Buffers;
use super::conn::{Conn, Phase, RecvAction};
use super::ctx::Ctx;
use super::token::{Kind, Token};
use crate::backend::contract::{Family, Listener, Shared, Transport};
use crate::config::{Config, Mode};
use crate::policy::{self, Admission, CloseReason};
use crate::ring::{self, Features};
use io_uring::{cqueue, opcode, squeue, types};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Multishot accept only while more direct-descriptor slots are free than a full listen
/// backlog: one multishot accept can take the whole backlog in one go, and a connection
/// accepted into a full table is closed by the kernel (reset). Below that, accepts are
/// single-shot, one per free slot, and connections wait in the backlog instead.
const MULTISHOT_ACCEPT_MIN_FREE: u32 = 4096 + 64;

/// IORING_SEND_ZC_REPORT_USAGE: the notification says whether the kernel copied after all.
const ZC_REPORT_USAGE: u16 = 8;

/// One stream listener and its accept.
struct StreamListener<'a> {
    listener: &'a Listener,
    armed: bool,
    multishot: bool,
    cancelling: bool,
    /// The accept failed; re-armed at the next tick, so a failing accept (EMFILE, a full
    /// table) cannot spin.
    backoff: bool,
}

/// A worker's stream listeners, its table of connections (one per direct-descriptor
/// slot) and the stream buffers they receive into.
pub(super) struct Streams<'a> {
    shared: &'a Shared,
    /// Indexed by a token's `slot` for accepts.
    listeners: Vec<StreamListener<'a>>,
    /// Indexed by direct-descriptor slot.
    conns: Vec<Conn>,
    /// Direct-descriptor slots not holding a connection.
    slots_free: u32,
    buffers: Buffers<'a>,
    /// Connections whose receive ended with ENOBUFS, oldest first.
    starved: Vec<u32>,
    /// Connections open (admitted, not yet closed).
    open: u64,
    /// The kernel ends multishot receives at a byte limit (exact per-connection bound).
    limits: bool,
    /// The kernel has SEND_ZC (`--zc-threshold` is ignored otherwise).
    send_zc: bool,
}

/// Queues `entry` on `ctx`.
///
/// Every entry of this file points at nothing, at a buffer of the ring (held in a
/// connection's queue until the send's last completion) or at the static source pattern.
fn push(ctx: &mut Ctx<'_>, entry: squeue::Entry) {
    // SAFETY: see above: nothing an entry of this file points to can go before its last
    // completion (the ring's buffers outlive its io_uring; a queued buffer leaves the
    // queue only when its send has completed, or with the worker's leak).
    unsafe { ctx.push(entry) }
}

impl<'a> Streams<'a> {
    /// The stream listeners among `listeners` (a token names one by its index among
    /// them), a table of `table` connection slots, and the stream buffers.
    pub fn new(
        shared: &'a Shared,
        listeners: &'a [Listener],
        buffers: Buffers<'a>,
        table: u32,
        features: Features,
    ) -> Streams<'a> {
        let listeners = listeners
            .iter()
            .filter(|l| l.transport == Transport::Stream)
            .map(|listener| StreamListener {
                listener,
                armed: false,
                multishot: false,
                cancelling: false,
                backoff: false,
            })
            .collect();
        Streams {
            shared,
            listeners,
            conns: (0..table).map(|_| Conn::default()).collect(),
            slots_free: table,
            buffers,
            starved: Vec::new(),
            open: 0,
            limits: features.recv_total_limit,
            send_zc: features.send_zc,
        }
    }

    fn config(&self) -> &'a Config {
        let shared: &'a Shared = self.shared;
        &shared.config
    }

    /// `--max-conns` over the process (borrows the shared state, not `self`).
    fn admission(&self) -> Admission<'a> {
        let shared: &'a Shared = self.shared;
        shared.admission()
    }

    /// Connections open.
    pub fn open(&self) -> u64 {
        self.open
    }

    /// No refused connection is still being closed.
    pub fn settled(&self) -> bool {
        !self.conns.iter().any(|c| c.phase != Phase::Free)
    }

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

    /// Makes the buffers given back visible to the kernel (once per loop turn).
    pub fn publish_buffers(&mut self) {
        self.buffers.publish();
    }

    /// Copies the open count and the buffer pool's levels into `c`.
    pub fn publish_levels(&self, c: &mut crate::stats::Counters) {
        c.open = self.open;
        self.buffers.publish_levels(c);
    }

    /// Gives up every buffer handle without returning it (the worker is leaving); returns
    /// how many lent or deferred ones there were (queued ones are the ring's to drop).
    pub fn abandon(&mut self) -> u64 {
        for conn in &mut self.conns {
            conn.queue.forget_all();
        }
        self.buffers.abandon()
    }

    /// Arms the listener's accept: multishot while the descriptor table has plenty of
    /// room, single-shot when it is nearly full, not at all when it is full (a freed
    /// slot re-arms it).
    fn arm_accept(&mut self, ctx: &mut Ctx<'a>, listener: usize) {
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
    fn slot_freed(&mut self, ctx: &mut Ctx<'a>) {
        self.slots_free += 1;
        for listener in 0..self.listeners.len() {
            let l = &self.listeners[listener];
            if !l.armed && !l.backoff {
                self.arm_accept(ctx, listener);
            }
        }
    }

    /// The connection a token names, if it is still the same connection.
    fn conn_mut(&mut self, token: Token) -> Option<&mut Conn> {
        self.conns
            .get_mut(token.slot as usize)
            .filter(|c| c.generation == token.generation && c.phase != Phase::Free)
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

    pub fn on_cancelled(&mut self, ctx: &mut Ctx<'a>, token: Token) {
        if let Some(conn) = self.conn_mut(token) {
            conn.cancel_pending = false;
            self.progress(ctx, token.slot);
        }
    }

    pub fn on_recv(&mut self, ctx: &mut Ctx<'a>, token: Token, res: i32, flags: u32, more: bool) {
        let buf = match cqueue::buffer_select(flags) {
            Some(bid) => match self.buffers.take(bid, &mut ctx.counters) {
                Some(buf) => Some(buf),
                None => {
                    // Not a buffer we can trust: ignore the data, keep the receive's state.
                    if !more {
                        if let Some(conn) = self.conn_mut(token) {
                            conn.recv_armed = false;
                        }
                        self.progress(ctx, token.slot);
                    }
                    return;
                }
            },
            None => None,
        };
        let now = ctx.now;
        let Some(conn) = self.conns.get_mut(token.slot as usize).filter(|c| c.generation == token.generation)
        else {
            if let Some(buf) = buf {
                self.buffers.release(buf, &mut ctx.counters);
            }
            return;
        };
        if !more {
            conn.recv_armed = false;
        }
        match (res, buf) {
            (n, Some(buf)) if n > 0 => {
                let n = n as u32;
                policy::count_received(&mut ctx.counters, n as usize);
                conn.last_active = Some(now);
                if conn.phase == Phase::Open && policy::keeps_received(conn.mode) {
                    conn.queue.push(buf, n);
                    let queued = u64::from(conn.queue.bytes());
                    debug_assert!(!self.limits || queued <= u64::from(self.shared.config.max_conn_buffer));
                    let c = &mut ctx.counters;
                    c.queued_bytes += u64::from(n);
                    c.conn_queue_high_water = c.conn_queue_high_water.max(queued);
                } else {
                    // Discard and source drop what they receive; a closing connection
                    // has no use for it either.
                    self.buffers.release(buf, &mut ctx.counters);
                }
            }
            (n, buf) if n <= 0 => {
                if n == 0 {
                    conn.read_eof = true;
                } else if n == -libc::ENOBUFS {
                    conn.starved = true;
                }
                if let Some(buf) = buf {
                    self.buffers.release(buf, &mut ctx.counters);
                }
                match -n {
                    0 | libc::ECANCELED => {}
                    libc::ENOBUFS => {
                        self.starved.push(token.slot);
                        ctx.counters.enobufs += 1;
                    }
                    errno => self.on_socket_error(ctx, token.slot, errno),
                }
            }
            // Data without a buffer: the kernel always names one for a provided-buffer
            // receive, so this cannot happen; nothing to release.
            _ => {}
        }
        self.progress(ctx, token.slot);
    }

    fn on_socket_error(&mut self, ctx: &mut Ctx<'a>, slot: u32, errno: i32) {
        policy::count_errno(&mut ctx.counters, errno);
        self.begin_close(slot, CloseReason::Error);
    }

    pub fn on_send(&mut self, ctx: &mut Ctx<'a>, token: Token, res: i32, zc: bool, more: bool) {
        if zc && more {
            // A notification will follow; the buffer is the kernel's until then.
            self.buffers.zc_sent(token.bid, &mut ctx.counters);
        }
        let now = ctx.now;
        let Some(conn) = self
            .conns
            .get_mut(token.slot as usize)
            .filter(|c| c.generation == token.generation && c.queue.in_flight())
        else {
            ctx.counters.err_other += 1;
            return;
        };
        if res >= 0 {
            let asked = conn.queue.front_len();
            conn.last_active = Some(now);
            let done = conn.queue.on_sent(res as u32);
            let c = &mut ctx.counters;
            policy::count_sent(c, res as usize);
            c.queued_bytes -= res as u64;
            c.zc_sends += u64::from(zc);
            match done {
                Some(buf) => self.buffers.release(buf, c),
                None if (res as u32) < asked => c.short_sends += 1,
                None => {}
            }
        } else {
            conn.queue.on_send_failed();
            if -res != libc::ECANCELED {
                self.on_socket_error(ctx, token.slot, -res);
            }
        }
        self.progress(ctx, token.slot);
    }

    pub fn on_zc_notif(&mut self, ctx: &mut Ctx<'a>, bid: u16, res: i32) {
        /// IORING_NOTIF_USAGE_ZC_COPIED, in a notification's result when the send asked
        /// for IORING_SEND_ZC_REPORT_USAGE.
        const ZC_COPIED: u32 = 1 << 31;
        if res as u32 & ZC_COPIED != 0 {
            ctx.counters.zc_copied += 1;
        }
        self.buffers.zc_notified(bid, &mut ctx.counters);
    }

    pub fn on_source_sent(&mut self, ctx: &mut Ctx<'a>, token: Token, res: i32) {
        let now = ctx.now;
        let Some(conn) = self.conn_mut(token).filter(|c| c.source_in_flight) else {
            ctx.counters.err_other += 1;
            return;
        };
        conn.source_in_flight = false;
        if res >= 0 {
            conn.source_offset += res as u64;
            conn.last_active = Some(now);
            policy::count_sent(&mut ctx.counters, res as usize);
        } else if -res != libc::ECANCELED {
            self.on_socket_error(ctx, token.slot, -res);
        }
        self.progress(ctx, token.slot);
    }

    pub fn on_close(&mut self, ctx: &mut Ctx<'a>, token: Token) {
        let Some(conn) = self.conn_mut(token) else { return };
        let (was_paused, reason) = (conn.paused, conn.close_reason.unwrap_or(CloseReason::Error));
        conn.free();
        if was_paused {
            ctx.counters.paused -= 1;
        }
        self.open -= 1;
        self.admission().release(reason, &mut ctx.counters);
        self.slot_freed(ctx);
    }

    fn begin_close(&mut self, slot: u32, reason: CloseReason) {
        let conn = &mut self.conns[slot as usize];
        if conn.phase != Phase::Open {
            return;
        }
        conn.phase = Phase::Closing;
        conn.close_reason = Some(reason);
    }

    /// Moves a connection forward after any event: start the next send, arm, pause or
    /// cancel the receive, or close.
    fn progress(&mut self, ctx: &mut Ctx<'a>, slot: u32) {
        if self.conns[slot as usize].phase == Phase::Open {
            self.progress_open(ctx, slot);
        }
        if self.conns[slot as usize].phase == Phase::Closing {
            self.progress_closing(ctx, slot);
        }
    }

    fn progress_open(&mut self, ctx: &mut Ctx<'a>, slot: u32) {
        match self.conns[slot as usize].mode {
            Mode::Echo => self.send_next(ctx, slot),
            Mode::Source => self.send_source(ctx, slot),
            Mode::Discard => {}
        }
        let conn = &self.conns[slot as usize];
        let finished = conn.read_eof && conn.queue.len() == 0 && !conn.recv_armed && !conn.send_in_flight();
        if finished {
            self.begin_close(slot, CloseReason::Eof);
            return;
        }
        self.steer_recv(ctx, slot);
    }

    /// Echo: sends the front chunk of the queue, unless a send is in flight.
    fn send_next(&mut self, ctx: &mut Ctx<'a>, slot: u32) {
        let zc_threshold = self.config().zc_threshold;
        let conn = &mut self.conns[slot as usize];
        let generation = conn.generation;
        let Some(chunk) = conn.queue.start_send() else { return };
        let ptr = self.buffers.data(&chunk.buf, chunk.offset, chunk.len);
        let zc = conn.zc && zc_threshold.is_some_and(|t| chunk.len >= t);
        let kind = if zc { Kind::SendZc } else { Kind::Send };
        let token = Token { kind, slot, generation, bid: chunk.buf.id() }.encode();
        let fd = types::Fixed(slot);
        let entry = if zc {
            opcode::SendZc::new(fd, ptr, chunk.len)
                .flags(libc::MSG_NOSIGNAL)
                .zc_flags(ZC_REPORT_USAGE)
                .build()
        } else {
            opcode::Send::new(fd, ptr, chunk.len).flags(libc::MSG_NOSIGNAL).build()
        };
        push(ctx, entry.user_data(token));
    }

    /// Source: sends the next piece of the pattern, unless a send is in flight.
    fn send_source(&mut self, ctx: &mut Ctx<'a>, slot: u32) {
        let buf_size = self.config().buffer_size as usize;
        let conn = &mut self.conns[slot as usize];
        if conn.source_in_flight || conn.read_eof {
            return;
        }
        conn.source_in_flight = true;
        let data = policy::source_chunk(conn.source_offset, buf_size);
        let token = Token::new(Kind::SourceSend, slot, conn.generation).encode();
        let entry = opcode::Send::new(types::Fixed(slot), data.as_ptr(), data.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        push(ctx, entry.user_data(token));
    }

    /// Arms, pauses or cancels the receive as the queue bound says.
    fn steer_recv(&mut self, ctx: &mut Ctx<'a>, slot: u32) {
        let config = self.config();
        let (max, buf_size) = (config.max_conn_buffer, config.buffer_size);
        let limits = self.limits;
        let conn = &mut self.conns[slot as usize];
        let generation = conn.generation;
        let was_paused = conn.paused;
        let action = conn.recv_action(max, buf_size, limits);
        let now_paused = conn.paused;
        match action {
            RecvAction::Arm(limit) => {
                conn.recv_armed = true;
                let token = Token::new(Kind::Recv, slot, generation).encode();
                let group = self.buffers.group();
                push(ctx, ring::recv_multishot(types::Fixed(slot), group, limit).user_data(token));
            }
            RecvAction::Cancel => {
                conn.cancel_pending = true;
                let recv = Token::new(Kind::Recv, slot, generation).encode();
                let token = Token::new(Kind::Cancel, slot, generation).encode();
                push(ctx, opcode::AsyncCancel::new(recv).build().user_data(token));
            }
            RecvAction::None => {}
        }
        if now_paused && !was_paused {
            ctx.counters.pauses += 1;
            ctx.counters.paused += 1;
        } else if was_paused && !now_paused {
            ctx.counters.paused -= 1;
        }
    }

    fn progress_closing(&mut self, ctx: &mut Ctx<'a>, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let generation = conn.generation;
        let (buffers, counters) = (&mut self.buffers, &mut ctx.counters);
        let dropped = conn.queue.drain_unsent(|buf| buffers.release(buf, counters));
        ctx.counters.queued_bytes -= u64::from(dropped);
        let quiet = conn.is_quiet();
        if !quiet && !conn.cancel_pending {
            conn.cancel_pending = true;
            let token = Token::new(Kind::Cancel, slot, generation).encode();
            let all = types::CancelBuilder::fd(types::Fixed(slot)).all();
            push(ctx, opcode::AsyncCancel2::new(all).build().user_data(token));
        } else if quiet {
            conn.phase = Phase::CloseSubmitted;
            let token = Token::new(Kind::Close, slot, generation).encode();
            push(ctx, opcode::Close::new(types::Fixed(slot)).build().user_data(token));
        }
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
