//! The `tokio-uring` backend: one tokio-uring runtime per CPU, each with its own
//! SO_REUSEPORT listeners, a task per connection doing read-then-write with an owned
//! buffer. It exists to show what a runtime-based io_uring design costs against the
//! hand-rolled ring of the `uring` backend. A connection holds one `--buffer-size` buffer
//! and reads again only after writing it back, so its memory is bounded by that.
//!
//! tokio-uring cannot adopt a bound Unix listener, so Unix stream connections are
//! accepted by a plain thread and handed to the runtime; it has no Unix datagram socket
//! at all (refused at configuration).
//!
//! Files: this one the engine and the worker's runtime; `ctx.rs` what the worker's tasks
//! share; `stream.rs` connections; `dgram.rs` UDP.

mod ctx;
mod dgram;
mod stream;

use crate::backend::contract::{Engine, Family, Ready, Started, Transport, WorkerSetup};
use crate::config::Config;
use crate::error::ServerWarning;
use crate::ring::UringError;
use crate::stats::Counters;
use ctx::{Ctx, POLL};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A tokio-uring runtime per CPU.
pub(crate) struct TokioUringEngine;

impl TokioUringEngine {
    /// io_uring must work here.
    pub fn prepare() -> Result<TokioUringEngine, UringError> {
        crate::ring::probe()?;
        Ok(TokioUringEngine)
    }
}

impl Engine for TokioUringEngine {
    fn run(&self, setup: WorkerSetup, ready: Ready) -> Vec<ServerWarning> {
        if let Some(cpu) = setup.cpu {
            if let Err(e) = crate::sys::pin_current_thread(cpu) {
                ready.failed(format!("pinning to CPU {cpu}"), e);
                return Vec::new();
            }
        }
        let runtime = match tokio_uring::Runtime::new(&tokio_uring::builder()) {
            Ok(r) => r,
            Err(e) => {
                ready.failed("starting the tokio-uring runtime", e);
                return Vec::new();
            }
        };
        runtime.block_on(serve(setup, ready));
        Vec::new()
    }

    fn describe(&self, config: &Config, _: &[Started]) -> String {
        format!("a task per connection, one {} B buffer each", config.buffer_size)
    }
}

async fn serve(setup: WorkerSetup, ready: Ready) {
    let shared = setup.shared.clone();
    let (stop_tx, stop_rx) = watch::channel(None);
    let ctx = Ctx {
        shared: shared.clone(),
        index: setup.index,
        tally: Rc::new(RefCell::new(Counters::default())),
        open: Rc::new(RefCell::new(0u64)),
        stop: stop_rx,
    };
    let mut tasks = Vec::new();
    for l in &setup.listeners {
        let fd = match l.fd.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                ready.failed("duplicating a listener", e);
                return;
            }
        };
        let (ctx, mode) = (ctx.clone(), l.mode);
        match (l.transport, l.family == Family::Unix) {
            (Transport::Stream, false) => {
                let listener = tokio_uring::net::TcpListener::from_std(std::net::TcpListener::from(fd));
                tasks.push(tokio_uring::spawn(stream::accept_tcp(ctx, listener, mode)));
            }
            // Worker 0 accepts for the shared Unix listener (one acceptor is enough).
            (Transport::Stream, true) if setup.index == 0 => {
                let listener = std::os::unix::net::UnixListener::from(fd);
                tasks.push(tokio_uring::spawn(stream::accept_unix(ctx, listener, mode)));
            }
            (Transport::Stream, true) => {}
            (Transport::Datagram, false) => {
                let sock = tokio_uring::net::UdpSocket::from_std(std::net::UdpSocket::from(fd));
                tasks.push(tokio_uring::spawn(dgram::udp(ctx, sock, mode)));
            }
            // Refused at configuration.
            (Transport::Datagram, true) => {}
        }
    }
    ready.serving(Started::default());
    // Publish the tally and watch for shutdown.
    while !shared.shutdown.load(Ordering::Acquire) {
        ctx.publish();
        tokio::time::sleep(POLL).await;
    }
    let drain_until = crate::policy::deadline(Instant::now(), shared.config.drain_timeout);
    let _ = stop_tx.send(Some(tokio::time::Instant::from_std(drain_until)));
    for t in tasks {
        let _ = t.await;
    }
    // Connections go on until EOF or the drain deadline, which every task shares; each
    // counts itself out by then.
    let give_up = drain_until + Duration::from_millis(500);
    while *ctx.open.borrow() > 0 && Instant::now() < give_up {
        ctx.publish();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ctx.publish();
}
