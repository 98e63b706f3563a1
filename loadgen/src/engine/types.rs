//! The types the engine shares with its caller and among its parts: what a worker
//! returns ([`WorkerResult`]), what the workers publish while they run ([`Live`]), the
//! state they share ([`Shared`]), and why a run could not happen ([`RunError`], with the
//! hint for a failed connect).

use super::stamps::StampTally;
use crate::counters::Counters;
use crate::hist::Hist;
use crate::plan::Plan;
use crate::target::Target;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What one worker measured.
pub struct WorkerResult {
    /// Counts.
    pub counters: Counters,
    /// Latency from the intended send time.
    pub latency: Hist,
    /// Latency from the actual send (service time).
    pub service: Hist,
    /// Open loop: how late each measured message was handed out after its intended
    /// send time (the client's own lag behind its schedule).
    pub lag: Hist,
    /// Per-second latency histograms: (start and length in ns since the run began,
    /// histogram); the last one may be shorter than a second.
    pub intervals: Vec<(u64, u64, String)>,
    /// CPU time the worker thread used from the common start (connecting aside).
    pub cpu: Duration,
    /// Connection set-up latencies (ns), one per connection.
    pub connect: Hist,
    /// When the last measured message was answered (ns since the run began).
    pub last_completion: u64,
    /// Connections this worker made at the start.
    pub connected: usize,
    /// Why its first connection failed, if one did.
    pub connect_error: Option<io::Error>,
    /// When (ns) the run stopped because every connection was gone, if it did.
    pub all_gone_at: Option<u64>,
    /// The run's deadline (`--max-duration`) stopped it before its planned end: a
    /// request-bound run with requests still to hand out, or a time-bound one whose
    /// connecting took so long that its `--duration` no longer fitted.
    pub time_limit_hit: bool,
    /// When scheduling stopped, or was to stop (ns since the run began).
    pub stop_at: u64,
    /// The largest datagram answered, and the smallest lost (bytes; datagram runs).
    pub sizes: SizeFates,
    /// Bulk connections: bytes per second of the window, window CPU.
    pub bulk: Tally,
    /// Where a reply's time went, by the kernel's stamps.
    pub breakdown: Breakdown,
    /// The worker ran background flows (`--background`), not the measured connections.
    pub background: bool,
    /// The CPU the worker was to be pinned to, and why the kernel refused, if it did.
    pub pin_error: Option<(usize, String)>,
}

/// One worker's bulk tally.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Bytes sent and received in each second of the measured window.
    pub per_second: Vec<[u64; 2]>,
    /// The worker thread's CPU time when the window began and ended.
    pub cpu_start: Option<Duration>,
    /// See `cpu_start`.
    pub cpu_end: Option<Duration>,
    /// SEND_ZC sends handed to the kernel.
    pub zerocopy_sends: u64,
    /// SO_SNDBUF and SO_RCVBUF of the first connection, as the kernel set them (0: none).
    pub buffers: (u32, u32),
}

impl Tally {
    /// Counts `sent` and `received` bytes moved at `now` (ns), when inside the window
    /// `[warm_end, stop_at)`.
    #[inline]
    pub fn moved(&mut self, warm_end: u64, stop_at: u64, now: u64, sent: u64, received: u64) {
        if now < warm_end || now >= stop_at {
            return;
        }
        let second = ((now - warm_end) / 1_000_000_000) as usize;
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, [0, 0]);
        }
        let s = &mut self.per_second[second];
        s[0] += sent;
        s[1] += received;
    }

    /// CPU used in the window; `at_exit` stands in for a window end not seen (the run
    /// stopped early).
    pub fn window_cpu(&self, at_exit: Duration) -> Duration {
        match self.cpu_start {
            Some(start) => self.cpu_end.unwrap_or(at_exit).saturating_sub(start),
            None => Duration::ZERO,
        }
    }
}

/// Where the time to a reply went, by the kernel's stamps (empty with
/// `--user-timestamps`, or where the sockets give none): for every stamped reply, from its
/// arrival to the worker seeing it; for the probes (sends that asked for their send
/// stamp), from the hand-over to the kernel's send stamp, and from there to the reply's
/// arrival. Measured messages only.
#[derive(Debug, Clone)]
pub struct Breakdown {
    /// Hand-over to the kernel → the kernel's send stamp (probes).
    pub client_send: Hist,
    /// The kernel's send stamp → the reply's arrival stamp (probes).
    pub network_server: Hist,
    /// The reply's arrival stamp → the worker sees it (every stamped reply).
    pub client_receive: Hist,
    /// The intended send time → the worker sees the reply (every stamped reply): the
    /// latency and the client's receive together, what a loop timing in user space sees.
    pub user_to_user: Hist,
    /// The probes' send lag (intended send time → hand-over).
    pub probe_lag: Hist,
    /// The probes' latency (intended send time → arrival stamp), which their parts add
    /// up to.
    pub probe_latency: Hist,
    /// What the stamps gave.
    pub tally: StampTally,
}

impl Default for Breakdown {
    fn default() -> Breakdown {
        Breakdown {
            client_send: crate::hist::new(),
            network_server: crate::hist::new(),
            client_receive: crate::hist::new(),
            user_to_user: crate::hist::new(),
            probe_lag: crate::hist::new(),
            probe_latency: crate::hist::new(),
            tally: StampTally::default(),
        }
    }
}

impl Breakdown {
    /// Adds another worker's (every histogram has the same bounds: adding cannot fail).
    pub fn merge(&mut self, o: &Breakdown) {
        let _ = self.client_send.add(&o.client_send);
        let _ = self.network_server.add(&o.network_server);
        let _ = self.client_receive.add(&o.client_receive);
        let _ = self.user_to_user.add(&o.user_to_user);
        let _ = self.probe_lag.add(&o.probe_lag);
        let _ = self.probe_latency.add(&o.probe_latency);
        self.tally.merge(&o.tally);
    }
}

/// Which datagram sizes were answered and which were lost: a target with a size limit
/// answers the small ones only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeFates {
    /// The largest datagram answered in full (0: none).
    pub answered_max: u32,
    /// The smallest datagram lost (`u32::MAX`: none).
    pub lost_min: u32,
}

impl Default for SizeFates {
    fn default() -> Self {
        SizeFates { answered_max: 0, lost_min: u32::MAX }
    }
}

impl SizeFates {
    /// Both workers' fates together.
    pub fn merge(&mut self, o: &SizeFates) {
        self.answered_max = self.answered_max.max(o.answered_max);
        self.lost_min = self.lost_min.min(o.lost_min);
    }
}

/// Live figures the workers publish for the progress line.
#[derive(Default)]
pub struct Live {
    /// Connections made so far (before the clock starts), all workers together.
    pub connected: AtomicU64,
    /// Measured messages completed so far, per worker.
    pub completed: Vec<AtomicU64>,
    /// Failures so far, per worker.
    pub failed: Vec<AtomicU64>,
    /// Bytes sent and received so far (warm-up included), per worker: the measured
    /// workers first, then the background ones.
    pub bytes: Vec<[AtomicU64; 2]>,
}

/// Why the run could not happen at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The target cannot be reached.
    #[error("cannot connect to {target}: {error} ({})", connect_hint(error))]
    Connect {
        /// The target.
        target: String,
        /// The first error seen.
        error: std::io::Error,
    },
    /// A worker's io_uring could not be set up.
    #[error("setting up a load worker's io_uring")]
    Ring(#[source] ringecho::ring::UringError),
    /// The ring refused an operation (the kernel stopped taking submissions).
    #[error("a load worker's io_uring refused an operation")]
    Push(#[source] ringecho::ring::PushError),
    /// A system call of the run failed.
    #[error("{step}")]
    Io {
        /// What was being done.
        step: String,
        /// Why it failed.
        #[source]
        error: std::io::Error,
    },
    /// A worker thread panicked.
    #[error("a load worker panicked")]
    WorkerPanicked,
    /// The built-in server could not start.
    #[error("starting the built-in ringecho server")]
    Builtin(#[source] ringecho::StartError),
    /// `--start-at` is too far away.
    #[error("--start-at is more than a day away")]
    StartAtTooFar,
    /// `--zerocopy` where the kernel's io_uring has no SEND_ZC (Linux 6.0+).
    #[error(
        "--zerocopy: this kernel's io_uring has no SEND_ZC (it needs Linux 6.0 or later); run without --zerocopy"
    )]
    NoZerocopy,
}

/// State shared by the workers and the caller.
pub struct Shared {
    /// The plan.
    pub plan: Plan,
    /// Where load goes (resolved; the built-in server's address when there is one).
    pub target: Target,
    /// Set to stop the run early (Ctrl-C).
    pub interrupted: Arc<AtomicBool>,
    /// Live figures.
    pub live: Live,
    /// The instant all timestamps count from: set by the first worker past the start
    /// barrier, after every worker has connected (and waited for `start_at`).
    pub start: std::sync::OnceLock<Instant>,
    /// The same moment as Unix seconds.
    pub started_unix: std::sync::OnceLock<f64>,
    /// When to start (`--start-at`); connections are made before it.
    pub start_at: Option<std::time::SystemTime>,
    /// The run is over by then, whatever else (`--max-duration`, or what a workflow's is
    /// left): a connect not made by then has timed out, and the stop comes early enough
    /// for the drain to end by then.
    pub deadline: Instant,
    /// Each worker's thread id, `(worker, tid)`, recorded as it starts (for its CPU time).
    pub tids: std::sync::Mutex<Vec<(usize, i32)>>,
}

impl Shared {
    /// The common start instant, set on first call.
    pub fn begin(&self) -> Instant {
        *self.start.get_or_init(|| {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let _ = self.started_unix.set(unix);
            Instant::now()
        })
    }

    /// Sleeps until `start_at` (if any), waking for Ctrl-C.
    pub(super) fn wait_for_start_at(&self) {
        let Some(at) = self.start_at else { return };
        let Ok(wait) = at.duration_since(std::time::SystemTime::now()) else { return };
        let until = Instant::now() + wait;
        while Instant::now() < until && !self.interrupted.load(Ordering::Relaxed) {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
        }
    }
}

/// The hint for a connect that timed out.
const TIMED_OUT: &str = "not made within --connect-timeout (or before --max-duration): the server does not accept (its listen backlog is full), a full SYN backlog (net.ipv4.tcp_max_syn_backlog), or a firewall";

/// What to look at when a connect fails this way.
pub fn connect_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => {
            "this process ran out of descriptors: raise the hard limit of ulimit -n (limits.conf, LimitNOFILE)"
        }
        Some(libc::EADDRNOTAVAIL) => {
            "out of local ports: widen net.ipv4.ip_local_port_range, or use more target addresses"
        }
        Some(libc::ECONNREFUSED) => {
            "nothing listens there, or its listen backlog overflowed (net.core.somaxconn, the server's backlog)"
        }
        Some(libc::ETIMEDOUT | libc::EAGAIN) => TIMED_OUT,
        Some(libc::ENOENT) => "no socket file at that path",
        Some(libc::EACCES | libc::EPERM) => "permission denied",
        Some(libc::ENETUNREACH | libc::EHOSTUNREACH) => "no route to that address",
        _ => match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TIMED_OUT,
            io::ErrorKind::Interrupted => "Ctrl-C (or SIGTERM, SIGHUP) came first",
            _ => "see the error",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_remedy() {
        assert!(connect_hint(&io::Error::from_raw_os_error(libc::EMFILE)).contains("ulimit -n"));
        assert!(connect_hint(&io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)).contains("port_range"));
        assert!(connect_hint(&io::Error::from_raw_os_error(libc::ECONNREFUSED)).contains("listens"));
    }
}
