//! The minimal UDP echo: one blocking `recvfrom`/`sendto` loop on one socket. The floor
//! ringecho's datagram path is compared against. Prints `listening udp ADDR`.
#![forbid(unsafe_code)]

use std::net::UdpSocket;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let sock = UdpSocket::bind(&addr)?;
    println!("listening udp {}", sock.local_addr()?);
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        let _ = sock.send_to(&buf[..n], from);
    }
}
