//! What an epoll worker lends each of its parts (the stream listeners and their
//! connections, the datagram listeners) on every call: the mio [`Poll`] they register
//! their sockets with, the counters, the time of the turn and the drain deadline; and
//! [`Event`], the one layout of the tokens they register under. The parts and the worker
//! depend on this module, never the reverse.

use crate::stats::Counters;
use mio::{Poll, Registry, Token};
use std::time::Instant;

/// What a worker lends its parts for one call.
pub(super) struct Ctx {
    /// The worker waits on it; the parts register, re-register and deregister with it.
    pub poll: Poll,
    /// This worker's counters, published once per turn.
    pub counters: Counters,
    /// Now: read once per turn, after waiting.
    pub now: Instant,
    /// When shutdown began, the instant open connections are forced closed.
    pub draining: Option<Instant>,
}

impl Ctx {
    /// Where the parts register their sockets.
    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Whether shutdown has begun.
    pub fn draining(&self) -> bool {
        self.draining.is_some()
    }
}

/// What an event is about: the token a socket is registered under, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// The shutdown eventfd.
    Wake,
    /// A stream listener, by its index among the worker's stream listeners.
    StreamListener(usize),
    /// A datagram listener, by its index among the worker's datagram listeners.
    DgramListener(usize),
    /// A connection, by its slot.
    Conn(usize),
}

const WAKE: usize = usize::MAX - 1;
const DGRAM_LISTENERS: usize = 1 << 19;
const CONNS: usize = 1 << 20;

impl Event {
    /// The token to register a socket under.
    pub fn token(self) -> Token {
        Token(match self {
            Event::Wake => WAKE,
            Event::StreamListener(i) => i,
            Event::DgramListener(i) => DGRAM_LISTENERS + i,
            Event::Conn(slot) => CONNS + slot,
        })
    }

    /// What an event's token is about.
    pub fn of(token: Token) -> Event {
        match token.0 {
            WAKE => Event::Wake,
            t if t >= CONNS => Event::Conn(t - CONNS),
            t if t >= DGRAM_LISTENERS => Event::DgramListener(t - DGRAM_LISTENERS),
            t => Event::StreamListener(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for e in [
            Event::Wake,
            Event::StreamListener(0),
            Event::StreamListener(DGRAM_LISTENERS - 1),
            Event::DgramListener(0),
            Event::DgramListener(CONNS - DGRAM_LISTENERS - 1),
            Event::Conn(0),
            Event::Conn(1 << 40),
        ] {
            assert_eq!(Event::of(e.token()), e);
        }
    }
}
