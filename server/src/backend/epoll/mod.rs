//! The `epoll` backend: one mio `Poll` per worker, its own SO_REUSEPORT listeners,
//! readiness-based non-blocking I/O, and a fixed pool of `--buffers` buffers of
//! `--buffer-size` bytes per worker, so memory is bounded as in the `uring` backend.
//!
//! Invariants: a connection holds at most `--max-conn-buffer` bytes read and not yet
//! written (reading stops at the bound and resumes as writes drain it); every pool buffer
//! is either free or in exactly one connection's queue. mio is edge-triggered, so a
//! connection that stops early (its turn's budget spent, or the pool empty) is put on a
//! ready list and driven again without waiting for a new event.
//!
//! Files: this one the worker, its loop and listeners; `stream.rs` connections;
//! `dgram.rs` datagram listeners.

mod dgram;
mod stream;

use crate::backend::contract::{self, Engine, Family, Ready, Started, Transport, WorkerSetup};
use crate::config::{Config, Mode};
use crate::error::ServerWarning;
use crate::policy::{Admission, CloseReason, Datagrams};
use crate::stats::Counters;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use stream::Conn;

const WAKE: Token = Token(usize::MAX - 1);
const CONN_BASE: usize = 1 << 20;
const TICK: Duration = contract::PUBLISH_EVERY;
/// How long a connection must have been stuck on a full queue before pool pressure may
/// close it.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// The readiness engine.
pub(crate) struct EpollEngine;

impl Engine for EpollEngine {
    fn run(&self, setup: WorkerSetup, ready: Ready) -> Vec<ServerWarning> {
        let mut worker = match Worker::new(&setup) {
            Ok(w) => w,
            Err(e) => {
                ready.failed("setting up epoll", e);
                return Vec::new();
            }
        };
        ready.serving(Started::default());
        let mut warnings = Vec::new();
        if let Err(error) = worker.serve() {
            warnings.push(ServerWarning::Stopped { worker: setup.index, error });
        }
        worker.publish();
        warnings
    }

    fn describe(&self, config: &Config, _: &[Started]) -> String {
        format!(
            "{} × {} B buffers each, per-connection bound {} B",
            config.buffers, config.buffer_size, config.max_conn_buffer
        )
    }
}

enum Listener {
    Tcp(TcpListener, Mode),
    Unix(UnixListener, Mode),
    Udp(UdpSocket, Mode),
    UnixGram(UnixDatagram, Mode),
}

impl Listener {
    /// A non-blocking copy of a bound socket, typed by what the contract says it is.
    fn adopt(l: &contract::Listener) -> io::Result<Listener> {
        let fd: OwnedFd = l.fd.try_clone()?;
        let unix = l.family == Family::Unix;
        let listener = match (l.transport, unix) {
            (Transport::Stream, false) => Listener::Tcp(TcpListener::from(fd), l.mode),
            (Transport::Stream, true) => Listener::Unix(UnixListener::from(fd), l.mode),
            (Transport::Datagram, false) => Listener::Udp(UdpSocket::from(fd), l.mode),
            (Transport::Datagram, true) => Listener::UnixGram(UnixDatagram::from(fd), l.mode),
        };
        socket2::SockRef::from(&listener).set_nonblocking(true)?;
        Ok(listener)
    }

    fn raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(s, _) => s.as_raw_fd(),
            Listener::Unix(s, _) => s.as_raw_fd(),
            Listener::Udp(s, _) => s.as_raw_fd(),
            Listener::UnixGram(s, _) => s.as_raw_fd(),
        }
    }
}

impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Listener::Tcp(s, _) => s.as_fd(),
            Listener::Unix(s, _) => s.as_fd(),
            Listener::Udp(s, _) => s.as_fd(),
            Listener::UnixGram(s, _) => s.as_fd(),
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
    /// One datagram or GRO train, received whole or known too large (one byte more than
    /// the largest datagram echoed).
    scratch: Vec<u8>,
    rules: Datagrams,
    counters: Counters,
    open: u64,
    draining: Option<Instant>,
    now: Instant,
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
            let listener = Listener::adopt(l)?;
            poll.registry().register(&mut SourceFd(&listener.raw_fd()), Token(i), Interest::READABLE)?;
            listeners.push(listener);
        }
        poll.registry().register(&mut SourceFd(&setup.wake.as_raw_fd()), WAKE, Interest::READABLE)?;
        let now = Instant::now();
        let counters = Counters { buf_ring_low_water: u64::from(config.buffers), ..Counters::default() };
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
            scratch: vec![0u8; setup.shared.dgram_capacity as usize + 1],
            rules: Datagrams::new(config, setup.shared.dgram_capacity as usize, now),
            counters,
            open: 0,
            draining: None,
            now,
        })
    }

    fn config(&self) -> &'a Config {
        &self.setup.shared.config
    }

    /// `--max-conns` over the process (borrows the set-up, not the worker).
    fn admission(&self) -> Admission<'a> {
        let setup: &'a WorkerSetup = self.setup;
        setup.shared.admission()
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
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        loop {
            self.publish();
            if self.draining.is_some() && self.open == 0 {
                return Ok(());
            }
            let spin = self.config().spin;
            let timeout = if self.ready.is_empty() && !spin { TICK } else { Duration::ZERO };
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
        if !self.setup.shared.shutdown.load(Ordering::Acquire) || self.draining.is_some() {
            return;
        }
        let drain = self.config().drain_timeout;
        self.draining = Some(crate::policy::deadline(self.now, drain));
        // Stop accepting and receiving datagrams; open connections go on.
        for l in std::mem::take(&mut self.listeners) {
            let _ = self.poll.registry().deregister(&mut SourceFd(&l.raw_fd()));
        }
        if drain.is_zero() {
            self.close_all_open();
        }
    }

    fn on_tick(&mut self) {
        if self.draining.is_none() {
            for index in std::mem::take(&mut self.accept_retry) {
                self.accept_all(index);
            }
        }
        if let Some(idle) = self.config().idle_timeout {
            for slot in 0..self.conns.len() {
                if self.conns[slot].as_ref().is_some_and(|c| self.now.duration_since(c.last_active) >= idle) {
                    self.close(slot, CloseReason::Idle);
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
        let Some(cutoff) = self.now.checked_sub(EVICT_AFTER) else { return };
        let victim = (0..self.conns.len())
            .filter(|&i| self.conns[i].as_ref().is_some_and(|c| c.queued > 0 && c.last_active < cutoff))
            .max_by_key(|&i| self.conns[i].as_ref().map_or(0, |c| c.queued));
        if let Some(slot) = victim {
            self.close(slot, CloseReason::Evicted);
            self.ready.append(&mut self.starved);
        }
    }

    fn close_all_open(&mut self) {
        for slot in 0..self.conns.len() {
            if self.conns[slot].is_some() {
                self.close(slot, CloseReason::Drain);
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
}
