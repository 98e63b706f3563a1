//! Stream connections (TCP and Unix): accept, receive, echo/discard/source, close.
//!
//! A slot of the connection table is freed only after its close completes, and a close
//! is submitted only when no other operation of that connection is in flight, so no
//! completion can land on a reused slot (tokens carry the slot's generation as well).

use super::conn::{Conn, Phase, RecvAction};
use super::token::{Kind, Token};
use super::worker::{AcceptState, Worker};
use crate::backend::contract::{Family, Transport, WorkerSetup};
use crate::config::Mode;
use crate::policy::{self, Admission, CloseReason};
use crate::ring;
use io_uring::{cqueue, opcode, types};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Multishot accept only while more direct-descriptor slots are free than a full listen
/// backlog: one multishot accept can take the whole backlog in one go, and a connection
/// accepted into a full table is closed by the kernel (reset). Below that, accepts are
/// single-shot, one per free slot, and connections wait in the backlog instead.
const MULTISHOT_ACCEPT_MIN_FREE: u32 = 4096 + 64;

/// IORING_SEND_ZC_REPORT_USAGE: the notification says whether the kernel copied after all.
const ZC_REPORT_USAGE: u16 = 8;

impl<'a> Worker<'a> {
    /// `--max-conns` over the process (borrows the set-up, not the worker).
    fn admission(&self) -> Admission<'a> {
        let setup: &'a WorkerSetup = self.setup;
        setup.shared.admission()
    }

    /// Arms the listener's accept: multishot while the descriptor table has plenty of
    /// room, single-shot when it is nearly full, not at all when it is full (a freed
    /// slot re-arms it).
    pub(super) fn arm_accept(&mut self, listener: usize) {
        debug_assert_eq!(self.setup.listeners[listener].transport, Transport::Stream);
        if self.accepts[listener].armed || self.slots_free == 0 || self.draining.is_some() {
            return;
        }
        let multishot = self.slots_free > MULTISHOT_ACCEPT_MIN_FREE;
        self.accepts[listener] = AcceptState { armed: true, multishot, cancelling: false };
        let fd = types::Fd(self.setup.listeners[listener].fd.as_raw_fd());
        let token = Token::new(Kind::Accept, listener as u32, 0).encode();
        let entry = if multishot {
            opcode::AcceptMulti::new(fd).allocate_file_index(true).build()
        } else {
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .file_index(Some(types::DestinationSlot::auto_target()))
                .build()
        };
        self.push(entry.user_data(token));
    }

    /// A slot came free: re-arm the accepts that stopped for want of one.
    fn slot_freed(&mut self) {
        self.slots_free += 1;
        for listener in 0..self.accepts.len() {
            if self.setup.listeners[listener].transport == Transport::Stream
                && !self.accepts[listener].armed
                && !self.backoff.contains(&listener)
            {
                self.arm_accept(listener);
            }
        }
    }

    /// The connection a token names, if it is still the same connection.
    fn conn_mut(&mut self, token: Token) -> Option<&mut Conn> {
        self.conns
            .get_mut(token.slot as usize)
            .filter(|c| c.generation == token.generation && c.phase != Phase::Free)
    }

    pub(super) fn on_accept(&mut self, listener: usize, res: i32, more: bool) {
        if !more {
            self.accepts[listener].armed = false;
            self.accepts[listener].cancelling = false;
        }
        if res >= 0 {
            self.slots_free = self.slots_free.saturating_sub(1);
            let state = self.accepts[listener];
            if more && state.multishot && !state.cancelling && self.slots_free <= MULTISHOT_ACCEPT_MIN_FREE {
                // Nearly full: stop the multishot accept; it is re-armed single-shot.
                self.accepts[listener].cancelling = true;
                let target = Token::new(Kind::Accept, listener as u32, 0).encode();
                let token = Token::new(Kind::Cancel, u32::MAX, 0).encode();
                self.push(opcode::AsyncCancel::new(target).build().user_data(token));
            }
            self.admit(listener, res as u32);
        } else if res != -libc::ECANCELED {
            self.counters.err_accept += 1;
        }
        if !more && self.draining.is_none() {
            if res >= 0 || res == -libc::ECANCELED {
                self.arm_accept(listener);
            } else if !self.backoff.contains(&listener) {
                self.backoff.push(listener);
            }
        }
    }

    /// A connection was accepted into direct-descriptor `slot`: serve it, or close it at
    /// once (past `--max-conns`, or draining).
    fn admit(&mut self, listener: usize, slot: u32) {
        let draining = self.draining.is_some();
        let admitted = self.admission().admit(draining, &mut self.counters);
        let mode = self.setup.listeners[listener].mode;
        let zc = self.send_zc && self.setup.listeners[listener].family != Family::Unix;
        let now = self.now;
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            // Cannot happen (the table is ours); close the descriptor all the same.
            self.counters.err_other += 1;
            if admitted {
                self.admission().release(CloseReason::Error, &mut self.counters);
            }
            self.slots_free += 1;
            let token = Token::new(Kind::Cancel, u32::MAX, 0).encode();
            self.push(opcode::Close::new(types::Fixed(slot)).build().user_data(token));
            return;
        };
        if admitted {
            conn.open(mode, zc, now);
            self.open += 1;
            self.progress(slot);
        } else {
            conn.phase = Phase::Refused;
            let token = Token::new(Kind::CloseRefused, slot, conn.generation).encode();
            self.push(opcode::Close::new(types::Fixed(slot)).build().user_data(token));
        }
    }

    pub(super) fn on_refused_closed(&mut self, token: Token) {
        if let Some(conn) = self.conn_mut(token) {
            conn.free();
            self.slot_freed();
        }
    }

    pub(super) fn on_cancelled(&mut self, token: Token) {
        if let Some(conn) = self.conn_mut(token) {
            conn.cancel_pending = false;
            self.progress(token.slot);
        }
    }

    pub(super) fn on_recv(&mut self, token: Token, res: i32, flags: u32, more: bool) {
        let buf = match cqueue::buffer_select(flags) {
            Some(bid) => match self.buffers.take(bid, &mut self.counters) {
                Some(buf) => Some(buf),
                None => {
                    // Not a buffer we can trust: ignore the data, keep the receive's state.
                    if !more {
                        if let Some(conn) = self.conn_mut(token) {
                            conn.recv_armed = false;
                        }
                        self.progress(token.slot);
                    }
                    return;
                }
            },
            None => None,
        };
        let now = self.now;
        let Some(conn) = self.conns.get_mut(token.slot as usize).filter(|c| c.generation == token.generation)
        else {
            if let Some(buf) = buf {
                self.buffers.release(buf, &mut self.counters);
            }
            return;
        };
        if !more {
            conn.recv_armed = false;
        }
        match (res, buf) {
            (n, Some(buf)) if n > 0 => {
                let n = n as u32;
                policy::count_received(&mut self.counters, n as usize);
                conn.last_active = Some(now);
                if conn.phase == Phase::Open && policy::keeps_received(conn.mode) {
                    conn.queue.push(buf, n);
                    let queued = u64::from(conn.queue.bytes());
                    debug_assert!(
                        !self.limits || queued <= u64::from(self.setup.shared.config.max_conn_buffer)
                    );
                    let c = &mut self.counters;
                    c.queued_bytes += u64::from(n);
                    c.conn_queue_high_water = c.conn_queue_high_water.max(queued);
                } else {
                    // Discard and source drop what they receive; a closing connection
                    // has no use for it either.
                    self.buffers.release(buf, &mut self.counters);
                }
            }
            (n, buf) if n <= 0 => {
                if n == 0 {
                    conn.read_eof = true;
                } else if n == -libc::ENOBUFS {
                    conn.starved = true;
                }
                if let Some(buf) = buf {
                    self.buffers.release(buf, &mut self.counters);
                }
                match -n {
                    0 | libc::ECANCELED => {}
                    libc::ENOBUFS => {
                        self.starved.push(token.slot);
                        self.counters.enobufs += 1;
                    }
                    errno => self.on_socket_error(token.slot, errno),
                }
            }
            // Data without a buffer: the kernel always names one for a provided-buffer
            // receive, so this cannot happen; nothing to release.
            _ => {}
        }
        self.progress(token.slot);
    }

    fn on_socket_error(&mut self, slot: u32, errno: i32) {
        policy::count_errno(&mut self.counters, errno);
        self.begin_close(slot, CloseReason::Error);
    }

    pub(super) fn on_send(&mut self, token: Token, res: i32, zc: bool, more: bool) {
        if zc && more {
            // A notification will follow; the buffer is the kernel's until then.
            self.buffers.zc_sent(token.bid, &mut self.counters);
        }
        let now = self.now;
        let Some(conn) = self
            .conns
            .get_mut(token.slot as usize)
            .filter(|c| c.generation == token.generation && c.queue.in_flight())
        else {
            self.counters.err_other += 1;
            return;
        };
        if res >= 0 {
            let asked = conn.queue.front_len();
            conn.last_active = Some(now);
            let done = conn.queue.on_sent(res as u32);
            policy::count_sent(&mut self.counters, res as usize);
            self.counters.queued_bytes -= res as u64;
            self.counters.zc_sends += u64::from(zc);
            match done {
                Some(buf) => self.buffers.release(buf, &mut self.counters),
                None if (res as u32) < asked => self.counters.short_sends += 1,
                None => {}
            }
        } else {
            conn.queue.on_send_failed();
            if -res != libc::ECANCELED {
                self.on_socket_error(token.slot, -res);
            }
        }
        self.progress(token.slot);
    }

    pub(super) fn on_source_sent(&mut self, token: Token, res: i32) {
        let now = self.now;
        let Some(conn) = self.conn_mut(token).filter(|c| c.source_in_flight) else {
            self.counters.err_other += 1;
            return;
        };
        conn.source_in_flight = false;
        if res >= 0 {
            conn.source_offset += res as u64;
            conn.last_active = Some(now);
            policy::count_sent(&mut self.counters, res as usize);
        } else if -res != libc::ECANCELED {
            self.on_socket_error(token.slot, -res);
        }
        self.progress(token.slot);
    }

    pub(super) fn on_close(&mut self, token: Token) {
        let Some(conn) = self.conn_mut(token) else { return };
        let (was_paused, reason) = (conn.paused, conn.close_reason.unwrap_or(CloseReason::Error));
        conn.free();
        if was_paused {
            self.counters.paused -= 1;
        }
        self.open -= 1;
        self.admission().release(reason, &mut self.counters);
        self.slot_freed();
    }

    pub(super) fn begin_close(&mut self, slot: u32, reason: CloseReason) {
        let conn = &mut self.conns[slot as usize];
        if conn.phase != Phase::Open {
            return;
        }
        conn.phase = Phase::Closing;
        conn.close_reason = Some(reason);
    }

    /// Moves a connection forward after any event: start the next send, arm, pause or
    /// cancel the receive, or close.
    pub(super) fn progress(&mut self, slot: u32) {
        if self.conns[slot as usize].phase == Phase::Open {
            self.progress_open(slot);
        }
        if self.conns[slot as usize].phase == Phase::Closing {
            self.progress_closing(slot);
        }
    }

    fn progress_open(&mut self, slot: u32) {
        match self.conns[slot as usize].mode {
            Mode::Echo => self.send_next(slot),
            Mode::Source => self.send_source(slot),
            Mode::Discard => {}
        }
        let conn = &self.conns[slot as usize];
        let finished = conn.read_eof && conn.queue.len() == 0 && !conn.recv_armed && !conn.send_in_flight();
        if finished {
            self.begin_close(slot, CloseReason::Eof);
            return;
        }
        self.steer_recv(slot);
    }

    /// Echo: sends the front chunk of the queue, unless a send is in flight.
    fn send_next(&mut self, slot: u32) {
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
        self.push(entry.user_data(token));
    }

    /// Source: sends the next piece of the pattern, unless a send is in flight.
    fn send_source(&mut self, slot: u32) {
        let buf_size = self.config().buffer_size as usize;
        let conn = &mut self.conns[slot as usize];
        if conn.source_in_flight || conn.read_eof {
            return;
        }
        conn.source_in_flight = true;
        let data = policy::source_chunk(conn.source_offset, buf_size);
        let token = Token::new(Kind::SourceSend, slot, conn.generation).encode();
        self.push(
            opcode::Send::new(types::Fixed(slot), data.as_ptr(), data.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(token),
        );
    }

    /// Arms, pauses or cancels the receive as the queue bound says.
    fn steer_recv(&mut self, slot: u32) {
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
                self.push(ring::recv_multishot(types::Fixed(slot), group, limit).user_data(token));
            }
            RecvAction::Cancel => {
                conn.cancel_pending = true;
                let recv = Token::new(Kind::Recv, slot, generation).encode();
                let token = Token::new(Kind::Cancel, slot, generation).encode();
                self.push(opcode::AsyncCancel::new(recv).build().user_data(token));
            }
            RecvAction::None => {}
        }
        if now_paused && !was_paused {
            self.counters.pauses += 1;
            self.counters.paused += 1;
        } else if was_paused && !now_paused {
            self.counters.paused -= 1;
        }
    }

    fn progress_closing(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let generation = conn.generation;
        let (buffers, counters) = (&mut self.buffers, &mut self.counters);
        let dropped = conn.queue.drain_unsent(|buf| buffers.release(buf, counters));
        self.counters.queued_bytes -= u64::from(dropped);
        let conn = &mut self.conns[slot as usize];
        let quiet = conn.is_quiet();
        if !quiet && !conn.cancel_pending {
            conn.cancel_pending = true;
            let token = Token::new(Kind::Cancel, slot, generation).encode();
            let all = types::CancelBuilder::fd(types::Fixed(slot)).all();
            self.push(opcode::AsyncCancel2::new(all).build().user_data(token));
        } else if quiet {
            conn.phase = Phase::CloseSubmitted;
            let token = Token::new(Kind::Close, slot, generation).encode();
            self.push(opcode::Close::new(types::Fixed(slot)).build().user_data(token));
        }
    }

    pub(super) fn close_idle(&mut self, idle: Duration) {
        let Some(cutoff) = self.now.checked_sub(idle) else { return };
        for slot in 0..self.conns.len() {
            let c = &self.conns[slot];
            if c.phase == Phase::Open && c.last_active.is_some_and(|t| t < cutoff) {
                self.begin_close(slot as u32, CloseReason::Idle);
                self.progress(slot as u32);
            }
        }
    }

    /// Pool pressure: receives are starving for buffers while the pool is empty. Each
    /// connection is bounded, but together stuck ones (holding queued bytes their peer
    /// does not read, nothing moved for `stuck_for`) can hold every buffer; close the one
    /// holding most, so the others can be served. Counted as `evicted`.
    pub(super) fn evict_under_pressure(&mut self, stuck_for: Duration) {
        if self.starved.is_empty() || self.buffers.available() > 0 {
            return;
        }
        let Some(cutoff) = self.now.checked_sub(stuck_for) else { return };
        let victim = (0..self.conns.len())
            .filter(|&i| {
                let c = &self.conns[i];
                c.phase == Phase::Open && c.queue.bytes() > 0 && c.last_active.is_some_and(|t| t < cutoff)
            })
            .max_by_key(|&i| self.conns[i].queue.bytes());
        if let Some(slot) = victim {
            self.begin_close(slot as u32, CloseReason::Evicted);
            self.progress(slot as u32);
        }
    }

    pub(super) fn force_close_all(&mut self) {
        for slot in 0..self.conns.len() as u32 {
            if self.conns[slot as usize].phase == Phase::Open {
                self.begin_close(slot, CloseReason::Drain);
                self.progress(slot);
            }
        }
    }
}
