//! Stream connections (TCP and Unix): accept, receive, echo/discard/source, close.
//!
//! A slot of the connection table is freed only after its close completes, and a close
//! is submitted only when no other operation of that connection is in flight, so no
//! completion can land on a reused slot (tokens carry the slot's generation as well).

use super::Worker;
use crate::config::{Mode, SOURCE_CHUNK, SOURCE_PATTERN, source_byte};
use crate::ring;
use crate::server::SockKind;
use crate::uring::conn::{CloseReason, Conn, Phase, RecvAction};
use crate::uring::token::{Kind, Token};
use io_uring::{cqueue, opcode, types};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Worker<'_> {
    /// Arms the listener's accept: multishot while the descriptor table has plenty of
    /// room, single-shot when it is nearly full, not at all when it is full (a freed
    /// slot re-arms it).
    pub(super) fn arm_accept(&mut self, listener: usize) {
        debug_assert_eq!(self.setup.listeners[listener].kind, SockKind::Stream);
        if self.accepts[listener].armed || self.slots_free == 0 || self.draining.is_some() {
            return;
        }
        let multishot = self.slots_free > super::MULTISHOT_ACCEPT_MIN_FREE;
        self.accepts[listener] = super::AcceptState { armed: true, multishot, cancelling: false };
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
            if self.setup.listeners[listener].kind == SockKind::Stream
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
            if more
                && state.multishot
                && !state.cancelling
                && self.slots_free <= super::MULTISHOT_ACCEPT_MIN_FREE
            {
                // Nearly full: stop the multishot accept; it is re-armed single-shot.
                self.accepts[listener].cancelling = true;
                let target = Token::new(Kind::Accept, listener as u32, 0).encode();
                let token = Token::new(Kind::Cancel, u32::MAX, 0).encode();
                self.push(opcode::AsyncCancel::new(target).build().user_data(token));
            }
            let slot = res as u32;
            let max = self.config().max_conns;
            let mode = self.setup.listeners[listener].mode;
            let Some(conn) = self.conns.get_mut(slot as usize) else {
                // Cannot happen (the table is ours); close the descriptor all the same.
                self.counters.err_other += 1;
                self.slots_free += 1;
                let token = Token::new(Kind::Cancel, u32::MAX, 0).encode();
                self.push(opcode::Close::new(types::Fixed(slot)).build().user_data(token));
                return;
            };
            let draining = self.draining.is_some();
            let refuse = draining || self.setup.shared.open_conns.fetch_add(1, Ordering::Relaxed) >= max;
            if refuse {
                if !draining {
                    self.setup.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
                }
                conn.phase = Phase::Refused;
                let token = Token::new(Kind::CloseRefused, slot, conn.generation).encode();
                self.counters.refused += 1;
                self.push(opcode::Close::new(types::Fixed(slot)).build().user_data(token));
            } else {
                conn.open(mode, self.now);
                self.counters.accepted += 1;
                self.open += 1;
                self.progress(slot);
            }
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
        let bid = cqueue::buffer_select(flags);
        if let Some(bid) = bid {
            if !self.buf_ring.mark_taken(bid) {
                self.counters.err_other += 1;
                if !more {
                    if let Some(conn) = self.conn_mut(token) {
                        conn.recv_armed = false;
                    }
                    self.progress(token.slot);
                }
                return;
            }
        }
        let Some(conn) = self.conns.get_mut(token.slot as usize).filter(|c| c.generation == token.generation)
        else {
            if let Some(bid) = bid {
                self.release_buf(bid);
            }
            return;
        };
        if !more {
            conn.recv_armed = false;
        }
        match (res, bid) {
            (n, Some(bid)) if n > 0 => {
                let n = n as u32;
                self.counters.bytes_in += u64::from(n);
                self.counters.recv_ops += 1;
                if conn.phase == Phase::Open && conn.mode == Mode::Echo {
                    conn.on_data(bid, n);
                    conn.last_active = Some(self.now);
                    let queued = u64::from(conn.queued_bytes());
                    debug_assert!(
                        !self.limits || queued <= u64::from(self.setup.shared.config.max_conn_buffer)
                    );
                    let c = &mut self.counters;
                    c.queued_bytes += u64::from(n);
                    c.conn_queue_high_water = c.conn_queue_high_water.max(queued);
                } else {
                    // Discard and source drop what they receive; a closing connection
                    // has no use for it either.
                    conn.last_active = Some(self.now);
                    self.release_buf(bid);
                }
            }
            (0, bid) => {
                conn.read_eof = true;
                if let Some(bid) = bid {
                    self.release_buf(bid);
                }
            }
            (n, bid) if n < 0 => {
                let errno = -n;
                if errno == libc::ENOBUFS {
                    conn.starved = true;
                }
                if let Some(bid) = bid {
                    self.release_buf(bid);
                }
                match errno {
                    libc::ENOBUFS => {
                        self.starved.push(token.slot);
                        self.counters.enobufs += 1;
                    }
                    libc::ECANCELED => {}
                    errno => self.on_socket_error(token.slot, errno),
                }
            }
            (_, Some(bid)) => self.release_buf(bid),
            _ => {}
        }
        self.progress(token.slot);
    }

    fn on_socket_error(&mut self, slot: u32, errno: i32) {
        match errno {
            libc::ECONNRESET => self.counters.err_reset += 1,
            libc::EPIPE => self.counters.err_pipe += 1,
            _ => self.counters.err_other += 1,
        }
        self.begin_close(slot, CloseReason::Error);
    }

    pub(super) fn on_send(&mut self, token: Token, res: i32, zc: bool, more: bool) {
        if zc && more {
            // A notification will follow; the buffer is the kernel's until then.
            self.zc_notifs[usize::from(token.bid)] += 1;
        }
        let Some(conn) = self
            .conns
            .get_mut(token.slot as usize)
            .filter(|c| c.generation == token.generation && c.send_in_flight)
        else {
            self.counters.err_other += 1;
            return;
        };
        if res >= 0 {
            let asked = conn.front_len();
            conn.last_active = Some(self.now);
            let done = conn.on_sent(res as u32);
            let c = &mut self.counters;
            c.bytes_out += res as u64;
            c.queued_bytes -= res as u64;
            c.sends += 1;
            c.zc_sends += u64::from(zc);
            match done {
                Some(bid) => self.release_buf(bid),
                None if (res as u32) < asked => self.counters.short_sends += 1,
                None => {}
            }
        } else {
            conn.on_send_failed();
            if -res != libc::ECANCELED {
                self.on_socket_error(token.slot, -res);
            }
        }
        self.progress(token.slot);
    }

    pub(super) fn on_source_sent(&mut self, token: Token, res: i32) {
        let now = self.now;
        let Some(conn) = self.conn_mut(token).filter(|c| c.send_in_flight) else {
            self.counters.err_other += 1;
            return;
        };
        conn.send_in_flight = false;
        if res >= 0 {
            conn.source_offset += res as u64;
            conn.last_active = Some(now);
            self.counters.bytes_out += res as u64;
            self.counters.sends += 1;
        } else if -res != libc::ECANCELED {
            self.on_socket_error(token.slot, -res);
        }
        self.progress(token.slot);
    }

    pub(super) fn on_close(&mut self, token: Token) {
        let Some(conn) = self.conn_mut(token) else { return };
        let was_paused = conn.paused;
        conn.free();
        if was_paused {
            self.counters.paused -= 1;
        }
        self.open -= 1;
        self.counters.closed += 1;
        self.setup.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
        self.slot_freed();
    }

    pub(super) fn begin_close(&mut self, slot: u32, reason: CloseReason) {
        let conn = &mut self.conns[slot as usize];
        if conn.phase != Phase::Open {
            return;
        }
        conn.phase = Phase::Closing;
        match reason {
            CloseReason::Idle => self.counters.idle_closed += 1,
            CloseReason::Evicted => self.counters.evicted += 1,
            CloseReason::Drain => self.counters.drain_closed += 1,
            CloseReason::Eof | CloseReason::Error => {}
        }
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
        let config = &self.setup.shared.config;
        let (max, buf_size, zc_threshold) = (config.max_conn_buffer, config.buffer_size, config.zc_threshold);
        let conn = &mut self.conns[slot as usize];
        let generation = conn.generation;
        match conn.mode {
            Mode::Echo => {
                if let Some(chunk) = conn.start_send() {
                    let ptr = self.buf_ring.data(chunk.bid, chunk.offset, chunk.len);
                    let zc = zc_threshold.is_some_and(|t| chunk.len >= t);
                    let kind = if zc { Kind::SendZc } else { Kind::Send };
                    let token = Token { kind, slot, generation, bid: chunk.bid }.encode();
                    let fd = types::Fixed(slot);
                    let entry = if zc {
                        // IORING_SEND_ZC_REPORT_USAGE: the notification says whether the
                        // kernel copied after all.
                        const REPORT_USAGE: u16 = 8;
                        opcode::SendZc::new(fd, ptr, chunk.len)
                            .flags(libc::MSG_NOSIGNAL)
                            .zc_flags(REPORT_USAGE)
                            .build()
                    } else {
                        opcode::Send::new(fd, ptr, chunk.len).flags(libc::MSG_NOSIGNAL).build()
                    };
                    self.push(entry.user_data(token));
                }
            }
            Mode::Source if !conn.send_in_flight && !conn.read_eof => {
                conn.send_in_flight = true;
                let phase = (conn.source_offset % 251) as usize;
                let len = (buf_size as usize).min(SOURCE_CHUNK);
                debug_assert_eq!(SOURCE_PATTERN[phase], source_byte(conn.source_offset));
                let ptr = SOURCE_PATTERN[phase..phase + len].as_ptr();
                let token = Token::new(Kind::SourceSend, slot, generation).encode();
                self.push(
                    opcode::Send::new(types::Fixed(slot), ptr, len as u32)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                        .user_data(token),
                );
            }
            Mode::Source | Mode::Discard => {}
        }
        let conn = &mut self.conns[slot as usize];
        let finished = conn.read_eof && conn.queued_chunks() == 0 && !conn.recv_armed && !conn.send_in_flight;
        if finished {
            self.begin_close(slot, CloseReason::Eof);
            return;
        }
        let was_paused = conn.paused;
        let action = conn.recv_action(max, buf_size, self.limits);
        let now_paused = conn.paused;
        match action {
            RecvAction::Arm(limit) => {
                conn.recv_armed = true;
                let token = Token::new(Kind::Recv, slot, generation).encode();
                let group = self.buf_ring.group();
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
        let unsent = conn.take_unsent();
        let quiet = conn.is_quiet();
        let needs_cancel = !quiet && !conn.cancel_pending;
        if needs_cancel {
            conn.cancel_pending = true;
        }
        for chunk in unsent {
            self.counters.queued_bytes -= u64::from(chunk.len);
            self.release_buf(chunk.bid);
        }
        if needs_cancel {
            let token = Token::new(Kind::Cancel, slot, generation).encode();
            let all = types::CancelBuilder::fd(types::Fixed(slot)).all();
            self.push(opcode::AsyncCancel2::new(all).build().user_data(token));
        } else if quiet {
            self.conns[slot as usize].phase = Phase::CloseSubmitted;
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
        if self.starved.is_empty() || self.buf_ring.available() > 0 {
            return;
        }
        let Some(cutoff) = self.now.checked_sub(stuck_for) else { return };
        let victim = (0..self.conns.len())
            .filter(|&i| {
                let c = &self.conns[i];
                c.phase == Phase::Open && c.queued_bytes() > 0 && c.last_active.is_some_and(|t| t < cutoff)
            })
            .max_by_key(|&i| self.conns[i].queued_bytes());
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
