//! Helpers for ringload's tests: plans, and small echo servers that misbehave on purpose
//! so that every figure ringload reports is shown able to fail.
#![allow(dead_code)]

use ringload::{Model, Plan, Progress, Report, SizeSpec, Stop, Target};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// A one-worker ringecho on `listen` in `mode` (epoll unless `tune` says otherwise:
/// it needs no io_uring), its config tuned by `tune`.
pub fn ringecho(
    listen: ringecho::Listen,
    mode: ringecho::Mode,
    tune: impl FnOnce(&mut ringecho::Config),
) -> ringecho::ServerHandle {
    let mut config = ringecho::Config {
        listen: vec![ringecho::Endpoint { listen, mode }],
        backend: ringecho::Backend::Epoll,
        workers: Some(1),
        cpus: ringecho::Cpus::Allowed,
        ..ringecho::Config::default()
    };
    tune(&mut config);
    ringecho::Server::start(config).expect("ringecho starts")
}

/// An address on the loopback that the kernel picks the port of.
pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Whether io_uring works here; when it does not, the test fails unless the run allows
/// skipping (`RINGECHO_ALLOW_SKIP=1`, see `testkit`).
pub fn uring_available() -> bool {
    testkit::require("io_uring", ringecho::ring::probe().map(drop))
}

/// A plan against `target` with small defaults: 2 connections, 64 B, 1 s, no warm-up.
pub fn plan(target: Option<Target>, tweak: impl FnOnce(&mut Plan)) -> Plan {
    let allowed = ringecho::sys::allowed_cpus().unwrap();
    let mut p = Plan {
        target,
        connections: 2,
        model: Model::Closed { depth: 1 },
        size: SizeSpec { min: 64, max: 64 },
        stop: Stop::Duration(Duration::from_secs(1)),
        warmup: Duration::ZERO,
        verify: true,
        cpus: vec![*allowed.last().unwrap()],
        udp_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        drain: Duration::from_secs(1),
        seed: 1,
        churn: None,
        coalesce: false,
        send_window: None,
        gso: true,
        max_duration: std::time::Duration::from_secs(60),
        intervals: false,
        throughput: Default::default(),
        spin: false,
        server_metrics: None,
        server_pid: None,
        timestamps: ringload::plan::Timestamps::Kernel,
    };
    tweak(&mut p);
    p.validate().unwrap();
    p
}

/// Runs a plan to its end.
pub fn run(plan: Plan) -> Report {
    ringload::run(plan, Arc::new(AtomicBool::new(false)), Progress::Hide).expect("run")
}

/// A TCP server on loopback that hands each connection to `serve` on its own thread.
pub fn tcp_server(serve: fn(TcpStream, Instant)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Instant::now();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            conn.set_nodelay(true).unwrap();
            std::thread::spawn(move || serve(conn, started));
        }
    });
    addr
}

/// A UDP server on loopback: `answer(n, datagram)` returns the replies for the n-th
/// datagram (none, one, or several), sent back to its source.
pub fn udp_server(answer: fn(u64, &[u8], &mut Vec<Vec<u8>>)) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut out = Vec::new();
        let mut n = 0u64;
        while let Ok((len, from)) = sock.recv_from(&mut buf) {
            out.clear();
            answer(n, &buf[..len], &mut out);
            n += 1;
            for reply in &out {
                let _ = sock.send_to(reply, from);
            }
        }
    });
    addr
}

/// Echo, but one byte at a time.
pub fn echo_bytewise(mut s: TcpStream, _: Instant) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            return;
        }
        for b in &buf[..n] {
            if s.write_all(std::slice::from_ref(b)).is_err() {
                return;
            }
        }
    }
}

/// Echo, flipping one byte in every 1,000.
pub fn echo_corrupt(mut s: TcpStream, _: Instant) {
    let mut buf = [0u8; 4096];
    let mut total = 0u64;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            return;
        }
        for (i, b) in buf[..n].iter_mut().enumerate() {
            if (total + i as u64) % 1000 == 999 {
                *b ^= 0x01;
            }
        }
        total += n as u64;
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Echo, but stall for 200 ms at the start of every second (since the server started).
pub fn echo_stalling(mut s: TcpStream, started: Instant) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            return;
        }
        let into_second = started.elapsed().as_millis() % 1000;
        if into_second < 200 {
            std::thread::sleep(Duration::from_millis((200 - into_second) as u64));
        }
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// base64 of a V2+DEFLATE histogram of ringload's range whose header claims
/// `payload_len` bytes of counts, followed by `payload`.
pub fn crafted_histogram(payload_len: u32, payload: &[u8]) -> String {
    use base64::Engine;
    use std::io::Write;
    let mut raw = Vec::new();
    for w in [0x1c84_9313u32, payload_len, 0, 3] {
        raw.extend_from_slice(&w.to_be_bytes());
    }
    for w in [1u64, 3_600_000_000_000, 1f64.to_bits()] {
        raw.extend_from_slice(&w.to_be_bytes());
    }
    raw.extend_from_slice(payload);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&raw).unwrap();
    let z = z.finish().unwrap();
    let mut b = 0x1c84_9314u32.to_be_bytes().to_vec();
    b.extend_from_slice(&(z.len() as u32).to_be_bytes());
    b.extend_from_slice(&z);
    base64::engine::general_purpose::STANDARD.encode(b)
}
