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

/// A datagram as received, before the rules decide its fate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Payload bytes received.
    pub len: usize,
    /// It did not fit the buffer (or could not be read whole): never echoed in part.
    pub truncated: bool,
    /// Who to answer; `None` when nobody can be (an unbound Unix sender).
    pub source: Option<SourceKey>,
}

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it back, exactly as received; report the send with [`Datagrams::replied`].
    Reply,
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
}

impl Datagrams {
    /// The rules for `config` (the rate limiter: `--udp-rate-limit` per second per source,
    /// a tenth of a second of burst, a bounded table).
    pub fn new(config: &Config, now: Instant) -> Datagrams {
        let limiter = config
            .udp_rate_limit
            .map(|pps| RateLimiter::new(pps, (pps / 10).max(1), RATE_LIMIT_SOURCES, now));
        Datagrams { limiter }
    }

    /// Decides the fate of a datagram received on a listener in `mode` and counts it; a
    /// `Reply` is counted once its send completes ([`Datagrams::replied`]).
    pub fn judge(&mut self, mode: Mode, d: Received, now: Instant, c: &mut Counters) -> Verdict {
        c.dgrams_in += 1;
        if d.truncated {
            c.dgram_drop_truncated += 1;
            return Verdict::Truncated;
        }
        c.bytes_in += d.len as u64;
        if !keeps_received(mode) {
            c.dgrams_discarded += 1;
            return Verdict::Discard;
        }
        let Some(source) = d.source else {
            c.dgram_drop_unanswerable += 1;
            return Verdict::Unanswerable;
        };
        if let Some(limiter) = &mut self.limiter {
            if !limiter.allow(source, now) {
                c.dgram_drop_rate_limited += 1;
                return Verdict::RateLimited;
            }
        }
        Verdict::Reply
    }

    /// Counts the completed send of a reply: `Ok(bytes)` or the error the kernel gave.
    pub fn replied(c: &mut Counters, sent: Result<usize, io::Error>) {
        match sent {
            Ok(n) => {
                c.dgrams_echoed += 1;
                c.bytes_out += n as u64;
            }
            Err(_) => c.dgram_drop_send_error += 1,
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
        let mut d = Datagrams::new(&config, now);
        let mut c = Counters::default();
        let from = Some(SourceKey::V4([1, 2, 3, 4]));
        let whole = Received { len: 10, truncated: false, source: from };
        assert_eq!(d.judge(Mode::Echo, whole, now, &mut c), Verdict::Reply, "the burst");
        assert_eq!(d.judge(Mode::Echo, whole, now, &mut c), Verdict::RateLimited);
        assert_eq!(d.judge(Mode::Discard, whole, now, &mut c), Verdict::Discard);
        let big = Received { truncated: true, ..whole };
        assert_eq!(d.judge(Mode::Echo, big, now, &mut c), Verdict::Truncated);
        let anon = Received { source: None, ..whole };
        assert_eq!(d.judge(Mode::Echo, anon, now, &mut c), Verdict::Unanswerable);
        Datagrams::replied(&mut c, Ok(10));
        assert_eq!(c.dgrams_in, 5);
        assert_eq!(accounted(&c), 5);
        assert_eq!(c.bytes_in, 40, "every datagram received whole, rate-limited or not");
    }

    proptest! {
        /// Whatever arrives, once every reply has completed the datagram counters add up.
        #[test]
        fn datagram_counters_add_up(dgrams in proptest::collection::vec(
            (0usize..70_000, any::<bool>(), proptest::option::of(0u8..4), any::<bool>(), any::<bool>()), 0..300)) {
            let now = Instant::now();
            let config = Config { udp_rate_limit: Some(50), ..Config::default() };
            let mut rules = Datagrams::new(&config, now);
            let mut c = Counters::default();
            for (len, truncated, source, discard, send_ok) in dgrams {
                let mode = if discard { Mode::Discard } else { Mode::Echo };
                let d = Received { len, truncated, source: source.map(|s| SourceKey::V4([s, 0, 0, 1])) };
                if rules.judge(mode, d, now, &mut c) == Verdict::Reply {
                    let sent = if send_ok { Ok(len) } else { Err(io::Error::from_raw_os_error(libc::ENOBUFS)) };
                    Datagrams::replied(&mut c, sent);
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
