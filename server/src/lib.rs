//! ringecho: a thread-per-core io_uring echo server for TCP, UDP and Unix sockets.
//!
//! Each worker owns a pinned thread, an io_uring, SO_REUSEPORT listeners and a provided
//! buffer ring; a received buffer is sent back as it is, with no copy in user space, and
//! returns to the ring once its send completes. See `DESIGN.md` for the reasons.
//!
//! ```no_run
//! let handle = ringecho::Server::start(ringecho::Config::default())?;
//! println!("{}", handle.local_addrs()[0]);
//! handle.shutdown();
//! let totals = handle.join();
//! # Ok::<(), ringecho::StartError>(())
//! ```
#![deny(missing_docs)]

pub mod cli;
pub mod config;
mod epoll;
pub mod metrics;
pub mod ratelimit;
pub mod ring;
pub mod server;
pub mod stats;
pub mod sys;
mod threads;
mod tokio_uring_backend;
pub mod units;
mod uring;

pub use config::{Backend, Config, Cpus, Endpoint, Listen, Mode};
pub use server::{BoundAddr, Server, ServerHandle, StartError};
pub use stats::{Counters, Snapshot};
