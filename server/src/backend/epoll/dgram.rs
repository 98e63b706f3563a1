//! Datagram listeners of the `epoll` backend: read each datagram into the worker's scratch
//! buffer (one byte larger than a pool buffer, so a datagram that fills it is known to be
//! too large), let [`crate::policy::Datagrams`] decide its fate, and answer with exactly
//! its own bytes.

use super::{Listener, Worker};
use crate::policy::{Datagrams, Received, SourceKey, Verdict};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Datagrams one listener handles per turn.
const DGRAM_BUDGET: usize = 64;

/// Where a datagram came from, to answer it.
enum Peer {
    Ip(SocketAddr),
    Path(PathBuf),
}

impl Worker<'_> {
    /// Reads datagrams until the socket is empty or the turn's budget is spent; answers
    /// each with exactly its own bytes (or drops and counts it).
    pub(super) fn datagrams(&mut self, index: usize) {
        let buffer_size = self.config().buffer_size as usize;
        for _ in 0..DGRAM_BUDGET {
            let received = match &self.listeners[index] {
                Listener::Udp(s, _) => {
                    s.recv_from(&mut self.scratch).map(|(n, from)| (n, Some(Peer::Ip(from))))
                }
                Listener::UnixGram(s, _) => s
                    .recv_from(&mut self.scratch)
                    .map(|(n, from)| (n, from.as_pathname().map(|p| Peer::Path(p.to_owned())))),
                _ => return,
            };
            let (n, peer) = match received {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.counters.err_other += 1;
                    return;
                }
            };
            let mode = match &self.listeners[index] {
                Listener::Udp(_, m) | Listener::UnixGram(_, m) => *m,
                _ => return,
            };
            let source = match &peer {
                Some(Peer::Ip(addr)) => Some(SourceKey::from_ip(addr)),
                Some(Peer::Path(path)) => SourceKey::from_unix(Some(path)),
                None => None,
            };
            let d = Received { len: n, truncated: n > buffer_size, source };
            if self.rules.judge(mode, d, self.now, &mut self.counters) != Verdict::Reply {
                continue;
            }
            let data = &self.scratch[..n];
            let sent = match (&self.listeners[index], &peer) {
                (Listener::Udp(s, _), Some(Peer::Ip(to))) => s.send_to(data, to),
                (Listener::UnixGram(s, _), Some(Peer::Path(to))) => s.send_to(data, to),
                _ => Err(io::ErrorKind::InvalidInput.into()),
            };
            Datagrams::replied(&mut self.counters, sent);
        }
        // Budget spent with datagrams possibly left: edge-triggered, so come back.
        self.requeue_listener(index);
    }

    fn requeue_listener(&mut self, index: usize) {
        // Re-registering re-arms the edge: if data is still there, an event follows.
        let raw = self.listeners[index].raw_fd();
        let _ = self.poll.registry().reregister(&mut SourceFd(&raw), Token(index), Interest::READABLE);
    }
}
