//! `mim plot`: figures from a results database or from run folders.
//!
//! ```text
//! mim plot --db results.sqlite [--sweep FILE] [--where KEY=VALUE]... --x KEY --y METRIC
//!          [--group KEY] [--kind line|logx|heatmap|bars|trajectories] [--z METRIC]
//!          [--level L [--direction up|down]] [--theory CSV [--theory-x COL] [--theory-y COL]]
//!          [--title T] [--log-y] --out BASE
//! mim plot --trajectories RUN_DIR... --y METRIC --out BASE
//! ```
//! Writes `BASE.svg` and `BASE.png`, prints their paths and the numbers read off the figure
//! (α* per line with a bootstrap CI when `--level` is given on a `logx` figure). Exit codes:
//! 0 success; 2 bad input (one line naming the option); 1 drawing or I/O failure.

use clap::Args;
use mim_plot::figures::{draw_figure, FigureData, FigureKind, FigureSpec, TheorySpec};
use mim_plot::io::read_trajectory;
use mim_plot::rows::parse_filter;
use mim_plot::{render, PlotError, TrajectoryPlot};
use mim_sweep::{Db, SweepSpec};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `mim plot`.
#[derive(Args, Debug, Default)]
pub struct PlotArgs {
    /// Results database (from `mim sweep`) to read points from.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Rows from a JSON-lines file instead of a database (one object per point, e.g. from
    /// `mim results export --jsonl` or a report's `rows/<id>.jsonl`).
    #[arg(long, value_name = "FILE")]
    rows: Option<PathBuf>,
    /// Only the points of this sweep file (with its axis values as parameters).
    #[arg(long, value_name = "FILE")]
    sweep: Option<PathBuf>,
    /// Only rows with this parameter value (repeatable), e.g. `--where data.d=200`.
    #[arg(long = "where", value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Run folders (with metrics.jsonl) to draw per-step trajectories from.
    #[arg(long, num_args = 1.., value_name = "RUN_DIR")]
    trajectories: Vec<PathBuf>,
    /// x parameter (dotted config key), e.g. `data.alpha1`.
    #[arg(long)]
    x: Option<String>,
    /// The metric (for a heat-map: the row parameter).
    #[arg(long)]
    y: Option<String>,
    /// Heat-map colour metric.
    #[arg(long)]
    z: Option<String>,
    /// One line per value of this parameter.
    #[arg(long)]
    group: Option<String>,
    /// line | logx | heatmap | bars | trajectories (default line).
    #[arg(long)]
    kind: Option<String>,
    /// Reference level (with `--kind logx`: marks α* per line with a bootstrap CI).
    #[arg(long)]
    level: Option<f64>,
    /// Which way the metric crosses the level: up (default) or down.
    #[arg(long)]
    direction: Option<String>,
    /// Theory CSV to overlay (e.g. from `mim theory`).
    #[arg(long, value_name = "CSV")]
    theory: Option<PathBuf>,
    /// Theory x column (default alpha).
    #[arg(long, value_name = "COL")]
    theory_x: Option<String>,
    /// Theory y column (default overlap_sq_theory).
    #[arg(long, value_name = "COL")]
    theory_y: Option<String>,
    /// Another metric drawn as extra lines (repeatable).
    #[arg(long = "also", value_name = "METRIC")]
    also: Vec<String>,
    /// A column with a theory value per point (e.g. theory_overlap_sq), drawn as a curve.
    #[arg(long, value_name = "COLUMN")]
    overlay: Option<String>,
    /// Figure title.
    #[arg(long)]
    title: Option<String>,
    /// Log-scaled y axis.
    #[arg(long)]
    log_y: bool,
    /// Output path without extension: writes OUT.svg and OUT.png.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A one-line usage error (exit 2).
fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// Reads rows from a JSON-lines file (one object per line; blank lines skipped).
pub fn read_jsonl(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| format!("{}:{}: not JSON: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Turns an exported database row (ordered columns) into a JSON object.
fn row_object(row: Vec<(String, Value)>) -> Value {
    Value::Object(row.into_iter().collect())
}

/// The ok points of `db` as JSON rows. With `sweep`, only that sweep's points, each with the
/// sweep's own axis values as parameters (a point may have been stored by another sweep
/// whose axes differ).
pub fn load_rows(db: &Path, sweep: Option<&SweepSpec>) -> Result<Vec<Value>, String> {
    let db = Db::open_read_only(db).map_err(|e| e.to_string())?;
    let rows = db.export_points_with_summary().map_err(|e| e.to_string())?;
    let rows = rows
        .into_iter()
        .map(row_object)
        .filter(|r| r["status"] == "ok");
    select(rows, sweep)
}

/// The per-step rows of `db` (optionally of one sweep's points), like [`load_rows`].
pub fn load_steps(db: &Path, sweep: Option<&SweepSpec>) -> Result<Vec<Value>, String> {
    let db = Db::open_read_only(db).map_err(|e| e.to_string())?;
    let rows = db.export_steps().map_err(|e| e.to_string())?;
    select(rows.into_iter().map(row_object), sweep)
}

fn select(
    rows: impl Iterator<Item = Value>,
    sweep: Option<&SweepSpec>,
) -> Result<Vec<Value>, String> {
    let Some(spec) = sweep else {
        return Ok(rows.collect());
    };
    let points = spec.points().map_err(|e| e.to_string())?;
    let params: HashMap<String, Value> = points
        .iter()
        .map(|p| (p.key.clone(), p.params_json()))
        .collect();
    Ok(rows
        .filter_map(|mut r| {
            let key = r.get("key")?.as_str()?.to_string();
            let own = params.get(&key)?;
            if let (Value::Object(m), Value::Object(p)) = (&mut r, own) {
                for (k, v) in p {
                    m.insert(k.clone(), v.clone());
                }
            }
            Some(r)
        })
        .collect())
}

fn parse_direction(d: Option<&str>) -> Result<mim_plot::Direction, String> {
    match d {
        None | Some("up") => Ok(mim_plot::Direction::Up),
        Some("down") => Ok(mim_plot::Direction::Down),
        Some(o) => Err(format!("--direction {o}: expected up or down")),
    }
}

/// Runs `mim plot`.
pub fn run(args: PlotArgs) -> ExitCode {
    let Some(out) = args.out.clone() else {
        return usage("--out is required (the output path without extension)");
    };
    let Some(y) = args.y.clone() else {
        return usage("--y is required (the metric, or the row parameter of a heat-map)");
    };
    if !args.trajectories.is_empty() {
        if args.db.is_some() {
            return usage("--trajectories and --db exclude each other");
        }
        let mut runs = Vec::new();
        for dir in &args.trajectories {
            match read_trajectory(dir, &y) {
                Ok(t) => runs.push(t),
                Err(e) => return usage(format!("--trajectories {e}")),
            }
        }
        let fig = TrajectoryPlot {
            title: args
                .title
                .clone()
                .unwrap_or_else(|| format!("{y} per stage-1 step")),
            x_label: "stage-1 step".into(),
            y_label: y.clone(),
            runs,
            log_y: args.log_y,
        };
        return finish(render(&fig, &out), &[]);
    }
    if args.db.is_some() && args.rows.is_some() {
        return usage("--db and --rows exclude each other");
    }
    let source = match (&args.db, &args.rows) {
        (Some(db), _) => {
            if !db.exists() {
                return usage(format!("--db {}: no such file", db.display()));
            }
            db.clone()
        }
        (None, Some(r)) => {
            if !r.exists() {
                return usage(format!("--rows {}: no such file", r.display()));
            }
            r.clone()
        }
        (None, None) => {
            return usage(
                "give --db FILE (a results database), --rows FILE (JSON lines) or --trajectories RUN_DIR...",
            )
        }
    };
    let kind = match args.kind.as_deref() {
        None => FigureKind::Line,
        Some(k) => match FigureKind::parse(k) {
            Some(FigureKind::Spectrum) | None => {
                return usage(format!(
                    "--kind {k}: expected line, logx, heatmap, bars or trajectories"
                ))
            }
            Some(k) => k,
        },
    };
    if kind != FigureKind::Trajectories && args.x.is_none() {
        return usage(format!("--x is required for --kind {}", kind.name()));
    }
    if kind == FigureKind::Heatmap && args.z.is_none() {
        return usage("--z is required for --kind heatmap (the colour metric)");
    }
    if kind != FigureKind::Heatmap && args.z.is_some() {
        return usage("--z is only for --kind heatmap");
    }
    let direction = match parse_direction(args.direction.as_deref()) {
        Ok(d) => d,
        Err(e) => return usage(e),
    };
    let mut filter = toml::Table::new();
    for f in &args.filter {
        let Some((k, v)) = parse_filter(f) else {
            return usage(format!("--where {f}: expected KEY=VALUE"));
        };
        let tv = match toml::Value::try_from(&v) {
            Ok(t) => t,
            Err(_) => return usage(format!("--where {f}: unsupported value")),
        };
        filter.insert(k, tv);
    }
    let sweep = match &args.sweep {
        Some(p) => match SweepSpec::load(p) {
            Ok(s) => Some(s),
            Err(e) => return usage(format!("--sweep {e}")),
        },
        None => None,
    };
    if let Some(t) = &args.theory {
        if !t.exists() {
            return usage(format!("--theory {}: no such file", t.display()));
        }
    }
    let spec = FigureSpec {
        kind,
        x: args.x.clone(),
        y,
        z: args.z.clone(),
        group: args.group.clone(),
        filter,
        title: args.title.clone(),
        level: args.level,
        direction,
        theory: args.theory.clone().map(|csv| TheorySpec {
            csv,
            x: args.theory_x.clone().unwrap_or_else(|| "alpha".into()),
            y: args
                .theory_y
                .clone()
                .unwrap_or_else(|| "overlap_sq_theory".into()),
            label: None,
        }),
        log_y: args.log_y,
        name: None,
        extra_y: args.also.clone(),
        overlay: args.overlay.clone(),
    };
    let rows = if args.rows.is_some() {
        match read_jsonl(&source) {
            Ok(r) => r,
            Err(e) => return usage(format!("--rows {e}")),
        }
    } else {
        match load_rows(&source, sweep.as_ref()) {
            Ok(r) => r,
            Err(e) => return usage(format!("--db {e}")),
        }
    };
    let steps = if kind == FigureKind::Trajectories {
        if args.rows.is_some() {
            return usage("--kind trajectories needs --db (per-step records) or --trajectories");
        }
        match load_steps(&source, sweep.as_ref()) {
            Ok(s) => s,
            Err(e) => return usage(format!("--db {e}")),
        }
    } else {
        Vec::new()
    };
    if rows.is_empty() {
        return usage(format!(
            "{}: no finished points{}",
            source.display(),
            if sweep.is_some() {
                " of this --sweep"
            } else {
                ""
            }
        ));
    }
    let data = FigureData {
        rows: &rows,
        steps: &steps,
        spectra: &[],
        resamples: 1000,
        base_dir: None,
    };
    match draw_figure(&spec, &data, &out) {
        Ok(d) => finish(Ok(d.figure), &d.notes),
        Err(e) => finish(Err(e), &[]),
    }
}

fn finish(r: Result<mim_plot::Figure, PlotError>, notes: &[String]) -> ExitCode {
    match r {
        Ok(f) => {
            println!("wrote {}", f.svg.display());
            if let Some(p) = &f.png {
                println!("wrote {}", p.display());
            }
            for w in &f.warnings {
                eprintln!("warning: {w}");
            }
            for n in notes {
                println!("{n}");
            }
            ExitCode::SUCCESS
        }
        // Missing keys or metrics are bad input; backend failures are runtime errors.
        Err(PlotError::NoData(m)) => usage(m),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
