//! Stream connections of the `threads` backend: the accepting thread, and one blocking
//! thread per connection that reads a buffer and writes it back before reading again.

use super::state::{FLUSH_EVERY, POLL, State, timed_out};
use crate::config::Mode;
use crate::policy::{self, CloseReason, SOURCE_CHUNK};
use crate::stats::Counters;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Stack of a connection thread: it holds one buffer on the heap and little else.
const CONN_STACK: usize = 64 * 1024;

/// What a connection thread needs of its socket.
pub(super) trait Conn: Read + Write + Send {
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

pub(super) fn accept_loop(state: &Arc<State>, mode: Mode, accept: impl Fn() -> io::Result<Box<dyn Conn>>) {
    // The listener's receive timeout makes accept() return every POLL.
    let mut local = Counters::default();
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !state.stopping() {
        match accept() {
            Ok(conn) => {
                let admitted = state.shared.admission().admit(false, &mut local);
                if admitted {
                    state.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                state.flush(&mut local);
                if !admitted {
                    continue; // dropping `conn` closes it
                }
                let st = state.clone();
                let spawned = std::thread::Builder::new()
                    .name("ringecho-conn".into())
                    .stack_size(CONN_STACK)
                    .spawn(move || serve_conn(&st, mode, conn));
                match spawned {
                    Ok(h) => conns.push(h),
                    Err(_) => {
                        local.err_other += 1;
                        state.shared.admission().release(CloseReason::Error, &mut local);
                        state.flush_closing(&mut local, true);
                    }
                }
                conns.retain(|h| !h.is_finished());
            }
            Err(e) if timed_out(&e) => {}
            Err(_) => {
                local.err_accept += 1;
                state.flush(&mut local);
                std::thread::sleep(POLL);
            }
        }
    }
    state.flush(&mut local);
}

/// The deadline that has passed, if any: the drain deadline, or idleness.
fn expired(state: &State, last_active: Instant) -> Option<CloseReason> {
    if state.drain_deadline().is_some_and(|d| Instant::now() >= d) {
        return Some(CloseReason::Drain);
    }
    if state.shared.config.idle_timeout.is_some_and(|t| last_active.elapsed() >= t) {
        return Some(CloseReason::Idle);
    }
    None
}

fn serve_conn(state: &State, mode: Mode, mut conn: Box<dyn Conn>) {
    let _ = conn.set_timeouts(POLL);
    let mut local = Counters::default();
    let reason = serve(state, mode, &mut *conn, &mut local);
    state.shared.admission().release(reason, &mut local);
    drop(conn);
    state.flush_closing(&mut local, true);
}

/// Echoes (or discards, or sources) until the connection ends or a deadline passes;
/// returns why it ended (a socket error is counted).
fn serve(state: &State, mode: Mode, conn: &mut dyn Conn, local: &mut Counters) -> CloseReason {
    let mut buf = vec![0u8; state.shared.config.buffer_size as usize];
    let mut ops = 0u32;
    let mut last_active = Instant::now();
    let mut source_offset = 0u64;
    loop {
        if let Some(reason) = expired(state, last_active) {
            return reason;
        }
        ops += 1;
        if ops % FLUSH_EVERY == 0 {
            state.flush(local);
        }
        if mode == Mode::Source {
            match conn.write(policy::source_chunk(source_offset, SOURCE_CHUNK)) {
                Ok(n) => {
                    source_offset += n as u64;
                    policy::count_sent(local, n);
                    last_active = Instant::now();
                }
                Err(e) if timed_out(&e) => {}
                Err(e) => {
                    policy::count_error(local, &e);
                    return CloseReason::Error;
                }
            }
            continue;
        }
        match conn.read(&mut buf) {
            Ok(0) => return CloseReason::Eof,
            Ok(n) => {
                policy::count_received(local, n);
                last_active = Instant::now();
                if policy::keeps_received(mode) {
                    if let Err(reason) = write_all(state, conn, &buf[..n], local, &mut last_active) {
                        return reason;
                    }
                }
            }
            Err(e) if timed_out(&e) => {}
            Err(e) => {
                policy::count_error(local, &e);
                return CloseReason::Error;
            }
        }
    }
}

/// `write_all`, retrying through the socket's poll timeout until the drain deadline or
/// the idle timeout (a peer that stopped reading is idle: nothing moves).
fn write_all(
    state: &State,
    conn: &mut dyn Conn,
    mut data: &[u8],
    local: &mut Counters,
    last_active: &mut Instant,
) -> Result<(), CloseReason> {
    while !data.is_empty() {
        match conn.write(data) {
            Ok(0) => {
                policy::count_error(local, &io::ErrorKind::WriteZero.into());
                return Err(CloseReason::Error);
            }
            Ok(n) => {
                policy::count_sent(local, n);
                *last_active = Instant::now();
                data = &data[n..];
            }
            Err(e) if timed_out(&e) => {
                if let Some(reason) = expired(state, *last_active) {
                    return Err(reason);
                }
            }
            Err(e) => {
                policy::count_error(local, &e);
                return Err(CloseReason::Error);
            }
        }
    }
    Ok(())
}
