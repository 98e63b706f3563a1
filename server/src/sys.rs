//! The raw system calls the server makes outside io_uring: CPU affinity, the descriptor
//! limit, eventfd and a few sysconf values. Each wrapper turns `-1` into `io::Error` via `cvt`; nothing else in
//! the crate calls libc for these.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Turns a libc return value into a `Result`, reading `errno` on `-1`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// The CPUs this thread may run on (its affinity mask, which reflects cpusets and taskset).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size we pass.
    cvt(unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) })?;
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the set we own, with an index below its size in bits.
    Ok((0..max).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("CPU {cpu} out of range")));
    }
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` was checked to be inside the set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass; 0 means this thread.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// Raises the soft limit on open descriptors to the hard limit and returns the new soft
/// limit. A server that holds many connections needs it; raising it is always allowed.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid rlimit to write into.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the hard one
        // needs no privilege.
        if cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) }).is_ok() {
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}

/// The soft limit on open descriptors.
pub fn nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid rlimit to write into.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok(lim.rlim_cur)
}

/// The calling thread's id (its `/proc/self/task/TID`).
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Clock ticks per second, the unit of CPU times in `/proc`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as u64 } else { 100 }
}

/// The page size, the unit of memory sizes in `/proc/PID/stat`.
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// An eventfd, used to wake a worker's ring from another thread. Blocking, so the
/// ring's read of it waits for a wake-up instead of failing with EAGAIN.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; on success the descriptor is new and ours.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd's counter, waking whoever reads it.
pub fn eventfd_signal(fd: &OwnedFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: we pass a pointer to 8 readable bytes, as eventfd requires.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    match n {
        8 => Ok(()),
        // The counter is saturated: the reader has a wake-up pending anyway.
        -1 if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => Ok(()),
        -1 => Err(io::Error::last_os_error()),
        _ => Err(io::Error::other("short eventfd write")),
    }
}

/// Reads (and so resets) an eventfd's counter; blocks while it is zero.
pub fn eventfd_read(fd: &OwnedFd) -> io::Result<u64> {
    let mut value: u64 = 0;
    // SAFETY: we pass a pointer to 8 writable bytes, as eventfd requires.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    if n == 8 { Ok(value) } else { Err(io::Error::last_os_error()) }
}

/// The value of `/proc/sys/kernel/io_uring_disabled`, if the kernel has the setting.
pub fn io_uring_disabled_sysctl() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_round_trip() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let first = cpus[0];
        std::thread::spawn(move || {
            pin_current_thread(first).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![first]);
        })
        .join()
        .unwrap();
        assert!(pin_current_thread(1 << 20).is_err());
    }

    #[test]
    fn eventfd_saturation_is_not_an_error() {
        let fd = eventfd().unwrap();
        for _ in 0..3 {
            eventfd_signal(&fd).unwrap();
        }
    }
}
