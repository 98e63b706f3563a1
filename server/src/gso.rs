//! UDP segmentation offload, both ways, for the server and the load generator: UDP_GRO
//! (the kernel hands over several same-size datagrams from one sender as one buffer, with
//! the segment size in a control message) and UDP_SEGMENT (one send that the kernel cuts
//! into datagrams of a given size; the last may be shorter). Loopback carries such a
//! "train" end to end, so an echo of a train with the same segment size gives each
//! datagram back exactly as it came.
//!
//! This module owns the UDP control messages (built on [`crate::cmsg`]) and the plain
//! `recvmsg`/`sendmsg` calls the readiness-based code uses; the io_uring code builds its
//! own `msghdr` from [`SegmentControl`] and reads [`gro_segment`].

use crate::cmsg;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Room for the UDP_GRO control message (an `int`) in a receive's control buffer.
pub const GRO_CONTROL_LEN: usize = 32;
const _: () = assert!(cmsg::space(std::mem::size_of::<libc::c_int>()) <= GRO_CONTROL_LEN);

/// The most payload bytes one UDP_SEGMENT send may carry (the IPv4 datagram limit; IPv6
/// allows 20 more).
pub const MAX_TRAIN_BYTES: usize = 65_507;

/// The most datagrams one UDP_SEGMENT send may carry (`UDP_MAX_SEGMENTS` in every kernel
/// that has UDP GSO; newer kernels allow more).
pub const MAX_SEGMENTS: usize = 64;

/// Turns UDP_GRO on for a UDP socket.
pub fn enable_gro(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_udp_option(fd, libc::UDP_GRO, 1)
}

/// Whether the kernel takes UDP_SEGMENT on this UDP socket (Linux 4.18 and later): sets
/// the socket's default segment size to 0, which means "no segmentation".
pub fn can_segment(fd: BorrowedFd<'_>) -> bool {
    set_udp_option(fd, libc::UDP_SEGMENT, 0).is_ok()
}

/// One `setsockopt(SOL_UDP, option, value)`.
fn set_udp_option(fd: BorrowedFd<'_>, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a plain setsockopt with a pointer to a live int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The segment size a UDP_GRO receive reported in its control messages, if any (the
/// data is untrusted: see [`cmsg::parse`]).
pub fn gro_segment(control: &[u8]) -> Option<usize> {
    let c = cmsg::parse(control).find(|c| c.level == libc::SOL_UDP && c.kind == libc::UDP_GRO)?;
    usize::try_from(cmsg::int(c.data)?).ok().filter(|s| *s > 0)
}

/// A control buffer holding one UDP_SEGMENT message, for a send that the kernel cuts
/// into datagrams of `size` bytes.
#[repr(C, align(8))]
pub struct SegmentControl {
    bytes: [u8; SegmentControl::LEN],
}

impl SegmentControl {
    /// Its length, for `msg_controllen`.
    pub const LEN: usize = cmsg::space(std::mem::size_of::<u16>());

    /// The message for segments of `size` bytes.
    pub fn new(size: u16) -> SegmentControl {
        let mut bytes = [0u8; Self::LEN];
        cmsg::write(&mut bytes, 0, libc::SOL_UDP, libc::UDP_SEGMENT, &size.to_ne_bytes());
        SegmentControl { bytes }
    }

    /// The message's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// How many datagrams a train of `len` bytes in segments of `segment` bytes holds: at
/// least one (an empty datagram is one), the last possibly shorter.
pub fn segments(len: usize, segment: Option<usize>) -> usize {
    match segment {
        Some(s) if s > 0 && len > s => len.div_ceil(s),
        _ => 1,
    }
}

/// What [`recvmsg`] received.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// The datagram's (or train's) full length, even when it did not fit.
    pub len: usize,
    /// Bytes in the buffer.
    pub captured: usize,
    /// The UDP_GRO segment size, when the kernel batched datagrams.
    pub segment: Option<usize>,
    /// Bytes of the source address written into the name buffer.
    pub namelen: usize,
}

/// One `recvmsg` on a non-blocking UDP socket into `buf`, with the source address in
/// `name` and room for the UDP_GRO control message. `MSG_TRUNC` makes the kernel return
/// the full length, so a datagram that did not fit is known for what it was.
pub fn recvmsg(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    name: &mut libc::sockaddr_storage,
) -> io::Result<Received> {
    let mut control = [0u64; GRO_CONTROL_LEN / 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: an all-zero msghdr is an empty one; every pointer set below points into a
    // live local or argument that outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = GRO_CONTROL_LEN as _;
    // SAFETY: `msg` describes writable memory of the stated lengths (see above).
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = n as usize;
    let control_len = (msg.msg_controllen as usize).min(GRO_CONTROL_LEN);
    // SAFETY: `control` is a live array of GRO_CONTROL_LEN bytes; we read at most that.
    let control = unsafe { std::slice::from_raw_parts(control.as_ptr().cast::<u8>(), control_len) };
    Ok(Received {
        len,
        captured: len.min(buf.len()),
        segment: gro_segment(control),
        namelen: msg.msg_namelen as usize,
    })
}

/// One non-blocking `sendmsg` of `data` to `name`, cut into datagrams of `segment` bytes
/// when given (UDP_SEGMENT).
pub fn sendmsg(fd: BorrowedFd<'_>, data: &[u8], name: &[u8], segment: Option<u16>) -> io::Result<usize> {
    let control = segment.map(SegmentControl::new);
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: as in `recvmsg`: zeroed is empty, and every pointer below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = name.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = name.len() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(c) = &control {
        msg.msg_control = c.as_bytes().as_ptr() as *mut libc::c_void;
        msg.msg_controllen = SegmentControl::LEN as _;
    }
    // SAFETY: the kernel only reads through `msg` during the call.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// The bytes of a socket address, as `sendmsg` takes them.
pub fn sockaddr_bytes(name: &libc::sockaddr_storage, len: usize) -> &[u8] {
    let len = len.min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: a sockaddr_storage is plain data of at least `len` bytes.
    unsafe { std::slice::from_raw_parts((name as *const libc::sockaddr_storage).cast::<u8>(), len) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn segment_counts() {
        assert_eq!(segments(0, None), 1);
        assert_eq!(segments(0, Some(64)), 1);
        assert_eq!(segments(64, Some(64)), 1);
        assert_eq!(segments(65, Some(64)), 2);
        assert_eq!(segments(512, Some(64)), 8);
        assert_eq!(segments(500, Some(64)), 8);
        assert_eq!(segments(500, Some(0)), 1);
    }

    #[test]
    fn control_message_round_trip() {
        // What the kernel writes for UDP_GRO has the layout of a UDP_SEGMENT message with
        // an int; check our reader against libc's own macros.
        let mut control = [0u64; 8];
        let bytes_len = 64usize;
        // SAFETY: a msghdr describing `control`; the CMSG macros stay inside it.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = bytes_len as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_GRO;
            (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), 1200);
            assert_eq!(libc::CMSG_SPACE(2) as usize, SegmentControl::LEN);
            assert_eq!(libc::CMSG_LEN(2) as usize, cmsg::len(2));
        }
        // SAFETY: reading the array as bytes.
        let bytes = unsafe { std::slice::from_raw_parts(control.as_ptr().cast::<u8>(), bytes_len) };
        assert_eq!(gro_segment(bytes), Some(1200));
        assert_eq!(gro_segment(&bytes[..cmsg::len(4) - 1]), None, "cut short");
        assert_eq!(gro_segment(&[]), None);
        let seg = SegmentControl::new(1200);
        assert_eq!(
            u16::from_ne_bytes(seg.as_bytes()[cmsg::len(0)..cmsg::len(0) + 2].try_into().unwrap()),
            1200
        );
    }

    #[test]
    fn any_control_bytes_are_safe() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000usize {
            let mut bytes = vec![0u8; n % 97];
            for b in &mut bytes {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                *b = if rng % 3 == 0 { 0 } else { rng as u8 };
            }
            if bytes.len() >= 8 && n % 2 == 0 {
                bytes[..8].copy_from_slice(&(n % 40).to_ne_bytes());
            }
            let _ = gro_segment(&bytes);
        }
    }

    /// On loopback, a segmented send reaches a GRO socket as one train and comes back as
    /// separate datagrams from a non-GRO socket.
    #[test]
    fn loopback_carries_trains() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_gro(server.as_fd()).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        let payload: Vec<u8> = (0..500u32).map(|i| i as u8).collect();
        let dest = socket2::SockAddr::from(to);
        // SAFETY: a SockAddr's storage holds `len` valid bytes.
        let name = unsafe { std::slice::from_raw_parts(dest.as_ptr().cast::<u8>(), dest.len() as usize) };
        assert_eq!(sendmsg(client.as_fd(), &payload, name, Some(64)).unwrap(), 500);
        server.set_nonblocking(false).unwrap();
        server.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 65_536];
        // SAFETY: zeroed sockaddr_storage is valid.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        while got.len() < payload.len() {
            // Blocking with a timeout: MSG_DONTWAIT would race the loopback delivery.
            let r = poll_recv(&server, &mut buf, &mut from);
            sizes.push((r.len, r.segment));
            got.extend_from_slice(&buf[..r.captured]);
        }
        assert_eq!(got, payload);
        // The kernel may or may not keep the train whole; either way, the sizes add up.
        let datagrams: usize = sizes.iter().map(|(len, seg)| segments(*len, *seg)).sum();
        assert_eq!(datagrams, 8, "{sizes:?}");
    }

    fn poll_recv(s: &UdpSocket, buf: &mut [u8], from: &mut libc::sockaddr_storage) -> Received {
        let mut pfd = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 5000) };
        assert_eq!(ready, 1, "nothing arrived in 5 s");
        recvmsg(s.as_fd(), buf, from).unwrap()
    }
}
