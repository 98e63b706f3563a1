//! The command line's types: clap derive, human units, examples in `--help`. What the
//! arguments become (a validated plan, a search, an `ab` comparison) is
//! `crate::options`'s; what runs is `main`'s.

mod ab;
mod run;
mod throughput;

pub use ab::AbArgs;
pub use run::{CpuList, RunArgs};
pub use throughput::ThroughputArgs;

use crate::text::table::Format;
use crate::units::parse_fraction;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
        never made), or a --repeat or --find-max-rate that --max-duration stopped short;\n\
        130 interrupted (the partial report is printed).",
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
    Ab(Box<AbArgs>),
}

/// The command line, with the help texts that state rules written from the constants
/// the code judges by (so they cannot drift from it).
pub fn command() -> clap::Command {
    use crate::capacity::MIN_ACHIEVED;
    use crate::plan::DEFAULT_SEARCH_DURATION;
    use crate::slo::{LAG_LIMIT, MIN_LAG_LIMIT};
    use crate::units::{ns, share};
    let find_max_rate = format!(
        "Find the highest open-loop rate that meets --slo: steps grow ×--growth from --start-rate until one \
         fails, then bisect to --precision. A step passes when it achieves ≥ {} of its offered rate, the \
         client keeps to its schedule (send lag p99 within a tenth of the SLO's tightest latency bound, at \
         least {}; {} when no clause bounds latency), and the SLO holds (at the median of --repeat runs). A \
         failing step is blamed on the first that applies: the target (it failed: the search stops, exit \
         2), the client (the answer is then a lower bound), the SLO. Bounded by --max-duration (default \
         {}). Exit 0 with an answer, 1 when no rate met the SLO, 2 when the target failed, the client \
         could not keep its schedule even at the lowest rate, or the search stopped at --max-duration \
         before it converged.",
        share(MIN_ACHIEVED),
        ns(MIN_LAG_LIMIT.as_nanos() as f64),
        ns(LAG_LIMIT.as_nanos() as f64),
        humantime::format_duration(DEFAULT_SEARCH_DURATION),
    );
    <Args as clap::CommandFactory>::command().mut_arg("find_max_rate", |a| a.long_help(find_max_rate))
}
