//! The `threads` backend: one blocking OS thread per connection, std sockets — the
//! classic threading server, kept as the textbook floor. Each connection reads at most
//! one buffer and writes it back before reading again, so it holds at most one
//! `--buffer-size` buffer; `--max-conn-buffer` has nothing more to bound here.
//!
//! Threads wake every [`state::POLL`] (socket timeouts) to notice shutdown, the drain
//! deadline and idle connections. Counters are tallied per thread and flushed into one
//! shared tally under a lock every [`state::FLUSH_EVERY`] operations and when the thread
//! ends.
//!
//! Files: this one the engine; `state.rs` what every thread shares (the tally); `stream.rs`
//! the accepting thread and the connection threads; `dgram.rs` the datagram threads.

mod dgram;
mod state;
mod stream;

use crate::backend::contract::{Engine, Family, Ready, Started, Transport, WorkerSetup};
use crate::config::Config;
use crate::error::ServerWarning;
use crate::stats::Counters;
use state::{POLL, State};
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
