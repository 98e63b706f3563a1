//! Benchmarks and comparison clients for ringecho. The `epoll-client` binary is the
//! minimal single-threaded closed-loop client that sets the floor ringload must match;
//! `epoll-open-loop` is the plain open-loop client (one epoll set, one absolute timerfd)
//! that ringload's open loop is held to.
#![forbid(unsafe_code)]
