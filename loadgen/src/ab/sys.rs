//! The raw system calls `ab` makes on the servers it starts: a new process group, CPU
//! affinity and a parent-death signal set in the child before it runs the command, and a
//! signal to a whole process group. Nothing else in `ab` calls libc.
//!
//! Invariant: a process group is signalled only while its leader is ours and not yet
//! reaped, or while other members keep the group's ID in use (the kernel does not hand
//! out an ID that is still some group's), so a signal never reaches a stranger's group.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

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
