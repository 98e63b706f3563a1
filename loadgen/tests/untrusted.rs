//! The results subcommands on files ringload did not write: every malformed file ends
//! in exit 2 and one sentence naming it, at once, in bounded memory; a closed stdout is
//! a normal end.

mod util;

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ringload(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringload")).args(args).output().expect("run ringload");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn good() -> serde_json::Value {
    serde_json::from_str(include_str!("data/v1-closed.json")).unwrap()
}

fn write(dir: &Path, name: &str, doc: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(doc).unwrap()).unwrap();
    p
}

/// Malformed result files, each with the start of the sentence it must end in.
fn malformed(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut with = |name: &str, edit: &dyn Fn(&mut serde_json::Value), needle: &str| {
        let mut d = good();
        edit(&mut d);
        let p = write(dir, name, &d);
        out.push((p.clone(), format!("error: {}: {needle}", p.display())));
    };
    with(
        "len-ffffffff.json",
        &|d| d["latency"]["corrected"]["histogram"] = util::crafted_histogram(u32::MAX, &[]).into(),
        "latency.corrected.histogram: the histogram's header claims 4294967295 bytes",
    );
    with(
        "bomb.json",
        &|d| {
            d["latency"]["service"]["histogram"] = util::crafted_histogram(8 << 20, &vec![0; 8 << 20]).into()
        },
        "latency.service.histogram: the histogram inflates to more than",
    );
    with("label.json", &|d| d["label"] = "x".repeat(65_536).into(), "label: 65536 characters");
    with("sent.json", &|d| d["counters"]["sent"] = 1.into(), "counters.completed (35107) is more than");
    with("p99.json", &|d| d["latency"]["corrected"]["p99"] = 1u64.into(), "latency.corrected: states p90");
    with("names.json", &|d| d["merged_from"] = vec![""; 5000].into(), "merged_from: more than 4096");
    let fifo = dir.join("fifo.json");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    out.push((fifo.clone(), format!("error: {}: is a FIFO", fifo.display())));
    out.push(("/dev/zero".into(), "error: /dev/zero: is a character device".into()));
    out
}

#[test]
fn malformed_files_exit_2_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.json", &good());
    let svg = dir.path().join("p.svg");
    for (file, needle) in malformed(dir.path()) {
        let f = file.to_str().unwrap();
        let g = good.to_str().unwrap();
        for args in [
            vec!["report", f],
            vec!["merge", g, f],
            vec!["compare", g, f],
            vec!["plot", f, "-o", svg.to_str().unwrap()],
        ] {
            let t0 = Instant::now();
            let (code, out, err) = ringload(&args);
            assert_eq!(code, Some(2), "{args:?}: {err}");
            assert!(out.is_empty(), "{args:?}: {out}");
            assert!(err.starts_with(&needle), "{args:?}:\n{err}\nshould start with\n{needle}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            for debug in ["{", "Custom", "Os ", "Error(", "panicked"] {
                assert!(!err.contains(debug), "{args:?}: Rust Debug text: {err}");
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "{args:?} took {:?}", t0.elapsed());
        }
    }
}

#[test]
fn malformed_interval_logs_exit_2_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("p.svg");
    let log = dir.path().join("bad.hlog");
    std::fs::write(&log, format!("# a log\n0.000,1.000,1.0,{}\n", util::crafted_histogram(u32::MAX, &[])))
        .unwrap();
    let (code, _, err) = ringload(&["plot", log.to_str().unwrap(), "-o", svg.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with(&format!("error: {}: line 2: the histogram's header claims", log.display())),
        "{err}"
    );
    let (code, _, err) = ringload(&["plot", "/dev/zero", "-o", svg.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
}

/// A pipe whose reading end is already closed: every write to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two-element array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created by pipe(2) and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// `ringload report … | head -1` panicked (exit 101, "failed printing to stdout").
#[test]
fn a_closed_stdout_is_a_normal_end() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", &good());
    let a = a.to_str().unwrap();
    for args in [vec!["report", a, a], vec!["merge", a, a], vec!["compare", a, a]] {
        let out = Command::new(env!("CARGO_BIN_EXE_ringload"))
            .args(&args)
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && !err.contains("error"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
        assert!(matches!(out.status.code(), Some(0 | 1)), "{args:?}: {:?} {err}", out.status);
    }
}

/// A run whose report nobody reads still writes its --json file and exits as it would.
#[test]
fn a_run_with_a_closed_stdout_still_writes_its_files() {
    if !util::uring_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = Command::new(env!("CARGO_BIN_EXE_ringload"))
        .args(["-c", "2", "-d", "300ms", "-w", "0s", "--no-progress", "--json", json.to_str().unwrap()])
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(doc["counters"]["completed"].as_u64().unwrap() > 0);
    let out = Command::new(env!("CARGO_BIN_EXE_ringload"))
        .args(["-c", "2", "-d", "300ms", "-w", "0s", "--no-progress", "--json", "-"])
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "--json -: {err}");
}

/// merge refuses runs a minute apart, saying how far; --force merges with a warning.
#[test]
fn merge_of_runs_apart_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", &good());
    let mut later = good();
    later["started_unix"] = (later["started_unix"].as_f64().unwrap() + 60.0).into();
    later["label"] = "later".into();
    let b = write(dir.path(), "b.json", &later);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (code, out, err) = ringload(&["merge", a, b]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.starts_with("error: cannot merge: closed ended 59.700 s before later began"), "{err}");
    let (code, out, err) = ringload(&["merge", "--force", a, b]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.starts_with("warning: merged runs that did not run together (59.700 s apart, --force)"),
        "{err}"
    );
    let merged: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(merged["warnings"][0]["code"], "not_concurrent");
    let (_, help, _) = ringload(&["merge", "--help"]);
    assert!(help.contains("--force"), "{help}");
}
