//! The `ringecho` binary: parse, start, print the bound addresses, wait for a signal,
//! drain, print totals. Everything else lives in the library.

use anyhow::Context;
use clap::Parser;
use ringecho::cli::{Args, StatsFormat};
use ringecho::{Server, Snapshot};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

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

fn run(args: &Args) -> anyhow::Result<()> {
    let config = args.to_config()?;
    // Registered before the workers exist, so a signal during start-up is not lost.
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    let handle = Server::start(config)?;
    {
        let mut out = std::io::stdout().lock();
        for line in handle.listening_lines() {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
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
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            std::process::exit(130);
        }
    });
    handle.shutdown();
    let finished = handle.finish();
    for w in &finished.warnings {
        eprintln!("ringecho: warning: {w}");
    }
    let totals = finished.totals;
    drop(stop_stats);
    if let Some(t) = stats_thread {
        let _ = t.join();
    }
    println!("{}", render(&totals, format, "totals"));
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
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
            eprintln!("{}", render(&source.snapshot(), format, "stats"));
        }
    })
}

fn render(s: &Snapshot, format: StatsFormat, label: &str) -> String {
    match format {
        StatsFormat::Text => format!("{label}: {}", s.text_line()),
        StatsFormat::Json => s.json_line(),
    }
}
