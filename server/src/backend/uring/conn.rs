//! One connection's state, free of any I/O: its phase, what of it the kernel holds (the
//! receive, a send, a cancel), its [`SendQueue`], and the rule for pausing its receive.
//!
//! Invariants kept here (and checked by property tests): with a receive limit, the queue
//! never exceeds `max_conn_buffer`; a connection is closed only once nothing of it is in
//! the kernel's hands ([`Conn::is_quiet`]).

use super::buffers::SendQueue;
use crate::config::Mode;
use std::time::Instant;

/// The state of a slot in the connection table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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

/// One connection.
#[derive(Debug, Default)]
pub(super) struct Conn {
    /// Slot generation, part of every token for this connection.
    pub generation: u8,
    /// Where the connection is in its life.
    pub phase: Phase,
    /// What the connection does (its listener's mode).
    pub mode: Mode,
    /// Large replies may go as SEND_ZC (the kernel has it, and the socket is TCP: Unix
    /// sockets have no zero-copy send).
    pub zc: bool,
    /// `source` mode: bytes of the pattern sent so far.
    pub source_offset: u64,
    /// `source` mode: a send of the pattern is in flight.
    pub source_in_flight: bool,
    /// Received buffers waiting to be echoed.
    pub queue: SendQueue,
    /// A multishot receive is armed.
    pub recv_armed: bool,
    /// A cancel of this connection's operations has been submitted and not answered.
    pub cancel_pending: bool,
    /// The peer closed its writing side.
    pub read_eof: bool,
    /// The receive ended for want of buffers and waits for some to come back.
    pub starved: bool,
    /// The receive is held back by the queue bound.
    pub paused: bool,
    /// Why it is closing, once it is.
    pub close_reason: Option<crate::policy::CloseReason>,
    /// Last time bytes moved either way.
    pub last_active: Option<Instant>,
    /// `--timestamps` on a TCP connection: its receives are recvmsg, each with the
    /// kernel's arrival stamp.
    pub stamped: bool,
    /// `--timestamps`: a read of the error queue for the sampled send's stamp is in flight.
    pub errq_in_flight: bool,
}

/// What the worker should do about the receive after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecvAction {
    /// Leave it as it is.
    None,
    /// Arm a multishot receive, with this total limit when limits are in use.
    Arm(Option<u32>),
    /// Cancel the armed receive (the queue is full and the kernel cannot limit it).
    Cancel,
}

impl Conn {
    /// Makes a free slot an open connection.
    pub fn open(&mut self, mode: Mode, zc: bool, now: Instant) {
        debug_assert_eq!(self.phase, Phase::Free);
        *self = Conn {
            generation: self.generation,
            phase: Phase::Open,
            mode,
            zc,
            last_active: Some(now),
            ..Conn::default()
        };
    }

    /// Empties the slot for reuse; bumps the generation.
    pub fn free(&mut self) {
        debug_assert_eq!(self.queue.len(), 0);
        *self = Conn { generation: self.generation.wrapping_add(1), ..Conn::default() };
    }

    /// A send (of the queue or of the source pattern) is in flight.
    pub fn send_in_flight(&self) -> bool {
        self.queue.in_flight() || self.source_in_flight
    }

    /// Whether nothing of this connection is in the kernel's hands any more.
    pub fn is_quiet(&self) -> bool {
        !self.recv_armed && !self.send_in_flight() && !self.cancel_pending && !self.errq_in_flight
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
        let queued = self.queue.bytes();
        let room = max_conn_buffer.saturating_sub(queued);
        if self.recv_armed {
            if !limits && room == 0 {
                self.paused = true;
                return RecvAction::Cancel;
            }
            return RecvAction::None;
        }
        let worth_arming = queued == 0 || room >= max_conn_buffer / 2;
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
    use crate::ring::Buf;
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
            c.open(Mode::Echo, false, Instant::now());
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
                        c.queue.push(Buf::for_test(next_bid), n);
                        next_bid += 1;
                        let left = left.saturating_sub(n);
                        limit_left = Some(left);
                        if left == 0 {
                            c.recv_armed = false;
                            limit_left = None;
                        }
                    }
                    Ev::Send(n) => {
                        if let Some(len) = c.queue.start_send().map(|chunk| chunk.len) {
                            if let Some(buf) = c.queue.on_sent(n.min(len)) {
                                sent_order.push(buf.id());
                                returned.push(buf.id());
                                buf.forget();
                            }
                        }
                    }
                }
                prop_assert!(c.queue.bytes() <= MAX);
            }
            c.queue.drain_unsent(|buf| {
                returned.push(buf.id());
                buf.forget();
            });
            let mut sorted = returned.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..next_bid).collect::<Vec<_>>());
            prop_assert!(sent_order.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(c.queue.bytes(), 0);
        }
    }

    #[test]
    fn in_flight_chunk_is_not_taken() {
        let mut c = Conn::default();
        c.open(Mode::Echo, false, Instant::now());
        c.queue.push(Buf::for_test(1), 10);
        c.queue.push(Buf::for_test(2), 10);
        let front = c.queue.start_send().map(|ch| (ch.buf.id(), ch.offset, ch.len));
        assert_eq!(front, Some((1, 0, 10)));
        assert!(c.queue.start_send().is_none(), "one send at a time");
        let mut dropped = Vec::new();
        assert_eq!(c.queue.drain_unsent(|b| dropped.push(b)), 10);
        assert_eq!(dropped.iter().map(Buf::id).collect::<Vec<_>>(), vec![2]);
        dropped.into_iter().for_each(Buf::forget);
        assert!(c.queue.on_sent(4).is_none(), "short send keeps the chunk");
        let front = c.queue.start_send().map(|ch| (ch.buf.id(), ch.offset, ch.len));
        assert_eq!(front, Some((1, 4, 6)));
        let done = c.queue.on_sent(6).unwrap();
        assert_eq!(done.id(), 1);
        done.forget();
        assert_eq!(c.queue.bytes(), 0);
        assert!(c.is_quiet());
    }

    #[test]
    fn pause_without_limits_cancels() {
        let mut c = Conn::default();
        c.open(Mode::Echo, false, Instant::now());
        assert_eq!(c.recv_action(100, 50, false), RecvAction::Arm(None));
        c.recv_armed = true;
        c.queue.push(Buf::for_test(0), 100);
        assert_eq!(c.recv_action(100, 50, false), RecvAction::Cancel);
        assert!(c.paused);
        c.queue.drain_unsent(Buf::forget);
    }
}
