//! The `epoll` backend: one mio `Poll` per worker, its own SO_REUSEPORT listeners,
//! readiness-based non-blocking I/O, and a fixed pool of `--buffers` buffers of
//! `--buffer-size` bytes per worker, so memory is bounded as in the `uring` backend.
//!
//! Invariants: a connection holds at most `--max-conn-buffer` bytes read and not yet
//! written (reading stops at the bound and resumes as writes drain it); every pool buffer
//! is either free or in exactly one connection's queue. mio is edge-triggered, so a
//! connection that stops early (its turn's budget spent, or the pool empty) is put on a
//! ready list and driven again without waiting for a new event.

use crate::config::{Mode, SOURCE_CHUNK, SOURCE_PATTERN};
use crate::ratelimit::RateLimiter;
use crate::server::{Shared, SockKind, WorkerSetup};
use crate::stats::Counters;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

const WAKE: Token = Token(usize::MAX - 1);
const CONN_BASE: usize = 1 << 20;
const TICK: Duration = Duration::from_millis(100);
/// Reads or writes one connection may do per turn before others get theirs.
const TURN_BUDGET: usize = 32;
/// Datagrams one listener handles per turn.
const DGRAM_BUDGET: usize = 64;

enum Listener {
    Tcp(TcpListener, Mode),
    Unix(UnixListener, Mode),
    Udp(UdpSocket, Mode),
    UnixGram(UnixDatagram, Mode),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn fd(&self) -> i32 {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
}

struct Conn {
    stream: Stream,
    mode: Mode,
    /// (pool index, start, end) of bytes read and not yet written, in order.
    queue: VecDeque<(u32, u32, u32)>,
    queued: u32,
    read_eof: bool,
    paused: bool,
    source_offset: u64,
    last_active: Instant,
    /// Registered for writability too (only while a write would block: otherwise every
    /// ACK that frees send space would wake the worker for nothing).
    want_write: bool,
}

/// Runs an epoll worker to completion; reports set-up on `ready`.
pub(crate) fn run(setup: WorkerSetup, ready: SyncSender<Result<crate::ring::TaskRun, String>>) {
    match Worker::new(&setup) {
        Ok(mut w) => {
            let _ = ready.send(Ok(crate::ring::TaskRun::Plain));
            if let Err(e) = w.serve() {
                eprintln!("ringecho: epoll worker {} stopped: {e}", setup.index);
            }
            w.publish();
        }
        Err(e) => {
            let _ = ready.send(Err(format!("epoll worker {}: {e}", setup.index)));
        }
    }
}

struct Worker<'a> {
    setup: &'a WorkerSetup,
    poll: Poll,
    listeners: Vec<Listener>,
    conns: Vec<Option<Conn>>,
    free_slots: Vec<usize>,
    pool: Vec<Box<[u8]>>,
    free_bufs: Vec<u32>,
    /// Connections to drive again without a new event.
    ready: Vec<usize>,
    /// Connections waiting for a free buffer.
    starved: Vec<usize>,
    /// Listeners whose accept failed (EMFILE, ENFILE, ...): retried at the next tick.
    /// Edge-triggered, so without this the connections already queued would wait for the
    /// next new one; retrying on every event instead would spin.
    accept_retry: Vec<usize>,
    scratch: Vec<u8>,
    rate_limiter: Option<RateLimiter<std::net::IpAddr>>,
    counters: Counters,
    open: u64,
    draining: Option<Instant>,
    now: Instant,
}

fn dup(fd: &OwnedFd) -> io::Result<OwnedFd> {
    fd.try_clone()
}

impl<'a> Worker<'a> {
    fn new(setup: &'a WorkerSetup) -> io::Result<Worker<'a>> {
        if let Some(cpu) = setup.cpu {
            crate::sys::pin_current_thread(cpu)?;
        }
        let config = &setup.shared.config;
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        for (i, l) in setup.listeners.iter().enumerate() {
            let fd = dup(&l.fd)?;
            let unix = socket2::SockRef::from(&fd).local_addr()?.is_unix();
            let listener = match (l.kind, unix) {
                (SockKind::Stream, false) => Listener::Tcp(TcpListener::from(fd), l.mode),
                (SockKind::Stream, true) => Listener::Unix(UnixListener::from(fd), l.mode),
                (SockKind::Datagram { .. }, false) => Listener::Udp(UdpSocket::from(fd), l.mode),
                (SockKind::Datagram { .. }, true) => Listener::UnixGram(UnixDatagram::from(fd), l.mode),
            };
            let raw = match &listener {
                Listener::Tcp(s, _) => {
                    s.set_nonblocking(true)?;
                    s.as_raw_fd()
                }
                Listener::Unix(s, _) => {
                    s.set_nonblocking(true)?;
                    s.as_raw_fd()
                }
                Listener::Udp(s, _) => {
                    s.set_nonblocking(true)?;
                    s.as_raw_fd()
                }
                Listener::UnixGram(s, _) => {
                    s.set_nonblocking(true)?;
                    s.as_raw_fd()
                }
            };
            poll.registry().register(&mut SourceFd(&raw), Token(i), Interest::READABLE)?;
            listeners.push(listener);
        }
        poll.registry().register(&mut SourceFd(&setup.wake.as_raw_fd()), WAKE, Interest::READABLE)?;
        let now = Instant::now();
        Ok(Worker {
            setup,
            poll,
            listeners,
            conns: Vec::new(),
            free_slots: Vec::new(),
            pool: (0..config.buffers)
                .map(|_| vec![0u8; config.buffer_size as usize].into_boxed_slice())
                .collect(),
            free_bufs: (0..config.buffers).rev().collect(),
            ready: Vec::new(),
            starved: Vec::new(),
            accept_retry: Vec::new(),
            scratch: vec![0u8; config.buffer_size as usize + 1],
            rate_limiter: config
                .udp_rate_limit
                .map(|pps| RateLimiter::new(pps, (pps / 10).max(1), 65_536, now)),
            counters: Counters::default(),
            open: 0,
            draining: None,
            now,
        })
    }

    fn shared(&self) -> &Shared {
        &self.setup.shared
    }

    fn publish(&mut self) {
        let c = &mut self.counters;
        c.open = self.open;
        c.buf_ring_size = self.pool.len() as u64;
        c.buf_ring_available = self.free_bufs.len() as u64;
        c.buf_ring_low_water = c.buf_ring_low_water.min(c.buf_ring_available);
        self.setup.shared.stats.worker(self.setup.index).publish(c);
    }

    fn serve(&mut self) -> io::Result<()> {
        self.counters.buf_ring_low_water = self.pool.len() as u64;
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        loop {
            self.publish();
            if self.draining.is_some() && self.open == 0 {
                return Ok(());
            }
            let timeout = if self.ready.is_empty() { TICK } else { Duration::ZERO };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    WAKE => self.on_wake(),
                    Token(t) if t >= CONN_BASE => self.drive(t - CONN_BASE),
                    Token(l) => self.on_listener(l),
                }
            }
            for slot in std::mem::take(&mut self.ready) {
                self.drive(slot);
            }
            if self.now.duration_since(last_tick) >= TICK {
                last_tick = self.now;
                self.on_tick();
            }
        }
    }

    fn on_wake(&mut self) {
        // Readable, so the counter is not zero and this does not block.
        let _ = crate::sys::eventfd_read(&self.setup.wake);
        if !self.shared().shutdown.load(Ordering::Acquire) || self.draining.is_some() {
            return;
        }
        self.draining = Some(self.now + self.shared().config.drain_timeout);
        // Stop accepting and receiving datagrams; open connections go on.
        for l in std::mem::take(&mut self.listeners) {
            let raw = match &l {
                Listener::Tcp(s, _) => s.as_raw_fd(),
                Listener::Unix(s, _) => s.as_raw_fd(),
                Listener::Udp(s, _) => s.as_raw_fd(),
                Listener::UnixGram(s, _) => s.as_raw_fd(),
            };
            let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
        }
        if self.shared().config.drain_timeout.is_zero() {
            self.close_all_open();
        }
    }

    fn on_tick(&mut self) {
        if self.draining.is_none() {
            for index in std::mem::take(&mut self.accept_retry) {
                self.accept_all(index);
            }
        }
        if let Some(idle) = self.shared().config.idle_timeout {
            for slot in 0..self.conns.len() {
                if self.conns[slot].as_ref().is_some_and(|c| self.now.duration_since(c.last_active) >= idle) {
                    self.counters.idle_closed += 1;
                    self.close(slot);
                }
            }
        }
        if self.draining.is_some_and(|d| self.now >= d) {
            self.close_all_open();
        }
        self.evict_under_pressure();
    }

    /// Pool pressure (as in the uring backend): connections are starving for buffers
    /// while the pool is empty; close the stuck connection (holding queued bytes, nothing
    /// moved for a second) that holds most.
    fn evict_under_pressure(&mut self) {
        if self.starved.is_empty() || !self.free_bufs.is_empty() {
            return;
        }
        let Some(cutoff) = self.now.checked_sub(Duration::from_secs(1)) else { return };
        let victim = (0..self.conns.len())
            .filter(|&i| self.conns[i].as_ref().is_some_and(|c| c.queued > 0 && c.last_active < cutoff))
            .max_by_key(|&i| self.conns[i].as_ref().map_or(0, |c| c.queued));
        if let Some(slot) = victim {
            self.counters.evicted += 1;
            self.close(slot);
            self.ready.append(&mut self.starved);
        }
    }

    fn close_all_open(&mut self) {
        for slot in 0..self.conns.len() {
            if self.conns[slot].is_some() {
                self.counters.drain_closed += 1;
                self.close(slot);
            }
        }
    }

    fn on_listener(&mut self, index: usize) {
        let Some(l) = self.listeners.get(index) else { return };
        match l {
            Listener::Tcp(..) | Listener::Unix(..) => self.accept_all(index),
            Listener::Udp(..) | Listener::UnixGram(..) => self.datagrams(index),
        }
    }

    fn accept_all(&mut self, index: usize) {
        loop {
            let (stream, mode) = match &self.listeners[index] {
                Listener::Tcp(l, mode) => (l.accept().map(|(s, _)| Stream::Tcp(s)), *mode),
                Listener::Unix(l, mode) => (l.accept().map(|(s, _)| Stream::Unix(s)), *mode),
                _ => return,
            };
            let stream = match stream {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // EMFILE and friends: count, and retry at the next tick.
                    self.counters.err_accept += 1;
                    if !self.accept_retry.contains(&index) {
                        self.accept_retry.push(index);
                    }
                    return;
                }
            };
            let max = self.shared().config.max_conns;
            if self.shared().open_conns.fetch_add(1, Ordering::Relaxed) >= max {
                self.shared().open_conns.fetch_sub(1, Ordering::Relaxed);
                self.counters.refused += 1;
                continue; // dropping `stream` closes it
            }
            let nonblocking = match &stream {
                Stream::Tcp(s) => s.set_nonblocking(true),
                Stream::Unix(s) => s.set_nonblocking(true),
            };
            let slot = self.free_slots.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let fd = stream.fd();
            let registered = nonblocking.and_then(|()| {
                self.poll.registry().register(&mut SourceFd(&fd), Token(CONN_BASE + slot), Interest::READABLE)
            });
            if registered.is_err() {
                self.shared().open_conns.fetch_sub(1, Ordering::Relaxed);
                self.counters.err_other += 1;
                self.free_slots.push(slot);
                continue;
            }
            self.conns[slot] = Some(Conn {
                stream,
                mode,
                queue: VecDeque::new(),
                queued: 0,
                read_eof: false,
                paused: false,
                source_offset: 0,
                last_active: self.now,
                want_write: false,
            });
            self.counters.accepted += 1;
            self.open += 1;
            self.ready.push(slot);
        }
    }

    /// Moves a connection as far as it goes without blocking, within its turn's budget.
    fn drive(&mut self, slot: usize) {
        let max = self.shared().config.max_conn_buffer;
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else { return };
        let mut budget = TURN_BUDGET;
        let mut failed = false;
        let mut write_blocked = false;
        'turn: while budget > 0 {
            budget -= 1;
            // Source: write the pattern until the socket is full (edge-triggered: the next
            // writable event comes only after that), or the budget is spent.
            if conn.mode == Mode::Source && !conn.read_eof {
                let mut full = false;
                while budget > 0 && !full {
                    budget -= 1;
                    let phase = (conn.source_offset % 251) as usize;
                    match conn.stream.write(&SOURCE_PATTERN[phase..phase + SOURCE_CHUNK]) {
                        Ok(n) => {
                            conn.source_offset += n as u64;
                            self.counters.bytes_out += n as u64;
                            self.counters.sends += 1;
                            conn.last_active = self.now;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            full = true;
                            write_blocked = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            count_error(&mut self.counters, &e);
                            failed = true;
                            break 'turn;
                        }
                    }
                }
                if !full {
                    self.ready.push(slot);
                }
            }
            while let Some(&(buf, start, end)) = conn.queue.front() {
                match conn.stream.write(&self.pool[buf as usize][start as usize..end as usize]) {
                    Ok(n) => {
                        let n = n as u32;
                        self.counters.bytes_out += u64::from(n);
                        self.counters.sends += 1;
                        self.counters.queued_bytes -= u64::from(n);
                        conn.queued -= n;
                        conn.last_active = self.now;
                        if start + n == end {
                            conn.queue.pop_front();
                            self.free_bufs.push(buf);
                        } else {
                            self.counters.short_sends += 1;
                            conn.queue[0].1 += n;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        write_blocked = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        count_error(&mut self.counters, &e);
                        failed = true;
                        break 'turn;
                    }
                }
            }
            if conn.mode == Mode::Echo && conn.queue.is_empty() {
                write_blocked = false;
            }
            // Read, if the queue has room.
            if conn.read_eof {
                break;
            }
            let room = max.saturating_sub(conn.queued);
            if room == 0 || (conn.paused && conn.queued > max / 2) {
                if !conn.paused {
                    conn.paused = true;
                    self.counters.pauses += 1;
                    self.counters.paused += 1;
                }
                break;
            }
            if conn.paused {
                conn.paused = false;
                self.counters.paused -= 1;
            }
            let Some(buf) = self.free_bufs.pop() else {
                self.counters.enobufs += 1;
                self.starved.push(slot);
                break;
            };
            self.counters.buf_ring_low_water =
                self.counters.buf_ring_low_water.min(self.free_bufs.len() as u64);
            let want = (room as usize).min(self.pool[buf as usize].len());
            match conn.stream.read(&mut self.pool[buf as usize][..want]) {
                Ok(0) => {
                    self.free_bufs.push(buf);
                    conn.read_eof = true;
                }
                Ok(n) => {
                    self.counters.bytes_in += n as u64;
                    self.counters.recv_ops += 1;
                    conn.last_active = self.now;
                    if conn.mode == Mode::Echo {
                        conn.queue.push_back((buf, 0, n as u32));
                        conn.queued += n as u32;
                        self.counters.queued_bytes += n as u64;
                        self.counters.conn_queue_high_water =
                            self.counters.conn_queue_high_water.max(u64::from(conn.queued));
                    } else {
                        self.free_bufs.push(buf);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.free_bufs.push(buf);
                    if conn.queue.is_empty() || conn.mode != Mode::Echo {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.free_bufs.push(buf),
                Err(e) => {
                    self.free_bufs.push(buf);
                    count_error(&mut self.counters, &e);
                    failed = true;
                    break;
                }
            }
            if budget == 0 {
                self.ready.push(slot);
            }
        }
        let done = conn.read_eof && conn.queue.is_empty();
        if failed || done {
            self.close(slot);
        } else if write_blocked != conn.want_write {
            conn.want_write = write_blocked;
            let interest =
                if write_blocked { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let fd = conn.stream.fd();
            if self.poll.registry().reregister(&mut SourceFd(&fd), Token(CONN_BASE + slot), interest).is_err()
            {
                self.counters.err_other += 1;
                self.close(slot);
            }
        }
        // Buffers came back: give starved connections another go.
        if !self.free_bufs.is_empty() && !self.starved.is_empty() {
            self.ready.append(&mut self.starved);
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) else { return };
        let _ = self.poll.registry().deregister(&mut SourceFd(&conn.stream.fd()));
        for (buf, start, end) in conn.queue {
            self.counters.queued_bytes -= u64::from(end - start);
            self.free_bufs.push(buf);
        }
        if conn.paused {
            self.counters.paused -= 1;
        }
        self.free_slots.push(slot);
        self.open -= 1;
        self.counters.closed += 1;
        self.shared().open_conns.fetch_sub(1, Ordering::Relaxed);
    }

    /// Reads datagrams until the socket is empty or the turn's budget is spent; answers
    /// each with exactly its own bytes (or drops and counts it).
    fn datagrams(&mut self, index: usize) {
        let buffer_size = self.shared().config.buffer_size as usize;
        for _ in 0..DGRAM_BUDGET {
            // One byte more than a buffer holds: a datagram that fills it was too big.
            let (n, reply_to) = match &self.listeners[index] {
                Listener::Udp(s, _) => match s.recv_from(&mut self.scratch) {
                    Ok((n, from)) => (n, Some(Peer::Ip(from))),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => {
                        self.counters.err_other += 1;
                        return;
                    }
                },
                Listener::UnixGram(s, _) => match s.recv_from(&mut self.scratch) {
                    Ok((n, from)) => (n, from.as_pathname().map(|p| Peer::Path(p.to_owned()))),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => {
                        self.counters.err_other += 1;
                        return;
                    }
                },
                _ => return,
            };
            self.counters.dgrams_in += 1;
            let mode = match &self.listeners[index] {
                Listener::Udp(_, m) | Listener::UnixGram(_, m) => *m,
                _ => Mode::Echo,
            };
            if n > buffer_size {
                self.counters.dgram_drop_truncated += 1;
                continue;
            }
            self.counters.bytes_in += n as u64;
            if mode == Mode::Discard {
                self.counters.dgrams_discarded += 1;
                continue;
            }
            let Some(peer) = reply_to else {
                self.counters.dgram_drop_unanswerable += 1;
                continue;
            };
            if let (Some(limiter), Peer::Ip(addr)) = (&mut self.rate_limiter, &peer) {
                if !limiter.allow(addr.ip(), self.now) {
                    self.counters.dgram_drop_rate_limited += 1;
                    continue;
                }
            }
            let sent = match (&self.listeners[index], &peer) {
                (Listener::Udp(s, _), Peer::Ip(to)) => s.send_to(&self.scratch[..n], to),
                (Listener::UnixGram(s, _), Peer::Path(to)) => s.send_to(&self.scratch[..n], to),
                _ => Err(io::Error::other("mismatched peer")),
            };
            match sent {
                Ok(m) => {
                    self.counters.dgrams_echoed += 1;
                    self.counters.bytes_out += m as u64;
                }
                Err(_) => self.counters.dgram_drop_send_error += 1,
            }
        }
        // Budget spent with datagrams possibly left: edge-triggered, so come back.
        self.requeue_listener(index);
    }

    fn requeue_listener(&mut self, index: usize) {
        // Re-registering re-arms the edge: if data is still there, an event follows.
        let raw = match &self.listeners[index] {
            Listener::Udp(s, _) => s.as_raw_fd(),
            Listener::UnixGram(s, _) => s.as_raw_fd(),
            _ => return,
        };
        let _ = self.poll.registry().reregister(&mut SourceFd(&raw), Token(index), Interest::READABLE);
    }
}

enum Peer {
    Ip(std::net::SocketAddr),
    Path(std::path::PathBuf),
}

fn count_error(c: &mut Counters, e: &io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionReset => c.err_reset += 1,
        io::ErrorKind::BrokenPipe => c.err_pipe += 1,
        _ => c.err_other += 1,
    }
}
