//! Plots: every series told apart, every label inside the picture and readable, every
//! name from a file safe in the SVG.

use super::*;
use crate::hist;
use crate::saved::testing::fake;

fn svg_of(draw: impl FnOnce(&Path) -> Result<(), PlotError>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.svg");
    draw(&out).unwrap();
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn curve_spans_the_nines() {
    let mut h = hist::new();
    for v in 1..=100_000u64 {
        hist::record(&mut h, v * 100);
    }
    let c = percentile_curve(&h);
    assert_eq!(c.first().unwrap().0, 1.0);
    assert!(c.last().unwrap().0 >= 99_999.0);
    assert!(c.windows(2).all(|w| w[0].1 <= w[1].1), "latency never falls with the percentile");
    assert_eq!(nines_label(&100.0), "99%");
    assert_eq!(nines_label(&1000.0), "99.9%");
}

/// Ticks half a millisecond apart printed "2ms, 2ms, 2ms".
#[test]
fn latency_labels_tell_ticks_apart() {
    for ticks in [
        &[1000.0, 1500.0, 2000.0, 2500.0, 3000.0][..],
        &[1.2, 1.4, 1.6, 1.8][..],
        &[100.0, 120.0, 140.0][..],
        &[1.5e6, 2e6, 2.5e6][..],
        &[0.5, 0.75][..],
    ] {
        let labels: Vec<String> = ticks.iter().map(us_label).collect();
        let mut unique = labels.clone();
        unique.dedup();
        assert_eq!(labels, unique, "{ticks:?}");
    }
    assert_eq!(us_label(&1500.0), "1.5ms");
    assert_eq!(us_label(&2000.0), "2ms");
    assert_eq!(us_label(&250.0), "250µs");
    assert_eq!(us_label(&0.5), "500ns");
}

#[test]
fn every_series_has_its_own_style() {
    let styles: Vec<_> = (0..MAX_SERIES).map(series_style).collect();
    for (i, s) in styles.iter().enumerate() {
        assert!(!styles[..i].contains(s), "series {i} repeats {s:?}");
    }
    let many: Vec<Saved> = (0..=MAX_SERIES).map(|i| fake(&format!("r{i}"), 100, 1.0, 1_000)).collect();
    let e = percentiles(&many, Path::new("/dev/null")).unwrap_err();
    assert_eq!(e.to_string(), "25 results in one plot; at most 24 can be told apart");
}

/// Ten results: each named in the legend; the last x label inside the picture; a label
/// with an escape and `<` leaves valid XML text.
#[test]
fn percentile_plot_of_ten_results() {
    let mut rs: Vec<Saved> =
        (0..10).map(|i| fake(&format!("run {i}"), 1_000_000, 1.0, 10_000 + i * 1_000)).collect();
    rs[3].name = "evil\u{1b}[31m<b>&".into();
    let svg = svg_of(|out| percentiles(&rs, out));
    assert!(
        !svg.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')),
        "raw control character"
    );
    assert!(svg.contains("evil\\x1b[31m&lt;b&gt;&amp;"), "the hostile label, escaped");
    for i in [0, 1, 2, 4, 9] {
        assert!(svg.contains(&format!(">\nrun {i}\n</text>")), "run {i} in the legend");
    }
    let last = svg.find(">\n99.9999%\n</text>").expect("the 99.9999% label");
    let tag = &svg[svg[..last].rfind("<text").unwrap()..last];
    let x: f64 = tag.split("x=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    assert!(x + 35.0 <= 960.0, "the last label's right half is cut off: x = {x}");
}

fn log(dir: &Path, name: &str, stall_at: u64) -> PathBuf {
    let mut text = String::from("#[StartTime: 1700000000.000 (seconds since epoch)]\n");
    for s in 0..10u64 {
        let mut h = hist::new();
        for v in 1..=1000u64 {
            hist::record(&mut h, 50_000 + v * 10);
        }
        if s == stall_at {
            hist::record(&mut h, 200_000_000); // one 200 ms stall: in the max, not the p99
        }
        text.push_str(&format!("{s}.000,1.000,1.000,{}\n", hist::encode(&h)));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Several logs, one colour each, with p50, p99 and max: a stall shows in the max.
#[test]
fn interval_plot_of_two_logs() {
    let dir = tempfile::tempdir().unwrap();
    let logs = [log(dir.path(), "a.hlog", 3), log(dir.path(), "b.hlog", 7)];
    let svg = svg_of(|out| intervals(&logs, out));
    for name in ["a.hlog", "b.hlog"] {
        for figure in ["p50", "p99", "max"] {
            assert!(svg.contains(&format!(">\n{name} {figure}\n</text>")), "{name} {figure} in the legend");
        }
    }
    assert!(svg.contains(">\n100ms\n</text>"), "the stall is on the latency axis");
    let nine: Vec<PathBuf> = (0..9).map(|i| log(dir.path(), &format!("{i}.hlog"), 0)).collect();
    assert!(matches!(intervals(&nine, Path::new("/dev/null")), Err(PlotError::TooMany { .. })));
}

#[test]
fn an_unwritable_output_is_a_sentence() {
    let rs = [fake("a", 1000, 1.0, 10_000)];
    let e = percentiles(&rs, Path::new("/nonexistent/dir/p.svg")).unwrap_err().to_string();
    assert_eq!(e, "/nonexistent/dir/p.svg: No such file or directory (os error 2)");
}
