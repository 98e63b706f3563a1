//! What `/proc` says about the processes of a server command, read as untrusted text:
//! each process's stat line (its parent, group, state, start time, CPU), the tree a
//! server command grew (every descendant of its first process, and every orphan of it
//! the kernel handed to this process, a child sub-reaper), a process's name, and which
//! processes hold a listening socket.
//!
//! Invariant: a reading is a snapshot; processes come and go between two. A process is
//! named by its PID *and* its start time, so one that ended and whose PID was reused is
//! never taken for it (the first process is counted only while its start time is the
//! one it started with).

use crate::target::Target;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// One process, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Its PID.
    pub pid: u32,
    /// Its parent's PID.
    pub ppid: u32,
    /// Its process group.
    pub pgrp: u32,
    /// Not a zombie (nor dead).
    pub running: bool,
    /// When it started, in clock ticks since boot: with the PID, which process this is.
    pub start: u64,
    /// utime + stime + cutime + cstime, in clock ticks.
    pub cpu_ticks: u64,
}

/// A process from the text of its `/proc/PID/stat`, the fields as
/// [`ringecho::procfs::stat_fields`] finds them (after the last `)`: the command name
/// before it may hold spaces and parentheses).
pub fn parse_stat(pid: u32, stat: &str) -> Option<Proc> {
    let fields = ringecho::procfs::stat_fields(stat)?;
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let state = fields.first()?;
    let id = |i: usize| num(i).and_then(|n| u32::try_from(n).ok());
    let cpu_ticks = [11, 12, 13, 14].iter().map(|&i| num(i).unwrap_or(0)).fold(0u64, u64::saturating_add);
    Some(Proc {
        pid,
        ppid: id(1)?,
        pgrp: id(2)?,
        running: !matches!(*state, "Z" | "X"),
        start: num(19)?,
        cpu_ticks,
    })
}

/// Process `pid` now, if it exists.
pub fn read(pid: u32) -> Option<Proc> {
    parse_stat(pid, &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process now.
pub fn all() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).filter_map(read).collect()
}

/// The processes of a server command whose first process is `leader` (started at
/// `leader_start`), run by `me`, among `procs`: `leader` itself and every descendant of
/// it; and, since `me` is a child sub-reaper, every child of `me` but the leader started
/// no earlier than it (an orphan of the server's tree: its parent ended, or it
/// double-forked into a session of its own) with its descendants. Zombies included.
pub fn server_tree(procs: &[Proc], me: u32, leader: u32, leader_start: u64) -> Vec<Proc> {
    let mut children: BTreeMap<u32, Vec<&Proc>> = BTreeMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let roots = procs.iter().filter(|p| {
        p.pid != me
            && if p.pid == leader { p.start == leader_start } else { p.ppid == me && p.start >= leader_start }
    });
    let mut tree: BTreeSet<u32> = BTreeSet::new();
    let mut todo: Vec<&Proc> = roots.collect();
    while let Some(p) = todo.pop() {
        if p.pid != me && tree.insert(p.pid) {
            todo.extend(children.get(&p.pid).into_iter().flatten().copied());
        }
    }
    procs.iter().filter(|p| tree.contains(&p.pid)).copied().collect()
}

/// Its command name (`/proc/PID/comm`: at most 15 bytes, set by the process itself, so
/// untrusted); `?` when it is gone.
pub fn name(pid: u32) -> String {
    match std::fs::read(format!("/proc/{pid}/comm")) {
        Ok(bytes) => String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).trim_end_matches('\n').to_owned(),
        Err(_) => "?".into(),
    }
}

/// The processes (PID, name) that hold a socket listening at a stream `target`, as far
/// as this user may see (`/proc/net/{tcp,tcp6,unix}`, then every `/proc/PID/fd`).
pub fn listener_holders(target: &Target) -> Vec<(u32, String)> {
    let read = |table: &str| std::fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
    let inodes: BTreeSet<u64> = match target {
        Target::Tcp(addr) => tcp_listeners(&read("tcp"), *addr)
            .into_iter()
            .chain(tcp_listeners(&read("tcp6"), *addr))
            .collect(),
        Target::Unix(path) => unix_listeners(&read("unix"), path).into_iter().collect(),
        Target::Udp(_) | Target::UnixGram(_) => BTreeSet::new(),
    };
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let pids = dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|pid| holds_any(*pid, &inodes)).map(|pid| (pid, name(pid))).collect()
}

/// Whether a descriptor of `pid` is one of the sockets `inodes`.
fn holds_any(pid: u32, inodes: &BTreeSet<u64>) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).ok().is_some_and(|link| {
            let link = link.to_string_lossy();
            link.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|inode| inodes.contains(&inode))
        })
    })
}

/// The inodes of the sockets of a `/proc/net/tcp` or `tcp6` table listening where a
/// connection to `target` would go (its port, and its address or a wildcard).
pub fn tcp_listeners(table: &str, target: SocketAddr) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (addr, port) = f.get(1)?.split_once(':')?;
            let listening = *f.get(3)? == "0A";
            let port = u16::from_str_radix(port, 16).ok()?;
            let covers = listening && port == target.port() && covers(hex_ip(addr)?, target.ip());
            covers.then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// An address as `/proc/net/tcp*` prints it: 32-bit words in the machine's byte order.
fn hex_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| hex.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok());
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?.to_ne_bytes()))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?.to_ne_bytes());
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Whether a socket listening at `listen` takes a connection to `target`.
fn covers(listen: IpAddr, target: IpAddr) -> bool {
    let listen = match listen {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(listen, IpAddr::V4),
        v4 => v4,
    };
    // A v6 wildcard socket takes IPv4 too, unless it is v6-only (not shown here).
    listen == target || listen.is_unspecified() && (listen.is_ipv6() || target.is_ipv4())
}

/// The inodes of the sockets of a `/proc/net/unix` table listening at `path`.
pub fn unix_listeners(table: &str, path: &Path) -> Vec<u64> {
    const ACCEPTCON: u32 = 0x0001_0000;
    let path = path.to_string_lossy();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode Path (the path may hold spaces).
            let (mut f, mut rest) = (Vec::with_capacity(7), line);
            for _ in 0..7 {
                let field = rest.trim_start();
                let end = field.find(char::is_whitespace).unwrap_or(field.len());
                f.push(&field[..end]);
                rest = &field[end..];
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            let listening = flags & ACCEPTCON != 0 && rest.trim() == path;
            listening.then(|| f[6].parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, ppid: u32, pgrp: u32, state: &str, start: u64) -> String {
        format!(
            "{pid} (x y)) {state} {ppid} {pgrp} {pgrp} 0 -1 4194304 100 0 0 0 7 3 2 1 20 0 1 0 {start} 0 0"
        )
    }

    #[test]
    fn stat_fields_after_the_name() {
        let p = parse_stat(42, &stat(42, 7, 40, "S", 999)).unwrap();
        assert_eq!(p, Proc { pid: 42, ppid: 7, pgrp: 40, running: true, start: 999, cpu_ticks: 13 });
        assert!(!parse_stat(1, &stat(1, 0, 1, "Z", 5)).unwrap().running);
        assert!(parse_stat(1, "garbage").is_none());
        assert!(parse_stat(1, "1 (x) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0").is_none(), "no start time");
    }

    /// The tree: the leader's descendants, and the orphans handed to this process since
    /// the leader started, with theirs; not a stranger, an older child, or a process that
    /// took the leader's PID after it ended.
    #[test]
    fn the_server_tree() {
        let p = |pid, ppid, pgrp, start| parse_stat(pid, &stat(pid, ppid, pgrp, "S", start)).unwrap();
        let me = 10;
        let procs = [
            p(1, 0, 1, 0),        // init
            p(me, 1, me, 50),     // ringload
            p(100, me, 100, 200), // the leader
            p(101, 100, 100, 201),
            p(102, 101, 555, 202), // setsid'd under the leader
            p(103, me, 103, 230),  // an orphan of the server, double-forked into its session
            p(104, 103, 103, 231), // its child
            p(90, me, 90, 150),    // an older child of ringload: not the server's
            p(91, 90, 90, 151),
            p(300, 1, 300, 100), // a stranger
        ];
        let pids = |t: Vec<Proc>| t.iter().map(|p| p.pid).collect::<Vec<u32>>();
        assert_eq!(pids(server_tree(&procs, me, 100, 200)), [100, 101, 102, 103, 104]);
        // The leader's PID now names a process that started later: neither it nor its
        // children are the server's; the orphans still are.
        assert_eq!(pids(server_tree(&procs, me, 100, 190)), [103, 104]);
    }

    #[test]
    fn tcp_listeners_by_port_and_address() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1BBC 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0\n\
            1: 00000000:1BBD 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0 100 0 0 10 0\n\
            2: 0100007F:1BBC 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0 100 0 0 10 0\n\
            3: 0200007F:1BBE 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 444 1 0 100 0 0 10 0\n";
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(tcp_listeners(tcp, at("127.0.0.1:7100")), [111], "a listener, not the connection");
        assert_eq!(tcp_listeners(tcp, at("127.0.0.1:7101")), [222], "the wildcard takes it");
        assert!(tcp_listeners(tcp, at("127.0.0.1:7102")).is_empty(), "127.0.0.2 is another address");
        let tcp6 = "header\n\
            0: 00000000000000000000000000000000:1BBC 00000000000000000000000000000000:0000 0A 0:0 0:0 0 1000 0 555 1\n\
            1: 00000000000000000000000001000000:1BBD 00000000000000000000000000000000:0000 0A 0:0 0:0 0 1000 0 666 1\n";
        assert_eq!(tcp_listeners(tcp6, at("127.0.0.1:7100")), [555], "[::] takes IPv4 too");
        assert_eq!(tcp_listeners(tcp6, at("[::1]:7101")), [666]);
        assert!(tcp_listeners(tcp6, at("127.0.0.1:7101")).is_empty(), "[::1] does not take 127.0.0.1");
        assert!(tcp_listeners("header\n0: zz:1 0 0A 0 0 0 0 0 x\n", at("127.0.0.1:1")).is_empty());
    }

    #[test]
    fn unix_listeners_by_path() {
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 777 /tmp/echo sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 778 /tmp/echo sock\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 779 /tmp/other\n";
        assert_eq!(unix_listeners(unix, Path::new("/tmp/echo sock")), [777]);
        assert!(unix_listeners(unix, Path::new("/tmp/none")).is_empty());
    }
}
