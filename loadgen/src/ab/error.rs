//! Why `ringload ab` could not make its comparison (exit 2), in words that name the side,
//! the run and the server's own last words.
//!
//! Invariant: the text of an [`AbError`] may span lines (the end of a server's stderr, a
//! line of it per line), and every line of it is safe for a terminal already: text a
//! server or a command line wrote goes through `crate::escape::terminal` line by line.

use crate::document::ab::{Side, StrayProcess};
use crate::engine::RunError;
use crate::escape;
use std::fmt;
use std::time::Duration;

/// Which load run against a server: a measured one, or a warm-up before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The measured run: its number on its side, from 1.
    Run(u32),
    /// An unmeasured warm-up run (`--warmup-runs`), from 1, before measured run `run`.
    WarmUp {
        /// The measured run it prepares.
        run: u32,
        /// Its number among the warm-ups of that server, from 1.
        warmup: u32,
    },
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Run(run) => write!(f, "run {run}"),
            Stage::WarmUp { run, warmup } => write!(f, "warm-up run {warmup} before run {run}"),
        }
    }
}

/// Why the comparison could not be made (exit 2).
///
/// Its text may span lines (the end of a server's stderr, a line of it per line); each
/// line is safe for a terminal already (`crate::escape::terminal`), so a caller prints
/// it line by line rather than escaping the newlines between them.
#[derive(Debug, thiserror::Error)]
pub enum AbError {
    /// `sh` could not be started.
    #[error("server {side}: cannot run `sh -c {}`: {error}", quoted(.command))]
    Spawn {
        /// The side.
        side: Side,
        /// Its command.
        command: String,
        /// Why.
        error: std::io::Error,
    },
    /// The server exited before it listened.
    #[error("server {side} (`{}`) exited ({status}) before it listened{}", escape::terminal(.command), stderr_part(.stderr))]
    Exited {
        /// The side.
        side: Side,
        /// Its command.
        command: String,
        /// How it exited.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The server did not listen in time.
    #[error("server {side} (`{}`) did not listen within {timeout:?} (--start-timeout): {how}{}", escape::terminal(.command), stderr_part(.stderr))]
    NeverListened {
        /// The side.
        side: Side,
        /// Its command.
        command: String,
        /// The bound.
        timeout: Duration,
        /// What was waited for.
        how: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// Something already accepted at the given target before the server started.
    #[error(
        "server {side}: something already accepts connections at {target} before the server started{}; stop it, or give an address nothing else uses",
        holders_part(.holders, *.after_a_server)
    )]
    AddressInUse {
        /// The side.
        side: Side,
        /// The target.
        target: String,
        /// The processes (PID, name) that hold a socket listening there, as far as
        /// `/proc` shows this user.
        holders: Vec<(u32, String)>,
        /// A server of this comparison ran before (and may have left it).
        after_a_server: bool,
    },
    /// The server exited during a run.
    #[error("server {side} (`{}`) exited ({status}) during {stage}{}", escape::terminal(.command), stderr_part(.stderr))]
    DiedMidRun {
        /// The side.
        side: Side,
        /// The run.
        stage: Stage,
        /// Its command.
        command: String,
        /// How it exited.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// Processes of a server's tree were still there after SIGKILL.
    #[error("server {side}: {} of its processes still run 5 s after SIGKILL: {}", .left.len(), list(.left))]
    StillRunning {
        /// The side.
        side: Side,
        /// They.
        left: Vec<StrayProcess>,
    },
    /// The load could not run.
    #[error("server {side}, {stage}: {source}")]
    Run {
        /// The side.
        side: Side,
        /// The run.
        stage: Stage,
        /// Why.
        #[source]
        source: RunError,
    },
    /// The run's figures cannot be trusted (what a single run exits 2 for).
    #[error("server {side}, {stage}: {why}")]
    Untrusted {
        /// The side.
        side: Side,
        /// The run.
        stage: Stage,
        /// The failures, as a run reports them.
        why: String,
    },
    /// The plan does not fit the server's address.
    #[error("server {side}: {source}")]
    Plan {
        /// The side.
        side: Side,
        /// Why.
        #[source]
        source: crate::plan::PlanError,
    },
}

/// The end of a server's stderr, its last 10 lines each on a line of its own, indented
/// and escaped for a terminal (escaping the joined text would show the newlines between
/// them as `\n`).
fn stderr_part(stderr: &str) -> String {
    if stderr.is_empty() {
        return "; it wrote nothing on stderr".into();
    }
    let lines: Vec<&str> = stderr.lines().collect();
    let mut part = String::from("; the end of its stderr:");
    for line in &lines[lines.len().saturating_sub(10)..] {
        part.push_str("\n    ");
        part.push_str(&escape::terminal(line));
    }
    part
}

/// Who holds a listening socket, in words, for [`AbError::AddressInUse`].
fn holders_part(holders: &[(u32, String)], after_a_server: bool) -> String {
    let leftover = if after_a_server { ", likely a leftover of the previous run's server" } else { "" };
    match holders {
        [] if after_a_server => {
            " (which process listens there is hidden from this user; likely a leftover of the previous run's server)".into()
        }
        [] => String::new(),
        [(pid, name)] => format!(": process {pid} ({}) listens there{leftover}", escape::terminal(name)),
        many => {
            let named: Vec<String> =
                many.iter().map(|(pid, name)| format!("{pid} ({})", escape::terminal(name))).collect();
            format!(": processes {} listen there{leftover}", named.join(", "))
        }
    }
}

/// `1234 (sleep), 1240 (sh)`.
fn list(procs: &[StrayProcess]) -> String {
    procs.iter().map(|p| p.to_string()).collect::<Vec<String>>().join(", ")
}

/// A command as `{:?}` quotes it, escaped for a terminal.
fn quoted(command: &str) -> String {
    escape::terminal(&format!("{command:?}")).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A taken address names who holds it when `/proc` shows it, and after a server of
    /// this comparison ran, says it is likely that server's leftover.
    #[test]
    fn a_taken_address_names_its_holder() {
        let taken = |holders: Vec<(u32, String)>, after_a_server| {
            AbError::AddressInUse {
                side: Side::B,
                target: "tcp://127.0.0.1:7100".into(),
                holders,
                after_a_server,
            }
            .to_string()
        };
        let text = taken(vec![(1234, "ringecho".into())], true);
        assert!(
            text.contains("started: process 1234 (ringecho) listens there, likely a leftover of the previous run's server; stop it"),
            "{text}"
        );
        let text = taken(vec![(1, "a".into()), (2, "b\u{1b}".into())], false);
        assert!(text.contains("processes 1 (a), 2 (b\\x1b) listen there; stop it"), "{text}");
        assert!(taken(Vec::new(), true).contains("is hidden from this user; likely a leftover"));
        assert!(taken(Vec::new(), false).contains("before the server started; stop it"));
    }
}
