//! A worker's chain of Unix datagram sends: how its Unix datagram flows send.
//!
//! A Unix datagram server's queue holds `net.unix.max_dgram_qlen` datagrams (10 by
//! default), often fewer than `-c × --depth`, and a send must not meet a full queue in
//! io_uring's hands: the socket has copied the datagram out before it finds the queue
//! full, and io_uring's retry once there is room sends an empty datagram instead (it
//! completes with 0 bytes; the datagram is lost). So the sends go as one linked chain at a
//! time: a wait for room (POLLOUT), then a send per datagram, the flows taking turns. Each
//! send fails rather than wait (MSG_DONTWAIT), and a failure cancels the rest of the
//! chain, whose datagrams go back to the front of their flows' queues for the next chain.
//! A full queue costs one refused send and a short cancelled tail, not a retry by every
//! datagram waiting.
//!
//! Invariant: at most one chain is in flight, and a datagram goes back to its flow's queue
//! only when nothing of its flow sent after it went; so each flow's datagrams go in
//! sequence order, as the ledger's judgements (reordered, lost) assume.

use super::flow::{Flow, ROOM, write_datagram};
use crate::engine::ledger::Entry;
use crate::engine::token::{Op, Token};
use crate::engine::transport::Ctx;
use crate::payload::Pattern;
use io_uring::{opcode, squeue, types};
use std::os::fd::AsRawFd;

/// The most sends in one chain: well within the submission queue, which takes a chain
/// whole.
const MAX_CHAIN: usize = 64;

/// The chain in flight, and the length of the next.
pub(super) struct Chain {
    /// Operations of the chain in flight not yet answered (its wait for room and sends).
    left: usize,
    /// Sends of the chain in flight that went.
    went: usize,
    /// A send of the chain in flight was refused (the rest come back cancelled).
    refused: bool,
    /// The most sends the next chain carries: twice what went when a send was refused,
    /// doubling (up to [`MAX_CHAIN`]) while none is, so the cancelled tail stays short.
    limit: usize,
    /// The flow the next chain starts with (round robin).
    next: usize,
    /// The chain being built (kept for its memory).
    entries: Vec<squeue::Entry>,
}

impl Chain {
    pub fn new() -> Chain {
        Chain { left: 0, went: 0, refused: false, limit: MAX_CHAIN, next: 0, entries: Vec::new() }
    }

    /// Sends the chained flows' pending datagrams as one chain, unless one is in flight:
    /// a wait for room, then a send per datagram, one from each flow in turn.
    pub fn send(&mut self, flows: &mut [Flow], pattern: &Pattern, cx: &mut Ctx<'_>) {
        if self.left > 0 {
            return;
        }
        self.entries.clear();
        let n = flows.len();
        let mut head = None;
        let mut more = true;
        while more && self.entries.len() < self.limit {
            more = false;
            for k in 0..n {
                if self.entries.len() == self.limit {
                    break;
                }
                let i = (self.next + k) % n;
                let f = &mut flows[i];
                if f.dead || !f.chained || f.free.is_empty() {
                    continue;
                }
                let Some((seq, size)) = next_waiting(f, cx.now) else { continue };
                let slot = f.free.pop().expect("not empty");
                f.carried[slot] = (seq, size);
                write_datagram(pattern, f.id, seq, cx.now, &mut f.slots[slot][..size as usize]);
                let fd = types::Fd(f.fd.as_raw_fd());
                head.get_or_insert((i, fd));
                self.entries.push(
                    opcode::Send::new(fd, f.slots[slot].as_ptr(), size)
                        .flags(libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
                        .build()
                        .flags(squeue::Flags::IO_LINK)
                        .user_data(Token::new(Op::Send, i, slot).encode()),
                );
                more = true;
            }
        }
        let Some((i, fd)) = head else { return };
        self.next = (self.next + 1) % n;
        let sends = self.entries.len();
        cx.rec.counters.sends += sends as u64;
        // The chain ends at its last send.
        let last = self.entries.pop().expect("a send");
        self.entries.push(last.flags(squeue::Flags::empty()));
        let room = opcode::PollAdd::new(fd, libc::POLLOUT as u32)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(Token::new(Op::Send, i, ROOM).encode());
        self.entries.insert(0, room);
        self.left = sends + 1;
        // SAFETY: each send reads its flow's send slot, heap memory of the transport that
        // is off the free list (so not written) until the send's completion gives it back;
        // the wait for room points at no memory; the worker frees the transport only after
        // the last completion.
        unsafe { cx.push_chain(&self.entries) };
    }

    /// The chain's wait for room ended: its sends go now (or come back cancelled).
    pub fn on_room(&mut self, cx: &mut Ctx<'_>, res: i32) {
        if res < 0 {
            cx.rec.counters.socket_errors += 1;
        }
        self.answered();
    }

    /// The completion of flow `f`'s send from `slot`.
    pub fn on_sent(&mut self, f: &mut Flow, cx: &mut Ctx<'_>, slot: usize, res: i32) {
        f.free.push(slot);
        let (seq, size) = f.carried[slot];
        match res {
            n if n >= 0 => {
                self.went += 1;
                cx.rec.counters.bytes_sent += n as u64;
                if n as u32 != size {
                    // A datagram goes whole or not at all: this one did not go as given.
                    cx.rec.counters.socket_errors += 1;
                }
            }
            // The server's queue is full, or an earlier send of the chain failed: it did
            // not go. Back to the front of the flow's queue, in sequence order.
            n if n == -libc::EAGAIN || n == -libc::ECANCELED => {
                self.refused = true;
                cx.rec.counters.sends -= 1;
                if let Some(Entry::Waiting { sent, .. }) = f.ledger.entry(seq) {
                    *sent = None;
                    let at = f.pending.partition_point(|&s| s < seq);
                    f.pending.insert(at, seq);
                }
            }
            // As for any datagram send: it will time out as lost.
            _ => cx.rec.counters.socket_errors += 1,
        }
        self.answered();
    }

    /// One of the chain's operations was answered; at the last, the next chain's length.
    fn answered(&mut self) {
        self.left -= 1;
        if self.left == 0 {
            self.limit = if self.refused { (2 * self.went).max(1) } else { (2 * self.limit).min(MAX_CHAIN) };
            self.went = 0;
            self.refused = false;
        }
    }
}

/// Takes flow `f`'s next pending datagram still waiting (those answered or lost while they
/// waited are dropped) and marks it sent at `now`: its sequence and size.
fn next_waiting(f: &mut Flow, now: u64) -> Option<(u64, u32)> {
    while let Some(seq) = f.pending.pop_front() {
        if let Some(Entry::Waiting { sent, size, .. }) = f.ledger.entry(seq) {
            *sent = Some(now);
            return Some((seq, *size));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_chain_is_about_twice_what_went() {
        let mut c = Chain::new();
        let finish = |c: &mut Chain, went: usize, refused: bool| {
            c.left = 2;
            c.went = went;
            c.refused = refused;
            c.answered();
            c.answered();
            c.limit
        };
        assert_eq!(finish(&mut c, 10, true), 20, "refused after 10");
        assert_eq!(finish(&mut c, 0, true), 1, "refused at once: one");
        assert_eq!(finish(&mut c, 1, false), 2, "none refused: doubles");
        assert_eq!(finish(&mut c, 2, false), 4);
        c.limit = MAX_CHAIN;
        assert_eq!(finish(&mut c, MAX_CHAIN, false), MAX_CHAIN, "never beyond the bound");
    }
}
