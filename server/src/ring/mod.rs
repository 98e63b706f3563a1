//! The io_uring plumbing shared by the server and the load generator: a [`Ring`] that
//! owns an io_uring and its provided buffer ring, the [`Driver`] that submits and reaps,
//! the kernel feature [`probe`], and the SQE fields the `io-uring` crate does not expose.
//!
//! Invariant: a [`Ring`] drops its io_uring before its [`BufRing`], so the kernel never
//! writes a buffer after its memory is unmapped. No other code pairs the two by hand.
//!
//! This file only names the parts; each lives in its own module and imports its siblings,
//! never this one: `uring.rs` the [`Ring`], `buf_ring.rs`, `driver.rs`, `probe.rs`,
//! `sqe.rs`, and `error.rs` ([`UringError`]).

pub mod buf_ring;
mod driver;
mod error;
mod probe;
mod sqe;
mod uring;

pub use buf_ring::{Buf, BufError, BufRing};
pub use driver::{Driver, PushError};
pub use error::UringError;
pub use probe::{Features, probe};
pub use sqe::{Target, recv_multishot};
pub use uring::{DGRAM_GROUP, Parts, Ring, RingOptions, TaskRun};
