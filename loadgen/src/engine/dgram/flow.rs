//! One datagram flow: its connected socket (UDP, or Unix datagram with a path of its own
//! bound), its ledger, and the memory the kernel reads while its sends and receives are
//! in flight: a buffer per send slot (room for a train when the flow batches), each
//! train's `msghdr`, and the receive `msghdr` (UDP_GRO's control message); how many send
//! slots a flow has, and what each datagram of a flow carries ([`write_datagram`]).
//!
//! Invariant: a send slot is on the `free` list exactly when no send of the kernel's
//! points into it (and, for a flow in the worker's chain, `carried` names the datagram in
//! it until then); the slots and headers are boxed, so they stay where the kernel was
//! told they are while the flow lives.

use crate::connect::Dial;
use crate::engine::ledger::Ledger;
use crate::engine::stamps::Probe;
use crate::engine::token;
use crate::header::{self, Header};
use crate::payload::{PERIOD, Pattern};
use crate::target::Target;
use ringecho::gso::{self, SegmentControl};
use ringecho::tstamp::{self, SocketKind, Support, TxControl};
use socket2::{Domain, SockAddr, Socket, Type};
use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

/// Send slots per flow: the closed loop's depth, within these bounds.
pub(super) const MIN_SLOTS: usize = 16;
pub(super) const MAX_SLOTS: usize = 1024;
const _: () = assert!(MAX_SLOTS < token::MAX_SLOTS, "a token names every send slot, and the wait for room");
/// The token slot of a chain's wait for room (a send slot no send uses).
pub(super) const ROOM: usize = MAX_SLOTS;

/// Where in the pattern datagram `seq` of flow `flow` takes its payload.
pub(super) fn payload_offset(flow: u32, seq: u64) -> u64 {
    (Pattern::phase(u64::from(flow)) + seq.wrapping_mul(31)) % PERIOD as u64
}

/// Writes datagram `seq` of flow `flow` (header, then its part of the pattern) into `buf`,
/// its exact size.
pub(super) fn write_datagram(pattern: &Pattern, flow: u32, seq: u64, now: u64, buf: &mut [u8]) {
    let len = buf.len();
    Header { flow, seq, sent_ns: now }.encode(&mut buf[..header::LEN]);
    buf[header::LEN..].copy_from_slice(pattern.slice(payload_offset(flow, seq), len - header::LEN));
}

/// A socket path this process bound (Unix datagram flows), removed when dropped.
pub(in crate::engine) struct BoundPath(PathBuf);

impl Drop for BoundPath {
    fn drop(&mut self) {
        // Best effort: a path already gone is what we want.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A flow as set-up opens it.
pub(in crate::engine) struct Opened {
    pub fd: OwnedFd,
    pub id: u32,
    pub bound: Option<BoundPath>,
    /// The socket takes UDP_SEGMENT sends and has UDP_GRO on.
    pub batches: bool,
    /// The stamps the socket gives (none with `--user-timestamps`).
    pub stamps: Support,
}

/// A train's (or a probe's) `sendmsg` header, iovec and control messages (UDP_SEGMENT,
/// or a probe's request for its send stamp), at a stable address while its send is in
/// flight.
pub(super) struct TrainMsg {
    pub msghdr: libc::msghdr,
    pub iov: libc::iovec,
    pub control: SegmentControl,
    pub stamped: TxControl,
}

/// A probe on a flow: the datagram `seq` (the first of its send, whose send stamp is
/// keyed by its low 32 bits), sent from slot `slot`, and its times.
#[derive(Debug, Clone, Copy)]
pub(super) struct DgramProbe {
    pub seq: u64,
    pub slot: usize,
    pub intended: u64,
    pub times: Probe,
    /// The send's completion has been taken.
    pub sent: bool,
}

pub(super) struct Flow {
    pub fd: OwnedFd,
    pub id: u32,
    /// What became of each sequence.
    pub ledger: Ledger,
    /// Send slots: a buffer each (room for a train when the flow batches), with the
    /// train's message header; `free` lists those not in the kernel's hands.
    pub slots: Vec<Box<[u8]>>,
    pub trains: Box<[TrainMsg]>,
    pub free: Vec<usize>,
    /// Sends trains and receives with UDP_GRO.
    pub batches: bool,
    /// The stamps the socket gives.
    pub stamps: Support,
    /// The datagram whose send asked for its send stamp, if one is out.
    pub probe: Option<DgramProbe>,
    /// Sends in the worker's chain (Unix datagrams: see `chain`).
    pub chained: bool,
    /// For a chained flow, the datagram each send slot carries: its sequence and size.
    pub carried: Vec<(u64, u32)>,
    /// Describes receives when they carry control messages (UDP_GRO, stamps):
    /// [`Flow::recvmsg`].
    pub recv_msghdr: Box<libc::msghdr>,
    /// Sequences scheduled but waiting for a free slot.
    pub pending: VecDeque<u64>,
    pub recv_armed: bool,
    pub starved: bool,
    pub dead: bool,
    pub bound: Option<BoundPath>,
}

/// A flow's socket for `target`, bound (to any port for UDP; to a path of its own for Unix
/// datagrams, which a server answers to), and the target's address.
pub(super) fn dial(target: &Target, id: u32) -> std::io::Result<Dial<Option<BoundPath>>> {
    match target {
        Target::Udp(addr) => {
            let local: std::net::SocketAddr = if addr.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                ([0, 0, 0, 0], 0).into()
            };
            let socket = Socket::new(Domain::for_address(*addr), Type::DGRAM.cloexec(), None)?;
            socket.bind(&local.into())?;
            Ok(Dial { socket, to: (*addr).into(), keep: None })
        }
        Target::UnixGram(path) => {
            let me = std::env::temp_dir().join(format!("ringload-{}-{id}.sock", std::process::id()));
            // A stale socket of an earlier process with our pid; usually there is none.
            let _ = std::fs::remove_file(&me);
            let socket = Socket::new(Domain::UNIX, Type::DGRAM.cloexec(), None)?;
            socket.bind(&SockAddr::unix(&me)?)?;
            let bound = BoundPath(me);
            Ok(Dial { socket, to: SockAddr::unix(path)?, keep: Some(bound) })
        }
        _ => Err(std::io::Error::other("not a datagram target")),
    }
}

/// Flow `id` over its connected socket; with `gso` (a UDP flow that may batch),
/// UDP_SEGMENT and UDP_GRO both on where the kernel has them (a kernel without either
/// sends and receives one by one).
/// With `stamps`, the kernel's stamps are turned on for a socket of that kind.
pub(super) fn opened(
    socket: Socket,
    id: u32,
    bound: Option<BoundPath>,
    gso: bool,
    stamps: Option<SocketKind>,
) -> Opened {
    let batches = gso && gso::can_segment(socket.as_fd()) && gso::enable_gro(socket.as_fd()).is_ok();
    let stamps = stamps.map_or(Support::default(), |kind| tstamp::enable(socket.as_fd(), kind));
    Opened { fd: socket.into(), id, bound, batches, stamps }
}

impl Flow {
    pub fn new(
        opened: Opened,
        slots: usize,
        max_size: usize,
        train_max: usize,
        ledger: Ledger,
        chained: bool,
    ) -> Flow {
        let batches = opened.batches && train_max > 1;
        let stamps = opened.stamps;
        let slot_size = if batches { (max_size * train_max).min(gso::MAX_TRAIN_BYTES) } else { max_size };
        // SAFETY: msghdr is plain data; all-zero is an empty header.
        let mut recv_msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        let control = if stamps.rx { tstamp::RX_CONTROL_LEN } else { gso::GRO_CONTROL_LEN };
        recv_msghdr.msg_controllen = control as _;
        Flow {
            fd: opened.fd,
            id: opened.id,
            ledger,
            slots: (0..slots).map(|_| vec![0u8; slot_size].into_boxed_slice()).collect(),
            trains: (0..if batches || stamps.tx { slots } else { 0 })
                .map(|_| TrainMsg {
                    // SAFETY: as above.
                    msghdr: unsafe { std::mem::zeroed() },
                    iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
                    control: SegmentControl::new(0),
                    stamped: TxControl::new(None, None),
                })
                .collect(),
            free: (0..slots).rev().collect(),
            batches,
            stamps,
            probe: None,
            chained,
            carried: vec![(0, 0); if chained { slots } else { 0 }],
            recv_msghdr,
            pending: VecDeque::new(),
            recv_armed: false,
            starved: false,
            dead: false,
            bound: opened.bound,
        }
    }

    /// Whether receives are `recvmsg`s described by `recv_msghdr` (control messages
    /// come with them).
    pub fn recvmsg(&self) -> bool {
        self.batches || self.stamps.rx
    }
}
