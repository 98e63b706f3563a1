//! `ringload ab`'s command line: the two server commands, how often and where to run
//! them, and every option of a normal run for the load (the same [`RunArgs`], turned
//! into the same plan by `crate::options`).

use super::{CpuList, RunArgs, parse_cpus};
use crate::units::{self, parse_fraction};
use std::time::Duration;

/// Compare two servers: the same load against each, a fresh server per run, A and B
/// interleaved --runs times; medians, spreads (min–max), B/A ratios and whether they are
/// beyond the spread of the runs, server CPU per message, client saturation.
///
/// Each server command is run by `sh -c` (so quoting, `VAR=value` and pipes work as in a
/// shell: the command is yours, and runs with your rights), in a process group of its
/// own, stdin from /dev/null; it is stopped with SIGTERM to the whole group and to every
/// process that left it (ringload is their sub-reaper), then SIGKILL after
/// --stop-timeout, and reaped before the next run. The target is TARGET when given
/// (a stream target is probed until it accepts), else the first line
/// `listening TRANSPORT ADDRESS` the server prints on stdout (ringecho prints one per listener).
#[derive(Debug, clap::Args)]
#[command(after_help = "How it runs:\n  \
    Each server command is run by `sh -c` (quoting, VAR=value and exec work as in a shell;\n  \
    the command is yours and runs with your rights), stdin from /dev/null, in a process\n  \
    group of its own, pinned to --server-cpus; it is stopped with SIGTERM to the whole\n  \
    group and to every process of its tree that left the group (setsid, a daemon's\n  \
    double fork: ringload is their sub-reaper, so they stay its descendants), then\n  \
    SIGKILL after --stop-timeout, and reaped before the next run starts; each process\n  \
    that left the group or needed SIGKILL is named in a warning.\n  \
    TARGET, when given, is where the load goes (a stream target is probed until it\n  \
    accepts); without it, the first `listening <transport> <address>` line the server\n  \
    prints on stdout (ringecho prints one per listener). No built-in server is used.\n\n\
    Examples:\n  \
    ringload ab --server-a 'ringecho --backend uring --tcp 127.0.0.1:0' \\\n      \
      --server-b 'ringecho --backend epoll --tcp 127.0.0.1:0' \\\n      \
      --server-cpus 0 --cpus 1 -c 50 -s 64 --runs 5\n  \
    ringload ab --server-a './old 7100' --server-b './new 7100' tcp://127.0.0.1:7100 --json ab.json\n\n\
    Exit codes: 0 ok; 1 a threshold failed (--max-p99 or --max-error-rate in any run,\n\
    --max-slowdown); 2 a server did not start, never listened, died during a run, or a\n\
    run's figures cannot be trusted; 130 interrupted (the servers are stopped first).")]
pub struct AbArgs {
    /// Server A's command (the baseline of the ratios), run by `sh -c`.
    #[arg(long, value_name = "COMMAND")]
    pub server_a: String,

    /// Server B's command, run by `sh -c`.
    #[arg(long, value_name = "COMMAND")]
    pub server_b: String,

    /// Runs per side, interleaved: A B, B A, A B, …
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub runs: u32,

    /// Pin each server (its whole process tree) to these CPUs, e.g. `0`; the load's
    /// --cpus default to the other allowed CPUs.
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub server_cpus: Option<CpuList>,

    /// How long a server may take to listen.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = units::parse_duration)]
    pub start_timeout: Duration,

    /// How long a server may take to exit after SIGTERM before it gets SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = units::parse_duration)]
    pub stop_timeout: Duration,

    /// Exit 1 if B's median msg/s is more than this below A's, or its median p99 more
    /// than this above: `5%` or `0.05`.
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    pub max_slowdown: Option<f64>,

    /// The load, as for a normal run. TARGET is optional here (see above); --json writes
    /// the `ab` document (every run's result document and the summary).
    #[command(flatten)]
    pub load: RunArgs,
}
