//! Listening addresses: a port another socket holds is refused, for TCP and UDP, on every
//! backend, so that two servers never silently share one port (SO_REUSEPORT would let
//! the second join the first's group and split the load).

mod util;

use ringecho::{Backend, Config, Listen, Server, StartError};
use std::time::Duration;
use util::*;

fn config(backend: Backend, listen: Listen) -> Config {
    Config {
        backend,
        listen: vec![listen.into()],
        drain_timeout: Duration::from_secs(1),
        ..Config::default()
    }
}

fn second_server_on_a_taken_port_is_refused(backend: Backend) {
    let Some(first) = start(backend, |c| {
        c.listen = vec![
            Listen::Tcp("127.0.0.1:0".parse().unwrap()).into(),
            Listen::Udp("127.0.0.1:0".parse().unwrap()).into(),
            Listen::Tcp("[::1]:0".parse().unwrap()).into(),
        ];
    }) else {
        return;
    };
    let addrs = first.local_addrs().to_vec();
    let taken = addrs.iter().map(|a| match a {
        ringecho::BoundAddr::Tcp(a) => (Listen::Tcp(*a), *a),
        ringecho::BoundAddr::Udp(a) => (Listen::Udp(*a), *a),
        other => panic!("unexpected {other}"),
    });
    for (listen, addr) in taken {
        // The same backend and a different one: neither may join.
        for second in [backend, Backend::Epoll] {
            match Server::start(config(second, listen.clone())) {
                Err(e @ StartError::Listen { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains(&addr.to_string()) && text.contains("in use"), "{text}");
                }
                Err(e) => panic!("{second:?} on {listen:?}: wrong error {e}"),
                Ok(h) => panic!("{second:?} started on {:?}, which {backend:?} holds", h.local_addrs()),
            }
        }
    }
    // The first server still serves alone.
    let mut s = connect(first.tcp_addr().unwrap());
    assert_eq!(echo_once(&mut s, b"still mine").unwrap(), b"still mine");
    // Port 0 is unaffected: another server gets a port of its own.
    let other = Server::start(config(Backend::Epoll, Listen::Tcp("127.0.0.1:0".parse().unwrap()))).unwrap();
    assert_ne!(other.tcp_addr(), first.tcp_addr());
}

/// Two ringecho processes asked for the same TCP and UDP port: the second exits 2 naming
/// the address, whatever the backends.
#[test]
fn second_process_on_the_same_port_exits_2() {
    if !uring_available() {
        return;
    }
    let first = Binary::start(&["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--backend", "uring"], 2);
    for (i, flag) in [(0, "--tcp"), (1, "--udp")] {
        let addr = first.addrs[i].split(' ').nth(1).unwrap().to_owned();
        let (code, err) = run_binary(&[flag, &addr, "--backend", "epoll"]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(&addr) && err.contains("in use"), "{err}");
    }
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait(Duration::from_secs(10)).0, Some(0));
}

for_each_backend!(second_server_on_a_taken_port_is_refused);
