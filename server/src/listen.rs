//! Binding the configured listeners before any worker starts, so that an address in use
//! or a bad path fails `Server::start` synchronously. TCP and UDP get one SO_REUSEPORT
//! socket per worker (the kernel spreads connections and datagrams over them); a Unix
//! socket is one socket that every worker serves.

use crate::backend::contract::{Family, Listener, Transport};
use crate::config::{Endpoint, Listen, MAX_UDP4_PAYLOAD, MAX_UDP6_PAYLOAD, Mode};
use crate::error::StartError;
use socket2::{Domain, Socket, Type};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Listen backlog; the kernel caps it at net.core.somaxconn.
const BACKLOG: i32 = 4096;

/// A bound listening address, as printed at start-up (`listening tcp 127.0.0.1:40123`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAddr {
    /// TCP, with the port actually bound.
    Tcp(SocketAddr),
    /// A Unix stream socket.
    Unix(PathBuf),
    /// UDP, with the port actually bound.
    Udp(SocketAddr),
    /// A Unix datagram socket.
    UnixGram(PathBuf),
}

impl fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundAddr::Tcp(a) => write!(f, "tcp {a}"),
            BoundAddr::Unix(p) => write!(f, "unix {}", p.display()),
            BoundAddr::Udp(a) => write!(f, "udp {a}"),
            BoundAddr::UnixGram(p) => write!(f, "unixgram {}", p.display()),
        }
    }
}

/// Every configured listener, bound.
pub(crate) struct Bound {
    /// `per_worker[w]`: the sockets worker `w` serves.
    pub per_worker: Vec<Vec<Listener>>,
    /// The bound addresses with their modes, in configuration order.
    pub addrs: Vec<(BoundAddr, Mode)>,
    /// For each address, the largest datagram a peer can send it (`None` for a stream).
    pub largest_datagram: Vec<Option<u32>>,
    /// Unix socket files this server created (removed when it stops).
    pub unix_paths: Vec<PathBuf>,
}

impl Bound {
    /// The largest datagram any datagram listener can be sent; `None` without one.
    pub fn largest_datagram(&self) -> Option<u32> {
        self.largest_datagram.iter().flatten().copied().max()
    }
}

/// Binds every endpoint for `workers` workers, with UDP_GRO on UDP sockets when `gro`
/// (where the kernel refuses it, the socket goes without), and with receive stamps on TCP
/// listeners when `stamps` (`--timestamps`; set before `listen`, so no connection is
/// accepted without them). On failure, the socket files this call created are removed
/// again.
pub(crate) fn bind_all(
    endpoints: &[Endpoint],
    workers: usize,
    gro: bool,
    stamps: bool,
) -> Result<Bound, StartError> {
    let mut bound = Bound {
        per_worker: Vec::new(),
        addrs: Vec::new(),
        largest_datagram: Vec::new(),
        unix_paths: Vec::new(),
    };
    match bind_into(endpoints, workers, (gro, stamps), &mut bound) {
        Ok(()) => Ok(bound),
        Err(e) => {
            for path in &bound.unix_paths {
                let _ = std::fs::remove_file(path);
            }
            Err(e)
        }
    }
}

fn bind_into(
    endpoints: &[Endpoint],
    workers: usize,
    (gro, stamps): (bool, bool),
    bound: &mut Bound,
) -> Result<(), StartError> {
    *bound = Bound {
        per_worker: (0..workers).map(|_| Vec::new()).collect(),
        addrs: Vec::new(),
        largest_datagram: Vec::new(),
        unix_paths: Vec::new(),
    };
    for endpoint in endpoints {
        let mode = endpoint.mode;
        let listen_err = |error| StartError::Listen { addr: describe(&endpoint.listen), error };
        let transport = if endpoint.listen.is_datagram() { Transport::Datagram } else { Transport::Stream };
        match &endpoint.listen {
            Listen::Tcp(addr) | Listen::Udp(addr) => {
                let family = if addr.is_ipv6() { Family::Inet6 } else { Family::Inet4 };
                if addr.port() != 0 {
                    refuse_if_held(*addr, transport).map_err(listen_err)?;
                }
                let mut addr = *addr;
                let largest = match (transport, family) {
                    (Transport::Stream, _) => None,
                    (Transport::Datagram, Family::Inet6) => Some(MAX_UDP6_PAYLOAD),
                    (Transport::Datagram, _) => Some(MAX_UDP4_PAYLOAD),
                };
                for listeners in bound.per_worker.iter_mut() {
                    // Each worker gets its own SO_REUSEPORT socket; after the first, they
                    // bind the port the first one got (port 0 resolved).
                    let (sock, stamped) = inet_socket(addr, transport, stamps).map_err(listen_err)?;
                    addr = sock.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(addr);
                    // A kernel without UDP_GRO (before 5.0) refuses it: no batching then.
                    let gro = gro
                        && transport == Transport::Datagram
                        && crate::gso::enable_gro(std::os::fd::AsFd::as_fd(&sock)).is_ok();
                    let fd = Arc::new(sock.into());
                    listeners.push(Listener { fd, transport, family, mode, gro, stamps: stamped });
                }
                bound.largest_datagram.push(largest);
                let shown = match transport {
                    Transport::Stream => BoundAddr::Tcp(addr),
                    Transport::Datagram => BoundAddr::Udp(addr),
                };
                bound.addrs.push((shown, mode));
            }
            Listen::Unix(path) | Listen::UnixGram(path) => {
                let sock = unix_socket(path, transport).map_err(listen_err)?;
                bound.unix_paths.push(path.clone());
                bound.largest_datagram.push(match transport {
                    Transport::Stream => None,
                    // The kernel refuses a Unix datagram longer than the sender's send
                    // buffer less 32 bytes; the echo is sent from this socket.
                    Transport::Datagram => {
                        Some(sock.send_buffer_size().map_err(listen_err)?.saturating_sub(32) as u32)
                    }
                });
                let fd = Arc::new(OwnedFd::from(sock));
                for listeners in bound.per_worker.iter_mut() {
                    let family = Family::Unix;
                    listeners.push(Listener {
                        fd: fd.clone(),
                        transport,
                        family,
                        mode,
                        gro: false,
                        stamps: false,
                    });
                }
                let shown = match transport {
                    Transport::Stream => BoundAddr::Unix(path.clone()),
                    Transport::Datagram => BoundAddr::UnixGram(path.clone()),
                };
                bound.addrs.push((shown, mode));
            }
        }
    }
    Ok(())
}

fn describe(listen: &Listen) -> String {
    match listen {
        Listen::Tcp(a) | Listen::Udp(a) => a.to_string(),
        Listen::Unix(p) | Listen::UnixGram(p) => p.display().to_string(),
    }
}

fn socket_type(transport: Transport) -> Type {
    match transport {
        Transport::Stream => Type::STREAM,
        Transport::Datagram => Type::DGRAM,
    }
}

/// Fails with `AddrInUse` when another socket already holds `addr`, even one that would
/// let ours join it. SO_REUSEPORT lets any process of the same user join a port's group,
/// so without this a second server on the same port would start without complaint and
/// the kernel would split the connections between the two: an A/B comparison would
/// measure a mix. The probe is a plain bind, without SO_REUSEPORT (and, for UDP, without
/// SO_REUSEADDR, which UDP treats as "share the port"); it is closed before the group forms.
fn refuse_if_held(addr: SocketAddr, transport: Transport) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), socket_type(transport).cloexec(), None)?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    if transport == Transport::Stream {
        // For TCP, SO_REUSEADDR only ignores connections in TIME_WAIT (a server that just
        // stopped); a listening socket still conflicts.
        probe.set_reuse_address(true)?;
    }
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "address in use: another socket (perhaps another server) is bound to it",
        )),
        Err(e) => Err(e),
    }
}

/// A bound (and, for TCP, listening) socket; with `stamps`, a TCP one takes receive stamps
/// first, and says whether the kernel took them.
fn inet_socket(addr: SocketAddr, transport: Transport, stamps: bool) -> io::Result<(Socket, bool)> {
    let sock = Socket::new(Domain::for_address(addr), socket_type(transport).cloexec(), None)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if transport == Transport::Stream {
        // Accepted sockets inherit it: echo replies must not wait for Nagle.
        sock.set_tcp_nodelay(true)?;
    }
    sock.bind(&addr.into())?;
    let stamped = stamps
        && transport == Transport::Stream
        && crate::tstamp::enable_receive(std::os::fd::AsFd::as_fd(&sock));
    if transport == Transport::Stream {
        sock.listen(BACKLOG)?;
    }
    Ok((sock, stamped))
}

/// Binds a Unix socket at `path`, replacing a stale socket file only when nothing is
/// bound to it; any other file at that path is left alone and reported.
fn unix_socket(path: &Path, transport: Transport) -> io::Result<Socket> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        let probe = match transport {
            Transport::Datagram => {
                std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.connect(path)).map(drop)
            }
            Transport::Stream => std::os::unix::net::UnixStream::connect(path).map(drop),
        };
        match probe {
            Ok(()) => {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "another server is listening there"));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)?,
            Err(e) => return Err(e),
        }
    }
    let sock = Socket::new(Domain::UNIX, socket_type(transport).cloexec(), None)?;
    sock.bind(&socket2::SockAddr::unix(path)?)?;
    if transport == Transport::Stream {
        sock.listen(BACKLOG)?;
    }
    Ok(sock)
}
