//! The `ringload` binary: exit codes, the JSON document against its schema, the
//! HdrHistogram interval log, a target that is down.

mod util;

use std::process::Command;
use std::time::{Duration, Instant};
use util::uring_available;

fn ringload(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringload")).args(args).output().expect("run ringload");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A target that is down: exit 2 at once, naming the address; never a hang.
#[test]
fn target_down_exits_2_naming_the_address() {
    if !uring_available() {
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let target = format!("tcp://127.0.0.1:{port}");
    let t0 = Instant::now();
    let (code, _, err) = ringload(&[&target, "-d", "5s", "--no-progress"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.to_lowercase().contains("refused"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3), "took {:?}", t0.elapsed());
}

/// The JSON result validates against the schema in the repository, and its embedded
/// histogram decodes to the p99 it reports.
#[test]
fn json_matches_schema_and_histogram_reproduces_p99() {
    if !uring_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("r.json");
    let log_path = dir.path().join("r.hlog");
    let (code, out, err) = ringload(&[
        "-c",
        "4",
        "-d",
        "2s",
        "-w",
        "200ms",
        "--no-progress",
        "--verify",
        "--json",
        json_path.to_str().unwrap(),
        "--hdr-log",
        log_path.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("throughput") && out.contains("p99.99"), "{out}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../schema/result.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(&doc).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let corrected = &doc["latency"]["corrected"];
    let h = ringload::hist::decode(corrected["histogram"].as_str().unwrap()).unwrap();
    assert_eq!(h.len(), corrected["count"].as_u64().unwrap());
    assert_eq!(h.value_at_quantile(0.99), corrected["p99"].as_u64().unwrap());
    assert_eq!(h.len(), doc["counters"]["completed"].as_u64().unwrap());

    // The interval log: one histogram per second, together holding every sample.
    let log = std::fs::read(&log_path).unwrap();
    let mut total = 0;
    let mut intervals = 0;
    for entry in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&log) {
        if let Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(i)) = entry {
            let h = ringload::hist::decode(i.encoded_histogram()).unwrap();
            total += h.len();
            intervals += 1;
        }
    }
    assert!((2..=3).contains(&intervals), "{intervals} intervals");
    assert_eq!(total, h.len());
}

/// Thresholds: a p99 limit nobody can meet exits 1 and says why.
#[test]
fn failed_threshold_exits_1() {
    if !uring_available() {
        return;
    }
    let (code, out, _) =
        ringload(&["-c", "2", "-d", "300ms", "-w", "0s", "--no-progress", "--max-p99", "1ns"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED: p99"), "{out}");
}

/// Usage errors exit 2 and name the flag; a bad output path fails before any load.
#[test]
fn usage_errors_exit_2() {
    for (args, needle) in [
        (&["--size", "0"][..], "--size"),
        (&["udp://127.0.0.1:9", "--size", "8"][..], "--size"),
        (&["ftp://x:1"][..], "ftp://x:1"),
        (&["--rate=-5"][..], "--rate"),
        (&["--rate", "0"][..], "--rate"),
        (&["--json", "/nonexistent/dir/r.json"][..], "--json"),
    ] {
        let t0 = Instant::now();
        let (code, _, err) = ringload(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{args:?} ran load first");
    }
}

/// Ctrl-C prints the partial report and exits 130.
#[test]
fn sigint_prints_partial_report_and_exits_130() {
    if !uring_available() {
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_ringload"))
        .args(["-c", "2", "-d", "60s", "-w", "0s", "--no-progress"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The handler is installed before any thread starts: wait for the load workers.
    // (by name: other threads, such as the window sampler, start before them)
    let workers_started = || {
        std::fs::read_dir(format!("/proc/{}/task", child.id())).into_iter().flatten().flatten().any(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == "ringload-0")
        })
    };
    let t0 = Instant::now();
    while !workers_started() {
        assert!(t0.elapsed() < Duration::from_secs(10), "ringload never started its workers");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let t1 = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t1.elapsed() < Duration::from_secs(5), "slow to stop");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("throughput") && stdout.contains("interrupted"), "{stdout}");
}
