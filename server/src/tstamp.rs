//! Kernel software timestamps on sockets (`SO_TIMESTAMPING`), for the server and the load
//! generator: turning them on ([`enable`]: a receive stamp on every receive where the
//! socket gives one, a send stamp on the sends that ask for it), reading a receive's
//! stamp from its control messages ([`rx_stamp`]), asking for a send's stamp
//! ([`TxControl`]), reading send stamps from the error queue ([`read_tx_stamps`]), and
//! placing the kernel's `CLOCK_REALTIME` stamps on a monotonic timeline with a stated
//! error bound ([`KernelClock`]).
//!
//! What the kernel gives (Linux 6.x, loopback): TCP and UDP stamp every receive (the
//! stamp of a read holding several segments is the last segment's) and a send that asks;
//! Unix datagram sockets stamp receives only through `SO_TIMESTAMPNS`, and refuse send
//! stamps; Unix stream sockets give neither. The first packets after the first socket of
//! the system turns receive stamps on may carry none (the kernel switches stamping on
//! through a deferred static key): a missing stamp is counted by the caller, never made
//! up.

use crate::cmsg;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Instant;

/// What kind of socket stamps are asked of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Unix stream.
    UnixStream,
    /// Unix datagram.
    UnixDgram,
}

/// Which stamps a socket gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Support {
    /// A stamp on every receive, in its control messages.
    pub rx: bool,
    /// A send stamp on the sends that ask for one ([`TxControl`]), in the error queue.
    pub tx: bool,
}

/// `SCM_TS_OPT_ID` (Linux 6.13): a send's own key for its stamp.
const SCM_TS_OPT_ID: i32 = 81;
/// `SCM_TSTAMP_SND`: a stamp taken as the packet left for the device.
const SCM_TSTAMP_SND: u32 = 0;
/// `SCM_TSTAMP_SCHED`: a stamp taken as the packet entered the queueing discipline.
#[cfg(test)]
const SCM_TSTAMP_SCHED: u32 = 1;

/// The stamps every stamping socket keeps on: software receive stamps, stamps reported in
/// software, send stamps without the packet (`OPT_TSONLY`), each send stamp keyed
/// (`OPT_ID`; for TCP the key counts bytes from the first write, `OPT_ID_TCP`).
fn socket_flags(kind: SocketKind) -> u32 {
    let base = libc::SOF_TIMESTAMPING_RX_SOFTWARE
        | libc::SOF_TIMESTAMPING_SOFTWARE
        | libc::SOF_TIMESTAMPING_OPT_TSONLY
        | libc::SOF_TIMESTAMPING_OPT_ID;
    match kind {
        SocketKind::Tcp => base | libc::SOF_TIMESTAMPING_OPT_ID_TCP,
        _ => base,
    }
}

/// Turns stamps on for a socket of `kind`, before any data moves (a TCP socket's send
/// keys count from here); says which stamps it gives. A socket option the kernel
/// refuses is a stamp it does not give, not an error.
pub fn enable(fd: BorrowedFd<'_>, kind: SocketKind) -> Support {
    match kind {
        SocketKind::Tcp | SocketKind::Udp => {
            let on = set_option(fd, libc::SO_TIMESTAMPING, socket_flags(kind) as libc::c_int).is_ok();
            Support { rx: on, tx: on && (kind == SocketKind::Tcp || keyed_sends()) }
        }
        SocketKind::UnixDgram => Support { rx: set_option(fd, libc::SO_TIMESTAMPNS, 1).is_ok(), tx: false },
        SocketKind::UnixStream => Support::default(),
    }
}

/// Turns on receive stamps (software, reported), and send stamps without the packet for
/// the sends that ask (`OPT_TSONLY`), without keys: for a TCP listener, whose accepted
/// connections inherit them (a listener refuses `OPT_ID`). Whether the kernel took it.
pub fn enable_receive(fd: BorrowedFd<'_>) -> bool {
    let flags = libc::SOF_TIMESTAMPING_RX_SOFTWARE
        | libc::SOF_TIMESTAMPING_SOFTWARE
        | libc::SOF_TIMESTAMPING_OPT_TSONLY;
    set_option(fd, libc::SO_TIMESTAMPING, flags as libc::c_int).is_ok()
}

/// One `setsockopt(SOL_SOCKET, option, value)`.
fn set_option(fd: BorrowedFd<'_>, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a plain setsockopt with a pointer to a live int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Whether this kernel takes a datagram's own stamp key (`SCM_TS_OPT_ID`, Linux 6.13):
/// asked once, by a UDP socket sending one stamped datagram to itself on loopback.
fn keyed_sends() -> bool {
    static KEYED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KEYED.get_or_init(|| {
        let probe = || -> io::Result<bool> {
            let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
            s.connect(s.local_addr()?)?;
            let fd = std::os::fd::AsFd::as_fd(&s);
            set_option(fd, libc::SO_TIMESTAMPING, socket_flags(SocketKind::Udp) as libc::c_int)?;
            let control = TxControl::new(Some(1), None);
            Ok(sendmsg(fd, b"p", &control).is_ok())
        };
        probe().unwrap_or(false)
    })
}

/// One `sendmsg` of `data` with `control` (the probe's).
fn sendmsg(fd: BorrowedFd<'_>, data: &[u8], control: &TxControl) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_bytes().as_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.as_bytes().len() as _;
    // SAFETY: the kernel reads the iovec and the control buffer, both live for the call.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Room for the stamp messages of a receive (with a UDP_GRO message beside them).
pub const RX_CONTROL_LEN: usize = 128;
const _: () =
    assert!(cmsg::space(3 * std::mem::size_of::<libc::timespec>()) + cmsg::space(4) <= RX_CONTROL_LEN);

/// The kernel's receive stamp (ns of `CLOCK_REALTIME`) in a receive's control messages,
/// if it carries one. The bytes are untrusted: a message too short is no stamp.
pub fn rx_stamp(control: &[u8]) -> Option<i128> {
    cmsg::parse(control).find_map(|c| match (c.level, c.kind) {
        // `scm_timestamping`: the software stamp first (zero when there is none).
        (libc::SOL_SOCKET, libc::SO_TIMESTAMPING) => timespec(c.data),
        (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS) => timespec(c.data),
        _ => None,
    })
}

/// A `timespec` at the start of `data` as ns; `None` when it is short or zero.
fn timespec(data: &[u8]) -> Option<i128> {
    let sec = i64::from_ne_bytes(data.get(..8)?.try_into().ok()?);
    let nsec = i64::from_ne_bytes(data.get(8..16)?.try_into().ok()?);
    if (sec, nsec) == (0, 0) || !(0..1_000_000_000).contains(&nsec) {
        return None;
    }
    Some(i128::from(sec) * 1_000_000_000 + i128::from(nsec))
}

/// The control messages of a send that asks for its send stamp: `SCM_TIMESTAMPING` with
/// the software send stamp, for a datagram its key (`SCM_TS_OPT_ID`; a TCP send's key
/// is the stream offset of its last byte), and a UDP_SEGMENT size when it is a train.
#[repr(C, align(8))]
pub struct TxControl {
    bytes: [u8; TxControl::ROOM],
    len: usize,
}

impl TxControl {
    const ROOM: usize = 2 * cmsg::space(4) + cmsg::space(2);

    /// The messages for one send.
    pub fn new(key: Option<u32>, segment: Option<u16>) -> TxControl {
        let mut bytes = [0u8; Self::ROOM];
        let flags = libc::SOF_TIMESTAMPING_TX_SOFTWARE;
        let mut at =
            cmsg::write(&mut bytes, 0, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, &flags.to_ne_bytes());
        if let Some(key) = key {
            at = cmsg::write(&mut bytes, at, libc::SOL_SOCKET, SCM_TS_OPT_ID, &key.to_ne_bytes());
        }
        if let Some(size) = segment {
            at = cmsg::write(&mut bytes, at, libc::SOL_UDP, libc::UDP_SEGMENT, &size.to_ne_bytes());
        }
        TxControl { bytes, len: at }
    }

    /// The messages' bytes, for `msg_control` / `msg_controllen`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Room for one error-queue entry's control messages.
const ERR_CONTROL_LEN: usize = 256;

/// Reads at most `max` entries of `fd`'s error queue without waiting, handing each send
/// stamp (`SCM_TSTAMP_SND`) to `on` as (key, ns of `CLOCK_REALTIME`); returns how many
/// entries were read, and how many of them were not send stamps (discarded).
pub fn read_tx_stamps(fd: BorrowedFd<'_>, max: usize, mut on: impl FnMut(u32, i128)) -> (usize, usize) {
    let (mut read, mut other) = (0, 0);
    let mut control = [0u64; ERR_CONTROL_LEN / 8];
    while read < max {
        // SAFETY: a zeroed msghdr is valid; the control buffer outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = ERR_CONTROL_LEN as _;
        // SAFETY: the kernel writes at most msg_controllen bytes into `control`, ours.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            break; // EAGAIN: empty; anything else: nothing more to read either
        }
        read += 1;
        let len = (msg.msg_controllen as usize).min(ERR_CONTROL_LEN);
        // SAFETY: reading the first `len` bytes of our own buffer as bytes.
        let bytes = unsafe { std::slice::from_raw_parts(control.as_ptr().cast::<u8>(), len) };
        match tx_stamp(bytes) {
            Some((key, ns)) => on(key, ns),
            None => other += 1,
        }
    }
    (read, other)
}

/// The send stamp in one error-queue entry's control messages: (key, ns), when it holds a
/// software `SCM_TSTAMP_SND` stamp.
pub fn tx_stamp(control: &[u8]) -> Option<(u32, i128)> {
    let mut stamp = None;
    let mut key = None;
    for c in cmsg::parse(control) {
        match (c.level, c.kind) {
            (libc::SOL_SOCKET, libc::SO_TIMESTAMPING) => stamp = timespec(c.data),
            (libc::SOL_IP, libc::IP_RECVERR) | (libc::SOL_IPV6, libc::IPV6_RECVERR) => {
                key = extended_err(c.data);
            }
            _ => {}
        }
    }
    Some((key?, stamp?))
}

/// The key of a `sock_extended_err` that reports a software send stamp.
fn extended_err(data: &[u8]) -> Option<u32> {
    let errno = u32::from_ne_bytes(data.get(..4)?.try_into().ok()?);
    let origin = *data.get(4)?;
    let info = u32::from_ne_bytes(data.get(8..12)?.try_into().ok()?);
    let key = u32::from_ne_bytes(data.get(12..16)?.try_into().ok()?);
    (errno == libc::ENOMSG as u32 && origin == libc::SO_EE_ORIGIN_TIMESTAMPING && info == SCM_TSTAMP_SND)
        .then_some(key)
}

/// The kernel's `CLOCK_REALTIME` against a monotonic origin: `real_at_origin` is the
/// realtime ns at the origin, known to within `bound_ns` (half the tightest bracket of
/// monotonic reads around a realtime read). Realtime is slewed (and may be stepped) by
/// time keeping, so a clock is re-sampled often and a stamp far from where it can be is
/// the caller's to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelClock {
    /// Realtime ns at the origin.
    pub real_at_origin: i128,
    /// The error bound of the conversion, ns.
    pub bound_ns: u64,
}

impl KernelClock {
    /// Samples the clocks against `origin`: the tightest of a few brackets.
    pub fn sample(origin: Instant) -> KernelClock {
        let mut best: Option<KernelClock> = None;
        for _ in 0..3 {
            let before = origin.elapsed().as_nanos() as i128;
            let real = realtime_ns();
            let after = origin.elapsed().as_nanos() as i128;
            let c = KernelClock {
                real_at_origin: real - (before + after) / 2,
                bound_ns: ((after - before) / 2).max(1) as u64,
            };
            if best.is_none_or(|b| c.bound_ns < b.bound_ns) {
                best = Some(c);
            }
        }
        best.expect("three samples")
    }

    /// A realtime stamp as ns since the origin (negative: before it).
    pub fn since_origin(&self, real_ns: i128) -> i128 {
        real_ns - self.real_at_origin
    }
}

/// `CLOCK_REALTIME` now, ns.
fn realtime_ns() -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    fn stamping_message(sec: i64, nsec: i64) -> Vec<u8> {
        let mut data = [0u8; 48];
        data[..8].copy_from_slice(&sec.to_ne_bytes());
        data[8..16].copy_from_slice(&nsec.to_ne_bytes());
        let mut buf = vec![0u8; cmsg::space(48)];
        cmsg::write(&mut buf, 0, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, &data);
        buf
    }

    #[test]
    fn a_receive_stamp_is_read_and_garbage_is_none() {
        assert_eq!(rx_stamp(&stamping_message(2, 5)), Some(2_000_000_005));
        assert_eq!(rx_stamp(&stamping_message(0, 0)), None, "no software stamp");
        assert_eq!(rx_stamp(&stamping_message(1, 2_000_000_000)), None, "not a time");
        let whole = stamping_message(2, 5);
        for n in 0..whole.len() {
            assert!(rx_stamp(&whole[..n]).is_none_or(|s| s == 2_000_000_005), "{n}");
        }
    }

    #[test]
    fn a_send_stamp_needs_its_key_and_its_time() {
        let mut err = [0u8; 16];
        err[..4].copy_from_slice(&(libc::ENOMSG as u32).to_ne_bytes());
        err[4] = libc::SO_EE_ORIGIN_TIMESTAMPING;
        err[12..16].copy_from_slice(&77u32.to_ne_bytes());
        let mut buf = stamping_message(3, 1);
        let at = buf.len();
        buf.resize(at + cmsg::space(16), 0);
        cmsg::write(&mut buf, at, libc::SOL_IP, libc::IP_RECVERR, &err);
        assert_eq!(tx_stamp(&buf), Some((77, 3_000_000_001)));
        assert_eq!(tx_stamp(&stamping_message(3, 1)), None, "no key");
        // A scheduling stamp (SCM_TSTAMP_SCHED) is not the send stamp.
        let mut sched = err;
        sched[8..12].copy_from_slice(&SCM_TSTAMP_SCHED.to_ne_bytes());
        cmsg::write(&mut buf, at, libc::SOL_IP, libc::IP_RECVERR, &sched);
        assert_eq!(tx_stamp(&buf), None);
    }

    #[test]
    fn udp_loopback_gives_both_stamps() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let got_rx = enable(rx.as_fd(), SocketKind::Udp);
        let got_tx = enable(tx.as_fd(), SocketKind::Udp);
        assert!(got_rx.rx && got_tx.rx, "{got_rx:?} {got_tx:?}");
        let origin = Instant::now();
        let clock = KernelClock::sample(origin);
        assert!(clock.bound_ns < 1_000_000, "{clock:?}");
        if got_tx.tx {
            sendmsg(tx.as_fd(), b"stamped", &TxControl::new(Some(42), None)).unwrap();
        } else {
            tx.send(b"stamped").unwrap();
        }
        // The receive: blocking, with room for the control messages.
        let mut data = [0u8; 64];
        let mut control = [0u64; RX_CONTROL_LEN / 8];
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
        // SAFETY: a zeroed msghdr pointing at our live buffers.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = RX_CONTROL_LEN as _;
        // SAFETY: the kernel writes into our buffers, within the lengths given.
        let n = unsafe { libc::recvmsg(rx.as_raw_fd(), &mut msg, 0) };
        assert_eq!(n, 7);
        // SAFETY: our own buffer, as bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts(control.as_ptr().cast::<u8>(), msg.msg_controllen as usize) };
        let now = origin.elapsed().as_nanos() as i128;
        // The first packets after stamping is switched on may go unstamped; a stamp, when
        // there is one, is in the past and near.
        if let Some(stamp) = rx_stamp(bytes) {
            let at = clock.since_origin(stamp);
            assert!(at <= now + clock.bound_ns as i128 && at > now - 1_000_000_000, "{at} vs {now}");
        }
        if got_tx.tx {
            let mut keys = Vec::new();
            read_tx_stamps(tx.as_fd(), 8, |key, _| keys.push(key));
            assert_eq!(keys, [42], "the send's own key");
        }
    }
}
