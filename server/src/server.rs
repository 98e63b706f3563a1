//! Starting, observing and stopping a server: listeners are bound and workers set up
//! before [`Server::start`] returns, so every start-up error (a bad flag, an address in
//! use, io_uring switched off) surfaces there, synchronously.

use crate::config::{Backend, Config, ConfigError, Cpus, Listen, Mode};
use crate::ring::{self, Features, TaskRun, UringError};
use crate::stats::{Snapshot, StatsRegistry};
use crate::uring::worker;
use socket2::{Domain, Socket, Type};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// What kind of socket a listener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SockKind {
    /// Accepts connections.
    Stream,
    /// Receives datagrams; `namelen` bytes are reserved for the source address.
    Datagram { namelen: u32 },
}

/// One listening socket as a worker sees it.
pub(crate) struct ListenerSetup {
    pub fd: Arc<OwnedFd>,
    pub kind: SockKind,
    pub mode: Mode,
}

/// What a worker is given when it starts.
pub(crate) struct WorkerSetup {
    pub index: usize,
    pub cpu: Option<usize>,
    /// Its own SO_REUSEPORT TCP and UDP sockets, and the shared Unix ones.
    pub listeners: Vec<ListenerSetup>,
    pub wake: Arc<OwnedFd>,
    pub shared: Arc<Shared>,
    pub features: Features,
}

/// Listen backlog; the kernel caps it at net.core.somaxconn.
const BACKLOG: i32 = 4096;

/// State shared by the handle and the workers; off the hot path.
pub(crate) struct Shared {
    pub config: Config,
    pub open_conns: AtomicUsize,
    pub shutdown: AtomicBool,
    pub stats: StatsRegistry,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// io_uring cannot be used on this machine.
    #[error(
        "{0}\nringecho's uring backend requires io_uring (Linux 6.0 or later, not blocked by seccomp or kernel.io_uring_disabled); an epoll backend is planned"
    )]
    Uring(#[from] UringError),
    /// A listening socket could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address, as given.
        addr: String,
        /// The error.
        source: io::Error,
    },
    /// A worker failed to set itself up.
    #[error("{0}")]
    Worker(String),
}

/// A bound listening address, as printed at start-up (`listening tcp 127.0.0.1:40123`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAddr {
    /// TCP, with the port actually bound.
    Tcp(SocketAddr),
    /// A Unix stream socket.
    Unix(PathBuf),
    /// UDP, with the port actually bound.
    Udp(SocketAddr),
    /// A Unix datagram socket.
    UnixGram(PathBuf),
}

impl fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundAddr::Tcp(a) => write!(f, "tcp {a}"),
            BoundAddr::Unix(p) => write!(f, "unix {}", p.display()),
            BoundAddr::Udp(a) => write!(f, "udp {a}"),
            BoundAddr::UnixGram(p) => write!(f, "unixgram {}", p.display()),
        }
    }
}

/// The server entry point.
pub struct Server;

impl Server {
    /// Validates `config`, binds every listener, starts one pinned worker per CPU and
    /// returns once all of them are serving.
    pub fn start(config: Config) -> Result<ServerHandle, StartError> {
        config.validate()?;
        crate::sys::raise_nofile_limit().ok();
        let backend = config.backend;
        let features = if backend == Backend::Uring { ring::probe()? } else { Features::default() };
        let cpus = resolve_cpus(&config)?;
        // A thread per connection needs no per-CPU workers: one set of listeners.
        let workers = if backend == Backend::Threads { 1 } else { config.workers.unwrap_or(cpus.len()) };

        let mut addrs = Vec::new();
        let mut modes = Vec::new();
        let mut unix_paths = Vec::new();
        // listeners[w] = the sockets worker w serves.
        let mut listeners: Vec<Vec<ListenerSetup>> = (0..workers).map(|_| Vec::new()).collect();
        for endpoint in &config.listen {
            let mode = endpoint.mode;
            let listen_err = |source| StartError::Listen { addr: describe(&endpoint.listen), source };
            match &endpoint.listen {
                Listen::Tcp(addr) | Listen::Udp(addr) => {
                    let datagram = endpoint.listen.is_datagram();
                    let mut bound = *addr;
                    for per_worker in listeners.iter_mut() {
                        // Each worker gets its own SO_REUSEPORT socket; after the first,
                        // they bind the port the first one got (port 0 resolved).
                        let sock = inet_socket(bound, datagram).map_err(listen_err)?;
                        bound = sock.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(bound);
                        let kind = if datagram {
                            SockKind::Datagram { namelen: sockaddr_len(bound.is_ipv6()) }
                        } else {
                            SockKind::Stream
                        };
                        per_worker.push(ListenerSetup { fd: Arc::new(sock.into()), kind, mode });
                    }
                    addrs.push(if datagram { BoundAddr::Udp(bound) } else { BoundAddr::Tcp(bound) });
                }
                Listen::Unix(path) | Listen::UnixGram(path) => {
                    let datagram = endpoint.listen.is_datagram();
                    let sock = Arc::new(OwnedFd::from(unix_socket(path, datagram).map_err(listen_err)?));
                    unix_paths.push(path.clone());
                    let kind = if datagram {
                        SockKind::Datagram { namelen: std::mem::size_of::<libc::sockaddr_un>() as u32 }
                    } else {
                        SockKind::Stream
                    };
                    for per_worker in listeners.iter_mut() {
                        per_worker.push(ListenerSetup { fd: sock.clone(), kind, mode });
                    }
                    addrs.push(if datagram {
                        BoundAddr::UnixGram(path.clone())
                    } else {
                        BoundAddr::Unix(path.clone())
                    });
                }
            }
            modes.push(mode);
        }

        let shared = Arc::new(Shared {
            config,
            open_conns: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            stats: StatsRegistry::new(workers),
        });
        let mut handle = ServerHandle {
            shared: shared.clone(),
            threads: Vec::new(),
            wakes: Vec::new(),
            addrs,
            modes,
            unix_paths,
            task_run: TaskRun::Plain,
            features,
            cpus: Vec::new(),
            metrics: None,
        };
        for (index, worker_listeners) in listeners.into_iter().enumerate() {
            let cpu = cpus.get(index % cpus.len().max(1)).copied();
            let wake =
                Arc::new(crate::sys::eventfd().map_err(|e| StartError::Worker(format!("eventfd: {e}")))?);
            let setup = WorkerSetup {
                index,
                cpu,
                listeners: worker_listeners,
                wake: wake.clone(),
                shared: shared.clone(),
                features,
            };
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let thread = std::thread::Builder::new()
                .name(format!("ringecho-{index}"))
                .spawn(move || match backend {
                    Backend::Uring => worker::run(setup, tx),
                    Backend::Epoll => crate::epoll::run(setup, tx),
                    Backend::Threads => crate::threads::run(setup, tx),
                    Backend::TokioUring => crate::tokio_uring_backend::run(setup, tx),
                })
                .map_err(|e| StartError::Worker(format!("spawning worker {index}: {e}")))?;
            handle.threads.push(thread);
            handle.wakes.push(wake);
            handle.cpus.push(cpu);
            match rx.recv() {
                Ok(Ok(mode)) => handle.task_run = mode,
                Ok(Err(msg)) => return Err(StartError::Worker(msg)),
                Err(_) => return Err(StartError::Worker(format!("worker {index} exited during set-up"))),
            }
        }
        if let Some(addr) = handle.shared.config.metrics {
            let source = handle.stats_source();
            let stop = Arc::new(AtomicBool::new(false));
            let (bound, thread) = crate::metrics::serve(addr, move || source.snapshot(), stop.clone())
                .map_err(|source| StartError::Listen { addr: format!("--metrics {addr}"), source })?;
            handle.metrics = Some((bound, stop, thread));
        }
        Ok(handle)
    }
}

fn resolve_cpus(config: &Config) -> Result<Vec<usize>, StartError> {
    let allowed = crate::sys::allowed_cpus().unwrap_or_default();
    let cpus = match &config.cpus {
        Cpus::Allowed => allowed.clone(),
        Cpus::List(list) => {
            if let Some(bad) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(ConfigError::Invalid {
                    flag: "--cpus",
                    problem: format!("CPU {bad} is not available to this process (allowed: {allowed:?})"),
                }
                .into());
            }
            list.clone()
        }
    };
    if cpus.is_empty() {
        return Err(ConfigError::Invalid { flag: "--cpus", problem: "no CPU available".into() }.into());
    }
    Ok(cpus)
}

fn describe(listen: &Listen) -> String {
    match listen {
        Listen::Tcp(a) | Listen::Udp(a) => a.to_string(),
        Listen::Unix(p) | Listen::UnixGram(p) => p.display().to_string(),
    }
}

/// Bytes of the largest source address a datagram listener of this family receives.
fn sockaddr_len(ipv6: bool) -> u32 {
    if ipv6 {
        std::mem::size_of::<libc::sockaddr_in6>() as u32
    } else {
        std::mem::size_of::<libc::sockaddr_in>() as u32
    }
}

fn inet_socket(addr: SocketAddr, datagram: bool) -> io::Result<Socket> {
    let ty = if datagram { Type::DGRAM } else { Type::STREAM };
    let sock = Socket::new(Domain::for_address(addr), ty.cloexec(), None)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if !datagram {
        // Accepted sockets inherit it: echo replies must not wait for Nagle.
        sock.set_tcp_nodelay(true)?;
    }
    sock.bind(&addr.into())?;
    if !datagram {
        sock.listen(BACKLOG)?;
    }
    Ok(sock)
}

/// Binds a Unix socket at `path`, replacing a stale socket file only when nothing is
/// bound to it; any other file at that path is left alone and reported.
fn unix_socket(path: &Path, datagram: bool) -> io::Result<Socket> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        let probe = if datagram {
            std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.connect(path)).map(drop)
        } else {
            std::os::unix::net::UnixStream::connect(path).map(drop)
        };
        match probe {
            Ok(()) => {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "another server is listening there"));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)?,
            Err(e) => return Err(e),
        }
    }
    let ty = if datagram { Type::DGRAM } else { Type::STREAM };
    let sock = Socket::new(Domain::UNIX, ty.cloexec(), None)?;
    sock.bind(&socket2::SockAddr::unix(path)?)?;
    if !datagram {
        sock.listen(BACKLOG)?;
    }
    Ok(sock)
}

/// A cloneable reader of a server's figures, for other threads.
#[derive(Clone)]
pub struct StatsSource(Arc<Shared>);

impl StatsSource {
    /// The current figures.
    pub fn snapshot(&self) -> Snapshot {
        self.0.stats.snapshot()
    }
}

/// A running server.
pub struct ServerHandle {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    wakes: Vec<Arc<OwnedFd>>,
    addrs: Vec<BoundAddr>,
    modes: Vec<Mode>,
    unix_paths: Vec<PathBuf>,
    task_run: TaskRun,
    features: Features,
    cpus: Vec<Option<usize>>,
    metrics: Option<(SocketAddr, Arc<AtomicBool>, JoinHandle<()>)>,
}

impl ServerHandle {
    /// The bound addresses, in the order the listeners were configured.
    pub fn local_addrs(&self) -> &[BoundAddr] {
        &self.addrs
    }

    /// The start-up lines, one per listener: `listening tcp 127.0.0.1:40123`, with the
    /// mode appended when it is not echo (`listening tcp 127.0.0.1:7009 discard`), and
    /// `listening metrics 127.0.0.1:9107` last when `--metrics` is on.
    pub fn listening_lines(&self) -> Vec<String> {
        self.addrs
            .iter()
            .zip(&self.modes)
            .map(|(addr, mode)| match mode {
                Mode::Echo => format!("listening {addr}"),
                other => format!("listening {addr} {}", other.name()),
            })
            .chain(self.metrics_addr().map(|a| format!("listening metrics {a}")))
            .collect()
    }

    /// Where `--metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.0)
    }

    /// The first UDP address.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.addrs.iter().find_map(|a| match a {
            BoundAddr::Udp(a) => Some(*a),
            _ => None,
        })
    }

    /// The first TCP address, for tests and the built-in load target.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.addrs.iter().find_map(|a| match a {
            BoundAddr::Tcp(a) => Some(*a),
            _ => None,
        })
    }

    /// The current figures.
    pub fn stats(&self) -> Snapshot {
        self.shared.stats.snapshot()
    }

    /// A reader of the figures that other threads can keep.
    pub fn stats_source(&self) -> StatsSource {
        StatsSource(self.shared.clone())
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Kernel features in use.
    pub fn features(&self) -> Features {
        self.features
    }

    /// A one-line description of the engine, for the start-up log.
    pub fn describe(&self) -> String {
        let cpus: Vec<String> = self.cpus.iter().map(|c| c.map_or("-".into(), |c| c.to_string())).collect();
        if self.shared.config.backend != Backend::Uring {
            return format!(
                "{} backend, {} worker{} on CPUs [{}], {} × {} B buffers each, per-connection bound {} B",
                self.shared.config.backend.name(),
                self.threads.len(),
                if self.threads.len() == 1 { "" } else { "s" },
                cpus.join(","),
                self.shared.config.buffers,
                self.shared.config.buffer_size,
                self.shared.config.max_conn_buffer,
            );
        }
        format!(
            "uring backend, {} workers on CPUs [{}], ring {:?}, {} × {} B buffers each, per-connection bound {} B ({}), SEND_ZC {}",
            self.threads.len(),
            cpus.join(","),
            self.task_run,
            self.shared.config.buffers,
            self.shared.config.buffer_size,
            self.shared.config.max_conn_buffer,
            if self.features.recv_total_limit {
                "exact: receive limits"
            } else {
                "approximate: cancel on full"
            },
            match self.shared.config.zc_threshold {
                Some(t) if self.features.send_zc => format!("at ≥ {t} B"),
                Some(_) => "unsupported by this kernel".into(),
                None => "off".into(),
            }
        )
    }

    /// Begins shutdown: stop accepting, let open connections finish for up to the drain
    /// timeout. Returns at once; [`ServerHandle::join`] waits.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for wake in &self.wakes {
            let _ = crate::sys::eventfd_signal(wake);
        }
    }

    /// Waits for every worker to finish and returns the final figures. Call
    /// [`ServerHandle::shutdown`] first, or this waits for ever.
    pub fn join(mut self) -> Snapshot {
        self.join_threads();
        self.stats()
    }

    fn join_threads(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for path in self.unix_paths.drain(..) {
            let _ = std::fs::remove_file(path);
        }
        if let Some((_, stop, thread)) = self.metrics.take() {
            stop.store(true, Ordering::Release);
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
            self.join_threads();
        }
    }
}
