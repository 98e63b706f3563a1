//! The datagram engine (UDP and Unix datagram): each flow is a connected socket; every
//! datagram carries a [`Header`] (flow, sequence, send time) so replies are matched by
//! sequence, whatever their order. A datagram unanswered within `--udp-timeout` is lost;
//! a reply to it after that is `late`; a second reply is a `duplicate`; a reply older than
//! the newest answered one is `reordered`; anything that is not ours is `garbage`.
//!
//! Memory the kernel sees: each send points into one of the flow's send slots, which is
//! not reused until that send completes; receives land in the worker's buffer ring.

use super::{
    Clock, Recorder, RunError, WorkerArgs, WorkerResult, count_connect_error, thread_cpu, wait_budget,
};
use crate::header::{self, Header};
use crate::payload::{PERIOD, Pattern};
use crate::target::Target;
use io_uring::{cqueue, opcode, squeue, types};
use ringecho::ring::{self, BufRing, Driver, PushError};
use std::collections::{HashSet, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(10);
const KIND_RECV: u64 = 1;
const KIND_SEND: u64 = 2;
/// Sequences remembered as lost, per flow, to tell a late reply from a duplicate.
const LOST_MEMORY: usize = 65_536;
/// Most datagrams scheduled and waiting per flow before new ones are refused.
const MAX_BACKLOG: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
enum Entry {
    Waiting { intended: u64, sent: Option<u64>, size: u32 },
    Answered,
    Lost,
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
    /// Send slots: a buffer each; `free` lists those not in the kernel's hands.
    slots: Vec<Box<[u8]>>,
    free: Vec<usize>,
    /// Sequences scheduled but waiting for a free slot.
    pending: VecDeque<u64>,
    recv_armed: bool,
    starved: bool,
    dead: bool,
    bound: Option<PathBuf>,
}

fn token(kind: u64, slot: usize, flow: usize) -> u64 {
    kind << 56 | (slot as u64) << 32 | flow as u64
}

fn open(target: &Target, id: u32) -> std::io::Result<(OwnedFd, Option<PathBuf>)> {
    match target {
        Target::Udp(addr) => {
            let local: std::net::SocketAddr = if addr.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                ([0, 0, 0, 0], 0).into()
            };
            let s = std::net::UdpSocket::bind(local)?;
            s.connect(addr)?;
            Ok((s.into(), None))
        }
        Target::UnixGram(path) => {
            // A Unix datagram server answers to the sender's path: bind one.
            let me = std::env::temp_dir().join(format!("ringload-{}-{id}.sock", std::process::id()));
            let _ = std::fs::remove_file(&me);
            let s = std::os::unix::net::UnixDatagram::bind(&me)?;
            if let Err(e) = s.connect(path) {
                let _ = std::fs::remove_file(&me);
                return Err(e);
            }
            Ok((s.into(), Some(me)))
        }
        _ => Err(std::io::Error::other("not a datagram target")),
    }
}

pub(super) fn run(args: WorkerArgs<'_>) -> Result<WorkerResult, RunError> {
    let shared = args.shared;
    let plan = &shared.plan;
    let pattern = Pattern::new(plan.seed);
    let mut rec = Recorder::new(args.index);
    let mut clock = Clock::new(shared, args.index, args.workers);
    let slots_per_flow = (clock.depth as usize).clamp(16, 1024);
    let max_size = plan.size.max as usize;

    let rings = super::new_ring(2048);

    let mut flows = Vec::new();
    let mut first_error = None;
    for i in 0..args.conns {
        let id = args.first_conn + i;
        let t0 = Instant::now();
        match open(&shared.target, id) {
            Ok((fd, bound)) => {
                crate::hist::record(&mut rec.connect, t0.elapsed().as_nanos() as u64);
                flows.push(Flow {
                    fd,
                    id,
                    next_seq: 0,
                    base: 0,
                    entries: VecDeque::new(),
                    highest_answered: None,
                    lost: HashSet::new(),
                    lost_order: VecDeque::new(),
                    slots: (0..slots_per_flow).map(|_| vec![0u8; max_size].into_boxed_slice()).collect(),
                    free: (0..slots_per_flow).rev().collect(),
                    pending: VecDeque::new(),
                    recv_armed: false,
                    starved: false,
                    dead: false,
                    bound,
                });
            }
            Err(e) => {
                count_connect_error(&mut rec.counters, &e);
                first_error.get_or_insert(e);
            }
        }
    }
    super::start_together(&args, &mut clock);
    let mut rings = rings?;
    if flows.is_empty() {
        let mut result = rec.finish(&mut clock, thread_cpu());
        result.connect_error = first_error;
        return Ok(result);
    }
    let connected = flows.len();

    let (mut driver, buf_ring) = rings.split();
    let timeout = plan.udp_timeout.as_nanos() as u64;
    let mut w = Dgram {
        driver: &mut driver,
        buf_ring,
        push_error: None,
        pattern: &pattern,
        flows,
        verify: plan.verify,
    };
    let mut now = clock.now();
    for i in 0..w.flows.len() {
        w.arm_recv(i);
        for _ in 0..clock.depth {
            w.schedule(i, now, &mut clock, &mut rec);
        }
        w.pump(i, now);
    }
    let mut next_flow = 0usize;
    let mut stopping_since: Option<u64> = None;
    loop {
        w.buf_ring.publish();
        rec.publish(&shared.live);
        let interrupted = shared.interrupted.load(Ordering::Relaxed);
        let all_dead = w.flows.iter().all(|f| f.dead);
        if stopping_since.is_none()
            && (now >= clock.stop_at || clock.budget == Some(0) || interrupted || all_dead)
        {
            stopping_since = Some(now);
        }
        if let Some(since) = stopping_since {
            let drained = w.flows.iter().all(|f| f.dead || f.waiting() == 0);
            let limit = since + plan.drain.as_nanos().min(plan.udp_timeout.as_nanos()) as u64;
            if drained || interrupted || now >= limit {
                break;
            }
        }
        let wait = wait_budget(&clock, now, TICK, stopping_since.is_some());
        if let Some(e) = w.push_error.take() {
            return Err(RunError::Setup(e.to_string()));
        }
        w.driver.wait(1, Some(wait)).map_err(|e| RunError::Setup(format!("io_uring_enter: {e}")))?;
        now = clock.now();
        let scheduling = stopping_since.is_none();
        while let Some(cqe) = w.driver.completion() {
            w.dispatch(cqe, now, &mut clock, &mut rec, scheduling);
        }
        for i in 0..w.flows.len() {
            w.expire(i, now, timeout, &mut clock, &mut rec, scheduling);
        }
        if let Some(interval) = clock.interval {
            while scheduling && clock.next_due <= now as f64 && clock.budget != Some(0) {
                let Some(i) = w.next_live(&mut next_flow) else { break };
                let due = clock.next_due as u64;
                clock.next_due += interval;
                if w.flows[i].entries.len() >= MAX_BACKLOG {
                    rec.counters.backlog_overflow += 1;
                    continue;
                }
                w.schedule(i, due, &mut clock, &mut rec);
                w.pump(i, now);
            }
        }
        for i in 0..w.flows.len() {
            if w.flows[i].starved {
                w.flows[i].starved = false;
                w.arm_recv(i);
            }
        }
    }
    for f in &w.flows {
        rec.counters.unanswered_at_end += f.waiting_measured(clock.warm_end);
    }
    super::cancel_all(w.driver, w.buf_ring);
    let cpu = thread_cpu();
    for f in &w.flows {
        if let Some(p) = &f.bound {
            let _ = std::fs::remove_file(p);
        }
    }
    if w.driver.inflight() > 0 {
        // The kernel did not give everything back in time: leak the memory it may still
        // touch (send slots, buffers, the ring) instead of freeing it.
        std::mem::forget(w);
        std::mem::forget(driver);
        rings.leak();
    } else {
        drop(w);
        drop(driver);
    }
    let mut result = rec.finish(&mut clock, cpu);
    result.connected = connected;
    Ok(result)
}

impl Flow {
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
                        }
                    }
                }
            }
            self.entries.pop_front();
            self.base += 1;
        }
    }
}

struct Dgram<'a, 'd> {
    driver: &'a mut Driver<'d>,
    buf_ring: &'a mut BufRing,
    /// The first push the ring refused: the run stops with an error after this turn.
    push_error: Option<PushError>,
    pattern: &'a Pattern,
    flows: Vec<Flow>,
    verify: bool,
}

/// Where in the pattern datagram `seq` of flow `flow` takes its payload.
fn payload_offset(flow: u32, seq: u64) -> u64 {
    (Pattern::phase(u64::from(flow)) + seq.wrapping_mul(31)) % PERIOD as u64
}

impl Dgram<'_, '_> {
    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: a send points into a slot that is not reused until it completes, and
        // receives into `buf_ring`; both outlive the ring, and `cancel_all` waits for
        // every operation first.
        if let Err(e) = unsafe { self.driver.push(&entry) } {
            self.push_error.get_or_insert(e);
        }
    }

    fn next_live(&self, rr: &mut usize) -> Option<usize> {
        super::next_live(self.flows.len(), |i| self.flows[i].dead, rr)
    }

    fn schedule(&mut self, i: usize, intended: u64, clock: &mut Clock, rec: &mut Recorder) {
        if self.flows[i].dead || !clock.admit(intended, &mut rec.counters) {
            return;
        }
        let size = clock.next_size();
        let f = &mut self.flows[i];
        let seq = f.next_seq;
        f.next_seq += 1;
        f.entries.push_back(Entry::Waiting { intended, sent: None, size });
        f.pending.push_back(seq);
    }

    /// Sends pending datagrams while send slots are free.
    fn pump(&mut self, i: usize, now: u64) {
        loop {
            let f = &mut self.flows[i];
            if f.dead || f.pending.is_empty() || f.free.is_empty() {
                return;
            }
            let seq = f.pending.pop_front().expect("not empty");
            let (id, fd) = (f.id, f.fd.as_raw_fd());
            let Some(Entry::Waiting { sent, size, .. }) = f.entry(seq) else { continue };
            *sent = Some(now);
            let size = *size as usize;
            let slot = f.free.pop().expect("not empty");
            let buf = &mut f.slots[slot][..size];
            Header { flow: id, seq, sent_ns: now }.encode(&mut buf[..header::LEN]);
            buf[header::LEN..]
                .copy_from_slice(self.pattern.slice(payload_offset(id, seq), size - header::LEN));
            let entry = opcode::Send::new(types::Fd(fd), buf.as_ptr(), size as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(token(KIND_SEND, slot, i));
            self.push(entry);
        }
    }

    fn arm_recv(&mut self, i: usize) {
        let f = &mut self.flows[i];
        if f.recv_armed || f.dead {
            return;
        }
        f.recv_armed = true;
        let fd = types::Fd(f.fd.as_raw_fd());
        let group = self.buf_ring.group();
        self.push(ring::recv_multishot(fd, group, None).user_data(token(KIND_RECV, 0, i)));
    }

    fn dispatch(
        &mut self,
        cqe: cqueue::Entry,
        now: u64,
        clock: &mut Clock,
        rec: &mut Recorder,
        scheduling: bool,
    ) {
        let data = cqe.user_data();
        let (kind, slot, i) =
            (data >> 56, ((data >> 32) & 0xff_ffff) as usize, (data & 0xffff_ffff) as usize);
        let (res, flags) = (cqe.result(), cqe.flags());
        match kind {
            KIND_SEND => {
                self.flows[i].free.push(slot);
                if res >= 0 {
                    rec.counters.bytes_sent += res as u64;
                } else if !matches!(-res, libc::ECANCELED) {
                    // ECONNREFUSED after an ICMP port unreachable, ENOBUFS, ...: the
                    // datagram did not go; it will time out and count as lost.
                    rec.counters.socket_errors += 1;
                }
                self.pump(i, now);
            }
            KIND_RECV => self.on_recv(i, res, flags, now, clock, rec, scheduling),
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_recv(
        &mut self,
        i: usize,
        res: i32,
        flags: u32,
        now: u64,
        clock: &mut Clock,
        rec: &mut Recorder,
        scheduling: bool,
    ) {
        // A buffer id the ring refuses is not data we can trust: the reply is ignored.
        let bid = cqueue::buffer_select(flags).and_then(|bid| self.buf_ring.take(bid).ok());
        if !cqueue::more(flags) {
            self.flows[i].recv_armed = false;
        }
        match (res, &bid) {
            (n, Some(buf)) if n >= 0 => {
                rec.counters.bytes_received += n as u64;
                self.on_reply(i, buf, n as u32, now, clock, rec, scheduling);
            }
            (n, _) if n < 0 => match -n {
                libc::ENOBUFS => self.flows[i].starved = true,
                libc::ECANCELED => {}
                // ECONNREFUSED: the target's port is closed (ICMP); keep listening, the
                // datagrams will time out as lost.
                libc::ECONNREFUSED => rec.counters.socket_errors += 1,
                _ => {
                    rec.counters.socket_errors += 1;
                    self.flows[i].dead = true;
                }
            },
            _ => {}
        }
        if let Some(buf) = bid {
            let _ = self.buf_ring.give_back(buf);
        }
        if !self.flows[i].recv_armed && !self.flows[i].dead && !self.flows[i].starved {
            self.arm_recv(i);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_reply(
        &mut self,
        i: usize,
        buf: &ringecho::ring::Buf,
        n: u32,
        now: u64,
        clock: &mut Clock,
        rec: &mut Recorder,
        scheduling: bool,
    ) {
        let data = self.buf_ring.bytes(buf, n);
        let f = &mut self.flows[i];
        let Some(h) = Header::decode(data).filter(|h| h.flow == f.id) else {
            rec.counters.garbage += 1;
            return;
        };
        if h.seq >= f.next_seq {
            rec.counters.garbage += 1;
            return;
        }
        if h.seq < f.base {
            if f.lost.remove(&h.seq) {
                rec.counters.late += 1;
            } else {
                rec.counters.duplicates += 1;
            }
            return;
        }
        let (id, highest) = (f.id, f.highest_answered);
        let entry = f.entry(h.seq).expect("base ≤ seq < next_seq");
        match *entry {
            Entry::Answered => rec.counters.duplicates += 1,
            Entry::Lost => {
                rec.counters.late += 1;
                *entry = Entry::Answered;
            }
            Entry::Waiting { intended, sent, size } => {
                *entry = Entry::Answered;
                let intact = n == size
                    && (!self.verify
                        || self.pattern.mismatches(payload_offset(id, h.seq), &data[header::LEN..]) == 0);
                if highest.is_some_and(|hi| hi > h.seq) {
                    rec.counters.reordered += 1;
                }
                let f = &mut self.flows[i];
                f.highest_answered = Some(highest.map_or(h.seq, |hi| hi.max(h.seq)));
                if intact {
                    rec.complete(clock, now, intended, sent.unwrap_or(intended), u64::from(size));
                } else if intended >= clock.warm_end {
                    rec.counters.mismatched_messages += 1;
                    rec.counters.mismatched_bytes += u64::from(n.abs_diff(size)).max(1);
                }
                if clock.interval.is_none() && scheduling {
                    self.schedule(i, now, clock, rec);
                    self.pump(i, now);
                }
            }
        }
        self.flows[i].trim();
    }

    /// Marks datagrams unanswered for `timeout` as lost (oldest first: sequences are sent
    /// in order).
    fn expire(
        &mut self,
        i: usize,
        now: u64,
        timeout: u64,
        clock: &mut Clock,
        rec: &mut Recorder,
        scheduling: bool,
    ) {
        let mut replaced = 0;
        let f = &mut self.flows[i];
        for e in f.entries.iter_mut() {
            match *e {
                Entry::Waiting { sent: Some(sent), intended, .. } if sent + timeout <= now => {
                    *e = Entry::Lost;
                    if intended >= clock.warm_end {
                        rec.counters.lost += 1;
                    }
                    replaced += 1;
                }
                Entry::Waiting { .. } => break,
                _ => {}
            }
        }
        f.trim();
        if clock.interval.is_none() && scheduling {
            for _ in 0..replaced {
                self.schedule(i, now, clock, rec);
            }
            self.pump(i, now);
        }
    }
}
