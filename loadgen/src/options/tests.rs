//! The flags as parsed into plans: what each builds, and what each refuses.

use super::*;
use crate::cli::{Args, Command};
use crate::plan::SizeSpec;
use clap::Parser;

fn parse(args: &[&str]) -> Result<Args, clap::Error> {
    Args::try_parse_from(std::iter::once("ringload").chain(args.iter().copied()))
}

fn plan_of(args: &[&str]) -> Result<Plan, PlanError> {
    parse(args).unwrap().run.to_plan()
}

#[test]
fn subcommands_and_times() {
    assert!(matches!(parse(&["merge", "a.json", "b.json"]).unwrap().command, Some(Command::Merge { .. })));
    assert!(parse(&["merge"]).is_err());
    let start = parse(&["--start-at", "1700000000"]).unwrap().run.start_at.unwrap();
    assert_eq!(start.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 1_700_000_000);
    assert!(parse(&["--start-at", "tomorrow"]).is_err());
}

#[test]
fn sizes() {
    assert_eq!(SizeSpec::parse("64"), Ok(SizeSpec { min: 64, max: 64 }));
    assert_eq!(SizeSpec::parse("64..1KiB"), Ok(SizeSpec { min: 64, max: 1024 }));
    assert!(SizeSpec::parse("1..x").is_err());
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

/// The default --max-duration has room for the whole run; a given one that has not
/// is refused, naming it.
#[test]
fn max_duration_leaves_room_for_the_run() {
    let minutes = |m: u64| Duration::from_secs(60 * m);
    assert_eq!(plan_of(&["-d", "1s"]).unwrap().max_duration, DEFAULT_MAX_DURATION);
    assert_eq!(plan_of(&["-n", "5"]).unwrap().max_duration, DEFAULT_MAX_DURATION);
    let long = plan_of(&["-d", "10m"]).unwrap();
    assert_eq!(long.max_duration, minutes(11) + Duration::from_secs(4), "connect, warm-up, drain, a minute");
    let e = plan_of(&["-d", "3s", "--max-duration", "3s"]).unwrap_err();
    assert_eq!(e.flag, "--max-duration");
    assert!(e.problem.contains("--warmup 1.00s + --duration 3.00s + --drain 1.00s"), "{}", e.problem);
    assert!(plan_of(&["-d", "1s", "-w", "0s", "--max-duration", "2s"]).is_ok());
}

/// A search's refusals name the flags it was given (its steps' plans know --duration
/// and --rate); one step must fit in --max-duration.
#[test]
fn a_search_names_its_own_flags() {
    let search = |extra: &[&str]| {
        let base = ["tcp://127.0.0.1:1", "--find-max-rate", "--slo", "p99<1ms"];
        parse(&[&base[..], extra].concat()).unwrap().run.to_search()
    };
    assert_eq!(search(&["--step-duration", "0s"]).unwrap_err().flag, "--step-duration");
    assert_eq!(search(&["--start-rate", "1e12"]).unwrap_err().flag, "--start-rate");
    let e = search(&["--step-duration", "20s", "--max-duration", "3s"]).unwrap_err();
    assert_eq!(e.flag, "--max-duration");
    assert!(e.problem.contains("no room") && e.problem.contains("--step-duration 20.00s"), "{}", e.problem);
    let (plan, cfg) =
        search(&["--step-duration", "2s", "--repeat", "2", "-w", "500ms", "--drain", "500ms"]).unwrap();
    assert_eq!(cfg.step_length, Duration::from_secs(6), "2 × (500 ms + 2 s + 500 ms)");
    assert_eq!((plan.max_duration, cfg.max_duration), (DEFAULT_SEARCH_DURATION, DEFAULT_SEARCH_DURATION));
}

#[test]
fn rates_take_the_units_the_report_prints() {
    let p = parse(&["tcp://127.0.0.1:1", "-r", "50k", "-c", "4"]).unwrap().run.to_plan().unwrap();
    assert_eq!(p.model, Model::Open { rate: 50_000.0 });
}

fn ab(args: &[&str]) -> Result<AbPlan, PlanError> {
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
    assert_eq!((p.runs, p.load.connections, p.warmup_runs), (3, 4, 1), "one warm-up run by default");
    assert_eq!(ab(&["--warmup-runs", "0"]).unwrap().warmup_runs, 0);
    assert!(matches!(p.address, Address::Printed));
    assert!(p.load.target.is_none(), "set per run, from the server");
    let given = ab(&["tcp://127.0.0.1:7100"]).unwrap();
    assert!(matches!(given.address, Address::Given(_)));
    for (args, flag) in [
        (&["--runs", "0"][..], "--runs"),
        (&["--warmup-runs", "101"][..], "--warmup-runs"),
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
        assert!(!p.load.cpus.contains(&cpus[0]), "the load keeps off the servers' CPUs: {:?}", p.load.cpus);
    }
}

fn flag_refused(args: &[&str]) -> &'static str {
    let args = Args::try_parse_from(std::iter::once("ringload").chain(args.iter().copied())).unwrap();
    args.run.to_plan().expect_err("refused").flag
}

#[test]
fn what_the_bulk_modes_cannot_do_is_refused() {
    assert_eq!(flag_refused(&["tcp://127.0.0.1:9", "--mode", "send", "-n", "10"]), "--requests");
    assert_eq!(flag_refused(&["tcp://127.0.0.1:9", "--mode", "bulk", "--rate", "10"]), "--rate/--depth");
    assert_eq!(flag_refused(&["udp://127.0.0.1:9", "--mode", "receive"]), "--mode");
    assert_eq!(flag_refused(&["tcp://127.0.0.1:9", "--zerocopy"]), "--zerocopy");
    assert_eq!(flag_refused(&["tcp://127.0.0.1:9", "--mode", "receive", "--zerocopy"]), "--zerocopy");
    assert_eq!(
        flag_refused(&["tcp://127.0.0.1:9", "--mode", "send", "--write-size", "2MiB"]),
        "--write-size"
    );
    assert_eq!(flag_refused(&["tcp://127.0.0.1:9", "--mode", "send", "--background", "2"]), "--background");
    assert_eq!(
        flag_refused(&["tcp://127.0.0.1:9", "--background", "1", "--background-mode", "rr"]),
        "--background-mode"
    );
    let ok = Args::try_parse_from(["ringload", "tcp://127.0.0.1:9", "--mode", "send", "--sndbuf", "1MiB"])
        .unwrap();
    let plan = ok.run.to_plan().unwrap();
    assert_eq!(plan.throughput.sndbuf, Some(1 << 20));
    assert_eq!(plan.throughput.write_size, 64 * 1024);
}
