//! What the kernel's io_uring can do, found once at start-up: whether a ring can be made
//! at all (and if not, why: a sysctl, seccomp), and the optional features the engines use.

use super::error::UringError;
use super::sqe;
use super::uring::{Parts, Ring, RingOptions};
use io_uring::{cqueue, opcode, types};
use std::io;
use std::os::fd::AsRawFd;

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

/// Creates a small ring and checks the features the engines rely on; returns which
/// optional ones the kernel has.
///
/// The probe runs on a thread of its own: tearing down a DEFER_TASKRUN ring queues task
/// work on the thread that created it, and a blocking socket call with a timeout on that
/// thread would then fail with a spurious EINTR (seen on Linux 6.18).
pub fn probe() -> Result<Features, UringError> {
    std::thread::scope(|s| s.spawn(probe_here).join()).unwrap_or_else(|_| {
        Err(UringError::Setup { step: "probing io_uring".into(), error: io::Error::other("probe panicked") })
    })
}

fn probe_here() -> Result<Features, UringError> {
    let setup = |step: &str| {
        let step = step.to_owned();
        move |error| UringError::Setup { step, error }
    };
    let mut ring =
        Ring::new(RingOptions { entries: 8, sqpoll: false, buffers: 2, buffer_size: 64, dgram: None })?;
    let send_zc = ring.supports(opcode::SendZc::CODE);

    let (a, b) = std::os::unix::net::UnixStream::pair().map_err(setup("socketpair"))?;
    use std::io::Write;
    (&a).write_all(b"xy").map_err(setup("socketpair"))?;
    let Parts { mut driver, buffers: buf_ring, .. } = ring.split();
    let recv = sqe::recv_multishot(types::Fd(b.as_raw_fd()), buf_ring.group(), Some(1)).user_data(1);
    // SAFETY: the receive writes only into the ring's own buffers, which `Ring` keeps
    // mapped until its io_uring is gone; the socket is a file the kernel holds a
    // reference to while the receive is armed.
    unsafe { driver.push(&recv) }
        .map_err(|e| UringError::Setup { step: "probe".into(), error: io::Error::other(e) })?;
    driver.wait(1, None).map_err(|error| UringError::Missing {
        feature: "io_uring_enter",
        kernel: "5.1",
        error,
    })?;
    let cqe: cqueue::Entry = driver.completion().ok_or_else(|| UringError::Missing {
        feature: "completion",
        kernel: "5.1",
        error: io::Error::other("no completion"),
    })?;
    if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
        if let Ok(buf) = buf_ring.take(bid) {
            let _ = buf_ring.give_back(buf);
        }
    }
    // With the limit, the receive ends (no MORE) once a read reaches it; that read itself
    // is not cut short, so it may carry up to a buffer's worth past the limit. A kernel
    // without the feature rejects the SQE (EINVAL) or leaves the receive armed (MORE).
    let recv_total_limit = cqe.result() > 0 && !cqueue::more(cqe.flags());
    if cqe.result() < 0 && cqe.result() != -libc::EINVAL {
        return Err(UringError::Missing {
            feature: "multishot receive",
            kernel: "6.0",
            error: io::Error::from_raw_os_error(-cqe.result()),
        });
    }
    if cqueue::more(cqe.flags()) {
        // The limit was ignored and the receive is still armed: cancel it before the ring
        // goes away.
        let cancel = opcode::AsyncCancel::new(1).build().user_data(2);
        // SAFETY: a cancel SQE references no memory.
        let _ = unsafe { driver.push(&cancel) };
        let _ = driver.wait(2, None);
    }
    drop(driver);
    drop(ring);
    drop((a, b));
    Ok(Features { recv_total_limit, send_zc })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_runs() {
        match probe() {
            Ok(f) => eprintln!("features: {f:?}"),
            // Only a machine without io_uring may skip, and only when the run allows it.
            Err(e @ UringError::Unavailable { .. }) => testkit::unavailable("io_uring", &e.to_string()),
            Err(e) => panic!("probe failed: {e}"),
        }
    }
}
