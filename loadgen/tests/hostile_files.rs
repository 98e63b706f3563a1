//! Result files crafted to cost memory (issue 23): every field within its own bound, the
//! whole made of thousands of runs with empty histograms (an hdrhistogram of ringload's
//! range holds 270 KB of counts even when empty), or of steps past the search's bound.
//! Each goes through the real binary's `report`, `compare`, `merge` and `plot`; the
//! child's peak resident memory (`wait4`'s `ru_maxrss`) must stay under 64 MB and its exit
//! must be the one expected: 0, or 2 with one sentence naming the rule. Before, the
//! 8 MB file took `report` past 2 GB.

mod util;

use serde_json::{Value, json};
use std::io::{BufWriter, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// The most a command may hold in memory on any of these files.
const MAX_RSS_BYTES: u64 = 64 << 20;

/// The largest result document read (`ringload::input::MAX_DOCUMENT_BYTES`).
const MAX_FILE_BYTES: u64 = 8 << 20;

/// What a command did: its exit status, its stderr, and its peak resident memory.
struct Outcome {
    status: ExitStatus,
    stderr: String,
    max_rss_bytes: u64,
}

/// Runs `ringload args…` and reaps it with `wait4`, which reports the child's peak RSS.
fn measured(args: &[&str], dir: &Path) -> Outcome {
    let err_path = dir.join("stderr.txt");
    let child = Command::new(env!("CARGO_BIN_EXE_ringload"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run ringload");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain old data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4(2) on our own child, with pointers to locals that outlive the call.
    // `child` is never waited for by std afterwards (dropping a Child does not wait).
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    Outcome {
        status: ExitStatus::from_raw(status),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
        // Linux counts ru_maxrss in KiB.
        max_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap() * 1024,
    }
}

/// An empty histogram of ringload's range, as ringload encodes it (base64 of V2 +
/// DEFLATE: header only).
fn empty_histogram() -> String {
    util::crafted_histogram(0, &[])
}

/// A run that answered nothing, its three histograms empty, padded with a label (at most
/// 256 characters) and a target to about `bytes` bytes of JSON.
fn run(bytes: usize) -> Value {
    let e = empty_histogram();
    let mut r = json!({
        "schema_version": 1, "tool": "ringload", "transport": "tcp", "elapsed_s": 0, "counters": {},
        "latency": {"corrected": {"histogram": e}, "service": {"histogram": e}, "connect": {"histogram": e}},
    });
    let pad = bytes.saturating_sub(serde_json::to_vec(&r).unwrap().len());
    if pad > 12 {
        let label = (pad - 11).min(256);
        r["label"] = "x".repeat(label).into();
        if pad > label + 11 + 17 {
            r["target"] = format!("tcp://{}", "y".repeat(pad - label - 11 - 17 - 6)).into();
        }
    }
    r
}

/// Writes a search whose steps (offered 1000, 1001, … msg/s) each failed with
/// `repeats[i]` repeats of `run`: every rule of a search kept, nothing answered. The
/// text is written a run at a time, so this process stays small: a child's `ru_maxrss`
/// starts from its parent's peak (posix_spawn's child shares the parent's memory until
/// it runs `exec`).
fn write_search(dir: &Path, name: &str, run: &Value, repeats: &[usize]) -> PathBuf {
    let run = serde_json::to_string(run).unwrap();
    // The run's fields, to which a step's run adds its repeats and the document its search.
    let open = &run[..run.len() - 1];
    let path = dir.join(name);
    let mut w = BufWriter::new(std::fs::File::create(&path).unwrap());
    let most = repeats.iter().copied().max().unwrap_or(0).max(1);
    write!(
        w,
        r#"{open},"search":{{"slo":{{"clauses":[]}},"slo_text":"","precision":0.05,"min_achieved":0.97,"repeat":{most},"answer":null,"lower_bound":false,"steps":["#
    )
    .unwrap();
    for (i, &n) in repeats.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        write!(
            w,
            r#"{comma}{{"offered":{},"achieved":0.0,"passed":false,"client_busy":0.0,"client_saturated":false,"reasons":["nothing answered"],"point":{{"p50":0.0,"p90":0.0,"p99":0.0,"p999":0.0,"max":0.0,"errors":0.0,"loss":0.0}},"run":{open}"#,
            1000 + i
        )
        .unwrap();
        if n > 0 {
            write!(w, r#","repeats":[{run}"#).unwrap();
            for _ in 1..n {
                write!(w, ",{run}").unwrap();
            }
            write!(w, "]").unwrap();
        }
        write!(w, "}}}}").unwrap();
    }
    write!(w, "]}}}}").unwrap();
    w.flush().unwrap();
    drop(w);
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len <= MAX_FILE_BYTES, "{name}: {len} bytes, past the 8 MiB every file is held to");
    path
}

/// What a command must end in: 0, or 2 with a sentence that names the file and says
/// this.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Ok,
    Refused(&'static str),
}

#[test]
fn crafted_files_cost_little_memory_and_end_as_expected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The issue's 7.8 MB file: 110 capacity steps × 100 repeats of a 700-byte run
    // (11,111 runs): refused at the 4,097th run.
    let steps_110x100 = write_search(d, "steps-110x100.json", &run(700), &[100; 110]);
    // The issue's 714 KB file: 9 steps × 100 repeats of a 790-byte run (910 runs, 2,730
    // empty histograms): read.
    let runs_910 = write_search(d, "runs-910.json", &run(790), &[100; 9]);
    // 1,000 steps (874 KB in the issue): refused at the 201st.
    let steps_1000 = write_search(d, "steps-1000.json", &run(790), &[0; 1000]);
    // The most runs a document may hold (4,096), each padded so the file is near 8 MiB.
    let mut most = vec![100; 40];
    most.push(54);
    let runs_4096 = write_search(d, "runs-4096.json", &run(1860), &most);
    let too_many_runs = "more than 4096 runs in one document";
    let files = [
        (&steps_110x100, Expect::Refused(too_many_runs), Expect::Refused(too_many_runs)),
        (&runs_910, Expect::Ok, Expect::Refused("no result has latency samples")),
        (
            &steps_1000,
            Expect::Refused("search.steps: more than 200 search steps"),
            Expect::Refused("search.steps"),
        ),
        (&runs_4096, Expect::Ok, Expect::Refused("no result has latency samples")),
    ];
    let svg = d.join("plot.svg");
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (file, expect, plot_expect) in files {
        let f = file.to_str().unwrap();
        for (args, expect) in [
            (vec!["report", f], expect),
            (vec!["compare", f, f], expect),
            (vec!["merge", f, f], expect),
            (vec!["plot", f, "-o", svg.to_str().unwrap()], plot_expect),
        ] {
            let out = measured(&args, d);
            let name = file.file_name().unwrap().to_string_lossy();
            table.push(format!(
                "{name:<20} {:<8} {:>6.1} MB  exit {:?}",
                args[0],
                out.max_rss_bytes as f64 / 1e6,
                out.status.code()
            ));
            if out.max_rss_bytes > MAX_RSS_BYTES {
                failures.push(format!("{args:?}: peak RSS {} bytes", out.max_rss_bytes));
            }
            match expect {
                Expect::Ok if out.status.code() != Some(0) => {
                    failures.push(format!("{args:?}: {:?}, expected exit 0: {}", out.status, out.stderr))
                }
                Expect::Refused(needle) => {
                    let prefix =
                        if args[0] == "plot" { "error: ".to_owned() } else { format!("error: {f}: ") };
                    if out.status.code() != Some(2)
                        || !out.stderr.starts_with(&prefix)
                        || !out.stderr.contains(needle)
                        || out.stderr.lines().count() != 1
                    {
                        failures.push(format!(
                            "{args:?}: {:?}, expected exit 2 naming {needle:?}: {}",
                            out.status, out.stderr
                        ));
                    }
                }
                Expect::Ok => {}
            }
        }
    }
    // A child starts as a copy of this process, and its ru_maxrss counts that copy's
    // resident memory too: this process's peak is what a figure above may owe to it.
    let own_kib: u64 = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    table.push(format!(
        "(this test's own peak, which a figure above may include: {:.1} MB)",
        own_kib as f64 / 1e3
    ));
    assert!(own_kib < 16 << 10, "this test holds {own_kib} KiB: the children's figures would be its own");
    println!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}\n\n{}", failures.join("\n"), table.join("\n"));
}
