//! The arguments of a load run (`ringload [TARGET] …`), which `ab` and the search reuse:
//! the target, the load's shape and length, its checks, what it reads beside it and where
//! its result goes; a CPU list as one value.

use super::throughput::ThroughputArgs;
use crate::plan::SizeSpec;
use crate::target::Target;
use crate::units::{self, parse_fraction, parse_rate, parse_start_at};
use std::path::PathBuf;
use std::time::Duration;

/// The load-running arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// tcp://HOST:PORT, udp://HOST:PORT, unix:///PATH or unixgram:///PATH. None: a built-in
    /// ringecho server on a loopback port, on its own CPU.
    pub target: Option<Target>,

    /// More targets than one: refused with a clear error (one target per run).
    #[arg(hide = true)]
    pub more_targets: Vec<String>,

    /// Connections (flows, for datagrams), all workers together.
    #[arg(short, long, default_value_t = 50)]
    pub connections: u32,

    /// Messages in flight per connection (closed loop).
    #[arg(long, default_value_t = 1, conflicts_with = "rate")]
    pub depth: u32,

    /// Open loop: messages per second in all (`20000`, `50k`, `1.5M`); latency counts
    /// from when each was due.
    #[arg(short, long, value_name = "MSG/S", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Message size: `64`, `4KiB`, or a seeded random range `64..1500`.
    #[arg(short, long, default_value = "64", value_parser = SizeSpec::parse)]
    pub size: SizeSpec,

    /// How long to measure (after the warm-up).
    #[arg(short, long, default_value = "10s", value_parser = units::parse_duration)]
    pub duration: Duration,

    /// Stop after this many measured messages instead of after --duration.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,

    /// Run this long first without counting.
    #[arg(short, long, default_value = "1s", value_parser = units::parse_duration)]
    pub warmup: Duration,

    /// Check every echoed byte against what was sent.
    #[arg(long)]
    pub verify: bool,

    /// Load workers (one per CPU, pinned). Default: every allowed CPU, less the built-in
    /// server's.
    #[arg(short, long, value_name = "N", conflicts_with = "cpus")]
    pub threads: Option<usize>,

    /// CPUs for the load workers, e.g. `1` or `2-3`.
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,

    /// A datagram unanswered this long is lost.
    #[arg(long, default_value = "1s", value_parser = units::parse_duration)]
    pub udp_timeout: Duration,

    /// Give up connecting after this long.
    #[arg(long, default_value = "2s", value_parser = units::parse_duration)]
    pub connect_timeout: Duration,

    /// After the stop, wait up to this long for replies in flight.
    #[arg(long, default_value = "1s", value_parser = units::parse_duration)]
    pub drain: Duration,

    /// Seed for message sizes and payloads.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Connection churn: connect, echo M messages, close, repeat (closed loop); reports
    /// connects per second and connect latency.
    #[arg(long, value_name = "M", conflicts_with = "rate")]
    pub churn: Option<u32>,

    /// Open loop over a stream (--rate or --find-max-rate): let messages that fall due
    /// together share one send. By default each message is its own send (as wrk2 and
    /// tcpkali send requests), so that open-loop rates compare with theirs.
    #[arg(long)]
    pub coalesce: bool,

    /// Open loop (--rate, --find-max-rate): at each wake-up hand out every message due
    /// within DURATION (`100us`, `1ms`; at most 10ms), sending the early ones early. With
    /// kernel-stamped replies the client then wakes about once per ¾ window instead of once
    /// per due time, which is what an open loop costs on a machine where a wake-up is dear
    /// (a VM); the server sees bursts of about rate × ¾ DURATION messages. An early
    /// message's latency counts from when it was handed out, a late one's from when it was
    /// due (no coordinated omission either way); no message goes early across the end of
    /// the warm-up or the stop. Off by default: each message goes at its due time, as wrk2
    /// sends.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub send_window: Option<Duration>,

    /// UDP: send each datagram with its own send and receive them one by one. By default
    /// a flow's datagrams that are due together (`--depth` > 1) go as one UDP_SEGMENT send
    /// and come back through UDP_GRO, each with its own header and sequence number; the
    /// kernel splits them for a server that does not batch.
    #[arg(long)]
    pub no_gso: bool,

    /// Busy-poll each worker's ring instead of sleeping (submit without waiting and peek
    /// the completion queue), for microsecond-scale latency the way sockperf and neper
    /// offer busy polling. Each worker then costs a whole CPU; pair it with
    /// `ringecho --spin` for the latency floor.
    #[arg(long)]
    pub spin: bool,

    /// Time each reply when the worker sees it, and wake for each one, instead of by the
    /// kernel's receive stamp (the default where the socket gives one: TCP, UDP, Unix
    /// datagram). For comparison with the old loop, and for kernels without stamps.
    #[arg(long)]
    pub user_timestamps: bool,

    /// A remote ringecho's metrics URL (`http://HOST:PORT/metrics`, its `--metrics`): its
    /// CPU and counters are read at the start and the end of the measured window, so the
    /// report can say whether the server or the client limited the run. A URL that cannot
    /// be read costs a warning, not the run.
    #[arg(long, value_name = "URL")]
    pub server_metrics: Option<String>,

    /// The longest the command runs, whatever else: connecting, warm-up, measuring and
    /// drain together; with --repeat all the runs, with --find-max-rate the whole search
    /// (default 10m). A request-bound run (`-n`) against a target that stops answering
    /// ends then, the unanswered counting as failed; a repeat or a search it stops short
    /// says so and exits 2. Default: 5m, or the run's whole length and a minute if longer.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub max_duration: Option<Duration>,

    /// Write the result as JSON to FILE (`-` for stdout, replacing the text report).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write an HdrHistogram interval log (one histogram per second, values in ns).
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,

    /// Exit 1 if the p99 latency exceeds this.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub max_p99: Option<Duration>,

    /// Exit 1 if more than this share of messages failed: `1%` or `0.01`.
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    pub max_error_rate: Option<f64>,

    /// No progress line, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,

    /// Wait until this moment to start (Unix seconds or RFC 3339), so that several load
    /// machines begin together.
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<std::time::SystemTime>,

    /// A name for this run, carried in the JSON result (and used by merge and plot); at
    /// most 256 characters, no control characters.
    #[arg(long, value_name = "NAME", value_parser = crate::document::read::parse_label)]
    pub label: Option<String>,

    /// A service-level objective: clauses `METRIC<LIMIT` joined by commas, over p50,
    /// p90, p99, p99.9, max (latency from the intended send time) and errors, loss
    /// (shares): `p99<1ms,errors<0.1%`. A run that breaks it exits 1 (as --max-p99,
    /// which is the clause `p99<…`); --find-max-rate searches under it.
    #[arg(long, value_name = "SLO", value_parser = crate::slo::parse_slo)]
    pub slo: Option<crate::slo::Slo>,

    /// Find the highest open-loop rate that meets --slo (the whole rule: --help).
    #[arg(long, conflicts_with_all = ["rate", "depth", "churn", "requests", "hdr_log"])]
    pub find_max_rate: bool,

    /// --find-max-rate: stop bisecting when the first failing rate is within this of
    /// the last passing one: `5%` or `0.05`.
    #[arg(long, default_value = "5%", value_parser = parse_fraction, requires = "find_max_rate")]
    pub precision: f64,

    /// --find-max-rate: measured time of each step (after its own warm-up, --warmup).
    #[arg(long, default_value = "3s", value_parser = units::parse_duration, requires = "find_max_rate")]
    pub step_duration: Duration,

    /// --find-max-rate: the first rate tried (`1k`, `50k`).
    #[arg(long, default_value = "1k", value_parser = parse_rate, requires = "find_max_rate")]
    pub start_rate: f64,

    /// --find-max-rate: the factor between rates while no step has failed.
    #[arg(long, default_value_t = 2.0, requires = "find_max_rate")]
    pub growth: f64,

    /// Measure N times, each with fresh connections: the report shows the median, the
    /// range and a confidence interval of the median; the JSON keeps every run. With
    /// --find-max-rate, every step runs N times and passes on its medians.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: u32,

    /// A server process on this machine (any server, not only ringecho): its threads'
    /// CPU and run-queue wait are read from /proc at the start and the end of the
    /// window, so the report can say whether the server, the client or contention
    /// limited the run; --find-max-rate also shows its CPU per step (100% = one CPU).
    #[arg(long, value_name = "PID", conflicts_with = "server_metrics")]
    pub server_pid: Option<u32>,

    /// Test knob: take --find-max-rate steps offered above this rate as client-saturated.
    #[arg(long, hide = true, value_parser = parse_rate)]
    pub test_saturate_above: Option<f64>,
    /// Byte throughput and latency under load.
    #[command(flatten)]
    pub throughput: ThroughputArgs,
}

/// A parsed `--cpus` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// `--cpus` and `--server-cpus`: a CPU list as one value (`0,2-3`).
pub(super) fn parse_cpus(text: &str) -> Result<CpuList, units::UnitError> {
    units::parse_cpus(text).map(CpuList)
}
