//! Plots, statistics and the HTML report for mim sweeps.
//!
//! Everything here works on plain data — result rows as JSON objects, per-step trajectories,
//! eigenvalues — so it does not depend on the results database:
//!
//! - [`rows`]: look up parameters and metrics in result rows and group them into mean ± s.e.
//!   series over seeds;
//! - [`stats`]: threshold localisation (α* where a metric crosses a level, with a bootstrap CI
//!   over seeds), power-law fits with the exponent's CI, the flatness check of α* vs d;
//! - [`plot`]: SVG + PNG figures (line plots with error bars and theory overlays, heat-maps,
//!   trajectories, bars, spectra);
//! - [`figures`]: figures described declaratively and drawn from rows (`mim plot`, the report);
//! - [`io`]: reading `metrics.jsonl` trajectories and CSV columns;
//! - [`report`]: report files (experiments, figures, claims, pass criteria), evaluating the
//!   criteria on rows, and writing the self-contained HTML page.
#![warn(missing_docs)]

pub mod figures;
pub mod io;
pub mod plot;
pub mod report;
pub mod rows;
pub mod stats;

pub use plot::{
    render, BarPlot, Curve, Draw, Figure, Heatmap, LinePlot, PlotError, RefLine, SpectrumPlot,
    Trajectory, TrajectoryPlot,
};
pub use rows::{group_rows, row_matches, row_metric, row_param, Series, SeriesPoint};
pub use stats::{
    flatness, mean_se, power_law_fit, threshold_bootstrap, threshold_crossing, Crossing, Direction,
    Flatness, MeanSe, PowerLaw, SeedPoint, Threshold,
};
