//! One connection of the `epoll` backend and its I/O, free of the table and the poll: its
//! socket (TCP or Unix), the queue of pool-buffer ranges read and not yet written, and the
//! three moves the stream part (`stream.rs`) drives it by — write the source pattern,
//! write the queue, read once — each within the turn's budget and each saying how far it
//! went.
//!
//! Invariants kept here: bytes leave in the order they were read; a connection holds at
//! most `max_conn_buffer` bytes read and not yet written (a read stops at the bound, and
//! reading resumes only once the queue is half empty); every pool buffer a read takes is
//! either queued here or back on the free list.

use crate::config::Mode;
use crate::policy::{self, SOURCE_CHUNK};
use crate::stats::Counters;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(super) fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    pub(super) fn set_nonblocking(&self) -> io::Result<()> {
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

pub(super) struct Conn {
    pub(super) stream: Stream,
    pub(super) mode: Mode,
    /// (pool index, start, end) of bytes read and not yet written, in order.
    pub(super) queue: VecDeque<(u32, u32, u32)>,
    pub(super) queued: u32,
    pub(super) read_eof: bool,
    pub(super) paused: bool,
    pub(super) source_offset: u64,
    pub(super) last_active: Instant,
    /// Registered for writability too (only while a write would block: otherwise every
    /// ACK that frees send space would wake the worker for nothing).
    pub(super) want_write: bool,
}

/// How far a write went.
pub(super) enum Wrote {
    /// Everything there was to write (or the budget).
    All,
    /// The socket is full: wait for writability.
    Blocked,
    /// A socket error (counted).
    Failed,
}

/// What one read did.
pub(super) enum Got {
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

pub(super) fn interrupted(e: &io::Error) -> bool {
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

pub(super) fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Conn {
    /// Source: writes the pattern until the socket is full or the budget is spent.
    pub(super) fn write_source(&mut self, budget: &mut usize, c: &mut Counters, now: Instant) -> Wrote {
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
    pub(super) fn write_queue(
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
    pub(super) fn read_once(
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
