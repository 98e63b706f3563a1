//! The command line: clap derive, human units, examples in `--help`.

use crate::plan::{Model, Plan, PlanError, SizeSpec, Stop};
use crate::results::Format;
use crate::target::Target;
use clap::{Parser, Subcommand};
use ringecho::units;
use std::path::PathBuf;
use std::time::Duration;

/// Load generator for echo servers (TCP, UDP, Unix), io_uring based, with latency
/// measured from each message's intended send time.
#[derive(Debug, Parser)]
#[command(
    name = "ringload",
    version,
    after_help = "Examples:\n  \
        ringload                                        # built-in ringecho on loopback, 50 conns × 64 B, 10 s\n  \
        ringload tcp://127.0.0.1:7007 -c 500 --size 512 -d 30s\n  \
        ringload tcp://[::1]:7007 --rate 20000 --max-p99 2ms   # open loop, exit 1 if p99 > 2 ms\n  \
        ringload udp://127.0.0.1:7007 -c 8 --depth 4 --size 64..1400 --verify\n  \
        ringload unix:///tmp/echo.sock --json result.json --hdr-log latency.hlog\n  \
        ringload tcp://127.0.0.1:7007 -c 20 --churn 10         # connects/s and connect latency\n  \
        ringload tcp://127.0.0.1:7009 --mode send -c 8         # one-way throughput against a discard server\n  \
        ringload tcp://127.0.0.1:7007 --rate 10k --background 4   # latency beside 4 bulk flows\n  \
        ringload tcp://127.0.0.1:7007 --find-max-rate --slo 'p99<1ms,errors<0.1%'   # sustainable rate\n  \
        ringload tcp://127.0.0.1:7007 -r 50k --repeat 5        # median, range and CI of 5 runs\n\n\
        Exit codes: 0 ok; 1 a check failed (--max-p99, --max-error-rate, --slo, --verify;\n\
        --find-max-rate: no rate met the SLO; compare: a regression, or ratios a side's\n\
        warnings make not meaningful); 2 usage or runtime error,\n\
        or figures that cannot be trusted (nothing answered, not an echo, connections lost or\n\
        never made); 130 interrupted (the partial report is printed).",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// Work on saved results instead of running load.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The load to run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands working on saved JSON results.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Merge results of runs that ran at the same time (several load machines, same
    /// --start-at): histograms added, counters summed, percentiles recomputed exactly.
    Merge {
        /// Result files (--json output).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the merged result here (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Merge runs whose measured windows do not overlap. Merged runs must have run
        /// at the same time (same --start-at): the merged rate is their summed count over
        /// one window. Without --force, runs that did not overlap are refused, saying how
        /// far apart they were; with it they are merged, with a warning on stderr and in
        /// the merged result.
        #[arg(long)]
        force: bool,
    },
    /// Re-render saved results, one row each.
    Report {
        /// Result files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Compare NEW against BASE: throughput and percentiles with ratios and each side's
    /// warnings; exit 1 if any is worse than --tolerance, or when a side's warnings make
    /// the ratios not meaningful.
    Compare {
        /// The baseline result.
        base: PathBuf,
        /// The result to judge.
        new: PathBuf,
        /// Allowed change for the worse, e.g. 5% or 0.05.
        #[arg(long, default_value = "5%", value_parser = parse_fraction)]
        tolerance: f64,
    },
    /// Plot the latency percentile distribution of results (.json), or throughput and
    /// p50/p99/max over time from interval logs (.hlog, up to 8), as SVG.
    Plot {
        /// Result files (.json), or one interval log (.hlog).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The SVG file to write.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// A/B of two servers: the same load against each, a fresh server per run, A and B
    /// interleaved --runs times; medians, spreads, B/A ratios, server CPU per message.
    Ab(Box<crate::ab::AbArgs>),
}

/// `5%` or `0.05`.
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    let (num, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("{text:?} is not a fraction (e.g. 5% or 0.05)"))?;
    let v = v / scale;
    if !(0.0..=10.0).contains(&v) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(v)
}

/// A rate in messages per second: `20000`, `2e4`, `50k`, `1.5M` (the units the report
/// prints).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (num, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'M')) => (&t[..i], 1e6),
        Some((i, 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("{text:?} is not a rate (e.g. 20000, 50k, 1.5M)"))?;
    let v = v * scale;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{text:?}: a rate must be a positive number of messages per second"));
    }
    Ok(v)
}

/// A run's label: printable text, at most
/// [`MAX_LABEL_CHARS`](crate::document::read::MAX_LABEL_CHARS) characters (what a saved
/// result may carry).
pub fn parse_label(text: &str) -> Result<String, String> {
    use crate::document::read::MAX_LABEL_CHARS;
    if text.chars().count() > MAX_LABEL_CHARS {
        return Err(format!("at most {MAX_LABEL_CHARS} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err("no control characters (newlines, escapes)".into());
    }
    Ok(text.to_owned())
}

/// The most load workers, whatever the CPUs.
pub const MAX_THREADS: usize = 1024;

/// When to start: Unix seconds or RFC 3339.
pub fn parse_start_at(text: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(secs) = text.parse::<f64>() {
        if (0.0..1e11).contains(&secs) {
            return Ok(std::time::UNIX_EPOCH + Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_rfc3339_weak(text)
        .map_err(|_| format!("{text:?}: expected Unix seconds or RFC 3339 (2026-11-25T12:00:00Z)"))
}

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
    #[arg(short, long, default_value = "64", value_parser = parse_size_spec)]
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

    /// Open loop over a stream: let messages that fall due together share one send. By
    /// default each message is its own send (as wrk2 and tcpkali send requests), so that
    /// open-loop rates compare with theirs.
    #[arg(long, requires = "rate")]
    pub coalesce: bool,

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

    /// A remote ringecho's metrics URL (`http://HOST:PORT/metrics`, its `--metrics`): its
    /// CPU and counters are read at the start and the end of the measured window, so the
    /// report can say whether the server or the client limited the run. A URL that cannot
    /// be read costs a warning, not the run.
    #[arg(long, value_name = "URL")]
    pub server_metrics: Option<String>,

    /// Stop after this long (after the warm-up) whatever else, e.g. when a request-bound
    /// run (`-n`) meets a target that stops answering; what is unanswered then counts as
    /// failed. Default: 5m (or --duration, if longer).
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
    #[arg(long, value_name = "NAME", value_parser = parse_label)]
    pub label: Option<String>,

    /// A service-level objective: clauses `METRIC<LIMIT` joined by commas, over p50,
    /// p90, p99, p99.9, max (latency from the intended send time) and errors, loss
    /// (shares): `p99<1ms,errors<0.1%`. A run that breaks it exits 1 (as --max-p99,
    /// which is the clause `p99<…`); --find-max-rate searches under it.
    #[arg(long, value_name = "SLO", value_parser = crate::slo::parse_slo)]
    pub slo: Option<crate::slo::Slo>,

    /// Find the highest open-loop rate that meets --slo: steps grow ×--growth from
    /// --start-rate until one fails, then bisect to --precision. A step passes when it
    /// achieves ≥ 97% of its offered rate, the client is not saturated (CPU < 90%), and
    /// the SLO holds (at the median of --repeat runs). Bounded by --max-duration
    /// (default 10m). Exit 0 with an answer, 1 when no rate met the SLO.
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

    /// --find-max-rate: the server's process ID, to report its CPU per step (from
    /// /proc/PID/stat; 100% = one CPU busy).
    #[arg(long, value_name = "PID", requires = "find_max_rate")]
    pub server_pid: Option<u32>,

    /// Test knob: take --find-max-rate steps offered above this rate as client-saturated.
    #[arg(long, hide = true, value_parser = parse_rate)]
    pub test_saturate_above: Option<f64>,
    /// Byte throughput and latency under load.
    #[command(flatten)]
    pub throughput: crate::throughput::cli::ThroughputArgs,
}

/// A parsed `--cpus` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn parse_cpus(text: &str) -> Result<CpuList, units::UnitError> {
    units::parse_cpu_list(text).map(CpuList)
}

/// Parses `64`, `4KiB` or `MIN..MAX`.
pub fn parse_size_spec(text: &str) -> Result<SizeSpec, String> {
    let one = |t: &str| -> Result<u32, String> {
        let n = units::parse_size(t).map_err(|e| e.to_string())?;
        u32::try_from(n).map_err(|_| format!("{n} is too large"))
    };
    match text.split_once("..") {
        Some((lo, hi)) => Ok(SizeSpec { min: one(lo)?, max: one(hi)? }),
        None => {
            let n = one(text)?;
            Ok(SizeSpec { min: n, max: n })
        }
    }
}

impl RunArgs {
    /// The validated plan.
    pub fn to_plan(&self) -> Result<Plan, PlanError> {
        if !self.more_targets.is_empty() {
            return Err(PlanError {
                flag: "TARGET",
                problem: format!(
                    "one target per run (also given: {}); run ringload once per target, then `ringload merge` or `compare`",
                    self.more_targets.join(", ")
                ),
            });
        }
        let allowed = ringecho::sys::allowed_cpus().unwrap_or_else(|_| vec![0]);
        let cpus = match (&self.cpus, self.threads) {
            (Some(list), _) => {
                if let Some(bad) = list.0.iter().find(|c| !allowed.contains(c)) {
                    return Err(PlanError {
                        flag: "--cpus",
                        problem: format!("CPU {bad} is not available (allowed: {allowed:?})"),
                    });
                }
                list.0.clone()
            }
            (None, Some(0)) => {
                return Err(PlanError { flag: "--threads", problem: "must be at least 1".into() });
            }
            (None, Some(n)) if n > MAX_THREADS.min(allowed.len() * 8) => {
                return Err(PlanError {
                    flag: "--threads",
                    problem: format!(
                        "at most {} (8 per usable CPU, {} CPUs)",
                        MAX_THREADS.min(allowed.len() * 8),
                        allowed.len()
                    ),
                });
            }
            (None, Some(n)) => (0..n).map(|i| allowed[i % allowed.len()]).collect(),
            (None, None) => {
                // With the built-in server, leave it the first CPU when there is more
                // than one.
                if self.target.is_none() && allowed.len() > 1 {
                    allowed[1..].to_vec()
                } else {
                    allowed.clone()
                }
            }
        };
        let cpus: Vec<usize> = cpus.into_iter().take(self.connections.max(1) as usize).collect();
        let plan = Plan {
            target: self.target.clone(),
            connections: self.connections,
            model: match self.rate {
                Some(rate) => Model::Open { rate },
                None => Model::Closed { depth: self.depth },
            },
            size: self.size,
            stop: match self.requests {
                Some(n) => Stop::Requests(n),
                None => Stop::Duration(self.duration),
            },
            warmup: self.warmup,
            verify: self.verify,
            cpus,
            udp_timeout: self.udp_timeout,
            connect_timeout: self.connect_timeout,
            drain: self.drain,
            seed: self.seed,
            churn: self.churn,
            coalesce: self.coalesce,
            gso: !self.no_gso,
            intervals: self.hdr_log.is_some(),
            throughput: self.throughput.to_plan(),
            spin: self.spin,
            server_metrics: self.server_metrics.clone(),
            max_duration: match (self.max_duration, self.requests) {
                (Some(d), _) => d,
                // A time-bound run is bounded by its own duration.
                (None, None) => self.duration.max(crate::plan::DEFAULT_MAX_DURATION),
                (None, Some(_)) => crate::plan::DEFAULT_MAX_DURATION,
            },
        };
        if let Some(r) = self.max_error_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(PlanError {
                    flag: "--max-error-rate",
                    problem: "a fraction between 0 and 1 (0% to 100%)".into(),
                });
            }
        }
        plan.validate()?;
        check_descriptors(&plan)?;
        Ok(plan)
    }

    /// The SLO of `--slo`, `--max-p99` and `--max-error-rate` together.
    pub fn slo(&self) -> crate::slo::Slo {
        self.slo
            .clone()
            .unwrap_or_default()
            .and(crate::slo::Slo::from_flags(self.max_p99, self.max_error_rate))
    }

    /// `--find-max-rate`: the plan of every step (open loop at --start-rate, each
    /// --step-duration long after a --warmup) and the search's settings.
    pub fn to_search(&self) -> Result<(Plan, crate::capacity::SearchConfig), PlanError> {
        let slo = self.slo();
        if slo.is_empty() {
            return Err(PlanError {
                flag: "--find-max-rate",
                problem: "needs an objective: --slo 'p99<1ms' (or --max-p99, --max-error-rate)".into(),
            });
        }
        if !(self.growth.is_finite() && self.growth > 1.0 && self.growth <= 100.0) {
            return Err(PlanError { flag: "--growth", problem: "a factor above 1 (at most 100)".into() });
        }
        if !(self.precision > 0.0 && self.precision <= 1.0) {
            return Err(PlanError { flag: "--precision", problem: "between 0% and 100%, above 0".into() });
        }
        // Each step is a run of --step-duration; --max-duration bounds the whole search.
        let step = RunArgs { duration: self.step_duration, max_duration: None, ..self.clone() };
        step.check_repeat()?;
        let mut plan = step.to_plan()?;
        if plan.throughput.mode != crate::throughput::Mode::Rr {
            return Err(PlanError {
                flag: "--find-max-rate",
                problem: "searches a message rate: request/response only (not with --mode send|receive|bulk)"
                    .into(),
            });
        }
        plan.model = Model::Open { rate: self.start_rate };
        let plan = crate::capacity::step_plan(plan, self.step_duration, self.warmup);
        plan.validate().map_err(|e| PlanError {
            flag: if e.flag == "--duration" { "--step-duration" } else { e.flag },
            problem: e.problem,
        })?;
        let cfg = crate::capacity::SearchConfig {
            slo,
            start_rate: self.start_rate,
            growth: self.growth,
            precision: self.precision,
            repeat: self.repeat,
            max_duration: self.max_duration.unwrap_or(Duration::from_secs(600)),
            saturate_above: self.test_saturate_above,
            server_pid: self.server_pid,
        };
        Ok((plan, cfg))
    }

    /// `--repeat` is between 1 and [`crate::repeat::MAX_REPEATS`], of request/response
    /// runs (their spread is of messages and latency).
    pub fn check_repeat(&self) -> Result<(), PlanError> {
        if self.repeat > 1 && self.to_plan()?.throughput.mode != crate::throughput::Mode::Rr {
            return Err(PlanError {
                flag: "--repeat",
                problem: "request/response runs only (not with --mode send|receive|bulk)".into(),
            });
        }
        if self.repeat == 0 || self.repeat > crate::repeat::MAX_REPEATS {
            return Err(PlanError {
                flag: "--repeat",
                problem: format!("between 1 and {}", crate::repeat::MAX_REPEATS),
            });
        }
        Ok(())
    }
}

/// Says up front when the connections cannot fit the descriptor limit (after raising the
/// soft limit to the hard one): each connection or flow is a descriptor, twice over with
/// the built-in server in the same process, plus a few for rings and files.
fn check_descriptors(plan: &Plan) -> Result<(), PlanError> {
    let limit = ringecho::sys::raise_nofile_limit().unwrap_or(u64::MAX);
    let per_conn = if plan.target.is_none() { 2 } else { 1 };
    let conns = u64::from(plan.connections) + u64::from(plan.throughput.background);
    let need = conns * per_conn + 64 + 8 * plan.cpus.len() as u64;
    if need > limit {
        return Err(PlanError {
            flag: "--connections",
            problem: format!(
                "{} connections need about {need} descriptors, but this process may open {limit} \
                 (ulimit -n; raise the hard limit, e.g. in limits.conf or systemd's LimitNOFILE)",
                plan.connections
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("ringload").chain(args.iter().copied()))
    }

    fn plan_of(args: &[&str]) -> Result<Plan, PlanError> {
        parse(args).unwrap().run.to_plan()
    }

    #[test]
    fn subcommands_and_times() {
        assert!(matches!(
            parse(&["merge", "a.json", "b.json"]).unwrap().command,
            Some(Command::Merge { .. })
        ));
        assert!(parse(&["merge"]).is_err());
        assert_eq!(parse_fraction("5%"), Ok(0.05));
        assert_eq!(parse_fraction("0.2"), Ok(0.2));
        assert!(parse_fraction("lots").is_err());
        let t = parse_start_at("1700000000").unwrap();
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 1_700_000_000);
        assert!(parse_start_at("2026-11-25T12:00:00Z").is_ok());
        assert!(parse_start_at("tomorrow").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_spec("64"), Ok(SizeSpec { min: 64, max: 64 }));
        assert_eq!(parse_size_spec("64..1KiB"), Ok(SizeSpec { min: 64, max: 1024 }));
        assert!(parse_size_spec("1..x").is_err());
    }

    #[test]
    fn plans() {
        let p = plan_of(&["tcp://127.0.0.1:1", "--rate", "1000", "-c", "4"]).unwrap();
        assert_eq!(p.model, Model::Open { rate: 1000.0 });
        let e = plan_of(&["udp://127.0.0.1:1", "--size", "8"]).unwrap_err();
        assert_eq!(e.flag, "--size");
        let e = plan_of(&["tcp://127.0.0.1:1", "--depth", "0"]).unwrap_err();
        assert_eq!(e.flag, "--depth");
        assert!(parse(&["tcp://127.0.0.1:1", "--rate", "5", "--depth", "2"]).is_err());
        assert!(parse(&["http://x"]).is_err());
        let e = plan_of(&["tcp://127.0.0.1:1", "--max-error-rate", "2"]).unwrap_err();
        assert_eq!(e.flag, "--max-error-rate");
        assert!(parse(&["tcp://127.0.0.1:1", "--max-error-rate", "5%"]).is_ok());
        assert!(parse(&["--threads", "18446744073709551615"]).unwrap().run.to_plan().is_err());
        assert!(parse(&["--label", "a\u{1b}]0;x\u{7}"]).is_err());
        assert!(parse(&["--label", &"x".repeat(70_000)]).is_err());
        let v6 = plan_of(&["udp://[::1]:9", "--size", "65527"]).unwrap();
        assert_eq!(v6.size.max, 65_527);
        assert_eq!(plan_of(&["udp://127.0.0.1:9", "--size", "65508"]).unwrap_err().flag, "--size");
        assert_eq!(plan_of(&["-d", "100d"]).unwrap_err().flag, "--duration");
    }

    #[test]
    fn rates_take_the_units_the_report_prints() {
        assert_eq!(parse_rate("50k"), Ok(50_000.0));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000.0));
        assert_eq!(parse_rate("20000"), Ok(20_000.0));
        assert_eq!(parse_rate("2e4"), Ok(20_000.0));
        for bad in ["0", "-5", "k", "lots", "inf", "NaN"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        let p = parse(&["tcp://127.0.0.1:1", "-r", "50k", "-c", "4"]).unwrap().run.to_plan().unwrap();
        assert_eq!(p.model, Model::Open { rate: 50_000.0 });
    }
}
