//! Unix datagram runs deeper than the server's queue. A Unix datagram socket queues at
//! most `net.unix.max_dgram_qlen` datagrams (10 by default); a closed loop of `-c × --depth`
//! beyond that meets a full queue at once. io_uring's own retry of such a send went out as
//! an empty datagram (the send completed with 0 bytes, the server echoed 0 bytes), and the
//! datagram counted lost although every echo server answered everything. Each run here
//! must lose nothing and send every datagram whole, once.

mod util;

use ringload::{Model, Target};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use util::*;

/// The kernel's bound on a Unix datagram socket's queue.
fn max_dgram_qlen() -> u32 {
    std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(10)
}

/// The 8-line echo server every language has: receive, send back to the sender, blocking.
fn echo_thread(path: &Path) {
    let sock = UnixDatagram::bind(path).unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Some(to) = from.as_pathname() else { continue };
            // A client gone at the end of its run is not the test's business.
            let _ = sock.send_to(&buf[..n], to);
        }
    });
}

/// ringecho's io_uring backend, in this process.
fn ringecho_uring(path: &Path) -> ringecho::ServerHandle {
    let config = ringecho::Config {
        listen: vec![ringecho::Endpoint {
            listen: ringecho::Listen::UnixGram(path.to_path_buf()),
            mode: ringecho::Mode::Echo,
        }],
        backend: ringecho::Backend::Uring,
        workers: Some(1),
        cpus: ringecho::Cpus::Allowed,
        ..ringecho::Config::default()
    };
    ringecho::Server::start(config).expect("ringecho starts")
}

/// Depth 16 over enough flows to hold several times the server's queue: nothing lost,
/// nothing empty, every datagram sent whole by one send and answered.
#[test]
fn a_run_deeper_than_the_servers_queue_loses_nothing() {
    if !uring_available() {
        return;
    }
    let depth = 16;
    let connections = (4 * max_dgram_qlen()).div_ceil(depth).max(8);
    let dir = tempfile::tempdir().unwrap();
    let (thread_path, ringecho_path) = (dir.path().join("thread.sock"), dir.path().join("ringecho.sock"));
    echo_thread(&thread_path);
    let _server = ringecho_uring(&ringecho_path);
    for (server, path) in [("an echo thread", thread_path), ("ringecho", ringecho_path)] {
        let r = run(plan(Some(Target::UnixGram(path)), |p| {
            p.connections = connections;
            p.model = Model::Closed { depth };
        }));
        let c = &r.counters;
        let size = 64;
        assert!(c.sent > 1000, "{server}: {c:?}");
        assert_eq!((c.lost, c.garbage, c.socket_errors, c.late), (0, 0, 0, 0), "{server}: {c:?}");
        assert_eq!(c.reordered, 0, "{server}: a datagram sent again overtook none: {c:?}");
        assert_eq!((c.completed, c.unanswered_at_end), (c.sent, 0), "{server}: all answered: {c:?}");
        assert_eq!(c.bytes_sent, c.sent * size, "{server}: every datagram went whole, once: {c:?}");
        assert_eq!(c.bytes_received, c.bytes_sent, "{server}: {c:?}");
        assert_eq!(c.sends, c.sent, "{server}: one send a datagram, refused ones not counted: {c:?}");
        assert_eq!(r.exit_code(), 0, "{server}: {:?}", r.warnings);
    }
}
