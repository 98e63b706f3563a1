//! The `threads` backend: one blocking OS thread per connection, std sockets — the
//! classic threading server, kept as the textbook floor. Each connection reads at most
//! one buffer and writes it back before reading again, so it holds at most one
//! `--buffer-size` buffer; `--max-conn-buffer` has nothing more to bound here.
//!
//! Threads wake every [`POLL`] (socket timeouts) to notice shutdown, the drain deadline
//! and idle connections. Counters are tallied per thread and flushed into one shared
//! tally under a lock every [`FLUSH_EVERY`] operations and when the thread ends.

use crate::config::{Mode, SOURCE_CHUNK, SOURCE_PATTERN};
use crate::ratelimit::RateLimiter;
use crate::server::{Shared, SockKind, WorkerSetup};
use crate::stats::Counters;
use std::io::{self, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);
const FLUSH_EVERY: u32 = 64;
const CONN_STACK: usize = 64 * 1024;

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
        since.map(|s| s + self.shared.config.drain_timeout)
    }

    fn stopping(&self) -> bool {
        self.shared.shutdown.load(Ordering::Acquire)
    }
}

/// Runs the threads backend: an accepting (or receiving) thread per listener, a thread
/// per connection; returns when shutdown has drained every connection.
pub(crate) fn run(setup: WorkerSetup, ready: SyncSender<Result<crate::ring::TaskRun, String>>) {
    let state = Arc::new(State {
        shared: setup.shared.clone(),
        index: setup.index,
        tally: Mutex::new(Counters::default()),
        open: AtomicU64::new(0),
        draining_since: Mutex::new(None),
    });
    let mut listeners = Vec::new();
    for l in &setup.listeners {
        let fd = match l.fd.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                let _ = ready.send(Err(format!("threads backend: {e}")));
                return;
            }
        };
        let sock = socket2::SockRef::from(&fd);
        let unix = sock.local_addr().map(|a| a.is_unix()).unwrap_or(false);
        // accept() and recvfrom() then return every POLL, so the threads notice shutdown.
        if let Err(e) = sock.set_nonblocking(false).and_then(|()| sock.set_read_timeout(Some(POLL))) {
            let _ = ready.send(Err(format!("threads backend: {e}")));
            return;
        }
        let (state, mode) = (state.clone(), l.mode);
        let spawned = match (l.kind, unix) {
            (SockKind::Stream, false) => {
                let l = TcpListener::from(fd);
                std::thread::Builder::new().name("ringecho-accept".into()).spawn(move || {
                    accept_loop(&state, mode, || l.accept().map(|(s, _)| Box::new(s) as Box<dyn Conn>))
                })
            }
            (SockKind::Stream, true) => {
                let l = UnixListener::from(fd);
                std::thread::Builder::new().name("ringecho-accept".into()).spawn(move || {
                    accept_loop(&state, mode, || l.accept().map(|(s, _)| Box::new(s) as Box<dyn Conn>))
                })
            }
            (SockKind::Datagram { .. }, false) => {
                let s = UdpSocket::from(fd);
                std::thread::Builder::new()
                    .name("ringecho-udp".into())
                    .spawn(move || udp_loop(&state, mode, &s))
            }
            (SockKind::Datagram { .. }, true) => {
                let s = UnixDatagram::from(fd);
                std::thread::Builder::new()
                    .name("ringecho-dgram".into())
                    .spawn(move || unixgram_loop(&state, mode, &s))
            }
        };
        match spawned {
            Ok(h) => listeners.push(h),
            Err(e) => {
                let _ = ready.send(Err(format!("threads backend: {e}")));
                return;
            }
        }
    }
    state.flush(&mut Counters::default());
    let _ = ready.send(Ok(crate::ring::TaskRun::Plain));
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

/// What a connection thread needs of its socket.
trait Conn: Read + Write + Send {
    fn set_timeouts(&self, t: Duration) -> io::Result<()>;
}

impl Conn for std::net::TcpStream {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

impl Conn for std::os::unix::net::UnixStream {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

fn accept_loop(state: &Arc<State>, mode: Mode, accept: impl Fn() -> io::Result<Box<dyn Conn>>) {
    // The listener's receive timeout makes accept() return every POLL.
    let mut local = Counters::default();
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !state.stopping() {
        match accept() {
            Ok(conn) => {
                let max = state.shared.config.max_conns;
                if state.shared.open_conns.fetch_add(1, Ordering::Relaxed) >= max {
                    state.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
                    local.refused += 1;
                    state.flush(&mut local);
                    continue;
                }
                state.open.fetch_add(1, Ordering::Relaxed);
                local.accepted += 1;
                state.flush(&mut local);
                let st = state.clone();
                let spawned = std::thread::Builder::new()
                    .name("ringecho-conn".into())
                    .stack_size(CONN_STACK)
                    .spawn(move || serve_conn(&st, mode, conn));
                match spawned {
                    Ok(h) => conns.push(h),
                    Err(_) => {
                        state.open.fetch_sub(1, Ordering::Relaxed);
                        state.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
                        local.err_other += 1;
                    }
                }
                conns.retain(|h| !h.is_finished());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                local.err_accept += 1;
                state.flush(&mut local);
                std::thread::sleep(POLL);
            }
        }
    }
    state.flush(&mut local);
}

fn serve_conn(state: &State, mode: Mode, mut conn: Box<dyn Conn>) {
    let config = &state.shared.config;
    let _ = conn.set_timeouts(POLL);
    let mut local = Counters::default();
    let mut buf = vec![0u8; config.buffer_size as usize];
    let mut ops = 0u32;
    let mut last_active = Instant::now();
    let mut source_offset = 0u64;
    let reason = loop {
        if state.drain_deadline().is_some_and(|d| Instant::now() >= d) {
            break Some("drain");
        }
        if config.idle_timeout.is_some_and(|t| last_active.elapsed() >= t) {
            break Some("idle");
        }
        ops += 1;
        if ops % FLUSH_EVERY == 0 {
            state.flush(&mut local);
        }
        if mode == Mode::Source {
            let phase = (source_offset % 251) as usize;
            match conn.write(&SOURCE_PATTERN[phase..phase + SOURCE_CHUNK]) {
                Ok(n) => {
                    source_offset += n as u64;
                    local.bytes_out += n as u64;
                    local.sends += 1;
                    last_active = Instant::now();
                    continue;
                }
                Err(e) if timed_out(&e) => continue,
                Err(e) => {
                    count_error(&mut local, &e);
                    break None;
                }
            }
        }
        match conn.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                local.bytes_in += n as u64;
                local.recv_ops += 1;
                last_active = Instant::now();
                if mode == Mode::Echo {
                    if let Err(e) = write_all_patiently(state, &mut *conn, &buf[..n], &mut local) {
                        count_error(&mut local, &e);
                        break None;
                    }
                }
            }
            Err(e) if timed_out(&e) => {}
            Err(e) => {
                count_error(&mut local, &e);
                break None;
            }
        }
    };
    match reason {
        Some("drain") => local.drain_closed += 1,
        Some(_) => local.idle_closed += 1,
        None => {}
    }
    local.closed += 1;
    drop(conn);
    state.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
    state.flush_closing(&mut local, true);
}

/// `write_all`, retrying through the socket's poll timeout until the drain deadline.
fn write_all_patiently(
    state: &State,
    conn: &mut dyn Conn,
    mut data: &[u8],
    local: &mut Counters,
) -> io::Result<()> {
    while !data.is_empty() {
        match conn.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                local.bytes_out += n as u64;
                local.sends += 1;
                data = &data[n..];
            }
            Err(e) if timed_out(&e) => {
                if state.drain_deadline().is_some_and(|d| Instant::now() >= d) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

fn count_error(c: &mut Counters, e: &io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionReset => c.err_reset += 1,
        io::ErrorKind::BrokenPipe => c.err_pipe += 1,
        _ => c.err_other += 1,
    }
}

/// One datagram's fate, shared by the UDP and Unix datagram loops.
fn judge(state: &State, mode: Mode, n: usize, local: &mut Counters) -> bool {
    local.dgrams_in += 1;
    if n > state.shared.config.buffer_size as usize {
        local.dgram_drop_truncated += 1;
        return false;
    }
    local.bytes_in += n as u64;
    if mode == Mode::Discard {
        local.dgrams_discarded += 1;
        return false;
    }
    true
}

/// Where a datagram came from: an IP address (rate-limited per IP), or a Unix path;
/// `None` for an unbound Unix sender, which cannot be answered.
enum Peer {
    Ip(std::net::SocketAddr),
    Path(std::path::PathBuf),
}

fn udp_loop(state: &State, mode: Mode, sock: &UdpSocket) {
    let _ = sock.set_read_timeout(Some(POLL));
    dgram_loop(
        state,
        mode,
        |buf| sock.recv_from(buf).map(|(n, from)| (n, Some(Peer::Ip(from)))),
        |data, to| match to {
            Peer::Ip(addr) => sock.send_to(data, addr),
            Peer::Path(_) => Err(io::ErrorKind::InvalidInput.into()),
        },
    );
}

fn unixgram_loop(state: &State, mode: Mode, sock: &UnixDatagram) {
    let _ = sock.set_read_timeout(Some(POLL));
    dgram_loop(
        state,
        mode,
        |buf| sock.recv_from(buf).map(|(n, from)| (n, from.as_pathname().map(|p| Peer::Path(p.to_owned())))),
        |data, to| match to {
            Peer::Path(path) => sock.send_to(data, path),
            Peer::Ip(_) => Err(io::ErrorKind::InvalidInput.into()),
        },
    );
}

/// Receives datagrams until shutdown and answers each with exactly its own bytes (or
/// drops and counts it), whatever the socket family.
fn dgram_loop(
    state: &State,
    mode: Mode,
    mut recv: impl FnMut(&mut [u8]) -> io::Result<(usize, Option<Peer>)>,
    send: impl Fn(&[u8], &Peer) -> io::Result<usize>,
) {
    // One byte more than a buffer holds: a datagram that fills it was too big.
    let mut buf = vec![0u8; state.shared.config.buffer_size as usize + 1];
    let mut local = Counters::default();
    let mut limiter = state
        .shared
        .config
        .udp_rate_limit
        .map(|pps| RateLimiter::new(pps, (pps / 10).max(1), 65_536, Instant::now()));
    let mut ops = 0u32;
    while !state.stopping() {
        ops += 1;
        if ops % FLUSH_EVERY == 0 {
            state.flush(&mut local);
        }
        let (n, from) = match recv(&mut buf) {
            Ok(r) => r,
            Err(e) if timed_out(&e) => {
                state.flush(&mut local);
                continue;
            }
            Err(_) => {
                local.err_other += 1;
                continue;
            }
        };
        if !judge(state, mode, n, &mut local) {
            continue;
        }
        let Some(peer) = from else {
            local.dgram_drop_unanswerable += 1;
            continue;
        };
        if let (Some(l), Peer::Ip(addr)) = (limiter.as_mut(), &peer) {
            if !l.allow(addr.ip(), Instant::now()) {
                local.dgram_drop_rate_limited += 1;
                continue;
            }
        }
        match send(&buf[..n], &peer) {
            Ok(m) => {
                local.dgrams_echoed += 1;
                local.bytes_out += m as u64;
            }
            Err(_) => local.dgram_drop_send_error += 1,
        }
    }
    state.flush(&mut local);
}
