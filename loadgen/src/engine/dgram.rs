//! The datagram transport (UDP and Unix datagram): each flow is a connected socket; every
//! datagram carries a [`Header`] (flow, sequence, send time) so replies are matched by
//! sequence, whatever their order. A datagram unanswered within `--udp-timeout` is lost;
//! a reply to it after that is `late`; a second reply is a `duplicate`; a reply older than
//! the newest answered one is `reordered`; anything that is not ours is `garbage`.
//!
//! What became of each sequence is the flow's [`Ledger`]'s (bounded memory, whatever the
//! run's length or loss).
//!
//! Batching (UDP, on unless `--no-gso`): datagrams of a flow that are due together (the
//! closed loop's `--depth`, an open loop's backlog) go as one UDP_SEGMENT send, each still
//! with its own header, and replies come back through UDP_GRO, a train of them in one
//! buffer, split here at the segment size the kernel reports. A server that does not
//! batch sees them one by one: the kernel splits the train.
//!
//! Unix datagrams go in the worker's [`Chain`] of sends instead, which waits out a
//! server's full queue without losing them.
//!
//! Memory the kernel sees: each send points into one of the flow's send slots (and, for a
//! train, that slot's boxed `msghdr`), which is not written again until that send
//! completes; receives land in the worker's buffer ring, described by the flow's boxed
//! `msghdr`.

mod chain;
mod flow;
mod reply;

use chain::Chain;
use flow::{BoundPath, DgramProbe, Flow, MAX_SLOTS, MIN_SLOTS, Opened, ROOM, dial, opened, write_datagram};
use reply::{Arrival, Rx, on_reply};

use super::clock::Clock;
use super::ledger::{Entry, Ledger};
use super::stamps::Probe;
use super::token::{Op, Token};
use super::transport::{Ctx, Transport};
use super::types::{RunError, Shared};
use crate::connect::Dial;
use crate::payload::Pattern;
use crate::target::Target;
use io_uring::{cqueue, opcode, types};
use ringecho::gso::{self, SegmentControl};
use ringecho::ring::{self, Buf};
use ringecho::tstamp::{SocketKind, TxControl};
use socket2::Socket;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

/// A worker's datagram flows.
pub(super) struct Dgram {
    pattern: Pattern,
    flows: Vec<Flow>,
    verify: bool,
    /// `--udp-timeout`, ns.
    timeout: u64,
    /// The most datagrams one send carries.
    train_max: usize,
    /// The Unix datagram flows' chain of sends.
    chain: Chain,
}

/// The most datagrams one send carries: a closed loop's depth (what is due together) or,
/// open loop, a backlog; within the kernel's limits for the largest size.
fn train_max(gso: bool, depth: u32, max_size: u32) -> usize {
    if !gso {
        return 1;
    }
    let fit = gso::MAX_TRAIN_BYTES / (max_size as usize).max(1);
    (depth as usize).min(gso::MAX_SEGMENTS).min(fit).max(1)
}

impl Transport for Dgram {
    const BUFFERS: u16 = 2048;

    type Conn = Opened;

    type Keep = Option<BoundPath>;

    fn dial(shared: &Shared, id: u32) -> std::io::Result<Dial<Option<BoundPath>>> {
        dial(&shared.target, id)
    }

    fn connected(
        shared: &Shared,
        id: u32,
        socket: Socket,
        bound: Option<BoundPath>,
    ) -> std::io::Result<Opened> {
        let udp = matches!(shared.target, crate::target::Target::Udp(_));
        let kernel = shared.plan.timestamps == crate::plan::Timestamps::Kernel;
        let stamps = kernel.then_some(if udp { SocketKind::Udp } else { SocketKind::UnixDgram });
        Ok(opened(socket, id, bound, udp && shared.plan.gso, stamps))
    }

    fn new(shared: &Shared, clock: &Clock, opened: Vec<Opened>) -> Result<Dgram, RunError> {
        let plan = &shared.plan;
        let slots = (clock.depth as usize).clamp(MIN_SLOTS, MAX_SLOTS);
        let max_size = plan.size.max as usize;
        // Open loop: what fell due while a send was in flight goes together, up to the
        // kernel's limit.
        let due = if clock.interval.is_some() { gso::MAX_SEGMENTS as u32 } else { clock.depth };
        let train = train_max(plan.gso, due, plan.size.max);
        let chained = matches!(shared.target, Target::UnixGram(_));
        Ok(Dgram {
            pattern: Pattern::new(plan.seed),
            flows: opened
                .into_iter()
                .map(|o| {
                    Flow::new(
                        o,
                        slots,
                        max_size,
                        train,
                        Ledger::new(shared.plan.connections as usize),
                        chained,
                    )
                })
                .collect(),
            verify: plan.verify,
            timeout: plan.udp_timeout.as_nanos() as u64,
            train_max: train,
            chain: Chain::new(),
        })
    }

    /// No longer than a datagram may take: what is unanswered by then is lost anyway.
    fn drain(shared: &Shared) -> Duration {
        shared.plan.drain.min(shared.plan.udp_timeout)
    }

    fn conns(&self) -> usize {
        self.flows.len()
    }

    fn stamps_arrivals(&self) -> bool {
        self.flows.iter().all(|f| f.stamps.rx)
    }

    fn is_dead(&self, i: usize) -> bool {
        self.flows[i].dead
    }

    fn all_gone(&self) -> bool {
        self.flows.iter().all(|f| f.dead)
    }

    fn drained(&self) -> bool {
        self.flows.iter().all(|f| f.dead || f.ledger.waiting() == 0)
    }

    fn queued(&self, i: usize) -> usize {
        self.flows[i].ledger.len()
    }

    fn unanswered(&self, warm_end: u64) -> u64 {
        self.flows.iter().map(|f| f.ledger.waiting_measured(warm_end)).sum()
    }

    fn arm_recv(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let f = &mut self.flows[i];
        if f.recv_armed || f.dead {
            return;
        }
        f.recv_armed = true;
        let fd = types::Fd(f.fd.as_raw_fd());
        let entry = if f.recvmsg() {
            opcode::RecvMsgMulti::new(fd, &*f.recv_msghdr, cx.buf_ring.group()).build()
        } else {
            ring::recv_multishot(fd, cx.buf_ring.group(), None)
        };
        let entry = entry.user_data(Token::new(Op::Recv, i, 0).encode());
        // SAFETY: a receive lands in the worker's buffer ring, which outlives the ring;
        // the kernel reads the flow's boxed msghdr, which the transport owns until the
        // last completion.
        unsafe { cx.push(&entry) };
    }

    fn schedule(&mut self, cx: &mut Ctx<'_>, i: usize, intended: u64) {
        if self.flows[i].dead {
            return;
        }
        let Some(size) = cx.admit(intended) else { return };
        let f = &mut self.flows[i];
        let seq = f.ledger.push(intended, size);
        f.pending.push_back(seq);
    }

    /// Sends pending datagrams while send slots are free: one per send, or as many as
    /// go together in one UDP_SEGMENT train (every one the size of the first, the last
    /// perhaps shorter); a Unix datagram flow's go in the worker's chain.
    fn pump(&mut self, cx: &mut Ctx<'_>, i: usize) {
        if self.flows[i].chained {
            return self.chain.send(&mut self.flows, &self.pattern, cx);
        }
        loop {
            let f = &mut self.flows[i];
            if f.dead || f.pending.is_empty() || f.free.is_empty() {
                return;
            }
            let slot = f.free.pop().expect("not empty");
            let (id, fd, room) = (f.id, f.fd.as_raw_fd(), f.slots[slot].len());
            let most = if f.batches { self.train_max } else { 1 };
            let (mut count, mut bytes, mut segment) = (0usize, 0usize, 0usize);
            // The send's first datagram: its sequence and when it was due.
            let mut first = (0, 0);
            while count < most {
                let Some(&seq) = f.pending.front() else { break };
                let Some(Entry::Waiting { sent, size, intended }) = f.ledger.entry(seq) else {
                    f.pending.pop_front();
                    continue;
                };
                if count == 0 {
                    first = (seq, *intended);
                }
                let size = *size as usize;
                if count > 0 && (size > segment || bytes + size > room) {
                    break;
                }
                *sent = Some(cx.now);
                f.pending.pop_front();
                write_datagram(&self.pattern, id, seq, cx.now, &mut f.slots[slot][bytes..bytes + size]);
                bytes += size;
                count += 1;
                if count == 1 {
                    segment = size;
                } else if size < segment {
                    // A shorter one ends a train.
                    break;
                }
            }
            if count == 0 {
                f.free.push(slot);
                continue;
            }
            let data = f.slots[slot].as_ptr();
            // A probe: the send's first datagram asks for the send's stamp, keyed by its
            // sequence.
            let probe = f.stamps.tx && f.probe.is_none() && cx.stamps.probe(cx.now);
            if probe {
                let (seq, intended) = first;
                let times = Probe { user_send: cx.now, ..Probe::default() };
                f.probe = Some(DgramProbe { seq, slot, intended, times, sent: false });
            }
            let entry = if count == 1 && !probe {
                opcode::Send::new(types::Fd(fd), data, bytes as u32).flags(libc::MSG_NOSIGNAL).build()
            } else {
                let t = &mut f.trains[slot];
                t.iov = libc::iovec { iov_base: data as *mut libc::c_void, iov_len: bytes };
                t.msghdr.msg_iov = &mut t.iov;
                t.msghdr.msg_iovlen = 1;
                let segment = (count > 1).then_some(segment as u16);
                let control = match f.probe.filter(|_| probe) {
                    Some(p) => {
                        t.stamped = TxControl::new(Some(p.seq as u32), segment);
                        t.stamped.as_bytes()
                    }
                    None => {
                        t.control = SegmentControl::new(segment.unwrap_or(0));
                        t.control.as_bytes()
                    }
                };
                t.msghdr.msg_control = control.as_ptr() as *mut libc::c_void;
                t.msghdr.msg_controllen = control.len() as _;
                opcode::SendMsg::new(types::Fd(fd), &t.msghdr).flags(libc::MSG_NOSIGNAL as u32).build()
            };
            cx.rec.counters.sends += 1;
            if count > 1 {
                cx.rec.counters.gso_trains += 1;
            }
            // SAFETY: the send reads slot `slot` (and, for a train or a probe, its boxed
            // message header, iovec and control messages), heap memory of this transport that is
            // off the free list (so not written) until this send's completion gives it
            // back; the worker frees the transport only after the last completion.
            unsafe { cx.push(&entry.user_data(Token::new(Op::Send, i, slot).encode())) };
        }
    }

    fn complete(&mut self, cx: &mut Ctx<'_>, token: Token, res: i32, flags: u32) {
        let i = token.conn();
        match token.op {
            Op::Send if token.slot as usize == ROOM => self.chain.on_room(cx, res),
            Op::Send if self.flows[i].chained => {
                self.chain.on_sent(&mut self.flows[i], cx, token.slot as usize, res)
            }
            Op::Send => self.on_sent(cx, i, token.slot as usize, res),
            Op::Recv => self.on_recv(cx, i, res, flags),
            Op::Connect | Op::Cancel => {}
        }
    }

    fn housekeeping(&mut self, cx: &mut Ctx<'_>) {
        for i in 0..self.flows.len() {
            self.expire(cx, i);
            self.settle_probe(cx, i);
        }
        for i in 0..self.flows.len() {
            let f = &self.flows[i];
            if (f.batches || f.chained) && !f.pending.is_empty() {
                self.pump(cx, i);
            }
            if self.flows[i].starved {
                self.flows[i].starved = false;
                self.arm_recv(cx, i);
            }
        }
    }

    fn leak(mut self) {
        // The paths are names outside the process, not memory the kernel may use.
        for f in &mut self.flows {
            f.bound = None;
        }
        std::mem::forget(self);
    }
}

impl Dgram {
    fn on_sent(&mut self, cx: &mut Ctx<'_>, i: usize, slot: usize, res: i32) {
        let f = &mut self.flows[i];
        f.free.push(slot);
        if let Some(p) = f.probe.as_mut().filter(|p| p.slot == slot) {
            p.sent = true;
        }
        if res >= 0 {
            cx.rec.counters.bytes_sent += res as u64;
        } else if -res != libc::ECANCELED {
            // ECONNREFUSED after an ICMP port unreachable, ENOBUFS, ...: the datagram did
            // not go; it will time out and count as lost.
            cx.rec.counters.socket_errors += 1;
        }
        self.pump(cx, i);
    }

    fn on_recv(&mut self, cx: &mut Ctx<'_>, i: usize, res: i32, flags: u32) {
        let buf = cx.take_buf(flags);
        if !cqueue::more(flags) {
            self.flows[i].recv_armed = false;
        }
        match (res, &buf) {
            (n, Some(buf)) if n >= 0 => {
                let answered = self.on_replies(cx, i, buf, n as u32);
                if answered > 0 && cx.refills() {
                    let now = cx.now;
                    for _ in 0..answered {
                        self.schedule(cx, i, now);
                    }
                    // A batching flow sends at the end of the turn (`housekeeping`), so
                    // that replies reaped together are refilled with one train (or, for
                    // Unix datagrams, one chain).
                    if !self.flows[i].batches && !self.flows[i].chained {
                        self.pump(cx, i);
                    }
                }
            }
            // An empty datagram takes no buffer (and ends the multishot receive): not one
            // of ours, which carry a header.
            (0, None) => cx.rec.counters.garbage += 1,
            (n, _) if n < 0 => match -n {
                libc::ENOBUFS => self.flows[i].starved = true,
                libc::ECANCELED => {}
                // ECONNREFUSED: the target's port is closed (ICMP); keep listening, the
                // datagrams will time out as lost.
                libc::ECONNREFUSED => cx.rec.counters.socket_errors += 1,
                _ => {
                    cx.rec.counters.socket_errors += 1;
                    if !self.flows[i].dead {
                        cx.rec.counters.conns_lost += 1;
                    }
                    self.flows[i].dead = true;
                }
            },
            _ => {}
        }
        if let Some(buf) = buf {
            cx.give_back(buf);
        }
        let f = &self.flows[i];
        if !f.recv_armed && !f.dead && !f.starved {
            self.arm_recv(cx, i);
        }
    }

    /// Matches the datagrams of one receive of `n` bytes (one datagram, or a UDP_GRO
    /// train of them) to what was sent; returns how many were first answers to a datagram
    /// still waiting.
    fn on_replies(&mut self, cx: &mut Ctx<'_>, i: usize, buf: &Buf, n: u32) -> usize {
        let bytes = cx.buf_ring.bytes(buf, n);
        let f = &mut self.flows[i];
        let (payload, segment, arrival) = if f.recvmsg() {
            match io_uring::types::RecvMsgOut::parse(bytes, &f.recv_msghdr) {
                // A datagram longer than a buffer (64 KiB) cannot be one of ours: its
                // part is matched, and found wrong, like any other reply.
                // The payload is the end of what the kernel wrote.
                Ok(out) => {
                    let control = out.control_data();
                    let arrival = if f.stamps.rx { cx.stamps.arrival(control, cx.now) } else { None };
                    (&bytes[bytes.len() - out.payload_data().len()..], gso::gro_segment(control), arrival)
                }
                Err(()) => {
                    cx.rec.counters.garbage += 1;
                    return 0;
                }
            }
        } else {
            (bytes, None, None)
        };
        cx.rec.counters.bytes_received += payload.len() as u64;
        let step = segment.filter(|s| *s > 0).unwrap_or(payload.len()).max(1);
        if payload.len() > step {
            cx.rec.counters.gro_trains += 1;
        }
        // `chunks` yields nothing for an empty datagram, which is still one reply.
        let whole: &[&[u8]] = &[payload];
        let replies = payload.chunks(step).chain(whole.iter().copied().filter(|p| p.is_empty()));
        let mut answered = 0;
        let at = Arrival { now: cx.now, stamp: arrival };
        let mut rx = Rx { rec: &mut cx.rec, clock: &cx.clock, stamps: &mut cx.stamps };
        for data in replies {
            if on_reply(f, &self.pattern, self.verify, &mut rx, at, data) {
                answered += 1;
            }
        }
        answered
    }

    /// Flow `i`'s probe: its send stamp read once its send has gone, its parts recorded
    /// once its reply has been seen; a probe unanswered for `--udp-timeout` is given up.
    fn settle_probe(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let f = &mut self.flows[i];
        let Some(p) = &mut f.probe else { return };
        if p.sent && p.times.tx.is_none() {
            p.times.tx = cx.stamps.read_send_stamp(f.fd.as_fd(), p.seq as u32, cx.now);
        }
        if p.times.seen.is_some() {
            let p = f.probe.take().expect("a probe");
            cx.rec.split(&cx.clock, p.intended, &p.times);
        } else if cx.now.saturating_sub(p.times.user_send) > self.timeout {
            f.probe = None;
            cx.rec.breakdown.tally.probes_missing += 1;
        }
    }

    /// Marks datagrams unanswered for `--udp-timeout` as lost (oldest first: sequences
    /// are sent in order); the closed loop sends one in place of each.
    fn expire(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let (now, timeout, warm_end) = (cx.now, self.timeout, cx.clock.warm_end);
        let mut replaced = 0;
        let rec = &mut cx.rec;
        self.flows[i].ledger.expire(now, timeout, |intended, size| {
            rec.lost_size(size);
            if intended >= warm_end {
                rec.counters.lost += 1;
            }
            replaced += 1;
        });
        if cx.refills() {
            for _ in 0..replaced {
                self.schedule(cx, i, now);
            }
            self.pump(cx, i);
        }
    }
}
