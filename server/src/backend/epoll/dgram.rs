//! Datagram listeners of the `epoll` backend: read each datagram (or UDP GRO train) into
//! the worker's scratch buffer (one byte larger than the largest datagram echoed, so one
//! that fills it is known to be too large), let [`crate::policy::Datagrams`] decide its
//! fate, and answer with exactly its own bytes — a train with one send cut into the same
//! segments (UDP_SEGMENT).

use super::{Listener, Worker};
use crate::gso;
use crate::policy::{Datagrams, Received, SourceKey, Verdict};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

/// Datagrams (or trains) one listener handles per turn.
const DGRAM_BUDGET: usize = 64;

impl Worker<'_> {
    /// Reads datagrams until the socket is empty or the turn's budget is spent; answers
    /// each with exactly its own bytes (or drops and counts it).
    pub(super) fn datagrams(&mut self, index: usize) {
        for _ in 0..DGRAM_BUDGET {
            let handled = match &self.listeners[index] {
                Listener::Udp(..) => self.udp_datagram(index),
                Listener::UnixGram(..) => self.unix_datagram(index),
                _ => return,
            };
            match handled {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.counters.err_other += 1;
                    return;
                }
            }
        }
        // Budget spent with datagrams possibly left: edge-triggered, so come back.
        self.requeue_listener(index);
    }

    fn udp_datagram(&mut self, index: usize) -> io::Result<()> {
        let Listener::Udp(sock, mode) = &self.listeners[index] else { return Ok(()) };
        // SAFETY: zeroed is a valid (empty) sockaddr_storage.
        let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let r = gso::recvmsg(sock.as_fd(), &mut self.scratch, &mut name)?;
        let from = gso::sockaddr_bytes(&name, r.namelen);
        let source = SourceKey::from_sockaddr(from);
        let d = Received { len: r.len, captured: r.captured, segment: r.segment, source };
        if let Verdict::Reply(echo) = self.rules.judge(*mode, d, self.now, &mut self.counters) {
            let sent = gso::sendmsg(sock.as_fd(), &self.scratch[..echo.bytes], from, echo.segment);
            Datagrams::replied(&mut self.counters, echo.datagrams, sent);
        }
        Ok(())
    }

    fn unix_datagram(&mut self, index: usize) -> io::Result<()> {
        let Listener::UnixGram(sock, mode) = &self.listeners[index] else { return Ok(()) };
        let (n, from) = sock.recv_from(&mut self.scratch)?;
        let path: Option<PathBuf> = from.as_pathname().map(|p| p.to_owned());
        let d = Received::single(n, n, SourceKey::from_unix(path.as_deref()));
        if let Verdict::Reply(echo) = self.rules.judge(*mode, d, self.now, &mut self.counters) {
            let sent = match &path {
                Some(to) => sock.send_to(&self.scratch[..echo.bytes], to),
                None => Err(io::ErrorKind::InvalidInput.into()),
            };
            Datagrams::replied(&mut self.counters, echo.datagrams, sent);
        }
        Ok(())
    }

    fn requeue_listener(&mut self, index: usize) {
        // Re-registering re-arms the edge: if data is still there, an event follows.
        let raw = self.listeners[index].raw_fd();
        let _ = self.poll.registry().reregister(&mut SourceFd(&raw), Token(index), Interest::READABLE);
    }
}
