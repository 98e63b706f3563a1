//! The rate limiter's key for a datagram's sender ([`SourceKey`]), read from the address
//! the kernel wrote for a received datagram, or from the address std reports.
//!
//! Invariants (tested below): reading an address never panics, whatever its bytes and
//! length (the kernel's, untrusted); a Unix path and the kernel's `sockaddr_un` for it
//! give the same key.

/// A datagram's source as the rate limiter keys it: the IP for UDP (any port, so one host
/// cannot multiply its share by using many ports), a hash of the path for Unix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    V4([u8; 4]),
    V6([u8; 16]),
    Unix(u64),
}

impl SourceKey {
    /// Reads the key from a `sockaddr` the kernel wrote; `None` for an unbound Unix sender
    /// (nothing to reply to) or an address too short to be real.
    pub fn from_sockaddr(name: &[u8]) -> Option<SourceKey> {
        let family = u16::from_ne_bytes([*name.first()?, *name.get(1)?]);
        match i32::from(family) {
            libc::AF_INET if name.len() >= 8 => Some(SourceKey::V4(name[4..8].try_into().ok()?)),
            libc::AF_INET6 if name.len() >= 24 => Some(SourceKey::V6(name[8..24].try_into().ok()?)),
            libc::AF_UNIX if name.len() > 2 => Some(SourceKey::Unix(path_hash(&name[2..]))),
            _ => None,
        }
    }

    /// The key of an IP source.
    pub fn from_ip(addr: &std::net::SocketAddr) -> SourceKey {
        match addr.ip() {
            std::net::IpAddr::V4(ip) => SourceKey::V4(ip.octets()),
            std::net::IpAddr::V6(ip) => SourceKey::V6(ip.octets()),
        }
    }

    /// The key of a Unix source bound to `path`; `None` for an unbound sender.
    pub fn from_unix(path: Option<&std::path::Path>) -> Option<SourceKey> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path?.as_os_str().as_bytes();
        // As the kernel writes it in a sockaddr_un: the path and its terminating NUL.
        let mut name = Vec::with_capacity(bytes.len() + 1);
        name.extend_from_slice(bytes);
        name.push(0);
        Some(SourceKey::Unix(path_hash(&name)))
    }
}

fn path_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    // Up to the first NUL: the kernel may or may not count the terminator in the length.
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes[..end].hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn source_keys() {
        let mut v4 = [0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(SourceKey::from_sockaddr(&v4), Some(SourceKey::V4([127, 0, 0, 1])));
        assert_eq!(
            SourceKey::from_ip(&"127.0.0.1:9".parse().unwrap()),
            SourceKey::V4([127, 0, 0, 1]),
            "any port of one host is one source"
        );
        let unbound = (libc::AF_UNIX as u16).to_ne_bytes();
        assert_eq!(SourceKey::from_sockaddr(&unbound), None);
        assert_eq!(SourceKey::from_sockaddr(&[]), None);
        assert_eq!(SourceKey::from_sockaddr(&[1]), None);
        // The kernel's sockaddr_un and a path name the same source.
        let mut un = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        un.extend_from_slice(b"/tmp/c.sock\0");
        assert_eq!(SourceKey::from_sockaddr(&un), SourceKey::from_unix(Some("/tmp/c.sock".as_ref())));
        assert_eq!(SourceKey::from_unix(None), None);
    }

    proptest! {
        #[test]
        fn any_sockaddr_bytes_are_safe(name in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = SourceKey::from_sockaddr(&name);
        }
    }
}
