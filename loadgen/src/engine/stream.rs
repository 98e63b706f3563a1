//! The stream engine (TCP and Unix stream): per connection, a FIFO of messages matched to
//! replies by counting bytes in order, so replies may arrive in any fragmentation.
//!
//! Memory the kernel sees: sends point into the worker's immutable [`Pattern`]; receives
//! land in the worker's provided buffer ring. Both outlive the ring (declared first), and
//! the worker cancels and waits out every operation before it returns.

use super::{
    Clock, Recorder, RunError, WorkerArgs, WorkerResult, count_connect_error, thread_cpu, wait_budget,
};
use crate::payload::{MAX_SEND, Pattern};
use crate::target::Target;
use io_uring::{cqueue, opcode, squeue, types};
use ringecho::ring::{self, BufRing, Driver, PushError};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(10);
const KIND_RECV: u64 = 1;
const KIND_SEND: u64 = 2;
const KIND_CONNECT: u64 = 4;
/// Most messages queued on one connection in open loop before new ones are refused
/// (counted as `backlog_overflow`): the run says the target fell behind instead of
/// growing without bound.
const MAX_BACKLOG: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
struct Msg {
    start: u64,
    end: u64,
    intended: u64,
    sent: u64,
    corrupt: bool,
}

struct Conn {
    fd: OwnedFd,
    phase: u64,
    /// Bytes scheduled, handed to the kernel, confirmed sent, and received.
    scheduled: u64,
    submitted: u64,
    received: u64,
    fifo: VecDeque<Msg>,
    /// Index in `fifo` of the first message with no byte submitted yet.
    first_unsent: usize,
    send_in_flight: bool,
    in_flight_len: u32,
    recv_armed: bool,
    starved: bool,
    dead: bool,
    /// Churn: messages scheduled since this connection was opened.
    since_connect: u64,
    /// Churn: our write side is shut; the server's EOF ends the connection.
    churning: bool,
    /// Churn: open a new connection once nothing of the old one is in flight.
    reconnect: bool,
    /// Churn: when the connect in flight started (ns).
    connect_started: Option<u64>,
    /// Churn: connects that failed in a row; at three the connection is given up.
    connect_failures: u32,
}

fn token(kind: u64, conn: usize) -> u64 {
    kind << 32 | conn as u64
}

fn connect(target: &Target, timeout: Duration) -> std::io::Result<OwnedFd> {
    match target {
        Target::Tcp(addr) => {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(*addr),
                socket2::Type::STREAM.cloexec(),
                None,
            )?;
            sock.connect_timeout(&(*addr).into(), timeout)?;
            sock.set_tcp_nodelay(true)?;
            Ok(sock.into())
        }
        Target::Unix(path) => Ok(std::os::unix::net::UnixStream::connect(path)?.into()),
        _ => Err(std::io::Error::other("not a stream target")),
    }
}

pub(super) fn run(args: WorkerArgs<'_>) -> Result<WorkerResult, RunError> {
    let shared = args.shared;
    let plan = &shared.plan;
    let pattern = Pattern::new(plan.seed);
    let mut rec = Recorder::new(args.index);
    let mut clock = Clock::new(shared, args.index, args.workers);

    let rings = super::new_ring(1024);

    let mut conns = Vec::new();
    let mut first_error = None;
    for i in 0..args.conns {
        let t0 = Instant::now();
        match connect(&shared.target, plan.connect_timeout) {
            Ok(fd) => {
                crate::hist::record(&mut rec.connect, t0.elapsed().as_nanos() as u64);
                conns.push(Conn {
                    fd,
                    phase: Pattern::phase(u64::from(args.first_conn + i)),
                    scheduled: 0,
                    submitted: 0,
                    received: 0,
                    fifo: VecDeque::new(),
                    first_unsent: 0,
                    send_in_flight: false,
                    in_flight_len: 0,
                    recv_armed: false,
                    starved: false,
                    dead: false,
                    since_connect: 0,
                    churning: false,
                    reconnect: false,
                    connect_started: None,
                    connect_failures: 0,
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
    if conns.is_empty() {
        let mut result = rec.finish(&mut clock, thread_cpu());
        result.connect_error = first_error;
        return Ok(result);
    }
    let connected = conns.len();

    let addr = match &shared.target {
        Target::Tcp(a) => socket2::SockAddr::from(*a),
        Target::Unix(p) => {
            socket2::SockAddr::unix(p).map_err(|e| RunError::Setup(format!("{}: {e}", p.display())))?
        }
        _ => return Err(RunError::Setup("not a stream target".into())),
    };
    let (mut driver, buf_ring) = rings.split();
    let mut w = Stream {
        driver: &mut driver,
        buf_ring,
        push_error: None,
        pattern: &pattern,
        conns,
        verify: plan.verify,
        warm_end: clock.warm_end,
        churn: plan.churn.map(u64::from),
        addr: &addr,
    };
    let mut now = clock.now();
    for i in 0..w.conns.len() {
        w.arm_recv(i);
        for _ in 0..clock.depth {
            w.schedule(i, now, &mut clock, &mut rec);
        }
        w.pump_send(i, now);
    }
    let mut next_conn = 0usize;
    let mut stopping_since: Option<u64> = None;
    loop {
        w.buf_ring.publish();
        rec.publish(&shared.live);
        let interrupted = shared.interrupted.load(Ordering::Relaxed);
        if stopping_since.is_none()
            && (now >= clock.stop_at
                || clock.budget == Some(0)
                || interrupted
                || w.conns.iter().all(Conn::gone))
        {
            stopping_since = Some(now);
        }
        if let Some(since) = stopping_since {
            let drained = w.conns.iter().all(|c| c.dead || c.fifo.is_empty());
            if drained || interrupted || now >= since + plan.drain.as_nanos() as u64 {
                break;
            }
        }
        let wait = wait_budget(&clock, now, TICK, stopping_since.is_some());
        if let Some(e) = w.push_error.take() {
            return Err(RunError::Setup(e.to_string()));
        }
        w.driver.wait(1, Some(wait)).map_err(|e| RunError::Setup(format!("io_uring_enter: {e}")))?;
        now = clock.now();
        while let Some(cqe) = w.driver.completion() {
            w.dispatch(cqe, now, &mut clock, &mut rec, stopping_since.is_none());
        }
        // Open loop: hand out every message that has fallen due.
        if let Some(interval) = clock.interval {
            while stopping_since.is_none() && clock.next_due <= now as f64 && clock.budget != Some(0) {
                let Some(i) = w.next_live(&mut next_conn) else { break };
                let due = clock.next_due as u64;
                clock.next_due += interval;
                if w.conns[i].fifo.len() >= MAX_BACKLOG {
                    rec.counters.backlog_overflow += 1;
                    continue;
                }
                w.schedule(i, due, &mut clock, &mut rec);
                w.pump_send(i, now);
            }
        }
        for i in 0..w.conns.len() {
            if w.conns[i].starved {
                w.conns[i].starved = false;
                w.arm_recv(i);
            }
            let c = &w.conns[i];
            if c.reconnect && !c.send_in_flight && !c.recv_armed && stopping_since.is_none() {
                w.reconnect(i, now, &mut rec);
            }
        }
    }
    for c in &w.conns {
        if !c.dead {
            rec.counters.unanswered_at_end += measured(&c.fifo, clock.warm_end);
        }
    }
    super::cancel_all(w.driver, w.buf_ring);
    let cpu = thread_cpu();
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

impl Conn {
    /// Dead for good: failed, not between two churn connections.
    fn gone(&self) -> bool {
        self.dead && !self.reconnect && !self.churning && self.connect_started.is_none()
    }
}

/// Messages in `fifo` due after the warm-up.
fn measured(fifo: &VecDeque<Msg>, warm_end: u64) -> u64 {
    fifo.iter().filter(|m| m.intended >= warm_end).count() as u64
}

struct Stream<'a, 'd> {
    driver: &'a mut Driver<'d>,
    buf_ring: &'a mut BufRing,
    /// The first push the ring refused: the run stops with an error after this turn.
    push_error: Option<PushError>,
    pattern: &'a Pattern,
    conns: Vec<Conn>,
    verify: bool,
    /// End of the warm-up (ns): messages due before it are not counted, failed or not.
    warm_end: u64,
    churn: Option<u64>,
    /// The target's address, for churn's connects (it outlives every connect op).
    addr: &'a socket2::SockAddr,
}

impl Stream<'_, '_> {
    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: sends point into `pattern` and receives into `buf_ring`, both of which
        // outlive the ring; `cancel_all` waits for every operation before they go.
        if let Err(e) = unsafe { self.driver.push(&entry) } {
            self.push_error.get_or_insert(e);
        }
    }

    fn next_live(&self, rr: &mut usize) -> Option<usize> {
        super::next_live(self.conns.len(), |i| self.conns[i].dead, rr)
    }

    fn schedule(&mut self, i: usize, intended: u64, clock: &mut Clock, rec: &mut Recorder) {
        if let Some(m) = self.churn {
            let c = &mut self.conns[i];
            if c.since_connect >= m || c.dead {
                return;
            }
            c.since_connect += 1;
        }
        if !clock.admit(intended, &mut rec.counters) {
            return;
        }
        let size = u64::from(clock.next_size());
        let c = &mut self.conns[i];
        c.fifo.push_back(Msg {
            start: c.scheduled,
            end: c.scheduled + size,
            intended,
            sent: 0,
            corrupt: false,
        });
        c.scheduled += size;
    }

    fn arm_recv(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.recv_armed || c.dead {
            return;
        }
        c.recv_armed = true;
        let fd = types::Fd(c.fd.as_raw_fd());
        let group = self.buf_ring.group();
        self.push(ring::recv_multishot(fd, group, None).user_data(token(KIND_RECV, i)));
    }

    fn pump_send(&mut self, i: usize, now: u64) {
        let c = &mut self.conns[i];
        if c.send_in_flight || c.dead || c.submitted >= c.scheduled {
            return;
        }
        let len = (c.scheduled - c.submitted).min(MAX_SEND as u64) as usize;
        let data = self.pattern.slice(c.phase + c.submitted, len);
        let end = c.submitted + len as u64;
        while let Some(m) = c.fifo.get_mut(c.first_unsent) {
            if m.start >= end {
                break;
            }
            m.sent = now;
            c.first_unsent += 1;
        }
        c.send_in_flight = true;
        c.in_flight_len = len as u32;
        let entry = opcode::Send::new(types::Fd(c.fd.as_raw_fd()), data.as_ptr(), len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(KIND_SEND, i));
        c.submitted = end;
        self.push(entry);
    }

    fn dispatch(
        &mut self,
        cqe: cqueue::Entry,
        now: u64,
        clock: &mut Clock,
        rec: &mut Recorder,
        scheduling: bool,
    ) {
        let (kind, i) = (cqe.user_data() >> 32, (cqe.user_data() & 0xffff_ffff) as usize);
        let (res, flags) = (cqe.result(), cqe.flags());
        match kind {
            KIND_SEND => self.on_send(i, res, now, rec),
            KIND_RECV => self.on_recv(i, res, flags, now, clock, rec, scheduling),
            KIND_CONNECT => self.on_connected(i, res, now, clock, rec, scheduling),
            _ => {}
        }
    }

    fn on_send(&mut self, i: usize, res: i32, now: u64, rec: &mut Recorder) {
        let c = &mut self.conns[i];
        c.send_in_flight = false;
        if res < 0 {
            self.fail(i, -res, rec);
            return;
        }
        rec.counters.bytes_sent += res as u64;
        // A short send: hand the rest to the kernel again.
        c.submitted -= u64::from(c.in_flight_len).saturating_sub(res as u64);
        c.in_flight_len = 0;
        self.pump_send(i, now);
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
            self.conns[i].recv_armed = false;
        }
        if res > 0 {
            if let Some(buf) = &bid {
                self.on_data(i, buf, res as u32, now, clock, rec, scheduling);
            }
        } else if res == 0 {
            let c = &mut self.conns[i];
            if c.churning {
                // The end churn asked for: open the next connection.
                c.churning = false;
                c.dead = true;
                c.reconnect = true;
            } else if !c.dead {
                rec.counters.unexpected_eof += 1;
                rec.counters.failed_messages += c.fifo.len() as u64;
                c.fifo.clear();
                c.dead = true;
            }
        } else {
            match -res {
                libc::ENOBUFS => self.conns[i].starved = true,
                libc::ECANCELED => {}
                errno => self.fail(i, errno, rec),
            }
        }
        if let Some(buf) = bid {
            let _ = self.buf_ring.give_back(buf);
        }
        if !self.conns[i].recv_armed && !self.conns[i].dead && !self.conns[i].starved {
            self.arm_recv(i);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_data(
        &mut self,
        i: usize,
        buf: &ringecho::ring::Buf,
        n: u32,
        now: u64,
        clock: &mut Clock,
        rec: &mut Recorder,
        scheduling: bool,
    ) {
        rec.counters.bytes_received += u64::from(n);
        let data = self.buf_ring.bytes(buf, n);
        let c = &mut self.conns[i];
        // Only bytes we have handed to the kernel can be echoes; the rest is the server
        // talking out of turn.
        let expected = c.submitted.saturating_sub(c.received);
        let valid = (u64::from(n)).min(expected) as usize;
        rec.counters.unsolicited_bytes += u64::from(n) - valid as u64;
        let mut pos = 0usize;
        let mut completed = 0u32;
        while pos < valid {
            let Some(front) = c.fifo.front_mut() else { break };
            let take = ((front.end - c.received) as usize).min(valid - pos);
            if self.verify {
                let bad = self.pattern.mismatches(c.phase + c.received, &data[pos..pos + take]);
                if bad > 0 {
                    if front.intended >= self.warm_end {
                        rec.counters.mismatched_bytes += bad as u64;
                    }
                    front.corrupt = true;
                }
            }
            pos += take;
            c.received += take as u64;
            if c.received == front.end {
                let m = c.fifo.pop_front().expect("front exists");
                c.first_unsent = c.first_unsent.saturating_sub(1);
                if m.corrupt {
                    if m.intended >= self.warm_end {
                        rec.counters.mismatched_messages += 1;
                    }
                } else {
                    rec.complete(clock, now, m.intended, m.sent, m.end - m.start);
                }
                completed += 1;
            }
        }
        // Closed loop: each answered message frees a slot for the next.
        if clock.interval.is_none() && scheduling {
            for _ in 0..completed {
                self.schedule(i, now, clock, rec);
            }
            self.pump_send(i, now);
        }
        // Churn: all M answered; shut our side, and the server's EOF ends it.
        let c = &mut self.conns[i];
        if self.churn.is_some_and(|m| c.since_connect >= m) && c.fifo.is_empty() && !c.churning {
            c.churning = true;
            let _ = socket2::SockRef::from(&c.fd).shutdown(std::net::Shutdown::Write);
        }
    }

    /// Churn: replaces connection `i`'s socket with a new one and connects it.
    fn reconnect(&mut self, i: usize, now: u64, rec: &mut Recorder) {
        let domain = self.addr.domain();
        let sock = match socket2::Socket::new(domain, socket2::Type::STREAM.cloexec(), None) {
            Ok(s) => s,
            Err(e) => {
                super::count_connect_error(&mut rec.counters, &e);
                return;
            }
        };
        if domain != socket2::Domain::UNIX {
            let _ = sock.set_tcp_nodelay(true);
        }
        let c = &mut self.conns[i];
        c.fd = sock.into();
        c.reconnect = false;
        c.scheduled = 0;
        c.submitted = 0;
        c.received = 0;
        c.first_unsent = 0;
        c.since_connect = 0;
        c.fifo.clear();
        c.connect_started = Some(now);
        let entry =
            opcode::Connect::new(types::Fd(c.fd.as_raw_fd()), self.addr.as_ptr().cast(), self.addr.len())
                .build()
                .user_data(token(KIND_CONNECT, i));
        self.push(entry);
    }

    fn on_connected(
        &mut self,
        i: usize,
        res: i32,
        now: u64,
        clock: &mut Clock,
        rec: &mut Recorder,
        scheduling: bool,
    ) {
        let c = &mut self.conns[i];
        let started = c.connect_started.take().unwrap_or(now);
        if res < 0 {
            super::count_connect_error(&mut rec.counters, &std::io::Error::from_raw_os_error(-res));
            c.connect_failures += 1;
            // Retry, but not for ever: a target that went away must not keep the run alive.
            c.reconnect = c.connect_failures < 3;
            return;
        }
        c.connect_failures = 0;
        if started >= clock.warm_end {
            rec.counters.connects += 1;
            crate::hist::record(&mut rec.connect, now.saturating_sub(started));
        }
        c.dead = false;
        self.arm_recv(i);
        if scheduling {
            for _ in 0..clock.depth {
                self.schedule(i, now, clock, rec);
            }
            self.pump_send(i, now);
        }
    }

    fn fail(&mut self, i: usize, errno: i32, rec: &mut Recorder) {
        let c = &mut self.conns[i];
        if c.dead {
            return;
        }
        match errno {
            libc::ECONNRESET | libc::EPIPE => rec.counters.reset += 1,
            _ => rec.counters.socket_errors += 1,
        }
        rec.counters.failed_messages += measured(&c.fifo, self.warm_end);
        c.fifo.clear();
        c.dead = true;
    }
}
