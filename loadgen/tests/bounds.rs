//! Time bounds end to end, on the `ringload` binary: connects against listeners that never
//! accept (their backlogs held full) give up at `--connect-timeout`, all of a worker's
//! together; Ctrl-C ends a hanging connect phase; a run's deadline stops it early enough
//! for its drain; `--max-duration` bounds a search and a repeat as a whole, and what it
//! cut short says so and does not exit 0.

mod util;

use ringload::warning::Warning;
use ringload::{Progress, Stop, Target};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use util::{tcp_server, uring_available};

/// What a bounded run of the binary came to.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Starts `ringload args`, its output into files of `dir`.
fn spawn(args: &[&str], dir: &std::path::Path) -> Child {
    let file = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_ringload"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .spawn()
        .expect("run ringload")
}

/// Waits for `child` (started at `t0`) at most `bound`, killing it then; what it said.
fn finish(mut child: Child, dir: &std::path::Path, t0: Instant, bound: Duration) -> Ran {
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if t0.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20)); // polling for the exit, bounded
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let ran = Ran {
        code: status.and_then(|s| s.code()),
        stdout: read("stdout"),
        stderr: read("stderr"),
        took: t0.elapsed(),
    };
    assert!(status.is_some(), "still running after {bound:?}, killed:\n{}\n{}", ran.stdout, ran.stderr);
    ran
}

/// `ringload args`, killed (and the test failed) if it runs past `bound`.
fn ringload(args: &[&str], bound: Duration) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    finish(spawn(args, dir.path()), dir.path(), t0, bound)
}

/// A Unix stream listener at `path` that never accepts, its backlog held full: the
/// listener and the connections that fill it.
fn full_unix_listener(path: &std::path::Path) -> (Socket, Vec<Socket>) {
    let to = SockAddr::unix(path).unwrap();
    let listener = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    listener.bind(&to).unwrap();
    listener.listen(1).unwrap();
    let mut held = Vec::new();
    loop {
        let s = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        match s.connect(&to) {
            Ok(()) => held.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (listener, held),
            Err(e) => panic!("filling the backlog: {e}"),
        }
        assert!(held.len() < 64, "the backlog never filled");
    }
}

/// A TCP listener on loopback that never accepts, its backlog (0: one connection) held
/// full, so that further SYNs are dropped: the listener, its address, the connections.
fn full_tcp_listener() -> (Socket, SocketAddr, Vec<TcpStream>) {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        held.push(s);
        assert!(held.len() < 64, "the backlog never filled");
    }
    (listener, addr, held)
}

/// Whether a socket of this machine is in SYN_SENT towards loopback port `port`
/// (`/proc/net/tcp`: remote address `0100007F:PORT` in hex, state 02).
fn syn_sent_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == remote && f[3] == "02"
        })
        .count()
}

/// A Unix listener that never accepts, its backlog full: every connect gives up at
/// `--connect-timeout`, together; the run ends at once with exit 2 naming the timeout
/// (it used to block until the listener went away).
#[test]
fn a_unix_listener_that_never_accepts_times_out() {
    if !uring_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let _full = full_unix_listener(&path);
    let target = format!("unix://{}", path.display());
    let args = [
        &target,
        "-c",
        "4",
        "--connect-timeout",
        "1s",
        "--max-duration",
        "3s",
        "-d",
        "1s",
        "-w",
        "0s",
        "--no-progress",
    ];
    let ran = ringload(&args, Duration::from_secs(20));
    assert!(ran.took < Duration::from_secs(5), "took {:?}", ran.took);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("timed out") && ran.stderr.contains("--connect-timeout"), "{}", ran.stderr);
    assert!(ran.stderr.contains("backlog"), "{}", ran.stderr);
}

/// 20 connections to a TCP listener whose SYNs are dropped: they time out together, in
/// about one --connect-timeout, not one after another (20 s).
#[test]
fn tcp_connects_time_out_together() {
    if !uring_available() {
        return;
    }
    let (_listener, addr, _held) = full_tcp_listener();
    let target = format!("tcp://{addr}");
    let args =
        [&target, "-c", "20", "-t", "1", "--connect-timeout", "1s", "-d", "1s", "-w", "0s", "--no-progress"];
    let ran = ringload(&args, Duration::from_secs(30));
    assert!(ran.took < Duration::from_secs(5), "took {:?}", ran.took);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("timed out") && ran.stderr.contains("--connect-timeout"), "{}", ran.stderr);
}

/// The first Ctrl-C during a connect phase that would hang for a minute ends the run at
/// once: the report says it was interrupted, exit 130.
#[test]
fn sigint_ends_a_hanging_connect_phase() {
    if !uring_available() {
        return;
    }
    let (_listener, addr, _held) = full_tcp_listener();
    let before = syn_sent_to(addr.port());
    let target = format!("tcp://{addr}");
    let dir = tempfile::tempdir().unwrap();
    let args = [&target, "-c", "4", "--connect-timeout", "60s", "-d", "1s", "-w", "0s", "--no-progress"];
    let child = spawn(&args, dir.path());
    // In the connect phase once its SYNs are out (and dropped by the full backlog).
    let t0 = Instant::now();
    while syn_sent_to(addr.port()) <= before {
        assert!(t0.elapsed() < Duration::from_secs(10), "ringload never started connecting");
        std::thread::sleep(Duration::from_millis(10)); // polling for the SYNs, bounded
    }
    // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let signalled = Instant::now();
    let ran = finish(child, dir.path(), t0, Duration::from_secs(30));
    let after = signalled.elapsed();
    assert!(after < Duration::from_secs(2), "{after:?} after the signal");
    assert_eq!(ran.code, Some(130), "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("interrupted"), "{}", ran.stdout);
}

/// Echo: what comes in goes back.
fn echo(mut s: TcpStream, _: Instant) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// A deadline before a time-bound run's planned end (what a workflow's --max-duration
/// leaves) stops it early enough for its drain: the window measured is the one that ran,
/// and the report says it was cut.
#[test]
fn a_deadline_cuts_a_run_short_and_says_so() {
    if !uring_available() {
        return;
    }
    let target = Target::Tcp(tcp_server(echo));
    let plan = util::plan(Some(target), |p| {
        p.stop = Stop::Duration(Duration::from_secs(5));
        p.drain = Duration::from_millis(200);
    });
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_millis(1500);
    let interrupted = Arc::new(AtomicBool::new(false));
    let r = ringload::run::run_until(plan, interrupted, Progress::Hide, None, Some(deadline)).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    assert!(r.warnings.iter().any(|w| matches!(w, Warning::TimeLimit { .. })), "{:?}", r.warnings);
    assert!(
        r.elapsed > Duration::from_millis(800) && r.elapsed < Duration::from_millis(1400),
        "{:?}",
        r.elapsed
    );
    assert!(r.counters.completed > 0);
}

/// A search whose one step cannot fit in --max-duration is refused at once, naming the
/// flag; one cut short by --max-duration says so, keeps its steps, and is not a clean
/// exit 0 (its answer is only a lower bound of a full search's).
#[test]
fn max_duration_bounds_a_search() {
    if !uring_available() {
        return;
    }
    let target = format!("tcp://{}", tcp_server(echo));
    let search = [&target, "-c", "1", "-t", "1", "--find-max-rate", "--slo", "p99<50ms", "--no-progress"];
    let ran = ringload(
        &[&search[..], &["--step-duration", "20s", "--max-duration", "3s"]].concat(),
        Duration::from_secs(30),
    );
    assert!(ran.took < Duration::from_secs(6), "took {:?}", ran.took);
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("--max-duration") && ran.stderr.contains("no room"), "{}", ran.stderr);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("search.json");
    let short = ["--step-duration", "300ms", "-w", "100ms", "--drain", "200ms", "--max-duration", "2s"];
    let ran = ringload(
        &[&search[..], &short, &["--json", file.to_str().unwrap()]].concat(),
        Duration::from_secs(30),
    );
    assert!(ran.took < Duration::from_secs(4), "took {:?}", ran.took);
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("stopped at --max-duration before the search converged"), "{}", ran.stdout);
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["search"]["stopped"], "max_duration");
    assert_eq!(doc["exit_code"], 2);
    let steps = doc["search"]["steps"].as_array().unwrap().len();
    // Steps planned at 600 ms (one ends sooner when its drain is quick): at most 4 in 2 s.
    assert!((1..=4).contains(&steps), "{steps} steps of 600 ms planned in 2 s");
}

/// `--repeat 100` in a --max-duration of 5 s: the runs that fit, a report that says how
/// many, exit 2.
#[test]
fn max_duration_bounds_a_repeat() {
    if !uring_available() {
        return;
    }
    let target = format!("tcp://{}", tcp_server(echo));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("repeat.json");
    let args = [
        &target,
        "-c",
        "1",
        "-t",
        "1",
        "--repeat",
        "100",
        "-d",
        "500ms",
        "--max-duration",
        "5s",
        "--no-progress",
        "--json",
        file.to_str().unwrap(),
    ];
    let ran = ringload(&args, Duration::from_secs(30));
    assert!(ran.took < Duration::from_secs(8), "took {:?}", ran.took);
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stdout, ran.stderr);
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let runs = doc["repeats"].as_array().unwrap().len();
    // Each run is planned at 2.5 s (1 s warm-up, 500 ms, 1 s drain): two fit, three may.
    assert!((1..=3).contains(&runs), "{runs} runs");
    let said = format!("stopped at --max-duration (5 s) after {runs} of 100 runs");
    assert!(ran.stdout.contains(&said), "{}", ran.stdout);
    assert_eq!(doc["exit_code"], 2);
    let cut = doc["warnings"].as_array().unwrap().iter().find(|w| w["code"] == "runs_cut").cloned();
    assert_eq!(cut.map(|w| (w["runs"].clone(), w["planned"].clone())), Some((runs.into(), 100.into())));
}
