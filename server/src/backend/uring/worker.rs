//! The per-CPU event loop of the `uring` backend.
//!
//! Each turn: publish returned buffers and counters, submit every queued SQE and wait for
//! at least one completion (one `io_uring_enter`), then dispatch each completion by its
//! token to the part it belongs to: [`Streams`] (stream listeners and connections,
//! `stream/`) or [`DgramListeners`] (`dgram.rs`). Each part owns its state and builds
//! its own entries; the worker lends it a [`Ctx`] (the driver, the counters, the time of
//! the turn, the drain deadline) and keeps only the loop, the wake-up read and the tick.
//!
//! Invariant: every operation this worker submits points only into memory that outlives
//! its last completion: the ring's buffers (owned by the [`Ring`], dropped after its
//! io_uring), the static `source` pattern, or boxed fields of the worker and its parts,
//! which [`Worker::finish`] keeps alive until the kernel has answered every operation (or,
//! if it never does, leaks).

use super::buffers::Buffers;
use super::ctx::Ctx;
use super::dgram::DgramListeners;
use super::stamps::Stamps;
use super::stream::Streams;
use super::token::{Kind, Token};
use crate::backend::contract::{Ready, Started, Transport, WorkerSetup};
use crate::config::Config;
use crate::error::{ServerWarning, WorkerError};
use crate::ring::{Features, Parts, Ring, RingOptions};
use io_uring::{cqueue, opcode, types};
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
    let dgram_size =
        DgramListeners::buffer_size(&setup.listeners, setup.shared.dgram_capacity, config.timestamps);
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
    let now = Instant::now();
    let streams = Streams::new(&setup.shared, &setup.listeners, Buffers::new(buffers), table, features);
    let capacity = setup.shared.dgram_capacity;
    let dgrams = dgram_buffers.map(|ring| DgramListeners::new(&setup.listeners, ring, config, capacity, now));
    let stamps = config.timestamps.then(|| Stamps::new(setup.shared.stats.parts_of(setup.index), now));
    let mut worker = Worker::new(&setup, Ctx::new(driver, now, stamps), streams, dgrams);
    ready.serving(started);

    let mut warnings = Vec::new();
    if let Err(error) = worker.serve() {
        warnings.push(ServerWarning::Stopped { worker: setup.index, error });
    }
    let operations = worker.ctx.driver.inflight();
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
        let lost = worker.abandon();
        worker.ctx.counters.buf_errors += lost;
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

/// One worker: its loop, the wake-up read and the tick, and its parts, each the owner of
/// its own state and entries.
struct Worker<'a> {
    setup: &'a WorkerSetup,
    ctx: Ctx<'a>,
    streams: Streams<'a>,
    /// When this worker serves a datagram listener.
    dgrams: Option<DgramListeners<'a>>,
    /// Target of the eventfd read; boxed so its address is stable while the read is in
    /// flight.
    wake_buf: Box<u64>,
    /// The tick's interval; the kernel copies it at submission, boxed all the same.
    tick_spec: Box<types::Timespec>,
    /// `finish` has cancelled everything: nothing re-arms itself any more.
    finishing: bool,
}

impl<'a> Worker<'a> {
    fn new(
        setup: &'a WorkerSetup,
        ctx: Ctx<'a>,
        streams: Streams<'a>,
        dgrams: Option<DgramListeners<'a>>,
    ) -> Worker<'a> {
        Worker {
            setup,
            ctx,
            streams,
            dgrams,
            wake_buf: Box::new(0),
            tick_spec: Box::new(types::Timespec::from(TICK)),
            finishing: false,
        }
    }

    fn config(&self) -> &'a Config {
        let setup: &'a WorkerSetup = self.setup;
        &setup.shared.config
    }

    fn serve(&mut self) -> io::Result<()> {
        self.streams.arm_all(&mut self.ctx);
        if let Some(d) = &mut self.dgrams {
            d.arm_all(&mut self.ctx);
        }
        self.arm_wake();
        self.arm_tick();
        loop {
            self.publish_buffers();
            self.publish();
            if let Some(e) = self.ctx.take_push_error() {
                return Err(io::Error::other(e));
            }
            if self.ctx.draining() && self.streams.open() == 0 && self.streams.settled() {
                return self.finish();
            }
            if self.config().spin {
                self.ctx.driver.spin()?;
            } else {
                self.ctx.driver.wait(1, None)?;
            }
            self.ctx.now = Instant::now();
            if let Some(stamps) = &mut self.ctx.stamps {
                stamps.tick(self.ctx.now);
            }
            while let Some(cqe) = self.ctx.driver.completion() {
                self.dispatch(cqe);
            }
            self.streams.rearm_starved(&mut self.ctx);
            if let Some(d) = &mut self.dgrams {
                d.rearm_starved(&mut self.ctx);
            }
        }
    }

    /// Cancels what is left (receives, accepts, the tick, the wake-up read) and waits for
    /// it, so nothing the kernel holds points into this worker's memory when it goes.
    fn finish(&mut self) -> io::Result<()> {
        self.finishing = true;
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(Token::new(Kind::Cancel, u32::MAX, 0).encode());
        // SAFETY: a cancel points at nothing.
        unsafe { self.ctx.push(cancel) };
        let give_up = Instant::now() + FINISH_GIVE_UP;
        while self.ctx.driver.inflight() > 0 && Instant::now() < give_up {
            self.ctx.driver.wait(1, Some(Duration::from_millis(50)))?;
            while let Some(cqe) = self.ctx.driver.completion() {
                self.dispatch(cqe);
            }
        }
        self.publish_buffers();
        Ok(())
    }

    /// Makes the buffers given back visible to the kernel (once per loop turn).
    fn publish_buffers(&mut self) {
        self.streams.publish_buffers();
        if let Some(d) = &mut self.dgrams {
            d.publish_buffers();
        }
    }

    /// Gives up every buffer handle without returning it: the worker is leaving while the
    /// kernel may still write into them. Returns how many were lent or deferred.
    fn abandon(&mut self) -> u64 {
        self.streams.abandon() + self.dgrams.as_mut().map_or(0, |d| d.abandon())
    }

    fn publish(&mut self) {
        self.streams.publish_levels(&mut self.ctx.counters);
        self.setup.shared.stats.worker(self.setup.index).publish(&self.ctx.counters);
    }

    fn arm_wake(&mut self) {
        let fd = self.setup.wake.as_raw_fd();
        let buf = &mut *self.wake_buf as *mut u64 as *mut u8;
        let entry =
            opcode::Read::new(types::Fd(fd), buf, 8).build().user_data(Token::new(Kind::Wake, 0, 0).encode());
        // SAFETY: the read's target is `wake_buf`, boxed and kept until the kernel has
        // answered every operation (see `run`), and the eventfd is the set-up's, which
        // outlives the worker.
        unsafe { self.ctx.push(entry) };
    }

    fn arm_tick(&mut self) {
        let entry = opcode::Timeout::new(&*self.tick_spec as *const _)
            .flags(types::TimeoutFlags::MULTISHOT)
            .build()
            .user_data(Token::new(Kind::Tick, 0, 0).encode());
        // SAFETY: the interval is `tick_spec`, boxed and kept as long as the worker.
        unsafe { self.ctx.push(entry) };
    }

    fn dispatch(&mut self, cqe: cqueue::Entry) {
        let (res, flags) = (cqe.result(), cqe.flags());
        let more = cqueue::more(flags);
        let Some(token) = Token::decode(cqe.user_data()) else {
            self.ctx.counters.err_other += 1;
            return;
        };
        let (ctx, streams) = (&mut self.ctx, &mut self.streams);
        match token.kind {
            Kind::Accept => streams.on_accept(ctx, token.slot as usize, res, more),
            Kind::Recv => streams.on_recv(ctx, token, res, flags, more),
            Kind::Send => streams.on_send(ctx, token, res, false, more),
            Kind::SendZc if cqueue::notif(flags) => streams.on_zc_notif(ctx, token.bid, res),
            Kind::SendZc => streams.on_send(ctx, token, res, true, more),
            Kind::SourceSend => streams.on_source_sent(ctx, token, res),
            Kind::ErrQueue => streams.on_errqueue(ctx, token, res),
            Kind::Close => streams.on_close(ctx, token),
            Kind::CloseRefused => streams.on_refused_closed(ctx, token),
            Kind::Cancel => streams.on_cancelled(ctx, token),
            Kind::DgramRecv => match &mut self.dgrams {
                Some(d) => d.on_recv(ctx, token.slot as usize, res, flags, more),
                None => ctx.counters.err_other += 1,
            },
            Kind::DgramSend => match &mut self.dgrams {
                Some(d) => d.on_sent(ctx, token, res),
                None => ctx.counters.err_other += 1,
            },
            Kind::Tick => self.on_tick(res, more),
            Kind::Wake => self.on_wake(),
        }
    }

    fn on_tick(&mut self, res: i32, more: bool) {
        self.streams.on_tick(&mut self.ctx, EVICT_AFTER);
        if let Some(d) = &mut self.dgrams {
            d.on_tick(&mut self.ctx);
        }
        if self.ctx.draining.is_some_and(|deadline| self.ctx.now >= deadline) {
            self.streams.force_close_all(&mut self.ctx);
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
        if self.ctx.draining() {
            return;
        }
        let deadline = crate::policy::deadline(self.ctx.now, self.config().drain_timeout);
        self.ctx.draining = Some(deadline);
        // Stop accepting connections and receiving datagrams; open connections go on.
        self.streams.stop_accepting(&mut self.ctx);
        if let Some(d) = &mut self.dgrams {
            d.stop_receiving(&mut self.ctx);
        }
        if self.ctx.now >= deadline {
            self.streams.force_close_all(&mut self.ctx);
        }
    }
}
