//! Load targets: `tcp://HOST:PORT`, `udp://HOST:PORT`, `unix:///path`, `unixgram:///path`.
//! Parsing takes untrusted text and never panics; a host name is resolved once, here: to
//! every address it has, and (TCP) the first that accepts a connection is used.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// TCP.
    Tcp(SocketAddr),
    /// UDP.
    Udp(SocketAddr),
    /// Unix stream socket.
    Unix(PathBuf),
    /// Unix datagram socket.
    UnixGram(PathBuf),
}

/// Why a target could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// No known scheme.
    #[error("{0:?}: expected tcp://HOST:PORT, udp://HOST:PORT, unix:///PATH or unixgram:///PATH")]
    Scheme(String),
    /// The host or port is wrong.
    #[error("{0:?}: {1}")]
    Address(String, String),
}

impl Target {
    /// Parses a target URL, resolving a host name.
    pub fn parse(text: &str) -> Result<Target, TargetError> {
        Target::parse_with(text, true)
    }

    /// Parses a target as [`Display`](fmt::Display) writes it: the host must be a literal
    /// address. A name is refused, never resolved: this reads saved results, which are
    /// untrusted and must not make ringload touch the network.
    pub fn parse_literal(text: &str) -> Result<Target, TargetError> {
        Target::parse_with(text, false)
    }

    fn parse_with(text: &str, resolve_names: bool) -> Result<Target, TargetError> {
        let (scheme, rest) = text.split_once("://").ok_or_else(|| TargetError::Scheme(text.to_owned()))?;
        let scheme = scheme.to_ascii_lowercase();
        let scheme = scheme.as_str();
        let resolve = |rest: &str| -> Result<SocketAddr, TargetError> {
            let bad = |why: String| TargetError::Address(text.to_owned(), why);
            if rest.is_empty() || rest.contains('/') {
                return Err(bad("expected HOST:PORT".into()));
            }
            if let Ok(addr) = rest.parse() {
                return Ok(addr);
            }
            if !resolve_names {
                return Err(bad("expected a literal IP address and port".into()));
            }
            let mut addrs: Vec<SocketAddr> = Vec::new();
            for a in rest.to_socket_addrs().map_err(|e| bad(e.to_string()))? {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            match addrs.len() {
                0 => Err(bad("the name has no address".into())),
                1 => Ok(addrs[0]),
                _ if scheme == "tcp" => Ok(first_that_accepts(&addrs)),
                _ => Ok(addrs[0]),
            }
        };
        let path = |rest: &str| -> Result<PathBuf, TargetError> {
            if !rest.starts_with('/') || rest.len() < 2 {
                return Err(TargetError::Address(
                    text.to_owned(),
                    "expected an absolute path: unix:///tmp/echo.sock".into(),
                ));
            }
            if rest.len() >= 108 {
                return Err(TargetError::Address(text.to_owned(), "path longer than 107 bytes".into()));
            }
            Ok(PathBuf::from(rest))
        };
        match scheme {
            "tcp" => Ok(Target::Tcp(resolve(rest)?)),
            "udp" => Ok(Target::Udp(resolve(rest)?)),
            "unix" => Ok(Target::Unix(path(rest)?)),
            "unixgram" => Ok(Target::UnixGram(path(rest)?)),
            _ => Err(TargetError::Scheme(text.to_owned())),
        }
    }

    /// Whether each message is a datagram.
    pub fn is_datagram(&self) -> bool {
        matches!(self, Target::Udp(_) | Target::UnixGram(_))
    }

    /// The transport's name.
    pub fn transport(&self) -> &'static str {
        match self {
            Target::Tcp(_) => "tcp",
            Target::Udp(_) => "udp",
            Target::Unix(_) => "unix",
            Target::UnixGram(_) => "unixgram",
        }
    }
}

/// Of several addresses a name resolves to (`localhost`: `::1` and `127.0.0.1`), the
/// first that accepts a TCP connection, as `connect` users expect; the first one when
/// none does (the run then reports why). The trial connection is closed at once.
fn first_that_accepts(addrs: &[SocketAddr]) -> SocketAddr {
    const TRY: std::time::Duration = std::time::Duration::from_millis(300);
    addrs.iter().copied().find(|a| std::net::TcpStream::connect_timeout(a, TRY).is_ok()).unwrap_or(addrs[0])
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp://{a}"),
            Target::Udp(a) => write!(f, "udp://{a}"),
            Target::Unix(p) => write!(f, "unix://{}", p.display()),
            Target::UnixGram(p) => write!(f, "unixgram://{}", p.display()),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_scheme() {
        assert_eq!(Target::parse("tcp://127.0.0.1:7007"), Ok(Target::Tcp("127.0.0.1:7007".parse().unwrap())));
        assert_eq!(Target::parse("tcp://[::1]:7007"), Ok(Target::Tcp("[::1]:7007".parse().unwrap())));
        assert_eq!(Target::parse("udp://127.0.0.1:9"), Ok(Target::Udp("127.0.0.1:9".parse().unwrap())));
        assert_eq!(Target::parse("unix:///tmp/e.sock"), Ok(Target::Unix("/tmp/e.sock".into())));
        assert_eq!(Target::parse("unixgram:///tmp/e.dg"), Ok(Target::UnixGram("/tmp/e.dg".into())));
        assert!(matches!(Target::parse("tcp://localhost:7"), Ok(Target::Tcp(_))));
        assert!(Target::parse("http://x:1").is_err());
        assert!(Target::parse("127.0.0.1:7007").is_err());
        assert!(Target::parse("tcp://127.0.0.1").is_err());
        assert!(Target::parse("unix://relative").is_err());
        for t in ["tcp://[::1]:7007", "unix:///tmp/e.sock"] {
            assert_eq!(Target::parse(t).unwrap().to_string(), t);
            assert_eq!(Target::parse_literal(t).unwrap().to_string(), t);
        }
        assert!(Target::parse_literal("tcp://localhost:7").is_err(), "a name is not resolved");
    }

    #[test]
    fn a_name_uses_the_first_address_that_accepts() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        }; // nothing listens there any more
        assert_eq!(first_that_accepts(&[closed, open]), open);
        assert_eq!(first_that_accepts(&[open, closed]), open);
        assert_eq!(first_that_accepts(&[closed]), closed, "none accepts: the first");
    }

    proptest! {
        #[test]
        fn never_panics(s in "(tcp|udp|unix|unixgram|x)?(://)?[a-z0-9:/\\[\\].]{0,30}") {
            let _ = Target::parse(&s);
        }
    }
}
