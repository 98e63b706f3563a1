//! The `epoll` backend: one mio `Poll` per worker, its own SO_REUSEPORT listeners,
//! readiness-based non-blocking I/O, and a fixed pool of `--buffers` buffers of
//! `--buffer-size` bytes per worker, so memory is bounded as in the `uring` backend.
//!
//! Invariants: a connection holds at most `--max-conn-buffer` bytes read and not yet
//! written (reading stops at the bound and resumes as writes drain it); every pool buffer
//! is either free or in exactly one connection's queue. mio is edge-triggered, so a
//! connection that stops early (its turn's budget spent, or the pool empty) is put on a
//! ready list and driven again without waiting for a new event.
//!
//! Files: this one the engine and the worker's loop; `ctx.rs` what the loop lends its
//! parts and the token layout; the parts, each a type owning its sockets and state:
//! `stream.rs` (stream listeners and connections), `dgram.rs` (datagram listeners);
//! `conn.rs` one connection and its reads and writes.

mod conn;
mod ctx;
mod dgram;
mod stream;

use crate::backend::contract::{self, Engine, Ready, Started, WorkerSetup};
use crate::config::Config;
use crate::error::ServerWarning;
use crate::stats::Counters;
use ctx::{Ctx, Event};
use dgram::DgramListeners;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use stream::Streams;

const TICK: Duration = contract::PUBLISH_EVERY;
/// How long a connection must have been stuck on a full queue before pool pressure may
/// close it.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// The readiness engine.
pub(crate) struct EpollEngine;

impl Engine for EpollEngine {
    fn run(&self, setup: WorkerSetup, ready: Ready) -> Vec<ServerWarning> {
        let mut worker = match Worker::new(&setup) {
            Ok(w) => w,
            Err(e) => {
                ready.failed("setting up epoll", e);
                return Vec::new();
            }
        };
        ready.serving(Started::default());
        let mut warnings = Vec::new();
        if let Err(error) = worker.serve() {
            warnings.push(ServerWarning::Stopped { worker: setup.index, error });
        }
        worker.publish();
        warnings
    }

    fn describe(&self, config: &Config, _: &[Started]) -> String {
        format!(
            "{} × {} B buffers each, per-connection bound {} B",
            config.buffers, config.buffer_size, config.max_conn_buffer
        )
    }
}

/// One worker: its loop and wake-up, and its parts.
struct Worker<'a> {
    setup: &'a WorkerSetup,
    ctx: Ctx,
    streams: Streams<'a>,
    dgrams: DgramListeners,
}

impl<'a> Worker<'a> {
    fn new(setup: &'a WorkerSetup) -> io::Result<Worker<'a>> {
        if let Some(cpu) = setup.cpu {
            crate::sys::pin_current_thread(cpu)?;
        }
        let config = &setup.shared.config;
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&setup.wake.as_raw_fd()),
            Event::Wake.token(),
            Interest::READABLE,
        )?;
        let now = Instant::now();
        let counters = Counters { buf_ring_low_water: u64::from(config.buffers), ..Counters::default() };
        let ctx = Ctx { poll, counters, now, draining: None };
        let streams = Streams::new(&setup.shared, &setup.listeners, &ctx)?;
        let dgrams = DgramListeners::new(&setup.listeners, config, setup.shared.dgram_capacity, &ctx)?;
        Ok(Worker { setup, ctx, streams, dgrams })
    }

    fn config(&self) -> &'a Config {
        let setup: &'a WorkerSetup = self.setup;
        &setup.shared.config
    }

    fn publish(&mut self) {
        self.streams.publish_levels(&mut self.ctx.counters);
        self.setup.shared.stats.worker(self.setup.index).publish(&self.ctx.counters);
    }

    fn serve(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        loop {
            self.publish();
            if self.ctx.draining() && self.streams.open() == 0 {
                return Ok(());
            }
            let spin = self.config().spin;
            let timeout = if self.streams.has_ready() || spin { Duration::ZERO } else { TICK };
            match self.ctx.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.ctx.now = Instant::now();
            for ev in events.iter() {
                let ctx = &mut self.ctx;
                match Event::of(ev.token()) {
                    Event::Wake => self.on_wake(),
                    Event::Conn(slot) => self.streams.drive(ctx, slot),
                    Event::StreamListener(i) => self.streams.accept_all(ctx, i),
                    Event::DgramListener(i) => self.dgrams.receive(ctx, i),
                }
            }
            self.streams.drive_ready(&mut self.ctx);
            if self.ctx.now.duration_since(last_tick) >= TICK {
                last_tick = self.ctx.now;
                self.streams.on_tick(&mut self.ctx, EVICT_AFTER);
            }
        }
    }

    fn on_wake(&mut self) {
        // Readable, so the counter is not zero and this does not block.
        let _ = crate::sys::eventfd_read(&self.setup.wake);
        if !self.setup.shared.shutdown.load(Ordering::Acquire) || self.ctx.draining() {
            return;
        }
        let drain = self.config().drain_timeout;
        self.ctx.draining = Some(crate::policy::deadline(self.ctx.now, drain));
        // Stop accepting and receiving datagrams; open connections go on.
        self.streams.stop_accepting(&mut self.ctx);
        self.dgrams.stop_receiving(&mut self.ctx);
        if drain.is_zero() {
            self.streams.close_all_open(&mut self.ctx);
        }
    }
}
