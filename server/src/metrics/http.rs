//! The HTTP side of `--metrics`: one thread serves every scrape at once (non-blocking,
//! mio) and answers `GET /metrics` and `HEAD /metrics` (the headers alone), anything else
//! with 404. Line ends may be CRLF or a bare LF.
//!
//! Clients are untrusted, and none may starve the others or cost more than a bound:
//! - a request head must be whole within [`REQUEST_DEADLINE`] of the connection, however
//!   slowly it trickles in, and is read up to [`MAX_REQUEST`] bytes at most;
//! - the answer must be taken within [`ANSWER_DEADLINE`];
//! - at most [`MAX_SCRAPERS`] connections are held. A new one past that evicts the oldest
//!   connection still sending its request head (or, if every held one is being answered,
//!   the oldest) instead of being refused: clients that hold partial requests make
//!   themselves the oldest, while a scrape sends its request at once;
//! - when the process is out of descriptors, the oldest connection still sending its
//!   request is closed to make room; with none, the accept is retried at the next wake (at
//!   most [`WAKE_EVERY`] later), since the edge-triggered listener would not say again.
//!
//! So the memory held is at most [`MAX_SCRAPERS`] × ([`MAX_REQUEST`] + one answer).

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Most connections held at once; a new one past it evicts the oldest.
pub const MAX_SCRAPERS: usize = 256;
/// How long a client has, from its connection, to send a whole request head.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// How long a client has, once its request is whole, to take the whole answer.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(2);
/// The most bytes of a request read; a head not ended by then is answered as it is.
pub const MAX_REQUEST: usize = 8192;
/// How often the thread wakes by itself, to notice the stop, the deadlines and a
/// deferred accept.
pub const WAKE_EVERY: Duration = Duration::from_millis(100);
/// Connections the kernel queues before they are accepted: a burst of connections from
/// clients that then say nothing should not make a scrape's connect wait for a SYN
/// retransmission.
const LISTEN_BACKLOG: i32 = 1024;

const LISTENER: Token = Token(usize::MAX);

/// Serves `GET /metrics` and `HEAD /metrics` on `addr` until `stop` is set, with `scrape`
/// writing the body; returns the bound address and the serving thread.
pub fn serve(
    addr: SocketAddr,
    scrape: impl Fn() -> String + Send + 'static,
    stop: Arc<AtomicBool>,
) -> io::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    // As std's TcpListener::bind: a restarted server may bind while old connections
    // linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    let std_listener: std::net::TcpListener = socket.into();
    let bound = std_listener.local_addr()?;
    let mut listener = TcpListener::from_std(std_listener);
    let poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let scrapes = Scrapes { poll, listener, conns: BTreeMap::new(), next: 0, accept_again: false };
    let thread = std::thread::Builder::new()
        .name("ringecho-metrics".into())
        .spawn(move || scrapes.run(&scrape, &stop))?;
    Ok((bound, thread))
}

/// One connection: the request read so far, then the answer being written.
struct Scrape {
    stream: TcpStream,
    request: Vec<u8>,
    /// Empty while the request is being read.
    answer: Vec<u8>,
    written: usize,
    /// When it is closed, answered or not.
    deadline: Instant,
}

/// Every connection held, on one thread: none waits for another.
struct Scrapes {
    poll: Poll,
    listener: TcpListener,
    /// By connection order (ids only grow), so the first is the oldest.
    conns: BTreeMap<u64, Scrape>,
    next: u64,
    /// An accept failed for want of descriptors or memory: try again at the next wake.
    accept_again: bool,
}

impl Scrapes {
    fn run(mut self, scrape: &dyn Fn() -> String, stop: &AtomicBool) {
        let mut events = Events::with_capacity(256);
        while !stop.load(Ordering::Acquire) {
            if self.poll.poll(&mut events, Some(WAKE_EVERY)).is_err() {
                std::thread::sleep(WAKE_EVERY);
                continue;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    Token(id) => self.progress(id as u64, scrape),
                }
            }
            if self.accept_again {
                self.accept();
            }
            let now = Instant::now();
            self.conns.retain(|_, c| c.deadline > now);
        }
    }

    fn accept(&mut self) {
        self.accept_again = false;
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                        && self.evict_reading() =>
                {
                    // Out of descriptors while clients hold partial requests: one of them
                    // makes room (each pass closes one, so this ends).
                    continue;
                }
                Err(_) => {
                    // Out of descriptors with nothing to evict, ENOMEM, ECONNABORTED, ...:
                    // not now, and not in a loop.
                    self.accept_again = true;
                    return;
                }
            };
            if self.conns.len() >= MAX_SCRAPERS {
                self.evict_oldest();
            }
            let id = self.next;
            self.next += 1;
            if self.poll.registry().register(&mut stream, Token(id as usize), Interest::READABLE).is_ok() {
                let deadline = Instant::now() + REQUEST_DEADLINE;
                let scrape = Scrape { stream, request: Vec::new(), answer: Vec::new(), written: 0, deadline };
                self.conns.insert(id, scrape);
            }
        }
    }

    /// Closes the oldest connection still sending its request, or else the oldest.
    fn evict_oldest(&mut self) {
        if !self.evict_reading() {
            self.conns.pop_first(); // dropping the stream closes it
        }
    }

    /// Closes the oldest connection still sending its request; false if there is none.
    fn evict_reading(&mut self) -> bool {
        let oldest = self.conns.iter().find(|(_, c)| c.answer.is_empty()).map(|(id, _)| *id);
        oldest.is_some_and(|id| self.conns.remove(&id).is_some())
    }

    /// Reads what the client sent; once the request head is whole, answers it. A scrape
    /// that fails or finishes is dropped (closing its connection).
    fn progress(&mut self, id: u64, scrape: &dyn Fn() -> String) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let done = if !c.answer.is_empty() {
            c.write().unwrap_or(true)
        } else {
            match c.read_request() {
                Ok(false) => false,
                Ok(true) => {
                    c.answer = respond(&c.request, scrape);
                    c.deadline = Instant::now() + ANSWER_DEADLINE;
                    let registry = self.poll.registry();
                    registry.reregister(&mut c.stream, Token(id as usize), Interest::WRITABLE).is_err()
                        || c.write().unwrap_or(true)
                }
                Err(_) => true,
            }
        };
        if done {
            self.conns.remove(&id);
        }
    }
}

impl Scrape {
    /// Reads what is there of the request; true once the head is whole (or the client
    /// has stopped sending, or [`MAX_REQUEST`] bytes came).
    fn read_request(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; 1024];
        loop {
            let room = MAX_REQUEST - self.request.len();
            if room == 0 {
                return Ok(true);
            }
            let want = room.min(buf.len());
            match self.stream.read(&mut buf[..want]) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    // The end of the head may straddle two reads: look from just before
                    // the new bytes.
                    let from = self.request.len().saturating_sub(2);
                    self.request.extend_from_slice(&buf[..n]);
                    if head_ends(&self.request[from..]) {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what it can of the answer; true once all of it is written.
    fn write(&mut self) -> io::Result<bool> {
        while self.written < self.answer.len() {
            match self.stream.write(&self.answer[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Whether `bytes` hold the empty line that ends a request head: CRLF CRLF, or bare LFs
/// (RFC 9112 lets a server take a bare LF as a line end), or a mix.
fn head_ends(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

/// The HTTP answer to `request` (its head, perhaps cut short), with `scrape` writing the
/// metrics.
fn respond(request: &[u8], scrape: &dyn Fn() -> String) -> Vec<u8> {
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let metrics = target == "/metrics" || target.starts_with("/metrics?");
    let (status, ctype, body) = match method {
        "GET" | "HEAD" if metrics => {
            ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", scrape())
        }
        _ => ("404 Not Found", "text/plain; charset=utf-8", "try GET /metrics\n".to_string()),
    };
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    // HEAD: the headers GET would have, the Content-Length included, and no body.
    if method != "HEAD" {
        answer.extend_from_slice(body.as_bytes());
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn answer(request: &str) -> String {
        String::from_utf8(respond(request.as_bytes(), &|| "m 1\n".to_string())).unwrap()
    }

    #[test]
    fn get_head_and_others() {
        let get = answer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(get.contains("\r\nContent-Length: 4\r\n") && get.ends_with("\r\n\r\nm 1\n"), "{get}");
        let head = answer("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Length: 4\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        let bare_lf = answer("GET /metrics?x=1 HTTP/1.1\nHost: x\n\n");
        assert!(bare_lf.starts_with("HTTP/1.1 200 OK\r\n") && bare_lf.ends_with("m 1\n"), "{bare_lf}");
        for other in ["GET / HTTP/1.1\r\n\r\n", "POST /metrics HTTP/1.1\r\n\r\n", "", "\r\n", "GET"] {
            assert!(answer(other).starts_with("HTTP/1.1 404 "), "{other:?}");
        }
    }

    #[test]
    fn head_ends_at_an_empty_line_of_either_kind() {
        assert!(head_ends(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(head_ends(b"GET / HTTP/1.1\nHost: x\n\n"));
        assert!(head_ends(b"GET / HTTP/1.1\r\nHost: x\n\r\n"));
        assert!(!head_ends(b"GET / HTTP/1.1\r\nHost: x\r\n"));
        assert!(!head_ends(b"GET / HTTP/1.1\r\n\rHost: x"));
    }

    proptest! {
        /// Any bytes: an answer, no panic; and the end of a head is found whichever
        /// read it straddles (as `read_request` looks from two bytes before the new ones).
        #[test]
        fn any_request_gets_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..256), cut in 0usize..256) {
            let a = respond(&bytes, &String::new);
            prop_assert!(a.starts_with(b"HTTP/1.1 "));
            let cut = cut.min(bytes.len());
            let split = head_ends(&bytes[..cut]) || head_ends(&bytes[cut.saturating_sub(2)..]);
            prop_assert_eq!(split, head_ends(&bytes));
        }
    }
}
