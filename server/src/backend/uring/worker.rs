//! The per-CPU event loop of the `uring` backend.
//!
//! Each turn: publish returned buffers and counters, submit every queued SQE and wait for
//! at least one completion (one `io_uring_enter`), then dispatch each completion by its
//! token. Stream connections live in `stream.rs`, datagram listeners in `dgram.rs`, the
//! buffers' life in `buffers.rs`.
//!
//! Invariant: every operation this worker submits points only into memory that outlives
//! its last completion: the ring's buffers (owned by the [`Ring`], dropped after its
//! io_uring), the static `source` pattern, or boxed fields of the worker, which
//! [`Worker::finish`] keeps alive until the kernel has answered every operation (or, if
//! it never does, leaks).

use super::buffers::Buffers;
use super::conn::{Conn, Phase};
use super::dgram::{DgramPool, DgramState};
use super::token::{Kind, Token};
use crate::backend::contract::{Ready, Started, Transport, WorkerSetup};
use crate::config::Config;
use crate::error::{ServerWarning, WorkerError};
use crate::policy::Datagrams;
use crate::ring::{Driver, Features, Parts, PushError, Ring, RingOptions};
use crate::stats::Counters;
use io_uring::{cqueue, opcode, squeue, types};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often a worker wakes by itself: idle timeouts, the drain deadline and back-off of
/// failing accepts and receives are checked at this granularity.
const TICK: Duration = Duration::from_millis(100);

/// How long a connection must have been stuck on a full queue before pool pressure may
/// close it.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// How long `finish` waits for the kernel to answer the final cancel.
const FINISH_GIVE_UP: Duration = Duration::from_secs(1);

/// Runs a worker to completion. Reports set-up success or failure on `ready` first.
pub(super) fn run(setup: WorkerSetup, features: Features, ready: Ready) -> Vec<ServerWarning> {
    let config = &setup.shared.config;
    if let Some(cpu) = setup.cpu {
        if let Err(e) = crate::sys::pin_current_thread(cpu) {
            ready.failed(format!("pinning to CPU {cpu}"), e);
            return Vec::new();
        }
    }
    let serves_datagrams = setup.listeners.iter().any(|l| l.transport == Transport::Datagram);
    for listener in setup.listeners.iter().filter(|l| l.transport == Transport::Datagram) {
        // io_uring never blocks on the socket either way, but the kernel's UDP poll, run on
        // every wake of the multishot receive, checks the first datagram's checksum under
        // the queue lock for a blocking socket only (`first_packet_length`: 1.6% of the
        // server's CPU at 8 flows × 64 B).
        if let Err(e) = socket2::SockRef::from(&listener.fd).set_nonblocking(true) {
            ready.failed("making a datagram listener non-blocking", e);
            return Vec::new();
        }
    }
    let dgram_size = setup.shared.dgram_capacity.saturating_add(super::dgram::header_room(&setup.listeners));
    let options = RingOptions {
        entries: config.ring_entries,
        sqpoll: config.sqpoll,
        buffers: config.buffers as u16,
        buffer_size: config.buffer_size,
        dgram: serves_datagrams.then_some((config.dgram_buffers as u16, dgram_size)),
    };
    let mut ring = match Ring::new(options) {
        Ok(r) => r,
        Err(error) => {
            let worker = ready.worker();
            ready.failed_with(WorkerError::Uring { worker, error });
            return Vec::new();
        }
    };
    let table = file_table_size(config);
    if let Err(e) = ring.register_files_sparse(table) {
        ready.failed(format!("registering {table} direct descriptors"), e);
        return Vec::new();
    }
    let started = Started { detail: Some(format!("ring {:?}", ring.task_run())) };
    let Parts { driver, buffers, dgram_buffers } = ring.split();
    let dgrams = dgram_buffers.map(DgramPool::new);
    let mut worker = Worker::new(&setup, driver, Buffers::new(buffers), dgrams, table, features);
    ready.serving(started);

    let mut warnings = Vec::new();
    if let Err(error) = worker.serve() {
        warnings.push(ServerWarning::Stopped { worker: setup.index, error });
    }
    let operations = worker.driver.inflight();
    if operations > 0 {
        // Operations the kernel did not give back (an error exit, or the give-up in
        // `finish`) may still write into the buffers, the wake-up word or the ring: leak
        // them rather than free memory the kernel may touch. Only on abnormal exits.
        warnings.push(ServerWarning::Leaked { worker: setup.index, operations });
        worker.publish();
        worker.abandon();
        std::mem::forget(worker);
        ring.leak();
    } else {
        // Every operation has completed: a buffer still lent or deferred is a lost one.
        // (Queued ones remain only after an error exit; they go with the ring.)
        let lost = worker.buffers.abandon() + worker.dgrams.as_mut().map_or(0, |d| d.buffers.abandon());
        worker.counters.buf_errors += lost;
        for conn in &mut worker.conns {
            conn.queue.forget_all();
        }
        worker.publish();
    }
    warnings
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
    pub setup: &'a WorkerSetup,
    pub driver: Driver<'a>,
    pub buffers: Buffers<'a>,
    /// The datagram buffers, when this worker serves a datagram listener.
    pub dgrams: Option<DgramPool<'a>>,
    /// Direct-descriptor slots not holding a connection.
    pub slots_free: u32,
    pub accepts: Vec<AcceptState>,
    pub conns: Vec<Conn>,
    /// Per listener (meaningful for datagram ones): the receive's state and msghdr.
    pub dgram: Vec<DgramState>,
    pub rules: Datagrams,
    /// Connections whose receive ended with ENOBUFS.
    pub starved: Vec<u32>,
    /// Listeners whose accept or receive failed; re-armed at the next tick, so a failing
    /// operation (EMFILE, a full table) cannot spin.
    pub backoff: Vec<usize>,
    pub counters: Counters,
    pub open: u64,
    pub now: Instant,
    /// When shutdown began, the instant open connections are forced closed.
    pub draining: Option<Instant>,
    /// Target of the eventfd read; boxed so its address is stable while the read is in
    /// flight.
    wake_buf: Box<u64>,
    /// The tick's interval; the kernel copies it at submission, boxed all the same.
    tick_spec: Box<types::Timespec>,
    /// The kernel ends multishot receives at a byte limit (exact per-connection bound).
    pub limits: bool,
    /// The kernel has SEND_ZC (`--zc-threshold` is ignored otherwise).
    pub send_zc: bool,
    /// `finish` has cancelled everything: nothing re-arms itself any more.
    finishing: bool,
    /// The first push the ring refused: the loop stops after this turn.
    push_error: Option<PushError>,
}

impl<'a> Worker<'a> {
    fn new(
        setup: &'a WorkerSetup,
        driver: Driver<'a>,
        buffers: Buffers<'a>,
        dgrams: Option<DgramPool<'a>>,
        table: u32,
        features: Features,
    ) -> Worker<'a> {
        let now = Instant::now();
        Worker {
            setup,
            driver,
            buffers,
            dgrams,
            slots_free: table,
            accepts: vec![AcceptState::default(); setup.listeners.len()],
            conns: (0..table).map(|_| Conn::default()).collect(),
            dgram: setup.listeners.iter().map(DgramState::new).collect(),
            rules: Datagrams::new(&setup.shared.config, now),
            starved: Vec::new(),
            backoff: Vec::new(),
            counters: Counters::default(),
            open: 0,
            now,
            draining: None,
            wake_buf: Box::new(0),
            tick_spec: Box::new(types::Timespec::from(TICK)),
            limits: features.recv_total_limit,
            send_zc: features.send_zc,
            finishing: false,
            push_error: None,
        }
    }

    pub fn config(&self) -> &'a Config {
        &self.setup.shared.config
    }

    fn serve(&mut self) -> io::Result<()> {
        for i in 0..self.setup.listeners.len() {
            self.arm_listener(i);
        }
        self.arm_wake();
        self.arm_tick();
        loop {
            self.publish_buffers();
            self.publish();
            if let Some(e) = self.push_error.take() {
                return Err(io::Error::other(e));
            }
            if self.draining.is_some() && self.open == 0 && self.conns_settled() {
                return self.finish();
            }
            if self.config().spin {
                self.driver.spin()?;
            } else {
                self.driver.wait(1, None)?;
            }
            self.now = Instant::now();
            while let Some(cqe) = self.driver.completion() {
                self.dispatch(cqe);
            }
            // Not only when this turn returned buffers: an ENOBUFS that raced with an
            // earlier return would otherwise wait for ever on a ring that is full again.
            if !self.starved.is_empty() && (self.buffers.take_returned() || self.buffers.available() > 0) {
                self.rearm_starved();
            }
            let dgram_starving = self.dgram.iter().any(|d| d.starved);
            if dgram_starving
                && self
                    .dgrams
                    .as_mut()
                    .is_some_and(|d| d.buffers.take_returned() || d.buffers.available() > 0)
            {
                self.rearm_starved_dgram();
            }
        }
    }

    /// No refused connection is still being closed.
    fn conns_settled(&self) -> bool {
        !self.conns.iter().any(|c| c.phase != Phase::Free)
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
        let give_up = Instant::now() + FINISH_GIVE_UP;
        while self.driver.inflight() > 0 && Instant::now() < give_up {
            self.driver.wait(1, Some(Duration::from_millis(50)))?;
            while let Some(cqe) = self.driver.completion() {
                self.dispatch(cqe);
            }
        }
        self.publish_buffers();
        Ok(())
    }

    /// Makes the buffers given back visible to the kernel (once per loop turn).
    fn publish_buffers(&mut self) {
        self.buffers.publish();
        if let Some(d) = &mut self.dgrams {
            d.buffers.publish();
        }
    }

    /// Gives up every buffer handle without returning it: the worker is leaving while the
    /// kernel may still write into them.
    fn abandon(&mut self) {
        for conn in &mut self.conns {
            conn.queue.forget_all();
        }
        self.buffers.abandon();
        if let Some(d) = &mut self.dgrams {
            d.buffers.abandon();
        }
    }

    /// Queues an SQE; a refusal stops the loop after this turn.
    pub fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: see the module invariant: every SQE this worker builds points only into
        // memory that lives until its last completion.
        if let Err(e) = unsafe { self.driver.push(&entry) } {
            self.push_error.get_or_insert(e);
        }
    }

    pub fn publish(&mut self) {
        self.counters.open = self.open;
        self.buffers.publish_levels(&mut self.counters);
        self.setup.shared.stats.worker(self.setup.index).publish(&self.counters);
    }

    fn arm_listener(&mut self, listener: usize) {
        match self.setup.listeners[listener].transport {
            Transport::Stream => self.arm_accept(listener),
            Transport::Datagram => self.arm_dgram(listener),
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

    fn on_zc_notif(&mut self, bid: u16, res: i32) {
        /// IORING_NOTIF_USAGE_ZC_COPIED, in a notification's result when the send asked
        /// for IORING_SEND_ZC_REPORT_USAGE.
        const ZC_COPIED: u32 = 1 << 31;
        if res as u32 & ZC_COPIED != 0 {
            self.counters.zc_copied += 1;
        }
        self.buffers.zc_notified(bid, &mut self.counters);
    }

    /// Buffers came back: re-arm the receives that ran dry.
    fn rearm_starved(&mut self) {
        // Publish first: a re-armed receive that the kernel runs at once (a full submission
        // queue is flushed mid-dispatch) must see the returned buffers. Re-arm no more
        // receives than there are buffers, oldest first; the rest wait for the next turn.
        self.buffers.publish();
        let n =
            (self.buffers.available() as usize).clamp(1, self.starved.len().max(1)).min(self.starved.len());
        for slot in self.starved.drain(..n).collect::<Vec<_>>() {
            self.conns[slot as usize].starved = false;
            self.progress(slot);
        }
    }

    /// Datagram buffers came back: re-arm the datagram receives that ran dry.
    fn rearm_starved_dgram(&mut self) {
        if let Some(d) = &mut self.dgrams {
            d.buffers.publish();
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
        let deadline = crate::policy::deadline(self.now, self.config().drain_timeout);
        self.draining = Some(deadline);
        self.backoff.clear();
        // Stop accepting connections and receiving datagrams; open connections go on.
        for i in 0..self.setup.listeners.len() {
            let kind = match self.setup.listeners[i].transport {
                Transport::Stream => Kind::Accept,
                Transport::Datagram => Kind::DgramRecv,
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
