//! One load worker, whatever the transport: set-up, the turn loop and the exit.
//!
//! Each turn: publish the buffers given back and the live figures; decide whether to stop
//! (the stop time, a request budget spent, Ctrl-C, every connection gone) and, once
//! stopping, whether the drain is over; wait for completions (no longer than until the
//! next message is due); take them; let the transport do its housekeeping; hand out the
//! open-loop messages that have fallen due.
//!
//! Invariant: the worker returns (result or error) only after cancelling every operation
//! and waiting for the kernel's answers; if the kernel has not answered them all, the
//! ring, its buffers and the transport's send memory are leaked, never freed.

use super::clock::Clock;
use super::recorder::Recorder;
use super::stamps::Stamps;
use super::token::Token;
use super::transport::{Ctx, Transport};
use super::types::{RunError, Shared, WorkerResult};
use crate::connect::{self, Outcome};
use crate::plan::Timestamps;
use io_uring::{opcode, types};
use ringecho::ring::{PushError, Ring, RingOptions};
use std::sync::Barrier;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The longest a turn waits: housekeeping (expiry, re-arming, the stop) runs at least
/// this often.
const TICK: Duration = Duration::from_millis(10);
/// Most messages queued on one connection in open loop before new ones are refused
/// (counted as `backlog_overflow`): the run says the target fell behind instead of
/// growing without bound.
const MAX_BACKLOG: usize = 1 << 20;
/// Submission queue entries of a worker's ring.
const RING_ENTRIES: u32 = 1024;
/// Bytes per provided receive buffer.
const BUFFER_SIZE: u32 = 64 * 1024;
/// Completions a batching turn waits for before its time is up: more than a turn takes
/// (it ends at the next due time), fewer than the completion queue holds.
const BATCH: usize = RING_ENTRIES as usize;
/// How long the exit waits for the kernel to answer the cancels.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// Runs one worker over transport `T`.
pub(super) fn run<T: Transport>(args: WorkerArgs<'_>) -> Result<WorkerResult, RunError> {
    let shared = args.shared;
    let mut clock = Clock::new(shared, args.index, args.workers);
    let mut rec = Recorder::new(args.index, shared.plan.intervals);
    // The ring first: it must be made on this thread, and a failure still meets the
    // barrier below.
    let ring = new_ring(T::BUFFERS);
    let (conns, connect_error) = connect_all::<T>(&args, &mut rec);
    let transport = (!conns.is_empty()).then(|| T::new(shared, &clock, conns));
    start_together::<T>(&args, &mut clock);
    // The CPU of the run from the common start, as its wall time is: connecting aside.
    let cpu_start = thread_cpu();
    let mut ring = ring?;
    let Some(transport) = transport else {
        let mut result = rec.finish(&clock, thread_cpu().saturating_sub(cpu_start));
        result.connect_error = connect_error;
        return Ok(result);
    };
    let transport = transport?;
    let connected = transport.conns();

    let ringecho::ring::Parts { driver, buffers: buf_ring, .. } = ring.split();
    let stamps = Stamps::new(shared.plan.timestamps == Timestamps::Kernel, clock.start);
    // Replies wait for the next due time only where the kernel stamps their arrival.
    let batch = stamps.on && clock.interval.is_some() && !shared.plan.spin && transport.stamps_arrivals();
    let cx = Ctx { clock, rec, stamps, buf_ring, driver, push_error: None, now: 0, scheduling: true };
    let window = shared.plan.send_window.map_or(0, |w| w.as_nanos() as u64);
    let mut worker = Worker { cx, transport, next_conn: 0, spin: shared.plan.spin, batch, window };
    let outcome = worker.turns(shared, T::drain(shared).as_nanos() as u64);
    let Exit { clock, rec, cpu, leaked } = worker.exit(outcome.is_ok());
    if leaked {
        ring.leak();
    }
    let stop = outcome?;
    let mut result = rec.finish(&clock, cpu.saturating_sub(cpu_start));
    result.connected = connected;
    result.connect_error = connect_error;
    result.all_gone_at = stop.all_gone_at;
    result.time_limit_hit = stop.time_limit_hit;
    Ok(result)
}

/// A worker's ring: `buffers` provided buffers of [`BUFFER_SIZE`].
fn new_ring(buffers: u16) -> Result<Ring, RunError> {
    let options =
        RingOptions { entries: RING_ENTRIES, sqpoll: false, buffers, buffer_size: BUFFER_SIZE, dgram: None };
    Ring::new(options).map_err(RunError::Ring)
}

/// Opens this worker's share of the connections, all at once (`crate::connect`: each gives
/// up at `--connect-timeout` or the run's deadline, whichever comes first; Ctrl-C ends the
/// wait), timing each; returns those opened and the first error.
fn connect_all<T: Transport>(
    args: &WorkerArgs<'_>,
    rec: &mut Recorder,
) -> (Vec<T::Conn>, Option<std::io::Error>) {
    let shared = args.shared;
    let id = |i: usize| args.first_conn + i as u32;
    let limits = connect::Limits { timeout: shared.plan.connect_timeout, deadline: shared.deadline };
    let mut conns: Vec<Option<T::Conn>> = (0..args.conns).map(|_| None).collect();
    let mut first_error = None;
    let dial = |i| T::dial(shared, id(i));
    connect::all(args.conns as usize, dial, limits, &shared.interrupted, |i, outcome| {
        let conn = match outcome {
            Outcome::Made { socket, keep, took } => {
                T::connected(shared, id(i), socket, keep).map(|c| (c, took))
            }
            Outcome::Failed(e) => Err(e),
            // Ctrl-C while connecting: not a failed connect; meet the others at the
            // barrier, then stop.
            Outcome::Stopped => {
                let why =
                    || std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted while connecting");
                first_error.get_or_insert_with(why);
                return;
            }
        };
        match conn {
            Ok((conn, took)) => {
                rec.connected(took.as_nanos() as u64);
                conns[i] = Some(conn);
                shared.live.connected.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                rec.connect_failed(&e);
                first_error.get_or_insert(e);
            }
        }
    });
    (conns.into_iter().flatten().collect(), first_error)
}

/// The hand-over from a worker's set-up to its run: waits for `--start-at`, meets the
/// other workers at the barrier (always, whatever set-up did, so none waits for ever),
/// and starts the common clock.
fn start_together<T: Transport>(args: &WorkerArgs<'_>, clock: &mut Clock) {
    args.shared.wait_for_start_at();
    args.barrier.wait();
    clock.start = args.shared.begin();
    clock.end_by(args.shared.deadline, T::drain(args.shared));
}

struct Worker<'r, T> {
    cx: Ctx<'r>,
    transport: T,
    /// Where the open-loop round robin goes next.
    next_conn: usize,
    /// Busy-poll the ring (`--spin`) instead of waiting in the kernel.
    spin: bool,
    /// Open loop with stamped arrivals: a turn waits for the next due time, not for the
    /// first completion (replies and send completions are taken in batches).
    batch: bool,
    /// `--send-window`, ns: a turn hands out what falls due this much ahead of now.
    window: u64,
}

/// Why a worker's turns ended, beyond the planned stop.
#[derive(Debug, Default)]
struct Stopped {
    /// When every connection was gone (ns), if that stopped the run.
    all_gone_at: Option<u64>,
    /// The run's deadline (`--max-duration`) stopped it before its planned end (requests
    /// still to hand out, or its `--duration` not over).
    time_limit_hit: bool,
}

/// What is left of a worker once its ring is quiet (or given up).
struct Exit {
    clock: Clock,
    rec: Recorder,
    cpu: Duration,
    /// The kernel may still hold operations: the ring must be leaked too.
    leaked: bool,
}

impl<T: Transport> Worker<'_, T> {
    /// Starts every connection, then runs turns until the stop and the drain are over.
    fn turns(&mut self, shared: &Shared, drain: u64) -> Result<Stopped, RunError> {
        let (cx, t) = (&mut self.cx, &mut self.transport);
        cx.now = cx.clock.now();
        for i in 0..t.conns() {
            t.arm_recv(cx, i);
            t.fill(cx, i);
        }
        let mut stopping_since: Option<u64> = None;
        let mut stopped = Stopped::default();
        loop {
            if let Some(e) = self.cx.push_error.take() {
                return Err(RunError::Push(e));
            }
            self.cx.buf_ring.publish();
            self.cx.rec.publish(&shared.live);
            let interrupted = shared.interrupted.load(Ordering::Relaxed);
            let now = self.cx.now;
            let all_gone = self.transport.all_gone();
            if stopping_since.is_none() && (self.stop_due(now) || interrupted || all_gone) {
                stopping_since = Some(now);
                self.cx.scheduling = false;
                let clock = &self.cx.clock;
                if all_gone && now < clock.stop_at && clock.budget != Some(0) {
                    stopped.all_gone_at = Some(now);
                }
                stopped.time_limit_hit = clock.cut && clock.budget != Some(0) && now >= clock.stop_at;
            }
            if let Some(since) = stopping_since {
                if self.transport.drained() || interrupted || now >= since.saturating_add(drain) {
                    return Ok(stopped);
                }
            }
            let wait = wait_budget(&self.cx.clock, now, stopping_since.is_some(), self.window / 4);
            // Once stopping, every reply is waited for: the drain ends when none is left.
            let want = if self.batch && stopping_since.is_none() { BATCH } else { 1 };
            let turn = if self.spin { self.cx.driver.spin() } else { self.cx.driver.wait(want, Some(wait)) };
            turn.map_err(|error| RunError::Io { step: "io_uring_enter".into(), error })?;
            self.cx.now = self.cx.clock.now();
            self.cx.stamps.tick(self.cx.now);
            if self.batch {
                // The turn woke at a due time: what is due goes to the kernel first, so
                // its send lag is not the time taken to process the batch of replies that
                // waited for it (their arrival is stamped by the kernel, so taking them
                // later changes no figure). The flush's enter also runs the kernel's
                // pending work, so it reads the clock again before taking completions:
                // a stamp is placed against the time it is taken (placed against the
                // hand-out's reading, a reply looked "from the future" and was timed
                // early, and a probe's send stamp was refused).
                if self.hand_out_due() > 0 {
                    flush(&mut self.cx, &mut self.transport);
                }
            }
            self.reap();
            self.transport.housekeeping(&mut self.cx);
            self.hand_out_due();
        }
    }

    /// The stop time has come, or a request-bound run has handed out its share.
    fn stop_due(&self, now: u64) -> bool {
        now >= self.cx.clock.stop_at || self.cx.clock.budget == Some(0)
    }

    /// Takes every completion the kernel has posted.
    #[inline]
    fn reap(&mut self) {
        take_completions(&mut self.cx, &mut self.transport);
    }

    /// Open loop: hands out every message that has fallen due (or falls due within the
    /// send window), round robin over the live connections; how many. A message sent
    /// before its due time is timed from its send ([`Recorder::handed_out`] sees no lag).
    ///
    /// [`Recorder::handed_out`]: super::recorder::Recorder::handed_out
    fn hand_out_due(&mut self) -> usize {
        let Some(interval) = self.cx.clock.interval else { return 0 };
        let (cx, t) = (&mut self.cx, &mut self.transport);
        // The time now, not the turn's start: the reap before may have taken a while,
        // and the send lag and each message's send time must include it.
        cx.now = cx.clock.now();
        let mut joined = false;
        let mut handed = 0;
        while cx.scheduling
            && cx.clock.next_due <= cx.now.saturating_add(self.window) as f64
            && cx.clock.budget != Some(0)
        {
            // Early messages stay on their side of the warm-up's end and of the stop: a
            // message is counted (warm-up, window, budget) by when it is timed from.
            if cx.clock.next_due > cx.now as f64 && crosses(&cx.clock, cx.now) {
                break;
            }
            let Some(i) = next_live(t.conns(), |i| t.is_dead(i), &mut self.next_conn) else { break };
            // Due now or before: timed from then; due later (the window): from now.
            let due = (cx.clock.next_due as u64).min(cx.now);
            cx.clock.next_due += interval;
            if t.queued(i) >= MAX_BACKLOG {
                cx.rec.counters.backlog_overflow += 1;
                continue;
            }
            cx.rec.handed_out(&cx.clock, due, cx.now);
            handed += 1;
            t.schedule(cx, i, due);
            t.pump(cx, i);
            if self.batch && t.send_blocked(i) {
                // Its previous send's completion has not been taken: a batching turn does
                // not wake for it. With --coalesce the messages due wait for one flush
                // after the loop and go out together; else hand the send to the kernel
                // now and take what has completed (a send on a socket with room
                // completes as it is submitted), so that a message never waits a turn
                // behind another.
                if t.joins_sends() {
                    joined = true;
                    continue;
                }
                flush(cx, t);
                t.pump(cx, i);
            }
        }
        if joined {
            flush(cx, t);
            for i in 0..t.conns() {
                t.pump(cx, i);
            }
        }
        handed
    }

    /// Counts what is still unanswered (after a clean run), cancels every operation and
    /// waits for the kernel's answers; gives the transport up if they did not all come.
    fn exit(mut self, count_unanswered: bool) -> Exit {
        let cx = &mut self.cx;
        if count_unanswered {
            cx.rec.counters.unanswered_at_end += self.transport.unanswered(cx.clock.warm_end);
        }
        cancel_all(cx);
        let cpu = thread_cpu();
        let leaked = cx.driver.inflight() > 0;
        let Worker { cx, transport, .. } = self;
        if leaked {
            // The kernel did not give everything back in time: leak the memory it may
            // still touch (send memory, sockets, the queues) instead of freeing it.
            transport.leak();
            std::mem::forget(cx.driver);
        } else {
            drop(transport);
        }
        let mut rec = cx.rec;
        rec.breakdown.tally.merge(&cx.stamps.tally);
        Exit { clock: cx.clock, rec, cpu, leaked }
    }
}

/// Cancels every operation on the ring and waits (bounded) for the kernel to answer
/// them all, giving any buffer a late completion carries back to the ring. A cancel the
/// ring refuses leaves the operations in flight, which the caller then leaks.
fn cancel_all(cx: &mut Ctx<'_>) {
    let cancel =
        opcode::AsyncCancel2::new(types::CancelBuilder::any()).build().user_data(Token::CANCEL.encode());
    // SAFETY: a cancel points to no memory.
    if unsafe { cx.driver.push(&cancel) }.is_err() {
        return;
    }
    let give_up = Instant::now() + CANCEL_WAIT;
    while cx.driver.inflight() > 0 && Instant::now() < give_up {
        if cx.driver.wait(1, Some(Duration::from_millis(50))).is_err() {
            break;
        }
        while let Some(cqe) = cx.driver.completion() {
            if let Some(buf) = cx.take_buf(cqe.flags()) {
                cx.give_back(buf);
            }
        }
    }
}

/// The next live connection after `rr`, round robin.
fn next_live(len: usize, dead: impl Fn(usize) -> bool, rr: &mut usize) -> Option<usize> {
    for _ in 0..len {
        let i = *rr % len;
        *rr = rr.wrapping_add(1);
        if !dead(i) {
            return Some(i);
        }
    }
    None
}

/// Hands what is queued to the kernel and takes what has completed, seen now (a reply
/// stamped after the turn began is not from the future).
fn flush<T: Transport>(cx: &mut Ctx<'_>, t: &mut T) {
    if let Err(e) = cx.driver.spin() {
        cx.push_error.get_or_insert(PushError::Submit(e));
    }
    cx.now = cx.clock.now();
    take_completions(cx, t);
}

/// Takes every completion the kernel has posted.
#[inline]
fn take_completions<T: Transport>(cx: &mut Ctx<'_>, t: &mut T) {
    while let Some(cqe) = cx.driver.completion() {
        // A value that is not a token of ours names nothing to act on.
        if let Some(token) = Token::decode(cqe.user_data()) {
            t.complete(cx, token, cqe.result(), cqe.flags());
        }
    }
}

/// Whether the next due message, sent at `now`, would cross the end of the warm-up or
/// the stop: it must wait for its due time (`--send-window` sends no message early across
/// either).
fn crosses(clock: &Clock, now: u64) -> bool {
    let due = clock.next_due;
    due >= clock.stop_at as f64 || (now < clock.warm_end && due >= clock.warm_end as f64)
}

/// How long a turn may wait: until the next due time (`ahead` ns before it: a quarter of
/// the send window, so that a window's wake-up, late by the machine's wake latency, still
/// finds most of its messages not yet due; at the due time itself when that message may
/// not go early), the stop, or the tick.
fn wait_budget(clock: &Clock, now: u64, stopping: bool, ahead: u64) -> Duration {
    if stopping {
        return TICK;
    }
    let mut until = now + TICK.as_nanos() as u64;
    if clock.interval.is_some() {
        let ahead = if crosses(clock, now) { 0 } else { ahead };
        until = until.min((clock.next_due.ceil() as u64).saturating_sub(ahead));
    }
    if clock.stop_at != u64::MAX {
        until = until.min(clock.stop_at);
    }
    Duration::from_nanos(until.saturating_sub(now).max(1_000))
}

/// CPU time used by the calling thread.
pub(super) fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What a worker is given: its place among the workers and its share of the connections.
pub(crate) struct WorkerArgs<'a> {
    pub index: usize,
    pub workers: usize,
    /// The run-wide number of its first connection.
    pub first_conn: u32,
    pub conns: u32,
    pub shared: &'a Shared,
    pub barrier: &'a Barrier,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_the_dead() {
        let dead = |i: usize| i == 1;
        let mut rr = 0;
        let picks: Vec<_> = (0..4).map(|_| next_live(3, dead, &mut rr)).collect();
        assert_eq!(picks, [Some(0), Some(2), Some(0), Some(2)]);
        assert_eq!(next_live(3, |_| true, &mut rr), None, "all dead");
        assert_eq!(next_live(0, |_| false, &mut rr), None, "no connection");
    }

    #[test]
    fn a_turn_waits_for_the_first_of_due_stop_and_tick() {
        let plan = |model| {
            let mut s = super::super::tests::shared(model, crate::Stop::Duration(Duration::from_secs(1)));
            s.plan.warmup = Duration::ZERO;
            s
        };
        let closed = Clock::new(&plan(crate::Model::Closed { depth: 1 }), 0, 1);
        assert_eq!(wait_budget(&closed, 0, false, 0), TICK);
        assert_eq!(wait_budget(&closed, 995_000_000, false, 0), Duration::from_millis(5), "the stop");
        let mut open = Clock::new(&plan(crate::Model::Open { rate: 1000.0 }), 0, 1);
        open.next_due = 2_500_000.0;
        assert_eq!(wait_budget(&open, 1_000_000, false, 0), Duration::from_micros(1500), "the next due");
        assert_eq!(
            wait_budget(&open, 1_000_000, false, 100_000),
            Duration::from_micros(1400),
            "a quarter window ahead"
        );
        assert_eq!(wait_budget(&open, 3_000_000, false, 0), Duration::from_micros(1), "late: no spin at 0");
        assert_eq!(wait_budget(&open, 3_000_000, true, 0), TICK, "stopping: nothing is due");
        // Not ahead across the stop (nor the warm-up's end): that message waits for its time.
        open.next_due = 1_000_000_000.0;
        assert_eq!(wait_budget(&open, 999_000_000, false, 500_000), Duration::from_millis(1), "the stop");
    }
}
