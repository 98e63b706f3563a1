//! The raw system calls `ab` makes on the servers it starts: a new process group, CPU
//! affinity and a parent-death signal set in the child before it runs the command; a
//! signal to a whole process group, or to one process through a pidfd; this process made
//! a child sub-reaper; an exited child reaped. Nothing else in `ab` calls libc.
//!
//! Invariants: a process group is signalled only while its leader is ours and not yet
//! reaped, or while other members keep the group's ID in use (the kernel does not hand
//! out an ID that is still some group's), so a signal never reaches a stranger's group.
//! A single process is signalled through a pidfd, which names that process and no later
//! one that takes its PID. Only a PID that is our child is ever waited for, and never
//! with a blocking wait.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// A system call's result: -1 is the error in `errno` (mio's `syscall!` rule).
fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc == -1 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

fn pid_t(pid: u32) -> io::Result<libc::pid_t> {
    match libc::pid_t::try_from(pid) {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
    }
}

fn gone(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ESRCH)
}

/// Sets up `cmd` so that the child leads a new process group (its PID is the group ID),
/// runs on `cpus` only (when given), and gets SIGTERM should this process die without
/// stopping it.
pub fn isolate(cmd: &mut Command, cpus: Option<&[usize]>) -> io::Result<()> {
    cmd.process_group(0);
    // Built before the fork: the child only copies it into a system call.
    let set = match cpus {
        Some(list) => Some(cpu_set(list)?),
        None => None,
    };
    let parent = std::process::id() as libc::pid_t;
    let in_child = move || {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // ringload died between the fork and the prctl: the signal will never come, so
        // the command must not start. (No allocation: a raw OS error.)
        // SAFETY: getppid takes no arguments and cannot fail.
        if unsafe { libc::getppid() } != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if let Some(set) = &set {
            // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 is this process.
            let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
            if rc == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: `in_child` runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it makes two system calls (prctl,
    // sched_setaffinity) on memory it owns (the copied `set`), allocates nothing and
    // takes no lock.
    unsafe { cmd.pre_exec(in_child) };
    Ok(())
}

fn cpu_set(cpus: &[usize]) -> io::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let bits = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &cpu in cpus {
        if cpu >= bits {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("CPU {cpu} out of range")));
        }
        // SAFETY: `cpu` was checked to be inside the set.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    Ok(set)
}

/// Sends `signal` to every process of group `pgid`. `Ok(false)`: the group is empty.
pub fn signal_group(pgid: u32, signal: libc::c_int) -> io::Result<bool> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pgid <= 1 {
        // -1 would be every process we may signal; never.
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill takes no pointers; a negative PID names a process group (pgid > 1).
    if unsafe { libc::kill(-pgid, signal) } == 0 {
        return Ok(true);
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        e => Err(e),
    }
}

/// Makes this process a child sub-reaper: an orphan among its descendants (its parent
/// ended, or it double-forked into a session of its own) becomes this process's child
/// rather than init's, so it can still be found, stopped and reaped. It stays one.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) }.into())?;
    Ok(())
}

/// One process, held by a pidfd: a signal sent through it reaches that process or none
/// (never a later one with the same PID).
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// Opens process `pid`; `None` when there is no such process.
    pub fn open(pid: u32) -> io::Result<Option<Pidfd>> {
        let pid = pid_t(pid)?;
        // SAFETY: pidfd_open takes a PID and flags (none), no pointers.
        match check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }) {
            Ok(fd) => {
                let fd = RawFd::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
                // SAFETY: the descriptor was just opened by this call and nothing else owns it.
                Ok(Some(Pidfd(unsafe { OwnedFd::from_raw_fd(fd) })))
            }
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends it `signal`. `Ok(false)`: it has ended.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<bool> {
        let info: *const libc::siginfo_t = std::ptr::null();
        // SAFETY: the pidfd is open (owned by self); a null siginfo is allowed (the kernel
        // fills it as kill would); no flags.
        match check(unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), signal, info, 0)
        }) {
            Ok(_) => Ok(true),
            Err(e) if gone(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Reaps `pid`, a child of this process, if it has exited; never waits. `Ok(true)`: it
/// was reaped.
pub fn reap(pid: u32) -> io::Result<bool> {
    let pid = pid_t(pid)?;
    // SAFETY: waitpid with a null status pointer (allowed: the status is not wanted) and
    // WNOHANG, for one PID only (never -1 or a group).
    let rc = check(unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) }.into())?;
    Ok(rc == libc::c_long::from(pid))
}
