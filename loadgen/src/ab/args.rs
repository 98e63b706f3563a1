//! `ringload ab`'s command line: the two server commands, how often and where to run
//! them, and every option of a normal run for the load (the same [`RunArgs`], turned
//! into the same [`Plan`](crate::Plan)).

use super::{AbPlan, Address};
use crate::cli::{CpuList, RunArgs, parse_fraction};
use crate::plan::PlanError;
use ringecho::units;
use std::time::Duration;

/// Compare two servers: the same load against each, a fresh server per run, A and B
/// interleaved --runs times; medians, spreads (min–max), B/A ratios and whether they are
/// beyond the spread of the runs, server CPU per message, client saturation.
///
/// Each server command is run by `sh -c` (so quoting, `VAR=value` and pipes work as in a
/// shell: the command is yours, and runs with your rights), in a process group of its
/// own, stdin from /dev/null; it is stopped with SIGTERM to the whole group, then SIGKILL
/// after --stop-timeout, and reaped before the next run. The target is TARGET when given
/// (a stream target is probed until it accepts), else the first line
/// `listening TRANSPORT ADDRESS` the server prints on stdout (ringecho prints one per listener).
#[derive(Debug, clap::Args)]
#[command(after_help = "How it runs:\n  \
    Each server command is run by `sh -c` (quoting, VAR=value and exec work as in a shell;\n  \
    the command is yours and runs with your rights), stdin from /dev/null, in a process\n  \
    group of its own, pinned to --server-cpus; it is stopped with SIGTERM to the whole\n  \
    group, then SIGKILL after --stop-timeout, and reaped before the next run starts.\n  \
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
    #[arg(long, value_name = "LIST", value_parser = parse_server_cpus)]
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

fn parse_server_cpus(text: &str) -> Result<CpuList, units::UnitError> {
    units::parse_cpu_list(text).map(CpuList)
}

fn refuse(flag: &'static str, problem: &str) -> PlanError {
    PlanError { flag, problem: problem.into() }
}

impl AbArgs {
    /// The validated comparison.
    pub fn to_plan(&self) -> Result<AbPlan, PlanError> {
        let l = &self.load;
        if l.hdr_log.is_some() {
            return Err(refuse("--hdr-log", "not with ab (each run's histograms are in --json)"));
        }
        if l.start_at.is_some() {
            return Err(refuse("--start-at", "not with ab (a run starts when its server listens)"));
        }
        if l.label.is_some() {
            return Err(refuse("--label", "not with ab (runs are labelled `A run 1`, `B run 1`, …)"));
        }
        if l.find_max_rate {
            return Err(refuse("--find-max-rate", "not with ab (run the search against each server)"));
        }
        if l.repeat != 1 {
            return Err(refuse("--repeat", "not with ab (--runs repeats each side, interleaved)"));
        }
        if l.slo.is_some() {
            return Err(refuse("--slo", "not with ab (use --max-p99, --max-error-rate, --max-slowdown)"));
        }
        if self.runs == 0 || self.runs > 1000 {
            return Err(refuse("--runs", "between 1 and 1000"));
        }
        for (flag, cmd) in [("--server-a", &self.server_a), ("--server-b", &self.server_b)] {
            if cmd.trim().is_empty() {
                return Err(refuse(flag, "an empty command"));
            }
        }
        let allowed = ringecho::sys::allowed_cpus().unwrap_or_else(|_| vec![0]);
        if let Some(cpus) = &self.server_cpus {
            if let Some(bad) = cpus.0.iter().find(|c| !allowed.contains(c)) {
                return Err(refuse(
                    "--server-cpus",
                    &format!("CPU {bad} is not available (allowed: {allowed:?})"),
                ));
            }
        }
        let mut load = l.to_plan()?;
        if l.cpus.is_none() && l.threads.is_none() {
            // The client on the CPUs the servers do not have, when there are any; else on
            // the CPUs a run with the built-in server would use.
            if let Some(server) = &self.server_cpus {
                let rest: Vec<usize> = allowed.iter().copied().filter(|c| !server.0.contains(c)).collect();
                if !rest.is_empty() {
                    load.cpus = rest.into_iter().take(load.connections.max(1) as usize).collect();
                }
            }
        }
        Ok(AbPlan {
            servers: [self.server_a.clone(), self.server_b.clone()],
            server_cpus: self.server_cpus.as_ref().map(|c| c.0.clone()),
            address: match &l.target {
                Some(t) => Address::Given(t.clone()),
                None => Address::Printed,
            },
            load,
            runs: self.runs,
            start_timeout: self.start_timeout,
            stop_timeout: self.stop_timeout,
            max_p99: l.max_p99,
            max_error_rate: l.max_error_rate,
            max_slowdown: self.max_slowdown,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Args, Command};
    use clap::Parser;

    fn ab(args: &[&str]) -> Result<super::AbPlan, crate::plan::PlanError> {
        let all =
            ["ringload", "ab", "--server-a", "a", "--server-b", "b"].into_iter().chain(args.iter().copied());
        match Args::try_parse_from(all).unwrap().command {
            Some(Command::Ab(a)) => a.to_plan(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plans_and_refusals() {
        let p = ab(&["-c", "4", "--runs", "3"]).unwrap();
        assert_eq!((p.runs, p.load.connections), (3, 4));
        assert!(matches!(p.address, super::Address::Printed));
        assert!(p.load.target.is_none(), "set per run, from the server");
        let given = ab(&["tcp://127.0.0.1:7100"]).unwrap();
        assert!(matches!(given.address, super::Address::Given(_)));
        for (args, flag) in [
            (&["--runs", "0"][..], "--runs"),
            (&["--hdr-log", "x.hlog"][..], "--hdr-log"),
            (&["--label", "x"][..], "--label"),
            (&["--find-max-rate"][..], "--find-max-rate"),
            (&["--repeat", "3"][..], "--repeat"),
            (&["--slo", "p99<1ms"][..], "--slo"),
            (&["--server-cpus", "1000"][..], "--server-cpus"),
        ] {
            assert_eq!(ab(args).unwrap_err().flag, flag, "{args:?}");
        }
        let cpus = ringecho::sys::allowed_cpus().unwrap();
        if cpus.len() >= 2 {
            let p = ab(&["--server-cpus", &cpus[0].to_string()]).unwrap();
            assert!(
                !p.load.cpus.contains(&cpus[0]),
                "the load keeps off the servers' CPUs: {:?}",
                p.load.cpus
            );
        }
    }
}
