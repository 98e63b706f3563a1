//! The backend contract: what every backend is given and what it supplies. It depends on
//! nothing above it (the public `Server` API depends on it, never the reverse), and it
//! names no backend's own types.
//!
//! Every backend supplies an [`Engine`]: one worker body, run on a thread of its own per
//! worker, which
//! - serves the [`Listener`]s of its [`WorkerSetup`] in their mode, following the echo
//!   rules of [`crate::policy`] (admission through [`Shared::admission`], datagram
//!   verdicts, error classes, the source pattern, close reasons) and nothing else;
//! - says on [`Ready`] once it serves (or why it cannot), before it serves;
//! - publishes its counters into its slot of [`Shared::stats`] at least every
//!   [`PUBLISH_EVERY`] (readers wait for a figure, never assume it is there at once);
//! - on [`Shared::shutdown`] (its `wake` eventfd is signalled) stops accepting and
//!   receiving datagrams, lets open connections finish until the drain timeout, closes the
//!   rest as `drain_closed`, and returns;
//! - reports what went wrong after start-up as [`ServerWarning`]s, never by printing.

use crate::config::{Config, Mode};
use crate::error::{ServerWarning, WorkerError};
use crate::ring::Features;
use crate::stats::StatsRegistry;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// The longest a backend may leave its published counters stale.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Whether a listener accepts connections or receives datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Accepts connections (TCP, Unix stream).
    Stream,
    /// Receives datagrams (UDP, Unix datagram).
    Datagram,
}

/// The address family of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// IPv4.
    Inet4,
    /// IPv6.
    Inet6,
    /// A Unix socket (a path).
    Unix,
}

/// One bound listening socket, as a worker serves it.
pub(crate) struct Listener {
    /// The socket: a worker's own (TCP, UDP: one per worker, SO_REUSEPORT) or shared by
    /// every worker (Unix).
    pub fd: Arc<OwnedFd>,
    pub transport: Transport,
    pub family: Family,
    pub mode: Mode,
    /// UDP_GRO is on: a receive may hold several datagrams of one size from one sender
    /// (the last may be shorter), with the size in a control message.
    pub gro: bool,
    /// `--timestamps` on a TCP listener: receive stamps were turned on before it listened,
    /// so every connection it accepts inherits them.
    pub stamps: bool,
}

impl Listener {
    /// Bytes of the largest source address a datagram of this family comes from.
    pub fn source_name_len(&self) -> u32 {
        let len = match self.family {
            Family::Inet4 => std::mem::size_of::<libc::sockaddr_in>(),
            Family::Inet6 => std::mem::size_of::<libc::sockaddr_in6>(),
            Family::Unix => std::mem::size_of::<libc::sockaddr_un>(),
        };
        len as u32
    }
}

/// State shared by the handle and the workers; off the hot path.
pub(crate) struct Shared {
    pub config: Config,
    /// Open connections in the whole process (for `--max-conns`).
    pub open_conns: AtomicUsize,
    /// Set when shutdown begins; each worker's `wake` is signalled after.
    pub shutdown: AtomicBool,
    pub stats: StatsRegistry,
    /// The largest datagram (or GRO batch) a datagram listener receives whole: the size
    /// of the payload part of a datagram buffer. 0 when there is no datagram listener.
    pub dgram_capacity: u32,
    /// Each worker's thread, for its CPU time.
    pub threads: crate::cpu::WorkerThreads,
}

impl Shared {
    /// `--max-conns` over the whole process.
    pub fn admission(&self) -> crate::policy::Admission<'_> {
        crate::policy::Admission::new(&self.open_conns, self.config.max_conns)
    }
}

/// What a worker is given.
pub(crate) struct WorkerSetup {
    pub index: usize,
    /// The CPU to pin to, if any.
    pub cpu: Option<usize>,
    pub listeners: Vec<Listener>,
    /// Signalled (an eventfd) when shutdown begins.
    pub wake: Arc<OwnedFd>,
    pub shared: Arc<Shared>,
}

/// A worker that serves: what it says about itself for the start-up line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Started {
    /// How its engine was set up (for the uring backend, the ring's flags), if it matters.
    pub detail: Option<String>,
}

/// The worker's one message to the starter: serving, or why not.
pub(crate) struct Ready {
    worker: usize,
    tx: SyncSender<Result<Started, WorkerError>>,
}

impl Ready {
    pub fn new(worker: usize, tx: SyncSender<Result<Started, WorkerError>>) -> Ready {
        Ready { worker, tx }
    }

    /// Serving.
    pub fn serving(self, started: Started) {
        let _ = self.tx.send(Ok(started));
    }

    /// Set-up step `step` failed.
    pub fn failed(self, step: impl Into<String>, error: io::Error) {
        let _ = self.tx.send(Err(WorkerError::Setup { worker: self.worker, step: step.into(), error }));
    }

    /// Set-up failed with an error already typed.
    pub fn failed_with(self, error: WorkerError) {
        let _ = self.tx.send(Err(error));
    }

    /// The worker's index (for errors built by the caller).
    pub fn worker(&self) -> usize {
        self.worker
    }
}

/// What every backend supplies.
pub(crate) trait Engine: Send + Sync {
    /// Workers to start given `cpus` usable CPUs.
    fn workers(&self, config: &Config, cpus: usize) -> usize {
        config.workers.unwrap_or(cpus)
    }

    /// Runs one worker on the calling thread until it has drained after shutdown.
    fn run(&self, setup: WorkerSetup, ready: Ready) -> Vec<ServerWarning>;

    /// The io_uring features in use (none for engines without a ring of their own).
    fn features(&self) -> Features {
        Features::default()
    }

    /// A one-line description for the start-up log.
    fn describe(&self, config: &Config, started: &[Started]) -> String;
}
