//! A worker's datagram rules, the same on every backend: the verdict on each datagram
//! (or UDP GRO train) received, the rate limiter's set-up, and the counting of every
//! datagram's fate. Pure: no I/O, no clock of its own.
//!
//! Invariants kept here (and tested below), per datagram (a GRO train of n counts n):
//! - once every reply has completed, `dgrams_in = dgrams_echoed + dgrams_discarded +
//!   dgram_drop_truncated + dgram_drop_rate_limited + dgram_drop_unanswerable +
//!   dgram_drop_send_error`;
//! - a reply is exactly its request, never larger and never more than one (a train goes
//!   back as the same datagrams, cut only at a segment boundary);
//! - `bytes_in` counts every byte of every datagram received whole, whatever its fate.

use super::mode::keeps_received;
use super::source_key::SourceKey;
use crate::config::{Config, Mode};
use crate::ratelimit::RateLimiter;
use crate::stats::Counters;
use std::io;
use std::time::Instant;

/// Most sources a worker's rate limiter tracks one by one.
const RATE_LIMIT_SOURCES: usize = 65_536;

/// A datagram, or a UDP GRO train of datagrams, as received, before the rules decide its
/// fate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Payload bytes the sender sent (the whole train's, for a train), even when fewer
    /// fit the buffer.
    pub len: usize,
    /// Payload bytes in the buffer (`len` when it fit); the rules hold at most the
    /// capacity of them.
    pub captured: usize,
    /// The GRO segment size: the train holds `len / segment` datagrams of that size and
    /// perhaps one shorter last one. `None` for a single datagram.
    pub segment: Option<usize>,
    /// Who to answer; `None` when nobody can be (an unbound Unix sender).
    pub source: Option<SourceKey>,
}

impl Received {
    /// A single datagram of `len` bytes, of which `captured` fit the buffer.
    pub fn single(len: usize, captured: usize, source: Option<SourceKey>) -> Received {
        Received { len, captured, segment: None, source }
    }
}

/// What to send back: the first `bytes` of the received payload, `datagrams` datagrams,
/// cut at `segment` bytes when there is more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Echo {
    pub bytes: usize,
    pub datagrams: u32,
    /// The UDP_SEGMENT size for the send; `None` for a single datagram.
    pub segment: Option<u16>,
}

/// What to do with a datagram (or train).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send this much back, exactly as received; report the send with
    /// [`Datagrams::replied`]. Datagrams of the train beyond it were dropped and counted.
    Reply(Echo),
    /// A discard listener: dropped, counted.
    Discard,
    /// Too large for the buffer: dropped, counted.
    Truncated,
    /// Nobody to answer: dropped, counted.
    Unanswerable,
    /// Over `--udp-rate-limit`: dropped, counted.
    RateLimited,
}

/// A worker's datagram rules: the verdict on each datagram, and its counting.
pub(crate) struct Datagrams {
    limiter: Option<RateLimiter<SourceKey>>,
    /// The largest datagram (or GRO train) echoed, in bytes.
    capacity: usize,
}

impl Datagrams {
    /// The rules for `config` (the rate limiter: `--udp-rate-limit` per second per source,
    /// a tenth of a second of burst, a bounded table), echoing datagrams (and GRO trains)
    /// of at most `capacity` bytes: `--dgram-buffer-size`, or the largest a listener can
    /// receive (`Shared::dgram_capacity`).
    pub fn new(config: &Config, capacity: usize, now: Instant) -> Datagrams {
        let limiter = config
            .udp_rate_limit
            .map(|pps| RateLimiter::new(pps, (pps / 10).max(1), RATE_LIMIT_SOURCES, now));
        Datagrams { limiter, capacity }
    }

    /// Decides the fate of a datagram or train received on a listener in `mode` and
    /// counts it, one datagram at a time: of a train, the datagrams that did not fit the
    /// capacity are dropped as truncated and those over the rate limit as rate-limited (a
    /// train is only ever cut at a segment boundary); the rest are echoed. A `Reply` is
    /// counted once its send completes ([`Datagrams::replied`]).
    ///
    /// The capacity is the limit, not the backend's buffer: bytes a buffer held beyond it
    /// (the uring backend's buffers have room for the largest source address of any
    /// listener, so one with a shorter address receives a little more) count as not held.
    pub fn judge(&mut self, mode: Mode, d: Received, now: Instant, c: &mut Counters) -> Verdict {
        let segment = d.segment.filter(|s| *s > 0 && d.len > *s);
        let total = crate::gso::segments(d.len, segment);
        c.dgrams_in += total as u64;
        let captured = d.captured.min(self.capacity);
        // Datagrams wholly held: all of them when the capacity held them; of a cut train,
        // its full-size segments that fit (a shorter last one is never whole then).
        let (whole, whole_bytes) = match segment {
            _ if captured >= d.len => (total, d.len),
            Some(s) => (captured / s, captured / s * s),
            None => (0, 0),
        };
        c.dgram_drop_truncated += (total - whole) as u64;
        if whole == 0 {
            return Verdict::Truncated;
        }
        c.bytes_in += whole_bytes as u64;
        if !keeps_received(mode) {
            c.dgrams_discarded += whole as u64;
            return Verdict::Discard;
        }
        let Some(source) = d.source else {
            c.dgram_drop_unanswerable += whole as u64;
            return Verdict::Unanswerable;
        };
        // A segment size that no send can name (none the kernel reports) echoes one.
        let sendable = if segment.is_some_and(|s| s > usize::from(u16::MAX)) { 1 } else { whole };
        let allowed = match &mut self.limiter {
            Some(limiter) => (0..sendable).take_while(|_| limiter.allow(source, now)).count(),
            None => sendable,
        };
        c.dgram_drop_rate_limited += (whole - allowed) as u64;
        if allowed == 0 {
            return Verdict::RateLimited;
        }
        let bytes = match segment {
            Some(s) if allowed < whole => allowed * s,
            _ => whole_bytes,
        };
        let segment = segment.filter(|_| allowed > 1).and_then(|s| u16::try_from(s).ok());
        debug_assert!(allowed == 1 || segment.is_some());
        Verdict::Reply(Echo { bytes, datagrams: allowed as u32, segment })
    }

    /// Counts the completed send of a reply of `datagrams` datagrams: `Ok(bytes)` or the
    /// error the kernel gave (a segmented send goes whole or not at all).
    pub fn replied(c: &mut Counters, datagrams: u32, sent: Result<usize, io::Error>) {
        match sent {
            Ok(n) => {
                c.dgrams_echoed += u64::from(datagrams);
                c.bytes_out += n as u64;
            }
            Err(_) => c.dgram_drop_send_error += u64::from(datagrams),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn accounted(c: &Counters) -> u64 {
        c.dgrams_echoed
            + c.dgrams_discarded
            + c.dgram_drop_truncated
            + c.dgram_drop_rate_limited
            + c.dgram_drop_unanswerable
            + c.dgram_drop_send_error
    }

    #[test]
    fn verdicts() {
        let now = Instant::now();
        let config = Config { udp_rate_limit: Some(10), ..Config::default() };
        let mut d = Datagrams::new(&config, 65_536, now);
        let mut c = Counters::default();
        let from = Some(SourceKey::V4([1, 2, 3, 4]));
        let whole = Received::single(10, 10, from);
        let one = Verdict::Reply(Echo { bytes: 10, datagrams: 1, segment: None });
        assert_eq!(d.judge(Mode::Echo, whole, now, &mut c), one, "the burst");
        assert_eq!(d.judge(Mode::Echo, whole, now, &mut c), Verdict::RateLimited);
        assert_eq!(d.judge(Mode::Discard, whole, now, &mut c), Verdict::Discard);
        let big = Received::single(10, 9, from);
        assert_eq!(d.judge(Mode::Echo, big, now, &mut c), Verdict::Truncated);
        let anon = Received { source: None, ..whole };
        assert_eq!(d.judge(Mode::Echo, anon, now, &mut c), Verdict::Unanswerable);
        Datagrams::replied(&mut c, 1, Ok(10));
        assert_eq!(c.dgrams_in, 5);
        assert_eq!(accounted(&c), 5);
        assert_eq!(c.bytes_in, 40, "every datagram received whole, rate-limited or not");
    }

    #[test]
    fn trains_are_judged_per_datagram() {
        let now = Instant::now();
        let mut d = Datagrams::new(&Config::default(), 65_536, now);
        let mut c = Counters::default();
        let from = Some(SourceKey::V6([7; 16]));
        // Eight datagrams, the last shorter: 7 × 64 + 20.
        let train = Received { len: 468, captured: 468, segment: Some(64), source: from };
        let all = Verdict::Reply(Echo { bytes: 468, datagrams: 8, segment: Some(64) });
        assert_eq!(d.judge(Mode::Echo, train, now, &mut c), all);
        Datagrams::replied(&mut c, 8, Ok(468));
        assert_eq!((c.dgrams_in, c.dgrams_echoed, c.bytes_in, c.bytes_out), (8, 8, 468, 468));
        // A train cut by a small buffer: the segments wholly in it go back, the rest are
        // truncated; never a part of a datagram.
        let cut = Received { captured: 200, ..train };
        let three = Verdict::Reply(Echo { bytes: 192, datagrams: 3, segment: Some(64) });
        assert_eq!(d.judge(Mode::Echo, cut, now, &mut c), three);
        assert_eq!(c.dgram_drop_truncated, 5);
        // Only the first datagram fits: one plain datagram, no segmentation.
        let first = Received { captured: 64, ..train };
        let single = Verdict::Reply(Echo { bytes: 64, datagrams: 1, segment: None });
        assert_eq!(d.judge(Mode::Echo, first, now, &mut c), single);
        // A segment size at least the length is a single datagram.
        let lone = Received { len: 64, captured: 64, segment: Some(64), source: from };
        assert_eq!(d.judge(Mode::Echo, lone, now, &mut c), single);
        assert_eq!(d.judge(Mode::Discard, train, now, &mut c), Verdict::Discard);
        assert_eq!(c.dgrams_discarded, 8);
    }

    /// The capacity is exact whatever the backend's buffer held: one byte over it is
    /// truncated even when the buffer had room for it; a train is cut at the capacity.
    #[test]
    fn capacity_is_the_limit_not_the_buffer() {
        let now = Instant::now();
        let mut d = Datagrams::new(&Config::default(), 1000, now);
        let mut c = Counters::default();
        let from = Some(SourceKey::V4([1, 2, 3, 4]));
        let exact = Verdict::Reply(Echo { bytes: 1000, datagrams: 1, segment: None });
        assert_eq!(d.judge(Mode::Echo, Received::single(1000, 1000, from), now, &mut c), exact);
        for len in [1001, 1012, 1062, 1100] {
            assert_eq!(
                d.judge(Mode::Echo, Received::single(len, len, from), now, &mut c),
                Verdict::Truncated
            );
        }
        assert_eq!(c.dgram_drop_truncated, 4);
        // Six 300-byte datagrams, all in the buffer: the three that fit 1000 bytes go back.
        let train = Received { len: 1800, captured: 1800, segment: Some(300), source: from };
        let three = Verdict::Reply(Echo { bytes: 900, datagrams: 3, segment: Some(300) });
        assert_eq!(d.judge(Mode::Echo, train, now, &mut c), three);
        assert_eq!(c.dgram_drop_truncated, 7);
        assert_eq!(c.bytes_in, 1900, "only datagrams held whole");
    }

    #[test]
    fn rate_limit_cuts_trains_at_a_segment_boundary() {
        let now = Instant::now();
        // 30 per second: a burst of 3.
        let config = Config { udp_rate_limit: Some(30), ..Config::default() };
        let mut d = Datagrams::new(&config, 65_536, now);
        let mut c = Counters::default();
        let train =
            Received { len: 640, captured: 640, segment: Some(64), source: Some(SourceKey::V4([9; 4])) };
        let three = Verdict::Reply(Echo { bytes: 192, datagrams: 3, segment: Some(64) });
        assert_eq!(d.judge(Mode::Echo, train, now, &mut c), three);
        assert_eq!(c.dgram_drop_rate_limited, 7);
        assert_eq!(d.judge(Mode::Echo, train, now, &mut c), Verdict::RateLimited);
        assert_eq!(c.dgram_drop_rate_limited, 17);
        // A tenth of a second later, three more tokens.
        let later = now + Duration::from_millis(100);
        assert_eq!(d.judge(Mode::Echo, train, later, &mut c), three);
    }

    proptest! {
        /// Whatever arrives, once every reply has completed the datagram counters add up,
        /// per datagram, and a reply is a whole number of segments of what arrived.
        #[test]
        fn datagram_counters_add_up(dgrams in proptest::collection::vec(
            (0usize..70_000, 0usize..70_000, proptest::option::of(0usize..9000), proptest::option::of(0u8..4),
             any::<bool>(), any::<bool>()), 0..300), capacity in 1usize..70_000) {
            let now = Instant::now();
            let config = Config { udp_rate_limit: Some(50), ..Config::default() };
            let mut rules = Datagrams::new(&config, capacity, now);
            let mut c = Counters::default();
            for (len, captured, segment, source, discard, send_ok) in dgrams {
                let mode = if discard { Mode::Discard } else { Mode::Echo };
                let source = source.map(|s| SourceKey::V4([s, 0, 0, 1]));
                let d = Received { len, captured: captured.min(len), segment, source };
                if let Verdict::Reply(echo) = rules.judge(mode, d, now, &mut c) {
                    prop_assert!(echo.bytes <= d.captured && echo.bytes <= capacity);
                    prop_assert!(echo.datagrams >= 1);
                    if let Some(s) = echo.segment {
                        prop_assert_eq!(segment, Some(usize::from(s)));
                        prop_assert_eq!(crate::gso::segments(echo.bytes, segment), echo.datagrams as usize);
                    } else {
                        prop_assert_eq!(echo.datagrams, 1);
                    }
                    let sent = if send_ok { Ok(echo.bytes) } else { Err(io::Error::from_raw_os_error(libc::ENOBUFS)) };
                    Datagrams::replied(&mut c, echo.datagrams, sent);
                }
                prop_assert_eq!(c.dgrams_in, accounted(&c));
            }
        }

    }
}
