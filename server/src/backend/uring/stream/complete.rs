//! What each completion of a stream connection means: a receive (data into the queue, or
//! dropped by discard and source; end of file; a pool run dry), a send (echo or SEND_ZC,
//! whole or short), a SEND_ZC notification, a send of the source pattern, a cancel, and
//! the close that ends the connection. Each counts what it must and then lets the
//! connection move forward (`drive.rs`).
//!
//! Invariant: a completion that names a slot whose generation has moved on, or a buffer
//! the ring did not hand out, changes no connection; any buffer it carries goes back.

use super::state::Streams;
use crate::backend::uring::conn::Phase;
use crate::backend::uring::ctx::Ctx;
use crate::backend::uring::token::Token;
use crate::policy::{self, CloseReason};
use crate::tstamp;
use io_uring::cqueue;
use io_uring::types::RecvMsgOut;

impl<'a> Streams<'a> {
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
        // A stamped connection's read is a recvmsg: header, control messages, then the
        // bytes; its end of stream is a read holding no bytes.
        let mut res = res;
        let mut at = 0;
        if let (true, true, Some(b)) = (conn.stamped, res > 0, &buf) {
            match RecvMsgOut::parse(self.buffers.bytes(b, res as u32), &self.recv_msghdr) {
                Ok(out) => {
                    let data = out.payload_data();
                    at = res as u32 - data.len() as u32;
                    res = data.len() as i32;
                    // The end of stream carries no stamp: only data is timed.
                    if let (Some(stamps), false) = (&mut ctx.stamps, data.is_empty()) {
                        stamps.received(tstamp::rx_stamp(out.control_data()), now, &mut ctx.counters);
                    }
                }
                // Cannot happen for a buffer the kernel filled for this header: the read
                // cannot be placed: the connection fails (counted as an error).
                Err(()) => res = -libc::EINVAL,
            }
        }
        match (res, buf) {
            (n, Some(buf)) if n > 0 => {
                let n = n as u32;
                policy::count_received(&mut ctx.counters, n as usize);
                conn.last_active = Some(now);
                if conn.phase == Phase::Open && policy::keeps_received(conn.mode) {
                    conn.queue.push_at(buf, at, n);
                    let queued = u64::from(conn.queue.bytes());
                    // The kernel's limit holds the bound exactly; a stamped connection's recvmsg
                    // takes none, and its bound is the cancel's (approximate).
                    debug_assert!(
                        !self.limits
                            || conn.stamped
                            || queued <= u64::from(self.shared.config.max_conn_buffer)
                    );
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
        let sampled = !zc && self.sample_sent(ctx, token, res > 0);
        if sampled && res == -libc::EAGAIN {
            // The sampled send found no room (it does not wait): send it again plainly.
            if let Some(conn) = self.conn_mut(token).filter(|c| c.queue.in_flight()) {
                conn.queue.on_send_failed();
                self.progress(ctx, token.slot);
            }
            return;
        }
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
}
