//! UDP on the `tokio-uring` backend: one task per listener receives each datagram, lets
//! [`crate::policy::Datagrams`] decide its fate, and answers with exactly its own bytes.

use super::ctx::Ctx;
use crate::config::Mode;
use crate::policy::{Datagrams, Received, SourceKey, Verdict};
use std::time::Instant;
use tokio_uring::buf::BoundedBuf;

pub(super) async fn udp(mut ctx: Ctx, sock: tokio_uring::net::UdpSocket, mode: Mode) {
    let capacity = ctx.shared.dgram_capacity as usize;
    let mut rules = Datagrams::new(&ctx.shared.config, capacity, Instant::now());
    // One byte more than the largest datagram echoed: a datagram that fills it was too
    // big.
    let mut buf = vec![0u8; capacity + 1];
    loop {
        let received = tokio::select! {
            r = sock.recv_from(buf) => r,
            _ = ctx.stop.changed() => return,
        };
        let (res, b) = received;
        buf = b;
        let Ok((n, from)) = res else {
            ctx.tally.borrow_mut().err_other += 1;
            buf = vec![0u8; capacity + 1];
            continue;
        };
        let d = Received::single(n, n, Some(SourceKey::from_ip(&from)));
        let Verdict::Reply(echo) = rules.judge(mode, d, Instant::now(), &mut ctx.tally.borrow_mut()) else {
            continue;
        };
        let (res, slice) = sock.send_to(buf.slice(..echo.bytes), from).await;
        buf = slice.into_inner();
        Datagrams::replied(&mut ctx.tally.borrow_mut(), echo.datagrams, res);
    }
}
