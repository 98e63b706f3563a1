//! The command line: clap derive, help from doc comments, human units. [`Args::to_config`]
//! turns it into a validated [`Config`]; any error names the flag at fault.

use crate::config::{self, Backend, Config, ConfigError, Cpus, Endpoint, Listen, Mode};
use crate::units;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// A thread-per-core io_uring echo server (RFC 862) for TCP, UDP and Unix sockets, with
/// discard (RFC 863) and source modes.
#[derive(Debug, Parser)]
#[command(
    name = "ringecho",
    version,
    after_help = "Examples:\n  \
        ringecho                                   # echo on 127.0.0.1:7007, one worker per CPU\n  \
        ringecho --tcp [::1]:0 --unix /tmp/echo.sock --stats 1s\n  \
        ringecho --tcp 127.0.0.1:7007 --tcp discard@127.0.0.1:7009 --udp 127.0.0.1:7007\n  \
        ringecho --udp [::]:7007 --udp-rate-limit 1000         # public bind: limit replies\n  \
        taskset -c 0 ringecho --tcp 127.0.0.1:7007 --max-conn-buffer 64KiB\n\n\
        A listener address may start with a mode: echo@, discard@ or source@ (stream only);\n\
        without one, --mode applies.\n\
        Bound addresses are printed on stdout, one per line: `listening tcp 127.0.0.1:40123`\n\
        (followed by the mode when it is not echo).\n\
        SIGINT/SIGTERM stop accepting, drain open connections for --drain-timeout, print totals."
)]
pub struct Args {
    /// TCP address to listen on (IPv4 or IPv6, or a host name: every address it resolves
    /// to; port 0 for any), optionally `MODE@ADDR`; repeatable. Default, when no listener
    /// is given: 127.0.0.1:7007.
    #[arg(long, value_name = "[MODE@]HOST:PORT", value_parser = parse_spec::<HostPort>)]
    pub tcp: Vec<Spec<HostPort>>,

    /// Unix stream socket path to listen on, optionally `MODE@PATH`; repeatable. A stale
    /// socket file is replaced only if nothing listens on it.
    #[arg(long, value_name = "[MODE@]PATH", value_parser = parse_spec::<PathBuf>)]
    pub unix: Vec<Spec<PathBuf>>,

    /// UDP address to listen on (IPv4 or IPv6), optionally `echo@` or `discard@`;
    /// repeatable. Each datagram is answered with exactly its own bytes, never more.
    #[arg(long, value_name = "[MODE@]HOST:PORT", value_parser = parse_spec::<HostPort>)]
    pub udp: Vec<Spec<HostPort>>,

    /// Unix datagram socket path to listen on, optionally `echo@` or `discard@`;
    /// repeatable. Replies go to the sender's bound path; unbound senders are counted.
    #[arg(long, value_name = "[MODE@]PATH", value_parser = parse_spec::<PathBuf>)]
    pub unixgram: Vec<Spec<PathBuf>>,

    /// The engine: uring (hand-rolled io_uring per core), epoll (mio per core; works where
    /// io_uring is off), tokio-uring (a tokio-uring runtime per core) or threads (a
    /// blocking thread per connection).
    #[arg(long, value_enum, default_value_t = Config::default().backend)]
    pub backend: Backend,

    /// Mode of listeners given without a `MODE@` prefix.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,

    /// Most datagram replies per second to one source address (token bucket with a
    /// tenth of a second of burst, per worker, bounded table); the rest are dropped and
    /// counted. Use it when binding to a public address.
    #[arg(long, value_name = "PPS")]
    pub udp_rate_limit: Option<u32>,

    /// Number of workers (default: one per CPU in --cpus, or per CPU this process may use).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// CPUs to pin workers to, e.g. `0,1` or `0-3` (default: the process's affinity mask).
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,

    /// Provided buffers per worker (a power of two, at most 32768).
    #[arg(long, value_name = "N", default_value_t = Config::default().buffers)]
    pub buffers: u32,

    /// Size of each provided buffer, e.g. 16KiB.
    #[arg(long, value_name = "SIZE", default_value = default_buffer_size(), value_parser = parse_u32_size)]
    pub buffer_size: u32,

    /// Provided buffers per worker for datagram listeners (uring backend; a power of two).
    /// They are mapped only when a datagram listener exists, and a buffer's memory is
    /// touched only as far as datagrams fill it.
    #[arg(long, value_name = "N", default_value_t = Config::default().dgram_buffers)]
    pub dgram_buffers: u32,

    /// The largest datagram (or UDP GRO batch) echoed, e.g. 9000. Default: every datagram
    /// the listener can receive (65,507 B over IPv4, 65,527 B over IPv6, the socket's send
    /// limit for Unix datagrams). Larger ones are dropped and counted as truncated.
    #[arg(long, value_name = "SIZE", value_parser = parse_u32_size)]
    pub dgram_buffer_size: Option<u32>,

    /// Do not ask the kernel to batch UDP datagrams (UDP_GRO) and echo each batch with one
    /// segmented send (UDP_SEGMENT). Batching is used by the uring and epoll backends.
    #[arg(long)]
    pub no_gro: bool,

    /// Most bytes one connection may hold received but not yet echoed; past it, the server
    /// stops reading from that connection until its queue drains.
    #[arg(long, value_name = "SIZE", default_value = default_max_conn_buffer(), value_parser = parse_u32_size)]
    pub max_conn_buffer: u32,

    /// Most open connections in the process; further ones are closed at once and counted.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_conns)]
    pub max_conns: usize,

    /// Close connections idle (nothing sent or received) for this long, e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Use a kernel submission-polling thread per worker (burns a CPU; rarely a win with
    /// fewer CPUs than workers + pollers).
    #[arg(long)]
    pub sqpoll: bool,

    /// Send replies of at least this size with SEND_ZC (kernel zero-copy send). On loopback
    /// the kernel copies anyway. Default: off.
    #[arg(long, value_name = "SIZE", value_parser = parse_u32_size)]
    pub zc_threshold: Option<u32>,

    /// Print a stats line on stderr at this interval (100ms to 1h), e.g. 1s: the time,
    /// rates per second since the previous line, and the running totals.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_stats_interval)]
    pub stats: Option<Duration>,

    /// Format of the stats lines and of the totals printed on exit.
    #[arg(long, value_enum, default_value_t = StatsFormat::Text)]
    pub stats_format: StatsFormat,

    /// After SIGINT/SIGTERM, how long open connections may keep echoing before they are
    /// closed.
    #[arg(long, value_name = "DURATION", default_value = default_drain_timeout(), value_parser = units::parse_duration)]
    pub drain_timeout: Duration,

    /// Serve the counters in the Prometheus text format at http://ADDR/metrics (per
    /// worker and in total), e.g. 127.0.0.1:9107.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,

    /// Busy-poll for completions instead of sleeping (uring: submit without waiting and
    /// peek the completion queue; epoll: a zero timeout), the way sockperf and neper offer
    /// busy polling: the lowest latency, for a whole CPU per worker. uring and epoll only.
    #[arg(long)]
    pub spin: bool,

    /// Time the server's own parts from the kernel's software timestamps (uring only):
    /// `wake`, a receive's kernel arrival stamp → the worker takes it (TCP, UDP), and
    /// `send`, the worker queues an echo → the kernel's send stamp (sampled: at most one
    /// send per worker every 500 µs). Histograms in `--metrics`
    /// (`ringecho_server_wake_seconds`, `ringecho_server_send_seconds`), which ringload's
    /// `--server-metrics` reads beside its own parts, and a line at exit.
    #[arg(long)]
    pub timestamps: bool,

    /// Submission queue entries per worker ring.
    #[arg(long, value_name = "N", default_value_t = Config::default().ring_entries)]
    pub ring_entries: u32,
}

// The defaults `--help` shows for flags with units, written in those units; the values
// are `config`'s, so the two cannot drift.

fn default_buffer_size() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| units::format_size(config::DEFAULT_BUFFER_SIZE.into()))
}

fn default_max_conn_buffer() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| units::format_size(config::DEFAULT_MAX_CONN_BUFFER.into()))
}

fn default_drain_timeout() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| units::format_duration(config::DEFAULT_DRAIN_TIMEOUT))
}

/// How figures are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    /// `name=value` pairs on one line.
    Text,
    /// One JSON object per line.
    Json,
}

/// A listener address with an optional `MODE@` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec<T> {
    /// The mode, when given.
    pub mode: Option<Mode>,
    /// The address or path.
    pub addr: T,
}

fn parse_spec<T: std::str::FromStr>(text: &str) -> Result<Spec<T>, String>
where
    T::Err: std::fmt::Display,
{
    let (mode, rest) = match text.split_once('@') {
        Some((prefix, rest)) => match <Mode as ValueEnum>::from_str(prefix, false) {
            Ok(mode) => (Some(mode), rest),
            Err(_) => (None, text),
        },
        None => (None, text),
    };
    let addr =
        rest.parse::<T>().map_err(|e| format!("{rest:?}: {e} (expected [echo@|discard@|source@]ADDRESS)"))?;
    Ok(Spec { mode, addr })
}

/// `HOST:PORT`, where HOST is an IP address (IPv6 in brackets) or a name resolved when the
/// configuration is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    host: String,
    port: u16,
}

impl std::str::FromStr for HostPort {
    type Err = String;
    fn from_str(text: &str) -> Result<HostPort, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(HostPort { host: addr.ip().to_string(), port: addr.port() });
        }
        let (host, port) = text.rsplit_once(':').ok_or("expected HOST:PORT")?;
        let port = port.parse().map_err(|_| format!("{port:?} is not a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name_like = host.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'));
        if host.is_empty() || !(name_like || host.parse::<std::net::IpAddr>().is_ok()) {
            return Err(format!("{host:?} is not a host name or address (expected HOST:PORT)"));
        }
        Ok(HostPort { host: host.to_owned(), port })
    }
}

impl HostPort {
    /// Every address the host resolves to, each once, in the resolver's order.
    pub fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        use std::net::ToSocketAddrs;
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for a in (self.host.as_str(), self.port).to_socket_addrs()? {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            return Err(std::io::Error::other("the name has no address"));
        }
        Ok(addrs)
    }
}

/// A parsed `--cpus` value (a newtype, so clap takes it as one value, not many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn parse_cpus(text: &str) -> Result<CpuList, units::UnitError> {
    units::parse_cpu_list(text).map(CpuList)
}

/// The shortest `--stats` interval: shorter ones flood the terminal (`0s` printed tens of
/// thousands of lines a second).
pub const MIN_STATS_INTERVAL: Duration = Duration::from_millis(100);

fn parse_stats_interval(text: &str) -> Result<Duration, String> {
    let d = units::parse_duration(text).map_err(|e| e.to_string())?;
    if d < MIN_STATS_INTERVAL || d > Duration::from_secs(3600) {
        return Err(format!("{text:?} is out of range: between 100ms and 1h"));
    }
    Ok(d)
}

fn parse_u32_size(text: &str) -> Result<u32, String> {
    let n = units::parse_size(text).map_err(|e| e.to_string())?;
    u32::try_from(n).map_err(|_| format!("{n} is larger than 4 GiB"))
}

impl Args {
    /// The validated configuration these arguments describe.
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        let endpoint = |mode: Option<Mode>, listen| Endpoint { listen, mode: mode.unwrap_or(self.mode) };
        let mut listen: Vec<Endpoint> = Vec::new();
        let resolve = |flag: &'static str, spec: &Spec<HostPort>| {
            spec.addr.resolve().map_err(|e| ConfigError::Invalid {
                flag,
                problem: format!("cannot resolve {}: {e}", spec.addr.host),
            })
        };
        for s in &self.tcp {
            listen.extend(resolve("--tcp", s)?.into_iter().map(|a| endpoint(s.mode, Listen::Tcp(a))));
        }
        listen.extend(self.unix.iter().map(|s| endpoint(s.mode, Listen::Unix(s.addr.clone()))));
        for s in &self.udp {
            listen.extend(resolve("--udp", s)?.into_iter().map(|a| endpoint(s.mode, Listen::Udp(a))));
        }
        listen.extend(self.unixgram.iter().map(|s| endpoint(s.mode, Listen::UnixGram(s.addr.clone()))));
        let defaults = Config::default();
        let config = Config {
            listen: if listen.is_empty() {
                defaults.listen.into_iter().map(|e| Endpoint { mode: self.mode, ..e }).collect()
            } else {
                listen
            },
            backend: self.backend,
            cpus: self.cpus.clone().map_or(Cpus::Allowed, |c| Cpus::List(c.0)),
            workers: self.workers,
            buffers: self.buffers,
            buffer_size: self.buffer_size,
            dgram_buffers: self.dgram_buffers,
            dgram_buffer_size: self.dgram_buffer_size,
            gro: !self.no_gro,
            max_conn_buffer: self.max_conn_buffer,
            max_conns: self.max_conns,
            idle_timeout: self.idle_timeout,
            sqpoll: self.sqpoll,
            zc_threshold: self.zc_threshold,
            drain_timeout: self.drain_timeout,
            ring_entries: self.ring_entries,
            udp_rate_limit: self.udp_rate_limit,
            metrics: self.metrics,
            spin: self.spin,
            timestamps: self.timestamps,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("ringecho").chain(args.iter().copied()))
    }

    #[test]
    fn datagram_flags() {
        let c = parse(&[
            "--udp",
            "127.0.0.1:0",
            "--dgram-buffers",
            "64",
            "--dgram-buffer-size",
            "9000",
            "--no-gro",
        ])
        .unwrap()
        .to_config()
        .unwrap();
        assert_eq!((c.dgram_buffers, c.dgram_buffer_size, c.gro), (64, Some(9000), false));
        let e = parse(&["--dgram-buffers", "3"]).unwrap().to_config().unwrap_err().to_string();
        assert!(e.contains("--dgram-buffers"), "{e}");
    }

    #[test]
    fn defaults_listen_on_loopback() {
        let config = parse(&[]).unwrap().to_config().unwrap();
        assert_eq!(config.listen, vec![Listen::Tcp("127.0.0.1:7007".parse().unwrap()).into()]);
        assert_eq!(config.max_conn_buffer, 256 * 1024);
    }

    /// Every default of the command line is `Config::default()`'s, and `--help` shows the
    /// ones with units in those units.
    #[test]
    fn defaults_are_the_configs() {
        let (c, d) = (parse(&[]).unwrap().to_config().unwrap(), Config::default());
        assert_eq!(c.backend, d.backend);
        assert_eq!((c.buffers, c.buffer_size), (d.buffers, d.buffer_size));
        assert_eq!(
            (c.dgram_buffers, c.dgram_buffer_size, c.gro),
            (d.dgram_buffers, d.dgram_buffer_size, d.gro)
        );
        assert_eq!((c.max_conn_buffer, c.max_conns), (d.max_conn_buffer, d.max_conns));
        assert_eq!((c.drain_timeout, c.idle_timeout), (d.drain_timeout, d.idle_timeout));
        assert_eq!(
            (c.ring_entries, c.zc_threshold, c.udp_rate_limit),
            (d.ring_entries, d.zc_threshold, d.udp_rate_limit)
        );
        assert_eq!((c.sqpoll, c.spin, c.workers, c.metrics), (d.sqpoll, d.spin, d.workers, d.metrics));
        let help = <Args as clap::CommandFactory>::command().render_long_help().to_string();
        for shown in ["[default: 16KiB]", "[default: 256KiB]", "[default: 5s]", "[default: uring]"] {
            assert!(help.contains(shown), "{shown} not in --help:\n{help}");
        }
    }

    #[test]
    fn units_and_lists() {
        let a = parse(&[
            "--tcp",
            "[::1]:0",
            "--unix",
            "/tmp/x.sock",
            "--buffer-size",
            "4KiB",
            "--cpus",
            "0",
            "--idle-timeout",
            "500ms",
        ])
        .unwrap();
        let c = a.to_config().unwrap();
        assert_eq!(c.buffer_size, 4096);
        assert_eq!((c.dgram_buffers, c.dgram_buffer_size, c.gro), (256, None, true), "datagram defaults");
        assert_eq!(c.cpus, Cpus::List(vec![0]));
        assert_eq!(c.idle_timeout, Some(Duration::from_millis(500)));
        assert_eq!(c.listen.len(), 2);
    }

    #[test]
    fn modes_per_listener() {
        let a = parse(&[
            "--mode",
            "discard",
            "--tcp",
            "127.0.0.1:1",
            "--tcp",
            "echo@127.0.0.1:2",
            "--udp",
            "[::1]:3",
            "--unix",
            "source@/tmp/a@b",
        ])
        .unwrap();
        let c = a.to_config().unwrap();
        let modes: Vec<Mode> = c.listen.iter().map(|e| e.mode).collect();
        assert_eq!(modes, vec![Mode::Discard, Mode::Echo, Mode::Source, Mode::Discard]);
        assert_eq!(c.listen[2].listen, Listen::Unix("/tmp/a@b".into()));
        let e = parse(&["--udp", "source@127.0.0.1:1"]).unwrap().to_config().unwrap_err().to_string();
        assert!(e.contains("--udp"), "{e}");
        let e = parse(&["--tcp", "bogus@127.0.0.1:1"]).unwrap_err().to_string();
        assert!(e.contains("--tcp"), "{e}");
    }

    #[test]
    fn host_names_resolve_to_every_address() {
        let c = parse(&["--tcp", "localhost:0", "--udp", "[::1]:9"]).unwrap().to_config().unwrap();
        let tcp: Vec<_> = c.listen.iter().filter(|e| matches!(e.listen, Listen::Tcp(_))).collect();
        assert!(!tcp.is_empty());
        assert!(tcp.iter().all(|e| matches!(e.listen, Listen::Tcp(a) if a.ip().is_loopback())));
        assert!(c.listen.contains(&Listen::Udp("[::1]:9".parse().unwrap()).into()));
        let e = parse(&["--tcp", "no-such-host.invalid:1"]).unwrap().to_config().unwrap_err().to_string();
        assert!(e.starts_with("--tcp: cannot resolve"), "{e}");
        assert!(parse(&["--tcp", "localhost"]).is_err(), "no port");
        assert!(parse(&["--tcp", ":7"]).is_err(), "no host");
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = parse(&["--buffer-size", "lots"]).unwrap_err().to_string();
        assert!(e.contains("--buffer-size"), "{e}");
        let e = parse(&["--tcp", "nowhere"]).unwrap_err().to_string();
        assert!(e.contains("--tcp"), "{e}");
        let e = parse(&["--buffers", "1000"]).unwrap().to_config().unwrap_err().to_string();
        assert!(e.contains("--buffers"), "{e}");
        for bad in ["0s", "1ms", "2h"] {
            let e = parse(&["--stats", bad]).unwrap_err().to_string();
            assert!(e.contains("--stats"), "{e}");
        }
        assert_eq!(parse(&["--stats", "250ms"]).unwrap().stats, Some(Duration::from_millis(250)));
    }
}
