//! Shared helpers for the end-to-end tests: starting servers (in-process or the binary),
//! clients with timeouts (the datagram ones in `dgram.rs`), seeded payloads, and bounded
//! waits on observable conditions.
#![allow(dead_code)]

pub mod dgram;

use rand::{Rng, SeedableRng, rngs::StdRng};
use ringecho::{Backend, Config, Listen, Server, ServerHandle};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
#[allow(unused_imports)]
pub use testkit::{cpu_ticks, eventually, rss_kib};

/// Every client operation gives up after this long, so a server bug fails a test instead
/// of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Instantiates each named test, a `fn(Backend)`, once per backend, in modules named
/// after them: `uring::name`, `epoll::name`, `threads::name`, `tokio_uring::name`.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod uring { $( #[test] fn $name() { super::$name(ringecho::Backend::Uring) } )* }
        mod epoll { $( #[test] fn $name() { super::$name(ringecho::Backend::Epoll) } )* }
        mod threads { $( #[test] fn $name() { super::$name(ringecho::Backend::Threads) } )* }
        mod tokio_uring { $( #[test] fn $name() { super::$name(ringecho::Backend::TokioUring) } )* }
    };
}

/// An in-process server for one test. Dropping it stops the server and asserts that its
/// buffer bookkeeping never refused anything (`buf_errors == 0`), so every end-to-end test
/// checks that rule without saying so.
pub struct TestServer(Option<ServerHandle>);

impl std::ops::Deref for TestServer {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        self.0.as_ref().expect("running")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let Some(h) = self.0.take() else { return };
        h.shutdown();
        let totals = h.join().total;
        if !std::thread::panicking() {
            assert_eq!(totals.buf_errors, 0, "buffer bookkeeping refused something: {totals:?}");
        }
    }
}

/// Starts an in-process server of `backend` on 127.0.0.1:0 with `tweak` applied. `None`
/// only when the backend needs io_uring, this machine lacks it and the run allows
/// skipping (see `testkit`); otherwise a missing io_uring fails the test.
pub fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<TestServer> {
    if !available(backend) {
        return None;
    }
    let mut config = Config {
        backend,
        listen: vec![Listen::Tcp("127.0.0.1:0".parse().unwrap()).into()],
        drain_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    tweak(&mut config);
    match Server::start(config) {
        Ok(h) => Some(TestServer(Some(h))),
        Err(e) => panic!("server failed to start: {e}"),
    }
}

/// Whether `backend` can run here; when it needs io_uring and this machine lacks it, the
/// test fails unless the run allows skipping.
pub fn available(backend: Backend) -> bool {
    !backend.needs_io_uring() || uring_available()
}

/// Whether io_uring works here; when it does not, the test fails unless the run allows
/// skipping.
pub fn uring_available() -> bool {
    testkit::require("io_uring", ringecho::ring::probe().map(drop))
}

/// A TCP client with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// `len` seeded random bytes.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

/// Writes `data` and reads the same number of bytes back (ping-pong; fine for data that
/// fits in the socket buffers).
pub fn echo_once<S: Read + Write>(s: &mut S, data: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(data)?;
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

/// Sends `data` on one thread while reading on this one, then half-closes and reads to EOF;
/// returns everything read. Works for any size: the server sees a pipelined stream.
pub fn echo_full_duplex(s: TcpStream, data: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut writer = s.try_clone()?;
    let w = std::thread::spawn(move || -> io::Result<()> {
        writer.write_all(&data)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut back = Vec::new();
    let mut reader = s;
    reader.read_to_end(&mut back)?;
    w.join().expect("writer thread")?;
    Ok(back)
}

/// Asserts that, once idle, the server holds no connection, every provided buffer is back
/// in the kernel's hands, every connection accepted was closed, and the buffer
/// bookkeeping never refused anything.
pub fn assert_settled(h: &ServerHandle) {
    let ok = eventually(Duration::from_secs(10), || {
        let t = h.stats().total;
        t.open == 0
            && t.buf_ring_available == t.buf_ring_size
            && t.queued_bytes == 0
            && t.accepted == t.closed
    });
    let t = h.stats().total;
    assert!(ok, "server did not settle: {t:?}");
    assert_eq!(t.buf_errors, 0, "buffer bookkeeping refused something: {t:?}");
}

/// The `ringecho` binary, started with `args`; its first stdout lines are the bound
/// addresses.
pub struct Binary {
    pub child: Child,
    pub addrs: Vec<String>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Binary {
    /// Starts the binary with `--backend` and reads `listeners` address lines.
    pub fn start_on(backend: Backend, args: &[&str], listeners: usize) -> Binary {
        let mut all = vec!["--backend", backend.name()];
        all.extend_from_slice(args);
        Binary::start(&all, listeners)
    }

    /// Starts the binary with `--backend` under a soft and hard descriptor limit of
    /// `nofile` (set by the shell before exec).
    pub fn start_on_with_nofile(backend: Backend, nofile: u32, args: &[&str], listeners: usize) -> Binary {
        let script = format!("ulimit -n {nofile} && exec \"$0\" \"$@\"");
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_ringecho"))
            .args(["--backend", backend.name()])
            .args(args);
        Binary::spawn(cmd, listeners)
    }

    /// Starts the binary and reads `listeners` address lines.
    pub fn start(args: &[&str], listeners: usize) -> Binary {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringecho"));
        cmd.args(args);
        Binary::spawn(cmd, listeners)
    }

    fn spawn(mut cmd: Command, listeners: usize) -> Binary {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn ringecho");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut addrs = Vec::new();
        for _ in 0..listeners {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let addr = line
                .trim()
                .strip_prefix("listening ")
                .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
                .to_owned();
            addrs.push(addr);
        }
        Binary { child, addrs, stdout }
    }

    /// The TCP address of listener `i` (`tcp 127.0.0.1:40123`).
    pub fn tcp(&self, i: usize) -> SocketAddr {
        self.addrs[i].strip_prefix("tcp ").expect("a tcp listener").parse().unwrap()
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with the PID of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits (bounded) for exit; returns the exit code and the rest of stdout.
    pub fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut rest = String::new();
                self.stdout.read_to_string(&mut rest).unwrap();
                if rest.contains("totals:") {
                    assert!(rest.contains(" buf_errors=0"), "buffer bookkeeping refused something: {rest}");
                }
                return (status.code(), rest);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("ringecho did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary to completion with `args` (a usage error test); returns the exit code
/// and stderr.
pub fn run_binary(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringecho")).args(args).output().expect("run ringecho");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}
