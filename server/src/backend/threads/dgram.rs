//! Datagram listeners of the `threads` backend: one thread per listener receives each
//! datagram, lets [`crate::policy::Datagrams`] decide its fate, and answers with exactly
//! its own bytes.

use super::state::{FLUSH_EVERY, State, timed_out};
use crate::config::Mode;
use crate::policy::{Datagrams, Received, SourceKey, Verdict};
use crate::stats::Counters;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Instant;

/// Where a datagram came from: an IP address, or a Unix path; `None` for an unbound Unix
/// sender, which cannot be answered.
enum Peer {
    Ip(SocketAddr),
    Path(PathBuf),
}

impl Peer {
    fn key(peer: &Option<Peer>) -> Option<SourceKey> {
        match peer {
            Some(Peer::Ip(addr)) => Some(SourceKey::from_ip(addr)),
            Some(Peer::Path(path)) => SourceKey::from_unix(Some(path)),
            None => None,
        }
    }
}

pub(super) fn udp_loop(state: &State, mode: Mode, sock: &UdpSocket) {
    dgram_loop(
        state,
        mode,
        |buf| sock.recv_from(buf).map(|(n, from)| (n, Some(Peer::Ip(from)))),
        |data, to| match to {
            Peer::Ip(addr) => send_now(sock, data, &(*addr).into()),
            Peer::Path(_) => Err(io::ErrorKind::InvalidInput.into()),
        },
    );
}

pub(super) fn unixgram_loop(state: &State, mode: Mode, sock: &UnixDatagram) {
    dgram_loop(
        state,
        mode,
        |buf| sock.recv_from(buf).map(|(n, from)| (n, from.as_pathname().map(|p| Peer::Path(p.to_owned())))),
        |data, to| match to {
            Peer::Path(path) => send_now(sock, data, &socket2::SockAddr::unix(path)?),
            Peer::Ip(_) => Err(io::ErrorKind::InvalidInput.into()),
        },
    );
}

/// Sends a reply if it can go at once; a peer whose queue is full (a Unix datagram peer
/// that never reads) gets `WouldBlock`, and the reply is dropped and counted, instead of
/// holding this listener's only thread.
fn send_now(sock: impl std::os::fd::AsFd, data: &[u8], to: &socket2::SockAddr) -> io::Result<usize> {
    socket2::SockRef::from(&sock).send_to_with_flags(data, to, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
}

/// Receives datagrams until shutdown and answers each with exactly its own bytes (or
/// drops and counts it), whatever the socket family.
fn dgram_loop(
    state: &State,
    mode: Mode,
    mut recv: impl FnMut(&mut [u8]) -> io::Result<(usize, Option<Peer>)>,
    send: impl Fn(&[u8], &Peer) -> io::Result<usize>,
) {
    let capacity = state.shared.dgram_capacity as usize;
    // One byte more than the largest datagram echoed: a datagram that fills it was too
    // big.
    let mut buf = vec![0u8; capacity + 1];
    let mut local = Counters::default();
    let mut rules = Datagrams::new(&state.shared.config, capacity, Instant::now());
    let mut ops = 0u32;
    while !state.stopping() {
        ops += 1;
        if ops % FLUSH_EVERY == 0 {
            state.flush(&mut local);
        }
        let (n, peer) = match recv(&mut buf) {
            Ok(r) => r,
            Err(e) if timed_out(&e) => {
                state.flush(&mut local);
                continue;
            }
            Err(_) => {
                // A receive that keeps failing must not spin.
                local.err_other += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        let d = Received::single(n, n, Peer::key(&peer));
        let Verdict::Reply(echo) = rules.judge(mode, d, Instant::now(), &mut local) else {
            continue;
        };
        let sent = match &peer {
            Some(to) => send(&buf[..echo.bytes], to),
            None => Err(io::ErrorKind::InvalidInput.into()),
        };
        Datagrams::replied(&mut local, echo.datagrams, sent);
    }
    state.flush(&mut local);
}
