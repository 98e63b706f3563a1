//! One connection's bookkeeping, free of any I/O: the FIFO of received buffers waiting to
//! be echoed, the send in flight, whether the receive is armed, and when to pause it.
//!
//! Invariants kept here (and checked by property tests):
//! - bytes leave in the order they arrived: only the front chunk is ever sent;
//! - at most one send is in flight;
//! - with a receive limit, `queued_bytes` never exceeds `max_conn_buffer`;
//! - every buffer handed in comes out exactly once, by `on_sent` or `take_unsent`.

use crate::config::Mode;
use std::collections::VecDeque;
use std::time::Instant;

/// A received buffer, or what is left of it to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Buffer id in the worker's buffer ring.
    pub bid: u16,
    /// Bytes of the buffer already sent.
    pub offset: u32,
    /// Bytes still to send.
    pub len: u32,
}

/// The state of a slot in the connection table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing here.
    #[default]
    Free,
    /// Echoing.
    Open,
    /// Accepted past `--max-conns`; a close is in flight.
    Refused,
    /// Going away: waiting for its operations to end, then closing.
    Closing,
    /// The close is in flight.
    CloseSubmitted,
}

/// Why a connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side and everything was echoed.
    Eof,
    /// A socket error (reset, broken pipe, ...).
    Error,
    /// `--idle-timeout`.
    Idle,
    /// Shutdown's drain timeout ran out.
    Drain,
    /// The buffer pool ran dry while this connection sat on a full queue it could not send.
    Evicted,
}

/// One connection.
#[derive(Debug, Default)]
pub struct Conn {
    /// Slot generation, part of every token for this connection.
    pub generation: u8,
    /// Where the connection is in its life.
    pub phase: Phase,
    /// What the connection does (its listener's mode).
    pub mode: Mode,
    /// `source` mode: bytes of the pattern sent so far.
    pub source_offset: u64,
    queue: VecDeque<Chunk>,
    queued_bytes: u32,
    /// A multishot receive is armed.
    pub recv_armed: bool,
    /// A cancel of this connection's operations has been submitted and not answered.
    pub cancel_pending: bool,
    /// A send is in flight (the front chunk).
    pub send_in_flight: bool,
    /// The peer closed its writing side.
    pub read_eof: bool,
    /// The receive ended for want of buffers and waits for some to come back.
    pub starved: bool,
    /// The receive is held back by the queue bound.
    pub paused: bool,
    /// Last time bytes moved either way.
    pub last_active: Option<Instant>,
}

/// What the worker should do about the receive after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvAction {
    /// Leave it as it is.
    None,
    /// Arm a multishot receive, with this total limit when limits are in use.
    Arm(Option<u32>),
    /// Cancel the armed receive (the queue is full and the kernel cannot limit it).
    Cancel,
}

impl Conn {
    /// Makes a free slot an open connection.
    pub fn open(&mut self, mode: Mode, now: Instant) {
        debug_assert_eq!(self.phase, Phase::Free);
        *self = Conn {
            generation: self.generation,
            phase: Phase::Open,
            mode,
            last_active: Some(now),
            ..Conn::default()
        };
    }

    /// Empties the slot for reuse; bumps the generation.
    pub fn free(&mut self) {
        debug_assert!(self.queue.is_empty());
        *self = Conn { generation: self.generation.wrapping_add(1), ..Conn::default() };
    }

    /// Bytes received and not yet fully sent.
    pub fn queued_bytes(&self) -> u32 {
        self.queued_bytes
    }

    /// Buffers queued (including the one being sent).
    pub fn queued_chunks(&self) -> usize {
        self.queue.len()
    }

    /// Queues a received buffer.
    pub fn on_data(&mut self, bid: u16, len: u32) {
        self.queue.push_back(Chunk { bid, offset: 0, len });
        self.queued_bytes += len;
    }

    /// The chunk to send next, marking a send in flight; `None` when one is already in
    /// flight or nothing is queued.
    pub fn start_send(&mut self) -> Option<Chunk> {
        if self.send_in_flight {
            return None;
        }
        let front = *self.queue.front()?;
        self.send_in_flight = true;
        Some(front)
    }

    /// Records a completed send of `n` bytes of the front chunk. Returns the buffer id if
    /// the chunk is now fully sent (the buffer can go back), or `None` for a short send.
    pub fn on_sent(&mut self, n: u32) -> Option<u16> {
        debug_assert!(self.send_in_flight);
        self.send_in_flight = false;
        let front = self.queue.front_mut()?;
        let n = n.min(front.len);
        front.offset += n;
        front.len -= n;
        self.queued_bytes -= n;
        if front.len == 0 {
            let bid = front.bid;
            self.queue.pop_front();
            Some(bid)
        } else {
            None
        }
    }

    /// Records a failed send: the front chunk stays queued, for `take_unsent` to return.
    pub fn on_send_failed(&mut self) {
        self.send_in_flight = false;
    }

    /// Removes every chunk not being sent right now and returns them (used when the
    /// connection is closing and their bytes will never be sent).
    pub fn take_unsent(&mut self) -> Vec<Chunk> {
        let keep = usize::from(self.send_in_flight).min(self.queue.len());
        let dropped: Vec<Chunk> = self.queue.drain(keep..).collect();
        for c in &dropped {
            self.queued_bytes -= c.len;
        }
        dropped
    }

    /// Bytes the front chunk still has to send (what a send in flight asked for).
    pub fn front_len(&self) -> u32 {
        self.queue.front().map_or(0, |c| c.len)
    }

    /// Whether nothing of this connection is in the kernel's hands any more.
    pub fn is_quiet(&self) -> bool {
        !self.recv_armed && !self.send_in_flight && !self.cancel_pending
    }

    /// Decides what to do about the receive of an open connection.
    ///
    /// With `limits` (the kernel ends a multishot receive once a total byte count is
    /// reached, though the read that reaches it may fill a whole buffer), the receive is
    /// armed with `room - buf_size + 1`, so even that last read keeps the queue within
    /// `max_conn_buffer`. It is armed only when the queue is empty or at least half the
    /// bound is free, so a nearly full queue is not re-armed for a few bytes at a time.
    /// Without limits, a full queue cancels the receive; what the kernel delivers before
    /// the cancel lands still queues, so the bound is then approximate.
    pub fn recv_action(&mut self, max_conn_buffer: u32, buf_size: u32, limits: bool) -> RecvAction {
        if self.phase != Phase::Open || self.read_eof || self.starved || self.cancel_pending {
            return RecvAction::None;
        }
        let room = max_conn_buffer.saturating_sub(self.queued_bytes);
        if self.recv_armed {
            if !limits && room == 0 {
                self.paused = true;
                return RecvAction::Cancel;
            }
            return RecvAction::None;
        }
        let worth_arming = self.queued_bytes == 0 || room >= max_conn_buffer / 2;
        if worth_arming && room >= buf_size {
            self.paused = false;
            RecvAction::Arm(limits.then(|| room - buf_size + 1))
        } else {
            self.paused = true;
            RecvAction::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u32 = 16 * 1024;
    const BUF: u32 = 4096;

    #[derive(Debug, Clone)]
    enum Ev {
        Data(u32),
        Send(u32),
        Arm,
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![(1u32..=BUF).prop_map(Ev::Data), (0u32..6000).prop_map(Ev::Send), Just(Ev::Arm),]
    }

    proptest! {
        /// Model: the kernel only delivers bytes while a receive is armed, and never more
        /// than the limit it was armed with. Then the queue bound holds exactly, bytes
        /// leave in order, and each buffer comes out once.
        #[test]
        fn bound_order_and_buffers(evs in proptest::collection::vec(ev(), 1..300)) {
            let mut c = Conn::default();
            c.open(Mode::Echo, Instant::now());
            let mut next_bid = 0u16;
            let mut limit_left: Option<u32> = None;
            let mut sent_order = Vec::new();
            let mut returned = Vec::new();
            for e in evs {
                match e {
                    Ev::Arm => {
                        if let RecvAction::Arm(Some(limit)) = c.recv_action(MAX, BUF, true) {
                            c.recv_armed = true;
                            limit_left = Some(limit);
                        }
                    }
                    Ev::Data(n) => {
                        // The kernel reads up to a whole buffer while any of the limit
                        // is left, then ends the receive once the limit is used up.
                        let Some(left) = limit_left else { continue };
                        c.on_data(next_bid, n);
                        next_bid += 1;
                        let left = left.saturating_sub(n);
                        limit_left = Some(left);
                        if left == 0 {
                            c.recv_armed = false;
                            limit_left = None;
                        }
                    }
                    Ev::Send(n) => {
                        if let Some(chunk) = c.start_send() {
                            if let Some(bid) = c.on_sent(n.min(chunk.len)) {
                                sent_order.push(bid);
                                returned.push(bid);
                            }
                        }
                    }
                }
                prop_assert!(c.queued_bytes() <= MAX);
            }
            returned.extend(c.take_unsent().into_iter().map(|c| c.bid));
            let mut sorted = returned.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..next_bid).collect::<Vec<_>>());
            prop_assert!(sent_order.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(c.queued_bytes(), 0);
        }
    }

    #[test]
    fn in_flight_chunk_is_not_taken() {
        let mut c = Conn::default();
        c.open(Mode::Echo, Instant::now());
        c.on_data(1, 10);
        c.on_data(2, 10);
        assert_eq!(c.start_send(), Some(Chunk { bid: 1, offset: 0, len: 10 }));
        assert_eq!(c.start_send(), None, "one send at a time");
        assert_eq!(c.take_unsent(), vec![Chunk { bid: 2, offset: 0, len: 10 }]);
        assert_eq!(c.on_sent(4), None, "short send keeps the chunk");
        assert_eq!(c.start_send(), Some(Chunk { bid: 1, offset: 4, len: 6 }));
        assert_eq!(c.on_sent(6), Some(1));
        assert_eq!(c.queued_bytes(), 0);
    }

    #[test]
    fn pause_without_limits_cancels() {
        let mut c = Conn::default();
        c.open(Mode::Echo, Instant::now());
        assert_eq!(c.recv_action(100, 50, false), RecvAction::Arm(None));
        c.recv_armed = true;
        c.on_data(0, 100);
        assert_eq!(c.recv_action(100, 50, false), RecvAction::Cancel);
        assert!(c.paused);
    }
}
