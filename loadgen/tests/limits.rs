//! Limits said up front: connections that cannot fit the descriptor limit are refused
//! before any load, naming the flag and the remedy.

use std::process::Command;

#[test]
fn connections_past_the_descriptor_limit_are_refused_up_front() {
    let out = Command::new("bash")
        .arg("-c")
        .arg("ulimit -n 200 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ringload"))
        .args(["tcp://127.0.0.1:9", "-c", "500", "-d", "1s", "--no-progress"])
        .output()
        .expect("run ringload");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--connections") && err.contains("ulimit -n"), "{err}");
}

/// Runs ringload with `args` and returns its peak resident memory in KiB (the kernel's
/// own accounting of the finished child, `wait4`'s `ru_maxrss`).
#[allow(clippy::zombie_processes, reason = "reaped by wait4, which gives its rusage too")]
fn peak_rss_kib(args: &[&str]) -> i64 {
    let child = Command::new(env!("CARGO_BIN_EXE_ringload"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run ringload");
    let (mut status, mut usage) = (0, zeroed_rusage());
    // SAFETY: wait4 writes one int and one rusage, both ours, for the child we spawned.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t);
    usage.ru_maxrss
}

fn zeroed_rusage() -> libc::rusage {
    // SAFETY: rusage is plain data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Issue 23 item 4: against a socket that never reads, every datagram is lost, and what
/// ringload keeps of the lost ones is a fixed window per flow: four more seconds of loss
/// (about 600,000 more datagrams) cost no more memory. (It grew by about 27 bytes per lost
/// datagram before: 16 MB here.)
#[test]
fn lost_datagram_bookkeeping_does_not_grow_with_the_run() {
    if !testkit::require("io_uring", ringecho::ring::probe().map(drop)) {
        return;
    }
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("udp://{}", sink.local_addr().unwrap());
    let args = |d: &'static str| {
        [
            target.as_str(),
            "-c",
            "200",
            "-r",
            "150k",
            "-d",
            d,
            "-w",
            "0s",
            "--udp-timeout",
            "50ms",
            "--no-progress",
        ]
    };
    let short = peak_rss_kib(&args("1s"));
    let long = peak_rss_kib(&args("5s"));
    assert!(long - short < 6 * 1024, "peak RSS {short} KiB after 1 s, {long} KiB after 5 s of loss");
    drop(sink);
}
