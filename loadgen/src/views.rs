//! Who was the bottleneck: the client's and the server's CPU over the measured window,
//! the kernel's loss and stall counters, and the one verdict on what limited the run.
//!
//! A thread is *busy* for the share of the window it wanted a CPU: running on one, or
//! runnable and waiting for one (`schedstat`). A side is saturated when its busiest thread
//! is busy at least [`SATURATED`] of the window (the one saturation threshold: the
//! report's warning, a search step and `ab` use it too). A thread that waited for a CPU
//! at least [`CONTENDED`] of the window was contended: something else ran on its CPU, and
//! that, not the load, set the pace. An open loop's client is judged by its schedule
//! ([`Schedule`]): it limited the run when it fell behind, whatever its CPU share.
//!
//! Invariant: [`judge`] is the one place a run's limit is decided, a pure function of
//! [`Evidence`] (so it is tested on numbers); every view (a run's report, `report` of a
//! saved file, each repeat, each search step, each `ab` side) shows the verdict it made.
//! `crate::observe` takes the readings and `crate::report::Report::assess` concludes.

use crate::slo::Schedule;
use crate::units::{ns, percent, plural, share};
use ringecho::procfs::NetCounters;
use serde::{Deserialize, Serialize};

/// The share of the window above which a thread counts as saturated.
pub const SATURATED: f64 = 0.85;
/// Below [`SATURATED`], a side still limits the run when its busiest thread is busy at
/// least this share of the window and [`DOMINANT_RATIO`] times the other side's: a
/// closed loop whose two sides take turns (each waits for the other's batch) never fills
/// either CPU, but the side that wants a CPU far longer sets the pace.
pub const DOMINANT: f64 = 0.6;
/// See [`DOMINANT`].
pub const DOMINANT_RATIO: f64 = 1.5;
/// The share of the window a worker may wait for a CPU before it counts as contended
/// (on a machine with a CPU to spare, a pinned worker waits a few percent at most).
pub const CONTENDED: f64 = 0.15;
/// The share of datagrams lost, with a kernel drop counter grown, from which the
/// kernel's drops limited the run.
pub const DROPS: f64 = 0.01;

/// The most worker threads a side lists, and so a document read may: as many as Linux
/// counts CPUs (8,192), a worker each.
pub const MAX_THREADS: usize = 8192;

/// One side's worker threads over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideCpu {
    /// CPU seconds its worker threads used in the window (user + system).
    #[serde(default)]
    pub cpu_s: f64,
    /// Each worker thread's share of the window it wanted a CPU (running or waiting for
    /// one), 0 to 1, in worker order.
    #[serde(default, deserialize_with = "threads")]
    pub busy: Vec<f64>,
    /// Each worker thread's share of the window spent waiting for a CPU.
    #[serde(default, deserialize_with = "threads")]
    pub waiting: Vec<f64>,
}

/// A figure per worker thread, at most [`MAX_THREADS`], from an untrusted document.
fn threads<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    crate::input::bounded_list(d, MAX_THREADS, || format!("more than {MAX_THREADS} threads"))
}

impl SideCpu {
    /// The busiest worker: its index and busy share.
    pub fn busiest(&self) -> Option<(usize, f64)> {
        self.busy.iter().copied().enumerate().max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The busiest worker's busy share, 0 when there is none.
    pub fn peak(&self) -> f64 {
        self.busiest().map_or(0.0, |(_, b)| b)
    }

    /// The worker that waited longest for a CPU: its index and waiting share.
    pub fn most_waiting(&self) -> Option<(usize, f64)> {
        self.waiting.iter().copied().enumerate().max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// What the verdict needs of the side: its busiest worker's share, its longest wait.
    pub fn figures(&self) -> Option<Busiest> {
        let (_, busy) = self.busiest()?;
        Some(Busiest { busy, waiting: self.most_waiting().map_or(0.0, |(_, w)| w) })
    }
}

/// The server's datagram figures over the window (the built-in server, or a ringecho
/// read through `--server-metrics`): what became of the datagrams it received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerDgrams {
    /// Answered.
    pub echoed: u64,
    /// Dropped: longer than its buffer, rate-limited, from no one to answer, or a reply
    /// the kernel refused, all together.
    pub dropped: u64,
    /// Its multishot receives that ended for want of a buffer (datagrams the kernel may
    /// have dropped meanwhile).
    pub enobufs: u64,
}

/// The server's side: where its figures came from, its CPU and its counters' deltas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    /// `built-in`, the `--server-metrics` URL, or `pid N` (`--server-pid`).
    #[serde(default)]
    pub source: String,
    /// Its worker threads.
    #[serde(default)]
    pub cpu: SideCpu,
    /// CPU seconds the whole server process used in the window, when known.
    #[serde(default)]
    pub process_cpu_s: Option<f64>,
    /// Receive completions it made in the window.
    #[serde(default)]
    pub recv_ops: u64,
    /// Datagrams it received in the window.
    #[serde(default)]
    pub dgrams_in: u64,
    /// What became of them, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dgrams: Option<ServerDgrams>,
    /// The server's own parts in the window, when it times them (`ringecho --timestamps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<ServerTiming>,
}

/// The server's own parts in the window, from its kernel stamps (`ringecho
/// --timestamps`): `wake`, a receive's kernel arrival stamp → its worker takes it;
/// `send`, the worker queues the echo → the kernel's send stamp (sampled; TCP and UDP, UDP
/// from Linux 6.13).
/// For an echo sent in the turn that took its request, the two add up to the request's
/// whole time in the server, kernel stamp to kernel stamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerTiming {
    /// Kernel arrival stamp → the worker takes the receive.
    pub wake: PartFigures,
    /// The worker queues the echo → the kernel's send stamp.
    pub send: PartFigures,
}

/// One of the server's parts: how many were timed, and their median, 99th percentile and
/// mean in ns (the percentiles read from the server's buckets, within 19%; the mean
/// exact). The figures are 0 when none was timed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PartFigures {
    /// Values timed in the window.
    pub count: u64,
    /// Median, ns.
    pub p50_ns: f64,
    /// 99th percentile, ns.
    pub p99_ns: f64,
    /// Mean, ns.
    pub mean_ns: f64,
}

impl PartFigures {
    /// The figures of `h`.
    pub fn of(h: &ringecho::parthist::Histogram) -> PartFigures {
        PartFigures {
            count: h.count(),
            p50_ns: h.quantile(0.5).unwrap_or(0.0),
            p99_ns: h.quantile(0.99).unwrap_or(0.0),
            mean_ns: h.mean().unwrap_or(0.0),
        }
    }
}

/// A process other than the load and the server that used a CPU in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherProcess {
    /// Its process id.
    pub pid: u32,
    /// Its name (`/proc/PID/comm`, as the kernel keeps it).
    pub comm: String,
    /// Its CPU over the window, in CPUs (1.0: one CPU all the time).
    pub cpu: f64,
}

/// What limited the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The load generator's CPU was saturated (closed loop). (Documents from before
    /// `client_schedule` existed say this of an open loop that fell behind too.)
    ClientCpu,
    /// The open loop's client fell behind its schedule, whatever its CPU share.
    ClientSchedule,
    /// The server's CPU was saturated.
    ServerCpu,
    /// Both were.
    ClientAndServerCpu,
    /// A worker (the client's or the server's) waited for a CPU that something else
    /// used.
    Contention,
    /// Neither CPU: datagrams were lost and the kernel counted drops.
    KernelDrops,
    /// Neither: the round trip itself (too few messages in flight to fill a CPU).
    Latency,
    /// Neither: the open loop's rate.
    Rate,
    /// Not judged (no CPU figures, or the server's are unknown and the client had room).
    Unknown,
}

impl Limit {
    /// Its short name, for a table cell.
    pub fn short(self) -> &'static str {
        match self {
            Limit::ClientCpu => "client CPU",
            Limit::ClientSchedule => "client schedule",
            Limit::ServerCpu => "server CPU",
            Limit::ClientAndServerCpu => "both CPUs",
            Limit::Contention => "contention",
            Limit::KernelDrops => "kernel drops",
            Limit::Latency => "latency",
            Limit::Rate => "rate",
            Limit::Unknown => "not judged",
        }
    }

    /// The client, not the target, set the pace: the run measured the client.
    pub fn is_client(self) -> bool {
        matches!(self, Limit::ClientCpu | Limit::ClientSchedule | Limit::ClientAndServerCpu)
    }
}

/// The figures the verdict is made from, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Views {
    /// Seconds between the first and the last reading.
    #[serde(default)]
    pub window_s: f64,
    /// ringload's worker threads.
    #[serde(default)]
    pub client: SideCpu,
    /// The server, when its figures could be read (built-in, `--server-metrics`, or
    /// `--server-pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerView>,
    /// The kernel's loss and stall counters: how much each grew in the window (this
    /// machine, all sockets).
    #[serde(default)]
    pub kernel: NetCounters,
    /// The processes besides the load and the server that used most CPU in the window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<OtherProcess>,
    /// What limited the run.
    pub limit: Limit,
    /// The verdict as shown: `limit: server CPU (worker 0 busy 99% ...; client 41%)`.
    #[serde(default)]
    pub limit_text: String,
    /// The client busy-polled (`--spin`).
    #[serde(default)]
    pub spin: bool,
}

/// One side's figures for the verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Busiest {
    /// The busiest worker's share of the window wanting a CPU.
    pub busy: f64,
    /// The longest any of its workers waited for a CPU, as a share of the window.
    pub waiting: f64,
}

/// Everything the verdict is judged on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    /// The client's workers (`None`: not read).
    pub client: Option<Busiest>,
    /// The server's workers (`None`: not known).
    pub server: Option<Busiest>,
    /// The open loop's schedule (`None`: a closed loop, or nothing handed out).
    pub schedule: Option<Schedule>,
    /// The client busy-polled: its CPU share says nothing.
    pub spin: bool,
    /// Datagrams lost and sent in the window (0 and 0 for streams).
    pub lost: u64,
    /// See `lost`.
    pub sent: u64,
    /// How much the kernel's datagram drop counters grew.
    pub kernel_drops: u64,
}

/// The one verdict on what limited a run, in this order: contention (a worker that waited
/// for a CPU is not measuring the load), the client (behind its schedule, or its CPU
/// saturated or dominant), the server's CPU, the kernel's drops, else the round trip or
/// the rate. Without the server's figures, a client with room says nothing of what
/// limited the run.
///
/// In an open loop the client's CPU share does not say whether it limited the run: a
/// client that waits for each message's due time spends CPU on the waiting itself (a
/// timer, a sleep and a wake per message), which shrinks as the rate grows and the turns
/// fill up. Whether it kept to its schedule does.
pub fn judge(e: &Evidence) -> Limit {
    let contended = |side: Option<Busiest>| side.is_some_and(|s| s.waiting >= CONTENDED);
    if contended(e.server) || contended(e.client) {
        return Limit::Contention;
    }
    let client = e.client.map(|c| c.busy).filter(|_| !e.spin);
    let server = e.server.map(|s| s.busy);
    let dominates = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => a >= SATURATED || (a >= DOMINANT && a >= DOMINANT_RATIO * b),
        (Some(a), None) => a >= SATURATED,
        _ => false,
    };
    let client_limited = match e.schedule {
        Some(s) => s.behind(),
        None => dominates(client, server),
    };
    // An open loop's client CPU share says little (see above): the server is judged by
    // its own share alone there.
    let server_limited = dominates(server, if e.schedule.is_some() { None } else { client });
    let drops = e.kernel_drops > 0 && e.sent > 0 && e.lost as f64 >= DROPS * e.sent as f64;
    match (client_limited, server_limited) {
        (true, true) => Limit::ClientAndServerCpu,
        (true, false) if e.schedule.is_some() => Limit::ClientSchedule,
        (true, false) => Limit::ClientCpu,
        (false, true) => Limit::ServerCpu,
        _ if drops => Limit::KernelDrops,
        _ if server.is_none() => Limit::Unknown,
        _ if e.spin => Limit::Latency,
        _ if e.schedule.is_some() => Limit::Rate,
        _ => Limit::Latency,
    }
}

/// `worker 0 busy 99% of the window (51% running, 48% waiting for a CPU)`.
pub fn worker_figure(side: &SideCpu) -> String {
    match side.busiest() {
        Some((i, busy)) => {
            let waiting = side.waiting.get(i).copied().unwrap_or(0.0);
            if waiting >= 0.05 {
                format!(
                    "worker {i} busy {} of the window: {} running, {} waiting for a CPU",
                    share(busy),
                    share((busy - waiting).max(0.0)),
                    share(waiting)
                )
            } else {
                format!("worker {i} busy {} of the window", share(busy))
            }
        }
        None => "no worker figures".into(),
    }
}

/// What a run's verdict is drawn from besides the views' own figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Context {
    /// The open loop's schedule (`None` in a closed loop).
    pub schedule: Option<Schedule>,
    /// Datagrams lost and sent in the window (streams: 0 and 0).
    pub lost: u64,
    /// See `lost`.
    pub sent: u64,
    /// CPUs this machine allows that neither the load nor a server of known CPUs used.
    pub spare_cpus: usize,
    /// The load is an open loop over a stream (`--coalesce` applies).
    pub stream_open_loop: bool,
}

/// The datagrams the kernel dropped by its UDP counters: InErrors counts what
/// RcvbufErrors counts (and more), so the larger of the two, plus the send side's.
pub fn udp_drops(k: &NetCounters) -> u64 {
    k.udp_in_errors.max(k.udp_rcvbuf_errors).saturating_add(k.udp_sndbuf_errors)
}

/// What helps a client that limited the run, on this machine.
pub fn client_advice(ctx: &Context) -> String {
    if ctx.spare_cpus > 0 {
        return format!(
            "give it more CPUs (--cpus; {} spare CPU{} here)",
            ctx.spare_cpus,
            plural(ctx.spare_cpus as u64)
        );
    }
    let coalesce = if ctx.stream_open_loop { ", --coalesce (due messages share a send)" } else { "" };
    format!(
        "no CPU is spare here: fewer connections (fewer wake-ups per message){coalesce}, or a second load machine (--start-at on both, then ringload merge)"
    )
}

impl Views {
    /// What the verdict is judged on.
    pub fn evidence(&self, ctx: &Context) -> Evidence {
        let kernel_drops =
            self.kernel.udp_rcvbuf_errors + self.kernel.udp_sndbuf_errors + self.kernel.udp_in_errors;
        Evidence {
            client: self.client.figures(),
            server: self.server.as_ref().and_then(|s| s.cpu.figures()),
            schedule: ctx.schedule,
            spin: self.spin,
            lost: ctx.lost,
            sent: ctx.sent,
            kernel_drops,
        }
    }

    /// Judges the figures ([`judge`]) and writes the verdict line.
    pub fn conclude(&mut self, ctx: &Context) {
        let e = self.evidence(ctx);
        self.limit = judge(&e);
        self.limit_text = self.line(&e, ctx);
    }

    /// The verdict line, with the figures behind it and what would help.
    fn line(&self, e: &Evidence, ctx: &Context) -> String {
        let kept = |s: &Schedule| {
            let sign = if s.behind() { ">" } else { "≤" };
            format!("send lag p99 {} {sign} {}", ns(s.lag_p99_ns as f64), ns(s.limit_ns as f64))
        };
        let client = e.client.map(|c| c.busy);
        let client_text = match (client, &e.schedule) {
            (Some(c), Some(s)) => format!("client {}, {}", share(c), kept(s)),
            (Some(c), None) => format!("client {}", share(c)),
            (None, _) => "client unknown".into(),
        };
        let server_figure =
            self.server.as_ref().filter(|_| e.server.is_some()).map(|s| worker_figure(&s.cpu));
        let server_text =
            server_figure.as_ref().map_or("server CPU unknown".into(), |f| format!("server {f}"));
        let advice = client_advice(ctx);
        match self.limit {
            Limit::Contention => self.contention_line(e),
            Limit::ServerCpu => {
                format!("limit: server CPU ({}; {client_text})", server_figure.unwrap_or_default())
            }
            Limit::ClientCpu => {
                format!("limit: client CPU ({}; {server_text}) — {advice}", worker_figure(&self.client))
            }
            Limit::ClientSchedule => format!(
                "limit: client schedule (behind: {}; {}; {server_text}) — {advice}",
                e.schedule.as_ref().map(kept).unwrap_or_default(),
                worker_figure(&self.client)
            ),
            Limit::ClientAndServerCpu => format!(
                "limit: client and server CPU (client {}; {server_text}) — {advice}",
                worker_figure(&self.client)
            ),
            Limit::KernelDrops => {
                let grown: Vec<String> = self
                    .kernel_hints()
                    .iter()
                    .filter(|(name, ..)| name.starts_with("udp_"))
                    .map(|(name, n, hint)| format!("{name} +{n} ({hint})"))
                    .collect();
                format!(
                    "limit: kernel drops: {} of {} datagrams lost ({}), {}; {client_text}, {server_text}",
                    e.lost,
                    e.sent,
                    percent(e.lost as f64 / e.sent.max(1) as f64),
                    grown.join(", ")
                )
            }
            Limit::Latency => format!(
                "limit: neither CPU saturated: latency-bound (more connections or --depth would add load; {client_text}, {server_text})"
            ),
            Limit::Rate => format!(
                "limit: neither CPU saturated: rate-bound (--rate set the pace; {client_text}, {server_text})"
            ),
            Limit::Unknown if self.spin => {
                format!("limit: not judged: --spin keeps the client's CPU busy by design ({server_text})")
            }
            Limit::Unknown if client.is_some() => format!(
                "limit: not judged: the client had room ({client_text}) and the server's CPU is unknown (give --server-pid PID of a server on this machine, or --server-metrics http://HOST:PORT/metrics of a ringecho)"
            ),
            Limit::Unknown => "limit: not judged: no CPU figures".into(),
        }
    }

    /// The contention line: who waited, how long, and what else ran.
    fn contention_line(&self, e: &Evidence) -> String {
        let waited = |side: &SideCpu| side.most_waiting().map_or(0.0, |(_, w)| w);
        let server = self.server.as_ref().filter(|_| e.server.is_some());
        let (who, side) = match server {
            Some(s) if waited(&s.cpu) >= waited(&self.client) => ("server", &s.cpu),
            _ => ("client", &self.client),
        };
        let (i, waiting) = side.most_waiting().unwrap_or((0, 0.0));
        let busy = side.busy.get(i).copied().unwrap_or(waiting);
        let others: Vec<String> = self
            .others
            .iter()
            .map(|o| format!("{} (pid {}) {} of a CPU", o.comm, o.pid, share(o.cpu)))
            .collect();
        let what_else =
            if others.is_empty() { String::new() } else { format!("; what else ran: {}", others.join(", ")) };
        format!(
            "limit: CPU contention: {who} worker {i} waited for a CPU {} of the window ({} running){what_else} — the figures measure the sharing too: stop what else runs, or pin the load and the server to CPUs of their own",
            share(waiting),
            share((busy - waiting).max(0.0)),
        )
    }

    /// The server's worker figures were read.
    pub fn server_known(&self) -> bool {
        self.server.as_ref().is_some_and(|s| !s.cpu.busy.is_empty())
    }

    /// The counters that grew, each with the setting to raise.
    pub fn kernel_hints(&self) -> Vec<(&'static str, u64, &'static str)> {
        self.kernel
            .fields()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(name, v)| (name, v, crate::warning::kernel_hint(name)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
