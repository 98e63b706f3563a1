//! One server command, started fresh for one run of `ringload ab`: run by `sh -c` in a
//! process group of its own (so the whole tree it starts can be stopped), optionally
//! pinned; its address read from its output or probed; its CPU time read from `/proc`
//! over the whole group; stopped with SIGTERM to the group, then SIGKILL after a bound,
//! and reaped.
//!
//! Invariants: every [`ServerProcess`] is stopped exactly once — by [`ServerProcess::stop`]
//! or, on any other path (an early return, a panic), by its `Drop` — and stopping returns
//! only once no process of the group is left running or the bound after SIGKILL passed
//! (which it reports). Its output is read all the time it runs, so it never blocks on a
//! full pipe; what is kept of it is bounded.

use super::sys;
use crate::target::Target;
use std::collections::VecDeque;
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
/// How often the group and the address are looked at while waiting.
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
    /// PIDs of the group still running after SIGKILL and its bound (should be none).
    pub left: Vec<u32>,
    /// The end of its stderr.
    pub stderr_tail: String,
}

/// A started server command.
pub struct ServerProcess {
    child: Child,
    status: Option<ExitStatus>,
    stdout_lines: Option<mpsc::Receiver<String>>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    stderr_done: mpsc::Receiver<()>,
    stopped: bool,
}

impl ServerProcess {
    /// Runs `sh -c COMMAND`: a new process group, stdin from /dev/null, stdout and stderr
    /// read by threads of this process; on `cpus` only, when given.
    pub fn start(command: &str, cpus: Option<&[usize]>) -> io::Result<ServerProcess> {
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
        Ok(ServerProcess {
            child,
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

    /// CPU time (user + system, threads and reaped children included) of every process
    /// now in its group, from `/proc/PID/stat`.
    pub fn cpu(&self) -> Duration {
        let ticks: u64 = group_members(self.pid()).iter().map(|m| m.cpu_ticks).sum();
        Duration::from_secs_f64(ticks as f64 / ringecho::sys::clock_ticks_per_second() as f64)
    }

    /// The end of its stderr so far, as text.
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().map(|t| t.iter().copied().collect::<Vec<u8>>()).unwrap_or_default();
        let text = String::from_utf8_lossy(&tail).into_owned();
        text.trim().to_owned()
    }

    /// SIGTERM to the group; after `bound`, SIGKILL; returns once the group is gone (or
    /// SIGKILL's bound passed) and the process is reaped.
    pub fn stop(mut self, bound: Duration) -> Stopped {
        self.stop_now(bound)
    }

    fn stop_now(&mut self, bound: Duration) -> Stopped {
        self.stopped = true;
        let pgid = self.pid();
        // The leader is not reaped before the group is signalled (unless it already
        // exited, when the members left keep the group's ID in use).
        let _ = sys::signal_group(pgid, libc::SIGTERM);
        let mut killed = false;
        if !self.wait_gone(bound) {
            killed = true;
            let _ = sys::signal_group(pgid, libc::SIGKILL);
            self.wait_gone(KILL_BOUND);
        }
        let left: Vec<u32> = group_members(pgid).iter().filter(|m| m.running).map(|m| m.pid).collect();
        // Every writer of the stderr pipe in the group is gone: its end is near.
        let _ = self.stderr_done.recv_timeout(Duration::from_secs(1));
        self.exited();
        Stopped { killed, left, stderr_tail: self.stderr_tail() }
    }

    /// Waits up to `bound` for the leader to exit (it is reaped) and no process of the
    /// group to be left running.
    fn wait_gone(&mut self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            let leader_done = self.exited().is_some();
            if leader_done && !group_members(self.pid()).iter().any(|m| m.running) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
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

/// A process of a group, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its PID.
    pub pid: u32,
    /// Not a zombie.
    pub running: bool,
    /// utime + stime + cutime + cstime, in clock ticks.
    pub cpu_ticks: u64,
}

/// Every process whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<Member> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (group, member) = parse_stat(pid, &stat)?;
            (group == pgid).then_some(member)
        })
        .collect()
}

/// `(pgrp, member)` from the text of `/proc/PID/stat`, its fields as
/// [`ringecho::procfs::stat_fields`] finds them (after the last `)`: the command name
/// before it may hold spaces and parentheses).
pub fn parse_stat(pid: u32, stat: &str) -> Option<(u32, Member)> {
    let fields = ringecho::procfs::stat_fields(stat)?;
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let state = fields.first()?;
    let pgrp = u32::try_from(num(2)?).ok()?;
    let cpu_ticks = [11, 12, 13, 14].iter().map(|&i| num(i).unwrap_or(0)).fold(0u64, u64::saturating_add);
    Some((pgrp, Member { pid, running: !matches!(*state, "Z" | "X"), cpu_ticks }))
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

    #[test]
    fn stat_fields_after_the_name() {
        let stat = "42 (a) b (c)) S 1 40 40 0 -1 4194304 100 0 0 0 7 3 2 1 20 0 1 0";
        let (pgrp, m) = parse_stat(42, stat).unwrap();
        assert_eq!(pgrp, 40);
        assert_eq!(m, Member { pid: 42, running: true, cpu_ticks: 13 });
        assert!(!parse_stat(1, "1 (x) Z 0 1 1 0 -1 0 0 0 0 0 0 0 0 0").unwrap().1.running);
        assert!(parse_stat(1, "garbage").is_none());
    }
}
