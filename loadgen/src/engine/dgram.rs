//! The datagram transport (UDP and Unix datagram): each flow is a connected socket; every
//! datagram carries a [`Header`] (flow, sequence, send time) so replies are matched by
//! sequence, whatever their order. A datagram unanswered within `--udp-timeout` is lost;
//! a reply to it after that is `late`; a second reply is a `duplicate`; a reply older than
//! the newest answered one is `reordered`; anything that is not ours is `garbage`.
//!
//! Invariant: a flow's `entries` cover exactly the sequences `base..next_seq`, the oldest
//! first, and the front entry is always one still waiting (answered and lost ones are
//! trimmed, the lost remembered for a while to tell `late` from `duplicate`).
//!
//! Memory the kernel sees: each send points into one of the flow's send slots, which is
//! not written again until that send completes; receives land in the worker's buffer ring.

use super::token::{self, Op, Token};
use super::transport::{Ctx, Transport};
use super::{Clock, RunError, Shared};
use crate::header::{self, Header};
use crate::payload::{PERIOD, Pattern};
use crate::target::Target;
use io_uring::{cqueue, opcode, types};
use ringecho::ring::{self, Buf};
use std::collections::{HashSet, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

/// Sequences remembered as lost, per flow, to tell a late reply from a duplicate.
const LOST_MEMORY: usize = 65_536;
/// Send slots per flow: the closed loop's depth, within these bounds.
const MIN_SLOTS: usize = 16;
const MAX_SLOTS: usize = 1024;
const _: () = assert!(MAX_SLOTS <= token::MAX_SLOTS, "a token names every send slot");

#[derive(Debug, Clone, Copy)]
enum Entry {
    Waiting { intended: u64, sent: Option<u64>, size: u32 },
    Answered,
    Lost,
}

/// A socket path this process bound (Unix datagram flows), removed when dropped.
pub(super) struct BoundPath(PathBuf);

impl Drop for BoundPath {
    fn drop(&mut self) {
        // Best effort: a path already gone is what we want.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A flow as set-up opens it.
pub(super) struct Opened {
    fd: OwnedFd,
    id: u32,
    bound: Option<BoundPath>,
}

struct Flow {
    fd: OwnedFd,
    id: u32,
    next_seq: u64,
    /// Entries for sequences `base..next_seq`.
    base: u64,
    entries: VecDeque<Entry>,
    highest_answered: Option<u64>,
    lost: HashSet<u64>,
    lost_order: VecDeque<u64>,
    /// Sequences below this may have been lost and forgotten: a reply to one is counted
    /// late, never duplicate (a stalled server flushing its queue is no amplifier).
    forgotten_below: u64,
    /// Send slots: a buffer each; `free` lists those not in the kernel's hands.
    slots: Vec<Box<[u8]>>,
    free: Vec<usize>,
    /// Sequences scheduled but waiting for a free slot.
    pending: VecDeque<u64>,
    recv_armed: bool,
    starved: bool,
    dead: bool,
    bound: Option<BoundPath>,
}

fn open(target: &Target, id: u32) -> std::io::Result<Opened> {
    match target {
        Target::Udp(addr) => {
            let local: std::net::SocketAddr = if addr.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                ([0, 0, 0, 0], 0).into()
            };
            let s = std::net::UdpSocket::bind(local)?;
            s.connect(addr)?;
            Ok(Opened { fd: s.into(), id, bound: None })
        }
        Target::UnixGram(path) => {
            // A Unix datagram server answers to the sender's path: bind one.
            let me = std::env::temp_dir().join(format!("ringload-{}-{id}.sock", std::process::id()));
            // A stale socket of an earlier process with our pid; usually there is none.
            let _ = std::fs::remove_file(&me);
            let s = std::os::unix::net::UnixDatagram::bind(&me)?;
            let bound = BoundPath(me);
            s.connect(path)?;
            Ok(Opened { fd: s.into(), id, bound: Some(bound) })
        }
        _ => Err(std::io::Error::other("not a datagram target")),
    }
}

impl Flow {
    fn new(opened: Opened, slots: usize, max_size: usize) -> Flow {
        Flow {
            fd: opened.fd,
            id: opened.id,
            next_seq: 0,
            base: 0,
            entries: VecDeque::new(),
            highest_answered: None,
            lost: HashSet::new(),
            lost_order: VecDeque::new(),
            forgotten_below: 0,
            slots: (0..slots).map(|_| vec![0u8; max_size].into_boxed_slice()).collect(),
            free: (0..slots).rev().collect(),
            pending: VecDeque::new(),
            recv_armed: false,
            starved: false,
            dead: false,
            bound: opened.bound,
        }
    }

    fn waiting(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e, Entry::Waiting { .. })).count()
    }

    fn waiting_measured(&self, warm_end: u64) -> u64 {
        self.entries
            .iter()
            .filter(|e| matches!(e, Entry::Waiting { intended, .. } if *intended >= warm_end))
            .count() as u64
    }

    fn entry(&mut self, seq: u64) -> Option<&mut Entry> {
        let idx = seq.checked_sub(self.base)?;
        self.entries.get_mut(idx as usize)
    }

    /// Drops answered and lost entries from the front, remembering the lost ones.
    fn trim(&mut self) {
        while let Some(front) = self.entries.front() {
            match front {
                Entry::Waiting { .. } => break,
                Entry::Answered => {}
                Entry::Lost => {
                    self.lost.insert(self.base);
                    self.lost_order.push_back(self.base);
                    if self.lost_order.len() > LOST_MEMORY {
                        if let Some(old) = self.lost_order.pop_front() {
                            self.lost.remove(&old);
                            self.forgotten_below = self.forgotten_below.max(old + 1);
                        }
                    }
                }
            }
            self.entries.pop_front();
            self.base += 1;
        }
    }
}

/// Where in the pattern datagram `seq` of flow `flow` takes its payload.
fn payload_offset(flow: u32, seq: u64) -> u64 {
    (Pattern::phase(u64::from(flow)) + seq.wrapping_mul(31)) % PERIOD as u64
}

/// A worker's datagram flows.
pub(super) struct Dgram {
    pattern: Pattern,
    flows: Vec<Flow>,
    verify: bool,
    /// `--udp-timeout`, ns.
    timeout: u64,
}

impl Transport for Dgram {
    const BUFFERS: u16 = 2048;

    type Conn = Opened;

    fn connect(shared: &Shared, id: u32) -> std::io::Result<Opened> {
        open(&shared.target, id)
    }

    fn new(shared: &Shared, clock: &Clock, opened: Vec<Opened>) -> Result<Dgram, RunError> {
        let plan = &shared.plan;
        let slots = (clock.depth as usize).clamp(MIN_SLOTS, MAX_SLOTS);
        let max_size = plan.size.max as usize;
        Ok(Dgram {
            pattern: Pattern::new(plan.seed),
            flows: opened.into_iter().map(|o| Flow::new(o, slots, max_size)).collect(),
            verify: plan.verify,
            timeout: plan.udp_timeout.as_nanos() as u64,
        })
    }

    /// No longer than a datagram may take: what is unanswered by then is lost anyway.
    fn drain(shared: &Shared) -> Duration {
        shared.plan.drain.min(shared.plan.udp_timeout)
    }

    fn conns(&self) -> usize {
        self.flows.len()
    }

    fn is_dead(&self, i: usize) -> bool {
        self.flows[i].dead
    }

    fn all_gone(&self) -> bool {
        self.flows.iter().all(|f| f.dead)
    }

    fn drained(&self) -> bool {
        self.flows.iter().all(|f| f.dead || f.waiting() == 0)
    }

    fn queued(&self, i: usize) -> usize {
        self.flows[i].entries.len()
    }

    fn unanswered(&self, warm_end: u64) -> u64 {
        self.flows.iter().map(|f| f.waiting_measured(warm_end)).sum()
    }

    fn arm_recv(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let f = &mut self.flows[i];
        if f.recv_armed || f.dead {
            return;
        }
        f.recv_armed = true;
        let entry = ring::recv_multishot(types::Fd(f.fd.as_raw_fd()), cx.buf_ring.group(), None)
            .user_data(Token::new(Op::Recv, i, 0).encode());
        // SAFETY: a receive lands in the worker's buffer ring, which outlives the ring.
        unsafe { cx.push(&entry) };
    }

    fn schedule(&mut self, cx: &mut Ctx<'_>, i: usize, intended: u64) {
        if self.flows[i].dead {
            return;
        }
        let Some(size) = cx.admit(intended) else { return };
        let f = &mut self.flows[i];
        let seq = f.next_seq;
        f.next_seq += 1;
        f.entries.push_back(Entry::Waiting { intended, sent: None, size });
        f.pending.push_back(seq);
    }

    /// Sends pending datagrams while send slots are free.
    fn pump(&mut self, cx: &mut Ctx<'_>, i: usize) {
        loop {
            let f = &mut self.flows[i];
            if f.dead || f.pending.is_empty() || f.free.is_empty() {
                return;
            }
            let seq = f.pending.pop_front().expect("not empty");
            let (id, fd) = (f.id, f.fd.as_raw_fd());
            let Some(Entry::Waiting { sent, size, .. }) = f.entry(seq) else { continue };
            *sent = Some(cx.now);
            let size = *size as usize;
            let slot = f.free.pop().expect("not empty");
            let buf = &mut f.slots[slot][..size];
            Header { flow: id, seq, sent_ns: cx.now }.encode(&mut buf[..header::LEN]);
            buf[header::LEN..]
                .copy_from_slice(self.pattern.slice(payload_offset(id, seq), size - header::LEN));
            let entry = opcode::Send::new(types::Fd(fd), buf.as_ptr(), size as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(Token::new(Op::Send, i, slot).encode());
            cx.rec.counters.sends += 1;
            // SAFETY: the send reads slot `slot`, heap memory of this transport that is off
            // the free list (so not written) until this send's completion gives it back;
            // the worker frees the transport only after the last completion.
            unsafe { cx.push(&entry) };
        }
    }

    fn complete(&mut self, cx: &mut Ctx<'_>, token: Token, res: i32, flags: u32) {
        let i = token.conn();
        match token.op {
            Op::Send => self.on_sent(cx, i, token.slot as usize, res),
            Op::Recv => self.on_recv(cx, i, res, flags),
            Op::Connect | Op::Cancel => {}
        }
    }

    fn housekeeping(&mut self, cx: &mut Ctx<'_>) {
        for i in 0..self.flows.len() {
            self.expire(cx, i);
        }
        for i in 0..self.flows.len() {
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
        self.flows[i].free.push(slot);
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
                cx.rec.counters.bytes_received += n as u64;
                self.on_reply(cx, i, buf, n as u32);
            }
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

    /// Matches one reply of `n` bytes to its datagram by the header's sequence.
    fn on_reply(&mut self, cx: &mut Ctx<'_>, i: usize, buf: &Buf, n: u32) {
        let data = cx.buf_ring.bytes(buf, n);
        let f = &mut self.flows[i];
        let Some(h) = Header::decode(data).filter(|h| h.flow == f.id) else {
            cx.rec.counters.garbage += 1;
            return;
        };
        if h.seq >= f.next_seq {
            cx.rec.counters.garbage += 1;
            return;
        }
        if h.seq < f.base {
            if f.lost.remove(&h.seq) || h.seq < f.forgotten_below {
                cx.rec.counters.late += 1;
            } else {
                cx.rec.counters.duplicates += 1;
            }
            return;
        }
        let (id, highest) = (f.id, f.highest_answered);
        let entry = f.entry(h.seq).expect("base ≤ seq < next_seq");
        match *entry {
            Entry::Answered => cx.rec.counters.duplicates += 1,
            Entry::Lost => {
                cx.rec.counters.late += 1;
                *entry = Entry::Answered;
            }
            Entry::Waiting { intended, sent, size } => {
                *entry = Entry::Answered;
                let intact = n == size
                    && (!self.verify
                        || self.pattern.mismatches(payload_offset(id, h.seq), &data[header::LEN..]) == 0);
                if highest.is_some_and(|hi| hi > h.seq) {
                    cx.rec.counters.reordered += 1;
                }
                f.highest_answered = Some(highest.map_or(h.seq, |hi| hi.max(h.seq)));
                if intact {
                    cx.rec.answered_size(size);
                    cx.rec.complete(&cx.clock, cx.now, intended, sent.unwrap_or(intended), u64::from(size));
                } else if intended >= cx.clock.warm_end {
                    cx.rec.counters.mismatched_messages += 1;
                    cx.rec.counters.mismatched_bytes += u64::from(n.abs_diff(size)).max(1);
                }
                if cx.refills() {
                    let now = cx.now;
                    self.schedule(cx, i, now);
                    self.pump(cx, i);
                }
            }
        }
        self.flows[i].trim();
    }

    /// Marks datagrams unanswered for `--udp-timeout` as lost (oldest first: sequences
    /// are sent in order); the closed loop sends one in place of each.
    fn expire(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let (now, timeout, warm_end) = (cx.now, self.timeout, cx.clock.warm_end);
        let mut replaced = 0;
        let f = &mut self.flows[i];
        for e in f.entries.iter_mut() {
            match *e {
                Entry::Waiting { sent: Some(sent), intended, size } if sent + timeout <= now => {
                    *e = Entry::Lost;
                    cx.rec.lost_size(size);
                    if intended >= warm_end {
                        cx.rec.counters.lost += 1;
                    }
                    replaced += 1;
                }
                Entry::Waiting { .. } => break,
                _ => {}
            }
        }
        f.trim();
        if cx.refills() {
            for _ in 0..replaced {
                self.schedule(cx, i, now);
            }
            self.pump(cx, i);
        }
    }
}
