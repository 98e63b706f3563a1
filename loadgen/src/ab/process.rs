//! One server command, started fresh for one run of `ringload ab`: run by `sh -c` in a
//! process group of its own, optionally pinned; its address read from its output or
//! probed; its CPU time read from `/proc` over its whole tree; stopped with SIGTERM, then
//! SIGKILL after a bound, and reaped — its process group, and every process of its tree
//! outside the group (this process is a child sub-reaper, so even a daemon that
//! double-forked into a session of its own is re-parented here and found).
//!
//! Invariants: every [`ServerProcess`] is stopped exactly once — by [`ServerProcess::stop`]
//! or, on any other path (an early return, a panic), by its `Drop` — and stopping returns
//! only once no process of its tree is left running or the bound after SIGKILL passed
//! (which it reports, naming them); every process of the tree that became this process's
//! child is reaped. Its output is read all the time it runs, so it never blocks on a full
//! pipe; what is kept of it is bounded.

use super::procs::{self, Proc};
use super::sys;
use crate::document::ab::StrayProcess;
use crate::target::Target;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Bytes of a server's stderr kept for an error message.
const STDERR_TAIL: usize = 4096;
/// Characters of one stdout line kept (the rest of a longer line is dropped).
const MAX_LINE: usize = 1024;
/// Stdout lines passed on while waiting for the listening line; later ones are dropped.
const MAX_LINES: usize = 10_000;
/// How long SIGKILL is given to work.
const KILL_BOUND: Duration = Duration::from_secs(5);
/// Processes of a tree named in a run's record at most (a fork loop makes many more).
const MAX_NAMED: usize = 100;
/// How often the tree and the address are looked at while waiting.
const POLL: Duration = Duration::from_millis(10);

/// How the server's address is known.
#[derive(Debug, Clone)]
pub enum Address {
    /// Given: a stream target is probed until it accepts; a datagram one is taken once the
    /// server prints a listening line of its transport.
    Given(Target),
    /// The first `listening <transport> <address>` line the server prints on stdout (as
    /// ringecho does), an echo listener (a line that names another mode is skipped).
    Printed,
}

/// Why a server is not ready.
#[derive(Debug)]
pub enum NotReady {
    /// It exited first.
    Exited(ExitStatus),
    /// It did not listen within the bound.
    Timeout,
    /// Ctrl-C.
    Interrupted,
}

/// What stopping a server found.
#[derive(Debug)]
pub struct Stopped {
    /// SIGTERM was not enough.
    pub killed: bool,
    /// Processes of its tree outside its process group, and those killed, by PID: the
    /// first [`MAX_NAMED`].
    pub strays: Vec<StrayProcess>,
    /// Those beyond the first [`MAX_NAMED`].
    pub strays_unlisted: u64,
    /// Processes of its tree still running after SIGKILL and its bound (should be none).
    pub left: Vec<StrayProcess>,
    /// The end of its stderr.
    pub stderr_tail: String,
}

/// A started server command.
pub struct ServerProcess {
    child: Child,
    /// When the process `sh -c` ran started (clock ticks since boot): with its PID, it.
    start: u64,
    /// This process's PID: the parent the tree's orphans are handed to.
    me: u32,
    status: Option<ExitStatus>,
    stdout_lines: Option<mpsc::Receiver<String>>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    stderr_done: mpsc::Receiver<()>,
    stopped: bool,
}

impl ServerProcess {
    /// Runs `sh -c COMMAND`: a new process group, stdin from /dev/null, stdout and stderr
    /// read by threads of this process; on `cpus` only, when given.
    /// This process becomes a child sub-reaper first (and stays one), so the orphans of
    /// the command's tree are handed to it.
    pub fn start(command: &str, cpus: Option<&[usize]>) -> io::Result<ServerProcess> {
        sys::become_subreaper()?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(command).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        sys::isolate(&mut cmd, cpus)?;
        let mut child = cmd.spawn()?;
        let (stdout, stderr_pipe) = (child.stdout.take(), child.stderr.take());
        let (line_tx, line_rx) = mpsc::channel();
        if let Some(out) = stdout {
            std::thread::spawn(move || read_stdout(out, line_tx));
        }
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let (done_tx, done_rx) = mpsc::channel();
        if let Some(err) = stderr_pipe {
            let tail = stderr.clone();
            std::thread::spawn(move || {
                read_stderr(err, &tail);
                let _ = done_tx.send(());
            });
        }
        // Not reaped before `stop`, so its stat is there; 0 (should it not be) takes every
        // later child of this process for an orphan of the server, which ab's are.
        let start = procs::read(child.id()).map_or(0, |p| p.start);
        Ok(ServerProcess {
            child,
            start,
            me: std::process::id(),
            status: None,
            stdout_lines: Some(line_rx),
            stderr,
            stderr_done: done_rx,
            stopped: false,
        })
    }

    /// The PID of the process `sh -c` ran (the shell, or the server if the shell exec'd
    /// it), which is also the group's ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, once the process `sh -c` ran has exited (it is then reaped; the
    /// rest of its group, if any, is still stopped by [`stop`](Self::stop)).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits until the server listens at `address`, at most `timeout`; returns the target.
    pub fn wait_ready(
        &mut self,
        address: &Address,
        timeout: Duration,
        interrupted: &AtomicBool,
    ) -> Result<Target, NotReady> {
        let deadline = Instant::now() + timeout;
        let scheme = match address {
            Address::Given(t) if !t.is_datagram() => None,
            Address::Given(t) => Some(scheme_of(t)),
            Address::Printed => None,
        };
        loop {
            if interrupted.load(Ordering::Relaxed) {
                return Err(NotReady::Interrupted);
            }
            if let Some(status) = self.exited() {
                return Err(NotReady::Exited(status));
            }
            match address {
                Address::Given(t) if !t.is_datagram() => {
                    if accepts(t) {
                        return Ok(t.clone());
                    }
                    std::thread::sleep(POLL);
                }
                _ => {
                    if let Some(t) = self.next_line(POLL).and_then(|line| parse_listening(&line, scheme)) {
                        self.stdout_lines = None; // the reader drains the rest itself
                        return Ok(match address {
                            Address::Given(given) => given.clone(),
                            Address::Printed => t,
                        });
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(NotReady::Timeout);
            }
        }
    }

    fn next_line(&self, wait: Duration) -> Option<String> {
        match self.stdout_lines.as_ref()?.recv_timeout(wait) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Stdout closed: only the exit or the deadline can end the wait now.
                std::thread::sleep(wait);
                None
            }
        }
    }

    /// Every process of its tree now, zombies included ([`procs::server_tree`]).
    fn tree(&self) -> Vec<Proc> {
        procs::server_tree(&procs::all(), self.me, self.pid(), self.start)
    }

    /// CPU time (user + system, threads and reaped children included) of every process
    /// now in its tree, its process group and any that left it, from `/proc/PID/stat`.
    pub fn cpu(&self) -> Duration {
        let ticks: u64 = self.tree().iter().map(|p| p.cpu_ticks).fold(0, u64::saturating_add);
        Duration::from_secs_f64(ticks as f64 / ringecho::sys::clock_ticks_per_second() as f64)
    }

    /// The end of its stderr so far, as text.
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().map(|t| t.iter().copied().collect::<Vec<u8>>()).unwrap_or_default();
        let text = String::from_utf8_lossy(&tail).into_owned();
        text.trim().to_owned()
    }

    /// SIGTERM to the group and to every process of the tree outside it; after `bound`,
    /// SIGKILL to all that are left; returns once the tree is gone (or SIGKILL's bound
    /// passed) and every process of it that became this process's child is reaped.
    pub fn stop(mut self, bound: Duration) -> Stopped {
        self.stop_now(bound)
    }

    fn stop_now(&mut self, bound: Duration) -> Stopped {
        self.stopped = true;
        let mut seen = BTreeMap::new();
        // The leader is not reaped before the group is signalled (unless it already
        // exited, when the members left keep the group's ID in use).
        let _ = sys::signal_group(self.pid(), libc::SIGTERM);
        let mut killed = false;
        if !self.signal_until_gone(&mut seen, libc::SIGTERM, bound) {
            killed = true;
            self.signal_until_gone(&mut seen, libc::SIGKILL, KILL_BOUND);
        }
        let running: Vec<(u32, u64)> =
            self.tree().iter().filter(|p| p.running).map(|p| (p.pid, p.start)).collect();
        let named = |keep: &dyn Fn(&(u32, u64), &Seen) -> bool| -> Vec<StrayProcess> {
            seen.iter().filter(|(id, s)| keep(id, s)).map(|(id, s)| s.named(id.0)).collect()
        };
        let mut strays = named(&|_, s| s.escaped || s.killed);
        let strays_unlisted = strays.len().saturating_sub(MAX_NAMED) as u64;
        strays.truncate(MAX_NAMED);
        let left = named(&|id, _| running.contains(id));
        // Every writer of the stderr pipe in the tree is gone: its end is near.
        let _ = self.stderr_done.recv_timeout(Duration::from_secs(1));
        self.exited();
        Stopped { killed, strays, strays_unlisted, left, stderr_tail: self.stderr_tail() }
    }

    /// Sends `signal` to every process of the tree as it appears — through the group for
    /// its members (SIGKILL again at every look, for those forked since), one by one for
    /// those outside it (each once) — and reaps the tree's exited children of this process,
    /// until the leader has exited (it is reaped) and no process of the tree runs, at most
    /// `bound`. Records every process seen in `seen`, by PID and start time.
    fn signal_until_gone(
        &mut self,
        seen: &mut BTreeMap<(u32, u64), Seen>,
        signal: libc::c_int,
        bound: Duration,
    ) -> bool {
        let deadline = Instant::now() + bound;
        let pgid = self.pid();
        loop {
            let leader_done = self.exited().is_some();
            let tree = self.tree();
            if signal == libc::SIGKILL && (!leader_done || tree.iter().any(|p| p.pgrp == pgid && p.running)) {
                let _ = sys::signal_group(pgid, libc::SIGKILL);
            }
            for p in tree.iter().filter(|p| p.running) {
                let s = seen.entry((p.pid, p.start)).or_insert_with(|| Seen::new(p, pgid));
                s.killed |= signal == libc::SIGKILL;
                if s.escaped && s.sent != Some(signal) {
                    s.sent = Some(signal);
                    signal_one(p, signal);
                }
            }
            for p in tree.iter().filter(|p| !p.running && p.ppid == self.me && p.pid != pgid) {
                let _ = sys::reap(p.pid);
            }
            if leader_done && !tree.iter().any(|p| p.running) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A process of the tree seen while stopping it.
#[derive(Debug)]
struct Seen {
    name: String,
    escaped: bool,
    killed: bool,
    /// The last signal sent to it alone (members of the group get the group's).
    sent: Option<libc::c_int>,
}

impl Seen {
    fn new(p: &Proc, pgid: u32) -> Seen {
        Seen { name: procs::name(p.pid), escaped: p.pgrp != pgid, killed: false, sent: None }
    }

    fn named(&self, pid: u32) -> StrayProcess {
        StrayProcess { pid, name: self.name.clone(), escaped: self.escaped, killed: self.killed }
    }
}

/// Sends `signal` to `p` if the process its PID names is still the one the scan saw.
fn signal_one(p: &Proc, signal: libc::c_int) {
    // The pidfd is opened first, then the process checked: a pidfd names one process, so
    // if the check passes the signal can reach no later process with this PID.
    if let Ok(Some(fd)) = sys::Pidfd::open(p.pid) {
        if procs::read(p.pid).is_some_and(|now| now.start == p.start) {
            let _ = fd.signal(signal);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.stopped {
            self.stop_now(Duration::from_secs(2));
        }
    }
}

/// Whether something accepts a connection at a stream target now: a connect made within
/// 200 ms (never blocking longer, a Unix listener whose backlog is full included).
pub fn accepts(target: &Target) -> bool {
    let to = match target {
        Target::Tcp(addr) => socket2::SockAddr::from(*addr),
        Target::Unix(path) => match socket2::SockAddr::unix(path) {
            Ok(to) => to,
            Err(_) => return false,
        },
        Target::Udp(_) | Target::UnixGram(_) => return false,
    };
    crate::connect::probe(&to, Duration::from_millis(200))
}

pub(super) fn scheme_of(t: &Target) -> &'static str {
    match t {
        Target::Tcp(_) => "tcp",
        Target::Udp(_) => "udp",
        Target::Unix(_) => "unix",
        Target::UnixGram(_) => "unixgram",
    }
}

/// The target of a `listening <transport> <address>` line of an echo listener (ringecho's
/// format; a line naming another mode after the address is skipped), of transport
/// `scheme` when given. Other lines: None.
pub fn parse_listening(line: &str, scheme: Option<&str>) -> Option<Target> {
    let mut words = line.split_whitespace();
    if words.next()? != "listening" {
        return None;
    }
    let transport = words.next()?;
    let addr = words.next()?;
    if !matches!(words.next(), None | Some("max-datagram") | Some("echo")) {
        return None; // discard or source
    }
    if !matches!(transport, "tcp" | "udp" | "unix" | "unixgram") || scheme.is_some_and(|s| s != transport) {
        return None;
    }
    Target::parse_literal(&format!("{transport}://{addr}")).ok()
}

fn read_stdout(mut out: ChildStdout, lines: mpsc::Sender<String>) {
    let (mut buf, mut line, mut sent) = ([0u8; 4096], Vec::new(), 0usize);
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if sent < MAX_LINES {
                    // A receiver that went away wants no more lines: keep draining.
                    let _ = lines.send(String::from_utf8_lossy(&line).into_owned());
                    sent += 1;
                }
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }
}

fn read_stderr(mut err: ChildStderr, tail: &Mutex<VecDeque<u8>>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match err.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if let Ok(mut t) = tail.lock() {
            t.extend(&buf[..n]);
            let excess = t.len().saturating_sub(STDERR_TAIL);
            t.drain(..excess);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines() {
        let t = parse_listening("listening tcp 127.0.0.1:7100", None).unwrap();
        assert_eq!(t.to_string(), "tcp://127.0.0.1:7100");
        assert!(parse_listening("listening tcp 127.0.0.1:7101 discard", None).is_none());
        assert!(parse_listening("listening metrics 127.0.0.1:9000", None).is_none());
        assert!(parse_listening("running 1 test", None).is_none());
        assert!(parse_listening("listening tcp 127.0.0.1:7100", Some("udp")).is_none());
        let u = parse_listening("listening udp [::1]:7 max-datagram 2048", Some("udp")).unwrap();
        assert_eq!(u, Target::Udp("[::1]:7".parse().unwrap()));
        let p = parse_listening("listening unix /tmp/e.sock", None).unwrap();
        assert_eq!(p, Target::Unix("/tmp/e.sock".into()));
    }
}
