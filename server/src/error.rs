//! The errors and warnings the public API returns. Each says its cause once: the cause's
//! text is part of the message, and not chained again as a `source()`, so printing with
//! `{:#}` (anyhow) does not repeat it.

use crate::config::ConfigError;
use crate::ring::UringError;
use std::io;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// io_uring cannot be used on this machine.
    #[error(
        "{0}\nringecho's uring and tokio-uring backends need io_uring (Linux 6.0 or later, not blocked by seccomp or kernel.io_uring_disabled); --backend epoll works without it"
    )]
    Uring(UringError),
    /// A listening socket could not be set up.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address, as given.
        addr: String,
        /// Why.
        error: io::Error,
    },
    /// A worker failed to set itself up.
    #[error("{0}")]
    Worker(WorkerError),
}

impl From<UringError> for StartError {
    fn from(e: UringError) -> Self {
        StartError::Uring(e)
    }
}

impl From<WorkerError> for StartError {
    fn from(e: WorkerError) -> Self {
        StartError::Worker(e)
    }
}

/// Why a worker could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A set-up step failed.
    #[error("worker {worker}: {step}: {error}")]
    Setup {
        /// The worker's index.
        worker: usize,
        /// What it was doing.
        step: String,
        /// Why it failed.
        error: io::Error,
    },
    /// Its io_uring could not be set up.
    #[error("worker {worker}: {error}")]
    Uring {
        /// The worker's index.
        worker: usize,
        /// Why.
        error: UringError,
    },
    /// The thread could not be started, or ended before saying whether it serves.
    #[error("worker {worker}: {what}")]
    Thread {
        /// The worker's index.
        worker: usize,
        /// What happened.
        what: String,
    },
}

/// Something that went wrong after start-up, reported when the server stops (library code
/// never prints; the binary prints these).
#[derive(Debug, thiserror::Error)]
pub enum ServerWarning {
    /// A worker's loop failed and it stopped serving early.
    #[error("worker {worker} stopped: {error}")]
    Stopped {
        /// The worker's index.
        worker: usize,
        /// Why.
        error: io::Error,
    },
    /// A worker ended while the kernel still held some of its operations; their memory was
    /// leaked rather than freed under the kernel.
    #[error("worker {worker}: {operations} operations still in flight at exit; their memory was leaked")]
    Leaked {
        /// The worker's index.
        worker: usize,
        /// Operations the kernel had not given back.
        operations: u64,
    },
    /// The metrics endpoint stopped.
    #[error("metrics: {0}")]
    Metrics(io::Error),
}
