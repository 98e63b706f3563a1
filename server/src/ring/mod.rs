//! The io_uring plumbing shared by the server and the load generator: building a ring with
//! the best flags the kernel takes, probing features once, the provided buffer ring, and
//! SQE fields the `io-uring` crate does not expose yet.
//!
//! Invariant: a [`Ring`] drops its `IoUring` before its [`BufRing`], so the kernel never
//! writes a buffer after the memory is gone.

pub mod buf_ring;

pub use buf_ring::BufRing;

use io_uring::{CompletionQueue, IoUring, SubmissionQueue, Submitter, cqueue, opcode, squeue, types};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

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

/// Why io_uring cannot be used here.
#[derive(Debug, thiserror::Error)]
pub enum UringError {
    /// The kernel refused to create a ring at all.
    #[error(
        "io_uring is unavailable: {source}{}",
        sysctl_hint(*io_uring_disabled)
    )]
    Unavailable {
        /// What io_uring_setup returned.
        source: io::Error,
        /// The value of kernel.io_uring_disabled, when the kernel has it.
        io_uring_disabled: Option<u8>,
    },
    /// A ring was created but a feature the engine needs is missing.
    #[error("io_uring lacks {feature} (needs Linux {kernel} or later): {source}")]
    Missing {
        /// The feature.
        feature: &'static str,
        /// The first kernel version that has it.
        kernel: &'static str,
        /// The error the kernel gave.
        source: io::Error,
    },
}

fn sysctl_hint(disabled: Option<u8>) -> String {
    match disabled {
        Some(1) => " (kernel.io_uring_disabled = 1: only processes in kernel.io_uring_group may use it)".into(),
        Some(2) => " (kernel.io_uring_disabled = 2: io_uring is switched off on this machine)".into(),
        _ => " (a kernel built without io_uring, or a seccomp profile such as a container runtime's default, blocks it)".into(),
    }
}

/// Kernel features found by [`probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// Multishot receive with a total byte limit (IORING_RECV_MSHOT_LIM, Linux 6.17):
    /// the receive ends by itself after that many bytes, which makes the per-connection
    /// bound exact.
    pub recv_total_limit: bool,
    /// SEND_ZC.
    pub send_zc: bool,
}

/// Builds a ring of `entries` SQEs, trying SINGLE_ISSUER + DEFER_TASKRUN, then
/// COOP_TASKRUN, then no flags. Must be called on the thread that will submit.
pub fn build(entries: u32, sqpoll: bool) -> Result<(IoUring, TaskRun), UringError> {
    let cq = entries.saturating_mul(4);
    let unavailable = |source| UringError::Unavailable {
        source,
        io_uring_disabled: crate::sys::io_uring_disabled_sysctl(),
    };
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

/// Creates a small ring and checks the features the engine relies on; returns which
/// optional ones the kernel has.
///
/// The probe runs on a thread of its own: tearing down a DEFER_TASKRUN ring queues task
/// work on the thread that created it, and a blocking socket call with a timeout on that
/// thread would then fail with a spurious EINTR (seen on Linux 6.18).
pub fn probe() -> Result<Features, UringError> {
    std::thread::scope(|s| s.spawn(probe_here).join()).unwrap_or_else(|_| {
        Err(UringError::Missing {
            feature: "a probe thread",
            kernel: "any",
            source: io::Error::other("probe panicked"),
        })
    })
}

fn probe_here() -> Result<Features, UringError> {
    // Declared before the ring, so dropped after it on every path out of this function.
    let mut buf_ring = BufRing::new(2, 64, 0).map_err(|source| UringError::Missing {
        feature: "memory for a buffer ring",
        kernel: "any",
        source,
    })?;
    let (mut ring, _) = build(8, false)?;
    // SAFETY: `ring` is declared after `buf_ring` and so dropped before it.
    unsafe { buf_ring.register(&ring.submitter()) }.map_err(|source| UringError::Missing {
        feature: "provided buffer rings",
        kernel: "5.19",
        source,
    })?;
    let mut probe = io_uring::Probe::new();
    let _ = ring.submitter().register_probe(&mut probe);
    let send_zc = probe.is_supported(opcode::SendZc::CODE);

    let (a, b) = std::os::unix::net::UnixStream::pair().map_err(|source| UringError::Missing {
        feature: "socketpair",
        kernel: "any",
        source,
    })?;
    use std::io::Write;
    (&a).write_all(b"xy").map_err(|source| UringError::Missing {
        feature: "socketpair",
        kernel: "any",
        source,
    })?;
    let recv = recv_multishot(types::Fd(b.as_raw_fd()), buf_ring.group(), Some(1)).user_data(1);
    // SAFETY: the receive writes into `buf_ring`, which outlives the ring (see above).
    unsafe { ring.submission().push(&recv) }.map_err(|_| UringError::Missing {
        feature: "submission queue space",
        kernel: "any",
        source: io::Error::other("queue full"),
    })?;
    ring.submit_and_wait(1).map_err(|source| UringError::Missing {
        feature: "io_uring_enter",
        kernel: "5.1",
        source,
    })?;
    let cqe: cqueue::Entry = ring.completion().next().ok_or_else(|| UringError::Missing {
        feature: "completion",
        kernel: "5.1",
        source: io::Error::other("no completion"),
    })?;
    // With the limit, the receive ends (no MORE) once a read reaches it; that read itself
    // is not cut short, so it may carry up to a buffer's worth past the limit. A kernel
    // without the feature rejects the SQE (EINVAL) or leaves the receive armed (MORE).
    let recv_total_limit = cqe.result() > 0 && !cqueue::more(cqe.flags());
    if cqe.result() < 0 && cqe.result() != -libc::EINVAL {
        return Err(UringError::Missing {
            feature: "multishot receive",
            kernel: "6.0",
            source: io::Error::from_raw_os_error(-cqe.result()),
        });
    }
    if cqueue::more(cqe.flags()) {
        // The limit was ignored and the receive is still armed: cancel it before the ring
        // goes away.
        let cancel = opcode::AsyncCancel::new(1).build().user_data(2);
        // SAFETY: a cancel SQE references no memory.
        let _ = unsafe { ring.submission().push(&cancel) };
        let _ = ring.submit_and_wait(2);
    }
    drop(ring);
    Ok(Features { recv_total_limit, send_zc })
}

/// The submit/complete half of a ring, split once so that the queues stay mapped and the
/// registered ring fd (which saves a descriptor lookup per `io_uring_enter`) stays in use.
/// It counts operations in flight: one per SQE pushed, until its last completion (one
/// without `MORE`) comes back.
pub struct Driver<'a> {
    submitter: Submitter<'a>,
    sq: SubmissionQueue<'a>,
    cq: CompletionQueue<'a>,
    inflight: u64,
}

impl<'a> Driver<'a> {
    /// Splits `ring` for driving.
    pub fn new(ring: &'a mut IoUring) -> Driver<'a> {
        let (mut submitter, sq, cq) = ring.split();
        let _ = submitter.register_ring_fd();
        Driver { submitter, sq, cq, inflight: 0 }
    }

    /// Operations submitted whose last completion has not arrived.
    pub fn inflight(&self) -> u64 {
        self.inflight
    }

    /// Queues an SQE, flushing the queue to the kernel when it is full.
    ///
    /// # Safety
    /// Every buffer, address or structure `entry` points to must stay valid, and not be
    /// written by user space where the kernel writes it, until the operation's last
    /// completion has been taken from [`Driver::completion`] (or the ring is dropped).
    pub unsafe fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: the caller guarantees the entry's memory outlives the operation.
            if unsafe { self.sq.push(entry) }.is_ok() {
                self.inflight += 1;
                return;
            }
            self.sq.sync();
            if let Err(e) = self.submitter.submit() {
                if !transient(&e) {
                    eprintln!("io_uring submit failed: {e}");
                }
            }
            self.sq.sync();
        }
    }

    /// Submits what is queued and waits for at least `want` completions, or until
    /// `timeout` passes. Interruptions and timeouts are not errors.
    pub fn wait(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        self.sq.sync();
        let res = match timeout {
            None => self.submitter.submit_and_wait(want),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.submitter.submit_with_args(want, &args)
            }
        };
        match res {
            Ok(_) => {}
            Err(e) if transient(&e) || e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) => return Err(e),
        }
        self.sq.sync();
        self.cq.sync();
        Ok(())
    }

    /// The next completion, if any; counts the operation finished when it is its last.
    pub fn completion(&mut self) -> Option<cqueue::Entry> {
        let cqe = self.cq.next()?;
        if !cqueue::more(cqe.flags()) {
            self.inflight = self.inflight.saturating_sub(1);
        }
        Some(cqe)
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN))
}

/// A multishot receive into the buffer group. With `total_limit`, the receive ends by
/// itself (a completion without `MORE`) once at least that many bytes arrived; the last
/// read is not shortened, so up to `limit - 1 + buffer size` bytes may arrive in all.
/// Only pass a limit when [`Features::recv_total_limit`] is true.
pub fn recv_multishot(fd: impl Into<Target>, group: u16, total_limit: Option<u32>) -> squeue::Entry {
    let entry = match fd.into() {
        Target::Fd(fd) => opcode::RecvMulti::new(fd, group).build(),
        Target::Fixed(fd) => opcode::RecvMulti::new(fd, group).build(),
    };
    match total_limit {
        Some(limit) => set_optlen(entry, limit),
        None => entry,
    }
}

/// A file to operate on: a plain descriptor or a slot of the registered file table.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// A plain descriptor.
    Fd(types::Fd),
    /// A direct descriptor.
    Fixed(types::Fixed),
}

impl From<types::Fd> for Target {
    fn from(fd: types::Fd) -> Self {
        Target::Fd(fd)
    }
}

impl From<types::Fixed> for Target {
    fn from(fd: types::Fixed) -> Self {
        Target::Fixed(fd)
    }
}

/// Byte offset of `optlen` in `struct io_uring_sqe` (it shares the union with
/// `file_index` and `splice_fd_in`).
const SQE_OPTLEN_OFFSET: usize = 44;

/// Sets the SQE's `optlen` field, which multishot receive reads as its total byte limit.
fn set_optlen(entry: squeue::Entry, value: u32) -> squeue::Entry {
    const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the 64-byte `io_uring_sqe`, plain
    // data with no invalid bit patterns, so it round-trips through a byte array.
    let mut bytes: [u8; 64] = unsafe { std::mem::transmute(entry) };
    bytes[SQE_OPTLEN_OFFSET..SQE_OPTLEN_OFFSET + 4].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: as above; any bytes form a valid SQE value (the kernel validates it).
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(entry: squeue::Entry) -> [u8; 64] {
        // SAFETY: as in `set_optlen`: a repr(C) wrapper of the 64-byte plain-data SQE.
        unsafe { std::mem::transmute(entry) }
    }

    #[test]
    fn optlen_lands_in_file_index() {
        // file_index (stored + 1 for a fixed slot) shares optlen's place: set it through
        // the crate and compare the raw SQEs.
        let via_crate = opcode::Close::new(types::Fixed(41)).build();
        let via_patch = set_optlen(opcode::Close::new(types::Fixed(0)).build(), 42);
        assert_eq!(bytes(via_crate), bytes(via_patch));
        let plain = bytes(recv_multishot(types::Fd(3), 0, None));
        let limited = bytes(recv_multishot(types::Fd(3), 0, Some(1234)));
        assert_ne!(plain, limited);
        assert_eq!(limited[SQE_OPTLEN_OFFSET..SQE_OPTLEN_OFFSET + 4], 1234u32.to_ne_bytes());
    }

    #[test]
    fn probe_runs() {
        match probe() {
            Ok(f) => eprintln!("features: {f:?}"),
            // Only a machine without io_uring may skip; a ring that starts but lacks what
            // the engine needs is a failure.
            Err(e @ UringError::Unavailable { .. }) => eprintln!("skipped: io_uring unavailable here: {e}"),
            Err(e) => panic!("probe failed: {e}"),
        }
    }
}
