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
        ringload tcp://127.0.0.1:7007 -c 20 --churn 10         # connects/s and connect latency\n\n\
        Exit codes: 0 ok; 1 a check failed (--max-p99, --max-error-rate, --verify; compare: a\n\
        regression); 2 usage or runtime error, or nothing answered; 130 interrupted (the partial\n\
        report is printed).",
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
    /// Compare NEW against BASE: throughput and percentiles with ratios; exit 1 if any
    /// is worse than --tolerance.
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
    /// p99 over time from an interval log (.hlog), as SVG.
    Plot {
        /// Result files (.json), or one interval log (.hlog).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The SVG file to write.
        #[arg(short, long)]
        output: PathBuf,
    },
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
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// tcp://HOST:PORT, udp://HOST:PORT, unix:///PATH or unixgram:///PATH. None: a built-in
    /// ringecho server on a loopback port, on its own CPU.
    pub target: Option<Target>,

    /// Connections (flows, for datagrams), all workers together.
    #[arg(short, long, default_value_t = 50)]
    pub connections: u32,

    /// Messages in flight per connection (closed loop).
    #[arg(long, default_value_t = 1, conflicts_with = "rate")]
    pub depth: u32,

    /// Open loop: messages per second in all; latency counts from when each was due.
    #[arg(short, long, value_name = "MSG/S")]
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

    /// Write the result as JSON to FILE (`-` for stdout, replacing the text report).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write an HdrHistogram interval log (one histogram per second, values in ns).
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,

    /// Exit 1 if the p99 latency exceeds this.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub max_p99: Option<Duration>,

    /// Exit 1 if more than this fraction of messages failed (0.01 = 1%).
    #[arg(long, value_name = "FRACTION")]
    pub max_error_rate: Option<f64>,

    /// No progress line, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,

    /// Wait until this moment to start (Unix seconds or RFC 3339), so that several load
    /// machines begin together.
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<std::time::SystemTime>,

    /// A name for this run, carried in the JSON result (and used by merge and plot).
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
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
        };
        if let Some(r) = self.max_error_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(PlanError {
                    flag: "--max-error-rate",
                    problem: "a fraction between 0 and 1".into(),
                });
            }
        }
        plan.validate()?;
        Ok(plan)
    }
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
    }
}
