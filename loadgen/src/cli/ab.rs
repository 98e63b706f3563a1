//! `ringload ab`'s command line: the two server commands, how often and where to run
//! them, and every option of a normal run for the load (the same [`RunArgs`], turned
//! into the same plan by `crate::options`).

use super::run::{CpuList, RunArgs, parse_cpus};
use crate::units::{self, parse_fraction};
use std::time::Duration;

/// TARGET's help in `ab`: no built-in server, ever.
const TARGET_HELP: &str = "Where the load goes: tcp://HOST:PORT or unix:///PATH (probed until it accepts), udp://HOST:PORT or unixgram:///PATH. None: the first `listening <transport> <address>` line each server prints on stdout (no built-in server is used)";

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
// The load's arguments are a normal run's; where their help speaks of the built-in
// server, which ab never starts, ab's help says what ab does instead.
#[command(
    mut_arg("target", |a| a.help(TARGET_HELP)),
    // mut_arg moves an argument to the end: the positionals again in their order.
    mut_arg("more_targets", |a| a),
    // Refused with ab (`AbArgs::to_plan` says why): not offered in its help.
    mut_arg("hdr_log", |a| a.hide(true)),
    mut_arg("start_at", |a| a.hide(true)),
    mut_arg("label", |a| a.hide(true)),
    mut_arg("slo", |a| a.hide(true)),
    mut_arg("repeat", |a| a.hide(true)),
    mut_arg("find_max_rate", |a| a.hide(true)),
    mut_arg("precision", |a| a.hide(true)),
    mut_arg("step_duration", |a| a.hide(true)),
    mut_arg("start_rate", |a| a.hide(true)),
    mut_arg("growth", |a| a.hide(true)),
    mut_arg("threads", |a| a.help("Load workers (one per CPU, pinned). Default: the allowed CPUs --server-cpus leaves free (at most one per connection), else every allowed CPU")),
    mut_arg("max_duration", |a| a.help("The longest each run lasts, connecting, warm-up, measuring and drain together (it bounds every run, not the whole comparison). Default: 5m, or the run's whole length and a minute if longer")),
    mut_arg("mode", |a| a.help("What the connections do: `rr` request/response (latency); `send` write only, against a discard server; `receive` read only, against a source server; `bulk` write and read at once, against an echo. The bulk modes report bytes per second (MB/s, Gbit/s) per second and in all, and load CPU per byte; both server commands must serve the matching kind")),
)]
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

    /// Unmeasured runs against each fresh server before its measured run (hyperfine's
    /// --warmup): a server slow on its first run (a JIT, cold caches) is measured warm.
    /// Their msg/s is in --json, not in the figures; 0 measures the first run.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub warmup_runs: u32,

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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `ab --help` does not promise the built-in server a normal run starts (it did:
    /// "None: a built-in ringecho server"); a normal run's help still does.
    #[test]
    fn ab_help_says_what_ab_does_without_a_target() {
        // Lines are wrapped to the terminal: compare words.
        let words = |help: clap::builder::StyledStr| {
            help.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
        };
        let mut cmd = crate::cli::Args::command();
        let run_help = words(cmd.render_long_help());
        assert!(run_help.contains("None: a built-in ringecho server"), "{run_help}");
        let ab = cmd.find_subcommand_mut("ab").expect("the ab subcommand");
        let help = words(ab.render_long_help());
        assert!(
            help.contains("None: the first `listening <transport> <address>` line each server prints"),
            "{help}"
        );
        for promise in [
            "None: a built-in",
            "less the built-in",
            "Without a target the built-in",
            "--label <",
            "--repeat <",
        ] {
            assert!(!help.contains(promise), "{promise:?} in:\n{help}");
        }
    }
}
