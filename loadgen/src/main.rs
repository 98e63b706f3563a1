//! The `ringload` binary: parse, open the output files (so a bad path fails before any
//! load), run, report, exit with the code the report implies.

use anyhow::Context;
use clap::Parser;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use ringload::cli::{Args, Command, RunArgs};
use ringload::results::{self, Saved};
use ringload::{Progress, Report, Tick};
use std::fs::File;
use std::io::IsTerminal;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<u8> {
    match &args.command {
        Some(cmd) => results_command(cmd),
        None => load(&args.run),
    }
}

fn load_all(files: &[std::path::PathBuf]) -> anyhow::Result<Vec<Saved>> {
    files.iter().map(|f| Saved::load(f).map_err(anyhow::Error::from)).collect()
}

fn results_command(cmd: &Command) -> anyhow::Result<u8> {
    match cmd {
        Command::Merge { files, output } => {
            let (merged, warnings) = results::merge(&load_all(files)?)?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let text = serde_json::to_string_pretty(&merged)?;
            match output {
                Some(p) => std::fs::write(p, text + "\n").with_context(|| format!("-o {}", p.display()))?,
                None => println!("{text}"),
            }
            Ok(0)
        }
        Command::Report { files, format } => {
            print!("{}", results::render(&load_all(files)?, *format));
            Ok(0)
        }
        Command::Compare { base, new, tolerance } => {
            let (b, n) = (Saved::load(base)?, Saved::load(new)?);
            let deltas = results::compare(&b, &n, *tolerance);
            print!("{}", results::render_compare(&b, &n, &deltas));
            Ok(u8::from(deltas.iter().any(|d| d.regression)))
        }
        Command::Plot { files, output } => {
            let logs = files.iter().filter(|f| f.extension().is_some_and(|e| e == "hlog")).count();
            if logs > 0 {
                anyhow::ensure!(
                    files.len() == 1,
                    "plot takes one interval log (.hlog), or result files (.json)"
                );
                ringload::plot::intervals(&files[0], output)?;
            } else {
                ringload::plot::percentiles(&load_all(files)?, output)?;
            }
            Ok(0)
        }
    }
}

fn load(args: &RunArgs) -> anyhow::Result<u8> {
    let plan = args.to_plan()?;
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let mut json_file = match &args.json {
        Some(p) if !json_to_stdout => {
            Some(File::create(p).with_context(|| format!("--json {}", p.display()))?)
        }
        _ => None,
    };
    let mut hdr_file = match &args.hdr_log {
        Some(p) => Some(File::create(p).with_context(|| format!("--hdr-log {}", p.display()))?),
        None => None,
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    // Ctrl-C, a `kill` and a closed terminal all end the run with its partial report.
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(signal, interrupted.clone()).context("installing signal handlers")?;
    }
    let progress = if args.no_progress || !std::io::stderr().is_terminal() {
        Progress::Hide
    } else {
        Progress::Report(Box::new(print_progress))
    };
    let mut report = ringload::run_at(plan, interrupted, progress, args.start_at)?;
    report.label = args.label.clone();
    report.check(args.max_p99, args.max_error_rate);

    let document = report.document();
    if json_to_stdout {
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print!("{}", report.text());
    }
    if let Some(f) = json_file.as_mut() {
        serde_json::to_writer_pretty(&mut *f, &document).context("--json")?;
        writeln!(f)?;
    }
    if let Some(f) = hdr_file.as_mut() {
        write_hdr_log(f, &report).context("--hdr-log")?;
    }
    for w in report.warnings.iter().filter(|w| w.is_failure()) {
        eprintln!("error: {}", w.message());
    }
    Ok(report.exit_code() as u8)
}

/// The progress line on stderr (a terminal only).
fn print_progress(tick: Tick) {
    match tick {
        Tick::Connecting { connected, planned } => {
            eprintln!("[connecting] {connected} of {planned} connections")
        }
        Tick::Running { elapsed_s, rate, completed, failed, warmup } => eprintln!(
            "[{elapsed_s:5.1}s] {}{}, {completed} answered, {failed} failed",
            ringload::report::rate(rate),
            if warmup { " (warm-up)" } else { "" }
        ),
    }
}

fn write_hdr_log(f: &mut File, report: &Report) -> anyhow::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder.add_comment(&format!("ringload {} against {}", env!("CARGO_PKG_VERSION"), report.target));
    builder.add_comment("values in nanoseconds, from the intended send time");
    builder.with_max_value_divisor(1e6);
    let mut log = builder.begin_log_with(f, &mut serializer)?;
    for (start_ns, length_ns, h) in &report.intervals {
        let start = std::time::Duration::from_nanos(*start_ns);
        log.write_histogram(h, start, std::time::Duration::from_nanos(*length_ns), None)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    Ok(())
}
