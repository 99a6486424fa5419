//! Figures described declaratively ([`FigureSpec`]) and drawn from result rows: the shared
//! engine of `mim plot --db` and `mim report`.

use crate::io::Csv;
use crate::plot::{
    render, BarPlot, Curve, Figure, Heatmap, LinePlot, PlotError, RefLine, SpectrumPlot,
    Trajectory, TrajectoryPlot,
};
use crate::rows::{
    axis_title, distinct_x, filter_rows, filter_text, group_rows, is_numeric_axis, row_matches,
    row_metric, row_param, short_key, value_f64, value_label, values_equal,
};
use crate::stats::{ci_text, fmt_num, threshold_bootstrap, Crossing, Direction};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The kind of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FigureKind {
    /// Metric vs a parameter, linear x, one line per group.
    #[default]
    Line,
    /// Metric vs a parameter on a log x axis (optionally with α* marks and a theory curve).
    Logx,
    /// Phase diagram: x parameter × y parameter, colour = metric `z`.
    Heatmap,
    /// Per-step metric, one line per run.
    Trajectories,
    /// One bar per category (mean ± s.e.).
    Bars,
    /// Eigenvalue histogram with the bulk edge.
    Spectrum,
}

impl FigureKind {
    /// Parses `line|logx|heatmap|trajectories|bars|spectrum`.
    pub fn parse(s: &str) -> Option<FigureKind> {
        Some(match s {
            "line" => FigureKind::Line,
            "logx" => FigureKind::Logx,
            "heatmap" => FigureKind::Heatmap,
            "trajectories" => FigureKind::Trajectories,
            "bars" => FigureKind::Bars,
            "spectrum" => FigureKind::Spectrum,
            _ => return None,
        })
    }

    /// The name as written in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FigureKind::Line => "line",
            FigureKind::Logx => "logx",
            FigureKind::Heatmap => "heatmap",
            FigureKind::Trajectories => "trajectories",
            FigureKind::Bars => "bars",
            FigureKind::Spectrum => "spectrum",
        }
    }
}

/// A theory curve to overlay: columns of a CSV (e.g. written by `mim theory`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TheorySpec {
    /// The CSV file (relative paths are resolved by the caller).
    pub csv: PathBuf,
    /// x column (default `alpha`).
    #[serde(default = "default_theory_x")]
    pub x: String,
    /// y column (default `overlap_sq_theory`).
    #[serde(default = "default_theory_y")]
    pub y: String,
    /// Legend label (default `theory (<y>)`).
    pub label: Option<String>,
}

fn default_theory_x() -> String {
    "alpha".into()
}
fn default_theory_y() -> String {
    "overlap_sq_theory".into()
}

/// What to draw.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FigureSpec {
    /// The figure kind.
    #[serde(default)]
    pub kind: FigureKind,
    /// x parameter (dotted config key); for trajectories, ignored (x = step).
    pub x: Option<String>,
    /// The metric (for a heat-map: the row parameter).
    pub y: String,
    /// For a heat-map: the metric.
    pub z: Option<String>,
    /// One line (or bar colour) per value of this parameter.
    pub group: Option<String>,
    /// Only rows with these parameter values.
    #[serde(rename = "where", default)]
    pub filter: toml::Table,
    /// Title (default: built from the keys).
    pub title: Option<String>,
    /// A reference level: a horizontal line; on a `logx` figure, α* (crossing of the level,
    /// bootstrap CI) is marked for each line.
    pub level: Option<f64>,
    /// Which way the metric crosses `level` (default up).
    #[serde(default)]
    pub direction: Direction,
    /// Theory overlay.
    pub theory: Option<TheorySpec>,
    /// Log y axis.
    #[serde(default)]
    pub log_y: bool,
    /// File name of the figure (without extension); default: derived from the keys.
    pub name: Option<String>,
    /// More metrics drawn as extra lines on a line/logx figure (same x and groups).
    #[serde(default)]
    pub extra_y: Vec<String>,
    /// A row column holding a theory value at each point (e.g. `theory_overlap_sq`), drawn as
    /// a black curve of its mean against x.
    pub overlay: Option<String>,
}

impl<'de> Deserialize<'de> for Direction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "up" => Ok(Direction::Up),
            "down" => Ok(Direction::Down),
            other => Err(serde::de::Error::custom(format!(
                "direction `{other}`: expected \"up\" or \"down\""
            ))),
        }
    }
}

/// Converts a TOML table of `key = value` filters to JSON pairs.
pub fn filter_pairs(t: &toml::Table) -> Vec<(String, Value)> {
    t.iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Value::Null)))
        .collect()
}

/// The eigenvalues of one spectrum and its bulk edge.
#[derive(Clone, Debug, Default)]
pub struct SpectrumData {
    /// Label (title suffix).
    pub label: String,
    /// Eigenvalues.
    pub eigenvalues: Vec<f64>,
    /// Bulk edge(s) with labels.
    pub edges: Vec<RefLine>,
}

/// The data a figure is drawn from.
#[derive(Clone, Debug, Default)]
pub struct FigureData<'a> {
    /// One row per point.
    pub rows: &'a [Value],
    /// Per-step rows (each with the point's parameters and a `step`), for trajectories.
    pub steps: &'a [Value],
    /// Spectra, for spectrum figures.
    pub spectra: &'a [SpectrumData],
    /// Bootstrap resamples for α* (default 1000 when 0).
    pub resamples: usize,
    /// Folder that relative theory CSV paths are resolved against.
    pub base_dir: Option<&'a Path>,
}

/// A drawn figure and the numbers read off it.
#[derive(Clone, Debug)]
pub struct DrawnFigure {
    /// The files.
    pub figure: Figure,
    /// Title as drawn.
    pub title: String,
    /// Numbers worth quoting (α* per line with CI, fitted values), one line each.
    pub notes: Vec<String>,
}

/// The default title of a figure.
pub fn default_title(spec: &FigureSpec) -> String {
    let mut t = match spec.kind {
        FigureKind::Heatmap => format!(
            "{} over {} × {}",
            spec.z.as_deref().unwrap_or("?"),
            short_key(spec.x.as_deref().unwrap_or("?")),
            short_key(&spec.y)
        ),
        FigureKind::Trajectories => format!("{} per stage-1 step", spec.y),
        FigureKind::Spectrum => "spectrum".to_string(),
        _ => format!(
            "{} vs {}",
            spec.y,
            short_key(spec.x.as_deref().unwrap_or("?"))
        ),
    };
    let f = filter_pairs(&spec.filter);
    if !f.is_empty() {
        t.push_str(&format!(" ({})", filter_text(&f)));
    }
    t
}

/// The default file stem of a figure.
pub fn default_name(spec: &FigureSpec) -> String {
    let mut parts = vec![spec.kind.name().to_string(), spec.y.clone()];
    if let Some(x) = &spec.x {
        parts.push(x.clone());
    }
    if let Some(z) = &spec.z {
        parts.push(z.clone());
    }
    for (k, v) in filter_pairs(&spec.filter) {
        parts.push(format!("{k}-{}", value_label(&v)));
    }
    parts
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The reference line of a figure's `level`.
fn level_line(level: f64) -> RefLine {
    RefLine {
        at: level,
        label: format!("level {}", fmt_num(level)),
    }
}

fn need<'a>(v: &'a Option<String>, what: &str, kind: FigureKind) -> Result<&'a str, PlotError> {
    v.as_deref()
        .ok_or_else(|| PlotError::NoData(format!("a {} figure needs `{what}`", kind.name())))
}

/// Draws `spec` from `data` into `<out_base>.svg/.png`.
pub fn draw_figure(
    spec: &FigureSpec,
    data: &FigureData,
    out_base: &Path,
) -> Result<DrawnFigure, PlotError> {
    let filter = filter_pairs(&spec.filter);
    let rows = filter_rows(data.rows, &filter);
    let title = spec.title.clone().unwrap_or_else(|| default_title(spec));
    let mut notes = Vec::new();
    let resamples = if data.resamples == 0 {
        1000
    } else {
        data.resamples
    };
    let figure = match spec.kind {
        FigureKind::Line | FigureKind::Logx => {
            let x = need(&spec.x, "x", spec.kind)?;
            let mut series =
                group_rows(&rows, x, spec.group.as_deref(), &spec.y).map_err(PlotError::NoData)?;
            if !spec.extra_y.is_empty() {
                let label = |s: &mut crate::rows::Series, m: &str| {
                    s.label = if s.group.is_some() {
                        format!("{m}, {}", s.label)
                    } else {
                        m.to_string()
                    };
                };
                for s in &mut series {
                    label(s, &spec.y);
                }
                for m in &spec.extra_y {
                    let mut more = group_rows(&rows, x, spec.group.as_deref(), m)
                        .map_err(PlotError::NoData)?;
                    for s in &mut more {
                        label(s, m);
                    }
                    series.extend(more);
                }
            }
            let categorical = !is_numeric_axis(&rows, x);
            let x_categories =
                categorical.then(|| distinct_x(&series).into_iter().map(|c| c.1).collect());
            let mut hlines = Vec::new();
            let mut vlines = Vec::new();
            if let Some(level) = spec.level {
                hlines.push(level_line(level));
                if spec.kind == FigureKind::Logx && !categorical {
                    for (i, s) in series.iter().enumerate() {
                        if let Some(t) = threshold_bootstrap(
                            &s.seed_points(),
                            level,
                            spec.direction,
                            resamples,
                            i as u64,
                        ) {
                            notes.push(format!(
                                "{}: {}* {}{} ({} crosses {})",
                                s.label,
                                short_key(x),
                                t.estimate.relation(),
                                ci_text(t.ci95),
                                spec.y,
                                fmt_num(level)
                            ));
                            if let Crossing::At(a) = t.estimate {
                                vlines.push(RefLine {
                                    at: a,
                                    label: format!(
                                        "{}* = {} ({})",
                                        short_key(x),
                                        fmt_num(a),
                                        s.label
                                    ),
                                });
                            }
                        }
                    }
                }
            }
            let mut overlays = Vec::new();
            if let Some(col) = &spec.overlay {
                let th = group_rows(&rows, x, None, col).map_err(PlotError::NoData)?;
                overlays.push(Curve {
                    label: col.clone(),
                    points: th[0].points.iter().map(|p| (p.x, p.stats.mean)).collect(),
                });
            }
            if let Some(th) = &spec.theory {
                let path = match data.base_dir {
                    Some(b) if th.csv.is_relative() => b.join(&th.csv),
                    _ => th.csv.clone(),
                };
                let csv = Csv::read(&path).map_err(PlotError::NoData)?;
                let mut pts = csv
                    .xy(&th.x, &th.y)
                    .map_err(|e| PlotError::NoData(format!("{}: {e}", path.display())))?;
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                overlays.push(Curve {
                    label: th
                        .label
                        .clone()
                        .unwrap_or_else(|| format!("theory ({})", th.y)),
                    points: pts,
                });
            }
            render(
                &LinePlot {
                    title: title.clone(),
                    x_label: axis_title(x),
                    y_label: spec.y.clone(),
                    log_x: spec.kind == FigureKind::Logx,
                    log_y: spec.log_y,
                    x_categories,
                    series,
                    overlays,
                    hlines,
                    vlines,
                },
                out_base,
            )?
        }
        FigureKind::Bars => {
            let x = need(&spec.x, "x", spec.kind)?;
            let series =
                group_rows(&rows, x, spec.group.as_deref(), &spec.y).map_err(PlotError::NoData)?;
            let mut bars = Vec::new();
            for s in &series {
                for p in &s.points {
                    let label = match &s.group {
                        Some(g) => format!("{} · {}", p.x_label, value_label(g)),
                        None => p.x_label.clone(),
                    };
                    bars.push((label, p.stats.mean, p.stats.se));
                }
            }
            let hlines = spec.level.map(level_line).into_iter().collect();
            render(
                &BarPlot {
                    title: title.clone(),
                    x_label: axis_title(x),
                    y_label: spec.y.clone(),
                    bars,
                    hlines,
                },
                out_base,
            )?
        }
        FigureKind::Heatmap => {
            let x = need(&spec.x, "x", spec.kind)?;
            let z = need(&spec.z, "z", spec.kind)?;
            let series = group_rows(&rows, x, Some(&spec.y), z).map_err(PlotError::NoData)?;
            let xs = distinct_x(&series);
            let y_values: Vec<String> = series
                .iter()
                .map(|s| s.group.as_ref().map(value_label).unwrap_or_default())
                .collect();
            let zs = series
                .iter()
                .map(|s| {
                    xs.iter()
                        .map(|(xv, _)| s.at(*xv).map(|p| p.stats.mean))
                        .collect()
                })
                .collect();
            render(
                &Heatmap {
                    title: title.clone(),
                    x_label: axis_title(x),
                    y_label: axis_title(&spec.y),
                    z_label: z.to_string(),
                    x_values: xs.into_iter().map(|x| x.1).collect(),
                    y_values,
                    z: zs,
                    z_range: None,
                },
                out_base,
            )?
        }
        FigureKind::Trajectories => {
            let runs = trajectories_from_steps(data.steps, &filter, spec.group.as_deref(), &spec.y)
                .map_err(PlotError::NoData)?;
            render(
                &TrajectoryPlot {
                    title: title.clone(),
                    x_label: "stage-1 step".into(),
                    y_label: spec.y.clone(),
                    runs,
                    log_y: spec.log_y,
                },
                out_base,
            )?
        }
        FigureKind::Spectrum => {
            let s = data
                .spectra
                .first()
                .ok_or_else(|| PlotError::NoData(format!("{title}: no spectrum to draw")))?;
            for e in &s.edges {
                let above = s.eigenvalues.iter().filter(|v| **v > e.at).count();
                notes.push(format!("{}: {above} eigenvalue(s) above", e.label));
            }
            let t = if s.label.is_empty() {
                title.clone()
            } else {
                format!("{title}: {}", s.label)
            };
            render(
                &SpectrumPlot {
                    title: t,
                    x_label: "eigenvalue".into(),
                    eigenvalues: s.eigenvalues.clone(),
                    bins: 0,
                    edges: s.edges.clone(),
                },
                out_base,
            )?
        }
    };
    Ok(DrawnFigure {
        figure,
        title,
        notes,
    })
}

/// A run being collected: key, trajectory, group sort key, seed.
type RunEntry = (String, Trajectory, (u8, f64, String), f64);

/// Builds one trajectory per point from per-step rows (`key`, the point's parameters, `step`,
/// metrics): rows matching `filter`, `stage1` records only (when a `stage` field is present),
/// labelled by the group parameter and the seed.
pub fn trajectories_from_steps(
    steps: &[Value],
    filter: &[(String, Value)],
    group: Option<&str>,
    metric: &str,
) -> Result<Vec<Trajectory>, String> {
    let mut runs: Vec<RunEntry> = Vec::new();
    let mut any_metric = false;
    for r in steps.iter().filter(|r| row_matches(r, filter)) {
        if r.get("stage")
            .and_then(|s| s.as_str())
            .is_some_and(|s| s != "stage1")
        {
            continue;
        }
        let (Some(step), Some(y)) = (r.get("step").and_then(value_f64), row_metric(r, metric))
        else {
            continue;
        };
        any_metric = true;
        let key = r
            .get("key")
            .map(value_label)
            .unwrap_or_else(|| "run".into());
        let seed = row_param(r, "seed").map(value_label);
        let gv = group.and_then(|g| row_param(r, g).cloned());
        match runs.iter_mut().find(|x| x.0 == key) {
            Some(x) => x.1.points.push((step, y)),
            None => {
                let mut label = match (&gv, group) {
                    (Some(v), Some(g)) => format!("{} = {}", short_key(g), value_label(v)),
                    _ => key.clone(),
                };
                if let Some(s) = &seed {
                    label.push_str(&format!(", seed {s}"));
                }
                let sort = match &gv {
                    Some(v) if v.is_number() => (0, value_f64(v).unwrap_or(0.0), String::new()),
                    Some(v) => (1, 0.0, value_label(v)),
                    None => (2, 0.0, String::new()),
                };
                let seed_num = seed.and_then(|s| s.parse().ok()).unwrap_or(0.0);
                runs.push((
                    key,
                    Trajectory {
                        label,
                        points: vec![(step, y)],
                    },
                    sort,
                    seed_num,
                ));
            }
        }
    }
    if !any_metric {
        return Err(format!("no per-step record has the metric `{metric}`"));
    }
    runs.sort_by(|a, b| {
        a.2.partial_cmp(&b.2)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.3.total_cmp(&b.3))
    });
    Ok(runs
        .into_iter()
        .map(|(_, mut t, _, _)| {
            t.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            t
        })
        .collect())
}

/// Whether two filter lists select the same values (for tests and callers comparing specs).
pub fn same_filter(a: &[(String, Value)], b: &[(String, Value)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && values_equal(v, v2)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trajectories_group_and_sort() {
        let steps = vec![
            json!({"key": "b", "model.init_scale": 0.1, "seed": 0, "stage": "stage1", "step": 1, "power_iteration_cos": 0.9}),
            json!({"key": "b", "model.init_scale": 0.1, "seed": 0, "stage": "stage1", "step": 0, "power_iteration_cos": 1.0}),
            json!({"key": "a", "model.init_scale": 0.001, "seed": 0, "stage": "stage1", "step": 0, "power_iteration_cos": 1.0}),
            json!({"key": "a", "model.init_scale": 0.001, "seed": 0, "stage": "final", "step": 9, "power_iteration_cos": 1.0}),
        ];
        let t =
            trajectories_from_steps(&steps, &[], Some("model.init_scale"), "power_iteration_cos")
                .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].label, "ε0 = 0.001, seed 0");
        assert_eq!(t[1].points, vec![(0.0, 1.0), (1.0, 0.9)]);
        assert!(trajectories_from_steps(&steps, &[], None, "zz").is_err());
    }

    #[test]
    fn spec_parses_from_toml() {
        let s: FigureSpec = toml::from_str(
            r#"kind = "logx"
               x = "data.alpha1"
               y = "alignment_mean"
               group = "stage1.steps"
               level = 0.5
               where = { "data.d" = 100 }"#,
        )
        .unwrap();
        assert_eq!(s.kind, FigureKind::Logx);
        assert_eq!(
            filter_pairs(&s.filter),
            vec![("data.d".to_string(), json!(100))]
        );
        assert!(default_name(&s).starts_with("logx_alignment_mean_data-alpha1"));
        assert!(toml::from_str::<FigureSpec>("y = \"a\"\nkind = \"pie\"").is_err());
        assert!(toml::from_str::<FigureSpec>("y = \"a\"\nbogus = 1").is_err());
    }
}
