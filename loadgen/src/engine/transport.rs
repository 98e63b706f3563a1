//! The contract between the worker loop and a transport: what the stream and datagram
//! engines supply ([`Transport`]), and what the worker lends them on every call ([`Ctx`]:
//! its clock, recorder, ring and the time of the turn).
//!
//! Invariant: an operation a transport submits through [`Ctx::push`] points only at
//! memory the transport owns on the heap (or the worker's buffer ring); the worker drops
//! the transport only once the kernel has answered every operation, and otherwise leaks
//! it with [`Transport::leak`]. The worker below depends on this module, never the reverse.

use super::clock::Clock;
use super::recorder::Recorder;
use super::stamps::Stamps;
use super::token::Token;
use super::types::{RunError, Shared};
use crate::connect::Dial;
use io_uring::{cqueue, squeue};
use ringecho::ring::{Buf, BufRing, Driver, PushError};
use socket2::Socket;
use std::time::Duration;

/// What a worker lends a transport for one call.
pub(crate) struct Ctx<'r> {
    pub clock: Clock,
    pub rec: Recorder,
    /// The kernel's stamps: the clock conversion and the probes.
    pub stamps: Stamps,
    pub buf_ring: &'r mut BufRing,
    pub(super) driver: Driver<'r>,
    /// The first push the ring refused: the run ends with it at the next turn.
    pub(super) push_error: Option<PushError>,
    /// Now, in ns since the start: read once per turn, after waiting.
    pub now: u64,
    /// False once the run is stopping: nothing new is scheduled (closed loop included).
    pub scheduling: bool,
}

impl Ctx<'_> {
    /// Queues `entry` for the kernel. A refusal is kept and ends the run at the next turn
    /// (the transport carries on as if the entry had gone; it is never retried).
    ///
    /// # Safety
    /// As [`Driver::push`]: whatever `entry` points to must stay valid until the operation's
    /// last completion, which the transport guarantees by owning it (see the module's
    /// invariant).
    #[inline]
    pub unsafe fn push(&mut self, entry: &squeue::Entry) {
        // SAFETY: the caller's contract is `Driver::push`'s.
        if let Err(e) = unsafe { self.driver.push(entry) } {
            self.push_error.get_or_insert(e);
        }
    }

    /// Queues `entries`, a link chain, in one submission ([`Driver::push_chain`]); a
    /// refusal as [`Ctx::push`].
    ///
    /// # Safety
    /// As [`Ctx::push`], for every entry.
    #[inline]
    pub unsafe fn push_chain(&mut self, entries: &[squeue::Entry]) {
        // SAFETY: the caller's contract is `Driver::push_chain`'s.
        if let Err(e) = unsafe { self.driver.push_chain(entries) } {
            self.push_error.get_or_insert(e);
        }
    }

    /// Admits one more message due at `intended` and picks its size; `None` once the run
    /// hands out no more (the stop or a request budget).
    #[inline]
    pub fn admit(&mut self, intended: u64) -> Option<u32> {
        if !self.clock.admit(intended, &mut self.rec.counters) {
            return None;
        }
        Some(self.clock.next_size())
    }

    /// The closed loop: a message answered (or given up) frees a slot for the next.
    #[inline]
    pub fn refills(&self) -> bool {
        self.scheduling && self.clock.interval.is_none()
    }

    /// The buffer a receive completion carries; `None` if it carries none, or an id the
    /// ring refuses (not data we can trust: counted as `buf_errors`, as the server counts
    /// the same refusal).
    #[inline]
    pub fn take_buf(&mut self, flags: u32) -> Option<Buf> {
        let bid = cqueue::buffer_select(flags)?;
        match self.buf_ring.take(bid) {
            Ok(buf) => Some(buf),
            Err(_) => {
                self.rec.counters.buf_errors += 1;
                None
            }
        }
    }

    /// A stream receive's completion (`res`, `flags`), taken apart: its buffer taken,
    /// what it says handed to `on`, the buffer given back after.
    #[inline]
    pub fn received(&mut self, res: i32, flags: u32, on: impl FnOnce(&mut Self, Received<'_>)) {
        let buf = self.take_buf(flags);
        let what = match (res, &buf) {
            (n, Some(buf)) if n > 0 => Received::Data(buf, n as u32),
            // Bytes without a buffer name nothing to read.
            (n, None) if n > 0 => Received::Cancelled,
            (0, _) => Received::Eof,
            (n, _) => match -n {
                libc::ENOBUFS => Received::Starved,
                libc::ECANCELED => Received::Cancelled,
                errno => Received::Failed(errno),
            },
        };
        on(self, what);
        if let Some(buf) = buf {
            self.give_back(buf);
        }
    }

    /// Gives a taken buffer back to the kernel (visible at the next turn).
    #[inline]
    pub fn give_back(&mut self, buf: Buf) {
        // It came from this ring's `take`, which is the only refusal `give_back` has.
        let returned = self.buf_ring.give_back(buf);
        debug_assert!(returned.is_ok(), "{returned:?}");
    }
}

/// What a stream receive's completion said ([`Ctx::received`]).
pub(super) enum Received<'b> {
    /// `n` bytes, in the buffer.
    Data(&'b Buf, u32),
    /// The peer ended the connection.
    Eof,
    /// The buffer ring was empty: re-arm once buffers are back.
    Starved,
    /// Cancelled (the exit), or nothing to act on.
    Cancelled,
    /// The receive failed with this errno.
    Failed(i32),
}

/// What a transport supplies to the worker loop: the connections, their messages and
/// their completions. The loop owns everything else (see [`super::worker`]).
pub(crate) trait Transport: Sized {
    /// Provided receive buffers in the worker's ring.
    const BUFFERS: u16;

    /// One connection (or flow) as set-up opens it.
    type Conn;

    /// What a dial keeps until its socket is connected (a socket path it bound).
    type Keep;

    /// Connection number `id`'s socket, set up to connect (what must be set before the
    /// connect is), and where it connects: `crate::connect` connects a worker's dials
    /// together, before the clock starts.
    fn dial(shared: &Shared, id: u32) -> std::io::Result<Dial<Self::Keep>>;

    /// Connection number `id` over its socket, now connected.
    fn connected(shared: &Shared, id: u32, socket: Socket, keep: Self::Keep) -> std::io::Result<Self::Conn>;

    /// The transport over the connections set-up opened (at least one).
    fn new(shared: &Shared, clock: &Clock, conns: Vec<Self::Conn>) -> Result<Self, RunError>;

    /// How long the drain after the stop may last at most.
    fn drain(shared: &Shared) -> Duration {
        shared.plan.drain
    }

    /// Connections (or flows), dead or alive.
    fn conns(&self) -> usize;

    /// Whether connection `i` takes no messages now.
    fn is_dead(&self, i: usize) -> bool;

    /// Whether every connection's receives carry the kernel's arrival stamp, so that an
    /// open loop may take replies in batches at its due times without changing what it
    /// measures.
    fn stamps_arrivals(&self) -> bool {
        false
    }

    /// Whether every connection has gone for good (the run stops).
    fn all_gone(&self) -> bool;

    /// Whether no live connection still awaits an answer (the drain ends).
    fn drained(&self) -> bool;

    /// Whether connection `i` has bytes to send but waits for its send in flight to
    /// complete (one send per stream connection is in flight at a time).
    fn send_blocked(&self, _i: usize) -> bool {
        false
    }

    /// Messages due together share a send (`--coalesce`): a blocked send is flushed
    /// once for all of them, not per message.
    fn joins_sends(&self) -> bool {
        false
    }

    /// Messages queued on connection `i` (bounded in open loop).
    fn queued(&self, i: usize) -> usize;

    /// Measured messages still unanswered at the end.
    fn unanswered(&self, warm_end: u64) -> u64;

    /// Arms connection `i`'s receive, unless it is armed or dead.
    fn arm_recv(&mut self, cx: &mut Ctx<'_>, i: usize);

    /// Schedules one message due at `intended` on connection `i`, if the clock admits it.
    fn schedule(&mut self, cx: &mut Ctx<'_>, i: usize, intended: u64);

    /// Hands connection `i`'s scheduled messages to the kernel, as far as it can take them.
    fn pump(&mut self, cx: &mut Ctx<'_>, i: usize);

    /// Takes one completion.
    fn complete(&mut self, cx: &mut Ctx<'_>, token: Token, res: i32, flags: u32);

    /// Once per turn, after the completions and before new messages are handed out:
    /// expiry, re-arming starved receives, reconnects.
    fn housekeeping(&mut self, cx: &mut Ctx<'_>);

    /// Gives the transport up without freeing what the kernel may still read or write (its
    /// sockets and send memory); tidies what lies outside the process.
    fn leak(self) {
        std::mem::forget(self);
    }

    /// Closed loop: fills connection `i`'s `depth` slots with messages due now and sends.
    fn fill(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let now = cx.now;
        for _ in 0..cx.clock.depth {
            self.schedule(cx, i, now);
        }
        self.pump(cx, i);
    }
}
