//! Datagram listeners (UDP and Unix datagram): one multishot recvmsg per listener into
//! the datagram buffer group (buffers sized for the largest datagram, independent of the
//! stream `--buffer-size`), and each reply a send, to the source address, of the payload
//! inside the received buffer — no copy. A UDP_GRO train (several same-size datagrams
//! from one sender in one buffer) goes back with one send carrying UDP_SEGMENT of the same
//! size, so each datagram returns exactly as it came. The fate of each datagram and its
//! counting are [`crate::policy::Datagrams`]'s; this file only reads the kernel's recvmsg
//! layout and sends.
//!
//! [`DgramListeners`] owns everything a datagram listener's operations point at: each
//! receive's `msghdr` (boxed), each reply's `msghdr`, iovec and UDP_SEGMENT message (one
//! slot per buffer, used while that buffer is lent to the reply), and the buffers, which
//! the ring owns. The worker lends it a [`Ctx`] per call.

use super::buffers::Buffers;
use super::ctx::Ctx;
use super::token::{Kind, Token};
use crate::backend::contract::{Family, Listener, Transport};
use crate::config::Config;
use crate::gso::{GRO_CONTROL_LEN, SegmentControl};
use crate::policy::{Datagrams, Echo, Received, SourceKey, Verdict};
use crate::ring::{Buf, BufRing};
use crate::tstamp::{self, SocketKind, Support, TxControl};
use io_uring::{cqueue, opcode, squeue, types};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

/// One datagram listener and its receive.
struct DgramListener<'a> {
    listener: &'a Listener,
    /// Read by the kernel when the recvmsg is submitted: how many bytes of the buffer to
    /// reserve for the source address and control messages. Boxed so its address is
    /// stable.
    msghdr: Box<libc::msghdr>,
    armed: bool,
    /// The receive ended for want of buffers.
    starved: bool,
    /// The receive failed (or handed over a buffer it could not): re-armed at the next
    /// tick, so a receive that keeps failing cannot spin.
    backoff: bool,
    /// `--timestamps`: which stamps the socket gives.
    stamps: Support,
    /// The sampled send in flight, if any: its key and the turn that queued it.
    sample: Option<(u32, Instant)>,
}

impl<'a> DgramListener<'a> {
    fn new(listener: &'a Listener, stamps: bool) -> DgramListener<'a> {
        // SAFETY: msghdr is plain data; all-zero is an empty header (null pointers, zero
        // lengths).
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = listener.source_name_len();
        msghdr.msg_controllen = control_room(listener, stamps) as _;
        let stamps = if stamps {
            let kind = if listener.family == Family::Unix { SocketKind::UnixDgram } else { SocketKind::Udp };
            tstamp::enable(listener.fd.as_fd(), kind)
        } else {
            Support::default()
        };
        DgramListener { listener, msghdr, armed: false, starved: false, backoff: false, stamps, sample: None }
    }
}

/// Room a listener's receives reserve for control messages: the stamps (with a UDP_GRO
/// message beside them) under `--timestamps`, else the UDP_GRO message when GRO is on.
fn control_room(listener: &Listener, stamps: bool) -> u32 {
    match (stamps, listener.gro) {
        (true, _) => tstamp::RX_CONTROL_LEN as u32,
        (false, true) => GRO_CONTROL_LEN as u32,
        (false, false) => 0,
    }
}

/// A reply's `sendmsg` header, iovec and UDP_SEGMENT message, at a stable address until
/// its send completes; and how many datagrams it carries, for the count.
struct SendSlot {
    msghdr: libc::msghdr,
    iov: libc::iovec,
    control: SegmentControl,
    /// A sampled send's control messages (`--timestamps`): its stamp request and key,
    /// and its UDP_SEGMENT size if it is a train.
    stamp_control: Option<TxControl>,
    datagrams: u32,
}

/// A worker's datagram listeners, the datagram buffers, and what each reply needs while
/// in flight.
pub(super) struct DgramListeners<'a> {
    /// Indexed by a token's `slot` for datagram receives and replies.
    listeners: Vec<DgramListener<'a>>,
    buffers: Buffers<'a>,
    /// Indexed by buffer id: used while that buffer is lent to a reply.
    sends: Box<[SendSlot]>,
    rules: Datagrams,
}

/// Where the reply goes and what it carries, inside the received buffer.
struct Reply {
    payload: *const u8,
    name: *const libc::sockaddr,
    namelen: u32,
}

/// Queues `entry` on `ctx`.
///
/// Every entry of this file points into a datagram buffer (owned by the ring, lent to
/// the reply until its completion) or into a listener's or a send slot's header, which
/// [`DgramListeners`] holds at a stable address for as long as the worker lives.
fn push(ctx: &mut Ctx<'_>, entry: squeue::Entry) {
    // SAFETY: see above; the worker keeps `DgramListeners` until the kernel has answered
    // every operation, or leaks it.
    unsafe { ctx.push(entry) }
}

impl<'a> DgramListeners<'a> {
    /// Bytes of each datagram buffer for `listeners` to receive datagrams of up to
    /// `capacity` bytes: the kernel's `io_uring_recvmsg_out` header, room for the largest
    /// source address and control messages any of them reserves, then the payload.
    ///
    /// A listener that reserves less room (an IPv4 one beside an IPv6 or Unix one, one
    /// without GRO beside one with it) has more than `capacity` bytes for the payload: the
    /// rules, not the buffer, hold every listener to `capacity` exactly.
    pub fn buffer_size(listeners: &[Listener], capacity: u32, stamps: bool) -> u32 {
        // struct io_uring_recvmsg_out: namelen, controllen, payloadlen, flags.
        let out = 4 * std::mem::size_of::<u32>() as u32;
        let datagram = listeners.iter().filter(|l| l.transport == Transport::Datagram);
        let room = datagram.map(|l| l.source_name_len() + control_room(l, stamps)).max();
        capacity.saturating_add(out + room.unwrap_or(0))
    }

    /// The datagram listeners among `listeners` (a token names one by its index among
    /// them), receiving into `ring`, under the rules for `config`, echoing datagrams of up
    /// to `capacity` bytes.
    pub fn new(
        listeners: &'a [Listener],
        ring: &'a mut BufRing,
        config: &Config,
        capacity: u32,
        now: Instant,
    ) -> Self {
        let sends = (0..ring.count())
            .map(|_| SendSlot {
                // SAFETY: as in `DgramListener::new`.
                msghdr: unsafe { std::mem::zeroed() },
                iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
                control: SegmentControl::new(0),
                stamp_control: None,
                datagrams: 0,
            })
            .collect();
        DgramListeners {
            listeners: listeners
                .iter()
                .filter(|l| l.transport == Transport::Datagram)
                .map(|l| DgramListener::new(l, config.timestamps))
                .collect(),
            buffers: Buffers::new(ring),
            sends,
            rules: Datagrams::new(config, capacity as usize, now),
        }
    }

    /// Arms every listener's receive.
    pub fn arm_all(&mut self, ctx: &mut Ctx<'a>) {
        for listener in 0..self.listeners.len() {
            self.arm(ctx, listener);
        }
    }

    /// Shutdown: stops receiving.
    pub fn stop_receiving(&mut self, ctx: &mut Ctx<'a>) {
        for (i, l) in self.listeners.iter_mut().enumerate() {
            l.backoff = false;
            let target = Token::new(Kind::DgramRecv, i as u32, 0).encode();
            let token = Token::new(Kind::Cancel, u32::MAX, 0).encode();
            push(ctx, opcode::AsyncCancel::new(target).build().user_data(token));
        }
    }

    /// The periodic tick: re-arms the receives that failed.
    pub fn on_tick(&mut self, ctx: &mut Ctx<'a>) {
        for listener in 0..self.listeners.len() {
            if std::mem::take(&mut self.listeners[listener].backoff) && !ctx.draining() {
                self.arm(ctx, listener);
            }
        }
    }

    /// Makes the buffers given back visible to the kernel (once per loop turn).
    pub fn publish_buffers(&mut self) {
        self.buffers.publish();
    }

    /// Gives up every buffer handle without returning it (the worker is leaving); returns
    /// how many were lent or deferred.
    pub fn abandon(&mut self) -> u64 {
        self.buffers.abandon()
    }

    /// Datagram buffers came back (or the ring has some): re-arm the receives that ran
    /// dry.
    pub fn rearm_starved(&mut self, ctx: &mut Ctx<'a>) {
        if !self.listeners.iter().any(|l| l.starved)
            || !(self.buffers.take_returned() || self.buffers.available() > 0)
        {
            return;
        }
        self.buffers.publish();
        for listener in 0..self.listeners.len() {
            if std::mem::take(&mut self.listeners[listener].starved) && !ctx.draining() {
                self.arm(ctx, listener);
            }
        }
    }

    fn arm(&mut self, ctx: &mut Ctx<'a>, listener: usize) {
        let group = self.buffers.group();
        let l = &mut self.listeners[listener];
        if l.armed {
            return;
        }
        l.armed = true;
        let fd = types::Fd(l.listener.fd.as_raw_fd());
        let msghdr = &*l.msghdr as *const libc::msghdr;
        let token = Token::new(Kind::DgramRecv, listener as u32, 0).encode();
        // MSG_TRUNC: the kernel reports a datagram's full length even when it did not
        // fit, so a cut GRO train counts every datagram it held.
        let entry = opcode::RecvMsgMulti::new(fd, msghdr, group).flags(libc::MSG_TRUNC as u32).build();
        push(ctx, entry.user_data(token));
    }

    pub fn on_recv(&mut self, ctx: &mut Ctx<'a>, listener: usize, res: i32, flags: u32, more: bool) {
        let Some(l) = self.listeners.get_mut(listener) else {
            // Not a receive of ours (tokens name only our listeners): count it, and give
            // back a buffer it may carry.
            ctx.counters.err_other += 1;
            if let Some(buf) =
                cqueue::buffer_select(flags).and_then(|bid| self.buffers.take(bid, &mut ctx.counters))
            {
                self.buffers.release(buf, &mut ctx.counters);
            }
            return;
        };
        if !more {
            l.armed = false;
        }
        let buf = match cqueue::buffer_select(flags) {
            Some(bid) => match self.buffers.take(bid, &mut ctx.counters) {
                Some(buf) => Some(buf),
                None => {
                    // Not a buffer we can trust: the datagram is ignored; a receive that
                    // ended is re-armed at the next tick.
                    if !more {
                        l.backoff = true;
                    }
                    return;
                }
            },
            None => None,
        };
        match (res, buf) {
            (n, Some(buf)) if n >= 0 => self.on_datagram(ctx, listener, buf, n as u32),
            (n, buf) => {
                if let Some(buf) = buf {
                    self.buffers.release(buf, &mut ctx.counters);
                }
                match -n {
                    libc::ENOBUFS => {
                        l.starved = true;
                        ctx.counters.enobufs += 1;
                    }
                    libc::ECANCELED => {}
                    _ => {
                        ctx.counters.err_other += 1;
                        if !more {
                            // Re-armed at the next tick: a receive that keeps failing
                            // must not spin.
                            l.backoff = true;
                        }
                    }
                }
            }
        }
        let l = &self.listeners[listener];
        let ended_cleanly = res >= 0 && !l.armed && !l.starved;
        if ended_cleanly && !ctx.draining() {
            self.arm(ctx, listener);
        }
    }

    fn on_datagram(&mut self, ctx: &mut Ctx<'a>, listener: usize, buf: Buf, len: u32) {
        let l = &self.listeners[listener];
        let (received, reply, rx_stamp) = read_recvmsg(&l.msghdr, &self.buffers, &buf, len);
        let (fd, mode) = (types::Fd(l.listener.fd.as_raw_fd()), l.listener.mode);
        if let (Some(stamps), true) = (&mut ctx.stamps, l.stamps.rx) {
            stamps.received(rx_stamp, ctx.now, &mut ctx.counters);
        }
        let c = &mut ctx.counters;
        let echo = match self.rules.judge(mode, received, ctx.now, c) {
            Verdict::Reply(echo) => echo,
            Verdict::Discard | Verdict::Truncated | Verdict::Unanswerable | Verdict::RateLimited => {
                self.buffers.release(buf, c);
                return;
            }
        };
        let Some(r) = reply else {
            // The rules answer only a datagram with a source, and then `reply` is there;
            // were it not, the datagram still gets its one outcome.
            let refused = Err(std::io::ErrorKind::InvalidInput.into());
            Datagrams::replied(c, echo.datagrams, refused);
            self.buffers.release(buf, c);
            return;
        };
        let bid = self.buffers.lend(buf, c);
        let Some(slot) = self.sends.get_mut(usize::from(bid)) else {
            // An id beyond the pool cannot come from `take`; count and drop all the same.
            Datagrams::replied(c, echo.datagrams, Err(std::io::ErrorKind::InvalidInput.into()));
            if let Some(buf) = self.buffers.reclaim(bid, c) {
                self.buffers.release(buf, c);
            }
            return;
        };
        slot.datagrams = echo.datagrams;
        // A reply may be the listener's sampled send (one in flight per listener).
        let l = &mut self.listeners[listener];
        let sample = match &mut ctx.stamps {
            Some(stamps) if l.stamps.tx && l.sample.is_none() => stamps.sample(ctx.now),
            _ => None,
        };
        slot.stamp_control = sample.map(|key| TxControl::new(Some(key), echo.segment));
        if let Some(key) = sample {
            l.sample = Some((key, ctx.now));
        }
        let token = Token { kind: Kind::DgramSend, slot: listener as u32, generation: 0, bid };
        // A reply that cannot go at once (a peer's full queue) is dropped and counted:
        // waiting would hold the buffer and, for a Unix datagram peer that never reads,
        // the listener.
        let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
        let entry = match (echo, &slot.stamp_control) {
            (Echo { segment, bytes, .. }, stamp_control) if segment.is_some() || stamp_control.is_some() => {
                slot.iov = libc::iovec { iov_base: r.payload as *mut libc::c_void, iov_len: bytes };
                slot.msghdr.msg_name = r.name as *mut libc::c_void;
                slot.msghdr.msg_namelen = r.namelen;
                slot.msghdr.msg_iov = &mut slot.iov;
                slot.msghdr.msg_iovlen = 1;
                let control = match stamp_control {
                    Some(stamp_control) => stamp_control.as_bytes(),
                    None => {
                        slot.control = SegmentControl::new(segment.unwrap_or(0));
                        slot.control.as_bytes()
                    }
                };
                slot.msghdr.msg_control = control.as_ptr() as *mut libc::c_void;
                slot.msghdr.msg_controllen = control.len() as _;
                opcode::SendMsg::new(fd, &slot.msghdr).flags(flags as u32).build()
            }
            (Echo { bytes, .. }, _) => opcode::Send::new(fd, r.payload, bytes as u32)
                .dest_addr(r.name)
                .dest_addr_len(r.namelen)
                .flags(flags)
                .build(),
        };
        push(ctx, entry.user_data(token.encode()));
    }

    pub fn on_sent(&mut self, ctx: &mut Ctx<'a>, token: Token, res: i32) {
        let sent = if res >= 0 { Ok(res as usize) } else { Err(std::io::Error::from_raw_os_error(-res)) };
        let sampled =
            self.sends.get_mut(usize::from(token.bid)).and_then(|s| s.stamp_control.take()).is_some();
        if sampled {
            self.take_send_stamp(ctx, token.slot as usize, res >= 0);
        }
        let c = &mut ctx.counters;
        let datagrams = self.sends.get(usize::from(token.bid)).map_or(1, |s| s.datagrams);
        Datagrams::replied(c, datagrams, sent);
        if let Some(buf) = self.buffers.reclaim(token.bid, c) {
            self.buffers.release(buf, c);
        }
    }
}

impl DgramListeners<'_> {
    /// The sampled send of `listener` completed (`went`: it was sent): reads its stamp
    /// from the error queue, where the kernel puts it as the datagram leaves (before the
    /// send returns on loopback; a stamp not there yet is a missing one). Stamps of other
    /// keys (an earlier sample's that came late) are read and dropped.
    fn take_send_stamp(&mut self, ctx: &mut Ctx<'_>, listener: usize, went: bool) {
        /// Error-queue entries read per sampled send at most.
        const MAX_READ: usize = 4;
        let Some(l) = self.listeners.get_mut(listener) else { return };
        let Some((key, queued)) = l.sample.take() else { return };
        let Some(stamps) = &mut ctx.stamps else { return };
        let mut stamp = None;
        tstamp::read_tx_stamps(l.listener.fd.as_fd(), MAX_READ, |k, real| {
            if k == key {
                stamp = Some(real);
            }
        });
        if went {
            stamps.sent(queued, stamp, &mut ctx.counters);
        }
    }
}

/// Reads a datagram (or GRO train) in `buf` (`len` bytes: the recvmsg header, the source
/// address, the control messages, the payload) as the rules see it, where a reply would
/// point, and the kernel's arrival stamp if it carries one.
fn read_recvmsg(
    msghdr: &libc::msghdr,
    buffers: &Buffers<'_>,
    buf: &Buf,
    len: u32,
) -> (Received, Option<Reply>, Option<i128>) {
    let Ok(out) = io_uring::types::RecvMsgOut::parse(buffers.bytes(buf, len), msghdr) else {
        // Not even a header: nothing of it can be echoed whole.
        return (Received::single(1, 0, None), None, None);
    };
    let payload = out.payload_data();
    let name = out.name_data();
    let source = if out.is_name_data_truncated() { None } else { SourceKey::from_sockaddr(name) };
    // The kernel reports the datagram's full length; should it report only what fit,
    // a truncated one still counts as longer than the buffer.
    let fit = payload.len() + usize::from(out.is_payload_truncated());
    let full = (out.incoming_payload_len() as usize).max(fit);
    let segment = crate::gso::gro_segment(out.control_data());
    let received = Received { len: full, captured: payload.len(), segment, source };
    let reply = source.map(|_| Reply {
        payload: payload.as_ptr(),
        name: name.as_ptr().cast(),
        namelen: name.len() as u32,
    });
    (received, reply, tstamp::rx_stamp(out.control_data()))
}
