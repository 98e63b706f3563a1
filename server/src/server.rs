//! Starting, observing and stopping a server: listeners are bound and workers set up
//! before [`Server::start`] returns, so every start-up error (a bad flag, an address in
//! use, io_uring switched off) surfaces there, synchronously.
//!
//! This is the public face over the backend contract ([`crate::backend::contract`]): it
//! picks the engine, binds the listeners, starts one thread per worker and joins them.

use crate::backend::contract::WorkerSetup;
use crate::backend::{self, contract::Engine, contract::Ready, contract::Shared, contract::Started};
use crate::config::{Config, Mode};
use crate::error::{ServerWarning, StartError, WorkerError};
use crate::listen::{self, BoundAddr};
use crate::ring::Features;
use crate::stats::{Snapshot, StatsRegistry};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// The server entry point.
pub struct Server;

impl Server {
    /// Validates `config`, binds every listener, starts the workers (one pinned worker per
    /// CPU unless the backend says otherwise) and returns once all of them are serving.
    pub fn start(config: Config) -> Result<ServerHandle, StartError> {
        config.validate()?;
        crate::sys::raise_nofile_limit().ok();
        let engine = backend::engine(config.backend)?;
        let allowed = crate::sys::allowed_cpus().unwrap_or_default();
        let cpus = config.cpus.resolve(&allowed)?;
        let workers = engine.workers(&config, cpus.len());
        crate::config::check_workers(workers, cpus.len())?;
        let gro = config.gro && config.backend.handles_gro();
        let bound = listen::bind_all(&config.listen, workers, gro, config.timestamps)?;
        let dgram_capacity = match bound.largest_datagram() {
            Some(largest) => config.dgram_buffer_size.unwrap_or(largest),
            None => 0,
        };
        let timed = config.timestamps;
        let shared = Arc::new(Shared {
            dgram_capacity,
            config,
            open_conns: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            stats: StatsRegistry::new(workers, timed),
            threads: crate::cpu::WorkerThreads::new(workers),
        });
        let mut handle = ServerHandle {
            shared: shared.clone(),
            engine: engine.clone(),
            threads: Vec::new(),
            wakes: Vec::new(),
            addrs: bound.addrs.iter().map(|(a, _)| a.clone()).collect(),
            modes: bound.addrs.iter().map(|(_, m)| *m).collect(),
            largest_datagram: bound.largest_datagram,
            unix_paths: bound.unix_paths,
            started: Vec::new(),
            cpus: Vec::new(),
            metrics: None,
        };
        for (index, listeners) in bound.per_worker.into_iter().enumerate() {
            let cpu = cpus.get(index % cpus.len().max(1)).copied();
            let thread_err = |what: String| WorkerError::Thread { worker: index, what };
            let wake = Arc::new(crate::sys::eventfd().map_err(|e| thread_err(format!("eventfd: {e}")))?);
            let setup = WorkerSetup { index, cpu, listeners, wake: wake.clone(), shared: shared.clone() };
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let engine = engine.clone();
            let thread = std::thread::Builder::new()
                .name(format!("ringecho-{index}"))
                .spawn(move || {
                    let shared = setup.shared.clone();
                    shared.threads.started(index);
                    let warnings = engine.run(setup, Ready::new(index, tx));
                    shared.threads.ended(index);
                    warnings
                })
                .map_err(|e| thread_err(format!("spawning the thread: {e}")))?;
            handle.threads.push((index, thread));
            handle.wakes.push(wake);
            handle.cpus.push(cpu);
            match rx.recv() {
                Ok(Ok(started)) => handle.started.push(started),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(thread_err("ended during set-up".into()).into()),
            }
        }
        if let Some(addr) = handle.shared.config.metrics {
            let source = handle.stats_source();
            let backend = handle.shared.config.backend.name();
            let stop = Arc::new(AtomicBool::new(false));
            let scrape = move || {
                let process = crate::metrics::ProcessStats::read();
                let observed =
                    crate::metrics::Observed { cpu: source.cpu(), net: crate::procfs::NetCounters::read() };
                crate::metrics::render_observed(&source.snapshot(), &process, backend, &observed)
            };
            let (bound, thread) = crate::metrics::serve(addr, scrape, stop.clone())
                .map_err(|error| StartError::Listen { addr: format!("--metrics {addr}"), error })?;
            handle.metrics = Some((bound, stop, thread));
        }
        Ok(handle)
    }
}

/// A cloneable reader of a server's figures, for other threads.
#[derive(Clone)]
pub struct StatsSource(Arc<Shared>);

impl StatsSource {
    /// The current figures.
    pub fn snapshot(&self) -> Snapshot {
        self.0.stats.snapshot()
    }

    /// The process's and each worker's CPU time now.
    pub fn cpu(&self) -> crate::cpu::ServerCpu {
        crate::cpu::ServerCpu { process: crate::procfs::process_cpu(), workers: self.0.threads.read() }
    }
}

/// What a stopped server leaves: its final figures and what went wrong after start-up.
#[derive(Debug)]
pub struct Finished {
    /// The final figures.
    pub totals: Snapshot,
    /// Problems the workers met while serving (for the binary to print).
    pub warnings: Vec<ServerWarning>,
    /// The CPU time the process and each worker used, at the end.
    pub cpu: crate::cpu::ServerCpu,
}

/// A running server.
pub struct ServerHandle {
    shared: Arc<Shared>,
    engine: Arc<dyn Engine>,
    threads: Vec<(usize, JoinHandle<Vec<ServerWarning>>)>,
    wakes: Vec<Arc<OwnedFd>>,
    addrs: Vec<BoundAddr>,
    modes: Vec<Mode>,
    /// Per address, the largest datagram a peer can send it (`None` for streams).
    largest_datagram: Vec<Option<u32>>,
    unix_paths: Vec<PathBuf>,
    started: Vec<Started>,
    cpus: Vec<Option<usize>>,
    metrics: Option<(SocketAddr, Arc<AtomicBool>, JoinHandle<()>)>,
}

impl ServerHandle {
    /// The bound addresses, in the order the listeners were configured.
    pub fn local_addrs(&self) -> &[BoundAddr] {
        &self.addrs
    }

    /// The start-up lines, one per listener: `listening tcp 127.0.0.1:40123`, with the
    /// mode appended when it is not echo (`listening tcp 127.0.0.1:7009 discard`), the
    /// largest datagram received whole when `--dgram-buffer-size` is below what peers can
    /// send (`listening udp 127.0.0.1:7007 max-datagram 9000`), and
    /// `listening metrics 127.0.0.1:9107` last when `--metrics` is on.
    pub fn listening_lines(&self) -> Vec<String> {
        let capacity = self.shared.dgram_capacity;
        self.addrs
            .iter()
            .zip(&self.modes)
            .zip(&self.largest_datagram)
            .map(|((addr, mode), largest)| {
                let mut line = format!("listening {addr}");
                if *mode != Mode::Echo {
                    line += &format!(" {}", mode.name());
                }
                if largest.is_some_and(|l| l > capacity) {
                    line += &format!(" max-datagram {capacity}");
                }
                line
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

    /// The process's and each worker's CPU time now (each worker's last reading once it
    /// has stopped).
    pub fn cpu(&self) -> crate::cpu::ServerCpu {
        self.stats_source().cpu()
    }

    /// A reader of the figures that other threads can keep.
    pub fn stats_source(&self) -> StatsSource {
        StatsSource(self.shared.clone())
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The Unix socket files this server created; it removes them when it stops (a process
    /// that must exit at once removes them itself).
    pub fn socket_files(&self) -> &[PathBuf] {
        &self.unix_paths
    }

    /// Kernel io_uring features in use (none for backends without a ring of their own).
    pub fn features(&self) -> Features {
        self.engine.features()
    }

    /// A one-line description of the engine, for the start-up log.
    pub fn describe(&self) -> String {
        let cpus: Vec<String> = self.cpus.iter().map(|c| c.map_or("-".into(), |c| c.to_string())).collect();
        let workers = self.threads.len();
        format!(
            "{} backend, {workers} worker{} on CPUs [{}], {}",
            self.shared.config.backend.name(),
            if workers == 1 { "" } else { "s" },
            cpus.join(","),
            self.engine.describe(&self.shared.config, &self.started)
        ) + if self.shared.config.spin { ", busy-polling (--spin: a whole CPU per worker)" } else { "" }
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
    pub fn join(self) -> Snapshot {
        self.finish().totals
    }

    /// [`ServerHandle::join`], with the problems the workers met while serving.
    pub fn finish(mut self) -> Finished {
        let warnings = self.join_threads();
        Finished { totals: self.stats(), warnings, cpu: self.cpu() }
    }

    fn join_threads(&mut self) -> Vec<ServerWarning> {
        let mut warnings = Vec::new();
        for (worker, t) in self.threads.drain(..) {
            match t.join() {
                Ok(w) => warnings.extend(w),
                Err(_) => warnings.push(ServerWarning::Stopped {
                    worker,
                    error: std::io::Error::other("the worker thread panicked"),
                }),
            }
        }
        for path in self.unix_paths.drain(..) {
            let _ = std::fs::remove_file(path);
        }
        if let Some((_, stop, thread)) = self.metrics.take() {
            stop.store(true, Ordering::Release);
            let _ = thread.join();
        }
        warnings
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
