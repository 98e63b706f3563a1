//! The echo rules, defined once for every backend: who is admitted (`--max-conns`), how a
//! connection's end is counted, which socket errors count as what, what the `source` mode
//! sends, how the rate limiter is set up, and the fate of every datagram and how it is
//! counted. Pure: no I/O, no clock of its own.
//!
//! Invariants kept here (and tested below):
//! - connections: `accepted = closed + open`, and each close is counted once, with its
//!   reason (`idle_closed`, `drain_closed`, `evicted` are subsets of `closed`);
//! - datagrams: once every reply has completed, `dgrams_in = dgrams_echoed +
//!   dgrams_discarded + dgram_drop_truncated + dgram_drop_rate_limited +
//!   dgram_drop_unanswerable + dgram_drop_send_error`;
//! - `bytes_in` counts every byte of every datagram received whole, whatever its fate.

use crate::config::{Config, Mode};
use crate::ratelimit::RateLimiter;
use crate::stats::Counters;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `--max-conns` over the whole process: a shared count of open connections.
pub(crate) struct Admission<'a> {
    open: &'a AtomicUsize,
    max: usize,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The peer closed its side and everything was echoed.
    Eof,
    /// A socket error (reset, broken pipe, ...).
    Error,
    /// `--idle-timeout`.
    Idle,
    /// Shutdown's drain timeout ran out.
    Drain,
    /// The buffer pool ran dry while this connection sat on a full queue it could not send.
    Evicted,
}

impl<'a> Admission<'a> {
    pub fn new(open: &'a AtomicUsize, max: usize) -> Admission<'a> {
        Admission { open, max }
    }

    /// Decides on a connection just accepted: true to serve it (counted `accepted`), false
    /// to close it at once (counted `refused`): past `--max-conns`, or while draining.
    pub fn admit(&self, draining: bool, c: &mut Counters) -> bool {
        if draining || self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            if !draining {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
            c.refused += 1;
            return false;
        }
        c.accepted += 1;
        true
    }

    /// Counts the end of an admitted connection, once, with its reason.
    pub fn release(&self, reason: CloseReason, c: &mut Counters) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        c.closed += 1;
        match reason {
            CloseReason::Idle => c.idle_closed += 1,
            CloseReason::Drain => c.drain_closed += 1,
            CloseReason::Evicted => c.evicted += 1,
            CloseReason::Eof | CloseReason::Error => {}
        }
    }
}

/// `after` past `from`; a duration too large to add is as good as for ever (a year).
pub(crate) fn deadline(from: Instant, after: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    from.checked_add(after).unwrap_or(from + YEAR)
}

/// Counts a socket error on a connection by its class.
pub(crate) fn count_error(c: &mut Counters, e: &io::Error) {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => c.err_reset += 1,
        Some(libc::EPIPE) => c.err_pipe += 1,
        Some(_) => c.err_other += 1,
        None => match e.kind() {
            io::ErrorKind::ConnectionReset => c.err_reset += 1,
            io::ErrorKind::BrokenPipe => c.err_pipe += 1,
            _ => c.err_other += 1,
        },
    }
}

/// [`count_error`] for an errno from a completion.
pub(crate) fn count_errno(c: &mut Counters, errno: i32) {
    count_error(c, &io::Error::from_raw_os_error(errno));
}

/// Whether a listener in `mode` keeps what it receives (to echo it); the others drop it.
pub(crate) fn keeps_received(mode: Mode) -> bool {
    mode == Mode::Echo
}

/// The period of the `source` pattern: byte `i` of a source stream is `i % 251`.
const SOURCE_PERIOD: usize = 251;
/// Most bytes one send of the source pattern takes.
pub(crate) const SOURCE_CHUNK: usize = 64 * 1024;
const SOURCE_PATTERN_LEN: usize = SOURCE_CHUNK + SOURCE_PERIOD;
/// The pattern, long enough to send `SOURCE_CHUNK` bytes from any phase; static, so a
/// send can point into it for as long as the kernel likes.
static SOURCE_PATTERN: [u8; SOURCE_PATTERN_LEN] = source_pattern();

const fn source_pattern() -> [u8; SOURCE_PATTERN_LEN] {
    let mut p = [0u8; SOURCE_PATTERN_LEN];
    let mut i = 0;
    while i < SOURCE_PATTERN_LEN {
        p[i] = (i % SOURCE_PERIOD) as u8;
        i += 1;
    }
    p
}

/// The byte at offset `i` of a `source` stream.
pub fn source_byte(i: u64) -> u8 {
    (i % SOURCE_PERIOD as u64) as u8
}

/// The next bytes of a source stream that has sent `offset` bytes: at most `max` (and at
/// most [`SOURCE_CHUNK`]).
pub(crate) fn source_chunk(offset: u64, max: usize) -> &'static [u8] {
    let phase = (offset % SOURCE_PERIOD as u64) as usize;
    &SOURCE_PATTERN[phase..phase + max.min(SOURCE_CHUNK)]
}

/// Counts bytes received on a stream.
pub(crate) fn count_received(c: &mut Counters, n: usize) {
    c.bytes_in += n as u64;
    c.recv_ops += 1;
}

/// Counts bytes a send moved on a stream.
pub(crate) fn count_sent(c: &mut Counters, n: usize) {
    c.bytes_out += n as u64;
    c.sends += 1;
}

/// Most sources a worker's rate limiter tracks one by one.
const RATE_LIMIT_SOURCES: usize = 65_536;

/// A datagram's source as the rate limiter keys it: the IP for UDP (any port, so one host
/// cannot multiply its share by using many ports), a hash of the path for Unix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    V4([u8; 4]),
    V6([u8; 16]),
    Unix(u64),
}

impl SourceKey {
    /// Reads the key from a `sockaddr` the kernel wrote; `None` for an unbound Unix sender
    /// (nothing to reply to) or an address too short to be real.
    pub fn from_sockaddr(name: &[u8]) -> Option<SourceKey> {
        let family = u16::from_ne_bytes([*name.first()?, *name.get(1)?]);
        match i32::from(family) {
            libc::AF_INET if name.len() >= 8 => Some(SourceKey::V4(name[4..8].try_into().ok()?)),
            libc::AF_INET6 if name.len() >= 24 => Some(SourceKey::V6(name[8..24].try_into().ok()?)),
            libc::AF_UNIX if name.len() > 2 => Some(SourceKey::Unix(path_hash(&name[2..]))),
            _ => None,
        }
    }

    /// The key of an IP source.
    pub fn from_ip(addr: &std::net::SocketAddr) -> SourceKey {
        match addr.ip() {
            std::net::IpAddr::V4(ip) => SourceKey::V4(ip.octets()),
            std::net::IpAddr::V6(ip) => SourceKey::V6(ip.octets()),
        }
    }

    /// The key of a Unix source bound to `path`; `None` for an unbound sender.
    pub fn from_unix(path: Option<&std::path::Path>) -> Option<SourceKey> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path?.as_os_str().as_bytes();
        // As the kernel writes it in a sockaddr_un: the path and its terminating NUL.
        let mut name = Vec::with_capacity(bytes.len() + 1);
        name.extend_from_slice(bytes);
        name.push(0);
        Some(SourceKey::Unix(path_hash(&name)))
    }
}

fn path_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    // Up to the first NUL: the kernel may or may not count the terminator in the length.
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes[..end].hash(&mut h);
    h.finish()
}

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

    fn accounted(c: &Counters) -> u64 {
        c.dgrams_echoed
            + c.dgrams_discarded
            + c.dgram_drop_truncated
            + c.dgram_drop_rate_limited
            + c.dgram_drop_unanswerable
            + c.dgram_drop_send_error
    }

    #[test]
    fn admission_counts_and_bounds() {
        let open = AtomicUsize::new(0);
        let a = Admission::new(&open, 2);
        let mut c = Counters::default();
        assert!(a.admit(false, &mut c));
        assert!(a.admit(false, &mut c));
        assert!(!a.admit(false, &mut c), "past --max-conns");
        assert!(!a.admit(true, &mut c), "draining");
        assert_eq!((c.accepted, c.refused, open.load(Ordering::Relaxed)), (2, 2, 2));
        a.release(CloseReason::Drain, &mut c);
        a.release(CloseReason::Eof, &mut c);
        assert_eq!((c.closed, c.drain_closed, open.load(Ordering::Relaxed)), (2, 1, 0));
        assert!(a.admit(false, &mut c), "room again");
    }

    #[test]
    fn error_classes() {
        let mut c = Counters::default();
        count_errno(&mut c, libc::ECONNRESET);
        count_errno(&mut c, libc::EPIPE);
        count_errno(&mut c, libc::ETIMEDOUT);
        count_error(&mut c, &io::Error::from(io::ErrorKind::ConnectionReset));
        count_error(&mut c, &io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!((c.err_reset, c.err_pipe, c.err_other), (2, 2, 1));
    }

    #[test]
    fn source_pattern_is_i_mod_251() {
        for offset in [0u64, 1, 250, 251, 1 << 40] {
            let chunk = source_chunk(offset, 1000);
            assert_eq!(chunk.len(), 1000);
            for (i, b) in chunk.iter().enumerate() {
                assert_eq!(*b, source_byte(offset + i as u64));
            }
        }
        assert_eq!(source_chunk(7, usize::MAX).len(), SOURCE_CHUNK);
    }

    #[test]
    fn source_keys() {
        let mut v4 = [0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(SourceKey::from_sockaddr(&v4), Some(SourceKey::V4([127, 0, 0, 1])));
        assert_eq!(
            SourceKey::from_ip(&"127.0.0.1:9".parse().unwrap()),
            SourceKey::V4([127, 0, 0, 1]),
            "any port of one host is one source"
        );
        let unbound = (libc::AF_UNIX as u16).to_ne_bytes();
        assert_eq!(SourceKey::from_sockaddr(&unbound), None);
        assert_eq!(SourceKey::from_sockaddr(&[]), None);
        assert_eq!(SourceKey::from_sockaddr(&[1]), None);
        // The kernel's sockaddr_un and a path name the same source.
        let mut un = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        un.extend_from_slice(b"/tmp/c.sock\0");
        assert_eq!(SourceKey::from_sockaddr(&un), SourceKey::from_unix(Some("/tmp/c.sock".as_ref())));
        assert_eq!(SourceKey::from_unix(None), None);
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

        #[test]
        fn any_sockaddr_bytes_are_safe(name in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = SourceKey::from_sockaddr(&name);
        }
    }
}
