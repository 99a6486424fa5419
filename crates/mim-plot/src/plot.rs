//! Figures drawn with `plotters`, each written as SVG and PNG.
//!
//! All plots take plain data (no database): [`LinePlot`] (metric vs x, one line per group,
//! mean ± s.e. error bars, optional log x, theory overlay curves and reference lines),
//! [`Heatmap`] (phase diagram with a colour bar), [`TrajectoryPlot`] (metric vs step, one
//! line per run), [`BarPlot`] (categories with error bars) and [`SpectrumPlot`] (eigenvalue
//! histogram with the bulk edge).

use crate::rows::Series;
use crate::stats::fmt_num;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

/// Why a figure could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Nothing to draw (empty data, no finite values).
    #[error("{0}")]
    NoData(String),
    /// The backend failed (file, font, encoding).
    #[error("drawing {path}: {msg}")]
    Draw {
        /// The output file.
        path: String,
        /// The backend's message.
        msg: String,
    },
}

/// The files of one figure.
#[derive(Clone, Debug)]
pub struct Figure {
    /// The SVG file.
    pub svg: PathBuf,
    /// The PNG file (`None` when rasterising failed, e.g. no fonts; see `warnings`).
    pub png: Option<PathBuf>,
    /// Non-fatal problems (a PNG that could not be written).
    pub warnings: Vec<String>,
}

/// Figure size in pixels (SVG and PNG).
pub const SIZE: (u32, u32) = (820, 520);

const FONT: &str = "sans-serif";

/// The colour `0xRRGGBB`.
fn hex(c: u32) -> RGBColor {
    RGBColor((c >> 16) as u8, (c >> 8) as u8, c as u8)
}

/// Tableau-10 colours, cycled for series.
pub fn series_color(i: usize) -> RGBColor {
    const C: [u32; 10] = [
        0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22,
        0x17becf,
    ];
    hex(C[i % C.len()])
}

/// Viridis colour map at t ∈ [0, 1]: plotters' [`ViridisRGB`], with t clamped to [0, 1] and
/// a non-finite t (e.g. 0/0 on a flat range) mapped to the low end.
pub fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ViridisRGB.get_color(t)
}

/// `?` for plotters results: the error as a string.
macro_rules! t {
    ($e:expr) => {
        $e.map_err(|e| e.to_string())?
    };
}

/// Something that draws itself on any plotters backend.
pub trait Draw {
    /// Draws the figure on `root` (already sized; [`render`] fills it white first).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
    /// Checks there is something to draw.
    fn check(&self) -> Result<(), PlotError>;
}

/// Writes `fig` to `<out_base>.svg` and `<out_base>.png` (parent folders are created).
pub fn render(fig: &impl Draw, out_base: &Path) -> Result<Figure, PlotError> {
    fig.check()?;
    if let Some(parent) = out_base.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| PlotError::Draw {
                path: parent.display().to_string(),
                msg: e.to_string(),
            })?;
        }
    }
    let svg = with_ext(out_base, "svg");
    let png = with_ext(out_base, "png");
    paint(fig, SVGBackend::new(&svg, SIZE)).map_err(|msg| PlotError::Draw {
        path: svg.display().to_string(),
        msg,
    })?;
    let mut warnings = Vec::new();
    let png = match paint(fig, BitMapBackend::new(&png, SIZE)) {
        Ok(()) => Some(png),
        Err(m) => {
            warnings.push(format!("PNG {} not written: {m}", png.display()));
            let _ = std::fs::remove_file(&png);
            None
        }
    };
    Ok(Figure { svg, png, warnings })
}

/// Draws `fig` on a white page of `backend` and writes it out.
fn paint<DB: DrawingBackend>(fig: &impl Draw, backend: DB) -> Result<(), String> {
    let root = backend.into_drawing_area();
    t!(root.fill(&WHITE));
    fig.draw(&root)?;
    t!(root.present());
    Ok(())
}

/// `Err(NoData("<title>: <what>"))` unless `ok`: the shared body of [`Draw::check`].
fn require(ok: bool, title: &str, what: &str) -> Result<(), PlotError> {
    if ok {
        Ok(())
    } else {
        Err(PlotError::NoData(format!("{title}: {what}")))
    }
}

fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// A linear f64 axis whose ticks (bold mesh lines and labels) are exactly the given points.
#[derive(Clone, Debug)]
pub struct TickAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl TickAxis {
    /// An axis over [lo, hi] with ticks at `ticks`.
    pub fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> TickAxis {
        TickAxis { lo, hi, ticks }
    }
}

impl Ranged for TickAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = ((value - self.lo) / (self.hi - self.lo)).clamp(-10.0, 10.0);
        let len = limit.1 - limit.0;
        if len == 0 || !t.is_finite() {
            return limit.1;
        }
        limit.0 + (len as f64 * t + 1e-3).floor() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// "Nice" tick values (1-2-5 steps) covering [lo, hi].
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() as i64;
    let end = (hi / step).floor() as i64;
    (start..=end).map(|k| k as f64 * step).collect()
}

/// Ticks for a log axis over [lo, hi] (values, not logs): 1-2-5 per decade, thinned.
fn log_ticks(lo: f64, hi: f64, data: &[f64]) -> Vec<f64> {
    let mut grid: Vec<f64> = data.iter().copied().filter(|x| *x > 0.0).collect();
    grid.sort_by(|a, b| a.total_cmp(b));
    grid.dedup();
    if (2..=12).contains(&grid.len()) {
        return grid;
    }
    let mut out = Vec::new();
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    for e in a..=b {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v >= lo * 0.999 && v <= hi * 1.001 {
                out.push(v);
            }
        }
    }
    if out.len() > 12 {
        out.retain(|v| (v.log10().fract()).abs() < 1e-9);
    }
    out
}

/// A numeric axis: range in plot coordinates (log10 for a log axis) and its ticks.
struct Axis {
    log: bool,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Axis {
    /// An axis covering `values` (with padding), log or linear.
    fn fit(values: &[f64], log: bool, pad_frac: f64, include_zero: bool) -> Axis {
        let v: Vec<f64> = values
            .iter()
            .copied()
            .filter(|x| x.is_finite() && (!log || *x > 0.0))
            .collect();
        let (mut lo, mut hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            });
        if !lo.is_finite() {
            (lo, hi) = if log { (1.0, 10.0) } else { (0.0, 1.0) };
        }
        if log {
            let (l, h) = (lo.log10(), hi.log10());
            let pad = ((h - l) * pad_frac).max(0.05);
            let ticks = log_ticks(lo, hi, &v).iter().map(|t| t.log10()).collect();
            Axis {
                log,
                lo: l - pad,
                hi: h + pad,
                ticks,
            }
        } else {
            if include_zero && lo > 0.0 && lo < 0.5 * hi {
                lo = 0.0;
            }
            if hi - lo < 1e-12 {
                let w = if lo.abs() > 0.0 { lo.abs() * 0.1 } else { 0.5 };
                lo -= w;
                hi += w;
            }
            let pad = (hi - lo) * pad_frac;
            let (l, h) = (lo - pad, hi + pad);
            Axis {
                log,
                lo: l,
                hi: h,
                ticks: nice_ticks(l, h, 7),
            }
        }
    }

    /// A categorical axis: categories `0..n` at integer positions, half a slot of padding.
    fn categories(n: usize) -> Axis {
        Axis {
            log: false,
            lo: -0.5,
            hi: n as f64 - 0.5,
            ticks: (0..n).map(|i| i as f64).collect(),
        }
    }

    fn map(&self, x: f64) -> f64 {
        if self.log {
            x.log10()
        } else {
            x
        }
    }

    fn coord(&self) -> TickAxis {
        TickAxis::new(self.lo, self.hi, self.ticks.clone())
    }

    fn label(&self, u: f64) -> String {
        if self.log {
            fmt_num(10f64.powf(u))
        } else {
            let s = fmt_num(u);
            if s == "-0" {
                "0".into()
            } else {
                s
            }
        }
    }
}

/// Chooses the legend corner with the fewest data points near it.
fn legend_corner(points: &[(f64, f64)], x: &Axis, y: &Axis) -> SeriesLabelPosition {
    let corners = [
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0),
        (SeriesLabelPosition::UpperRight, 1.0, 1.0),
        (SeriesLabelPosition::LowerRight, 1.0, 0.0),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
    ];
    let norm = |(px, py): (f64, f64)| {
        (
            (x.map(px) - x.lo) / (x.hi - x.lo),
            (y.map(py) - y.lo) / (y.hi - y.lo),
        )
    };
    let mut best = (SeriesLabelPosition::UpperLeft, usize::MAX);
    for (pos, cx, cy) in corners {
        let n = points
            .iter()
            .map(|p| norm(*p))
            .filter(|(u, v)| (u - cx).abs() < 0.4 && (v - cy).abs() < 0.4)
            .count();
        if n < best.1 {
            best = (pos, n);
        }
    }
    best.0
}

/// The chart every figure draws on: both coordinates are [`TickAxis`].
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<TickAxis, TickAxis>>;

/// Colour of the grid lines.
const GRID: RGBColor = RGBColor(225, 225, 225);

/// Which grid lines a chart draws.
#[derive(Clone, Copy)]
enum Grid {
    /// Both directions.
    Full,
    /// Horizontal lines only (bars).
    Horizontal,
    /// None (heat-maps).
    Off,
}

/// How the ticks of one side of a chart are labelled.
enum Labels<'f> {
    /// Numbers, formatted by the axis (log axes show the value, not its log).
    Axis(&'f Axis),
    /// Category names at integer positions (see [`Axis::categories`]).
    Names(&'f [String]),
}

impl Labels<'_> {
    fn text(&self, u: f64) -> String {
        match self {
            Labels::Axis(a) => a.label(u),
            Labels::Names(names) => names.get(u.round() as usize).cloned().unwrap_or_default(),
        }
    }
}

/// One side (x or y) of a chart: its range and ticks, title and tick labels.
struct Side<'f> {
    axis: &'f Axis,
    title: &'f str,
    labels: Labels<'f>,
}

impl<'f> Side<'f> {
    /// A numeric side labelled by its own axis.
    fn numeric(axis: &'f Axis, title: &'f str) -> Side<'f> {
        Side {
            axis,
            title,
            labels: Labels::Axis(axis),
        }
    }

    /// A side whose ticks carry category names.
    fn named(axis: &'f Axis, title: &'f str, names: &'f [String]) -> Side<'f> {
        Side {
            axis,
            title,
            labels: Labels::Names(names),
        }
    }
}

/// The frame shared by every figure: the caption, margins, axes with their titles and tick
/// labels, and the grid.
fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: Side,
    y: Side,
    grid: Grid,
) -> Result<Chart<'a, DB>, String> {
    let mut chart = t!(ChartBuilder::on(area)
        .caption(title, (FONT, 21))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(66)
        .build_cartesian_2d(x.axis.coord(), y.axis.coord()));
    let xfmt = |u: &f64| x.labels.text(*u);
    let yfmt = |u: &f64| y.labels.text(*u);
    let mut mesh = chart.configure_mesh();
    match grid {
        Grid::Full => {}
        Grid::Horizontal => {
            mesh.disable_x_mesh();
        }
        Grid::Off => {
            mesh.disable_mesh();
        }
    }
    t!(mesh
        .x_desc(x.title)
        .y_desc(y.title)
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .bold_line_style(GRID)
        .draw());
    Ok(chart)
}

/// Draws the legend box of `chart` at `position`.
fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
    font_size: u32,
) -> Result<(), String> {
    t!(chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font((FONT, font_size))
        .draw());
    Ok(())
}

/// Draws a polyline; with a label, it gets a legend entry drawn by `swatch`.
fn draw_line<'a, DB, E>(
    chart: &mut Chart<'a, DB>,
    points: Vec<(f64, f64)>,
    style: ShapeStyle,
    label: Option<&str>,
    swatch: impl Fn((i32, i32)) -> E + 'a,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    E: IntoDynElement<'a, DB, (i32, i32)>,
{
    let series = t!(chart.draw_series(LineSeries::new(points, style)));
    if let Some(label) = label {
        series.label(label).legend(swatch);
    }
    Ok(())
}

/// Legend swatch of a line: a short horizontal stroke.
fn dash(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style)
}

/// Legend swatch of a vertical marker line: a short vertical stroke `dx` pixels in.
fn tick(style: ShapeStyle, dx: i32) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x + dx, y - 7), (x + dx, y + 7)], style)
}

/// Draws horizontal reference lines across the x range, grey, each with a legend entry.
fn draw_hlines<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    lines: &[RefLine],
    x: &Axis,
    y: &Axis,
) -> Result<(), String> {
    let style = ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(1);
    for h in lines {
        let at = y.map(h.at);
        draw_line(
            chart,
            vec![(x.lo, at), (x.hi, at)],
            style,
            Some(&h.label),
            dash(style),
        )?;
    }
    Ok(())
}

/// A curve drawn as a plain line (e.g. a theory prediction).
#[derive(Clone, Debug, Default)]
pub struct Curve {
    /// Legend label.
    pub label: String,
    /// Points (x, y), drawn in order.
    pub points: Vec<(f64, f64)>,
}

/// A horizontal or vertical reference line with a legend label.
#[derive(Clone, Debug)]
pub struct RefLine {
    /// Position (y for horizontal, x for vertical).
    pub at: f64,
    /// Legend label.
    pub label: String,
}

/// Metric vs x with one line per group, mean ± s.e. error bars.
#[derive(Clone, Debug, Default)]
pub struct LinePlot {
    /// Title.
    pub title: String,
    /// x-axis title.
    pub x_label: String,
    /// y-axis title.
    pub y_label: String,
    /// Log-scaled x axis (x > 0 only).
    pub log_x: bool,
    /// Log-scaled y axis (y > 0 only).
    pub log_y: bool,
    /// Category names when x is categorical (x = index).
    pub x_categories: Option<Vec<String>>,
    /// The data lines.
    pub series: Vec<Series>,
    /// Extra curves (theory overlays), drawn dashed-free in black/grey.
    pub overlays: Vec<Curve>,
    /// Horizontal reference lines (levels).
    pub hlines: Vec<RefLine>,
    /// Vertical reference lines (e.g. α*).
    pub vlines: Vec<RefLine>,
}

impl Draw for LinePlot {
    fn check(&self) -> Result<(), PlotError> {
        let n: usize = self
            .series
            .iter()
            .map(|s| s.points.iter().filter(|p| p.stats.mean.is_finite()).count())
            .sum::<usize>()
            + self.overlays.iter().map(|c| c.points.len()).sum::<usize>();
        require(n > 0, &self.title, "no finite values to plot")
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        let mut pts = Vec::new();
        for s in &self.series {
            for p in &s.points {
                if p.stats.mean.is_finite() {
                    xs.push(p.x);
                    ys.push(p.stats.mean - p.stats.se);
                    ys.push(p.stats.mean + p.stats.se);
                    pts.push((p.x, p.stats.mean));
                }
            }
        }
        for c in &self.overlays {
            for &(x, y) in &c.points {
                xs.push(x);
                ys.push(y);
                pts.push((x, y));
            }
        }
        for h in &self.hlines {
            ys.push(h.at);
        }
        let data_xs = xs.clone();
        for v in &self.vlines {
            if v.at.is_finite() {
                xs.push(v.at);
            }
        }
        let xa = match &self.x_categories {
            Some(cats) => Axis::categories(cats.len()),
            None => {
                let mut xa = Axis::fit(&xs, self.log_x, 0.04, false);
                if xa.log {
                    // Ticks at the data's grid only (α* marks are labelled in the legend).
                    let (lo, hi) = (10f64.powf(xa.lo), 10f64.powf(xa.hi));
                    xa.ticks = log_ticks(lo, hi, &data_xs)
                        .iter()
                        .map(|t| t.log10())
                        .collect();
                }
                xa
            }
        };
        let ya = Axis::fit(&ys, self.log_y, 0.06, true);
        let corner = legend_corner(&pts, &xa, &ya);
        let x_side = match &self.x_categories {
            Some(cats) => Side::named(&xa, &self.x_label, cats),
            None => Side::numeric(&xa, &self.x_label),
        };
        let y_side = Side::numeric(&ya, &self.y_label);
        let mut chart = chart(root, &self.title, x_side, y_side, Grid::Full)?;
        draw_hlines(&mut chart, &self.hlines, &xa, &ya)?;
        for (k, v) in self.vlines.iter().enumerate() {
            if !v.at.is_finite() {
                continue;
            }
            let x = xa.map(v.at);
            let style = ShapeStyle::from(&series_color(k).mix(0.6)).stroke_width(2);
            let points = vec![(x, ya.lo), (x, ya.hi)];
            draw_line(&mut chart, points, style, Some(&v.label), tick(style, 10))?;
        }
        for (i, s) in self.series.iter().enumerate() {
            let color = series_color(i);
            let line: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|p| p.stats.mean.is_finite() && (!xa.log || p.x > 0.0))
                .map(|p| (xa.map(p.x), ya.map(p.stats.mean)))
                .collect();
            let style = ShapeStyle::from(&color).stroke_width(2);
            draw_line(
                &mut chart,
                line.clone(),
                style,
                Some(&s.label),
                move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (20, 0)], style)
                        + Circle::new((10, 0), 3, color.filled())
                },
            )?;
            t!(chart.draw_series(line.iter().map(|p| Circle::new(*p, 3, color.filled()))));
            let bars = s
                .points
                .iter()
                .filter(|p| p.stats.mean.is_finite() && p.stats.n > 1 && (!xa.log || p.x > 0.0));
            t!(chart.draw_series(bars.map(|p| {
                let lo = p.stats.mean - p.stats.se;
                let lo = if ya.log {
                    lo.max(p.stats.mean * 0.01)
                } else {
                    lo
                };
                ErrorBar::new_vertical(
                    xa.map(p.x),
                    ya.map(lo),
                    ya.map(p.stats.mean),
                    ya.map(p.stats.mean + p.stats.se),
                    color.stroke_width(1),
                    8,
                )
            })));
        }
        for c in &self.overlays {
            let style = ShapeStyle::from(&BLACK).stroke_width(2);
            let line: Vec<(f64, f64)> = c
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!xa.log || *x > 0.0))
                .map(|&(x, y)| (xa.map(x), ya.map(y)))
                .collect();
            draw_line(&mut chart, line, style, Some(&c.label), dash(style))?;
        }
        draw_legend(&mut chart, corner, 14)
    }
}

/// A phase diagram: a grid of cells (x categories × y categories) coloured by a metric, with
/// the value printed in each cell and a colour bar.
#[derive(Clone, Debug, Default)]
pub struct Heatmap {
    /// Title.
    pub title: String,
    /// x-axis title.
    pub x_label: String,
    /// y-axis title.
    pub y_label: String,
    /// Colour-bar title (the metric).
    pub z_label: String,
    /// x categories (columns), left to right.
    pub x_values: Vec<String>,
    /// y categories (rows), bottom to top.
    pub y_values: Vec<String>,
    /// `z[j][i]`: the value at row j (y), column i (x); `None` = no data (drawn grey).
    pub z: Vec<Vec<Option<f64>>>,
    /// Colour range; default: the data's min and max.
    pub z_range: Option<(f64, f64)>,
}

impl Heatmap {
    fn range(&self) -> (f64, f64) {
        if let Some(r) = self.z_range {
            return r;
        }
        let vals: Vec<f64> = self
            .z
            .iter()
            .flatten()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if hi - lo < 1e-12 {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi)
        }
    }
}

impl Draw for Heatmap {
    fn check(&self) -> Result<(), PlotError> {
        let any = self
            .z
            .iter()
            .flatten()
            .any(|v| v.is_some_and(f64::is_finite));
        require(
            !self.x_values.is_empty() && !self.y_values.is_empty() && any,
            &self.title,
            "empty heat-map",
        )?;
        require(
            self.z.len() == self.y_values.len()
                && self.z.iter().all(|r| r.len() == self.x_values.len()),
            &self.title,
            &format!(
                "z must be {} rows × {} columns",
                self.y_values.len(),
                self.x_values.len()
            ),
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (w, _) = root.dim_in_pixel();
        let (main, bar) = root.split_horizontally(w as i32 - 120);
        let (zlo, zhi) = self.range();
        let nx = self.x_values.len();
        // Cell (i, j) is the unit square centred on (i, j).
        let xa = Axis::categories(nx);
        let ya = Axis::categories(self.y_values.len());
        let mut chart = chart(
            &main,
            &self.title,
            Side::named(&xa, &self.x_label, &self.x_values),
            Side::named(&ya, &self.y_label, &self.y_values),
            Grid::Off,
        )?;
        let font_size = if nx > 10 { 11 } else { 14 };
        for (j, row) in self.z.iter().enumerate() {
            for (i, v) in row.iter().enumerate() {
                let (x, y) = (i as f64, j as f64);
                let (fill, text) = match v {
                    Some(z) if z.is_finite() => {
                        let c = viridis((z - zlo) / (zhi - zlo));
                        (c, Some(fmt_num(*z)))
                    }
                    _ => (RGBColor(210, 210, 210), None),
                };
                t!(chart.draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    fill.filled(),
                ))));
                if let Some(text) = text {
                    let lum = 0.299 * fill.0 as f64 + 0.587 * fill.1 as f64 + 0.114 * fill.2 as f64;
                    let color = if lum > 140.0 { BLACK } else { WHITE };
                    let style = TextStyle::from((FONT, font_size).into_font())
                        .color(&color)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    t!(chart.draw_series(std::iter::once(Text::new(text, (x, y), style))));
                }
            }
        }
        // Colour bar.
        let zk = TickAxis::new(zlo, zhi, nice_ticks(zlo, zhi, 6));
        let zfmt = |u: &f64| fmt_num(*u);
        let mut cb = t!(ChartBuilder::on(&bar)
            .margin_top(48)
            .margin_bottom(62)
            .margin_right(8)
            .right_y_label_area_size(56)
            .build_cartesian_2d(TickAxis::new(0.0, 1.0, vec![]), zk));
        t!(cb
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_label_formatter(&zfmt)
            .label_style((FONT, 13))
            .draw());
        let steps = 100;
        t!(cb.draw_series((0..steps).map(|k| {
            let a = zlo + (zhi - zlo) * k as f64 / steps as f64;
            let b = zlo + (zhi - zlo) * (k + 1) as f64 / steps as f64;
            Rectangle::new(
                [(0.0, a), (1.0, b)],
                viridis(k as f64 / (steps - 1) as f64).filled(),
            )
        })));
        let label_style =
            TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        t!(bar.draw(&Text::new(self.z_label.clone(), (50, 20), label_style)));
        Ok(())
    }
}

/// One run's per-step values.
#[derive(Clone, Debug, Default)]
pub struct Trajectory {
    /// Legend label (e.g. the run folder's name).
    pub label: String,
    /// (step, value) points.
    pub points: Vec<(f64, f64)>,
}

/// Metric vs step, one line per run.
#[derive(Clone, Debug, Default)]
pub struct TrajectoryPlot {
    /// Title.
    pub title: String,
    /// x-axis title (usually `stage-1 step`).
    pub x_label: String,
    /// y-axis title (the metric).
    pub y_label: String,
    /// The runs.
    pub runs: Vec<Trajectory>,
    /// Log-scaled y axis.
    pub log_y: bool,
}

impl Draw for TrajectoryPlot {
    fn check(&self) -> Result<(), PlotError> {
        let any = self.runs.iter().any(|r| !r.points.is_empty());
        require(any, &self.title, "no trajectory points")
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let pts: Vec<(f64, f64)> = self
            .runs
            .iter()
            .flat_map(|r| r.points.iter().copied())
            .collect();
        let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
        let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
        let xa = Axis::fit(&xs, false, 0.02, false);
        let ya = Axis::fit(&ys, self.log_y, 0.06, true);
        let corner = legend_corner(&pts, &xa, &ya);
        let mut chart = chart(
            root,
            &self.title,
            Side::numeric(&xa, &self.x_label),
            Side::numeric(&ya, &self.y_label),
            Grid::Full,
        )?;
        let legend = self.runs.len() <= 12;
        for (i, r) in self.runs.iter().enumerate() {
            let color = series_color(i);
            let style = ShapeStyle::from(&color).stroke_width(2);
            let line: Vec<(f64, f64)> = r
                .points
                .iter()
                .filter(|(_, y)| y.is_finite() && (!ya.log || *y > 0.0))
                .map(|&(x, y)| (x, ya.map(y)))
                .collect();
            let label = legend.then_some(r.label.as_str());
            draw_line(&mut chart, line.clone(), style, label, dash(style))?;
            if line.len() <= 40 {
                t!(chart.draw_series(line.iter().map(|p| Circle::new(*p, 2, color.filled()))));
            }
        }
        if legend {
            draw_legend(&mut chart, corner, 13)?;
        }
        Ok(())
    }
}

/// Bars (one per category) with mean ± s.e. error bars and optional reference lines.
#[derive(Clone, Debug, Default)]
pub struct BarPlot {
    /// Title.
    pub title: String,
    /// x-axis title.
    pub x_label: String,
    /// y-axis title.
    pub y_label: String,
    /// (category, mean, s.e.) in drawing order.
    pub bars: Vec<(String, f64, f64)>,
    /// Horizontal reference lines.
    pub hlines: Vec<RefLine>,
}

impl Draw for BarPlot {
    fn check(&self) -> Result<(), PlotError> {
        require(
            self.bars.iter().any(|b| b.1.is_finite()),
            &self.title,
            "no bars",
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let mut ys: Vec<f64> = vec![0.0];
        for b in &self.bars {
            ys.push(b.1 + b.2);
            ys.push(b.1 - b.2);
        }
        ys.extend(self.hlines.iter().map(|h| h.at));
        let ya = Axis::fit(&ys, false, 0.06, true);
        let xa = Axis::categories(self.bars.len());
        let names: Vec<String> = self.bars.iter().map(|b| b.0.clone()).collect();
        let mut chart = chart(
            root,
            &self.title,
            Side::named(&xa, &self.x_label, &names),
            Side::numeric(&ya, &self.y_label),
            Grid::Horizontal,
        )?;
        for (i, (_, mean, se)) in self.bars.iter().enumerate() {
            if !mean.is_finite() {
                continue;
            }
            let x = i as f64;
            let color = series_color(i);
            t!(chart.draw_series(std::iter::once(Rectangle::new(
                [(x - 0.3, 0.0f64.max(ya.lo)), (x + 0.3, *mean)],
                color.mix(0.85).filled(),
            ))));
            if *se > 0.0 {
                t!(chart.draw_series(std::iter::once(ErrorBar::new_vertical(
                    x,
                    mean - se,
                    *mean,
                    mean + se,
                    BLACK.stroke_width(1),
                    10,
                ))));
            }
            let style =
                TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            t!(chart.draw_series(std::iter::once(Text::new(
                fmt_num(*mean),
                (x, mean + se.max(0.0) + (ya.hi - ya.lo) * 0.01),
                style,
            ))));
        }
        if !self.hlines.is_empty() {
            draw_hlines(&mut chart, &self.hlines, &xa, &ya)?;
            draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 13)?;
        }
        Ok(())
    }
}

/// A histogram of eigenvalues with a vertical line at the bulk edge; eigenvalues beyond the
/// edge are marked individually (they are the signal outliers).
#[derive(Clone, Debug, Default)]
pub struct SpectrumPlot {
    /// Title.
    pub title: String,
    /// x-axis title.
    pub x_label: String,
    /// The eigenvalues.
    pub eigenvalues: Vec<f64>,
    /// Number of bins (0 = about √n, between 10 and 80).
    pub bins: usize,
    /// Bulk edge(s) with labels (e.g. `λ+ (Marchenko–Pastur)`).
    pub edges: Vec<RefLine>,
}

impl Draw for SpectrumPlot {
    fn check(&self) -> Result<(), PlotError> {
        require(
            self.eigenvalues.iter().any(|v| v.is_finite()),
            &self.title,
            "no eigenvalues",
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let ev: Vec<f64> = self
            .eigenvalues
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let mut xs = ev.clone();
        xs.extend(self.edges.iter().map(|e| e.at));
        let xa = Axis::fit(&xs, false, 0.03, false);
        let bins = if self.bins > 0 {
            self.bins
        } else {
            ((ev.len() as f64).sqrt().round() as usize).clamp(10, 80)
        };
        let (lo, hi) = ev
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            });
        let width = if hi > lo {
            (hi - lo) / bins as f64
        } else {
            1.0
        };
        let mut counts = vec![0usize; bins];
        for v in &ev {
            let k = (((v - lo) / width).floor() as usize).min(bins - 1);
            counts[k] += 1;
        }
        let max_count = counts.iter().copied().max().unwrap_or(1) as f64;
        let ya = Axis::fit(&[0.0, max_count], false, 0.06, true);
        let mut chart = chart(
            root,
            &self.title,
            Side::numeric(&xa, &self.x_label),
            Side::numeric(&ya, "count"),
            Grid::Full,
        )?;
        let bar_color = series_color(0);
        t!(chart
            .draw_series(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(k, c)| {
                        let a = lo + k as f64 * width;
                        Rectangle::new(
                            [(a, 0.0), (a + width, *c as f64)],
                            bar_color.mix(0.8).filled(),
                        )
                    })
            )
            .map(|s| {
                s.label(format!("eigenvalues (n = {})", ev.len()))
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 16, y + 5)], bar_color.mix(0.8).filled())
                    });
            }));
        // Eigenvalues beyond the first edge (the bulk edge) are the outliers.
        let edge_max = self.edges.first().map(|e| e.at).unwrap_or(f64::NAN);
        for (k, e) in self.edges.iter().enumerate() {
            let color = if k == 0 { RED } else { series_color(k + 2) };
            let style = ShapeStyle::from(&color).stroke_width(2);
            let points = vec![(e.at, 0.0), (e.at, ya.hi)];
            draw_line(&mut chart, points, style, Some(&e.label), tick(style, 8))?;
        }
        if edge_max.is_finite() {
            let out: Vec<f64> = ev.iter().copied().filter(|v| *v > edge_max).collect();
            if !out.is_empty() {
                let c = RGBColor(214, 39, 40);
                let h = max_count * 0.08;
                t!(chart
                    .draw_series(
                        out.iter()
                            .map(|v| { TriangleMarker::new((*v, h), 7, c.filled()) })
                    )
                    .map(|s| {
                        s.label(format!("{} beyond the edge", out.len()))
                            .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 6, c.filled()));
                    }));
            }
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 14)
    }
}
