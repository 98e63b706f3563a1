//! Stream listeners and connections of the `epoll` backend: accept, drive (write what is
//! queued, read into a pool buffer while the queue bound allows), close. [`Streams`] owns
//! all of it — the listeners, the connections, the buffer pool — and the worker lends it
//! a [`Ctx`] per call; one connection's I/O is `conn.rs`'s.
//!
//! Invariant: a connection's slot, its pool buffers and its share of `--max-conns` are
//! given back together, once, when it closes (`Streams::close`).

use super::conn::{Conn, Got, Stream, Wrote, interrupted, would_block};
use super::ctx::{Ctx, Event};
use crate::backend::contract::{self, Family, Shared, Transport};
use crate::config::{Config, Mode};
use crate::policy::{Admission, CloseReason};
use crate::stats::Counters;
use mio::Interest;
use mio::unix::SourceFd;
use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::Duration;

/// Reads or writes one connection may do per turn before others get theirs.
const TURN_BUDGET: usize = 32;

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
