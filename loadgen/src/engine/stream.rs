//! The stream transport (TCP and Unix stream): per connection, a FIFO of messages matched
//! to replies by counting bytes in order, so replies may arrive in any fragmentation.
//! `--verify` checks every echoed byte against the pattern; `--churn` closes each
//! connection after its messages are answered and opens the next in its place.
//!
//! Invariant: on every connection `received ≤ submitted ≤ scheduled` (stream bytes), and
//! the FIFO holds exactly the messages not answered in full, oldest first; bytes beyond
//! `submitted` are the server talking out of turn, never an echo.
//!
//! Memory the kernel sees: sends point into the transport's [`Pattern`], churn's connects
//! into its boxed target address, receives into the worker's buffer ring; the worker keeps
//! all of them until the kernel has answered (see [`super::transport`]).

mod conn;

use super::clock::Clock;
use super::stamps::Probe;
use super::token::{Op, Token};
use super::transport::{Ctx, Received, Transport};
use super::types::{RunError, Shared};
use crate::connect::Dial;
use crate::payload::{MAX_SEND, Pattern};
use crate::target::Target;
use conn::{
    Answered, CONNECT_ATTEMPTS, Conn, Msg, Read, StreamProbe, dial, enable_stamps, measured, stamp_kind,
};
use io_uring::{cqueue, opcode, types};
use ringecho::ring::{self, Buf};
use ringecho::tstamp::{self, SocketKind, Support};
use std::os::fd::{AsFd, AsRawFd};

/// A worker's stream connections.
pub(super) struct Stream {
    pattern: Pattern,
    conns: Vec<Conn>,
    verify: bool,
    churn: Option<u64>,
    /// Each message is its own send (the open loop, unless `--coalesce`).
    one_per_send: bool,
    /// The target's address, for churn's connects (boxed: the kernel reads it where it is).
    addr: Box<socket2::SockAddr>,
    /// Churn's new sockets: the stamps to turn on (none with `--user-timestamps`).
    stamp_kind: Option<SocketKind>,
}

impl Transport for Stream {
    const BUFFERS: u16 = 1024;

    type Conn = Conn;

    type Keep = ();

    fn dial(shared: &Shared, _: u32) -> std::io::Result<Dial<()>> {
        dial(&shared.target)
    }

    fn connected(shared: &Shared, id: u32, socket: socket2::Socket, (): ()) -> std::io::Result<Conn> {
        if matches!(shared.target, Target::Tcp(_)) {
            socket.set_tcp_nodelay(true)?;
        }
        let stamps = enable_stamps(shared, &socket);
        Ok(Conn::new(socket.into(), id, stamps))
    }

    fn new(shared: &Shared, _: &Clock, conns: Vec<Conn>) -> Result<Stream, RunError> {
        let addr = match &shared.target {
            Target::Tcp(a) => socket2::SockAddr::from(*a),
            Target::Unix(p) => socket2::SockAddr::unix(p)
                .map_err(|error| RunError::Io { step: format!("the address {}", p.display()), error })?,
            t => {
                let error = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a stream target");
                return Err(RunError::Io { step: t.to_string(), error });
            }
        };
        let plan = &shared.plan;
        Ok(Stream {
            pattern: Pattern::new(plan.seed),
            conns,
            verify: plan.verify,
            churn: plan.churn.map(u64::from),
            one_per_send: matches!(plan.model, crate::plan::Model::Open { .. }) && !plan.coalesce,
            addr: Box::new(addr),
            stamp_kind: stamp_kind(shared),
        })
    }

    fn conns(&self) -> usize {
        self.conns.len()
    }

    fn is_dead(&self, i: usize) -> bool {
        self.conns[i].dead
    }

    fn stamps_arrivals(&self) -> bool {
        self.conns.iter().all(|c| c.stamps.rx)
    }

    fn all_gone(&self) -> bool {
        self.conns.iter().all(Conn::gone)
    }

    fn drained(&self) -> bool {
        self.conns.iter().all(|c| c.dead || c.fifo.is_empty())
    }

    fn send_blocked(&self, i: usize) -> bool {
        let c = &self.conns[i];
        c.send_in_flight && c.submitted < c.scheduled && !c.dead
    }

    fn joins_sends(&self) -> bool {
        !self.one_per_send
    }

    fn queued(&self, i: usize) -> usize {
        self.conns[i].fifo.len()
    }

    fn unanswered(&self, warm_end: u64) -> u64 {
        self.conns.iter().filter(|c| !c.dead).map(|c| measured(&c.fifo, warm_end)).sum()
    }

    fn arm_recv(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let c = &mut self.conns[i];
        if c.recv_armed || c.dead {
            return;
        }
        c.recv_armed = true;
        let fd = types::Fd(c.fd.as_raw_fd());
        let entry = if c.stamps.rx {
            opcode::RecvMsgMulti::new(fd, &*c.recv_msghdr, cx.buf_ring.group()).build()
        } else {
            ring::recv_multishot(fd, cx.buf_ring.group(), None)
        };
        let entry = entry.user_data(Token::new(Op::Recv, i, 0).encode());
        // SAFETY: a receive lands in the worker's buffer ring, which outlives the ring;
        // the kernel reads the connection's boxed msghdr, which the transport owns until
        // the last completion.
        unsafe { cx.push(&entry) };
    }

    fn schedule(&mut self, cx: &mut Ctx<'_>, i: usize, intended: u64) {
        if let Some(m) = self.churn {
            let c = &mut self.conns[i];
            if c.since_connect >= m || c.dead {
                return;
            }
            c.since_connect += 1;
        }
        let Some(size) = cx.admit(intended) else { return };
        let c = &mut self.conns[i];
        let size = u64::from(size);
        c.fifo.push_back(Msg {
            start: c.scheduled,
            end: c.scheduled + size,
            intended,
            sent: 0,
            corrupt: false,
        });
        c.scheduled += size;
    }

    fn pump(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let c = &mut self.conns[i];
        if c.send_in_flight || c.dead || c.submitted >= c.scheduled {
            return;
        }
        let mut len = (c.scheduled - c.submitted).min(MAX_SEND as u64);
        if self.one_per_send {
            // Up to the end of the message that byte `submitted` belongs to: the one
            // partly sent (a short send), else the first not sent at all.
            let partly =
                c.first_unsent.checked_sub(1).and_then(|k| c.fifo.get(k)).filter(|m| m.end > c.submitted);
            if let Some(m) = partly.or_else(|| c.fifo.get(c.first_unsent)) {
                len = len.min(m.end - c.submitted);
            }
        }
        let len = len as usize;
        let data = self.pattern.slice(c.phase + c.submitted, len);
        let end = c.submitted + len as u64;
        // The message this send ends, if it ends one: a probe candidate.
        let mut ends = None;
        while let Some(m) = c.fifo.get_mut(c.first_unsent) {
            if m.start >= end {
                break;
            }
            m.sent = cx.now;
            if m.end == end {
                ends = Some(m.intended);
            }
            c.first_unsent += 1;
        }
        c.send_in_flight = true;
        c.in_flight_len = len as u32;
        c.submitted = end;
        cx.rec.counters.sends += 1;
        let fd = types::Fd(c.fd.as_raw_fd());
        let probe = match ends {
            Some(intended) if c.stamps.tx && c.probe.is_none() && cx.stamps.probe(cx.now) => {
                let times = Probe { user_send: cx.now, ..Probe::default() };
                c.probe = Some(StreamProbe { end, intended, times, sent: false });
                true
            }
            _ => false,
        };
        let entry = if probe {
            // The send stamp's key is the stream offset of the send's last byte.
            let s = &mut *c.stamped_send;
            s.iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: len };
            s.msghdr.msg_iov = &mut s.iov;
            s.msghdr.msg_iovlen = 1;
            s.msghdr.msg_control = s.control.as_bytes().as_ptr() as *mut libc::c_void;
            s.msghdr.msg_controllen = s.control.as_bytes().len() as _;
            opcode::SendMsg::new(fd, &s.msghdr).flags(libc::MSG_NOSIGNAL as u32).build()
        } else {
            opcode::Send::new(fd, data.as_ptr(), len as u32).flags(libc::MSG_NOSIGNAL).build()
        };
        // SAFETY: the send reads from `self.pattern`, heap memory this transport owns and
        // never writes (a probe also reads the connection's boxed header, iovec and control
        // messages, untouched until its completion: one send is in flight at a time); the
        // worker frees the transport only after the last completion.
        unsafe { cx.push(&entry.user_data(Token::new(Op::Send, i, 0).encode())) };
    }

    fn complete(&mut self, cx: &mut Ctx<'_>, token: Token, res: i32, flags: u32) {
        let i = token.conn();
        match token.op {
            Op::Send => self.on_sent(cx, i, res),
            Op::Recv => self.on_recv(cx, i, res, flags),
            Op::Connect => self.on_connected(cx, i, res),
            Op::Cancel => {}
        }
    }

    fn housekeeping(&mut self, cx: &mut Ctx<'_>) {
        for i in 0..self.conns.len() {
            self.settle_probe(cx, i);
            if self.conns[i].starved {
                self.conns[i].starved = false;
                self.arm_recv(cx, i);
            }
            let c = &self.conns[i];
            if c.reconnect && !c.send_in_flight && !c.recv_armed && cx.scheduling {
                self.reconnect(cx, i);
            }
        }
    }
}

impl Stream {
    fn on_sent(&mut self, cx: &mut Ctx<'_>, i: usize, res: i32) {
        let c = &mut self.conns[i];
        c.send_in_flight = false;
        if let Some(p) = &mut c.probe {
            // The probe's send (the only one in flight when it went): its stamp, if the
            // kernel took one, is in the error queue now.
            p.sent = true;
        }
        if res < 0 {
            self.fail(cx, i, -res);
            return;
        }
        cx.rec.counters.bytes_sent += res as u64;
        // A short send: hand the rest to the kernel again.
        c.submitted -= u64::from(c.in_flight_len).saturating_sub(res as u64);
        c.in_flight_len = 0;
        self.pump(cx, i);
    }

    fn on_recv(&mut self, cx: &mut Ctx<'_>, i: usize, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.conns[i].recv_armed = false;
        }
        cx.received(res, flags, |cx, what| match what {
            Received::Data(buf, n) => {
                if self.on_data(cx, i, buf, n) == Read::End {
                    self.on_eof(cx, i);
                }
            }
            Received::Eof => self.on_eof(cx, i),
            Received::Starved => self.conns[i].starved = true,
            Received::Cancelled => {}
            Received::Failed(errno) => self.fail(cx, i, errno),
        });
        let c = &self.conns[i];
        if !c.recv_armed && !c.dead && !c.starved {
            self.arm_recv(cx, i);
        }
    }

    /// The peer closed its side.
    fn on_eof(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let c = &mut self.conns[i];
        if c.churning {
            // The end churn asked for: open the next connection.
            c.churning = false;
            c.dead = true;
            c.reconnect = true;
        } else if !c.dead {
            if !c.fifo.is_empty() {
                cx.rec.counters.unexpected_eof += 1;
            }
            cx.rec.counters.conns_lost += 1;
            cx.rec.counters.failed_messages += measured(&c.fifo, cx.clock.warm_end);
            c.fifo.clear();
            c.dead = true;
            Self::drop_probe(cx, c);
        }
    }

    /// Matches `n` received bytes to the connection's messages, oldest first. A
    /// recvmsg's end of stream is a buffer holding its header and no bytes: that read is
    /// the [`Read::End`].
    fn on_data(&mut self, cx: &mut Ctx<'_>, i: usize, buf: &Buf, n: u32) -> Read {
        let bytes = cx.buf_ring.bytes(buf, n);
        let c = &mut self.conns[i];
        // With stamps, the read is a recvmsg: header, control messages, then the bytes.
        let (data, arrival) = if c.stamps.rx {
            match io_uring::types::RecvMsgOut::parse(bytes, &c.recv_msghdr) {
                Ok(out) => {
                    let payload = out.payload_data();
                    if payload.is_empty() {
                        return Read::End;
                    }
                    (&bytes[bytes.len() - payload.len()..], cx.stamps.arrival(out.control_data(), cx.now))
                }
                // Cannot happen for a buffer the kernel filled for this msghdr; a read
                // that could not be taken apart is not data we can place.
                Err(()) => {
                    cx.rec.counters.buf_errors += 1;
                    return Read::Data;
                }
            }
        } else {
            (bytes, None)
        };
        let n = data.len() as u32;
        cx.rec.counters.bytes_received += u64::from(n);
        // Only bytes we have handed to the kernel can be echoes; the rest is the server
        // talking out of turn.
        let expected = c.submitted.saturating_sub(c.received);
        let valid = (u64::from(n)).min(expected) as usize;
        cx.rec.counters.unsolicited_bytes += u64::from(n) - valid as u64;
        let warm_end = cx.clock.warm_end;
        let mut pos = 0usize;
        let mut completed = 0u32;
        while pos < valid {
            let Some(front) = c.fifo.front_mut() else { break };
            let take = ((front.end - c.received) as usize).min(valid - pos);
            if self.verify {
                let bad = self.pattern.mismatches(c.phase + c.received, &data[pos..pos + take]);
                if bad > 0 {
                    if front.intended >= warm_end {
                        cx.rec.counters.mismatched_bytes += bad as u64;
                    }
                    front.corrupt = true;
                }
            }
            pos += take;
            c.received += take as u64;
            if c.received == front.end {
                let m = c.fifo.pop_front().expect("front exists");
                c.first_unsent = c.first_unsent.saturating_sub(1);
                let to = Answered { rec: &mut cx.rec, clock: &cx.clock, stamps: &mut cx.stamps, now: cx.now };
                c.answered(to, m, arrival);
                completed += 1;
            }
        }
        // Closed loop: each answered message frees a slot for the next.
        if cx.refills() {
            let now = cx.now;
            for _ in 0..completed {
                self.schedule(cx, i, now);
            }
            self.pump(cx, i);
        }
        // Churn: all M answered; shut our side, and the server's EOF ends it.
        let c = &mut self.conns[i];
        if self.churn.is_some_and(|m| c.since_connect >= m) && c.fifo.is_empty() && !c.churning {
            c.churning = true;
            // A socket that cannot shut down is failing anyway: its receive ends it.
            let _ = socket2::SockRef::from(&c.fd).shutdown(std::net::Shutdown::Write);
        }
        Read::Data
    }

    /// Connection `i`'s probe: its send stamp read once its send has gone, and its parts
    /// recorded once its reply has been seen (a send stamp still missing then is
    /// counted as missing).
    fn settle_probe(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let c = &mut self.conns[i];
        let Some(p) = &mut c.probe else { return };
        if p.sent && p.times.tx.is_none() {
            let key = (p.end.wrapping_sub(1)) as u32;
            p.times.tx = cx.stamps.read_send_stamp(c.fd.as_fd(), key, cx.now);
        }
        if p.times.seen.is_some() {
            let p = c.probe.take().expect("a probe");
            cx.rec.split(&cx.clock, p.intended, &p.times);
        }
    }

    /// Gives connection `i`'s probe up (its message will not be answered here).
    fn drop_probe(cx: &mut Ctx<'_>, c: &mut Conn) {
        if c.probe.take().is_some() {
            cx.rec.breakdown.tally.probes_missing += 1;
        }
    }

    /// Churn: replaces connection `i`'s socket with a new one and connects it.
    fn reconnect(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let domain = self.addr.domain();
        let sock = match socket2::Socket::new(domain, socket2::Type::STREAM.cloexec(), None) {
            Ok(s) => s,
            Err(e) => {
                cx.rec.connect_failed(&e);
                return;
            }
        };
        if domain != socket2::Domain::UNIX {
            // Best effort, as the first connects: Nagle only slows the answers down.
            let _ = sock.set_tcp_nodelay(true);
        }
        let c = &mut self.conns[i];
        Self::drop_probe(cx, c);
        c.stamps = self.stamp_kind.map_or(Support::default(), |kind| tstamp::enable(sock.as_fd(), kind));
        c.fd = sock.into();
        c.reconnect = false;
        c.scheduled = 0;
        c.submitted = 0;
        c.received = 0;
        c.first_unsent = 0;
        c.since_connect = 0;
        c.fifo.clear();
        c.connect_started = Some(cx.now);
        let entry =
            opcode::Connect::new(types::Fd(c.fd.as_raw_fd()), self.addr.as_ptr().cast(), self.addr.len())
                .build()
                .user_data(Token::new(Op::Connect, i, 0).encode());
        // SAFETY: the address is boxed in this transport, which the worker frees only after
        // the last completion.
        unsafe { cx.push(&entry) };
    }

    fn on_connected(&mut self, cx: &mut Ctx<'_>, i: usize, res: i32) {
        let c = &mut self.conns[i];
        let started = c.connect_started.take().unwrap_or(cx.now);
        if res < 0 {
            cx.rec.connect_failed(&std::io::Error::from_raw_os_error(-res));
            c.connect_failures += 1;
            c.reconnect = c.connect_failures < CONNECT_ATTEMPTS;
            if !c.reconnect {
                // Given up: a connection the plan needs is gone.
                cx.rec.counters.conns_lost += 1;
            }
            return;
        }
        c.connect_failures = 0;
        if started >= cx.clock.warm_end {
            cx.rec.counters.connects += 1;
            cx.rec.connected(cx.now.saturating_sub(started));
        }
        c.dead = false;
        self.arm_recv(cx, i);
        if cx.scheduling {
            self.fill(cx, i);
        }
    }

    fn fail(&mut self, cx: &mut Ctx<'_>, i: usize, errno: i32) {
        let c = &mut self.conns[i];
        if c.dead {
            return;
        }
        match errno {
            libc::ECONNRESET | libc::EPIPE => cx.rec.counters.reset += 1,
            _ => cx.rec.counters.socket_errors += 1,
        }
        cx.rec.counters.conns_lost += 1;
        cx.rec.counters.failed_messages += measured(&c.fifo, cx.clock.warm_end);
        c.fifo.clear();
        c.dead = true;
        Self::drop_probe(cx, c);
    }
}
