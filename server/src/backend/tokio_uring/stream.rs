//! Stream connections of the `tokio-uring` backend: the accepting tasks (and the thread
//! that accepts Unix connections for the runtime), and a task per connection.

use super::{Ctx, POLL};
use crate::config::Mode;
use crate::policy::{self, CloseReason, SOURCE_CHUNK};
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_uring::buf::BoundedBuf;

pub(super) async fn accept_tcp(mut ctx: Ctx, listener: tokio_uring::net::TcpListener, mode: Mode) {
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

pub(super) async fn accept_unix(mut ctx: Ctx, listener: std::os::unix::net::UnixListener, mode: Mode) {
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
    let reason = serve_until_done(ctx, &conn, mode).await;
    ctx.release(reason);
    conn.shutdown();
}

async fn serve_until_done(ctx: &Ctx, conn: &Conn, mode: Mode) -> CloseReason {
    let config = &ctx.shared.config;
    let mut buf = vec![0u8; config.buffer_size as usize];
    let mut source_offset = 0u64;
    let mut stop = ctx.stop.clone();
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let drain_from_now = || {
        let now = tokio::time::Instant::now();
        now.checked_add(config.drain_timeout).unwrap_or(now + Duration::from_secs(365 * 86_400))
    };
    loop {
        let idle = config.idle_timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600));
        let deadline = drain_deadline.unwrap_or_else(|| tokio::time::Instant::now() + idle);
        if mode == Mode::Source {
            match conn.write_static(policy::source_chunk(source_offset, SOURCE_CHUNK)).await {
                Ok(n) => {
                    source_offset += n as u64;
                    policy::count_sent(&mut ctx.tally.borrow_mut(), n);
                }
                Err(e) => {
                    policy::count_error(&mut ctx.tally.borrow_mut(), &e);
                    return CloseReason::Error;
                }
            }
            if *stop.borrow() && drain_deadline.is_none() {
                drain_deadline = Some(drain_from_now());
            }
            if drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return CloseReason::Drain;
            }
            continue;
        }
        let read = tokio::select! {
            r = conn.read(buf) => r,
            _ = tokio::time::sleep_until(deadline) => {
                return if drain_deadline.is_some() { CloseReason::Drain } else { CloseReason::Idle };
            }
            _ = stop.changed(), if drain_deadline.is_none() => {
                drain_deadline = Some(drain_from_now());
                // The read was dropped with its buffer: start a fresh one.
                buf = vec![0u8; config.buffer_size as usize];
                continue;
            }
        };
        let (res, b) = read;
        buf = b;
        let n = match res {
            Ok(0) => return CloseReason::Eof,
            Ok(n) => n,
            Err(e) => {
                policy::count_error(&mut ctx.tally.borrow_mut(), &e);
                return CloseReason::Error;
            }
        };
        policy::count_received(&mut ctx.tally.borrow_mut(), n);
        if policy::keeps_received(mode) {
            let (res, b) = conn.write_all(buf.slice(..n)).await;
            buf = b;
            if let Err(e) = res {
                policy::count_error(&mut ctx.tally.borrow_mut(), &e);
                return CloseReason::Error;
            }
            policy::count_sent(&mut ctx.tally.borrow_mut(), n);
        }
    }
}
