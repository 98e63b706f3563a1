//! Benchmarks and comparison clients for ringecho. The `epoll-client` binary is the
//! minimal single-threaded closed-loop client that sets the floor ringload must match.
#![forbid(unsafe_code)]
