//! Datagram clients for the end-to-end tests (UDP and Unix, connected, with timeouts) and
//! the wait until the server has accounted for every datagram it received.

use ringecho::ServerHandle;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;
use testkit::eventually;

pub fn udp_client(server: std::net::SocketAddr) -> UdpSocket {
    let local = if server.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" };
    let s = UdpSocket::bind(local).unwrap();
    s.connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// The server's UDP addresses, in listener order.
pub fn udp_addrs(h: &ServerHandle) -> Vec<std::net::SocketAddr> {
    h.local_addrs()
        .iter()
        .map(|a| match a {
            ringecho::BoundAddr::Udp(a) => *a,
            other => panic!("not UDP: {other}"),
        })
        .collect()
}

/// A connected datagram client, UDP or Unix.
pub trait Client {
    fn send(&self, data: &[u8]) -> std::io::Result<usize>;
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize>;
    fn set_timeout(&self, timeout: Duration);
}

impl Client for UdpSocket {
    fn send(&self, data: &[u8]) -> std::io::Result<usize> {
        UdpSocket::send(self, data)
    }
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        UdpSocket::recv(self, buf)
    }
    fn set_timeout(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).unwrap();
    }
}

impl Client for UnixDatagram {
    fn send(&self, data: &[u8]) -> std::io::Result<usize> {
        UnixDatagram::send(self, data)
    }
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        UnixDatagram::recv(self, buf)
    }
    fn set_timeout(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).unwrap();
    }
}

/// Waits until the server has counted at least `received` datagrams and accounted for
/// every one, and returns its counters.
pub fn settled_dgrams(h: &ServerHandle, received: u64) -> ringecho::Counters {
    let accounted = |t: &ringecho::Counters| {
        t.dgrams_echoed
            + t.dgrams_discarded
            + t.dgram_drop_truncated
            + t.dgram_drop_rate_limited
            + t.dgram_drop_unanswerable
            + t.dgram_drop_send_error
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            let t = h.stats().total;
            t.dgrams_in >= received && t.dgrams_in == accounted(&t) && t.buf_ring_available == t.buf_ring_size
        }),
        "datagrams not accounted for: {:?}",
        h.stats().total
    );
    h.stats().total
}
