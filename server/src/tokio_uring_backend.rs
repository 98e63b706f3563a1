//! The `tokio-uring` backend: one tokio-uring runtime per CPU, each with its own
//! SO_REUSEPORT listeners, a task per connection doing read-then-write with an owned
//! buffer. It exists to show what a runtime-based io_uring design costs against the
//! hand-rolled ring of the `uring` backend. A connection holds one `--buffer-size` buffer
//! and reads again only after writing it back, so its memory is bounded by that.
//!
//! tokio-uring cannot adopt a bound Unix listener, so Unix stream connections are
//! accepted by a plain thread and handed to the runtime; it has no Unix datagram socket
//! at all (refused at configuration).

use crate::config::{Mode, SOURCE_CHUNK, SOURCE_PATTERN};
use crate::ratelimit::RateLimiter;
use crate::server::{Shared, SockKind, WorkerSetup};
use crate::stats::Counters;
use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_uring::buf::BoundedBuf;

const POLL: Duration = Duration::from_millis(50);

type Tally = Rc<RefCell<Counters>>;

/// Runs a tokio-uring worker to completion; reports set-up on `ready`.
pub(crate) fn run(setup: WorkerSetup, ready: SyncSender<Result<crate::ring::TaskRun, String>>) {
    if let Some(cpu) = setup.cpu {
        if let Err(e) = crate::sys::pin_current_thread(cpu) {
            let _ = ready.send(Err(format!("tokio-uring worker {}: {e}", setup.index)));
            return;
        }
    }
    let runtime = match tokio_uring::Runtime::new(&tokio_uring::builder()) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(format!("tokio-uring worker {}: {e}", setup.index)));
            return;
        }
    };
    runtime.block_on(serve(setup, ready));
}

async fn serve(setup: WorkerSetup, ready: SyncSender<Result<crate::ring::TaskRun, String>>) {
    let shared = setup.shared.clone();
    let tally: Tally = Rc::new(RefCell::new(Counters::default()));
    let open = Rc::new(RefCell::new(0u64));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for l in &setup.listeners {
        let fd = match l.fd.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                let _ = ready.send(Err(format!("tokio-uring: {e}")));
                return;
            }
        };
        let unix = socket2::SockRef::from(&fd).local_addr().map(|a| a.is_unix()).unwrap_or(false);
        let ctx = Ctx {
            shared: shared.clone(),
            index: setup.index,
            tally: tally.clone(),
            open: open.clone(),
            stop: stop_rx.clone(),
        };
        let mode = l.mode;
        match (l.kind, unix) {
            (SockKind::Stream, false) => {
                let listener = tokio_uring::net::TcpListener::from_std(std::net::TcpListener::from(fd));
                tasks.push(tokio_uring::spawn(accept_tcp(ctx, listener, mode)));
            }
            (SockKind::Stream, true) => {
                // Worker 0 accepts for the shared Unix listener (one acceptor is enough).
                if setup.index == 0 {
                    tasks.push(tokio_uring::spawn(accept_unix(
                        ctx,
                        std::os::unix::net::UnixListener::from(fd),
                        mode,
                    )));
                }
            }
            (SockKind::Datagram { .. }, false) => {
                let sock = tokio_uring::net::UdpSocket::from_std(std::net::UdpSocket::from(fd));
                tasks.push(tokio_uring::spawn(udp(ctx, sock, mode)));
            }
            (SockKind::Datagram { .. }, true) => {}
        }
    }
    let _ = ready.send(Ok(crate::ring::TaskRun::Plain));
    let publish = |tally: &Tally, open: &Rc<RefCell<u64>>| {
        let mut c = *tally.borrow();
        c.open = *open.borrow();
        shared.stats.worker(setup.index).publish(&c);
    };
    // Publish the tally and watch for shutdown.
    while !shared.shutdown.load(Ordering::Acquire) {
        publish(&tally, &open);
        tokio::time::sleep(POLL).await;
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // Connections go on until EOF or the drain deadline.
    let deadline = Instant::now() + shared.config.drain_timeout + Duration::from_millis(500);
    while *open.borrow() > 0 && Instant::now() < deadline {
        publish(&tally, &open);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    publish(&tally, &open);
}

#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    index: usize,
    tally: Tally,
    open: Rc<RefCell<u64>>,
    stop: watch::Receiver<bool>,
}

impl Ctx {
    /// Takes a connection in, or refuses it past `--max-conns`.
    fn admit(&self) -> bool {
        if self.shared.open_conns.fetch_add(1, Ordering::Relaxed) >= self.shared.config.max_conns {
            self.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
            self.tally.borrow_mut().refused += 1;
            return false;
        }
        self.tally.borrow_mut().accepted += 1;
        *self.open.borrow_mut() += 1;
        true
    }

    /// Counts a connection out and publishes at once (before the peer can see the close).
    fn release(&self) {
        self.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
        self.tally.borrow_mut().closed += 1;
        *self.open.borrow_mut() -= 1;
        let mut c = *self.tally.borrow();
        c.open = *self.open.borrow();
        self.shared.stats.worker(self.index).publish(&c);
    }
}

async fn accept_tcp(mut ctx: Ctx, listener: tokio_uring::net::TcpListener, mode: Mode) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    if ctx.admit() {
                        let c = ctx.clone();
                        tokio_uring::spawn(async move { serve_conn(&c, Conn::Tcp(stream), mode).await });
                    }
                }
                Err(_) => {
                    ctx.tally.borrow_mut().err_accept += 1;
                    tokio::time::sleep(POLL).await;
                }
            },
            _ = ctx.stop.changed() => return,
        }
    }
}

async fn accept_unix(mut ctx: Ctx, listener: std::os::unix::net::UnixListener, mode: Mode) {
    // A plain thread accepts and hands each stream over a channel.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::os::unix::net::UnixStream>(64);
    let shared = ctx.shared.clone();
    let _ = socket2::SockRef::from(&listener).set_read_timeout(Some(Duration::from_millis(100)));
    std::thread::spawn(move || {
        while !shared.shutdown.load(Ordering::Acquire) {
            if let Ok((s, _)) = listener.accept() {
                if tx.blocking_send(s).is_err() {
                    return;
                }
            }
        }
    });
    loop {
        tokio::select! {
            s = rx.recv() => match s {
                Some(s) => {
                    if ctx.admit() {
                        let c = ctx.clone();
                        let conn = Conn::Unix(tokio_uring::net::UnixStream::from_std(s));
                        tokio_uring::spawn(async move { serve_conn(&c, conn, mode).await });
                    }
                }
                None => return,
            },
            _ = ctx.stop.changed() => return,
        }
    }
}

enum Conn {
    Tcp(tokio_uring::net::TcpStream),
    Unix(tokio_uring::net::UnixStream),
}

impl Conn {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Conn::Tcp(s) => s.read(buf).await,
            Conn::Unix(s) => s.read(buf).await,
        }
    }

    async fn write_all(&self, buf: tokio_uring::buf::Slice<Vec<u8>>) -> (io::Result<()>, Vec<u8>) {
        let (res, slice) = match self {
            Conn::Tcp(s) => s.write_all(buf).await,
            Conn::Unix(s) => s.write_all(buf).await,
        };
        (res, slice.into_inner())
    }

    /// Shuts both directions: the peer sees the close at once, and an abandoned read
    /// still in the kernel (which keeps the socket alive) completes.
    fn shutdown(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }

    async fn write_static(&self, data: &'static [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(data).submit().await.0,
            Conn::Unix(s) => s.write(data).submit().await.0,
        }
    }
}

/// Serves one connection until EOF, an error, the idle timeout or the drain deadline,
/// then shuts it down.
async fn serve_conn(ctx: &Ctx, conn: Conn, mode: Mode) {
    serve_until_done(ctx, &conn, mode).await;
    ctx.release();
    conn.shutdown();
}

async fn serve_until_done(ctx: &Ctx, conn: &Conn, mode: Mode) {
    let config = &ctx.shared.config;
    let mut buf = vec![0u8; config.buffer_size as usize];
    let mut source_offset = 0u64;
    let mut stop = ctx.stop.clone();
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    loop {
        let idle = config.idle_timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600));
        let deadline = drain_deadline.unwrap_or_else(|| tokio::time::Instant::now() + idle);
        if mode == Mode::Source {
            let phase = (source_offset % 251) as usize;
            let data: &'static [u8] = &SOURCE_PATTERN[phase..phase + SOURCE_CHUNK];
            match conn.write_static(data).await {
                Ok(n) => {
                    source_offset += n as u64;
                    let mut t = ctx.tally.borrow_mut();
                    t.bytes_out += n as u64;
                    t.sends += 1;
                }
                Err(e) => {
                    count_error(&mut ctx.tally.borrow_mut(), &e);
                    return;
                }
            }
            if *stop.borrow() && drain_deadline.is_none() {
                drain_deadline = Some(tokio::time::Instant::now() + config.drain_timeout);
            }
            if drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                ctx.tally.borrow_mut().drain_closed += 1;
                return;
            }
            continue;
        }
        let read = tokio::select! {
            r = conn.read(buf) => r,
            _ = tokio::time::sleep_until(deadline) => {
                let mut t = ctx.tally.borrow_mut();
                if drain_deadline.is_some() { t.drain_closed += 1 } else { t.idle_closed += 1 }
                return;
            }
            _ = stop.changed(), if drain_deadline.is_none() => {
                drain_deadline = Some(tokio::time::Instant::now() + config.drain_timeout);
                // The read was dropped with its buffer: start a fresh one.
                buf = vec![0u8; config.buffer_size as usize];
                continue;
            }
        };
        let (res, b) = read;
        buf = b;
        let n = match res {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                count_error(&mut ctx.tally.borrow_mut(), &e);
                return;
            }
        };
        {
            let mut t = ctx.tally.borrow_mut();
            t.bytes_in += n as u64;
            t.recv_ops += 1;
        }
        if mode == Mode::Echo {
            let (res, b) = conn.write_all(buf.slice(..n)).await;
            buf = b;
            if let Err(e) = res {
                count_error(&mut ctx.tally.borrow_mut(), &e);
                return;
            }
            let mut t = ctx.tally.borrow_mut();
            t.bytes_out += n as u64;
            t.sends += 1;
        }
    }
}

async fn udp(mut ctx: Ctx, sock: tokio_uring::net::UdpSocket, mode: Mode) {
    let buffer_size = ctx.shared.config.buffer_size as usize;
    let mut limiter = ctx
        .shared
        .config
        .udp_rate_limit
        .map(|pps| RateLimiter::new(pps, (pps / 10).max(1), 65_536, Instant::now()));
    let mut buf = vec![0u8; buffer_size + 1];
    loop {
        let received = tokio::select! {
            r = sock.recv_from(buf) => r,
            _ = ctx.stop.changed() => return,
        };
        let (res, b) = received;
        buf = b;
        let Ok((n, from)) = res else {
            ctx.tally.borrow_mut().err_other += 1;
            buf = vec![0u8; buffer_size + 1];
            continue;
        };
        {
            let mut t = ctx.tally.borrow_mut();
            t.dgrams_in += 1;
            if n > buffer_size {
                t.dgram_drop_truncated += 1;
                continue;
            }
            t.bytes_in += n as u64;
            if mode == Mode::Discard {
                t.dgrams_discarded += 1;
                continue;
            }
            if let Some(l) = limiter.as_mut() {
                if !l.allow(from.ip(), Instant::now()) {
                    t.dgram_drop_rate_limited += 1;
                    continue;
                }
            }
        }
        let (res, slice) = sock.send_to(buf.slice(..n), from).await;
        buf = slice.into_inner();
        let mut t = ctx.tally.borrow_mut();
        match res {
            Ok(m) => {
                t.dgrams_echoed += 1;
                t.bytes_out += m as u64;
            }
            Err(_) => t.dgram_drop_send_error += 1,
        }
    }
}

fn count_error(c: &mut Counters, e: &io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionReset => c.err_reset += 1,
        io::ErrorKind::BrokenPipe => c.err_pipe += 1,
        _ => c.err_other += 1,
    }
}
