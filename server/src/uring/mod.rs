//! The `uring` backend: one worker per CPU, each with its own io_uring, listeners,
//! provided buffer ring and connection table. Workers share nothing on the hot path; the
//! only shared state is the process-wide open-connection count, touched on accept and
//! close.

pub(crate) mod conn;
pub(crate) mod token;
pub(crate) mod worker;
