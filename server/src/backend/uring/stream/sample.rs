//! `--timestamps` on TCP: the sampled echo send. At most one per worker at a time (and
//! one every [`SAMPLE_GAP`](crate::backend::uring::stamps)): the send goes as a `sendmsg`
//! asking for the kernel's software send stamp, and once it completes (a loopback or
//! driver send stamp is taken before the send returns) one non-blocking read of the
//! connection's error queue takes the stamp back.
//!
//! Invariant: the [`SampleSlot`](super::state::SampleSlot) is boxed in [`Streams`] and lives as long as the worker, so
//! the headers the two operations point at stay put; the connection counts the
//! error-queue read as in flight ([`Conn::errq_in_flight`]), so it is not closed under it.
//!
//! [`Conn::errq_in_flight`]: crate::backend::uring::conn::Conn::errq_in_flight

use super::state::{ERR_CONTROL, Sample, Streams, push};
use crate::backend::uring::conn::Phase;
use crate::backend::uring::ctx::Ctx;
use crate::backend::uring::token::{Kind, Token};
use crate::tstamp;
use io_uring::{opcode, squeue, types};
use std::time::Instant;

/// Error-queue entries read for one sampled send at most (older stamps skipped).
const MAX_READS: u8 = 4;

impl<'a> Streams<'a> {
    /// The echo send of `len` bytes at `ptr` on connection `slot`, as a sampled
    /// `sendmsg` when the worker samples this one; `None` for a plain send.
    pub(super) fn sampled_send(
        &mut self,
        ctx: &mut Ctx<'a>,
        slot: u32,
        ptr: *const u8,
        len: u32,
    ) -> Option<squeue::Entry> {
        let conn = &self.conns[slot as usize];
        if !conn.stamped || self.sample != Sample::Idle {
            return None;
        }
        ctx.stamps.as_mut()?.sample(ctx.now)?;
        let s = &mut *self.sample_slot;
        s.iov = libc::iovec { iov_base: ptr as *mut libc::c_void, iov_len: len as usize };
        s.msghdr.msg_iov = &mut s.iov;
        s.msghdr.msg_iovlen = 1;
        s.msghdr.msg_control = s.control.as_bytes().as_ptr() as *mut libc::c_void;
        s.msghdr.msg_controllen = s.control.as_bytes().len() as _;
        self.sample = Sample::Sending { slot, generation: conn.generation, queued: ctx.now };
        // MSG_DONTWAIT: a sampled send never waits for room (which would hold the worker's
        // one sample); one that finds none is sent again plainly (`on_send`).
        let flags = (libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) as u32;
        Some(opcode::SendMsg::new(types::Fixed(slot), &s.msghdr).flags(flags).build())
    }

    /// A send of `slot` completed (`went`: it moved bytes): if it was the sampled one,
    /// reads its stamp back from the error queue; whether it was.
    pub(super) fn sample_sent(&mut self, ctx: &mut Ctx<'a>, token: Token, went: bool) -> bool {
        let Sample::Sending { slot, generation, queued } = self.sample else { return false };
        if (slot, generation) != (token.slot, token.generation) {
            return false;
        }
        self.sample = Sample::Idle;
        let live = self.conns.get(slot as usize).is_some_and(|c| c.generation == generation);
        if went && live {
            self.read_errqueue(ctx, slot, generation, queued, 1);
        }
        true
    }

    /// Reads one entry of connection `slot`'s error queue (the `reads`th for this sample).
    fn read_errqueue(&mut self, ctx: &mut Ctx<'a>, slot: u32, generation: u8, queued: Instant, reads: u8) {
        let s = &mut *self.sample_slot;
        s.err_control = [0; ERR_CONTROL / 8];
        s.err_msghdr.msg_control = s.err_control.as_mut_ptr().cast();
        s.err_msghdr.msg_controllen = ERR_CONTROL as _;
        self.conns[slot as usize].errq_in_flight = true;
        self.sample = Sample::Reading { slot, generation, queued, reads };
        let token = Token::new(Kind::ErrQueue, slot, generation).encode();
        // MSG_DONTWAIT: an empty error queue answers EAGAIN at once, never waits.
        let flags = (libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) as u32;
        push(
            ctx,
            opcode::RecvMsg::new(types::Fixed(slot), &mut s.err_msghdr).flags(flags).build().user_data(token),
        );
    }

    /// The error-queue read of the sampled send answered `res`. A stamp older than the
    /// send (an earlier sample's, stamped after its read) is skipped and the next entry
    /// read, up to [`MAX_READS`] in all; no stamp of this send is a missing one.
    pub fn on_errqueue(&mut self, ctx: &mut Ctx<'a>, token: Token, res: i32) {
        let Sample::Reading { slot, generation, queued, reads } = self.sample else {
            ctx.counters.err_other += 1;
            return;
        };
        if (slot, generation) != (token.slot, token.generation) {
            ctx.counters.err_other += 1;
            return;
        }
        self.sample = Sample::Idle;
        let Some(conn) = self.conns.get_mut(slot as usize).filter(|c| c.generation == generation) else {
            return;
        };
        conn.errq_in_flight = false;
        let open = conn.phase == Phase::Open;
        let control = &self.sample_slot.err_control;
        // SAFETY: reading our own buffer of u64s as bytes (the kernel's write is complete:
        // its completion is here).
        let bytes = unsafe { std::slice::from_raw_parts(control.as_ptr().cast::<u8>(), ERR_CONTROL) };
        let stamp = if res >= 0 { tstamp::tx_stamp(bytes).map(|(_, real)| real) } else { None };
        if let Some(stamps) = &mut ctx.stamps {
            match stamp {
                Some(real) if stamps.stale(queued, real) && reads < MAX_READS && open => {
                    self.read_errqueue(ctx, slot, generation, queued, reads + 1);
                    return;
                }
                Some(real) if stamps.stale(queued, real) => stamps.sent(queued, None, &mut ctx.counters),
                stamp => stamps.sent(queued, stamp, &mut ctx.counters),
            }
        }
        self.progress(ctx, slot);
    }
}
