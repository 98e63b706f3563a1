//! The validated server configuration. A `Config` that passed [`Config::validate`] can be
//! started without any further checks; every limit it carries is the one enforced.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address, IPv4 or IPv6; port 0 picks a free port.
    Tcp(SocketAddr),
    /// A Unix stream socket path.
    Unix(PathBuf),
    /// A UDP address, IPv4 or IPv6.
    Udp(SocketAddr),
    /// A Unix datagram socket path.
    UnixGram(PathBuf),
}

impl Listen {
    /// Whether this is a datagram transport.
    pub fn is_datagram(&self) -> bool {
        matches!(self, Listen::Udp(_) | Listen::UnixGram(_))
    }

    /// The command-line flag that creates it.
    pub fn flag(&self) -> &'static str {
        match self {
            Listen::Tcp(_) => "--tcp",
            Listen::Unix(_) => "--unix",
            Listen::Udp(_) => "--udp",
            Listen::UnixGram(_) => "--unixgram",
        }
    }
}

/// What a listener does with what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// RFC 862: send back every byte (every datagram) received.
    #[default]
    Echo,
    /// RFC 863: read and drop.
    Discard,
    /// Write a repeating, verifiable pattern as fast as the peer reads (stream only), for
    /// one-way throughput tests. Byte `i` of the stream is `i % 251`.
    Source,
}

impl Mode {
    /// The name used on the command line and in `mode@address`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Discard => "discard",
            Mode::Source => "source",
        }
    }
}

/// A listener and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Transport and address.
    pub listen: Listen,
    /// What it does.
    pub mode: Mode,
}

impl From<Listen> for Endpoint {
    fn from(listen: Listen) -> Self {
        Endpoint { listen, mode: Mode::Echo }
    }
}

/// The engine behind the same command line, stats and modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Hand-rolled io_uring per core: multishot accept/receive, buffer ring, no copies.
    #[default]
    Uring,
    /// mio (epoll) per core, readiness-based, pooled buffers; for kernels or containers
    /// without io_uring, and the comparison floor.
    Epoll,
    /// One tokio-uring runtime per core: what a runtime-based io_uring design costs
    /// against the hand-rolled ring. No Unix datagram listeners.
    TokioUring,
    /// One blocking thread per connection (the classic threading server): the textbook
    /// floor.
    Threads,
}

impl Backend {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Epoll => "epoll",
            Backend::TokioUring => "tokio-uring",
            Backend::Threads => "threads",
        }
    }

    /// Whether it needs io_uring.
    pub fn needs_io_uring(self) -> bool {
        matches!(self, Backend::Uring | Backend::TokioUring)
    }

    /// Whether it serves Unix datagram listeners.
    pub fn has_unix_datagram(self) -> bool {
        self != Backend::TokioUring
    }

    /// Whether it splits UDP GRO batches into their datagrams and echoes each batch with
    /// one segmented send. Only such a backend may turn UDP_GRO on.
    pub fn handles_gro(self) -> bool {
        matches!(self, Backend::Uring | Backend::Epoll)
    }

    /// Whether it can busy-poll (`--spin`): peek the completion queue, or poll with a
    /// zero timeout, instead of sleeping.
    pub fn can_spin(self) -> bool {
        matches!(self, Backend::Uring | Backend::Epoll)
    }
}

/// The largest UDP payload over IPv4 (65,535 − 20 − 8).
pub const MAX_UDP4_PAYLOAD: u32 = 65_507;
/// The largest UDP payload over IPv6 without jumbograms (65,535 − 8).
pub const MAX_UDP6_PAYLOAD: u32 = 65_527;
/// The most `--dgram-buffer-size` may ask for: room for a Unix datagram with the largest
/// send buffer a system would plausibly allow.
pub const MAX_DGRAM_BUFFER_SIZE: u32 = 16 << 20;

/// Which CPUs the workers run on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cpus {
    /// Every CPU the process may use (its affinity mask, which honours cpusets).
    #[default]
    Allowed,
    /// These CPUs, one worker each unless `workers` says otherwise.
    List(Vec<usize>),
}

/// Checks a worker count against the CPUs the server will use.
pub fn check_workers(workers: usize, cpus: usize) -> Result<(), ConfigError> {
    let most = cpus.max(1).saturating_mul(WORKERS_PER_CPU).min(MAX_WORKERS);
    if workers > most {
        return Err(invalid(
            "--workers",
            format!("{workers} is more than {WORKERS_PER_CPU} per usable CPU ({cpus} CPUs: at most {most})"),
        ));
    }
    Ok(())
}

impl Cpus {
    /// The CPUs to use, given those the process may run on.
    pub fn resolve(&self, allowed: &[usize]) -> Result<Vec<usize>, ConfigError> {
        let cpus = match self {
            Cpus::Allowed => allowed.to_vec(),
            Cpus::List(list) => {
                if let Some(bad) = list.iter().find(|c| !allowed.contains(c)) {
                    return Err(invalid(
                        "--cpus",
                        format!("CPU {bad} is not available to this process (allowed: {allowed:?})"),
                    ));
                }
                list.clone()
            }
        };
        if cpus.is_empty() {
            return Err(invalid("--cpus", "no CPU available"));
        }
        Ok(cpus)
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening sockets.
    pub listen: Vec<Endpoint>,
    /// The engine.
    pub backend: Backend,
    /// CPUs to pin workers to.
    pub cpus: Cpus,
    /// Number of workers; `None` means one per CPU in `cpus`.
    pub workers: Option<usize>,
    /// Provided buffers per worker (a power of two, at most 32768).
    pub buffers: u32,
    /// Bytes per provided buffer.
    pub buffer_size: u32,
    /// Provided buffers per worker for datagram listeners (the `uring` backend; a power of
    /// two, at most 32768). Unused when no datagram listener exists.
    pub dgram_buffers: u32,
    /// The largest datagram (or GRO train) received whole, in bytes; `None` means the
    /// largest any datagram listener can get (65,507 B over IPv4, 65,527 B over IPv6, the
    /// socket's send limit for Unix datagrams). Independent of `buffer_size`, a stream
    /// setting.
    pub dgram_buffer_size: Option<u32>,
    /// Ask the kernel to batch UDP datagrams (UDP_GRO) and echo each batch with one send
    /// (UDP_SEGMENT), on the backends that can.
    pub gro: bool,
    /// Most bytes a connection may hold received but not yet echoed.
    pub max_conn_buffer: u32,
    /// Most open connections in the whole process; further ones are closed at once.
    pub max_conns: usize,
    /// Close connections that neither send nor receive for this long.
    pub idle_timeout: Option<Duration>,
    /// Use a kernel submission-polling thread per worker.
    pub sqpoll: bool,
    /// Sends of at least this many bytes use SEND_ZC; `None` disables zero-copy send.
    pub zc_threshold: Option<u32>,
    /// How long open connections may keep echoing after shutdown begins.
    pub drain_timeout: Duration,
    /// Submission queue entries per worker ring.
    pub ring_entries: u32,
    /// Most datagram replies per second to one source address (per worker), `None` for
    /// no limit.
    pub udp_rate_limit: Option<u32>,
    /// Serve Prometheus metrics over HTTP here.
    pub metrics: Option<SocketAddr>,
    /// Poll for completions instead of sleeping (`uring`, `epoll`): the lowest latency,
    /// for a whole CPU per worker.
    pub spin: bool,
    /// Time the server's own parts from the kernel's software stamps (`uring` only): the
    /// wake (a receive's kernel stamp → the worker takes it) and the send path (the worker
    /// queues an echo → the kernel's send stamp, sampled), as histograms in `--metrics`
    /// and a line at exit.
    pub timestamps: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))).into()],
            backend: Backend::Uring,
            cpus: Cpus::Allowed,
            workers: None,
            buffers: 1024,
            buffer_size: DEFAULT_BUFFER_SIZE,
            dgram_buffers: 256,
            dgram_buffer_size: None,
            gro: true,
            max_conn_buffer: DEFAULT_MAX_CONN_BUFFER,
            max_conns: 65_536,
            idle_timeout: None,
            sqpoll: false,
            zc_threshold: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            ring_entries: 1024,
            udp_rate_limit: None,
            metrics: None,
            spin: false,
            timestamps: false,
        }
    }
}

/// The port used when no listener is given.
pub const DEFAULT_PORT: u16 = 7007;

/// Bytes per provided buffer unless `--buffer-size` says otherwise.
pub const DEFAULT_BUFFER_SIZE: u32 = 16 * 1024;

/// Most bytes a connection holds received and not yet echoed unless `--max-conn-buffer`
/// says otherwise.
pub const DEFAULT_MAX_CONN_BUFFER: u32 = 256 * 1024;

/// How long open connections may keep echoing after shutdown begins unless
/// `--drain-timeout` says otherwise.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The least `--buffer-size` with `--timestamps`: a TCP receive is then a recvmsg whose
/// buffer starts with its header and room for the stamps (144 B), and most of each buffer
/// should still be data.
pub const MIN_STAMPED_BUFFER: u32 = 1024;

/// The longest duration any setting takes (a day): longer ones are typos, and instants
/// computed from them must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The most workers a server runs, whatever the CPUs.
pub const MAX_WORKERS: usize = 1024;

/// Workers per usable CPU at most: more only thrash.
pub const WORKERS_PER_CPU: usize = 8;

/// A configuration that cannot work, naming the setting at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A setting is out of its range.
    #[error("{flag}: {problem}")]
    Invalid {
        /// The command-line flag of the setting.
        flag: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
}

fn invalid(flag: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { flag, problem: problem.into() }
}

impl Config {
    /// Checks every setting against the limits the engine relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(invalid("--tcp/--unix", "no listener given"));
        }
        if self.spin && !self.backend.can_spin() {
            return Err(invalid(
                "--spin",
                format!(
                    "the {} backend cannot busy-poll; use --backend uring or --backend epoll",
                    self.backend.name()
                ),
            ));
        }
        if self.timestamps && self.backend != Backend::Uring {
            return Err(invalid(
                "--timestamps",
                format!("the {} backend does not time its parts; use --backend uring", self.backend.name()),
            ));
        }
        if !self.buffers.is_power_of_two() || !(2..=32_768).contains(&self.buffers) {
            return Err(invalid(
                "--buffers",
                format!("{} is not a power of two between 2 and 32768", self.buffers),
            ));
        }
        if !(64..=(1 << 30)).contains(&self.buffer_size) {
            return Err(invalid("--buffer-size", "must be between 64 B and 1 GiB"));
        }
        if self.timestamps && self.buffer_size < MIN_STAMPED_BUFFER {
            return Err(invalid(
                "--buffer-size",
                format!(
                    "{} B is too small for --timestamps: each TCP receive buffer then holds a recvmsg \
                     header and the stamps (144 B) before the data; give at least {MIN_STAMPED_BUFFER} B",
                    self.buffer_size
                ),
            ));
        }
        if self.max_conn_buffer < self.buffer_size {
            return Err(invalid(
                "--max-conn-buffer",
                format!(
                    "{} is smaller than --buffer-size {}: a connection could never receive",
                    self.max_conn_buffer, self.buffer_size
                ),
            ));
        }
        if u64::from(self.buffers) * u64::from(self.buffer_size) > 1 << 34 {
            return Err(invalid("--buffers", "buffers × buffer size exceeds 16 GiB per worker"));
        }
        if !self.dgram_buffers.is_power_of_two() || !(2..=32_768).contains(&self.dgram_buffers) {
            return Err(invalid(
                "--dgram-buffers",
                format!("{} is not a power of two between 2 and 32768", self.dgram_buffers),
            ));
        }
        if let Some(size) = self.dgram_buffer_size {
            if !(1..=MAX_DGRAM_BUFFER_SIZE).contains(&size) {
                return Err(invalid("--dgram-buffer-size", "must be between 1 B and 16 MiB"));
            }
            if u64::from(self.dgram_buffers) * u64::from(size) > 1 << 34 {
                return Err(invalid(
                    "--dgram-buffers",
                    "datagram buffers × their size exceeds 16 GiB per worker",
                ));
            }
        }
        if self.max_conns == 0 {
            return Err(invalid("--max-conns", "must be at least 1"));
        }
        if self.workers == Some(0) {
            return Err(invalid("--workers", "must be at least 1"));
        }
        if self.workers.is_some_and(|w| w > MAX_WORKERS) {
            return Err(invalid("--workers", format!("at most {MAX_WORKERS}")));
        }
        if self.drain_timeout > MAX_DURATION {
            return Err(invalid("--drain-timeout", "at most 24h"));
        }
        if self.idle_timeout.is_some_and(|t| t > MAX_DURATION) {
            return Err(invalid("--idle-timeout", "at most 24h"));
        }
        if let Cpus::List(list) = &self.cpus {
            if list.is_empty() {
                return Err(invalid("--cpus", "empty list"));
            }
        }
        if self.idle_timeout == Some(Duration::ZERO) {
            return Err(invalid("--idle-timeout", "must be more than 0"));
        }
        if !(8..=32_768).contains(&self.ring_entries) {
            return Err(invalid("--ring-entries", "must be between 8 and 32768"));
        }
        for endpoint in &self.listen {
            let flag = endpoint.listen.flag();
            if let Listen::Unix(path) | Listen::UnixGram(path) = &endpoint.listen {
                if path.as_os_str().is_empty() {
                    return Err(invalid(flag, "empty path (a Unix socket needs a file name)"));
                }
                if path.as_os_str().len() >= 108 {
                    return Err(invalid(flag, format!("path {} is longer than 107 bytes", path.display())));
                }
            }
            if endpoint.listen.is_datagram() && endpoint.mode == Mode::Source {
                return Err(invalid(
                    flag,
                    "source mode is for stream listeners (a datagram source would amplify)",
                ));
            }
        }
        if !self.backend.has_unix_datagram()
            && self.listen.iter().any(|e| matches!(e.listen, Listen::UnixGram(_)))
        {
            return Err(invalid(
                "--unixgram",
                format!("the {} backend has no Unix datagram sockets", self.backend.name()),
            ));
        }
        if self.udp_rate_limit == Some(0) {
            return Err(invalid("--udp-rate-limit", "must be at least 1 datagram per second"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn timestamps_need_room_for_a_recvmsg_header() {
        let c = Config { timestamps: true, buffer_size: MIN_STAMPED_BUFFER - 1, ..Config::default() };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("--buffer-size: ") && e.contains("--timestamps"), "{e}");
        Config { timestamps: true, buffer_size: MIN_STAMPED_BUFFER, ..Config::default() }.validate().unwrap();
        Config { buffer_size: 64, max_conn_buffer: 64, ..Config::default() }.validate().unwrap();
    }

    #[test]
    fn rejects_bad_buffers() {
        for backend in [Backend::TokioUring, Backend::Threads] {
            let c = Config { spin: true, backend, ..Config::default() };
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with("--spin: the ") && e.contains("cannot busy-poll"), "{e}");
        }
        for backend in [Backend::Uring, Backend::Epoll] {
            Config { spin: true, backend, ..Config::default() }.validate().unwrap();
        }
        let c = Config { buffers: 1000, ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().starts_with("--buffers"));
        let c = Config { max_conn_buffer: 100, ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().starts_with("--max-conn-buffer"));
        let c = Config { dgram_buffers: 100, ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().starts_with("--dgram-buffers"));
        for size in [0, MAX_DGRAM_BUFFER_SIZE + 1] {
            let c = Config { dgram_buffer_size: Some(size), ..Config::default() };
            assert!(c.validate().unwrap_err().to_string().starts_with("--dgram-buffer-size"));
        }
        let c = Config {
            dgram_buffers: 32_768,
            dgram_buffer_size: Some(MAX_DGRAM_BUFFER_SIZE),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().starts_with("--dgram-buffers"));
        // The stream buffer size no longer bounds datagrams: a small one with the
        // largest datagram buffers is fine.
        let c = Config {
            buffer_size: 64,
            max_conn_buffer: 64,
            dgram_buffer_size: Some(65_535),
            ..Config::default()
        };
        c.validate().unwrap();
    }

    #[test]
    fn rejects_out_of_range_values() {
        let bad = [
            Config { workers: Some(MAX_WORKERS + 1), ..Config::default() },
            Config { drain_timeout: Duration::MAX, ..Config::default() },
            Config { idle_timeout: Some(Duration::from_secs(86_401)), ..Config::default() },
            Config { listen: vec![Listen::Unix("".into()).into()], ..Config::default() },
        ];
        for (c, flag) in bad.iter().zip(["--workers", "--drain-timeout", "--idle-timeout", "--unix"]) {
            assert!(c.validate().unwrap_err().to_string().starts_with(flag), "{c:?}");
        }
        assert!(check_workers(16, 2).is_ok());
        assert!(check_workers(17, 2).unwrap_err().to_string().starts_with("--workers"));
    }

    #[test]
    fn rejects_long_unix_path() {
        let c = Config { listen: vec![Listen::Unix("x".repeat(200).into()).into()], ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().starts_with("--unix"));
    }

    #[test]
    fn cpus_resolve_against_the_allowed_set() {
        assert_eq!(Cpus::Allowed.resolve(&[0, 1]), Ok(vec![0, 1]));
        assert_eq!(Cpus::List(vec![1]).resolve(&[0, 1]), Ok(vec![1]));
        assert!(Cpus::List(vec![5]).resolve(&[0, 1]).unwrap_err().to_string().starts_with("--cpus"));
        assert!(Cpus::Allowed.resolve(&[]).is_err());
    }

    #[test]
    fn rejects_datagram_source() {
        let udp = Endpoint { listen: Listen::Udp("127.0.0.1:0".parse().unwrap()), mode: Mode::Source };
        let c = Config { listen: vec![udp], ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().starts_with("--udp"));
    }
}
