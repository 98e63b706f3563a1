//! The per-CPU event loop of the `uring` backend.
//!
//! Each turn: publish returned buffers and counters, submit every queued SQE and wait for
//! at least one completion (one `io_uring_enter`), then dispatch each completion by its
//! token. A connection's buffers follow DESIGN.md's "buffer's life": a receive completion
//! hands a buffer to the connection's FIFO, the echo sends that same memory, and the
//! buffer goes back to the ring after its send (for SEND_ZC, after the notification).
//! A slot of the connection table is freed only after its close completes, and a close
//! is submitted only when no other operation of that connection is in flight, so no
//! completion can land on a reused slot.

use super::conn::{CloseReason, Conn, Phase, RecvAction};
use super::token::{Kind, Token};
use crate::config::Config;
use crate::ring::{self, BufRing, Features, TaskRun};
use crate::server::Shared;
use crate::stats::Counters;
use io_uring::{Submitter, cqueue, opcode, squeue, types};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

/// How often a worker wakes by itself: idle timeouts, the drain deadline and accept
/// back-off are checked at this granularity.
const TICK: Duration = Duration::from_millis(100);

/// What a worker is given when it starts.
pub(crate) struct WorkerSetup {
    pub index: usize,
    pub cpu: Option<usize>,
    /// Listening sockets this worker accepts on (its own SO_REUSEPORT TCP sockets, and
    /// the shared Unix ones).
    pub listeners: Vec<Arc<OwnedFd>>,
    pub wake: Arc<OwnedFd>,
    pub shared: Arc<Shared>,
    pub features: Features,
}

/// Runs a worker to completion. Reports set-up success or failure on `ready` before
/// serving.
pub(crate) fn run(setup: WorkerSetup, ready: SyncSender<Result<TaskRun, String>>) {
    let config = &setup.shared.config;
    if let Some(cpu) = setup.cpu {
        if let Err(e) = crate::sys::pin_current_thread(cpu) {
            let _ = ready.send(Err(format!("worker {}: cannot pin to CPU {cpu}: {e}", setup.index)));
            return;
        }
    }
    // Declared before the ring, so dropped after it: the kernel may write the buffers
    // until the ring is gone.
    let mut buf_ring = match BufRing::new(config.buffers as u16, config.buffer_size, 0) {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "worker {}: buffer ring of {} × {} B: {e}",
                setup.index, config.buffers, config.buffer_size
            )));
            return;
        }
    };
    let (mut uring, mode) = match ring::build(config.ring_entries, config.sqpoll) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    // SAFETY: `uring` is declared after `buf_ring` and so dropped before it.
    if let Err(e) = unsafe { buf_ring.register(&uring.submitter()) } {
        let _ = ready.send(Err(format!("worker {}: registering the buffer ring: {e}", setup.index)));
        return;
    }
    let table = file_table_size(config);
    if let Err(e) = uring.submitter().register_files_sparse(table) {
        let _ =
            ready.send(Err(format!("worker {}: registering {table} direct descriptors: {e}", setup.index)));
        return;
    }
    let (mut submitter, sq, cq) = uring.split();
    // A registered ring fd saves a descriptor lookup per io_uring_enter; optional.
    let _ = submitter.register_ring_fd();
    let mut worker = Worker {
        submitter,
        sq,
        cq,
        buf_ring: &mut buf_ring,
        conns: (0..table).map(|_| Conn::default()).collect(),
        zc_notifs: vec![0; config.buffers as usize],
        zc_release: vec![false; config.buffers as usize],
        starved: Vec::new(),
        accept_backoff: Vec::new(),
        counters: Counters::default(),
        open: 0,
        inflight: 0,
        now: Instant::now(),
        draining: None,
        wake_buf: Box::new(0),
        tick_spec: Box::new(types::Timespec::from(TICK)),
        setup: &setup,
        limits: setup.features.recv_total_limit,
        buffers_returned: false,
    };
    let _ = ready.send(Ok(mode));
    if let Err(e) = worker.serve() {
        eprintln!("ringecho: worker {} stopped: {e}", setup.index);
    }
    worker.publish();
}

/// Direct descriptors per worker: room for `--max-conns` plus those being refused, within
/// the kernel's limits (RLIMIT_NOFILE and 2^20).
fn file_table_size(config: &Config) -> u32 {
    let nofile = crate::sys::raise_nofile_limit().unwrap_or(1024);
    let want = config.max_conns.saturating_add(64) as u64;
    want.min(nofile).min(1 << 20) as u32
}

struct Worker<'a> {
    submitter: Submitter<'a>,
    sq: io_uring::SubmissionQueue<'a>,
    cq: io_uring::CompletionQueue<'a>,
    buf_ring: &'a mut BufRing,
    conns: Vec<Conn>,
    /// SEND_ZC notifications still to come, per buffer.
    zc_notifs: Vec<u16>,
    /// Buffers fully sent whose return waits for their SEND_ZC notifications.
    zc_release: Vec<bool>,
    /// Connections whose receive ended with ENOBUFS.
    starved: Vec<u32>,
    /// Listeners whose accept failed; re-armed at the next tick, so a failing accept
    /// (EMFILE, a full table) cannot spin.
    accept_backoff: Vec<usize>,
    counters: Counters,
    open: u64,
    /// Operations submitted whose last completion has not arrived.
    inflight: u64,
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
}

impl Worker<'_> {
    fn config(&self) -> &Config {
        &self.setup.shared.config
    }

    fn serve(&mut self) -> io::Result<()> {
        for i in 0..self.setup.listeners.len() {
            self.arm_accept(i);
        }
        self.arm_wake();
        self.push(
            opcode::Timeout::new(&*self.tick_spec as *const _)
                .flags(types::TimeoutFlags::MULTISHOT)
                .build()
                .user_data(Token::new(Kind::Tick, 0, 0).encode()),
        );
        loop {
            self.buf_ring.publish();
            self.publish();
            if self.draining.is_some() && self.open == 0 && self.conns_settled() {
                return self.finish();
            }
            self.wait()?;
            self.now = Instant::now();
            while let Some(cqe) = self.cq.next() {
                self.dispatch(cqe);
            }
            if self.buffers_returned && !self.starved.is_empty() {
                self.buffers_returned = false;
                for slot in std::mem::take(&mut self.starved) {
                    let conn = &mut self.conns[slot as usize];
                    conn.starved = false;
                    self.progress(slot);
                }
            }
        }
    }

    /// No refused connection is still being closed.
    fn conns_settled(&self) -> bool {
        !self.conns.iter().any(|c| c.phase != Phase::Free)
    }

    fn wait(&mut self) -> io::Result<()> {
        self.sq.sync();
        match self.submitter.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)) => {}
            Err(e) => return Err(e),
        }
        self.sq.sync();
        self.cq.sync();
        Ok(())
    }

    /// Cancels what is left (accepts, the tick, the wake-up read) and waits for it, so
    /// nothing the kernel holds points into this worker's memory when the ring closes.
    fn finish(&mut self) -> io::Result<()> {
        self.push(
            opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(Token::new(Kind::Cancel, u32::MAX, 0).encode()),
        );
        let give_up = Instant::now() + Duration::from_secs(1);
        while self.inflight > 0 && Instant::now() < give_up {
            let ts = types::Timespec::from(Duration::from_millis(50));
            let args = types::SubmitArgs::new().timespec(&ts);
            self.sq.sync();
            match self.submitter.submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            self.cq.sync();
            while let Some(cqe) = self.cq.next() {
                self.dispatch(cqe);
            }
        }
        Ok(())
    }

    /// Queues an SQE, flushing the queue to the kernel when it is full.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every SQE built by this worker points only into memory that lives
            // until its last completion: the buffer ring (dropped after the ring), the
            // boxed `wake_buf`/`tick_spec` (dropped after `finish` drained all ops), or
            // nothing at all.
            if unsafe { self.sq.push(&entry) }.is_ok() {
                self.inflight += 1;
                return;
            }
            self.sq.sync();
            if let Err(e) = self.submitter.submit() {
                if !matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)) {
                    eprintln!("ringecho: submit failed: {e}");
                }
            }
            self.sq.sync();
        }
    }

    fn publish(&mut self) {
        let c = &mut self.counters;
        c.open = self.open;
        c.buf_ring_available = u64::from(self.buf_ring.available());
        c.buf_ring_low_water = u64::from(self.buf_ring.low_water());
        c.buf_ring_size = u64::from(self.buf_ring.count());
        self.setup.shared.stats.worker(self.setup.index).publish(c);
    }

    fn arm_accept(&mut self, listener: usize) {
        let fd = self.setup.listeners[listener].as_raw_fd();
        self.push(
            opcode::AcceptMulti::new(types::Fd(fd))
                .allocate_file_index(true)
                .build()
                .user_data(Token::new(Kind::Accept, listener as u32, 0).encode()),
        );
    }

    fn arm_wake(&mut self) {
        let fd = self.setup.wake.as_raw_fd();
        let buf = &mut *self.wake_buf as *mut u64 as *mut u8;
        self.push(
            opcode::Read::new(types::Fd(fd), buf, 8).build().user_data(Token::new(Kind::Wake, 0, 0).encode()),
        );
    }

    fn dispatch(&mut self, cqe: cqueue::Entry) {
        let (res, flags) = (cqe.result(), cqe.flags());
        let more = cqueue::more(flags);
        if !more {
            self.inflight = self.inflight.saturating_sub(1);
        }
        let Some(token) = Token::decode(cqe.user_data()) else {
            self.counters.err_other += 1;
            return;
        };
        match token.kind {
            Kind::Accept => self.on_accept(token.slot as usize, res, more),
            Kind::Recv => self.on_recv(token, res, flags, more),
            Kind::Send => self.on_send(token, res, false, more),
            Kind::SendZc if cqueue::notif(flags) => self.on_zc_notif(token.bid),
            Kind::SendZc => self.on_send(token, res, true, more),
            Kind::Close => self.on_close(token),
            Kind::CloseRefused => {
                if let Some(conn) = self.conn_mut(token) {
                    conn.free();
                }
            }
            Kind::Cancel => {
                if let Some(conn) = self.conn_mut(token) {
                    conn.cancel_pending = false;
                    self.progress(token.slot);
                }
            }
            Kind::Tick => self.on_tick(more),
            Kind::Wake => self.on_wake(),
        }
    }

    /// The connection a token names, if it is still the same connection.
    fn conn_mut(&mut self, token: Token) -> Option<&mut Conn> {
        self.conns
            .get_mut(token.slot as usize)
            .filter(|c| c.generation == token.generation && c.phase != Phase::Free)
    }

    fn on_accept(&mut self, listener: usize, res: i32, more: bool) {
        if res >= 0 {
            let slot = res as u32;
            let max = self.config().max_conns;
            let Some(conn) = self.conns.get_mut(slot as usize) else {
                // Cannot happen (the table is ours); close the descriptor all the same.
                self.counters.err_other += 1;
                self.push(
                    opcode::Close::new(types::Fixed(slot))
                        .build()
                        .user_data(Token::new(Kind::Cancel, u32::MAX, 0).encode()),
                );
                return;
            };
            let refuse = self.draining.is_some()
                || self.setup.shared.open_conns.fetch_add(1, Ordering::Relaxed) >= max;
            if refuse {
                if self.draining.is_none() {
                    self.setup.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
                }
                conn.phase = Phase::Refused;
                let generation = conn.generation;
                self.counters.refused += 1;
                self.push(
                    opcode::Close::new(types::Fixed(slot))
                        .build()
                        .user_data(Token::new(Kind::CloseRefused, slot, generation).encode()),
                );
            } else {
                conn.open(self.now);
                self.counters.accepted += 1;
                self.open += 1;
                self.progress(slot);
            }
        } else if res != -libc::ECANCELED {
            self.counters.err_accept += 1;
        }
        if !more && self.draining.is_none() {
            if res >= 0 {
                self.arm_accept(listener);
            } else {
                self.accept_backoff.push(listener);
            }
        }
    }

    fn on_recv(&mut self, token: Token, res: i32, flags: u32, more: bool) {
        let bid = cqueue::buffer_select(flags);
        if let Some(bid) = bid {
            if !self.buf_ring.mark_taken(bid) {
                self.counters.err_other += 1;
                return;
            }
        }
        let max = self.config().max_conn_buffer;
        let Some(conn) = self.conns.get_mut(token.slot as usize).filter(|c| c.generation == token.generation)
        else {
            if let Some(bid) = bid {
                self.release_buf(bid);
            }
            return;
        };
        if !more {
            conn.recv_armed = false;
        }
        match (res, bid) {
            (n, Some(bid)) if n > 0 => {
                if conn.phase != Phase::Open {
                    self.release_buf(bid);
                } else {
                    conn.on_data(bid, n as u32);
                    conn.last_active = Some(self.now);
                    let queued = u64::from(conn.queued_bytes());
                    let c = &mut self.counters;
                    c.bytes_in += n as u64;
                    c.recv_ops += 1;
                    c.queued_bytes += n as u64;
                    c.conn_queue_high_water = c.conn_queue_high_water.max(queued);
                    debug_assert!(!self.limits || queued <= u64::from(max));
                }
            }
            (0, _) => conn.read_eof = true,
            (n, bid) if n < 0 => {
                let errno = -n;
                if errno == libc::ENOBUFS {
                    conn.starved = true;
                }
                if let Some(bid) = bid {
                    self.release_buf(bid);
                }
                match errno {
                    libc::ENOBUFS => {
                        self.starved.push(token.slot);
                        self.counters.enobufs += 1;
                    }
                    libc::ECANCELED => {}
                    errno => self.on_socket_error(token.slot, errno),
                }
            }
            (_, Some(bid)) => self.release_buf(bid),
            _ => {}
        }
        self.progress(token.slot);
    }

    fn on_socket_error(&mut self, slot: u32, errno: i32) {
        match errno {
            libc::ECONNRESET => self.counters.err_reset += 1,
            libc::EPIPE => self.counters.err_pipe += 1,
            _ => self.counters.err_other += 1,
        }
        self.begin_close(slot, CloseReason::Error);
    }

    fn on_send(&mut self, token: Token, res: i32, zc: bool, more: bool) {
        if zc && more {
            // A notification will follow; the buffer is the kernel's until then.
            self.zc_notifs[usize::from(token.bid)] += 1;
        }
        let Some(conn) = self
            .conns
            .get_mut(token.slot as usize)
            .filter(|c| c.generation == token.generation && c.send_in_flight)
        else {
            self.counters.err_other += 1;
            return;
        };
        if res >= 0 {
            let asked = conn.front_len();
            conn.last_active = Some(self.now);
            let done = conn.on_sent(res as u32);
            let c = &mut self.counters;
            c.bytes_out += res as u64;
            c.queued_bytes -= res as u64;
            c.sends += 1;
            c.zc_sends += u64::from(zc);
            match done {
                Some(bid) => self.release_buf(bid),
                None if (res as u32) < asked => self.counters.short_sends += 1,
                None => {}
            }
        } else {
            conn.on_send_failed();
            if -res != libc::ECANCELED {
                self.on_socket_error(token.slot, -res);
            }
        }
        self.progress(token.slot);
    }

    fn on_zc_notif(&mut self, bid: u16) {
        let i = usize::from(bid);
        self.zc_notifs[i] = self.zc_notifs[i].saturating_sub(1);
        if self.zc_notifs[i] == 0 && std::mem::take(&mut self.zc_release[i]) {
            self.give_back(bid);
        }
    }

    /// Returns a buffer the connection is done with, or marks it to return after its
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

    fn on_close(&mut self, token: Token) {
        let Some(conn) = self.conn_mut(token) else { return };
        let was_paused = conn.paused;
        conn.free();
        if was_paused {
            self.counters.paused -= 1;
        }
        self.open -= 1;
        self.counters.closed += 1;
        self.setup.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
    }

    fn begin_close(&mut self, slot: u32, reason: CloseReason) {
        let conn = &mut self.conns[slot as usize];
        if conn.phase != Phase::Open {
            return;
        }
        conn.phase = Phase::Closing;
        match reason {
            CloseReason::Idle => self.counters.idle_closed += 1,
            CloseReason::Drain => self.counters.drain_closed += 1,
            CloseReason::Eof | CloseReason::Error => {}
        }
    }

    /// Moves a connection forward after any event: start the next send, arm, pause or
    /// cancel the receive, or close.
    fn progress(&mut self, slot: u32) {
        let max = self.config().max_conn_buffer;
        let buf_size = self.config().buffer_size;
        let zc_threshold = self.config().zc_threshold;
        let limits = self.limits;
        let conn = &mut self.conns[slot as usize];
        let generation = conn.generation;
        if conn.phase == Phase::Open {
            if let Some(chunk) = conn.start_send() {
                let ptr = self.buf_ring.data(chunk.bid, chunk.offset, chunk.len);
                let zc = zc_threshold.is_some_and(|t| chunk.len >= t);
                let token = Token {
                    kind: if zc { Kind::SendZc } else { Kind::Send },
                    slot,
                    generation,
                    bid: chunk.bid,
                };
                let entry = if zc {
                    opcode::SendZc::new(types::Fixed(slot), ptr, chunk.len).flags(libc::MSG_NOSIGNAL).build()
                } else {
                    opcode::Send::new(types::Fixed(slot), ptr, chunk.len).flags(libc::MSG_NOSIGNAL).build()
                };
                self.push(entry.user_data(token.encode()));
            }
            let conn = &mut self.conns[slot as usize];
            if conn.read_eof && conn.queued_chunks() == 0 && !conn.recv_armed {
                self.begin_close(slot, CloseReason::Eof);
            } else {
                let was_paused = conn.paused;
                let action = conn.recv_action(max, buf_size, limits);
                let now_paused = conn.paused;
                match action {
                    RecvAction::Arm(limit) => {
                        conn.recv_armed = true;
                        let group = self.buf_ring.group();
                        self.push(
                            ring::recv_multishot(types::Fixed(slot), group, limit)
                                .user_data(Token::new(Kind::Recv, slot, generation).encode()),
                        );
                    }
                    RecvAction::Cancel => {
                        conn.cancel_pending = true;
                        let recv = Token::new(Kind::Recv, slot, generation).encode();
                        self.push(
                            opcode::AsyncCancel::new(recv)
                                .build()
                                .user_data(Token::new(Kind::Cancel, slot, generation).encode()),
                        );
                    }
                    RecvAction::None => {}
                }
                if now_paused && !was_paused {
                    self.counters.pauses += 1;
                    self.counters.paused += 1;
                } else if was_paused && !now_paused {
                    self.counters.paused -= 1;
                }
            }
        }
        let conn = &mut self.conns[slot as usize];
        if conn.phase == Phase::Closing {
            let unsent = conn.take_unsent();
            let quiet = conn.is_quiet();
            let needs_cancel = !quiet && !conn.cancel_pending;
            if needs_cancel {
                conn.cancel_pending = true;
            }
            for chunk in unsent {
                self.counters.queued_bytes -= u64::from(chunk.len);
                self.release_buf(chunk.bid);
            }
            if needs_cancel {
                self.push(
                    opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fixed(slot)).all())
                        .build()
                        .user_data(Token::new(Kind::Cancel, slot, generation).encode()),
                );
            } else if quiet {
                self.conns[slot as usize].phase = Phase::CloseSubmitted;
                self.push(
                    opcode::Close::new(types::Fixed(slot))
                        .build()
                        .user_data(Token::new(Kind::Close, slot, generation).encode()),
                );
            }
        }
    }

    fn on_tick(&mut self, more: bool) {
        for listener in std::mem::take(&mut self.accept_backoff) {
            if self.draining.is_none() {
                self.arm_accept(listener);
            }
        }
        if let Some(idle) = self.config().idle_timeout {
            let cutoff = self.now.checked_sub(idle);
            for slot in 0..self.conns.len() {
                let c = &self.conns[slot];
                if c.phase == Phase::Open && cutoff.is_some_and(|cut| c.last_active.is_some_and(|t| t < cut))
                {
                    self.begin_close(slot as u32, CloseReason::Idle);
                    self.progress(slot as u32);
                }
            }
        }
        if self.draining.is_some_and(|deadline| self.now >= deadline) {
            self.force_close_all();
        }
        if !more {
            self.push(
                opcode::Timeout::new(&*self.tick_spec as *const _)
                    .flags(types::TimeoutFlags::MULTISHOT)
                    .build()
                    .user_data(Token::new(Kind::Tick, 0, 0).encode()),
            );
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
        self.accept_backoff.clear();
        for i in 0..self.setup.listeners.len() {
            let accept = Token::new(Kind::Accept, i as u32, 0).encode();
            self.push(
                opcode::AsyncCancel::new(accept)
                    .build()
                    .user_data(Token::new(Kind::Cancel, u32::MAX, 0).encode()),
            );
        }
        if self.now >= deadline {
            self.force_close_all();
        }
    }

    fn force_close_all(&mut self) {
        for slot in 0..self.conns.len() as u32 {
            if self.conns[slot as usize].phase == Phase::Open {
                self.begin_close(slot, CloseReason::Drain);
                self.progress(slot);
            }
        }
    }
}
