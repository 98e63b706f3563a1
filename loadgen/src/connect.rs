//! How ringload opens a connection: without blocking, many at once. A batch's connects
//! are started together ([`WINDOW`] in flight at a time) and awaited together (epoll,
//! through mio) until each is made or refused, its deadline passes, or the stop flag
//! (Ctrl-C) is set. The load's connections (TCP, Unix stream, UDP, Unix datagram) and
//! `ab`'s start-up probe all connect here.
//!
//! Invariant: nothing here waits more than one [`TICK`] past a connect's deadline or past
//! the stop flag being set. A connect not made by its deadline is a timeout (`TimedOut`),
//! whatever the socket's family: a Unix stream listener whose backlog is full refuses a
//! non-blocking connect at once (EAGAIN) rather than waiting, so such a connect is tried
//! again every tick until it is made or its deadline passes. A socket handed back made is
//! blocking again, as it was before.

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::{SockAddr, Socket};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest one wait lasts: the stop flag, deadlines and Unix retries are looked at
/// least this often.
pub const TICK: Duration = Duration::from_millis(10);

/// Most connects in flight at once in a batch: a target's listen backlog sees bursts of
/// this size, not a whole batch of thousands at once.
pub const WINDOW: usize = 256;

/// A socket, set up and not yet connected, where it is to connect, and what its caller
/// keeps with it until it is made.
pub struct Dial<K> {
    /// The socket (blocking or not: it is made non-blocking to connect).
    pub socket: Socket,
    /// Where it connects.
    pub to: SockAddr,
    /// The caller's, handed back with the socket.
    pub keep: K,
}

/// What became of one connect.
pub enum Outcome<K> {
    /// Connected; `took` from its `connect` call to the moment it was seen made.
    Made {
        /// The socket, connected and blocking.
        socket: Socket,
        /// The caller's part of the dial.
        keep: K,
        /// How long the connect took.
        took: Duration,
    },
    /// It failed (refused, unreachable, no socket file, timed out, …), or the dial could
    /// not be made.
    Failed(io::Error),
    /// The stop flag was set before it was made: not tried, or given up.
    Stopped,
}

/// When each connect of a batch gives up: `timeout` after it started, and never after
/// `deadline`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--connect-timeout`.
    pub timeout: Duration,
    /// The end of the run (what `--max-duration` leaves).
    pub deadline: Instant,
}

/// One connect in flight.
struct Pending<K> {
    index: usize,
    socket: Socket,
    to: SockAddr,
    keep: K,
    started: Instant,
    until: Instant,
    /// A Unix stream listener's backlog was full: connect again each tick (not polled).
    retry: bool,
}

/// Connects dials `0..count`, making each with `dial(i)` only when its turn comes, and
/// reports each outcome through `done(i, outcome)` as soon as it is known (every index
/// exactly once, in no particular order).
pub fn all<K>(
    count: usize,
    mut dial: impl FnMut(usize) -> io::Result<Dial<K>>,
    limits: Limits,
    stop: &AtomicBool,
    mut done: impl FnMut(usize, Outcome<K>),
) {
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            (0..count).for_each(|i| done(i, Outcome::Failed(copy(&e))));
            return;
        }
    };
    let mut batch =
        Batch { poll, slots: (0..WINDOW.min(count)).map(|_| None).collect(), live: 0, next: 0, count };
    let mut events = Events::with_capacity(WINDOW);
    loop {
        if stop.load(Ordering::Relaxed) {
            for p in batch.slots.iter_mut().filter_map(Option::take) {
                done(p.index, Outcome::Stopped);
            }
            (batch.next..count).for_each(|i| done(i, Outcome::Stopped));
            return;
        }
        batch.fill(&mut dial, limits, &mut done);
        if batch.live == 0 && batch.next >= count {
            return;
        }
        batch.wait(&mut events, &mut done);
        batch.settle(&mut done);
    }
}

/// A batch's connects in flight: a slot each (its epoll token), at most [`WINDOW`].
struct Batch<K> {
    poll: Poll,
    slots: Vec<Option<Pending<K>>>,
    /// Slots in use.
    live: usize,
    /// The next dial to start, of `count`.
    next: usize,
    count: usize,
}

impl<K> Batch<K> {
    /// Starts connects while the window has room.
    fn fill(
        &mut self,
        dial: &mut impl FnMut(usize) -> io::Result<Dial<K>>,
        limits: Limits,
        done: &mut impl FnMut(usize, Outcome<K>),
    ) {
        while self.live < self.slots.len() && self.next < self.count {
            let (index, started) = (self.next, Instant::now());
            self.next += 1;
            let until = (started + limits.timeout).min(limits.deadline);
            if started >= until {
                done(index, Outcome::Failed(timed_out(false)));
                continue;
            }
            let (socket, to, keep) = match dial(index) {
                Ok(d) => (d.socket, d.to, d.keep),
                Err(e) => {
                    done(index, Outcome::Failed(e));
                    continue;
                }
            };
            let slot = self.slots.iter().position(Option::is_none).unwrap_or(0);
            let pending = Pending { index, socket, to, keep, started, until, retry: false };
            match start(pending, &self.poll, slot) {
                Step::Wait(p) => {
                    self.slots[slot] = Some(p);
                    self.live += 1;
                }
                Step::Done(index, outcome) => done(index, outcome),
            }
        }
    }

    /// Waits a tick at most (less when a connect's time is up sooner), then settles the
    /// connects epoll reported on.
    fn wait(&mut self, events: &mut Events, done: &mut impl FnMut(usize, Outcome<K>)) {
        let now = Instant::now();
        let soonest = self.slots.iter().flatten().map(|p| p.until).min().unwrap_or(now);
        let wait = soonest.saturating_duration_since(now).min(TICK);
        if let Err(e) = self.poll.poll(events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                // The wait itself failed: every connect in flight fails with it.
                for p in self.slots.iter_mut().filter_map(Option::take) {
                    done(p.index, Outcome::Failed(copy(&e)));
                }
                self.live = 0;
            }
            return;
        }
        for event in events.iter() {
            let Some(p) = self.slots.get_mut(event.token().0).and_then(Option::take) else { continue };
            self.live -= 1;
            let _ = self.poll.registry().deregister(&mut SourceFd(&p.socket.as_raw_fd()));
            let (index, outcome) = finish(p, event.is_writable());
            done(index, outcome);
        }
    }

    /// Tries the Unix connects refused for a full backlog again; times out whatever is
    /// past its time.
    fn settle(&mut self, done: &mut impl FnMut(usize, Outcome<K>)) {
        let now = Instant::now();
        for slot in &mut self.slots {
            let Some(p) = slot.take_if(|p| p.retry || now >= p.until) else { continue };
            match again(p, now) {
                Step::Wait(p) => *slot = Some(p),
                Step::Done(index, outcome) => {
                    self.live -= 1;
                    done(index, outcome);
                }
            }
        }
    }
}

/// What starting (or finishing) a connect came to.
enum Step<K> {
    /// In flight: wait for it.
    Wait(Pending<K>),
    /// Known already.
    Done(usize, Outcome<K>),
}

/// Starts `p`'s connect; an in-progress one is registered for writability as `slot`.
fn start<K>(mut p: Pending<K>, poll: &Poll, slot: usize) -> Step<K> {
    if let Err(e) = p.socket.set_nonblocking(true) {
        return Step::Done(p.index, Outcome::Failed(e));
    }
    match p.socket.connect(&p.to) {
        Ok(()) => Step::Done(p.index, made(p)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) || e.kind() == io::ErrorKind::Interrupted => {
            let fd = p.socket.as_raw_fd();
            match poll.registry().register(&mut SourceFd(&fd), Token(slot), Interest::WRITABLE) {
                Ok(()) => Step::Wait(p),
                Err(e) => Step::Done(p.index, Outcome::Failed(e)),
            }
        }
        // A Unix stream listener with a full backlog.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            p.retry = true;
            Step::Wait(p)
        }
        Err(e) => Step::Done(p.index, Outcome::Failed(e)),
    }
}

/// A Unix connect refused for a full backlog, tried again; any connect past its time,
/// timed out.
fn again<K>(p: Pending<K>, now: Instant) -> Step<K> {
    if p.retry {
        match p.socket.connect(&p.to) {
            Ok(()) => return Step::Done(p.index, made(p)),
            Err(e) if e.raw_os_error() == Some(libc::EISCONN) => return Step::Done(p.index, made(p)),
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                return Step::Done(p.index, Outcome::Failed(e));
            }
            Err(_) => {}
        }
    }
    if now >= p.until { Step::Done(p.index, Outcome::Failed(timed_out(p.retry))) } else { Step::Wait(p) }
}

/// The outcome of a connect epoll reported on: the socket's pending error, else made.
fn finish<K>(p: Pending<K>, writable: bool) -> (usize, Outcome<K>) {
    let index = p.index;
    let outcome = match p.socket.take_error() {
        Ok(Some(e)) | Err(e) => Outcome::Failed(e),
        Ok(None) if writable => made(p),
        // Hung up without an error to say why.
        Ok(None) => Outcome::Failed(io::Error::from(io::ErrorKind::ConnectionAborted)),
    };
    (index, outcome)
}

/// `p` made: blocking again, and how long it took.
fn made<K>(p: Pending<K>) -> Outcome<K> {
    let took = p.started.elapsed();
    match p.socket.set_nonblocking(false) {
        Ok(()) => Outcome::Made { socket: p.socket, keep: p.keep, took },
        Err(e) => Outcome::Failed(e),
    }
}

/// A connect that ran out of time; `backlog` when a Unix listener's backlog was full all
/// along.
fn timed_out(backlog: bool) -> io::Error {
    let why = if backlog {
        "connect timed out: the listener's backlog stayed full (it accepts nothing)"
    } else {
        "connect timed out"
    };
    io::Error::new(io::ErrorKind::TimedOut, why)
}

/// The same error again (io::Error is not Clone).
fn copy(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// One blocking connect to `to` of a stream socket, giving up after `timeout`: whether it
/// was made (a probe; the connection is closed at once).
pub fn probe(to: &SockAddr, timeout: Duration) -> bool {
    let limits = Limits { timeout, deadline: Instant::now() + timeout };
    let mut ok = false;
    let dial = |_| {
        Ok(Dial { socket: Socket::new(to.domain(), socket2::Type::STREAM, None)?, to: to.clone(), keep: () })
    };
    all(1, dial, limits, &AtomicBool::new(false), |_, o| ok = matches!(o, Outcome::Made { .. }));
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn limits(timeout: Duration) -> Limits {
        Limits { timeout, deadline: Instant::now() + Duration::from_secs(60) }
    }

    /// Every index is reported once; the made sockets are connected and blocking.
    #[test]
    fn a_batch_connects_and_reports_each_once() {
        // A backlog with room for the whole batch: nothing accepts.
        let listener = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener.bind(&SockAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))).unwrap();
        listener.listen(1024).unwrap();
        let to = listener.local_addr().unwrap();
        let n = WINDOW + 10;
        let mut seen = vec![0; n];
        let mut made = Vec::new();
        let dial = |_| {
            let socket = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            Ok(Dial { socket, to: to.clone(), keep: 7 })
        };
        all(n, dial, limits(Duration::from_secs(5)), &AtomicBool::new(false), |i, o| {
            seen[i] += 1;
            if let Outcome::Made { socket, keep, .. } = o {
                assert_eq!(keep, 7);
                made.push(socket);
            }
        });
        assert!(seen.iter().all(|&s| s == 1), "{seen:?}");
        assert_eq!(made.len(), n);
        assert!(made.iter().all(|s| !s.nonblocking().unwrap() && s.peer_addr().is_ok()));
    }

    /// A refused connect fails with the kernel's error; a dial that cannot be made, with its own.
    #[test]
    fn refusals_are_the_kernels_errors() {
        let to = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            SockAddr::from(l.local_addr().unwrap())
        };
        let mut errors = Vec::new();
        let dial = |i| {
            if i == 1 {
                return Err(io::Error::from_raw_os_error(libc::EMFILE));
            }
            let socket = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            Ok(Dial { socket, to: to.clone(), keep: () })
        };
        all(2, dial, limits(Duration::from_secs(5)), &AtomicBool::new(false), |i, o| match o {
            Outcome::Failed(e) => errors.push((i, e.raw_os_error())),
            _ => panic!("{i} was made"),
        });
        errors.sort();
        assert_eq!(errors, [(0, Some(libc::ECONNREFUSED)), (1, Some(libc::EMFILE))]);
        assert!(!probe(&to, Duration::from_millis(200)));
    }

    /// A Unix listener whose backlog is full and that never accepts: every connect times
    /// out together, at the timeout, not one after another; the stop flag ends the wait.
    #[test]
    fn a_full_unix_backlog_times_out_and_a_stop_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sock");
        let listener = Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        let to = SockAddr::unix(&path).unwrap();
        listener.bind(&to).unwrap();
        listener.listen(0).unwrap();
        let mut held = Vec::new();
        loop {
            let s = Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            match s.connect(&to) {
                Ok(()) => held.push(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            assert!(held.len() < 100, "the backlog never filled");
        }
        assert!(!probe(&to, Duration::from_millis(50)), "the backlog is full");
        let unix = || Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None);
        let dial = |_| Ok(Dial { socket: unix()?, to: to.clone(), keep: () });
        let t0 = Instant::now();
        let mut timeouts = 0;
        all(8, dial, limits(Duration::from_millis(300)), &AtomicBool::new(false), |_, o| {
            if let Outcome::Failed(e) = o {
                assert!(e.to_string().contains("backlog stayed full"), "{e}");
                timeouts += usize::from(e.kind() == io::ErrorKind::TimedOut);
            }
        });
        let took = t0.elapsed();
        assert_eq!(timeouts, 8);
        assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(1500), "{took:?}");
        // The deadline cuts the timeout short.
        let t0 = Instant::now();
        let cut = Limits { timeout: Duration::from_secs(30), deadline: t0 + Duration::from_millis(100) };
        all(2, dial, cut, &AtomicBool::new(false), |_, o| assert!(matches!(o, Outcome::Failed(_))));
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        // A stop flag already set: nothing is tried.
        let mut stopped = 0;
        all(3, dial, limits(Duration::from_secs(30)), &AtomicBool::new(true), |_, o| {
            stopped += usize::from(matches!(o, Outcome::Stopped));
        });
        assert_eq!(stopped, 3);
    }
}
