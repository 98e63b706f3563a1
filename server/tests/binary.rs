//! End-to-end tests of the `ringecho` binary: start-up output, signals, limits, usage
//! errors.

mod util;

use ringecho::Backend;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};
use util::*;

/// SIGTERM while clients are mid-echo: the server drains, every byte the clients sent
/// before the signal comes back, and it exits 0 with totals on stdout.
fn sigterm_drains_and_exits_zero(backend: Backend) {
    if !available(backend) {
        return;
    }
    let server = Binary::start_on(backend, &["--tcp", "127.0.0.1:0", "--drain-timeout", "10s"], 1);
    let addr = server.tcp(0);
    let mut clients = Vec::new();
    for id in 0..4u64 {
        let s = connect(addr);
        let data = payload(id, 4 << 20);
        let mut writer = s.try_clone().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let w = std::thread::spawn(move || {
            writer.write_all(&data).unwrap();
            tx.send(()).unwrap(); // everything is in the socket: "sent before the signal"
            data
        });
        let mut reader = s.try_clone().unwrap();
        let r = std::thread::spawn(move || {
            let mut back = Vec::new();
            reader.read_to_end(&mut back).unwrap();
            back
        });
        clients.push((s, w, rx, r));
    }
    for (_, _, rx, _) in &clients {
        rx.recv_timeout(IO_TIMEOUT).expect("client finished writing");
    }
    server.signal(libc::SIGTERM);
    let signalled = Instant::now();
    for (s, w, _, r) in clients {
        let sent = w.join().unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let back = r.join().unwrap();
        assert_eq!(back.len(), sent.len());
        assert!(back == sent);
    }
    let (code, out) = server.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert!(out.contains("totals:") && out.contains("accepted=4"), "{out}");
    assert!(out.contains(&format!("bytes_out={}", 4 * (4 << 20))), "{out}");
}

/// The drain timeout bounds shutdown: a client that keeps the connection open is closed.
fn drain_timeout_bounds_shutdown(backend: Backend) {
    if !available(backend) {
        return;
    }
    let server = Binary::start_on(backend, &["--tcp", "127.0.0.1:0", "--drain-timeout", "300ms"], 1);
    let mut s = connect(server.tcp(0));
    assert_eq!(echo_once(&mut s, b"hi").unwrap(), b"hi");
    server.signal(libc::SIGINT);
    let mut buf = [0u8; 8];
    assert_eq!(s.read(&mut buf).unwrap(), 0, "closed by the server after the drain timeout");
    let (code, out) = server.wait(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    // Every backend counts the connection it closed: accepted = closed, none left open.
    for counter in ["drain_closed=1 ", "accepted=1 ", " open=0 ", " closed=1 "] {
        assert!(out.contains(counter), "{counter}: {out}");
    }
}

/// --max-conns 2: the third connection is closed at once and counted.
fn max_conns_refuses_the_third(backend: Backend) {
    if !available(backend) {
        return;
    }
    let server = Binary::start_on(backend, &["--tcp", "127.0.0.1:0", "--max-conns", "2"], 1);
    let addr = server.tcp(0);
    let mut a = connect(addr);
    let mut b = connect(addr);
    assert_eq!(echo_once(&mut a, b"a").unwrap(), b"a");
    assert_eq!(echo_once(&mut b, b"b").unwrap(), b"b");
    let mut c = connect(addr);
    let _ = c.write_all(b"c");
    let mut buf = [0u8; 1];
    match c.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("third connection was served: {other:?}"),
    }
    // The first two still work.
    assert_eq!(echo_once(&mut a, b"again").unwrap(), b"again");
    drop((a, b, c));
    server.signal(libc::SIGTERM);
    let (code, out) = server.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(out.contains("refused=1") && out.contains("accepted=2"), "{out}");
}

/// With no clients, SIGTERM ends the server promptly, whatever it serves (every listener
/// kind, metrics, stats): a bound well under the one-second waits a backend could hide.
fn shutdown_with_no_clients_is_prompt(backend: Backend) {
    if !available(backend) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (stream, dgram) = (dir.path().join("s.sock"), dir.path().join("d.sock"));
    let (stream, dgram) = (stream.to_str().unwrap(), dgram.to_str().unwrap());
    let mut args = vec!["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--unix", stream];
    if backend.has_unix_datagram() {
        args.extend(["--unixgram", dgram]);
    }
    args.extend(["--metrics", "127.0.0.1:0", "--stats", "1s"]);
    let listeners = args.iter().filter(|a| a.starts_with("--") && **a != "--stats").count();
    // The fastest of three: a hidden one-second wait shows in every one, scheduler noise
    // on a loaded machine does not.
    let fastest = (0..3)
        .map(|_| {
            let server = Binary::start_on(backend, &args, listeners);
            let t0 = Instant::now();
            server.signal(libc::SIGTERM);
            let (code, _) = server.wait(Duration::from_secs(10));
            assert_eq!(code, Some(0));
            t0.elapsed()
        })
        .min()
        .unwrap();
    assert!(fastest < Duration::from_millis(500), "{}: shutdown took {fastest:?}", backend.name());
}

/// SIGHUP ends the server like SIGTERM (drain, totals, exit 0), and the socket files it
/// made are gone afterwards; so are they after a second signal cuts the drain short (130).
#[test]
fn sighup_and_second_signal_end_cleanly() {
    if !uring_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let server = Binary::start(&["--unix", path.to_str().unwrap()], 1);
    assert!(path.exists());
    server.signal(libc::SIGHUP);
    let (code, out) = server.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(out.contains("totals:"), "{out}");
    assert!(!path.exists(), "socket file left after SIGHUP");

    let server = Binary::start(&["--unix", path.to_str().unwrap(), "--drain-timeout", "20s"], 1);
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(echo_once(&mut client, b"hold").unwrap(), b"hold");
    server.signal(libc::SIGTERM);
    // The drain is under way (the client holds it open): a second signal exits at once.
    assert!(eventually(Duration::from_secs(5), || {
        server.signal(libc::SIGTERM);
        std::fs::metadata(&path).is_err()
    }));
    let (code, _) = server.wait(Duration::from_secs(5));
    assert_eq!(code, Some(130));
}

/// A start that fails after binding some listeners removes the socket files it made.
#[test]
fn failed_start_leaves_no_socket_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twice.sock");
    let p = path.to_str().unwrap();
    let (code, err) = run_binary(&["--backend", "epoll", "--unix", p, "--unix", p]);
    assert_eq!(code, Some(2), "{err}");
    assert!(!path.exists(), "socket file left after a failed start: {err}");
}

/// A reader that stops reading stdout (`ringecho | head -1`) is a normal end: the totals
/// printed into the closed pipe do not make the server panic.
#[test]
fn closed_stdout_is_a_normal_end() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringecho"))
        .args(["--backend", "epoll", "--tcp", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(first.starts_with("listening tcp"), "{first}");
    drop(out); // the reader goes away, like `head -1`
    // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Bad flags exit 2 and name the flag; an address in use names the address.
#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    for (args, needle) in [
        (&["--buffer-size", "lots"][..], "--buffer-size"),
        (&["--buffers", "1000"][..], "--buffers"),
        (&["--max-conn-buffer", "1KiB"][..], "--max-conn-buffer"),
        (&["--drain-timeout", "forever"][..], "--drain-timeout"),
        (&["--cpus", "0-"][..], "--cpus"),
        (&["--tcp", "localhost"][..], "--tcp"),
        (&["--stats", "0s"][..], "--stats"),
        (&["--drain-timeout", "18446744073709551615s"][..], "--drain-timeout"),
        (&["--workers", "4294967296"][..], "--workers"),
        (&["--workers", "100000"][..], "--workers"),
        (&["--unix", ""][..], "--unix"),
        (&["--no-such-flag"][..], "--no-such-flag"),
    ] {
        let (code, err) = run_binary(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn address_in_use_names_the_address() {
    if !uring_available() {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run_binary(&["--tcp", &addr]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&addr) && err.to_lowercase().contains("in use"), "{err}");
}

/// A stale Unix socket file is replaced; a live one is not.
#[test]
fn unix_socket_stale_replaced_live_refused() {
    if !uring_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves a stale file
    let server = Binary::start(&["--unix", path.to_str().unwrap()], 1);
    assert_eq!(server.addrs[0], format!("unix {}", path.display()));
    let mut u = std::os::unix::net::UnixStream::connect(&path).unwrap();
    u.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(echo_once(&mut u, b"ping").unwrap(), b"ping");

    let (code, err) = run_binary(&["--unix", path.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains(path.to_str().unwrap()) && err.contains("listening there"), "{err}");
    drop(u);
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(10)).0, Some(0));
}

for_each_backend!(
    sigterm_drains_and_exits_zero,
    drain_timeout_bounds_shutdown,
    max_conns_refuses_the_third,
    shutdown_with_no_clients_is_prompt
);
