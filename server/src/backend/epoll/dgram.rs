//! Datagram listeners of the `epoll` backend: read each datagram (or UDP GRO train) into
//! a scratch buffer (one byte larger than the largest datagram echoed, so one that fills
//! it is known to be too large), let [`crate::policy::Datagrams`] decide its fate, and
//! answer with exactly its own bytes — a train with one send cut into the same segments
//! (UDP_SEGMENT). [`DgramListeners`] owns the sockets, the scratch buffer and the rules;
//! the worker lends it a [`Ctx`] per call.

use super::ctx::{Ctx, Event};
use crate::backend::contract::{self, Family, Transport};
use crate::config::{Config, Mode};
use crate::gso;
use crate::policy::{Datagrams, Received, SourceKey, Verdict};
use mio::Interest;
use mio::unix::SourceFd;
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// Datagrams (or trains) one listener handles per turn.
const DGRAM_BUDGET: usize = 64;

/// A datagram listener: a non-blocking copy of a bound socket.
enum Socket {
    Udp(UdpSocket),
    UnixGram(UnixDatagram),
}

impl Socket {
    fn raw_fd(&self) -> RawFd {
        match self {
            Socket::Udp(s) => s.as_raw_fd(),
            Socket::UnixGram(s) => s.as_raw_fd(),
        }
    }
}

/// A worker's datagram listeners, the buffer each datagram is read into, and the rules.
pub(super) struct DgramListeners {
    /// Indexed as [`Event::DgramListener`] names them; empty once shutdown began.
    listeners: Vec<(Socket, Mode)>,
    /// One datagram or GRO train, received whole or known too large (one byte more than
    /// the largest datagram echoed).
    scratch: Vec<u8>,
    rules: Datagrams,
}

impl DgramListeners {
    /// The datagram listeners among `listeners`, registered with `ctx`'s poll, echoing
    /// datagrams of up to `capacity` bytes under the rules for `config`.
    pub fn new(
        listeners: &[contract::Listener],
        config: &Config,
        capacity: u32,
        ctx: &Ctx,
    ) -> io::Result<DgramListeners> {
        let mut own = Vec::new();
        for l in listeners.iter().filter(|l| l.transport == Transport::Datagram) {
            let fd: OwnedFd = l.fd.try_clone()?;
            let socket = match l.family {
                Family::Unix => {
                    let unix = UnixDatagram::from(fd);
                    unix.set_nonblocking(true)?;
                    Socket::UnixGram(unix)
                }
                Family::Inet4 | Family::Inet6 => {
                    let udp = UdpSocket::from(fd);
                    udp.set_nonblocking(true)?;
                    Socket::Udp(udp)
                }
            };
            let token = Event::DgramListener(own.len()).token();
            ctx.registry().register(&mut SourceFd(&socket.raw_fd()), token, Interest::READABLE)?;
            own.push((socket, l.mode));
        }
        // Only a worker with datagram listeners needs the buffer.
        let scratch = if own.is_empty() { Vec::new() } else { vec![0u8; capacity as usize + 1] };
        Ok(DgramListeners {
            listeners: own,
            scratch,
            rules: Datagrams::new(config, capacity as usize, ctx.now),
        })
    }

    /// Shutdown: stops receiving.
    pub fn stop_receiving(&mut self, ctx: &mut Ctx) {
        for (s, _) in std::mem::take(&mut self.listeners) {
            let _ = ctx.registry().deregister(&mut SourceFd(&s.raw_fd()));
        }
    }

    /// Reads datagrams until the socket is empty or the turn's budget is spent; answers
    /// each with exactly its own bytes (or drops and counts it).
    pub fn receive(&mut self, ctx: &mut Ctx, index: usize) {
        if index >= self.listeners.len() {
            return;
        }
        for _ in 0..DGRAM_BUDGET {
            match self.one(ctx, index) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    ctx.counters.err_other += 1;
                    return;
                }
            }
        }
        // Budget spent with datagrams possibly left: edge-triggered, so come back.
        // Re-registering re-arms the edge: if data is still there, an event follows.
        let raw = self.listeners[index].0.raw_fd();
        let token = Event::DgramListener(index).token();
        let _ = ctx.registry().reregister(&mut SourceFd(&raw), token, Interest::READABLE);
    }

    fn one(&mut self, ctx: &mut Ctx, index: usize) -> io::Result<()> {
        let (socket, mode) = &self.listeners[index];
        let (c, now) = (&mut ctx.counters, ctx.now);
        match socket {
            Socket::Udp(sock) => {
                // SAFETY: zeroed is a valid (empty) sockaddr_storage.
                let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                let r = gso::recvmsg(sock.as_fd(), &mut self.scratch, &mut name)?;
                let from = gso::sockaddr_bytes(&name, r.namelen);
                let source = SourceKey::from_sockaddr(from);
                let d = Received { len: r.len, captured: r.captured, segment: r.segment, source };
                if let Verdict::Reply(echo) = self.rules.judge(*mode, d, now, c) {
                    let sent = gso::sendmsg(sock.as_fd(), &self.scratch[..echo.bytes], from, echo.segment);
                    Datagrams::replied(c, echo.datagrams, sent);
                }
            }
            Socket::UnixGram(sock) => {
                let (n, from) = sock.recv_from(&mut self.scratch)?;
                let path: Option<PathBuf> = from.as_pathname().map(|p| p.to_owned());
                let d = Received::single(n, n, SourceKey::from_unix(path.as_deref()));
                if let Verdict::Reply(echo) = self.rules.judge(*mode, d, now, c) {
                    let sent = match &path {
                        Some(to) => sock.send_to(&self.scratch[..echo.bytes], to),
                        None => Err(io::ErrorKind::InvalidInput.into()),
                    };
                    Datagrams::replied(c, echo.datagrams, sent);
                }
            }
        }
        Ok(())
    }
}
