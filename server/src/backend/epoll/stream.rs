//! Stream listeners and connections of the `epoll` backend: accept, drive (write what is
//! queued, read into a pool buffer while the queue bound allows), close. [`Streams`] owns
//! all of it — the listeners, the connections, the buffer pool — and the worker lends it
//! a [`Ctx`] per call.

use super::ctx::{Ctx, Event};
use crate::backend::contract::{self, Family, Shared, Transport};
use crate::config::{Config, Mode};
use crate::policy::{self, Admission, CloseReason, SOURCE_CHUNK};
use crate::stats::Counters;
use mio::Interest;
use mio::unix::SourceFd;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Reads or writes one connection may do per turn before others get theirs.
const TURN_BUDGET: usize = 32;

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(true),
            Stream::Unix(s) => s.set_nonblocking(true),
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

/// How far a write went.
enum Wrote {
    /// Everything there was to write (or the budget).
    All,
    /// The socket is full: wait for writability.
    Blocked,
    /// A socket error (counted).
    Failed,
}

/// What one read did.
enum Got {
    /// Data or EOF: go on.
    Some,
    /// Nothing to read now.
    Nothing,
    /// The queue is at its bound: stop reading.
    Paused,
    /// No free buffer: wait for one.
    Starved,
    /// A socket error (counted).
    Failed,
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// What a failed write means: `None` to try again (interrupted), `Blocked` when the socket
/// is full, `Failed` (counted) for a socket error.
fn write_ended(e: &io::Error, c: &mut Counters) -> Option<Wrote> {
    if would_block(e) {
        Some(Wrote::Blocked)
    } else if interrupted(e) {
        None
    } else {
        policy::count_error(c, e);
        Some(Wrote::Failed)
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Conn {
    /// Source: writes the pattern until the socket is full or the budget is spent.
    fn write_source(&mut self, budget: &mut usize, c: &mut Counters, now: Instant) -> Wrote {
        while *budget > 0 {
            *budget -= 1;
            match self.stream.write(policy::source_chunk(self.source_offset, SOURCE_CHUNK)) {
                Ok(n) => {
                    self.source_offset += n as u64;
                    policy::count_sent(c, n);
                    self.last_active = now;
                }
                Err(e) => {
                    if let Some(end) = write_ended(&e, c) {
                        return end;
                    }
                }
            }
        }
        Wrote::All
    }

    /// Echo: writes queued bytes, in order, until the queue is empty or the socket full.
    fn write_queue(
        &mut self,
        pool: &[Box<[u8]>],
        free: &mut Vec<u32>,
        c: &mut Counters,
        now: Instant,
    ) -> Wrote {
        while let Some(&(buf, start, end)) = self.queue.front() {
            match self.stream.write(&pool[buf as usize][start as usize..end as usize]) {
                Ok(n) => {
                    let n = n as u32;
                    policy::count_sent(c, n as usize);
                    c.queued_bytes -= u64::from(n);
                    self.queued -= n;
                    self.last_active = now;
                    if start + n == end {
                        self.queue.pop_front();
                        free.push(buf);
                    } else {
                        c.short_sends += 1;
                        self.queue[0].1 += n;
                    }
                }
                Err(e) => {
                    if let Some(end) = write_ended(&e, c) {
                        return end;
                    }
                }
            }
        }
        Wrote::All
    }

    /// Reads once into a free pool buffer, if the queue bound allows: past the bound the
    /// connection pauses until its queue is half empty.
    fn read_once(
        &mut self,
        pool: &mut [Box<[u8]>],
        free: &mut Vec<u32>,
        c: &mut Counters,
        max: u32,
        now: Instant,
    ) -> Got {
        let room = max.saturating_sub(self.queued);
        if room == 0 || (self.paused && self.queued > max / 2) {
            if !self.paused {
                self.paused = true;
                c.pauses += 1;
                c.paused += 1;
            }
            return Got::Paused;
        }
        if self.paused {
            self.paused = false;
            c.paused -= 1;
        }
        let Some(buf) = free.pop() else {
            c.enobufs += 1;
            return Got::Starved;
        };
        c.buf_ring_low_water = c.buf_ring_low_water.min(free.len() as u64);
        let want = (room as usize).min(pool[buf as usize].len());
        match self.stream.read(&mut pool[buf as usize][..want]) {
            Ok(0) => {
                free.push(buf);
                self.read_eof = true;
                Got::Some
            }
            Ok(n) => {
                policy::count_received(c, n);
                self.last_active = now;
                if policy::keeps_received(self.mode) {
                    self.queue.push_back((buf, 0, n as u32));
                    self.queued += n as u32;
                    c.queued_bytes += n as u64;
                    c.conn_queue_high_water = c.conn_queue_high_water.max(u64::from(self.queued));
                } else {
                    free.push(buf);
                }
                Got::Some
            }
            Err(e) => {
                free.push(buf);
                if would_block(&e) {
                    Got::Nothing
                } else if interrupted(&e) {
                    Got::Some
                } else {
                    policy::count_error(c, &e);
                    Got::Failed
                }
            }
        }
    }
}

/// A stream listener: a non-blocking copy of a bound socket.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }
}

/// A worker's stream listeners, its connections and the buffer pool they read into.
pub(super) struct Streams<'a> {
    shared: &'a Shared,
    /// Indexed as [`Event::StreamListener`] names them; empty once shutdown began.
    listeners: Vec<(Listener, Mode)>,
    /// Indexed by slot, as [`Event::Conn`] names them.
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
    open: u64,
}

impl<'a> Streams<'a> {
    /// The stream listeners among `listeners`, registered with `ctx`'s poll, and a pool of
    /// `--buffers` buffers.
    pub fn new(shared: &'a Shared, listeners: &[contract::Listener], ctx: &Ctx) -> io::Result<Streams<'a>> {
        let config = &shared.config;
        let mut own = Vec::new();
        for l in listeners.iter().filter(|l| l.transport == Transport::Stream) {
            let fd: OwnedFd = l.fd.try_clone()?;
            let listener = match l.family {
                Family::Unix => {
                    let unix = UnixListener::from(fd);
                    unix.set_nonblocking(true)?;
                    Listener::Unix(unix)
                }
                Family::Inet4 | Family::Inet6 => {
                    let tcp = TcpListener::from(fd);
                    tcp.set_nonblocking(true)?;
                    Listener::Tcp(tcp)
                }
            };
            let token = Event::StreamListener(own.len()).token();
            ctx.registry().register(&mut SourceFd(&listener.raw_fd()), token, Interest::READABLE)?;
            own.push((listener, l.mode));
        }
        Ok(Streams {
            shared,
            listeners: own,
            conns: Vec::new(),
            free_slots: Vec::new(),
            pool: (0..config.buffers)
                .map(|_| vec![0u8; config.buffer_size as usize].into_boxed_slice())
                .collect(),
            free_bufs: (0..config.buffers).rev().collect(),
            ready: Vec::new(),
            starved: Vec::new(),
            accept_retry: Vec::new(),
            open: 0,
        })
    }

    fn config(&self) -> &'a Config {
        let shared: &'a Shared = self.shared;
        &shared.config
    }

    /// `--max-conns` over the process (borrows the shared state, not `self`).
    fn admission(&self) -> Admission<'a> {
        let shared: &'a Shared = self.shared;
        shared.admission()
    }

    /// Connections open.
    pub fn open(&self) -> u64 {
        self.open
    }

    /// Connections wait to be driven again without a new event.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Copies the open count and the pool's levels into `c`.
    pub fn publish_levels(&self, c: &mut Counters) {
        c.open = self.open;
        c.buf_ring_size = self.pool.len() as u64;
        c.buf_ring_available = self.free_bufs.len() as u64;
        c.buf_ring_low_water = c.buf_ring_low_water.min(c.buf_ring_available);
    }

    /// Shutdown: stops accepting (open connections go on).
    pub fn stop_accepting(&mut self, ctx: &mut Ctx) {
        for (l, _) in std::mem::take(&mut self.listeners) {
            let _ = ctx.registry().deregister(&mut SourceFd(&l.raw_fd()));
        }
        self.accept_retry.clear();
    }

    /// The periodic tick: retries failed accepts, closes idle connections, closes every
    /// open one once the drain deadline passed, and evicts under pool pressure.
    pub fn on_tick(&mut self, ctx: &mut Ctx, evict_after: Duration) {
        if !ctx.draining() {
            for index in std::mem::take(&mut self.accept_retry) {
                self.accept_all(ctx, index);
            }
        }
        if let Some(idle) = self.config().idle_timeout {
            for slot in 0..self.conns.len() {
                if self.conns[slot].as_ref().is_some_and(|c| ctx.now.duration_since(c.last_active) >= idle) {
                    self.close(ctx, slot, CloseReason::Idle);
                }
            }
        }
        if ctx.draining.is_some_and(|d| ctx.now >= d) {
            self.close_all_open(ctx);
        }
        self.evict_under_pressure(ctx, evict_after);
    }

    /// Pool pressure (as in the uring backend): connections are starving for buffers
    /// while the pool is empty; close the stuck connection (holding queued bytes, nothing
    /// moved for `stuck_for`) that holds most.
    fn evict_under_pressure(&mut self, ctx: &mut Ctx, stuck_for: Duration) {
        if self.starved.is_empty() || !self.free_bufs.is_empty() {
            return;
        }
        let Some(cutoff) = ctx.now.checked_sub(stuck_for) else { return };
        let victim = (0..self.conns.len())
            .filter(|&i| self.conns[i].as_ref().is_some_and(|c| c.queued > 0 && c.last_active < cutoff))
            .max_by_key(|&i| self.conns[i].as_ref().map_or(0, |c| c.queued));
        if let Some(slot) = victim {
            self.close(ctx, slot, CloseReason::Evicted);
            self.ready.append(&mut self.starved);
        }
    }

    /// Closes every open connection (the drain is over).
    pub fn close_all_open(&mut self, ctx: &mut Ctx) {
        for slot in 0..self.conns.len() {
            if self.conns[slot].is_some() {
                self.close(ctx, slot, CloseReason::Drain);
            }
        }
    }

    /// Drives the connections put on the ready list.
    pub fn drive_ready(&mut self, ctx: &mut Ctx) {
        for slot in std::mem::take(&mut self.ready) {
            self.drive(ctx, slot);
        }
    }

    pub fn accept_all(&mut self, ctx: &mut Ctx, index: usize) {
        loop {
            let Some((listener, mode)) = self.listeners.get(index) else { return };
            let mode = *mode;
            let stream = match listener.accept() {
                Ok(s) => s,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(_) => {
                    // EMFILE and friends: count, and retry at the next tick.
                    ctx.counters.err_accept += 1;
                    if !self.accept_retry.contains(&index) {
                        self.accept_retry.push(index);
                    }
                    return;
                }
            };
            if !self.admission().admit(ctx.draining(), &mut ctx.counters) {
                continue; // dropping `stream` closes it
            }
            let slot = self.free_slots.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let fd = stream.fd();
            let registered = stream.set_nonblocking().and_then(|()| {
                ctx.registry().register(&mut SourceFd(&fd), Event::Conn(slot).token(), Interest::READABLE)
            });
            if registered.is_err() {
                ctx.counters.err_other += 1;
                self.admission().release(CloseReason::Error, &mut ctx.counters);
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
                last_active: ctx.now,
                want_write: false,
            });
            self.open += 1;
            self.ready.push(slot);
        }
    }

    /// Moves a connection as far as it goes without blocking, within its turn's budget.
    pub fn drive(&mut self, ctx: &mut Ctx, slot: usize) {
        let (max, now) = (self.config().max_conn_buffer, ctx.now);
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else { return };
        let (pool, free, c) = (&mut self.pool, &mut self.free_bufs, &mut ctx.counters);
        let mut budget = TURN_BUDGET;
        let (mut failed, mut write_blocked, mut again, mut starved) = (false, false, false, false);
        while budget > 0 && !failed {
            budget -= 1;
            // Source: write the pattern until the socket is full (edge-triggered: the next
            // writable event comes only after that), or the budget is spent.
            if conn.mode == Mode::Source && !conn.read_eof {
                match conn.write_source(&mut budget, c, now) {
                    Wrote::All => again = true,
                    Wrote::Blocked => write_blocked = true,
                    Wrote::Failed => failed = true,
                }
            }
            if !failed {
                match conn.write_queue(pool, free, c, now) {
                    Wrote::All if conn.mode == Mode::Echo => write_blocked = false,
                    Wrote::All => {}
                    Wrote::Blocked => write_blocked = true,
                    Wrote::Failed => failed = true,
                }
            }
            if failed || conn.read_eof {
                break;
            }
            match conn.read_once(pool, free, c, max, now) {
                Got::Some => {}
                // Nothing more to read. Echoes still queued mean the write above blocked
                // (it empties the queue otherwise): writability brings the connection back.
                Got::Nothing => break,
                Got::Paused => break,
                Got::Starved => {
                    starved = true;
                    break;
                }
                Got::Failed => failed = true,
            }
            again |= budget == 0;
        }
        let done = conn.read_eof && conn.queue.is_empty();
        let reinterest = !failed && !done && write_blocked != conn.want_write;
        if reinterest {
            conn.want_write = write_blocked;
        }
        let fd = conn.stream.fd();
        if starved {
            self.starved.push(slot);
        }
        if again {
            self.ready.push(slot);
        }
        if failed {
            self.close(ctx, slot, CloseReason::Error);
        } else if done {
            self.close(ctx, slot, CloseReason::Eof);
        } else if reinterest {
            let interest =
                if write_blocked { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if ctx.registry().reregister(&mut SourceFd(&fd), Event::Conn(slot).token(), interest).is_err() {
                ctx.counters.err_other += 1;
                self.close(ctx, slot, CloseReason::Error);
            }
        }
        // Buffers came back: give starved connections another go.
        if !self.free_bufs.is_empty() && !self.starved.is_empty() {
            self.ready.append(&mut self.starved);
        }
    }

    /// Closes a connection: its queued buffers go back to the pool, and its end is counted
    /// once, with `reason`.
    fn close(&mut self, ctx: &mut Ctx, slot: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) else { return };
        let _ = ctx.registry().deregister(&mut SourceFd(&conn.stream.fd()));
        for (buf, start, end) in conn.queue {
            ctx.counters.queued_bytes -= u64::from(end - start);
            self.free_bufs.push(buf);
        }
        if conn.paused {
            ctx.counters.paused -= 1;
        }
        self.free_slots.push(slot);
        self.open -= 1;
        self.admission().release(reason, &mut ctx.counters);
    }
}
