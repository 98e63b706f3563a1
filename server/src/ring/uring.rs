//! [`Ring`]: an io_uring and the provided buffer rings registered with it, owned together
//! and built with the best flags the kernel takes.
//!
//! Invariant: a [`Ring`] drops its io_uring before its [`BufRing`]s, so the kernel never
//! writes a buffer after its memory is unmapped. No other code pairs the two by hand.

use super::buf_ring::BufRing;
use super::driver::Driver;
use super::error::UringError;
use io_uring::IoUring;
use std::io;

/// How a ring was set up, for the start-up log and the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRun {
    /// SINGLE_ISSUER + DEFER_TASKRUN: completions run only when we wait.
    Deferred,
    /// COOP_TASKRUN: fewer interrupts, older kernels.
    Cooperative,
    /// SQPOLL: a kernel thread submits.
    SqPoll,
    /// No special flags.
    Plain,
}

/// What a [`Ring`] is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingOptions {
    /// Submission queue entries (the completion queue gets four times as many).
    pub entries: u32,
    /// Use a kernel submission-polling thread.
    pub sqpoll: bool,
    /// Provided buffers (a power of two, at most 32768).
    pub buffers: u16,
    /// Bytes per provided buffer.
    pub buffer_size: u32,
    /// A second buffer group ([`DGRAM_GROUP`]) of this many buffers of this size, for
    /// datagrams, whose buffers must hold the largest datagram whole.
    pub dgram: Option<(u16, u32)>,
}

/// The buffer group of [`RingOptions::dgram`].
pub const DGRAM_GROUP: u16 = 1;

/// The parts of a [`Ring`] a loop works with.
pub struct Parts<'a> {
    /// Submits and reaps.
    pub driver: Driver<'a>,
    /// The provided buffers (group 0).
    pub buffers: &'a mut BufRing,
    /// The datagram buffers, when asked for.
    pub dgram_buffers: Option<&'a mut BufRing>,
}

/// An io_uring and the provided buffer rings registered with it (group 0, and perhaps a
/// datagram group), owned together so that they are dropped in the only safe order. Must be created on the thread that
/// submits to it (SINGLE_ISSUER).
pub struct Ring {
    // Field order is drop order: the io_uring goes first, so the kernel has stopped using
    // the buffers before their mapping is unmapped.
    uring: IoUring,
    buf_ring: BufRing,
    dgram_ring: Option<BufRing>,
    task_run: TaskRun,
}

impl Ring {
    /// Builds the ring with the best flags the kernel takes and registers the buffers.
    pub fn new(options: RingOptions) -> Result<Ring, UringError> {
        let buf_ring =
            BufRing::new(options.buffers, options.buffer_size, 0).map_err(|error| UringError::Setup {
                step: format!("mapping {} buffers of {} B", options.buffers, options.buffer_size),
                error,
            })?;
        let dgram_ring = match options.dgram {
            Some((count, size)) => Some(BufRing::new(count, size, DGRAM_GROUP).map_err(|error| {
                UringError::Setup { step: format!("mapping {count} datagram buffers of {size} B"), error }
            })?),
            None => None,
        };
        let (uring, task_run) = build(options.entries, options.sqpoll)?;
        let mut ring = Ring { uring, buf_ring, dgram_ring, task_run };
        let missing = |error| UringError::Missing { feature: "provided buffer rings", kernel: "5.19", error };
        // SAFETY: `ring` owns them all, and its field order drops the io_uring first.
        unsafe { ring.buf_ring.register(&ring.uring.submitter()) }.map_err(missing)?;
        if let Some(dgram) = &mut ring.dgram_ring {
            // SAFETY: as above.
            unsafe { dgram.register(&ring.uring.submitter()) }.map_err(missing)?;
        }
        Ok(ring)
    }

    /// How the ring was set up.
    pub fn task_run(&self) -> TaskRun {
        self.task_run
    }

    /// Whether the kernel supports the operation `opcode` (false when it cannot say).
    pub fn supports(&self, opcode: u8) -> bool {
        let mut probe = io_uring::Probe::new();
        self.uring.submitter().register_probe(&mut probe).is_ok() && probe.is_supported(opcode)
    }

    /// Registers a sparse table of `slots` direct descriptors.
    pub fn register_files_sparse(&self, slots: u32) -> io::Result<()> {
        self.uring.submitter().register_files_sparse(slots)
    }

    /// The submit/complete half and the buffers. Call once: the driver registers the
    /// ring's descriptor.
    pub fn split(&mut self) -> Parts<'_> {
        Parts {
            driver: Driver::new(&mut self.uring),
            buffers: &mut self.buf_ring,
            dgram_buffers: self.dgram_ring.as_mut(),
        }
    }

    /// Gives up the ring and its buffers without freeing them: for an exit while the
    /// kernel may still hold operations that write into them.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

/// Builds a bare ring of `entries` SQEs, trying SINGLE_ISSUER + DEFER_TASKRUN, then
/// COOP_TASKRUN, then no flags.
fn build(entries: u32, sqpoll: bool) -> Result<(IoUring, TaskRun), UringError> {
    let cq = entries.saturating_mul(4);
    let unavailable =
        |error| UringError::Unavailable { error, io_uring_disabled: crate::sys::io_uring_disabled_sysctl() };
    if sqpoll {
        return IoUring::builder()
            .setup_cqsize(cq)
            .setup_sqpoll(50)
            .setup_single_issuer()
            .build(entries)
            .map(|r| (r, TaskRun::SqPoll))
            .map_err(unavailable);
    }
    let mut last_err = None;
    for mode in [TaskRun::Deferred, TaskRun::Cooperative, TaskRun::Plain] {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq);
        match mode {
            TaskRun::Deferred => {
                b.setup_single_issuer().setup_defer_taskrun();
            }
            TaskRun::Cooperative => {
                b.setup_coop_taskrun().setup_taskrun_flag();
            }
            _ => {}
        }
        match b.build(entries) {
            Ok(r) => return Ok((r, mode)),
            // EINVAL: flags this kernel does not know; try fewer. Anything else is final.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_err = Some(e),
            Err(e) => return Err(unavailable(e)),
        }
    }
    Err(unavailable(last_err.unwrap_or_else(|| io::Error::other("no ring"))))
}
