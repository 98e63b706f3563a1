//! Several load machines, simulated on one: two ringload processes with the same
//! --start-at against one ringecho; their results merge exactly; plots are drawn.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use util::uring_available;

fn ringload() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringload"))
}

#[test]
fn two_processes_same_start_merge_exactly_and_plot() {
    if !uring_available() {
        return;
    }
    // The server: ringecho's binary lives in the workspace target directory.
    let ringecho = std::path::Path::new(env!("CARGO_BIN_EXE_ringload")).with_file_name("ringecho");
    if !ringecho.exists() {
        // Built by `cargo test --workspace`; a lone `cargo test -p ringload` may lack it.
        testkit::unavailable(
            "the ringecho binary",
            &format!("{} not built (cargo test --workspace)", ringecho.display()),
        );
        return;
    }
    let mut server = Command::new(&ringecho)
        .args(["--tcp", "127.0.0.1:0", "--stats-format", "json", "--workers", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line.split_whitespace().nth(2).unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_millis(1500);
    let start_at = format!("{:.3}", start.as_secs_f64());
    let runs: Vec<_> = ["a", "b"]
        .iter()
        .map(|label| {
            let json = dir.path().join(format!("{label}.json"));
            let child = ringload()
                .args([&format!("tcp://{addr}"), "-c", "4", "-d", "1s", "-w", "0s", "--no-progress"])
                .args(["--start-at", &start_at, "--label", label, "--json", json.to_str().unwrap()])
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            (child, json)
        })
        .collect();
    let mut docs = Vec::new();
    for (mut child, json) in runs {
        assert!(child.wait().unwrap().success());
        docs.push((
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(&json).unwrap()).unwrap(),
            json,
        ));
    }
    // Both began together (within 50 ms), at the time asked.
    let (s0, s1) = (docs[0].0["started_unix"].as_f64().unwrap(), docs[1].0["started_unix"].as_f64().unwrap());
    assert!((s0 - s1).abs() < 0.05, "started {s0} and {s1}");
    assert!(s0 >= start.as_secs_f64() - 0.01, "started before --start-at");

    let merged_path = dir.path().join("merged.json");
    let status = ringload()
        .args([
            "merge",
            docs[0].1.to_str().unwrap(),
            docs[1].1.to_str().unwrap(),
            "-o",
            merged_path.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let merged: serde_json::Value = serde_json::from_slice(&std::fs::read(&merged_path).unwrap()).unwrap();

    // The server's count for the window: stop it and read its totals.
    // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(server.id() as i32, libc::SIGTERM) }, 0);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(server.wait().unwrap().success());
    let totals: serde_json::Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    let server_msgs = totals["total"]["bytes_in"].as_u64().unwrap() / 64;
    let c = &merged["counters"];
    assert_eq!(c["unanswered_at_end"], 0);
    assert_eq!(c["completed"].as_u64().unwrap() + c["warmup_completed"].as_u64().unwrap(), server_msgs);

    // The merged p99 is the p99 of one histogram holding both runs' samples.
    let mut both =
        ringload::hist::decode(docs[0].0["latency"]["corrected"]["histogram"].as_str().unwrap()).unwrap();
    both.add(
        ringload::hist::decode(docs[1].0["latency"]["corrected"]["histogram"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(merged["latency"]["corrected"]["p99"].as_u64().unwrap(), both.value_at_quantile(0.99));
    assert_eq!(merged["latency"]["corrected"]["count"].as_u64().unwrap(), both.len());

    // Plots: valid SVG with one series per input (each series and its legend key is a
    // polyline), and every label shown.
    let svg_path = dir.path().join("p.svg");
    let status = ringload()
        .args([
            "plot",
            docs[0].1.to_str().unwrap(),
            docs[1].1.to_str().unwrap(),
            merged_path.to_str().unwrap(),
        ])
        .args(["-o", svg_path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // Series are drawn 2 px wide, axes and ticks 1 px.
    assert_eq!(
        svg.matches("stroke-width=\"2\"").count(),
        3 * 3,
        "per input: its line and a two-part legend key"
    );
    for label in ["a", "b", "merged (2)"] {
        assert!(
            svg.contains(&format!(">\n{label}\n<")) || svg.contains(&format!(">{label}<")),
            "no label {label}"
        );
    }
}

#[test]
fn interval_log_plots_throughput_and_p99() {
    if !uring_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.hlog");
    let svg = dir.path().join("t.svg");
    assert!(
        ringload()
            .args(["-c", "2", "-d", "2s", "-w", "0s", "--no-progress", "--hdr-log", log.to_str().unwrap()])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    assert!(
        ringload()
            .args(["plot", log.to_str().unwrap(), "-o", svg.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("Throughput per interval"));
    assert!(text.contains("Latency per interval: p50, p99, max"));
    for figure in ["p50", "p99", "max"] {
        assert!(text.contains(&format!(">\nrun.hlog {figure}\n</text>")), "{figure} in the legend");
    }
    // 2 px: the throughput and p99 lines and their two-part legend keys.
    assert_eq!(text.matches("stroke-width=\"2\"").count(), 2 * 3, "throughput and p99 lines");
}

#[test]
fn compare_exit_code_flags_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, completed: u64| {
        // One sample per answered message: a document must say so.
        let mut h = ringload::hist::new();
        h.record_n(100_000, completed).unwrap();
        let e = ringload::hist::encode(&h);
        let doc = serde_json::json!({
            "schema_version": 1, "tool": "ringload", "transport": "tcp", "elapsed_s": 10.0,
            "counters": {"completed": completed},
            "latency": {"corrected": {"histogram": e}, "service": {"histogram": e}, "connect": {"histogram": e}},
        });
        let p = dir.path().join(name);
        std::fs::write(&p, doc.to_string()).unwrap();
        p
    };
    let base = write("base.json", 100_000);
    let worse = write("worse.json", 80_000);
    let close = write("close.json", 99_000);
    let code = |a: &std::path::Path, b: &std::path::Path| {
        ringload().args(["compare", a.to_str().unwrap(), b.to_str().unwrap()]).output().unwrap().status.code()
    };
    assert_eq!(code(&base, &worse), Some(1), "a 20% drop is a regression");
    assert_eq!(code(&base, &close), Some(0), "a 1% drop is within tolerance");
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{not json").unwrap();
    let out = ringload().args(["merge", base.to_str().unwrap(), junk.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.json"));
}
