//! Moving a stream connection forward after any event: start its next send (the front of
//! its queue for echo, the next piece of the pattern for source), arm, pause or cancel
//! its receive as the queue bound says, and, once it is closing, drop what it still
//! queues, cancel what it has in flight and close it when nothing is left.
//!
//! Invariants: one send per connection is in flight, so bytes leave in order; a close is
//! submitted only when nothing of the connection is in the kernel's hands
//! ([`Conn::is_quiet`](crate::backend::uring::conn::Conn::is_quiet)), so no completion
//! lands on a reused slot.

use super::state::{Streams, push};
use crate::backend::uring::conn::{Phase, RecvAction};
use crate::backend::uring::ctx::Ctx;
use crate::backend::uring::token::{Kind, Token};
use crate::config::Mode;
use crate::policy::{self, CloseReason};
use crate::ring;
use io_uring::{opcode, types};

/// IORING_SEND_ZC_REPORT_USAGE: the notification says whether the kernel copied after all.
const ZC_REPORT_USAGE: u16 = 8;

impl<'a> Streams<'a> {
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
    pub(super) fn progress(&mut self, ctx: &mut Ctx<'a>, slot: u32) {
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
        let len = chunk.len;
        let entry = if zc {
            opcode::SendZc::new(fd, ptr, len).flags(libc::MSG_NOSIGNAL).zc_flags(ZC_REPORT_USAGE).build()
        } else if let Some(sampled) = self.sampled_send(ctx, slot, ptr, len) {
            sampled
        } else {
            opcode::Send::new(fd, ptr, len).flags(libc::MSG_NOSIGNAL).build()
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
        let conn = &mut self.conns[slot as usize];
        // A stamped connection receives with recvmsg, which takes no total limit.
        let limits = self.limits && !conn.stamped;
        let generation = conn.generation;
        let was_paused = conn.paused;
        let action = conn.recv_action(max, buf_size, limits);
        let now_paused = conn.paused;
        match action {
            RecvAction::Arm(limit) => {
                conn.recv_armed = true;
                let token = Token::new(Kind::Recv, slot, generation).encode();
                let group = self.buffers.group();
                let entry = if conn.stamped {
                    opcode::RecvMsgMulti::new(types::Fixed(slot), &*self.recv_msghdr, group).build()
                } else {
                    ring::recv_multishot(types::Fixed(slot), group, limit)
                };
                push(ctx, entry.user_data(token));
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
}
