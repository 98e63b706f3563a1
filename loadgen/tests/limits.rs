//! Limits said up front: connections that cannot fit the descriptor limit are refused
//! before any load, naming the flag and the remedy.

use std::process::Command;

#[test]
fn connections_past_the_descriptor_limit_are_refused_up_front() {
    let out = Command::new("bash")
        .arg("-c")
        .arg("ulimit -n 200 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ringload"))
        .args(["tcp://127.0.0.1:9", "-c", "500", "-d", "1s", "--no-progress"])
        .output()
        .expect("run ringload");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--connections") && err.contains("ulimit -n"), "{err}");
}
