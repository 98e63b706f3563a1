//! The `ringload` binary: parse, open the output files (so a bad path fails before any
//! load), run, report, exit with the code the report implies.
//!
//! Everything for stdout goes through [`print_out`]: a closed stdout (`ringload … |
//! head -1`) is a normal end, not an error (ripgrep's rule): the rest of the output is
//! dropped quietly, output files are still written, and the exit code is the one the
//! command implies. Warnings go to stderr through [`warn`], which never fails either.

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
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Errors quote labels and names from files: escaped like any text from one.
            warn(&results::escape::terminal(&format!("error: {e:#}")));
            ExitCode::from(2)
        }
    }
}

/// Writes `text` to stdout. A closed stdout is not an error: the reader went away.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Writes a line to stderr; if even stderr is gone, there is no one left to tell.
fn warn(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn run(args: &Args) -> anyhow::Result<u8> {
    match &args.command {
        Some(cmd) => results_command(cmd),
        None => load(&args.run),
    }
}

fn load_all(files: &[PathBuf]) -> anyhow::Result<Vec<Saved>> {
    files.iter().map(|f| Saved::load(f).map_err(anyhow::Error::from)).collect()
}

fn results_command(cmd: &Command) -> anyhow::Result<u8> {
    match cmd {
        Command::Merge { files, output, force } => {
            let (merged, warnings) = results::merge(&load_all(files)?, *force)?;
            for w in warnings {
                warn(&format!("warning: {}", results::escape::terminal(&w.to_string())));
            }
            let text = serde_json::to_string_pretty(&merged)? + "\n";
            match output {
                Some(p) => std::fs::write(p, text).with_context(|| format!("-o {}", p.display()))?,
                None => print_out(&text)?,
            }
            Ok(0)
        }
        Command::Report { files, format } => {
            print_out(&results::render(&load_all(files)?, *format))?;
            Ok(0)
        }
        Command::Compare { base, new, tolerance } => {
            let (b, n) = (Saved::load(base)?, Saved::load(new)?);
            let comparison = results::compare(&b, &n, *tolerance);
            print_out(&results::render_compare(&b, &n, &comparison))?;
            Ok(comparison.exit_code())
        }
        Command::Plot { files, output } => {
            plot(files, output)?;
            Ok(0)
        }
        Command::Ab(ab) => ab_command(ab),
    }
}

/// `ringload ab`: the runs, then the summary (text, or the `ab` document with --json -).
/// Ctrl-C stops the run in progress and its server (the library stops every server it
/// started before it returns), then the runs done so far are summed up (exit 130).
fn ab_command(args: &ringload::ab::AbArgs) -> anyhow::Result<u8> {
    let plan = args.to_plan()?;
    let json = args.load.json.as_deref();
    let json_to_stdout = json == Some(Path::new("-"));
    let mut json_file = match json {
        Some(p) if !json_to_stdout => {
            Some(File::create(p).with_context(|| format!("--json {}", p.display()))?)
        }
        _ => None,
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    // No exit on a second signal: the servers must be stopped whatever happens.
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(signal, interrupted.clone()).context("installing signal handlers")?;
    }
    let show = !args.load.no_progress && std::io::stderr().is_terminal();
    let outcome = ringload::ab::run(&plan, &interrupted, |r| {
        if show {
            eprintln!(
                "[{} run {}] {}, p99 {}, server {} per message",
                r.side,
                r.run,
                ringload::report::rate(r.msgs_per_s()),
                ringload::report::ns(r.result.latency.corrected.p99 as f64),
                ringload::report::ns(r.server.cpu_us_per_msg * 1e3)
            );
        }
    })?;
    let result = ringload::ab::summarize(&plan, outcome.records, outcome.interrupted);
    if json_to_stdout {
        print_out(&(serde_json::to_string_pretty(&result.doc)? + "\n"))?;
    } else {
        print_out(&result.text())?;
    }
    if let Some(f) = json_file.as_mut() {
        serde_json::to_writer_pretty(&mut *f, &result.doc).context("--json")?;
        writeln!(f).context("--json")?;
    }
    Ok(result.exit_code() as u8)
}

/// Result files (.json) draw the percentile distribution; interval logs (.hlog) the
/// rate and latency over time, one series per log.
fn plot(files: &[PathBuf], output: &Path) -> anyhow::Result<()> {
    let is_log = |f: &PathBuf| f.extension().is_some_and(|e| e == "hlog");
    let logs = files.iter().filter(|f| is_log(f)).count();
    if logs == 0 {
        let results = load_all(files)?;
        // A --find-max-rate result draws its steps: latency against offered rate.
        match results.as_slice() {
            [one] if one.doc.search.is_some() => ringload::plot::capacity(one, output)?,
            _ => ringload::plot::percentiles(&results, output)?,
        }
    } else {
        anyhow::ensure!(
            logs == files.len(),
            "plot takes result files (.json) or interval logs (.hlog), not both at once"
        );
        ringload::plot::intervals(files, output)?;
    }
    Ok(())
}

fn load(args: &RunArgs) -> anyhow::Result<u8> {
    if args.find_max_rate {
        return find_max_rate(args);
    }
    if args.repeat != 1 {
        return repeated(args);
    }
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
    // A second one exits at once (130), should the run not stop (a connect that hangs).
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, interrupted.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(signal, interrupted.clone()).context("installing signal handlers")?;
    }
    let progress = if args.no_progress || !std::io::stderr().is_terminal() {
        Progress::Hide
    } else {
        Progress::Report(Box::new(print_progress))
    };
    let mut report = ringload::run_at(plan, interrupted, progress, args.start_at)?;
    report.label = args.label.clone();
    report.check_slo(&args.slo());

    let document = report.document();
    if json_to_stdout {
        print_out(&(serde_json::to_string_pretty(&document)? + "\n"))?;
    } else {
        print_out(&report.text())?;
    }
    if let Some(f) = json_file.as_mut() {
        serde_json::to_writer_pretty(&mut *f, &document).context("--json")?;
        writeln!(f).context("--json")?;
    }
    if let Some(f) = hdr_file.as_mut() {
        write_hdr_log(f, &report).context("--hdr-log")?;
    }
    for w in report.warnings.iter().filter(|w| w.is_failure()) {
        warn(&format!("error: {}", w.message()));
    }
    Ok(report.exit_code() as u8)
}

/// The progress line on stderr (a terminal only).
fn print_progress(tick: Tick) {
    match tick {
        Tick::Connecting { connected, planned } => {
            eprintln!("[connecting] {connected} of {planned} connections")
        }
        Tick::Bytes { elapsed_s, sent_per_s, received_per_s, warmup, background } => eprintln!(
            "[{elapsed_s:5.1}s] {}sent {:.3} Gbit/s ({:.1} MB/s), received {:.3} Gbit/s ({:.1} MB/s){}",
            if background { "background: " } else { "" },
            sent_per_s * 8.0 / 1e9,
            sent_per_s / 1e6,
            received_per_s * 8.0 / 1e9,
            received_per_s / 1e6,
            if warmup { " (warm-up)" } else { "" }
        ),
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
    for (start_ns, length_ns, encoded) in &report.intervals {
        let h = ringload::hist::decode(encoded).context("an interval of our own")?;
        let start = std::time::Duration::from_nanos(*start_ns);
        log.write_histogram(&h, start, std::time::Duration::from_nanos(*length_ns), None)
            .map_err(|e| anyhow::anyhow!("writing an interval: {e}"))?;
    }
    // Bulk figures have no histogram: one comment line per second, as iperf3's.
    for (name, b) in [("bulk", &report.bulk), ("background", &report.background)] {
        for i in b.iter().flat_map(|b| &b.intervals) {
            log.write_comment(&format!(
                "{name} {:.3}-{:.3} s: sent {} B, received {} B, {:.3} Gbit/s",
                i.start_s,
                i.start_s + i.length_s,
                i.bytes_sent,
                i.bytes_received,
                i.gbit_per_s
            ))?;
        }
    }
    Ok(())
}

/// Ctrl-C, a `kill` and a closed terminal set the returned flag (the run ends with what
/// it has); a second one exits at once (130).
fn interrupt_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, interrupted.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(signal, interrupted.clone()).context("installing signal handlers")?;
    }
    Ok(interrupted)
}

/// Prints the text (or the JSON, for `--json -`) and writes `--json FILE`, opened
/// before any load so that a bad path fails at once.
struct Output {
    json_to_stdout: bool,
    json_file: Option<File>,
}

impl Output {
    fn open(args: &RunArgs) -> anyhow::Result<Output> {
        let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
        let json_file = match &args.json {
            Some(p) if !json_to_stdout => {
                Some(File::create(p).with_context(|| format!("--json {}", p.display()))?)
            }
            _ => None,
        };
        Ok(Output { json_to_stdout, json_file })
    }

    fn write(&mut self, text: &str, document: &ringload::ResultDoc) -> anyhow::Result<()> {
        if self.json_to_stdout {
            print_out(&(serde_json::to_string_pretty(document)? + "\n"))?;
        } else {
            print_out(text)?;
        }
        if let Some(f) = self.json_file.as_mut() {
            serde_json::to_writer_pretty(&mut *f, document).context("--json")?;
            writeln!(f).context("--json")?;
        }
        Ok(())
    }
}

/// `--find-max-rate`: the search, its step table and answer; exit 0 with an answer, 1
/// when no rate met the SLO, 130 interrupted (with the steps so far).
fn find_max_rate(args: &RunArgs) -> anyhow::Result<u8> {
    // The handlers first: a Ctrl-C at any moment from here on ends with the steps so far.
    let interrupted = interrupt_flag()?;
    let (plan, cfg) = args.to_search()?;
    let mut out = Output::open(args)?;
    let show = !args.no_progress && std::io::stderr().is_terminal();
    let mut n = 0;
    let mut doc = ringload::capacity::run(&plan, &cfg, interrupted, |step| {
        n += 1;
        if show {
            warn(&format!(
                "[step {n}] {} offered: {}",
                ringload::report::rate(step.offered),
                if step.passed { "ok".to_owned() } else { step.reasons.join("; ") }
            ));
        }
    })?;
    doc.label = args.label.clone();
    let search = doc.search.as_deref().context("the search's document")?;
    let text = ringload::capacity::text(&doc.target, search);
    let code = search.exit_code();
    out.write(&text, &doc)?;
    Ok(code)
}

/// `--repeat N`: N runs with fresh connections, pooled; the checks are judged on the
/// medians; exit as a single run would (130 when interrupted, with the runs so far).
fn repeated(args: &RunArgs) -> anyhow::Result<u8> {
    args.check_repeat()?;
    anyhow::ensure!(args.hdr_log.is_none(), "--hdr-log: one run's intervals; not with --repeat");
    let interrupted = interrupt_flag()?;
    let plan = args.to_plan()?;
    let mut out = Output::open(args)?;
    let show = !args.no_progress && std::io::stderr().is_terminal();
    let slo = args.slo();
    let mut runs = Vec::new();
    let mut any_failed = false;
    for i in 0..args.repeat {
        if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let start_at = if i == 0 { args.start_at } else { None };
        let mut report = match ringload::run_at(plan.clone(), interrupted.clone(), Progress::Hide, start_at) {
            Ok(r) => r,
            Err(_) if interrupted.load(std::sync::atomic::Ordering::Relaxed) => break,
            Err(e) => return Err(e.into()),
        };
        report.label = args.label.clone();
        report.check_slo(&slo);
        if show {
            warn(&format!(
                "[run {}/{}] {}, p99 {}",
                i + 1,
                args.repeat,
                ringload::report::rate(report.throughput()),
                ringload::report::ns(report.latency.value_at_quantile(0.99) as f64)
            ));
        }
        for w in report.warnings.iter().filter(|w| w.is_failure()) {
            warn(&format!("error: run {}: {}", i + 1, w.message()));
        }
        any_failed |= report.exit_code() == 2;
        let stop = report.interrupted;
        runs.push(report.document());
        if stop {
            break;
        }
    }
    let was_interrupted = interrupted.load(std::sync::atomic::Ordering::Relaxed);
    if runs.is_empty() {
        warn("interrupted before the first run ended: nothing measured");
        return Ok(130);
    }
    let verify_failed: Vec<String> = runs
        .iter()
        .flat_map(|r| r.failed_checks.iter().filter(|c| c.starts_with("--verify")).cloned())
        .collect();
    let mut doc = ringload::repeat::pool(runs);
    let point = doc.spread.map(|s| s.point(&doc.repeats)).unwrap_or_default();
    doc.failed_checks = slo.breaches(&point);
    doc.failed_checks.extend(verify_failed);
    let code: u8 = if was_interrupted || doc.interrupted {
        130
    } else if any_failed {
        2
    } else if !doc.failed_checks.is_empty() {
        1
    } else {
        0
    };
    doc.exit_code = i32::from(code);
    let mut text = format!("target      {}\n", doc.target);
    text += &ringload::repeat::text(&doc);
    for w in &doc.warnings {
        text += &format!("warning: {}\n", w.message);
    }
    if was_interrupted {
        text += "interrupted: the runs so far are shown\n";
    }
    for f in &doc.failed_checks {
        text += &format!("FAILED (medians): {f}\n");
    }
    out.write(&text, &doc)?;
    Ok(code)
}
