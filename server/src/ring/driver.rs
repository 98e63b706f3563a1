//! The submit/complete half of a ring, split once so that the queues stay mapped and the
//! registered ring fd (which saves a descriptor lookup per `io_uring_enter`) stays in use.
//!
//! Invariant: an entry accepted by [`Driver::push`] reaches the kernel at the latest at the
//! next [`Driver::wait`]; while the submission queue is full and the kernel pushes back,
//! accepted entries wait in a bounded backlog, in order. `inflight` counts every accepted
//! entry until its last completion (one without `MORE`) has been taken.

use io_uring::{CompletionQueue, IoUring, SubmissionQueue, Submitter, cqueue, squeue, types};
use std::collections::VecDeque;
use std::io;
use std::time::Duration;

/// Most entries waiting for room in the submission queue. Each push follows a completion
/// or an event of ours, so reaching this means the kernel has stopped taking entries.
const MAX_BACKLOG: usize = 1 << 16;

/// Why an entry could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// `io_uring_enter` failed for a reason that waiting will not cure.
    #[error("io_uring submit failed: {0}")]
    Submit(io::Error),
    /// The kernel has taken no entry for so long that the backlog is full.
    #[error("io_uring takes no more submissions ({MAX_BACKLOG} entries waiting)")]
    Backlog,
}

/// Submits and reaps for one ring.
pub struct Driver<'a> {
    submitter: Submitter<'a>,
    sq: SubmissionQueue<'a>,
    cq: CompletionQueue<'a>,
    inflight: u64,
    backlog: VecDeque<squeue::Entry>,
    /// The ring has a kernel submission-polling thread.
    sqpoll: bool,
}

impl<'a> Driver<'a> {
    /// Splits `ring` for driving.
    pub(crate) fn new(ring: &'a mut IoUring) -> Driver<'a> {
        let sqpoll = ring.params().is_setup_sqpoll();
        let (mut submitter, sq, cq) = ring.split();
        // Best effort: without it every enter looks the descriptor up.
        let _ = submitter.register_ring_fd();
        Driver { submitter, sq, cq, inflight: 0, backlog: VecDeque::new(), sqpoll }
    }

    /// Operations accepted whose last completion has not arrived.
    pub fn inflight(&self) -> u64 {
        self.inflight
    }

    /// Queues an SQE, flushing the submission queue to the kernel when it is full.
    ///
    /// # Safety
    /// Every buffer, address or structure `entry` points to must stay valid, and not be
    /// written by user space where the kernel writes it, until the operation's last
    /// completion has been taken from [`Driver::completion`] (or the ring is dropped).
    pub unsafe fn push(&mut self, entry: &squeue::Entry) -> Result<(), PushError> {
        if self.backlog.is_empty() {
            // SAFETY: the caller guarantees the entry's memory outlives the operation.
            if unsafe { self.sq.push(entry) }.is_ok() {
                self.inflight += 1;
                return Ok(());
            }
            self.flush()?;
            // SAFETY: as above.
            if unsafe { self.sq.push(entry) }.is_ok() {
                self.inflight += 1;
                return Ok(());
            }
        }
        if self.backlog.len() >= MAX_BACKLOG {
            return Err(PushError::Backlog);
        }
        self.backlog.push_back(entry.clone());
        self.inflight += 1;
        Ok(())
    }

    /// Queues a link chain (`IO_LINK` on every entry but the last) so that it reaches the
    /// kernel in one submission: a chain that a flush cut in two would run as two chains,
    /// the second not waiting for the first. Only a kernel that takes no entries even
    /// after a flush (or a chain longer than the queue) sends it to the backlog, where a
    /// later flush may cut it.
    ///
    /// # Safety
    /// As [`Driver::push`], for every entry.
    pub unsafe fn push_chain(&mut self, entries: &[squeue::Entry]) -> Result<(), PushError> {
        if self.backlog.is_empty() {
            // SAFETY: the caller guarantees every entry's memory outlives its operation.
            if unsafe { self.sq.push_multiple(entries) }.is_ok() {
                self.inflight += entries.len() as u64;
                return Ok(());
            }
            self.flush()?;
            // SAFETY: as above.
            if unsafe { self.sq.push_multiple(entries) }.is_ok() {
                self.inflight += entries.len() as u64;
                return Ok(());
            }
        }
        for entry in entries {
            // SAFETY: as above.
            unsafe { self.push(entry) }?;
        }
        Ok(())
    }

    /// Hands the submission queue to the kernel. A kernel that pushes back (EBUSY, EAGAIN:
    /// completions must be reaped first) or a signal is not an error: the entries stay.
    fn flush(&mut self) -> Result<(), PushError> {
        self.sq.sync();
        // The head too: the kernel posts this submission's answers behind it.
        self.cq.sync();
        match self.submitter.submit() {
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => return Err(PushError::Submit(e)),
        }
        self.sq.sync();
        self.cq.sync();
        Ok(())
    }

    /// Moves backlogged entries into the submission queue while it has room.
    fn drain_backlog(&mut self) -> Result<(), PushError> {
        while let Some(entry) = self.backlog.front() {
            // SAFETY: `push` accepted this entry under its contract, which holds until the
            // operation completes; it has not been submitted yet.
            if unsafe { self.sq.push(entry) }.is_err() {
                self.flush()?;
                if self.sq.is_full() {
                    return Ok(());
                }
                continue;
            }
            self.backlog.pop_front();
        }
        Ok(())
    }

    /// Before an `io_uring_enter`: the backlog into the submission queue, which is synced;
    /// and the completions taken since the last enter handed back. The kernel counts a
    /// wait's completions from the head it was last told: with a stale head, a wait for one
    /// completion returns at once, on the entries already taken, and costs a second enter.
    fn before_enter(&mut self) -> io::Result<()> {
        self.drain_backlog().map_err(|e| match e {
            PushError::Submit(e) => e,
            PushError::Backlog => io::Error::other(e),
        })?;
        self.sq.sync();
        self.cq.sync();
        Ok(())
    }

    /// After an `io_uring_enter`: interruptions and timeouts are not errors; both queues
    /// synced.
    fn after_enter(&mut self, res: io::Result<usize>) -> io::Result<()> {
        match res {
            Ok(_) => {}
            Err(e) if transient(&e) || e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) => return Err(e),
        }
        self.sq.sync();
        self.cq.sync();
        Ok(())
    }

    /// Submits what is queued and returns at once, having let the kernel post whatever
    /// completions are ready (busy polling: the caller loops). With DEFER_TASKRUN (and no
    /// TASKRUN flag) the kernel runs completion work only inside an `io_uring_enter` with
    /// GETEVENTS, so a plain submit would never see a completion: this enters with
    /// GETEVENTS and a minimum of zero.
    pub fn spin(&mut self) -> io::Result<()> {
        self.before_enter()?;
        let res = if self.sqpoll {
            // Wakes the polling thread if it sleeps; completions need no enter.
            self.submitter.submit()
        } else {
            /// `IORING_ENTER_GETEVENTS` (include/uapi/linux/io_uring.h).
            const GETEVENTS: u32 = 1;
            let to_submit = self.sq.len() as u32;
            // SAFETY: no extra argument is passed (`arg` is None); every queued SQE came
            // through `push`, whose contract keeps what it points to alive until its
            // last completion.
            unsafe { self.submitter.enter::<libc::sigset_t>(to_submit, 0, GETEVENTS, None) }
        };
        self.after_enter(res)
    }

    /// Submits what is queued and waits for at least `want` completions, or until
    /// `timeout` passes. Interruptions and timeouts are not errors.
    pub fn wait(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        self.before_enter()?;
        let res = match timeout {
            None => self.submitter.submit_and_wait(want),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.submitter.submit_with_args(want, &args)
            }
        };
        self.after_enter(res)
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

#[cfg(test)]
mod tests {
    use super::Driver;
    use crate::ring::{Ring, RingOptions, UringError};
    use io_uring::{opcode, types};
    use std::time::{Duration, Instant};

    /// Every wait in these tests is bounded by this; one that reaches it has waited for
    /// a completion that was never coming.
    const BOUND: Duration = Duration::from_secs(5);

    fn ring() -> Option<Ring> {
        let options = RingOptions { entries: 8, sqpoll: false, buffers: 1, buffer_size: 64, dgram: None };
        match Ring::new(options) {
            Ok(ring) => Some(ring),
            // Only a machine without io_uring may skip, and only when the run allows it.
            Err(e @ UringError::Unavailable { .. }) => {
                testkit::unavailable("io_uring", &e.to_string());
                None
            }
            Err(e) => panic!("ring: {e}"),
        }
    }

    /// Waits for one completion, within [`BOUND`], and takes every completion there is.
    fn wait_and_take(driver: &mut Driver<'_>) -> Vec<u64> {
        let start = Instant::now();
        driver.wait(1, Some(BOUND)).unwrap();
        assert!(start.elapsed() < BOUND - Duration::from_secs(1), "the wait ran to its bound");
        std::iter::from_fn(|| driver.completion().map(|c| c.user_data())).collect()
    }

    /// A wait counts only completions not yet taken: once one is taken, the next wait for
    /// one returns with a new one, not at once on the kernel's stale view of the queue.
    #[test]
    fn a_wait_returns_with_a_completion_not_yet_taken() {
        let Some(mut ring) = ring() else { return };
        let mut driver = ring.split().driver;
        // SAFETY: a no-op points at no memory.
        unsafe { driver.push(&opcode::Nop::new().build().user_data(1)) }.unwrap();
        assert_eq!(wait_and_take(&mut driver), [1]);

        let five_ms = types::Timespec::new().nsec(5_000_000);
        // SAFETY: the kernel copies the interval when it takes the entry, inside `wait`,
        // while `five_ms` lives.
        unsafe { driver.push(&opcode::Timeout::new(&five_ms).build().user_data(2)) }.unwrap();
        assert_eq!(wait_and_take(&mut driver), [2], "the wait returned before the timeout's completion");
        assert_eq!(driver.inflight(), 0);
    }

    /// A chain that does not fit the room left in the submission queue goes whole after a
    /// flush: its first entry's failure still cancels the second. Cut in two submissions,
    /// the second would run on its own.
    #[test]
    fn a_chain_reaches_the_kernel_whole() {
        let Some(mut ring) = ring() else { return };
        let mut driver = ring.split().driver;
        for i in 0..7 {
            // SAFETY: a no-op points at no memory.
            unsafe { driver.push(&opcode::Nop::new().build().user_data(10 + i)) }.unwrap();
        }
        let chain = [
            opcode::Close::new(types::Fd(-1)).build().flags(io_uring::squeue::Flags::IO_LINK).user_data(1),
            opcode::Nop::new().build().user_data(2),
        ];
        // SAFETY: a close of no descriptor and a no-op point at no memory.
        unsafe { driver.push_chain(&chain) }.unwrap();
        let mut results = Vec::new();
        let start = Instant::now();
        while results.len() < 9 && start.elapsed() < BOUND {
            driver.wait(1, Some(BOUND)).unwrap();
            results.extend(std::iter::from_fn(|| driver.completion().map(|c| (c.user_data(), c.result()))));
        }
        results.sort();
        assert_eq!(results[..2], [(1, -libc::EBADF), (2, -libc::ECANCELED)], "{results:?}");
        assert_eq!(results.len(), 9, "{results:?}");
        assert_eq!(driver.inflight(), 0);
    }
}
