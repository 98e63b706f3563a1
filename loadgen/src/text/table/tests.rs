//! The report table: plan order, the offered rate, warnings, and hostile text in every
//! format.

use super::*;
use crate::document::ResultDoc;
use crate::plan::SizeSpec;
use crate::saved::testing::fake;
use crate::warning::Warning;

fn with_plan(name: &str, transport: &str, model: Model, connections: u32, size: u32) -> Saved {
    let mut r = fake(name, 1000, 1.0, 50_000);
    r.doc.transport = transport.into();
    let p = r.doc.plan.as_mut().unwrap();
    p.model = model;
    p.connections = connections;
    p.size = SizeSpec { min: size, max: size };
    r
}

fn names(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect()
}

/// Rows follow the plan (transport, offered load, connections, size), not the file
/// names they were given in.
#[test]
fn rows_follow_the_plan() {
    let open = |rate| Model::Open { rate };
    let rs = [
        with_plan("a-udp", "udp", open(1000.0), 1, 64),
        with_plan("b-open-20k", "tcp", open(20_000.0), 1, 64),
        with_plan("c-open-5k-4c", "tcp", open(5_000.0), 4, 64),
        with_plan("d-open-5k-1c-1k", "tcp", open(5_000.0), 1, 1024),
        with_plan("e-open-5k-1c", "tcp", open(5_000.0), 1, 64),
        with_plan("f-closed", "tcp", Model::Closed { depth: 1 }, 50, 64),
    ];
    let csv = render(&rs, Format::Csv);
    assert_eq!(
        names(&csv),
        ["f-closed", "e-open-5k-1c", "d-open-5k-1c-1k", "c-open-5k-4c", "b-open-20k", "a-udp"],
        "{csv}"
    );
    let header = csv.lines().next().unwrap();
    assert_eq!(
        header,
        "result,transport,offered,conns,size,msg/s,errors,p50,p90,p99,p99.9,p99.99,max,warnings"
    );
    assert!(csv.contains("\nb-open-20k,tcp,20000,1,64,1000,0,"), "{csv}");
    assert!(csv.contains("\nf-closed,tcp,closed depth 1,50,64,"), "{csv}");
}

#[test]
fn warnings_have_a_column_and_their_sentences() {
    let mut r = fake("lg1", 1000, 1.0, 50_000);
    r.doc.warnings.push((&Warning::ClientSaturated { busy: 0.95 }).into());
    r.doc.warnings.push((&Warning::SharedCpu).into());
    let text = render(std::slice::from_ref(&r), Format::Text);
    assert!(text.lines().nth(1).unwrap().ends_with("client saturated, shared CPU"), "{text}");
    assert!(text.contains("lg1: warning: load generator CPU saturated (95% busy)"), "{text}");
    let csv = render(std::slice::from_ref(&r), Format::Csv);
    assert!(csv.lines().nth(1).unwrap().ends_with(",\"client saturated, shared CPU\""), "{csv}");
    let md = render(std::slice::from_ref(&r), Format::Markdown);
    assert!(md.contains("\n- lg1: warning: load generator CPU saturated"), "{md}");
}

/// A label of 70,000 characters made `{:<w$}` panic ("Formatting argument out of
/// range"); the reader now refuses it, and the renderer pads by hand anyway.
#[test]
fn a_huge_name_renders_without_panic() {
    let mut r = fake("x", 1000, 1.0, 50_000);
    r.name = "y".repeat(70_000);
    for format in [Format::Text, Format::Markdown, Format::Csv] {
        assert!(render(std::slice::from_ref(&r), format).contains(&r.name));
    }
}

/// Escape sequences, CR, newlines and `|` in a label stay inside their cell.
#[test]
fn hostile_labels_stay_in_their_cell() {
    let mut r = fake("x", 1000, 1.0, 50_000);
    r.name = "evil\u{1b}]0;pwned\u{7}|pipe\nnew\rCR".into();
    let text = render(std::slice::from_ref(&r), Format::Text);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("evil\\x1b]0;pwned\\x07|pipe\\nnew\\rCR"), "{text}");
    let md = render(std::slice::from_ref(&r), Format::Markdown);
    assert_eq!(md.lines().count(), 3, "{md}");
    let row = md.lines().nth(2).unwrap();
    assert!(row.starts_with("| evil\\\\x1b\\]0;pwned\\\\x07\\|pipe\\\\nnew\\\\rCR | tcp |"), "{row}");
    assert_eq!(row.matches(" | ").count(), md.lines().next().unwrap().matches(" | ").count(), "{md}");
    let csv = render(std::slice::from_ref(&r), Format::Csv);
    assert_eq!(csv.lines().count(), 2, "{csv}");
}

/// The errors column is `Counters::failed`: lost datagrams count.
#[test]
fn errors_column_counts_lost_datagrams() {
    let mut r = fake("u", 1000, 1.0, 50_000);
    r.doc.counters.lost = 5;
    r.doc.counters.failed_messages = 2;
    r.doc.derive();
    let csv = render(std::slice::from_ref(&r), Format::Csv);
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[6], "7", "{csv}");
}

#[test]
fn renders_every_format() {
    let rs = [fake("a,1", 1000, 1.0, 50_000), fake("b", 2000, 1.0, 70_000)];
    assert!(render(&rs, Format::Text).contains("msg/s"));
    assert!(render(&rs, Format::Markdown).starts_with("| result"));
    let csv = render(&rs, Format::Csv);
    assert!(csv.contains("\"a,1\"") && csv.lines().count() == 3);
}

/// Issue 24: a repeated document is shown as `--repeat` printed it: the medians of its
/// runs, saying so, and the limit of its runs; never its pooled figures unsaid.
#[test]
fn a_repeated_document_shows_its_medians_and_its_runs_limit() {
    let runs: Vec<ResultDoc> = [1.0, 1.0, 4.0]
        .iter()
        .map(|&elapsed_s| {
            let mut d = crate::report::testing::full_report().document();
            d.elapsed_s = elapsed_s;
            d.derive();
            d
        })
        .collect();
    let limit = runs[0].views.as_ref().expect("the full report judges its limit").limit;
    let pooled = crate::repeat::pool(runs);
    let median = pooled.spread.expect("repeats have a spread").msgs_per_s.median;
    assert!(
        median > pooled.throughput.msgs_per_s * 1.2,
        "pooled {} vs median {median}",
        pooled.throughput.msgs_per_s
    );
    let bytes = serde_json::to_vec(&pooled).unwrap();
    let saved = Saved::from_bytes("rep.json".into(), &bytes).unwrap();
    let text = render(std::slice::from_ref(&saved), Format::Text);
    assert!(text.contains("(median of 3)"), "{text}");
    assert!(text.contains(&crate::units::rate_short(median)), "the median rate, not the pooled: {text}");
    let line = format!("limit: {} in 3 of 3 runs", limit.short());
    assert!(text.contains(&line), "{text}");
    assert!(crate::text::repeat::report(&saved.doc).contains(&line));
}

/// Issue 25: `report` of a run timed by the kernel says where the time went, in one line
/// per result (the medians of the parts); a run without stamps says nothing of it.
#[test]
fn a_stamped_run_shows_where_the_time_went() {
    let mut report = crate::report::testing::full_report();
    report.breakdown = crate::report::testing::stamped_breakdown();
    report.label = Some("stamped".into());
    let bytes = serde_json::to_vec(&report.document()).unwrap();
    let stamped = Saved::from_bytes("stamped.json".into(), &bytes).unwrap();
    let plain = fake("plain", 1000, 1.0, 50_000);
    let text = render(&[stamped, plain], Format::Text);
    let line = text.lines().find(|l| l.starts_with("stamped: timing")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("client send 5.0µs, net+server 40.0µs, client recv 2.1µs"), "{line}");
    assert!(line.contains("100 of 103 replies stamped, 10 probes split; clock ±50ns"), "{line}");
    assert!(!text.contains("plain: timing"), "{text}");
}
