//! The `threads` backend: one blocking OS thread per connection, std sockets — the
//! classic threading server, kept as the textbook floor. Each connection reads at most
//! one buffer and writes it back before reading again, so it holds at most one
//! `--buffer-size` buffer; `--max-conn-buffer` has nothing more to bound here.
//!
//! Threads wake every [`POLL`] (socket timeouts) to notice shutdown, the drain deadline
//! and idle connections. Counters are tallied per thread and flushed into one shared
//! tally under a lock every [`FLUSH_EVERY`] operations and when the thread ends.
//!
//! Files: this one the engine and the shared tally; `stream.rs` the accepting thread and
//! the connection threads; `dgram.rs` the datagram threads.

mod dgram;
mod stream;

use crate::backend::contract::{Engine, Family, Ready, Shared, Started, Transport, WorkerSetup};
use crate::config::Config;
use crate::error::ServerWarning;
use crate::stats::Counters;
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a blocked thread wakes to look at shutdown, deadlines and idleness.
const POLL: Duration = Duration::from_millis(100);
/// Operations between two flushes of a thread's tally.
const FLUSH_EVERY: u32 = 64;

/// A thread per connection.
pub(crate) struct ThreadsEngine;

impl Engine for ThreadsEngine {
    /// Threads need no per-CPU workers: one set of listeners.
    fn workers(&self, _: &Config, _: usize) -> usize {
        1
    }

    fn run(&self, setup: WorkerSetup, ready: Ready) -> Vec<ServerWarning> {
        run(setup, ready);
        Vec::new()
    }

    fn describe(&self, config: &Config, _: &[Started]) -> String {
        format!("a thread per connection, one {} B buffer each", config.buffer_size)
    }
}

/// What every thread of the backend shares.
struct State {
    shared: Arc<Shared>,
    index: usize,
    tally: Mutex<Counters>,
    open: AtomicU64,
    draining_since: Mutex<Option<Instant>>,
}

impl State {
    fn flush(&self, local: &mut Counters) {
        self.flush_closing(local, false);
    }

    /// Flushes, and when `closing`, takes this connection out of the open count under
    /// the same lock, so no reader sees it gone before its counts are in.
    fn flush_closing(&self, local: &mut Counters, closing: bool) {
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        t.merge(local);
        if closing {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        t.open = self.open.load(Ordering::Relaxed);
        self.shared.stats.worker(self.index).publish(&t);
        *local = Counters::default();
    }

    fn drain_deadline(&self) -> Option<Instant> {
        let since = *self.draining_since.lock().unwrap_or_else(|e| e.into_inner());
        since.map(|s| crate::policy::deadline(s, self.shared.config.drain_timeout))
    }

    fn stopping(&self) -> bool {
        self.shared.shutdown.load(Ordering::Acquire)
    }
}

/// Runs the threads backend: an accepting (or receiving) thread per listener, a thread
/// per connection; returns when shutdown has drained every connection.
fn run(setup: WorkerSetup, ready: Ready) {
    let state = Arc::new(State {
        shared: setup.shared.clone(),
        index: setup.index,
        tally: Mutex::new(Counters::default()),
        open: AtomicU64::new(0),
        draining_since: Mutex::new(None),
    });
    let mut listeners = Vec::new();
    for l in &setup.listeners {
        match spawn_listener(&state, l) {
            Ok(h) => listeners.push(h),
            Err(e) => {
                ready.failed("starting a listener thread", e);
                return;
            }
        }
    }
    state.flush(&mut Counters::default());
    ready.serving(Started::default());
    // Wait for shutdown.
    while !state.stopping() {
        let _ = crate::sys::eventfd_read(&setup.wake);
    }
    *state.draining_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    for h in listeners {
        let _ = h.join();
    }
    // Connection threads end by themselves: at EOF, or at the drain deadline.
    let give_up = state.drain_deadline().unwrap_or_else(Instant::now) + Duration::from_secs(1);
    while state.open.load(Ordering::Relaxed) > 0 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(5));
    }
    state.flush(&mut Counters::default());
}

/// Starts the thread that accepts on, or receives from, listener `l`.
fn spawn_listener(
    state: &Arc<State>,
    l: &crate::backend::contract::Listener,
) -> io::Result<std::thread::JoinHandle<()>> {
    let fd = l.fd.try_clone()?;
    let sock = socket2::SockRef::from(&fd);
    // accept() and recvfrom() then return every POLL, so the threads notice shutdown.
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(POLL))?;
    let (state, mode) = (state.clone(), l.mode);
    let unix = l.family == Family::Unix;
    let builder = |name: &str| std::thread::Builder::new().name(name.into());
    match (l.transport, unix) {
        (Transport::Stream, false) => {
            let l = TcpListener::from(fd);
            builder("ringecho-accept").spawn(move || {
                stream::accept_loop(&state, mode, || {
                    l.accept().map(|(s, _)| Box::new(s) as Box<dyn stream::Conn>)
                })
            })
        }
        (Transport::Stream, true) => {
            let l = UnixListener::from(fd);
            builder("ringecho-accept").spawn(move || {
                stream::accept_loop(&state, mode, || {
                    l.accept().map(|(s, _)| Box::new(s) as Box<dyn stream::Conn>)
                })
            })
        }
        (Transport::Datagram, false) => {
            let s = UdpSocket::from(fd);
            builder("ringecho-udp").spawn(move || dgram::udp_loop(&state, mode, &s))
        }
        (Transport::Datagram, true) => {
            let s = UnixDatagram::from(fd);
            builder("ringecho-dgram").spawn(move || dgram::unixgram_loop(&state, mode, &s))
        }
    }
}

/// A socket call that only timed out (or was interrupted): look at the clock, try again.
fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}
