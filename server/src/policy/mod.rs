//! The echo rules, defined once for every backend: who is admitted (`--max-conns`), how a
//! connection's end is counted, which socket errors count as what, what each mode does
//! with what it receives and what the `source` mode sends, how the rate limiter is set up
//! and keys its sources, and the fate of every datagram and how it is counted. Pure: no
//! I/O, no clock of its own.
//!
//! Invariants kept here (each in the file that keeps it, and tested there):
//! - connections: `accepted = closed + open`, and each close is counted once, with its
//!   reason (`conn.rs`);
//! - datagrams: once every reply has completed, every datagram received is counted as
//!   echoed, discarded or dropped for one reason, and `bytes_in` counts every datagram
//!   received whole, whatever its fate (`datagram.rs`).
//!
//! This file only names the rules; each lives in its own module and imports its
//! siblings, never this one: `conn.rs` (admission, a connection's end, the drain
//! deadline, what a stream counts), `mode.rs` (what a mode keeps; the source pattern),
//! `source_key.rs` (the rate limiter's key for a datagram's sender), `datagram.rs` (each
//! datagram's verdict and its counting).

mod conn;
mod datagram;
mod mode;
mod source_key;

pub(crate) use conn::{
    Admission, CloseReason, count_errno, count_error, count_received, count_sent, deadline,
};
pub(crate) use datagram::{Datagrams, Echo, Received, Verdict};
pub use mode::source_byte;
pub(crate) use mode::{SOURCE_CHUNK, keeps_received, source_chunk};
pub(crate) use source_key::SourceKey;
