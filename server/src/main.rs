//! The `ringecho` binary: parse, start, print the bound addresses, wait for a signal,
//! drain, print totals. Everything else lives in the library.
//!
//! Exit codes: 0 after a signal-initiated shutdown (or when stdout was closed: a reader
//! that stopped reading is a normal end); 2 for a usage or start-up error; 130 when a
//! second signal cuts the drain short.

use anyhow::Context;
use clap::Parser;
use ringecho::cli::{Args, StatsFormat};
use ringecho::cpu::ServerCpu;
use ringecho::stats::Rates;
use ringecho::{Server, Snapshot};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Writes `text` to stdout; a closed stdout is not an error (ripgrep's rule).
fn print_out(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let config = args.to_config()?;
    // Registered before the workers exist, so a signal during start-up is not lost.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).context("installing signal handlers")?;
    let handle = Server::start(config)?;
    let mut lines = handle.listening_lines().join("\n");
    lines.push('\n');
    print_out(&lines)?;
    eprintln!("ringecho: {}", handle.describe());

    let format = args.stats_format;
    let (stop_stats, stats_stopped) = std::sync::mpsc::channel::<()>();
    let stats_thread =
        args.stats.map(|interval| spawn_stats_printer(&handle, interval, format, stats_stopped));

    signals.forever().next();
    eprintln!(
        "ringecho: shutting down (drain up to {:?}); a second signal exits at once",
        args.drain_timeout
    );
    let socket_files = handle.socket_files().to_vec();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            for path in socket_files {
                let _ = std::fs::remove_file(path);
            }
            std::process::exit(130);
        }
    });
    handle.shutdown();
    let finished = handle.finish();
    drop(stop_stats);
    if let Some(t) = stats_thread {
        let _ = t.join();
    }
    for w in &finished.warnings {
        eprintln!("ringecho: warning: {w}");
    }
    print_out(&(render(&finished.totals, &finished.cpu, None, format, "totals") + "\n"))?;
    Ok(())
}

fn spawn_stats_printer(
    handle: &ringecho::ServerHandle,
    interval: Duration,
    format: StatsFormat,
    stop: std::sync::mpsc::Receiver<()>,
) -> std::thread::JoinHandle<()> {
    let source = handle.stats_source();
    std::thread::spawn(move || {
        let started = Instant::now();
        let (mut before, mut at) = (source.snapshot(), started);
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
            let (now, snapshot, cpu) = (Instant::now(), source.snapshot(), source.cpu());
            let rates = Rates::between(&before.total, &snapshot.total, now.duration_since(at).as_secs_f64());
            let stamp = Stamp { elapsed: now.duration_since(started), rates };
            eprintln!("{}", render(&snapshot, &cpu, Some(&stamp), format, "stats"));
            (before, at) = (snapshot, now);
        }
    })
}

/// When a stats line was taken, and the rates since the one before.
struct Stamp {
    elapsed: Duration,
    rates: Rates,
}

fn render(s: &Snapshot, cpu: &ServerCpu, stamp: Option<&Stamp>, format: StatsFormat, label: &str) -> String {
    let time = humantime::format_rfc3339_millis(SystemTime::now());
    match (format, stamp) {
        (StatsFormat::Text, Some(st)) => format!(
            "{label}: {time} t={:.1}s {} | {} | {}",
            st.elapsed.as_secs_f64(),
            st.rates.text(),
            s.text_line(),
            cpu.text()
        ),
        (StatsFormat::Text, None) => format!("{label}: {} | {}", s.text_line(), cpu.text()),
        (StatsFormat::Json, stamp) => {
            let mut doc = serde_json::to_value(s).unwrap_or_default();
            doc["time"] = time.to_string().into();
            doc["cpu"] = serde_json::to_value(cpu).unwrap_or_default();
            if let Some(st) = stamp {
                doc["elapsed_s"] = st.elapsed.as_secs_f64().into();
                doc["rates"] = serde_json::to_value(st.rates).unwrap_or_default();
            }
            doc.to_string()
        }
    }
}
