//! The stream part's state: [`Streams`] (the stream listeners and their accepts, the
//! connection table, the stream buffers, what the kernel can do), its construction, what
//! the worker reads of it, and [`push`], the one way its entries reach the ring.
//!
//! Invariant: every entry the stream part builds goes through [`push`], whose one
//! `unsafe` block relies on what each of them points to (see there).

use crate::backend::contract::{Listener, Shared, Transport};
use crate::backend::uring::buffers::Buffers;
use crate::backend::uring::conn::{Conn, Phase};
use crate::backend::uring::ctx::Ctx;
use crate::backend::uring::token::Token;
use crate::config::Config;
use crate::policy::Admission;
use crate::ring::Features;
use crate::tstamp::{self, TxControl};
use io_uring::squeue;
use std::time::Instant;

/// One stream listener and its accept.
pub(super) struct StreamListener<'a> {
    pub(super) listener: &'a Listener,
    pub(super) armed: bool,
    pub(super) multishot: bool,
    pub(super) cancelling: bool,
    /// The accept failed; re-armed at the next tick, so a failing accept (EMFILE, a full
    /// table) cannot spin.
    pub(super) backoff: bool,
    /// `--timestamps` on a TCP listener that took receive stamps: its connections
    /// inherit them.
    pub(super) stamped: bool,
}

/// A worker's stream listeners, its table of connections (one per direct-descriptor
/// slot) and the stream buffers they receive into.
pub(in crate::backend::uring) struct Streams<'a> {
    pub(super) shared: &'a Shared,
    /// Indexed by a token's `slot` for accepts.
    pub(super) listeners: Vec<StreamListener<'a>>,
    /// Indexed by direct-descriptor slot.
    pub(super) conns: Vec<Conn>,
    /// Direct-descriptor slots not holding a connection.
    pub(super) slots_free: u32,
    pub(super) buffers: Buffers<'a>,
    /// Connections whose receive ended with ENOBUFS, oldest first.
    pub(super) starved: Vec<u32>,
    /// Connections open (admitted, not yet closed).
    pub(super) open: u64,
    /// The kernel ends multishot receives at a byte limit (exact per-connection bound).
    pub(super) limits: bool,
    /// The kernel has SEND_ZC (`--zc-threshold` is ignored otherwise).
    pub(super) send_zc: bool,
    /// What a stamped connection's recvmsg reserves (no source address, room for the
    /// stamps); the kernel reads it when each receive is submitted. Boxed, so its address
    /// is stable for as long as the worker lives.
    pub(super) recv_msghdr: Box<libc::msghdr>,
    /// `--timestamps`: the sampled send in flight, and what it points at.
    pub(super) sample: Sample,
    pub(super) sample_slot: Box<SampleSlot>,
}

/// Queues `entry` on `ctx`.
///
/// Every entry of the stream part (the files of `stream/`) points at nothing, at a buffer
/// of the ring (held in a connection's queue until the send's last completion), at the
/// static source pattern, or at [`Streams::recv_msghdr`] or [`Streams::sample_slot`],
/// which live as long as the worker.
pub(super) fn push(ctx: &mut Ctx<'_>, entry: squeue::Entry) {
    // SAFETY: see above: nothing an entry of the stream part points to can go before its
    // last completion (the ring's buffers outlive its io_uring; a queued buffer leaves the
    // queue only when its send has completed, or with the worker's leak).
    unsafe { ctx.push(entry) }
}

impl<'a> Streams<'a> {
    /// The stream listeners among `listeners` (a token names one by its index among
    /// them), a table of `table` connection slots, and the stream buffers.
    pub fn new(
        shared: &'a Shared,
        listeners: &'a [Listener],
        buffers: Buffers<'a>,
        table: u32,
        features: Features,
    ) -> Streams<'a> {
        let listeners = listeners
            .iter()
            .filter(|l| l.transport == Transport::Stream)
            .map(|listener| StreamListener {
                listener,
                armed: false,
                multishot: false,
                cancelling: false,
                backoff: false,
                stamped: listener.stamps,
            })
            .collect();
        // SAFETY: msghdr is plain data; all-zero is an empty header.
        let mut recv_msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msghdr.msg_controllen = tstamp::RX_CONTROL_LEN as _;
        Streams {
            shared,
            listeners,
            conns: (0..table).map(|_| Conn::default()).collect(),
            slots_free: table,
            buffers,
            starved: Vec::new(),
            open: 0,
            limits: features.recv_total_limit,
            send_zc: features.send_zc,
            recv_msghdr,
            sample: Sample::Idle,
            sample_slot: SampleSlot::new(),
        }
    }

    pub(super) fn config(&self) -> &'a Config {
        let shared: &'a Shared = self.shared;
        &shared.config
    }

    /// `--max-conns` over the process (borrows the shared state, not `self`).
    pub(super) fn admission(&self) -> Admission<'a> {
        let shared: &'a Shared = self.shared;
        shared.admission()
    }

    /// Connections open.
    pub fn open(&self) -> u64 {
        self.open
    }

    /// No refused connection is still being closed.
    pub fn settled(&self) -> bool {
        !self.conns.iter().any(|c| c.phase != Phase::Free)
    }

    /// Makes the buffers given back visible to the kernel (once per loop turn).
    pub fn publish_buffers(&mut self) {
        self.buffers.publish();
    }

    /// Copies the open count and the buffer pool's levels into `c`.
    pub fn publish_levels(&self, c: &mut crate::stats::Counters) {
        c.open = self.open;
        self.buffers.publish_levels(c);
    }

    /// Gives up every buffer handle without returning it (the worker is leaving); returns
    /// how many lent or deferred ones there were (queued ones are the ring's to drop).
    pub fn abandon(&mut self) -> u64 {
        for conn in &mut self.conns {
            conn.queue.forget_all();
        }
        self.buffers.abandon()
    }

    /// The connection a token names, if it is still the same connection.
    pub(super) fn conn_mut(&mut self, token: Token) -> Option<&mut Conn> {
        self.conns
            .get_mut(token.slot as usize)
            .filter(|c| c.generation == token.generation && c.phase != Phase::Free)
    }
}

/// Room for one error-queue entry's control messages.
pub(super) const ERR_CONTROL: usize = 256;

/// What the sampled send and its error-queue read point at.
pub(in crate::backend::uring) struct SampleSlot {
    pub(super) msghdr: libc::msghdr,
    pub(super) iov: libc::iovec,
    pub(super) control: TxControl,
    pub(super) err_msghdr: libc::msghdr,
    pub(super) err_control: [u64; ERR_CONTROL / 8],
}

impl SampleSlot {
    pub fn new() -> Box<SampleSlot> {
        Box::new(SampleSlot {
            // SAFETY: msghdr is plain data; all-zero is an empty header.
            msghdr: unsafe { std::mem::zeroed() },
            iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
            control: TxControl::new(None, None),
            // SAFETY: as above.
            err_msghdr: unsafe { std::mem::zeroed() },
            err_control: [0; ERR_CONTROL / 8],
        })
    }
}

/// Where the worker's sampled send is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(in crate::backend::uring) enum Sample {
    /// None in flight.
    #[default]
    Idle,
    /// The send of connection `slot` (of `generation`) queued in the turn of `queued`.
    Sending { slot: u32, generation: u8, queued: Instant },
    /// Its error-queue read, the `reads`th.
    Reading { slot: u32, generation: u8, queued: Instant, reads: u8 },
}
