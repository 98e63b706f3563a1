//! The life of a received buffer, in one place (see `docs/ARCHITECTURE.md`, "The
//! buffer's life"):
//!
//! 1. **take**: a receive completion names a buffer id; [`Buffers::take`] turns it into a
//!    [`Buf`] (refusing an id already held, counted as `buf_errors`).
//! 2. **queue**: an echo connection queues it in its [`SendQueue`], in arrival order.
//! 3. **send**: only the front chunk is ever in flight ([`SendQueue::start_send`]); a
//!    short send leaves the rest at the front; a datagram reply lends its buffer to the
//!    kernel ([`Buffers::lend`]) until the send completes ([`Buffers::reclaim`]).
//! 4. **release**: a fully sent chunk, a dropped one (the connection is closing), or one
//!    that is not echoed at all (discard, source) goes to [`Buffers::release`].
//! 5. **zero-copy deferral**: a buffer whose SEND_ZC notifications are still due is parked
//!    until the last one arrives ([`Buffers::zc_sent`], [`Buffers::zc_notified`]).
//! 6. **give back** and **publish**: it returns to the ring, and the ring's tail is
//!    published once per loop turn ([`Buffers::publish`]).
//!
//! A `Buf` is moved from step to step and consumed by the give-back, so a buffer cannot be
//! returned twice; what the types cannot rule out (a kernel or bookkeeping error) is
//! counted in `buf_errors`, which the end-to-end tests assert is zero.

use crate::ring::{Buf, BufRing};
use crate::stats::Counters;
use std::collections::VecDeque;

/// A worker's provided buffers, and the ones it holds for the kernel.
pub(super) struct Buffers<'r> {
    ring: &'r mut BufRing,
    /// SEND_ZC notifications still to come, per buffer id.
    zc_pending: Vec<u16>,
    /// Fully sent buffers waiting for their SEND_ZC notifications, by id.
    deferred: Vec<Option<Buf>>,
    /// Buffers lent to a datagram reply in flight, by id.
    lent: Vec<Option<Buf>>,
    /// Buffers went back since the last [`Buffers::take_returned`].
    returned: bool,
}

impl<'r> Buffers<'r> {
    pub fn new(ring: &'r mut BufRing) -> Buffers<'r> {
        let n = usize::from(ring.count());
        Buffers {
            ring,
            zc_pending: vec![0; n],
            deferred: (0..n).map(|_| None).collect(),
            lent: (0..n).map(|_| None).collect(),
            returned: false,
        }
    }

    /// Step 1: the buffer a completion handed over, or `None` (counted) when the id is not
    /// one the kernel may hand out now; the completion's data must then be ignored.
    pub fn take(&mut self, bid: u16, c: &mut Counters) -> Option<Buf> {
        match self.ring.take(bid) {
            Ok(buf) => Some(buf),
            Err(_) => {
                c.buf_errors += 1;
                None
            }
        }
    }

    /// Step 4: user space is done with `buf`; it goes back now, or after its outstanding
    /// SEND_ZC notifications.
    pub fn release(&mut self, buf: Buf, c: &mut Counters) {
        let i = usize::from(buf.id());
        if self.zc_pending.get(i).is_some_and(|n| *n > 0) {
            if let Some(old) = self.deferred[i].replace(buf) {
                // Two buffers with one id: the bookkeeping is broken; keep neither in use.
                c.buf_errors += 1;
                old.forget();
            }
        } else {
            self.give_back(buf, c);
        }
    }

    /// Step 5: a SEND_ZC of this buffer completed and says a notification will follow.
    pub fn zc_sent(&mut self, bid: u16, c: &mut Counters) {
        match self.zc_pending.get_mut(usize::from(bid)) {
            Some(n) => *n += 1,
            None => c.buf_errors += 1,
        }
    }

    /// Step 5: a SEND_ZC notification for this buffer arrived; the last one returns a
    /// buffer that was waiting for it.
    pub fn zc_notified(&mut self, bid: u16, c: &mut Counters) {
        let i = usize::from(bid);
        let Some(n) = self.zc_pending.get_mut(i) else {
            c.buf_errors += 1;
            return;
        };
        if *n == 0 {
            c.buf_errors += 1;
            return;
        }
        *n -= 1;
        if *n == 0 {
            if let Some(buf) = self.deferred[i].take() {
                self.give_back(buf, c);
            }
        }
    }

    /// Step 3 (datagrams): the kernel sends from `buf` until the reply completes. Returns
    /// the id to name in the send's token.
    pub fn lend(&mut self, buf: Buf, c: &mut Counters) -> u16 {
        let bid = buf.id();
        if let Some(old) = self.lent[usize::from(bid)].replace(buf) {
            c.buf_errors += 1;
            old.forget();
        }
        bid
    }

    /// Step 3 (datagrams): the reply from buffer `bid` completed; user space has it back.
    pub fn reclaim(&mut self, bid: u16, c: &mut Counters) -> Option<Buf> {
        let buf = self.lent.get_mut(usize::from(bid)).and_then(Option::take);
        if buf.is_none() {
            c.buf_errors += 1;
        }
        buf
    }

    /// Step 6.
    fn give_back(&mut self, buf: Buf, c: &mut Counters) {
        match self.ring.give_back(buf) {
            Ok(()) => self.returned = true,
            Err(_) => c.buf_errors += 1,
        }
    }

    /// Step 6: makes the buffers given back visible to the kernel.
    pub fn publish(&mut self) {
        self.ring.publish();
    }

    /// Whether buffers went back since the last call.
    pub fn take_returned(&mut self) -> bool {
        std::mem::take(&mut self.returned)
    }

    /// Where byte `offset` of `buf` is, for a send of `len` bytes.
    pub fn data(&self, buf: &Buf, offset: u32, len: u32) -> *const u8 {
        self.ring.data(buf, offset, len)
    }

    /// The first `len` bytes of `buf`.
    pub fn bytes(&self, buf: &Buf, len: u32) -> &[u8] {
        self.ring.bytes(buf, len)
    }

    /// The buffer group receives name.
    pub fn group(&self) -> u16 {
        self.ring.group()
    }

    /// Buffers the kernel can pick from now.
    pub fn available(&self) -> u32 {
        self.ring.available()
    }

    /// Copies the pool's levels into the published counters.
    pub fn publish_levels(&self, c: &mut Counters) {
        c.buf_ring_available = u64::from(self.ring.available());
        c.buf_ring_low_water = u64::from(self.ring.low_water());
        c.buf_ring_size = u64::from(self.ring.count());
    }

    /// Forgets the handles still lent or deferred (the worker is leaving); returns how
    /// many there were.
    pub fn abandon(&mut self) -> u64 {
        let mut n = 0;
        for slot in self.deferred.iter_mut().chain(self.lent.iter_mut()) {
            if let Some(buf) = slot.take() {
                buf.forget();
                n += 1;
            }
        }
        n
    }
}

/// A received buffer, or what is left of it to send.
#[derive(Debug)]
pub(super) struct Chunk {
    pub buf: Buf,
    /// Bytes of the buffer already sent.
    pub offset: u32,
    /// Bytes still to send.
    pub len: u32,
}

/// One connection's received buffers waiting to be echoed, in arrival order.
///
/// Invariants (property-tested in `conn.rs`): bytes leave in the order they arrived (only
/// the front chunk is ever sent); at most one send is in flight; every buffer pushed comes
/// out exactly once, by [`SendQueue::on_sent`] or [`SendQueue::drain_unsent`].
#[derive(Debug, Default)]
pub(super) struct SendQueue {
    chunks: VecDeque<Chunk>,
    bytes: u32,
    in_flight: bool,
}

impl SendQueue {
    /// Step 2: queues `len` received bytes in `buf`.
    #[cfg(test)]
    pub fn push(&mut self, buf: Buf, len: u32) {
        self.push_at(buf, 0, len);
    }

    /// Step 2: queues `len` received bytes that start `offset` bytes into `buf` (a
    /// recvmsg's data, after its header and control messages).
    pub fn push_at(&mut self, buf: Buf, offset: u32, len: u32) {
        self.chunks.push_back(Chunk { buf, offset, len });
        self.bytes += len;
    }

    /// Bytes received and not yet fully sent.
    pub fn bytes(&self) -> u32 {
        self.bytes
    }

    /// Buffers queued (including the one being sent).
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// A send of the front chunk is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Step 3: the chunk to send next, marking a send in flight; `None` when one is in
    /// flight already or nothing is queued.
    pub fn start_send(&mut self) -> Option<&Chunk> {
        if self.in_flight {
            return None;
        }
        let front = self.chunks.front()?;
        self.in_flight = true;
        Some(front)
    }

    /// Bytes the front chunk still has to send (what a send in flight asked for).
    pub fn front_len(&self) -> u32 {
        self.chunks.front().map_or(0, |c| c.len)
    }

    /// Step 3: a send of `n` bytes of the front chunk completed. Returns its buffer when
    /// the chunk is now fully sent (step 4 follows), `None` after a short send.
    pub fn on_sent(&mut self, n: u32) -> Option<Buf> {
        debug_assert!(self.in_flight);
        self.in_flight = false;
        let front = self.chunks.front_mut()?;
        let n = n.min(front.len);
        front.offset += n;
        front.len -= n;
        self.bytes -= n;
        if front.len == 0 { self.chunks.pop_front().map(|c| c.buf) } else { None }
    }

    /// A send failed: the front chunk stays, for [`SendQueue::drain_unsent`] to release.
    pub fn on_send_failed(&mut self) {
        self.in_flight = false;
    }

    /// Removes every chunk not being sent right now (the connection is closing: their
    /// bytes will never be sent) and hands each buffer to `release`; returns the bytes
    /// dropped.
    pub fn drain_unsent(&mut self, mut release: impl FnMut(Buf)) -> u32 {
        let keep = usize::from(self.in_flight).min(self.chunks.len());
        let mut dropped = 0;
        for chunk in self.chunks.drain(keep..) {
            dropped += chunk.len;
            release(chunk.buf);
        }
        self.bytes -= dropped;
        dropped
    }

    /// Forgets every buffer, the one in flight included: the worker is leaving while the
    /// kernel may still use them.
    pub fn forget_all(&mut self) {
        for chunk in self.chunks.drain(..) {
            chunk.buf.forget();
        }
        self.bytes = 0;
        self.in_flight = false;
    }
}
