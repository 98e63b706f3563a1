//! Stream connections of the `tokio-uring` backend: the accepting tasks (and the thread
//! that accepts Unix connections for the runtime), and a task per connection.

use super::ctx::{Ctx, POLL};
use crate::config::Mode;
use crate::policy::{self, CloseReason, SOURCE_CHUNK};
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
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

/// The instant the connection must end unless bytes move: the drain deadline once
/// shutdown has begun, else `--idle-timeout` after the last activity.
fn deadline(
    ctx: &Ctx,
    stop: &tokio::sync::watch::Receiver<Option<Instant>>,
    last_active: Instant,
) -> Option<(Instant, CloseReason)> {
    if let Some(drain) = *stop.borrow() {
        return Some((drain, CloseReason::Drain));
    }
    let idle = ctx.shared.config.idle_timeout?;
    Some((last_active.checked_add(idle)?, CloseReason::Idle))
}

/// Waits for `op`, or until the deadline (which may move when shutdown begins).
async fn until_deadline<T>(
    ctx: &Ctx,
    stop: &mut tokio::sync::watch::Receiver<Option<Instant>>,
    last_active: Instant,
    op: impl std::future::Future<Output = T>,
) -> Result<T, CloseReason> {
    tokio::pin!(op);
    loop {
        let limit = deadline(ctx, stop, last_active);
        let sleep = async {
            match limit {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            out = &mut op => return Ok(out),
            _ = sleep => return Err(limit.map_or(CloseReason::Drain, |(_, why)| why)),
            changed = stop.changed() => {
                if changed.is_err() {
                    // The worker is gone: nothing will wake us but the op itself.
                    return Ok(op.await);
                }
            }
        }
    }
}

/// Serves until EOF, an error (counted), or a deadline; returns why it ended.
async fn serve_until_done(ctx: &Ctx, conn: &Conn, mode: Mode) -> CloseReason {
    let mut buf = vec![0u8; ctx.shared.config.buffer_size as usize];
    let mut source_offset = 0u64;
    let mut stop = ctx.stop.clone();
    let mut last_active = Instant::now();
    loop {
        if mode == Mode::Source {
            let chunk = policy::source_chunk(source_offset, SOURCE_CHUNK);
            match until_deadline(ctx, &mut stop, last_active, conn.write_static(chunk)).await {
                Ok(Ok(n)) => {
                    source_offset += n as u64;
                    last_active = Instant::now();
                    policy::count_sent(&mut ctx.tally.borrow_mut(), n);
                }
                Ok(Err(e)) => {
                    policy::count_error(&mut ctx.tally.borrow_mut(), &e);
                    return CloseReason::Error;
                }
                Err(reason) => return reason,
            }
            continue;
        }
        // A read abandoned at a deadline takes its buffer along; the connection ends then.
        let (res, b) = match until_deadline(ctx, &mut stop, last_active, conn.read(buf)).await {
            Ok(read) => read,
            Err(reason) => return reason,
        };
        buf = b;
        let n = match res {
            Ok(0) => return CloseReason::Eof,
            Ok(n) => n,
            Err(e) => {
                policy::count_error(&mut ctx.tally.borrow_mut(), &e);
                return CloseReason::Error;
            }
        };
        last_active = Instant::now();
        policy::count_received(&mut ctx.tally.borrow_mut(), n);
        if policy::keeps_received(mode) {
            // A peer that stops reading blocks this write: the idle timeout (or the drain
            // deadline) ends the connection then.
            let (res, b) =
                match until_deadline(ctx, &mut stop, last_active, conn.write_all(buf.slice(..n))).await {
                    Ok(written) => written,
                    Err(reason) => return reason,
                };
            buf = b;
            if let Err(e) = res {
                policy::count_error(&mut ctx.tally.borrow_mut(), &e);
                return CloseReason::Error;
            }
            last_active = Instant::now();
            policy::count_sent(&mut ctx.tally.borrow_mut(), n);
        }
    }
}
