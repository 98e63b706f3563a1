//! ringecho: a thread-per-core io_uring echo server for TCP, UDP and Unix sockets.
//!
//! Each worker owns a pinned thread, an io_uring, SO_REUSEPORT listeners and a provided
//! buffer ring; a received buffer is sent back as it is, with no copy in user space, and
//! returns to the ring once its send completes. `docs/ARCHITECTURE.md` in the repository
//! gives the reasons and the module map.
//!
//! ```no_run
//! let handle = ringecho::Server::start(ringecho::Config::default())?;
//! println!("{}", handle.local_addrs()[0]);
//! handle.shutdown();
//! let totals = handle.join();
//! # Ok::<(), ringecho::StartError>(())
//! ```
#![deny(missing_docs)]

mod backend;
pub mod cli;
pub mod cmsg;
pub mod config;
pub mod cpu;
mod error;
pub mod gso;
mod listen;
pub mod metrics;
pub mod parthist;
mod policy;
pub mod procfs;
pub mod ratelimit;
pub mod ring;
mod server;
pub mod stats;
pub mod sys;
pub mod tstamp;
pub mod units;

pub use config::{Backend, Config, ConfigError, Cpus, Endpoint, Listen, Mode};
pub use error::{ServerWarning, StartError, WorkerError};
pub use listen::BoundAddr;
pub use policy::source_byte;
pub use server::{Finished, Server, ServerHandle, StatsSource};
pub use stats::{Counters, Snapshot};
