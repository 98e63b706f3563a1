//! The drawing kit every plot shares: its error, writing the SVG, each series' style,
//! the latency axis' labels and drawing one line with its legend key.

use crate::escape;
use crate::intervals::LogError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No result has latency samples.
    #[error("no result has latency samples")]
    NoSamples,
    /// More series than have styles of their own.
    #[error("{count} {what} in one plot; at most {max} can be told apart")]
    TooMany {
        /// Series asked for.
        count: usize,
        /// Results or logs.
        what: &'static str,
        /// The most told apart.
        max: usize,
    },
    /// Drawing failed (plotters' description).
    #[error("cannot draw the plot: {0}")]
    Draw(String),
    /// Writing the SVG failed.
    #[error("{file}: {cause}")]
    Write {
        /// The SVG file.
        file: String,
        /// Why.
        cause: std::io::Error,
    },
    /// An interval log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
}

pub(super) fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Draws an SVG in memory with `draw`.
pub(super) fn svg_text(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), PlotError>,
) -> Result<String, PlotError> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(text)
}

/// Writes a drawn SVG to `out`: a path that cannot be written is an I/O error naming
/// it, and no half-drawn file is left.
pub(super) fn write_svg(out: &Path, text: Result<String, PlotError>) -> Result<(), PlotError> {
    std::fs::write(out, text?).map_err(|cause| PlotError::Write { file: out.display().to_string(), cause })
}

/// Series colours: dark enough on white, told apart by eye (Tableau's first eight).
pub(super) const SERIES_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];

/// Dash patterns (dash, gap in pixels); `None` is a solid line.
pub(super) const DASHES: [Option<(u32, u32)>; 3] = [None, Some((10, 5)), Some((3, 4))];

/// The most series with a style of their own: every colour in every dash pattern.
pub const MAX_SERIES: usize = SERIES_COLORS.len() * DASHES.len();

/// The style of series `i`: colours first, then the same colours dashed, then dotted.
pub fn series_style(i: usize) -> (RGBColor, Option<(u32, u32)>) {
    (SERIES_COLORS[i % SERIES_COLORS.len()], DASHES[(i / SERIES_COLORS.len()) % DASHES.len()])
}

/// `v` with at most `decimals` decimals, without trailing zeros.
pub(super) fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// A latency in µs as an axis label: the unit from the value, three significant digits,
/// so that ticks 1.5 ms apart never print alike ("2ms, 2ms, 2ms").
pub fn us_label(y: &f64) -> String {
    let (v, unit) = match *y {
        y if y >= 1e6 => (y / 1e6, "s"),
        y if y >= 1e3 => (y / 1e3, "ms"),
        y if y >= 1.0 => (y, "µs"),
        y => (y * 1e3, "ns"),
    };
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{}{unit}", trim(v, decimals))
}

/// Draws a line in `style`, and its legend key.
pub(super) fn draw_line<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    points: Vec<(X::ValueType, Y::ValueType)>,
    (color, dash): (RGBColor, Option<(u32, u32)>),
    width: u32,
    name: String,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    X: plotters::coord::ranged1d::Ranged<ValueType: Clone + 'static>,
    Y: plotters::coord::ranged1d::Ranged<ValueType: Clone + 'static>,
{
    let style = color.stroke_width(width);
    let series = match dash {
        None => chart.draw_series(LineSeries::new(points, style))?,
        Some((dash, gap)) => chart.draw_series(DashedLineSeries::new(points, dash, gap, style))?,
    };
    // A dashed key: two dashes; a solid one: two halves of one line (so that both are
    // one type).
    let (first, second) = match dash {
        None => ((0, 12), (12, 24)),
        Some((d, _)) => {
            let d = d.min(8) as i32;
            ((0, d), (d + 4, 2 * d + 4))
        }
    };
    let key = move |(x, y): (i32, i32)| {
        EmptyElement::at((x, y))
            + PathElement::new(vec![(first.0, 0), (first.1, 0)], style)
            + PathElement::new(vec![(second.0, 0), (second.1, 0)], style)
    };
    series.label(escape::svg(&name)).legend(key);
    Ok(())
}
