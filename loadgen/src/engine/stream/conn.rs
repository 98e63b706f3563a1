//! One stream connection: its byte counts and FIFO of messages, the send that asks for
//! its send stamp, the probe out on it; and how a stream socket is made (dialled, its
//! stamps turned on).

use crate::connect::Dial;
use crate::engine::clock::Clock;
use crate::engine::recorder::Recorder;
use crate::engine::stamps::{Probe, Stamps};
use crate::engine::types::Shared;
use crate::payload::Pattern;
use crate::target::Target;
use ringecho::tstamp::{self, SocketKind, Support, TxControl};
use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};

/// What one read of a stream held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    /// Bytes (or a read that could not be placed, counted).
    Data,
    /// The end of the stream: the peer closed its side.
    End,
}
/// Connects in a row that may fail before churn gives a connection up: a target that went
/// away must not keep the run alive.
pub(super) const CONNECT_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Copy)]
pub(super) struct Msg {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) intended: u64,
    pub(super) sent: u64,
    pub(super) corrupt: bool,
}

/// One stream connection.
pub(in crate::engine) struct Conn {
    pub(super) fd: OwnedFd,
    pub(super) phase: u64,
    /// Bytes scheduled, handed to the kernel, confirmed sent, and received.
    pub(super) scheduled: u64,
    pub(super) submitted: u64,
    pub(super) received: u64,
    pub(super) fifo: VecDeque<Msg>,
    /// Index in `fifo` of the first message with no byte submitted yet.
    pub(super) first_unsent: usize,
    pub(super) send_in_flight: bool,
    pub(super) in_flight_len: u32,
    pub(super) recv_armed: bool,
    pub(super) starved: bool,
    pub(super) dead: bool,
    /// Churn: messages scheduled since this connection was opened.
    pub(super) since_connect: u64,
    /// Churn: our write side is shut; the server's EOF ends the connection.
    pub(super) churning: bool,
    /// Churn: open a new connection once nothing of the old one is in flight.
    pub(super) reconnect: bool,
    /// Churn: when the connect in flight started (ns).
    pub(super) connect_started: Option<u64>,
    /// Churn: connects that failed in a row.
    pub(super) connect_failures: u32,
    /// The stamps this socket gives (none with `--user-timestamps`).
    pub(super) stamps: Support,
    /// The receive's `msghdr` when receives carry their stamp (room for it only).
    pub(super) recv_msghdr: Box<libc::msghdr>,
    /// The header, iovec and control messages of a send that asks for its send stamp.
    pub(super) stamped_send: Box<StampedSend>,
    /// The message whose send asked for its send stamp, if one is out.
    pub(super) probe: Option<StreamProbe>,
}

/// A send that asks for its send stamp, at a stable address while it is in flight.
pub(super) struct StampedSend {
    pub(super) msghdr: libc::msghdr,
    pub(super) iov: libc::iovec,
    pub(super) control: TxControl,
}

/// A probe on a stream: the message ending at stream offset `end` (its send's last
/// byte, the send stamp's key), and its times.
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamProbe {
    pub(super) end: u64,
    pub(super) intended: u64,
    pub(super) times: Probe,
    /// The send's completion has been taken: its stamp is in the error queue, if any.
    pub(super) sent: bool,
}

/// What an answered message is recorded with: the worker's recorder, clock and stamps,
/// and when the read was seen (the parts of the worker's context a read does not hold).
pub(super) struct Answered<'a> {
    pub(super) rec: &'a mut Recorder,
    pub(super) clock: &'a Clock,
    pub(super) stamps: &'a mut Stamps,
    pub(super) now: u64,
}

impl Conn {
    /// Connection number `id` of the run, over `fd`, which gives `stamps`.
    pub(super) fn new(fd: OwnedFd, id: u32, stamps: Support) -> Conn {
        // SAFETY: msghdr is plain data; all-zero is an empty header.
        let mut recv_msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msghdr.msg_controllen = tstamp::RX_CONTROL_LEN as _;
        let stamped_send = Box::new(StampedSend {
            // SAFETY: as above.
            msghdr: unsafe { std::mem::zeroed() },
            iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
            control: TxControl::new(None, None),
        });
        Conn {
            fd,
            phase: Pattern::phase(u64::from(id)),
            scheduled: 0,
            submitted: 0,
            received: 0,
            fifo: VecDeque::new(),
            first_unsent: 0,
            send_in_flight: false,
            in_flight_len: 0,
            recv_armed: false,
            starved: false,
            dead: false,
            since_connect: 0,
            churning: false,
            reconnect: false,
            connect_started: None,
            connect_failures: 0,
            stamps,
            recv_msghdr,
            stamped_send,
            probe: None,
        }
    }

    /// Records message `m`, answered in full by a read stamped `arrival` and seen
    /// `now`. Every message a read completes arrived by the read's last segment: they
    /// share its stamp (for the earlier ones, an upper bound).
    pub(super) fn answered(&mut self, to: Answered<'_>, m: Msg, arrival: Option<u64>) {
        let Answered { rec, clock, stamps, now } = to;
        let (at, stamped) = match self.stamps.rx {
            true => stamps.reply_at(arrival, m.sent, now),
            false => (now, false),
        };
        if let Some(p) = self.probe.as_mut().filter(|p| p.end == m.end) {
            p.times.rx = stamped.then_some(at);
            p.times.seen = Some(now);
        }
        if m.corrupt {
            if m.intended >= clock.warm_end {
                rec.counters.mismatched_messages += 1;
            }
        } else {
            rec.complete(clock, now, stamped.then_some(at), m.intended, m.sent, m.end - m.start);
        }
    }

    /// Dead for good: failed, not between two churn connections.
    pub(super) fn gone(&self) -> bool {
        self.dead && !self.reconnect && !self.churning && self.connect_started.is_none()
    }
}

/// Messages in `fifo` due after the warm-up.
pub(super) fn measured(fifo: &VecDeque<Msg>, warm_end: u64) -> u64 {
    fifo.iter().filter(|m| m.intended >= warm_end).count() as u64
}

/// A stream socket for `target` and its address.
pub(super) fn dial(target: &Target) -> std::io::Result<Dial<()>> {
    let to = match target {
        Target::Tcp(addr) => socket2::SockAddr::from(*addr),
        Target::Unix(path) => socket2::SockAddr::unix(path)?,
        _ => return Err(std::io::Error::other("not a stream target")),
    };
    let socket = socket2::Socket::new(to.domain(), socket2::Type::STREAM.cloexec(), None)?;
    Ok(Dial { socket, to, keep: () })
}

/// Turns the kernel's stamps on for a stream socket (before data moves: a TCP send
/// stamp's key counts bytes from here), unless the plan times replies in user space.
pub(super) fn enable_stamps(shared: &Shared, socket: &socket2::Socket) -> Support {
    stamp_kind(shared).map_or(Support::default(), |kind| tstamp::enable(socket.as_fd(), kind))
}

/// The kind of socket whose stamps the plan asks for; `None` with `--user-timestamps`.
pub(super) fn stamp_kind(shared: &Shared) -> Option<SocketKind> {
    (shared.plan.timestamps == crate::plan::Timestamps::Kernel).then_some(match shared.target {
        Target::Tcp(_) => SocketKind::Tcp,
        _ => SocketKind::UnixStream,
    })
}
