//! A stream connection's rules, the same on every backend: who is admitted (`--max-conns`
//! over the whole process, nobody while draining), when a drain ends, how a connection's
//! end is counted, which socket errors count as what, and the bytes and operations
//! counted per receive and send. Pure: no I/O, no clock of its own.
//!
//! Invariant kept here (and tested below): `accepted = closed + open`, and each close is
//! counted once, with its reason (`idle_closed`, `drain_closed`, `evicted` are subsets
//! of `closed`).

use crate::stats::Counters;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `--max-conns` over the whole process: a shared count of open connections.
pub(crate) struct Admission<'a> {
    open: &'a AtomicUsize,
    max: usize,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The peer closed its side and everything was echoed.
    Eof,
    /// A socket error (reset, broken pipe, ...).
    Error,
    /// `--idle-timeout`.
    Idle,
    /// Shutdown's drain timeout ran out.
    Drain,
    /// The buffer pool ran dry while this connection sat on a full queue it could not send.
    Evicted,
}

impl<'a> Admission<'a> {
    pub fn new(open: &'a AtomicUsize, max: usize) -> Admission<'a> {
        Admission { open, max }
    }

    /// Decides on a connection just accepted: true to serve it (counted `accepted`), false
    /// to close it at once (counted `refused`): past `--max-conns`, or while draining.
    pub fn admit(&self, draining: bool, c: &mut Counters) -> bool {
        if draining || self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            if !draining {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
            c.refused += 1;
            return false;
        }
        c.accepted += 1;
        true
    }

    /// Counts the end of an admitted connection, once, with its reason.
    pub fn release(&self, reason: CloseReason, c: &mut Counters) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        c.closed += 1;
        match reason {
            CloseReason::Idle => c.idle_closed += 1,
            CloseReason::Drain => c.drain_closed += 1,
            CloseReason::Evicted => c.evicted += 1,
            CloseReason::Eof | CloseReason::Error => {}
        }
    }
}

/// `after` past `from`; a duration too large to add is as good as for ever (a year).
pub(crate) fn deadline(from: Instant, after: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    from.checked_add(after).unwrap_or(from + YEAR)
}

/// Counts a socket error on a connection by its class.
pub(crate) fn count_error(c: &mut Counters, e: &io::Error) {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => c.err_reset += 1,
        Some(libc::EPIPE) => c.err_pipe += 1,
        Some(_) => c.err_other += 1,
        None => match e.kind() {
            io::ErrorKind::ConnectionReset => c.err_reset += 1,
            io::ErrorKind::BrokenPipe => c.err_pipe += 1,
            _ => c.err_other += 1,
        },
    }
}

/// [`count_error`] for an errno from a completion.
pub(crate) fn count_errno(c: &mut Counters, errno: i32) {
    count_error(c, &io::Error::from_raw_os_error(errno));
}

/// Counts bytes received on a stream.
pub(crate) fn count_received(c: &mut Counters, n: usize) {
    c.bytes_in += n as u64;
    c.recv_ops += 1;
}

/// Counts bytes a send moved on a stream.
pub(crate) fn count_sent(c: &mut Counters, n: usize) {
    c.bytes_out += n as u64;
    c.sends += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_and_bounds() {
        let open = AtomicUsize::new(0);
        let a = Admission::new(&open, 2);
        let mut c = Counters::default();
        assert!(a.admit(false, &mut c));
        assert!(a.admit(false, &mut c));
        assert!(!a.admit(false, &mut c), "past --max-conns");
        assert!(!a.admit(true, &mut c), "draining");
        assert_eq!((c.accepted, c.refused, open.load(Ordering::Relaxed)), (2, 2, 2));
        a.release(CloseReason::Drain, &mut c);
        a.release(CloseReason::Eof, &mut c);
        assert_eq!((c.closed, c.drain_closed, open.load(Ordering::Relaxed)), (2, 1, 0));
        assert!(a.admit(false, &mut c), "room again");
    }

    #[test]
    fn error_classes() {
        let mut c = Counters::default();
        count_errno(&mut c, libc::ECONNRESET);
        count_errno(&mut c, libc::EPIPE);
        count_errno(&mut c, libc::ETIMEDOUT);
        count_error(&mut c, &io::Error::from(io::ErrorKind::ConnectionReset));
        count_error(&mut c, &io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!((c.err_reset, c.err_pipe, c.err_other), (2, 2, 1));
    }
}
