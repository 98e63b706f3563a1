//! The per-CPU event loop of the `uring` backend.
//!
//! Each turn: publish returned buffers and counters, submit every queued SQE and wait for
//! at least one completion (one `io_uring_enter`), then dispatch each completion by its
//! token. Buffers follow DESIGN.md's "buffer's life": a receive completion hands a buffer
//! to user space, the echo sends that same memory, and the buffer goes back to the ring
//! after its send (for SEND_ZC, after the notification). Stream connections live in
//! [`stream`], datagram listeners in [`dgram`].
//!
//! Invariant: every operation this worker submits points only into memory that outlives
//! its last completion — the buffer ring (dropped after the ring), the static `source`
//! pattern, or boxed fields of the worker, which [`Worker::finish`] keeps alive until the
//! kernel has answered every operation.

mod dgram;
mod stream;

use super::conn::Conn;
use super::token::{Kind, Token};
use crate::config::Config;
use crate::ratelimit::RateLimiter;
use crate::ring::{self, BufRing, Driver, TaskRun};
use crate::server::{SockKind, WorkerSetup};
use crate::stats::Counters;
use dgram::{DgramState, SourceKey};
use io_uring::{cqueue, opcode, squeue, types};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

/// How often a worker wakes by itself: idle timeouts, the drain deadline and back-off of
/// failing accepts and receives are checked at this granularity.
const TICK: Duration = Duration::from_millis(100);

/// Multishot accept only while more direct-descriptor slots are free than a full listen
/// backlog: one multishot accept can take the whole backlog in one go, and a connection
/// accepted into a full table is closed by the kernel (reset). Below that, accepts are
/// single-shot, one per free slot, and connections wait in the backlog instead.
const MULTISHOT_ACCEPT_MIN_FREE: u32 = 4096 + 64;

/// How long a connection must have been stuck on a full queue before pool pressure may
/// close it.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// Most sources a worker's rate limiter tracks one by one.
const RATE_LIMIT_SOURCES: usize = 65_536;

/// Runs a worker to completion. Reports set-up success or failure on `ready` before
/// serving.
pub(crate) fn run(setup: WorkerSetup, ready: SyncSender<Result<TaskRun, String>>) {
    let config = &setup.shared.config;
    let fail = |msg: String| {
        let _ = ready.send(Err(format!("worker {}: {msg}", setup.index)));
    };
    if let Some(cpu) = setup.cpu {
        if let Err(e) = crate::sys::pin_current_thread(cpu) {
            return fail(format!("cannot pin to CPU {cpu}: {e}"));
        }
    }
    // Declared before the ring, so dropped after it: the kernel may write the buffers
    // until the ring is gone.
    let mut buf_ring = match BufRing::new(config.buffers as u16, config.buffer_size, 0) {
        Ok(b) => b,
        Err(e) => return fail(format!("buffer ring of {} × {} B: {e}", config.buffers, config.buffer_size)),
    };
    let (mut uring, mode) = match ring::build(config.ring_entries, config.sqpoll) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    // SAFETY: `uring` is declared after `buf_ring` and so dropped before it.
    if let Err(e) = unsafe { buf_ring.register(&uring.submitter()) } {
        return fail(format!("registering the buffer ring: {e}"));
    }
    let table = file_table_size(config);
    if let Err(e) = uring.submitter().register_files_sparse(table) {
        return fail(format!("registering {table} direct descriptors: {e}"));
    }
    let driver = Driver::new(&mut uring);
    let now = Instant::now();
    let dgram = setup
        .listeners
        .iter()
        .map(|l| match l.kind {
            SockKind::Datagram { namelen } => DgramState::new(namelen),
            SockKind::Stream => DgramState::new(0),
        })
        .collect();
    let rate_limiter =
        config.udp_rate_limit.map(|pps| RateLimiter::new(pps, (pps / 10).max(1), RATE_LIMIT_SOURCES, now));
    let mut worker = Worker {
        slots_free: table,
        accepts: vec![AcceptState::default(); setup.listeners.len()],
        driver,
        buf_ring: &mut buf_ring,
        conns: (0..table).map(|_| Conn::default()).collect(),
        dgram,
        rate_limiter,
        zc_notifs: vec![0; config.buffers as usize],
        zc_release: vec![false; config.buffers as usize],
        starved: Vec::new(),
        backoff: Vec::new(),
        counters: Counters::default(),
        open: 0,
        now,
        draining: None,
        wake_buf: Box::new(0),
        tick_spec: Box::new(types::Timespec::from(TICK)),
        setup: &setup,
        limits: setup.features.recv_total_limit,
        buffers_returned: false,
        finishing: false,
    };
    let _ = ready.send(Ok(mode));
    if let Err(e) = worker.serve() {
        eprintln!("ringecho: worker {} stopped: {e}", setup.index);
    }
    worker.publish();
    if worker.driver.inflight() > 0 {
        // Operations the kernel did not give back (an error exit, or the give-up in
        // `finish`) may still write into the buffers, the wake-up word or the ring: leak
        // them rather than free memory the kernel may touch. Only on abnormal exits.
        eprintln!(
            "ringecho: worker {}: {} operations still in flight at exit; leaking their memory",
            setup.index,
            worker.driver.inflight()
        );
        std::mem::forget(worker);
        std::mem::forget(uring);
        std::mem::forget(buf_ring);
    }
}

/// Direct descriptors per worker: room for `--max-conns` plus the connections being
/// refused (each holds a slot until its close completes; a burst past the limit can have
/// many in flight), within the kernel's limits (RLIMIT_NOFILE and 2^20). When the table is
/// full anyway, the kernel closes the accepted connection and the accept fails: counted
/// as `err_accept`, and accepting resumes at the next tick.
fn file_table_size(config: &Config) -> u32 {
    let nofile = crate::sys::raise_nofile_limit().unwrap_or(1024);
    let headroom = (config.max_conns / 8).max(1024);
    let want = config.max_conns.saturating_add(headroom) as u64;
    want.min(nofile).min(1 << 20) as u32
}

/// The accept of one stream listener.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct AcceptState {
    pub armed: bool,
    pub multishot: bool,
    pub cancelling: bool,
}

pub(super) struct Worker<'a> {
    /// Direct-descriptor slots not holding a connection.
    slots_free: u32,
    accepts: Vec<AcceptState>,
    driver: Driver<'a>,
    buf_ring: &'a mut BufRing,
    conns: Vec<Conn>,
    /// Per listener (meaningful for datagram ones): the receive's state and msghdr.
    dgram: Vec<DgramState>,
    rate_limiter: Option<RateLimiter<SourceKey>>,
    /// SEND_ZC notifications still to come, per buffer.
    zc_notifs: Vec<u16>,
    /// Buffers fully sent whose return waits for their SEND_ZC notifications.
    zc_release: Vec<bool>,
    /// Connections whose receive ended with ENOBUFS.
    starved: Vec<u32>,
    /// Listeners whose accept or receive failed; re-armed at the next tick, so a failing
    /// operation (EMFILE, a full table) cannot spin.
    backoff: Vec<usize>,
    counters: Counters,
    open: u64,
    now: Instant,
    /// When shutdown began, the instant open connections are forced closed.
    draining: Option<Instant>,
    /// Target of the eventfd read; boxed so its address is stable while the read is in
    /// flight.
    wake_buf: Box<u64>,
    /// The tick's interval; the kernel copies it at submission, boxed all the same.
    tick_spec: Box<types::Timespec>,
    setup: &'a WorkerSetup,
    limits: bool,
    buffers_returned: bool,
    /// `finish` has cancelled everything: nothing re-arms itself any more.
    finishing: bool,
}

impl Worker<'_> {
    fn config(&self) -> &Config {
        &self.setup.shared.config
    }

    fn serve(&mut self) -> io::Result<()> {
        for i in 0..self.setup.listeners.len() {
            self.arm_listener(i);
        }
        self.arm_wake();
        self.arm_tick();
        loop {
            self.buf_ring.publish();
            self.publish();
            if self.draining.is_some() && self.open == 0 && self.conns_settled() {
                return self.finish();
            }
            self.driver.wait(1, None)?;
            self.now = Instant::now();
            while let Some(cqe) = self.driver.completion() {
                self.dispatch(cqe);
            }
            // Not only when this turn returned buffers: an ENOBUFS that raced with an
            // earlier return would otherwise wait for ever on a ring that is full again.
            let starving = !self.starved.is_empty() || self.dgram.iter().any(|d| d.starved);
            if starving && (self.buffers_returned || self.buf_ring.available() > 0) {
                self.rearm_starved();
            }
            self.buffers_returned = false;
        }
    }

    /// No refused connection is still being closed.
    fn conns_settled(&self) -> bool {
        !self.conns.iter().any(|c| c.phase != super::conn::Phase::Free)
    }

    /// Cancels what is left (receives, accepts, the tick, the wake-up read) and waits for
    /// it, so nothing the kernel holds points into this worker's memory when it goes.
    fn finish(&mut self) -> io::Result<()> {
        self.finishing = true;
        self.push(
            opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(Token::new(Kind::Cancel, u32::MAX, 0).encode()),
        );
        let give_up = Instant::now() + Duration::from_secs(1);
        while self.driver.inflight() > 0 && Instant::now() < give_up {
            self.driver.wait(1, Some(Duration::from_millis(50)))?;
            while let Some(cqe) = self.driver.completion() {
                self.dispatch(cqe);
            }
        }
        self.buf_ring.publish();
        Ok(())
    }

    /// Queues an SQE.
    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: see the module invariant: every SQE this worker builds points only into
        // memory that lives until its last completion.
        unsafe { self.driver.push(&entry) };
    }

    fn publish(&mut self) {
        let c = &mut self.counters;
        c.open = self.open;
        c.buf_ring_available = u64::from(self.buf_ring.available());
        c.buf_ring_low_water = u64::from(self.buf_ring.low_water());
        c.buf_ring_size = u64::from(self.buf_ring.count());
        self.setup.shared.stats.worker(self.setup.index).publish(c);
    }

    fn arm_listener(&mut self, listener: usize) {
        match self.setup.listeners[listener].kind {
            SockKind::Stream => self.arm_accept(listener),
            SockKind::Datagram { .. } => self.arm_dgram(listener),
        }
    }

    fn arm_wake(&mut self) {
        let fd = self.setup.wake.as_raw_fd();
        let buf = &mut *self.wake_buf as *mut u64 as *mut u8;
        self.push(
            opcode::Read::new(types::Fd(fd), buf, 8).build().user_data(Token::new(Kind::Wake, 0, 0).encode()),
        );
    }

    fn arm_tick(&mut self) {
        self.push(
            opcode::Timeout::new(&*self.tick_spec as *const _)
                .flags(types::TimeoutFlags::MULTISHOT)
                .build()
                .user_data(Token::new(Kind::Tick, 0, 0).encode()),
        );
    }

    fn dispatch(&mut self, cqe: cqueue::Entry) {
        let (res, flags) = (cqe.result(), cqe.flags());
        let more = cqueue::more(flags);
        let Some(token) = Token::decode(cqe.user_data()) else {
            self.counters.err_other += 1;
            return;
        };
        match token.kind {
            Kind::Accept => self.on_accept(token.slot as usize, res, more),
            Kind::Recv => self.on_recv(token, res, flags, more),
            Kind::Send => self.on_send(token, res, false, more),
            Kind::SendZc if cqueue::notif(flags) => self.on_zc_notif(token.bid, res),
            Kind::SendZc => self.on_send(token, res, true, more),
            Kind::SourceSend => self.on_source_sent(token, res),
            Kind::Close => self.on_close(token),
            Kind::CloseRefused => self.on_refused_closed(token),
            Kind::Cancel => self.on_cancelled(token),
            Kind::DgramRecv => self.on_dgram_recv(token.slot as usize, res, flags, more),
            Kind::DgramSend => self.on_dgram_sent(token, res),
            Kind::Tick => self.on_tick(res, more),
            Kind::Wake => self.on_wake(),
        }
    }

    /// Returns a buffer user space is done with, or marks it to return after its
    /// outstanding SEND_ZC notifications.
    fn release_buf(&mut self, bid: u16) {
        if self.zc_notifs[usize::from(bid)] > 0 {
            self.zc_release[usize::from(bid)] = true;
        } else {
            self.give_back(bid);
        }
    }

    fn give_back(&mut self, bid: u16) {
        if self.buf_ring.provide(bid).is_err() {
            self.counters.err_other += 1;
        } else {
            self.buffers_returned = true;
        }
    }

    fn on_zc_notif(&mut self, bid: u16, res: i32) {
        /// IORING_NOTIF_USAGE_ZC_COPIED, in a notification's result when the send asked
        /// for IORING_SEND_ZC_REPORT_USAGE.
        const ZC_COPIED: u32 = 1 << 31;
        if res as u32 & ZC_COPIED != 0 {
            self.counters.zc_copied += 1;
        }
        let i = usize::from(bid);
        self.zc_notifs[i] = self.zc_notifs[i].saturating_sub(1);
        if self.zc_notifs[i] == 0 && std::mem::take(&mut self.zc_release[i]) {
            self.give_back(bid);
        }
    }

    /// Buffers came back: re-arm the receives that ran dry.
    fn rearm_starved(&mut self) {
        // Publish first: a re-armed receive that the kernel runs at once (a full submission
        // queue is flushed mid-dispatch) must see the returned buffers. Re-arm no more
        // receives than there are buffers, oldest first; the rest wait for the next turn.
        self.buf_ring.publish();
        let n =
            (self.buf_ring.available() as usize).clamp(1, self.starved.len().max(1)).min(self.starved.len());
        for slot in self.starved.drain(..n).collect::<Vec<_>>() {
            self.conns[slot as usize].starved = false;
            self.progress(slot);
        }
        for listener in 0..self.dgram.len() {
            if std::mem::take(&mut self.dgram[listener].starved) && self.draining.is_none() {
                self.arm_dgram(listener);
            }
        }
    }

    fn on_tick(&mut self, res: i32, more: bool) {
        for listener in std::mem::take(&mut self.backoff) {
            if self.draining.is_none() {
                self.arm_listener(listener);
            }
        }
        if let Some(idle) = self.config().idle_timeout {
            self.close_idle(idle);
        }
        self.evict_under_pressure(EVICT_AFTER);
        if self.draining.is_some_and(|deadline| self.now >= deadline) {
            self.force_close_all();
        }
        // A cancelled tick (shutdown's final cancel) stays cancelled.
        if !more && res != -libc::ECANCELED && !self.finishing {
            self.arm_tick();
        }
    }

    fn on_wake(&mut self) {
        if !self.setup.shared.shutdown.load(Ordering::Acquire) {
            self.arm_wake();
            return;
        }
        if self.draining.is_some() {
            return;
        }
        let deadline = self.now + self.config().drain_timeout;
        self.draining = Some(deadline);
        self.backoff.clear();
        // Stop accepting connections and receiving datagrams; open connections go on.
        for i in 0..self.setup.listeners.len() {
            let kind = match self.setup.listeners[i].kind {
                SockKind::Stream => Kind::Accept,
                SockKind::Datagram { .. } => Kind::DgramRecv,
            };
            let target = Token::new(kind, i as u32, 0).encode();
            self.push(
                opcode::AsyncCancel::new(target)
                    .build()
                    .user_data(Token::new(Kind::Cancel, u32::MAX, 0).encode()),
            );
        }
        if self.now >= deadline {
            self.force_close_all();
        }
    }
}
