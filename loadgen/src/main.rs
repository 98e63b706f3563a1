//! The `ringload` binary: parse, open the output files (so a bad path fails before any
//! load), run the workflow the library offers, print, exit with the code it implies.
//!
//! Everything for stdout goes through [`print_out`]: a closed stdout (`ringload … |
//! head -1`) is a normal end, not an error (ripgrep's rule): the rest of the output is
//! dropped quietly, output files are still written, and the exit code is the one the
//! command implies. Warnings go to stderr through [`warn`], which never fails either.

use anyhow::Context;
use clap::FromArgMatches;
use ringload::cli::{AbArgs, Args, Command, RunArgs};
use ringload::document::ResultDoc;
use ringload::run::{Progress, Tick};
use ringload::saved::Saved;
use ringload::units::{gbit_per_s, mb_per_s, ns, rate};
use ringload::{escape, exit, text};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn main() -> ExitCode {
    let matches = ringload::cli::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    // Each connection is a descriptor: the soft limit up to the hard one, once, before
    // any plan is checked against it.
    let _ = ringecho::sys::raise_nofile_limit();
    let code = match run(&args) {
        Ok(code) => code,
        Err(e) => {
            // Errors quote labels and names from files: escaped like any text from one.
            warn(&escape::terminal(&format!("error: {e:#}")));
            exit::ERROR
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(2))
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

/// Progress lines only on a terminal, and not with `--no-progress`.
fn show_progress(args: &RunArgs) -> bool {
    !args.no_progress && std::io::stderr().is_terminal()
}

fn run(args: &Args) -> anyhow::Result<i32> {
    match &args.command {
        Some(cmd) => results_command(cmd),
        None if args.run.find_max_rate => find_max_rate(&args.run),
        None if args.run.repeat != 1 => repeated(&args.run),
        None => one_run(&args.run),
    }
}

fn load_all(files: &[PathBuf]) -> anyhow::Result<Vec<Saved>> {
    files.iter().map(|f| Saved::load(f).map_err(anyhow::Error::from)).collect()
}

fn results_command(cmd: &Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Merge { files, output, force } => {
            let (merged, warnings) = ringload::merge::merge(&load_all(files)?, *force)?;
            for w in warnings {
                warn(&format!("warning: {}", escape::terminal(&w.to_string())));
            }
            let json = serde_json::to_string_pretty(&merged)? + "\n";
            match output {
                Some(p) => std::fs::write(p, json).with_context(|| format!("-o {}", p.display()))?,
                None => print_out(&json)?,
            }
            Ok(exit::OK)
        }
        Command::Report { files, format } => {
            print_out(&text::table::render(&load_all(files)?, *format))?;
            Ok(exit::OK)
        }
        Command::Compare { base, new, tolerance } => {
            let (b, n) = (Saved::load(base)?, Saved::load(new)?);
            let comparison = ringload::compare::compare(&b, &n, *tolerance);
            print_out(&text::compare::report(&b, &n, &comparison))?;
            Ok(comparison.exit_code())
        }
        Command::Plot { files, output } => {
            plot(files, output)?;
            Ok(exit::OK)
        }
        Command::Ab(ab) => ab_command(ab),
    }
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

/// Ctrl-C, a `kill` and a closed terminal set the returned flag (the run ends with what
/// it has). With `second_exits`, a second one exits at once (130), should the run not
/// stop (a connect that hangs); `ab` leaves that out: its servers must be stopped
/// whatever happens.
fn interrupt_flag(second_exits: bool) -> anyhow::Result<Arc<AtomicBool>> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        if second_exits {
            signal_hook::flag::register_conditional_shutdown(signal, exit::INTERRUPTED, interrupted.clone())
                .context("installing signal handlers")?;
        }
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
    fn open(json: Option<&Path>) -> anyhow::Result<Output> {
        let json_to_stdout = json == Some(Path::new("-"));
        let json_file = match json {
            Some(p) if !json_to_stdout => {
                Some(File::create(p).with_context(|| format!("--json {}", p.display()))?)
            }
            _ => None,
        };
        Ok(Output { json_to_stdout, json_file })
    }

    fn write(&mut self, text: &str, document: &impl serde::Serialize) -> anyhow::Result<()> {
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

/// One run: its report (text or JSON), `--json`, `--hdr-log`, and its failures on stderr.
fn one_run(args: &RunArgs) -> anyhow::Result<i32> {
    let plan = args.to_plan()?;
    let mut out = Output::open(args.json.as_deref())?;
    let mut hdr_file = match &args.hdr_log {
        Some(p) => Some(File::create(p).with_context(|| format!("--hdr-log {}", p.display()))?),
        None => None,
    };
    let interrupted = interrupt_flag(true)?;
    let progress =
        if show_progress(args) { Progress::Report(Box::new(print_progress)) } else { Progress::Hide };
    let mut report = ringload::run::run_at(plan, interrupted, progress, args.start_at)?;
    report.label = args.label.clone();
    report.check_slo(&args.slo());
    out.write(&text::run::report(&report), &report.document())?;
    if let Some(f) = hdr_file.as_mut() {
        let bulk = [("bulk", report.bulk.as_ref()), ("background", report.background.as_ref())];
        ringload::intervals::write_log(f, &report.target, &report.intervals, bulk).context("--hdr-log")?;
    }
    for w in report.warnings.iter().filter(|w| w.is_failure()) {
        warn(&format!("error: {}", w.message()));
    }
    Ok(report.exit_code())
}

/// The progress line on stderr (a terminal only).
fn print_progress(tick: Tick) {
    match tick {
        Tick::Connecting { connected, planned } => {
            eprintln!("[connecting] {connected} of {planned} connections")
        }
        Tick::Bytes { elapsed_s, sent_per_s, received_per_s, warmup, background } => eprintln!(
            "[{elapsed_s:5.1}s] {}sent {} ({}), received {} ({}){}",
            if background { "background: " } else { "" },
            gbit_per_s(sent_per_s),
            mb_per_s(sent_per_s),
            gbit_per_s(received_per_s),
            mb_per_s(received_per_s),
            if warmup { " (warm-up)" } else { "" }
        ),
        Tick::Running { elapsed_s, rate: r, completed, failed, warmup } => eprintln!(
            "[{elapsed_s:5.1}s] {}{}, {completed} answered, {failed} failed",
            rate(r),
            if warmup { " (warm-up)" } else { "" }
        ),
    }
}

/// `--find-max-rate`: the search, its step table and answer.
fn find_max_rate(args: &RunArgs) -> anyhow::Result<i32> {
    // The handlers first: a Ctrl-C at any moment from here on ends with the steps so far.
    let interrupted = interrupt_flag(true)?;
    let (plan, cfg) = args.to_search()?;
    let mut out = Output::open(args.json.as_deref())?;
    let show = show_progress(args);
    let mut n = 0;
    let mut doc = ringload::capacity::run(&plan, &cfg, interrupted, |step| {
        n += 1;
        if show {
            let verdict = if step.passed { "ok".to_owned() } else { step.reasons.join("; ") };
            warn(&format!("[step {n}] {} offered: {verdict}", rate(step.offered)));
        }
    })?;
    doc.label = args.label.clone();
    let search = doc.search.as_deref().context("the search's document")?;
    let report = text::search::report(&doc.target, search);
    let code = search.exit_code();
    out.write(&report, &doc)?;
    Ok(code)
}

/// `--repeat N`: N runs with fresh connections, pooled; the checks are judged on the
/// medians.
fn repeated(args: &RunArgs) -> anyhow::Result<i32> {
    args.check_repeat()?;
    anyhow::ensure!(args.hdr_log.is_none(), "--hdr-log: one run's intervals; not with --repeat");
    let interrupted = interrupt_flag(true)?;
    let plan = args.to_plan()?;
    let mut out = Output::open(args.json.as_deref())?;
    let show = show_progress(args);
    let slo = args.slo();
    let repeat = ringload::repeat::Repeat {
        plan: &plan,
        runs: args.repeat,
        slo: &slo,
        start_at: args.start_at,
        label: args.label.clone(),
        bound: args.max_duration,
    };
    let doc: Option<ResultDoc> = ringload::repeat::run(&repeat, &interrupted, |i, report| {
        if show {
            let p99 = ns(report.latency.value_at_quantile(0.99) as f64);
            warn(&format!("[run {i}/{}] {}, p99 {p99}", args.repeat, rate(report.throughput())));
        }
        for w in report.warnings.iter().filter(|w| w.is_failure()) {
            warn(&format!("error: run {i}: {}", w.message()));
        }
    })?;
    let Some(doc) = doc else {
        warn("interrupted before the first run ended: nothing measured");
        return Ok(exit::INTERRUPTED);
    };
    out.write(&text::repeat::report(&doc), &doc)?;
    Ok(doc.exit_code)
}

/// `ringload ab`: the runs, then the summary (text, or the `ab` document with --json -).
/// Ctrl-C stops the run in progress and its server (the library stops every server it
/// started before it returns), then the runs done so far are summed up (exit 130).
fn ab_command(args: &AbArgs) -> anyhow::Result<i32> {
    let plan = args.to_plan()?;
    let mut out = Output::open(args.load.json.as_deref())?;
    // No exit on a second signal: the servers must be stopped whatever happens.
    let interrupted = interrupt_flag(false)?;
    let show = show_progress(&args.load);
    let outcome = ringload::ab::run(&plan, &interrupted, |r| {
        if show {
            let (p99, cpu) = (ns(r.result.latency.corrected.p99 as f64), ns(r.server.cpu_us_per_msg * 1e3));
            warn(&format!(
                "[{} run {}] {}, p99 {p99}, server {cpu} per message",
                r.side,
                r.run,
                rate(r.msgs_per_s())
            ));
        }
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            // Its lines (the end of a server's stderr) stay lines: each one is escaped.
            for line in format!("error: {e}").lines() {
                warn(&escape::terminal(line));
            }
            return Ok(exit::code(false, true, false));
        }
    };
    let result = ringload::ab::summarize(&plan, outcome.records, outcome.interrupted);
    out.write(&result.text(), &result.doc)?;
    Ok(result.exit_code())
}
