//! Report files, pass criteria evaluated on result rows, and the self-contained HTML page.
//!
//! A report file (TOML) lists experiments; each names a sweep (a file, or an inline table in
//! the sweep-file format), the figures to draw, the claim it checks and explicit criteria:
//!
//! ```toml
//! title = "…"
//! [[experiment]]
//! id = "E2"
//! title = "T1 sweep"
//! claim = "Per-neuron alignment grows with T1; one step is clearly worse at α = O(1)."
//! sweep = "../sweeps/report/e2-t1.toml"
//! [[experiment.figure]]
//! kind = "line"
//! x = "stage1.steps"
//! y = "alignment_mean"
//! group = "data.alpha1"
//! [[experiment.check]]
//! text = "alignment_mean at T1 = 8 exceeds T1 = 1 by ≥ 0.3 at α = 16"
//! left = { metric = "alignment_mean", where = { "stage1.steps" = 8, "data.alpha1" = 16 } }
//! op = ">="
//! right = { metric = "alignment_mean", where = { "stage1.steps" = 1, "data.alpha1" = 16 }, plus = 0.3 }
//! ```
//!
//! Operands (exactly one of the first six keys):
//! - `value = 0.99`: a constant;
//! - `metric = "m"` (+ `where`, optional `over = "key"` and `stat = "mean"|"min"|"max"`): the
//!   seed-averaged metric over the matching rows; with `over`, the metric is averaged per value
//!   of that key and `stat` taken across those averages; without it, `stat` is over rows;
//! - `threshold = "m"` (+ `x`, `level`, `direction`, `where`, `bound`): α* where the
//!   seed-averaged metric crosses `level` (linear in log x; +∞ when it never does), with a
//!   bootstrap CI over seeds; `bound = "lo"|"hi"` picks a CI end;
//! - `slope = "m"` (+ `x`, `where`, `bound`, optional `over` + `stat`): the exponent p of a fit
//!   m = C·x^p to the seed means; with `over = "key"`, at each x the `stat` (min, max, mean)
//!   of the per-value means of that key is fitted instead (e.g. the best step size per d);
//! - `flatness = "m"` (+ `x`, `level`, `direction`, `across`, `where`, `bound`): the slope of
//!   ln α* against ln `across` (e.g. `data.d`), CI from paired bootstrap draws; the `x` grid
//!   may differ per value of `across` (e.g. the smallest sample count at which a success
//!   fraction reaches 0.8, per sparsity k, on a grid shifted with k);
//! - `theory = "column"` (+ `csv`, `x` column (default `alpha`), `at`): the theory value
//!   interpolated at `at`;
//!
//! and on any of them `plus = c`, `times = c` (applied as times, then plus). Ops: `>=`, `>`,
//! `<=`, `<`, `within` (|left − right| ≤ `tol`).

use crate::figures::{filter_pairs, FigureSpec};
use crate::io::Csv;
use crate::rows::{filter_rows, filter_text, group_rows, row_metric, short_key};
use crate::stats::{
    ci_text, flatness, fmt_num, mean_se, power_law_fit, threshold_bootstrap, Crossing, Direction,
};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A parsed report file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// Page title.
    pub title: String,
    /// A paragraph under the title.
    #[serde(default)]
    pub intro: Option<String>,
    /// Bootstrap resamples for thresholds (default 1000).
    #[serde(default = "default_resamples")]
    pub resamples: usize,
    /// The experiments, in page order.
    #[serde(rename = "experiment", default)]
    pub experiments: Vec<ExperimentSpec>,
    /// The report file (set by [`ReportSpec::load`]).
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_resamples() -> usize {
    1000
}

/// The sweep of an experiment: a sweep file (relative to the report file) or inline.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum SweepRef {
    /// A sweep file.
    File(PathBuf),
    /// An inline sweep table (`base`, `[set]`, `[axes]`, `[[zip]]`); a relative `base` is
    /// resolved against the report file's folder.
    Inline(toml::Table),
}

/// One experiment of a report.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Short id, e.g. `E2`.
    pub id: String,
    /// Title.
    pub title: String,
    /// The claim checked (from the paper).
    pub claim: String,
    /// Setup and caveats shown under the claim.
    #[serde(default)]
    pub notes: Option<String>,
    /// The sweep (absent for experiments that need no training runs).
    #[serde(default)]
    pub sweep: Option<SweepRef>,
    /// Capabilities this experiment needs beyond training runs (e.g. `"spectral"`); the
    /// runner marks the experiment "not run" when one is missing.
    #[serde(default)]
    pub needs: Vec<String>,
    /// `[spectral]` settings (`T`, `order`, `k`, …): run `mim spectral` on every point of the
    /// sweep. Its summary fields become row metrics — prefixed `spectral.` when the points are
    /// also trained, as they are.
    #[serde(default)]
    pub spectral: Option<toml::Table>,
    /// Train every point with `mim train` (default: true without `spectral`, false with it).
    #[serde(default)]
    pub train: Option<bool>,
    /// Figures.
    #[serde(rename = "figure", default)]
    pub figures: Vec<FigureSpec>,
    /// Pass criteria: the claim is reproduced when all pass.
    #[serde(rename = "check", default)]
    pub checks: Vec<CheckSpec>,
}

/// One pass criterion: `left op right`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// The criterion in words.
    pub text: String,
    /// Left operand.
    pub left: Operand,
    /// `>=`, `>`, `<=`, `<` or `within`.
    pub op: String,
    /// Right operand.
    pub right: Operand,
    /// Tolerance for `within`.
    #[serde(default)]
    pub tol: f64,
}

/// A number computed from the rows (see the module docs).
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Operand {
    /// A constant.
    pub value: Option<f64>,
    /// A seed-averaged metric.
    pub metric: Option<String>,
    /// α* of this metric.
    pub threshold: Option<String>,
    /// Power-law exponent of this metric against `x`.
    pub slope: Option<String>,
    /// Slope of ln α* (of this metric) against ln `across`.
    pub flatness: Option<String>,
    /// A theory column.
    pub theory: Option<String>,
    /// Row filter.
    #[serde(rename = "where", default)]
    pub filter: toml::Table,
    /// x parameter (threshold, slope, flatness) or theory x column.
    pub x: Option<String>,
    /// The level crossed (threshold, flatness).
    pub level: Option<f64>,
    /// Crossing direction (default up).
    #[serde(default)]
    pub direction: Direction,
    /// The parameter α* is compared across (flatness), e.g. `data.d`.
    pub across: Option<String>,
    /// With `metric`: average per value of this key, then take `stat` across values.
    pub over: Option<String>,
    /// `mean` (default), `min` or `max`.
    pub stat: Option<String>,
    /// `estimate` (default), `lo` or `hi` (the 95 % CI ends).
    pub bound: Option<String>,
    /// Theory CSV (relative to the report file).
    pub csv: Option<PathBuf>,
    /// Theory: where to interpolate.
    pub at: Option<f64>,
    /// Added after `times`.
    #[serde(default)]
    pub plus: f64,
    /// Multiplies the value.
    pub times: Option<f64>,
}

impl ReportSpec {
    /// Reads and validates a report file (one-line errors naming the file and field).
    pub fn load(path: &Path) -> Result<ReportSpec, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("report {}: cannot read: {e}", path.display()))?;
        let mut spec: ReportSpec = toml::from_str(&text).map_err(|e| {
            let msg = e.message().to_string();
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(l) => format!("report {}:{l}: {msg}", path.display()),
                None => format!("report {}: {msg}", path.display()),
            }
        })?;
        spec.path = path.to_path_buf();
        spec.validate()?;
        Ok(spec)
    }

    /// The folder relative paths in the report are resolved against.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn validate(&self) -> Result<(), String> {
        let origin = format!("report {}", self.path.display());
        if self.experiments.is_empty() {
            return Err(format!("{origin}: no [[experiment]]"));
        }
        let mut ids = std::collections::HashSet::new();
        for e in &self.experiments {
            let at = format!("{origin}: experiment {}", e.id);
            if !ids.insert(e.id.clone()) {
                return Err(format!("{at}: id given twice"));
            }
            if e.id.is_empty()
                || !e
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "{origin}: experiment id `{}`: use letters, digits, - and _",
                    e.id
                ));
            }
            if e.spectral.is_some() && !e.needs.iter().any(|n| n == "spectral") {
                return Err(format!(
                    "{at}: an experiment with [spectral] must list needs = [\"spectral\"]"
                ));
            }
            if e.train == Some(false) && e.spectral.is_none() {
                return Err(format!("{at}: train = false needs a [spectral] section"));
            }
            for (i, f) in e.figures.iter().enumerate() {
                use crate::figures::FigureKind as K;
                let needs_x = matches!(f.kind, K::Line | K::Logx | K::Heatmap | K::Bars);
                if needs_x && f.x.is_none() {
                    return Err(format!("{at}: figure {}: `x` is required", i + 1));
                }
                if f.kind == K::Heatmap && f.z.is_none() {
                    return Err(format!("{at}: figure {}: a heatmap needs `z`", i + 1));
                }
            }
            for (i, c) in e.checks.iter().enumerate() {
                let w = format!("{at}: check {}", i + 1);
                if !matches!(c.op.as_str(), ">=" | ">" | "<=" | "<" | "within") {
                    return Err(format!(
                        "{w}: op `{}`: expected >=, >, <=, < or within",
                        c.op
                    ));
                }
                if c.op == "within" && c.tol <= 0.0 {
                    return Err(format!("{w}: `within` needs tol > 0"));
                }
                c.left.validate().map_err(|m| format!("{w}: left: {m}"))?;
                c.right.validate().map_err(|m| format!("{w}: right: {m}"))?;
            }
        }
        Ok(())
    }
}

impl Operand {
    fn validate(&self) -> Result<(), String> {
        let set = [
            self.value.is_some(),
            self.metric.is_some(),
            self.threshold.is_some(),
            self.slope.is_some(),
            self.flatness.is_some(),
            self.theory.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            return Err(
                "give exactly one of value, metric, threshold, slope, flatness, theory".into(),
            );
        }
        if (self.threshold.is_some() || self.flatness.is_some())
            && (self.x.is_none() || self.level.is_none())
        {
            return Err("threshold and flatness need `x` and `level`".into());
        }
        if self.flatness.is_some() && self.across.is_none() {
            return Err("flatness needs `across` (e.g. \"data.d\")".into());
        }
        if self.slope.is_some() && self.x.is_none() {
            return Err("slope needs `x`".into());
        }
        if self.theory.is_some() && (self.csv.is_none() || self.at.is_none()) {
            return Err("theory needs `csv` and `at`".into());
        }
        if let Some(s) = &self.stat {
            if !matches!(s.as_str(), "mean" | "min" | "max") {
                return Err(format!("stat `{s}`: expected mean, min or max"));
            }
        }
        if let Some(b) = &self.bound {
            if !matches!(b.as_str(), "estimate" | "lo" | "hi") {
                return Err(format!("bound `{b}`: expected estimate, lo or hi"));
            }
        }
        Ok(())
    }
}

/// An evaluated operand: its value and how it was obtained, with the numbers behind it.
#[derive(Clone, Debug)]
pub struct Evaluated {
    /// The value compared.
    pub value: f64,
    /// A description with the numbers (mean ± s.e. (n), α* with CI, …).
    pub text: String,
}

/// The outcome of one check.
#[derive(Clone, Debug)]
pub struct CheckResult {
    /// The criterion in words.
    pub text: String,
    /// Whether it holds.
    pub pass: bool,
    /// Left operand (or the reason it could not be evaluated).
    pub left: Result<Evaluated, String>,
    /// The operator (with the tolerance for `within`).
    pub op: String,
    /// Right operand.
    pub right: Result<Evaluated, String>,
}

fn where_text(filter: &[(String, Value)]) -> String {
    if filter.is_empty() {
        return String::new();
    }
    format!(" at {}", filter_text(filter))
}

fn pick_bound(bound: Option<&str>, est: f64, ci: Option<(f64, f64)>) -> Result<f64, String> {
    match bound.unwrap_or("estimate") {
        "lo" => ci
            .map(|c| c.0)
            .ok_or_else(|| "no CI (too few seeds or points)".into()),
        "hi" => ci
            .map(|c| c.1)
            .ok_or_else(|| "no CI (too few seeds or points)".into()),
        _ => Ok(est),
    }
}

/// Evaluates an operand on rows; `base_dir` resolves a theory CSV path; `resamples` and
/// `rng_seed` drive bootstrap CIs.
pub fn evaluate(
    op: &Operand,
    rows: &[Value],
    base_dir: &Path,
    resamples: usize,
    rng_seed: u64,
) -> Result<Evaluated, String> {
    let filter = filter_pairs(&op.filter);
    let matched = filter_rows(rows, &filter);
    let wt = where_text(&filter);
    let none_match = || format!("no rows{wt}");
    let mut ev = if let Some(v) = op.value {
        Evaluated {
            value: v,
            text: fmt_num(v),
        }
    } else if let Some(m) = &op.metric {
        let stat = op.stat.as_deref().unwrap_or("mean");
        match &op.over {
            None => {
                let vals: Vec<f64> = matched.iter().filter_map(|r| row_metric(r, m)).collect();
                if vals.is_empty() {
                    return Err(format!("no `{m}`{wt}"));
                }
                let ms = mean_se(&vals);
                match stat {
                    "min" | "max" => {
                        let v = if stat == "min" {
                            vals.iter().copied().fold(f64::INFINITY, f64::min)
                        } else {
                            vals.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                        };
                        Evaluated {
                            value: v,
                            text: format!(
                                "{stat} {m}{wt} = {} over {} runs",
                                fmt_num(v),
                                vals.len()
                            ),
                        }
                    }
                    _ => Evaluated {
                        value: ms.mean,
                        text: format!(
                            "{m}{wt} = {} ± {} (n = {})",
                            fmt_num(ms.mean),
                            fmt_num(ms.se),
                            ms.n
                        ),
                    },
                }
            }
            Some(over) => {
                let series = group_rows(&matched, over, None, m).map_err(|e| format!("{e}{wt}"))?;
                let pts = &series[0].points;
                let best = match stat {
                    "min" => pts
                        .iter()
                        .min_by(|a, b| a.stats.mean.total_cmp(&b.stats.mean)),
                    "max" => pts
                        .iter()
                        .max_by(|a, b| a.stats.mean.total_cmp(&b.stats.mean)),
                    _ => None,
                };
                match best {
                    Some(p) => Evaluated {
                        value: p.stats.mean,
                        text: format!(
                            "{stat} over {} of {m}{wt} = {} ± {} (at {} = {})",
                            short_key(over),
                            fmt_num(p.stats.mean),
                            fmt_num(p.stats.se),
                            short_key(over),
                            p.x_label
                        ),
                    },
                    None => {
                        let v = pts.iter().map(|p| p.stats.mean).sum::<f64>() / pts.len() as f64;
                        Evaluated {
                            value: v,
                            text: format!(
                                "mean over {} of {m}{wt} = {}",
                                short_key(over),
                                fmt_num(v)
                            ),
                        }
                    }
                }
            }
        }
    } else if let Some(m) = &op.threshold {
        let x = op.x.as_deref().unwrap_or_default();
        let level = op.level.unwrap_or_default();
        if matched.is_empty() {
            return Err(none_match());
        }
        let series = group_rows(&matched, x, None, m).map_err(|e| format!("{e}{wt}"))?;
        let t = threshold_bootstrap(
            &series[0].seed_points(),
            level,
            op.direction,
            resamples,
            rng_seed,
        )
        .ok_or_else(|| format!("no finite `{m}`{wt}"))?;
        let est = match t.estimate {
            Crossing::At(v) | Crossing::BelowRange(v) => v,
            Crossing::AboveRange(_) => f64::INFINITY,
        };
        let v = pick_bound(op.bound.as_deref(), est, t.ci95)?;
        Evaluated {
            value: v,
            text: format!(
                "{}* ({m} {} {}){wt} {}{} ({} resamples, {:.0}% cross inside the grid)",
                short_key(x),
                if op.direction == Direction::Up {
                    "≥"
                } else {
                    "≤"
                },
                fmt_num(level),
                t.estimate.relation(),
                ci_text(t.ci95),
                t.resamples,
                100.0 * t.frac_inside
            ),
        }
    } else if let Some(m) = &op.slope {
        let x = op.x.as_deref().unwrap_or_default();
        if matched.is_empty() {
            return Err(none_match());
        }
        // With `over`: per x, the `stat` (min/max/mean) of the per-value means of that key
        // (e.g. the best step-size constant at each d, "oracle-tuned").
        let series =
            group_rows(&matched, x, op.over.as_deref(), m).map_err(|e| format!("{e}{wt}"))?;
        let mut by_x: Vec<(f64, Vec<f64>)> = Vec::new();
        for p in series.iter().flat_map(|s| &s.points) {
            match by_x.iter_mut().find(|(x, _)| *x == p.x) {
                Some((_, v)) => v.push(p.stats.mean),
                None => by_x.push((p.x, vec![p.stats.mean])),
            }
        }
        by_x.sort_by(|a, b| a.0.total_cmp(&b.0));
        let stat = op.stat.as_deref().unwrap_or("mean");
        let xs: Vec<f64> = by_x.iter().map(|(x, _)| *x).collect();
        let ys: Vec<f64> = by_x
            .iter()
            .map(|(_, v)| match stat {
                "min" => v.iter().copied().fold(f64::INFINITY, f64::min),
                "max" => v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                _ => v.iter().sum::<f64>() / v.len() as f64,
            })
            .collect();
        let f = power_law_fit(&xs, &ys)
            .ok_or_else(|| format!("cannot fit a power law to `{m}`{wt}"))?;
        let v = pick_bound(op.bound.as_deref(), f.p, f.p_ci95)?;
        Evaluated {
            value: v,
            text: format!(
                "{m} ∝ {}^p{wt}: p = {} ± {}{} (C = {}, R² = {}, {} points)",
                short_key(x),
                fmt_num(f.p),
                fmt_num(f.p_se),
                ci_text(f.p_ci95),
                fmt_num(f.c),
                fmt_num(f.r2),
                f.n
            ),
        }
    } else if let Some(m) = &op.flatness {
        let x = op.x.as_deref().unwrap_or_default();
        let across = op.across.as_deref().unwrap_or_default();
        let level = op.level.unwrap_or_default();
        if matched.is_empty() {
            return Err(none_match());
        }
        let by_d = group_rows(&matched, x, Some(across), m).map_err(|e| format!("{e}{wt}"))?;
        let mut ds = Vec::new();
        let mut est = Vec::new();
        let mut draws = Vec::new();
        let mut parts = Vec::new();
        for s in &by_d {
            let d = s
                .group
                .as_ref()
                .and_then(crate::rows::value_f64)
                .ok_or_else(|| format!("`{across}` is not numeric"))?;
            let t = threshold_bootstrap(&s.seed_points(), level, op.direction, resamples, rng_seed)
                .ok_or_else(|| format!("no finite `{m}` at {across} = {d}"))?;
            parts.push(format!(
                "{}* {}{} at {} = {}",
                short_key(x),
                t.estimate.relation(),
                ci_text(t.ci95),
                short_key(across),
                fmt_num(d)
            ));
            let e = match t.estimate {
                Crossing::At(v) => v,
                other => {
                    return Err(format!(
                        "α* not inside the grid at {across} = {d} ({}): {}",
                        other.describe(),
                        parts.join("; ")
                    ))
                }
            };
            ds.push(d);
            est.push(e);
            draws.push(t.samples);
        }
        let f = flatness(&ds, &est, Some(&draws))
            .ok_or_else(|| format!("need α* at ≥ 2 values of {across}: {}", parts.join("; ")))?;
        let v = pick_bound(op.bound.as_deref(), f.slope, f.ci95)?;
        Evaluated {
            value: v,
            text: format!(
                "slope of ln {}* vs ln {} = {}{} ({}){wt}; {}",
                short_key(x),
                short_key(across),
                fmt_num(f.slope),
                ci_text(f.ci95),
                f.ci_method,
                parts.join("; ")
            ),
        }
    } else if let Some(col) = &op.theory {
        let csv_path = op.csv.as_ref().expect("validated");
        let path = if csv_path.is_relative() {
            base_dir.join(csv_path)
        } else {
            csv_path.clone()
        };
        let csv = Csv::read(&path)?;
        let xcol = op.x.as_deref().unwrap_or("alpha");
        let at = op.at.expect("validated");
        let v = csv
            .interpolate(xcol, col, at)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .ok_or_else(|| format!("{}: {xcol} = {at} outside the table", path.display()))?;
        Evaluated {
            value: v,
            text: format!("theory {col} at {xcol} = {} = {}", fmt_num(at), fmt_num(v)),
        }
    } else {
        return Err("empty operand".into());
    };
    if let Some(t) = op.times {
        ev.value *= t;
        ev.text = format!("{} × {}", fmt_num(t), ev.text);
    }
    if op.plus != 0.0 {
        ev.value += op.plus;
        ev.text = format!(
            "{} {} {}",
            ev.text,
            if op.plus > 0.0 { "+" } else { "−" },
            fmt_num(op.plus.abs())
        );
    }
    Ok(ev)
}

/// Evaluates a check on rows.
pub fn run_check(
    c: &CheckSpec,
    rows: &[Value],
    base_dir: &Path,
    resamples: usize,
    rng_seed: u64,
) -> CheckResult {
    let left = evaluate(&c.left, rows, base_dir, resamples, rng_seed);
    let right = evaluate(&c.right, rows, base_dir, resamples, rng_seed);
    let pass = match (&left, &right) {
        (Ok(l), Ok(r)) => {
            let (a, b) = (l.value, r.value);
            match c.op.as_str() {
                ">=" => a >= b,
                ">" => a > b,
                "<=" => a <= b,
                "<" => a < b,
                "within" => (a - b).abs() <= c.tol,
                _ => false,
            }
        }
        _ => false,
    };
    let op = if c.op == "within" {
        format!("within ±{}", fmt_num(c.tol))
    } else {
        c.op.clone()
    };
    CheckResult {
        text: c.text.clone(),
        pass,
        left,
        op,
        right,
    }
}

/// The verdict of an experiment.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Every check passed.
    Reproduced,
    /// At least one check failed.
    NotReproduced,
    /// Not run, with the reason (a missing capability, a failed sweep).
    NotRun(String),
}

impl Verdict {
    /// The verdict as shown on the page.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::NotRun(_) => "not run",
        }
    }

    /// From check results (no checks = not reproduced: nothing was verified).
    pub fn from_checks(checks: &[CheckResult]) -> Verdict {
        if !checks.is_empty() && checks.iter().all(|c| c.pass) {
            Verdict::Reproduced
        } else {
            Verdict::NotReproduced
        }
    }
}

/// One figure on the page.
#[derive(Clone, Debug)]
pub struct FigureOut {
    /// Title.
    pub title: String,
    /// SVG text (inlined as an image); `None` with `error`.
    pub svg: Option<String>,
    /// Why the figure could not be drawn.
    pub error: Option<String>,
    /// The command that reproduces it.
    pub command: String,
    /// Numbers read off it.
    pub notes: Vec<String>,
    /// Relative path of the PNG next to the page, if written.
    pub png: Option<String>,
}

/// One experiment on the page.
#[derive(Clone, Debug)]
pub struct ExperimentOut {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Claim.
    pub claim: String,
    /// Notes on the setup.
    pub notes: Option<String>,
    /// Commands that produce the data (sweep runs), shown once per experiment.
    pub data_commands: Vec<String>,
    /// Sweep facts: points, run now vs reused, failures, time.
    pub facts: Vec<String>,
    /// Figures.
    pub figures: Vec<FigureOut>,
    /// Checks.
    pub checks: Vec<CheckResult>,
    /// Verdict.
    pub verdict: Verdict,
    /// Wall time spent on this experiment (running + drawing), seconds.
    pub seconds: f64,
}

/// Everything above the experiments on the page.
#[derive(Clone, Debug, Default)]
pub struct PageMeta {
    /// Title.
    pub title: String,
    /// Intro paragraph.
    pub intro: Option<String>,
    /// The command that regenerates the whole page.
    pub command: String,
    /// Total wall time, seconds.
    pub seconds: f64,
    /// Free-form facts (version, machine, database).
    pub facts: Vec<String>,
}

/// The page template (minijinja; see the file for its whitespace rules).
const TEMPLATE: &str = include_str!("../templates/report.html");

/// The page as the template sees it: numbers already formatted, figures base64-encoded.
#[derive(Serialize)]
struct PageView<'a> {
    title: &'a str,
    intro: Option<&'a str>,
    command: &'a str,
    seconds: String,
    facts: &'a [String],
    n_ok: usize,
    experiments: Vec<ExperimentView<'a>>,
}

#[derive(Serialize)]
struct ExperimentView<'a> {
    id: &'a str,
    title: &'a str,
    claim: &'a str,
    notes: Option<&'a str>,
    /// The reason, for a verdict of "not run".
    not_run: Option<&'a str>,
    data_commands: &'a [String],
    facts: &'a [String],
    figures: Vec<FigureView<'a>>,
    checks: Vec<CheckView<'a>>,
    verdict: &'static str,
    verdict_class: String,
    seconds: String,
}

#[derive(Serialize)]
struct FigureView<'a> {
    title: &'a str,
    /// The SVG, base64 (standard alphabet, padded): only `A–Z a–z 0–9 + / =`, so the
    /// template may mark it safe.
    svg_base64: Option<String>,
    error: Option<&'a str>,
    command: &'a str,
    notes: &'a [String],
}

#[derive(Serialize)]
struct CheckView<'a> {
    text: &'a str,
    left: SideView<'a>,
    op: &'a str,
    right: SideView<'a>,
    result: &'static str,
}

/// One operand of a check: its value and description, or why it was not computed.
#[derive(Serialize)]
struct SideView<'a> {
    value: Option<String>,
    text: Option<&'a str>,
    error: Option<&'a str>,
}

impl<'a> SideView<'a> {
    fn new(r: &'a Result<Evaluated, String>) -> Self {
        match r {
            Ok(v) => SideView {
                value: Some(fmt_num(v.value)),
                text: Some(&v.text),
                error: None,
            },
            Err(m) => SideView {
                value: None,
                text: None,
                error: Some(m),
            },
        }
    }
}

impl<'a> PageView<'a> {
    fn new(meta: &'a PageMeta, exps: &'a [ExperimentOut]) -> Self {
        let experiments = exps
            .iter()
            .map(|e| ExperimentView {
                id: &e.id,
                title: &e.title,
                claim: &e.claim,
                notes: e.notes.as_deref(),
                not_run: match &e.verdict {
                    Verdict::NotRun(reason) => Some(reason),
                    _ => None,
                },
                data_commands: &e.data_commands,
                facts: &e.facts,
                figures: e
                    .figures
                    .iter()
                    .map(|f| FigureView {
                        title: &f.title,
                        svg_base64: f.svg.as_ref().map(|svg| BASE64_STANDARD.encode(svg)),
                        error: f.error.as_deref(),
                        command: &f.command,
                        notes: &f.notes,
                    })
                    .collect(),
                checks: e
                    .checks
                    .iter()
                    .map(|c| CheckView {
                        text: &c.text,
                        left: SideView::new(&c.left),
                        op: &c.op,
                        right: SideView::new(&c.right),
                        result: if c.pass { "pass" } else { "fail" },
                    })
                    .collect(),
                verdict: e.verdict.label(),
                verdict_class: e.verdict.label().replace(' ', "-"),
                seconds: format!("{:.0}", e.seconds),
            })
            .collect();
        PageView {
            title: &meta.title,
            intro: meta.intro.as_deref(),
            command: &meta.command,
            seconds: format!("{:.0}", meta.seconds),
            facts: &meta.facts,
            n_ok: exps
                .iter()
                .filter(|e| e.verdict == Verdict::Reproduced)
                .count(),
            experiments,
        }
    }
}

/// Renders the self-contained HTML page (figures inlined as base64 SVG images) from the
/// template `templates/report.html`. All text from the report file and the runs (titles,
/// claims, notes, commands, facts, errors) is HTML-escaped.
pub fn render_html(meta: &PageMeta, exps: &[ExperimentOut]) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    let fail = |e: minijinja::Error| format!("report template: {e:#}");
    env.add_template("report.html", TEMPLATE).map_err(fail)?;
    env.get_template("report.html")
        .and_then(|t| t.render(PageView::new(meta, exps)))
        .map_err(fail)
}

/// Writes the page of [`render_html`] to `path` (parent folders are created; the file is
/// replaced atomically).
pub fn write_html(meta: &PageMeta, exps: &[ExperimentOut], path: &Path) -> Result<(), String> {
    let h = render_html(meta, exps)?;
    if let Some(p) = path.parent() {
        if !p.as_os_str().is_empty() {
            std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    let tmp = path.with_extension("html.tmp");
    std::fs::write(&tmp, h).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows() -> Vec<Value> {
        let mut out = Vec::new();
        for d in [100, 200] {
            for a in [1, 2, 4, 8, 16, 32] {
                for t in [1, 8] {
                    for seed in 0..3 {
                        // Alignment rises with log α; T1 = 8 shifts it up by 0.3; flat in d.
                        let rho = 0.1 * (a as f64).log2()
                            + if t == 8 { 0.3 } else { 0.0 }
                            + 0.01 * seed as f64;
                        out.push(json!({
                            "data.d": d, "data.alpha1": a, "stage1.steps": t, "seed": seed,
                            "alignment_mean": rho,
                            "stage1_seconds": 1e-3 * (a as f64),
                            "cost": (a as f64).powi(if t == 1 { 2 } else { 3 }),
                        }));
                    }
                }
            }
        }
        out
    }

    fn op(t: &str) -> Operand {
        toml::from_str(t).unwrap()
    }

    #[test]
    fn operands_and_checks() {
        let r = rows();
        let dir = Path::new(".");
        let v = evaluate(
            &op(r#"metric = "alignment_mean"
            where = { "stage1.steps" = 8, "data.alpha1" = 16, "data.d" = 100 }"#),
            &r,
            dir,
            100,
            0,
        )
        .unwrap();
        assert!((v.value - 0.71).abs() < 1e-9, "{v:?}");
        assert!(v.text.contains("n = 3"));
        // α* where T1 = 8 crosses 0.5: 0.1·log2 α + 0.31 = 0.5 → α = 2^1.9.
        let v = evaluate(
            &op(r#"threshold = "alignment_mean"
            x = "data.alpha1"
            level = 0.5
            where = { "stage1.steps" = 8, "data.d" = 100 }"#),
            &r,
            dir,
            200,
            0,
        )
        .unwrap();
        assert!((v.value - 2f64.powf(1.9)).abs() < 1e-6, "{v:?}");
        // Flat in d: slope 0.
        let v = evaluate(
            &op(r#"flatness = "alignment_mean"
            x = "data.alpha1"
            level = 0.5
            across = "data.d"
            where = { "stage1.steps" = 8 }"#),
            &r,
            dir,
            200,
            0,
        )
        .unwrap();
        assert!(v.value.abs() < 1e-9, "{v:?}");
        // stage1_seconds ∝ α: exponent 1.
        let v = evaluate(
            &op(r#"slope = "stage1_seconds"
            x = "data.alpha1""#),
            &r,
            dir,
            0,
            0,
        )
        .unwrap();
        assert!((v.value - 1.0).abs() < 1e-9);
        // slope with over + stat: the best (min) / worst (max) T1 at each α: α² and α³.
        for (stat, want) in [("min", 2.0), ("max", 3.0)] {
            let v = evaluate(
                &op(&format!(
                    "slope = \"cost\"\nx = \"data.alpha1\"\nover = \"stage1.steps\"\nstat = \"{stat}\""
                )),
                &r,
                dir,
                0,
                0,
            )
            .unwrap();
            assert!((v.value - want).abs() < 1e-9, "{stat}: {v:?}");
        }
        // over + stat.
        let v = evaluate(
            &op(r#"metric = "alignment_mean"
            over = "data.alpha1"
            stat = "max"
            where = { "stage1.steps" = 1 }"#),
            &r,
            dir,
            0,
            0,
        )
        .unwrap();
        assert!((v.value - 0.51).abs() < 1e-9, "{v:?}");
        // A check.
        let c: CheckSpec = toml::from_str(r#"text = "T1 = 8 beats T1 = 1 by 0.3"
            left = { metric = "alignment_mean", where = { "stage1.steps" = 8, "data.alpha1" = 16 } }
            op = ">="
            right = { metric = "alignment_mean", where = { "stage1.steps" = 1, "data.alpha1" = 16 }, plus = 0.29 }"#).unwrap();
        assert!(run_check(&c, &r, dir, 10, 0).pass);
        let c = CheckSpec {
            op: "<".into(),
            ..c
        };
        assert!(!run_check(&c, &r, dir, 10, 0).pass);
        // No rows: a failed check with the reason.
        let c: CheckSpec = toml::from_str(
            r#"text = "x"
            left = { metric = "alignment_mean", where = { "data.d" = 999 } }
            op = "within"
            tol = 0.1
            right = { value = 0.5 }"#,
        )
        .unwrap();
        let res = run_check(&c, &r, dir, 10, 0);
        assert!(!res.pass && res.left.unwrap_err().contains("d = 999"));
    }

    #[test]
    fn report_file_validation() {
        let dir = std::env::temp_dir().join(format!("mim-report-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.toml");
        std::fs::write(&p, "title = \"t\"\n[[experiment]]\nid = \"E1\"\ntitle = \"x\"\nclaim = \"c\"\nsweep = \"s.toml\"\n[[experiment.check]]\ntext = \"t\"\nleft = { value = 1 }\nop = \"=>\"\nright = { value = 1 }\n").unwrap();
        let e = ReportSpec::load(&p).unwrap_err();
        assert!(e.contains("op `=>`"), "{e}");
        std::fs::write(&p, "title = \"t\"\nbogus = 1\n").unwrap();
        let e = ReportSpec::load(&p).unwrap_err();
        assert!(e.contains("bogus") && e.contains(":2"), "{e}");
        std::fs::write(&p, "title = \"t\"\n[[experiment]]\nid = \"E1\"\ntitle = \"x\"\nclaim = \"c\"\n[experiment.sweep]\nbase = \"../a.toml\"\n[experiment.sweep.axes]\nseed = \"0..2\"\n").unwrap();
        let s = ReportSpec::load(&p).unwrap();
        assert!(matches!(s.experiments[0].sweep, Some(SweepRef::Inline(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The sparse experiment's quantity (seed 004, S2): per k, the n_A at which the fraction of
    /// chains recovering the support reaches 0.8, on an n_A grid that differs per k, and its
    /// log-log slope in k. Synthetic fractions with the 0.8 crossing at n* = 1500·(k/2)³.
    #[test]
    fn flatness_on_per_group_grids_recovers_the_k_exponent() {
        let mut r = Vec::new();
        for k in [2u32, 3, 4, 6, 8] {
            let n_star = 1500.0 * (k as f64 / 2.0).powi(3);
            for j in -4..=3 {
                let n_a = (n_star * 2f64.powf(j as f64 / 2.0)).round();
                for (seed, shift) in [(0, -0.1), (1, 0.0), (2, 0.1), (3, 0.05)] {
                    // Logistic in ln n_A, steepness 3, equal to 0.8 at n* (before the shift).
                    let t = 3.0 * ((n_a / n_star).ln() + shift) + 4f64.ln();
                    let frac = (10.0 / (1.0 + (-t).exp())).round() / 10.0;
                    r.push(json!({
                        "params": {"data.sparsity": k, "schedule.0.support_samples": n_a, "seed": seed},
                        "schedule": [{"online": {"support": {"recovered_fraction": frac}}}],
                    }));
                }
            }
        }
        let spec = r#"flatness = "schedule.0.online.support.recovered_fraction"
            x = "schedule.0.support_samples"
            level = 0.8
            across = "data.sparsity""#;
        let v = evaluate(&op(spec), &r, Path::new("."), 400, 0).unwrap();
        assert!((v.value - 3.0).abs() < 0.15, "{v:?}");
        assert!(v.text.contains("(bootstrap)"), "{}", v.text);
        // A crossing below the smallest n_A of some k is refused, not extrapolated.
        let low: Vec<Value> = r
            .iter()
            .filter(|row| {
                row["params"]["data.sparsity"] != json!(8)
                    || row["params"]["schedule.0.support_samples"].as_f64() > Some(1e5)
            })
            .cloned()
            .collect();
        let e = evaluate(&op(spec), &low, Path::new("."), 100, 0).unwrap_err();
        assert!(e.contains("not inside the grid"), "{e}");
    }

    /// A page with every part filled in, user text carrying markup.
    fn sample_page() -> (PageMeta, Vec<ExperimentOut>) {
        let meta = PageMeta {
            title: "A <script>alert(1)</script> & \"report\"".into(),
            intro: Some("intro <b>bold</b>".into()),
            command: "mim report r.toml --out runs/x".into(),
            seconds: 12.4,
            facts: vec!["mim 0.1".into(), "db <a.db>".into()],
        };
        let check = |pass| CheckResult {
            text: "left > right & more".into(),
            pass,
            left: Ok(Evaluated {
                value: 0.5,
                text: "mean <0.5>".into(),
            }),
            op: ">".into(),
            right: Err("no rows at d = 9".into()),
        };
        let exps = vec![
            ExperimentOut {
                id: "E1".into(),
                title: "first <i>one</i>".into(),
                claim: "claim \"quoted\" <script>x</script>".into(),
                notes: Some("notes & caveats".into()),
                data_commands: vec!["mim sweep run a.toml".into(), "mim sweep run b.toml".into()],
                facts: vec!["4 points: 0 run now".into(), "1 failed".into()],
                figures: vec![
                    FigureOut {
                        title: "fig \"one\"".into(),
                        svg: Some("<svg xmlns=\"http://www.w3.org/2000/svg\"/>".into()),
                        error: None,
                        command: "mim plot --db x.db".into(),
                        notes: vec!["α* = 3".into(), "n < 5".into()],
                        png: None,
                    },
                    FigureOut {
                        title: "fig two".into(),
                        svg: None,
                        error: Some("no <data>".into()),
                        command: "mim plot --db y.db".into(),
                        notes: vec![],
                        png: None,
                    },
                ],
                checks: vec![check(true), check(false)],
                verdict: Verdict::NotReproduced,
                seconds: 3.6,
            },
            ExperimentOut {
                id: "E2".into(),
                title: "second".into(),
                claim: "c".into(),
                notes: None,
                data_commands: vec![],
                facts: vec![],
                figures: vec![],
                checks: vec![],
                verdict: Verdict::NotRun("needs <gpu>".into()),
                seconds: 0.0,
            },
        ];
        (meta, exps)
    }

    /// User text (titles, claims, notes, facts, errors) is HTML-escaped, and the page keeps its
    /// parts: summary rows, sections with verdicts, inlined figures, check tables.
    #[test]
    fn html_escapes_user_text_and_keeps_the_structure() {
        let (meta, exps) = sample_page();
        let h = render_html(&meta, &exps).unwrap();
        assert!(!h.contains("<script>") && !h.contains("<b>bold") && !h.contains("<i>one"));
        assert!(h.contains("<title>A &lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; &quot;report&quot;</title>"), "{h}");
        assert!(h.contains("<h1>A &lt;script&gt;alert(1)"));
        assert!(h.contains("<p class=\"claim\">Claim: claim &quot;quoted&quot; &lt;script&gt;x"));
        assert!(h.contains("<p>notes &amp; caveats</p>"));
        assert!(h.contains("<p class=\"facts\">mim 0.1<br>db &lt;a.db&gt;</p>"));
        assert!(h.contains("<p class=\"err\">Not run: needs &lt;gpu&gt;</p>"));
        assert!(h.contains("<p class=\"err\">Figure not drawn: no &lt;data&gt;</p>"));
        assert!(h.contains("<pre>mim sweep run a.toml\nmim sweep run b.toml</pre>"));
        assert!(h.contains("<p><b>0 of 2 experiments reproduced.</b> Total time 12 s."));
        assert!(h.starts_with("<!DOCTYPE html>\n") && h.ends_with("</body></html>\n"));
        assert_eq!(h.matches("<section class=\"experiment\"").count(), 2);
        assert!(h.contains("id=\"E1\" data-verdict=\"not reproduced\""));
        assert!(h.contains("<span class=\"badge not-run\">not run</span>"));
        assert_eq!(h.matches("<td class=\"pass\">pass</td>").count(), 1);
        assert_eq!(h.matches("<td class=\"fail\">fail</td>").count(), 1);
        assert!(h.contains("<b>0.5</b><br><span class=\"facts\">mean &lt;0.5&gt;</span>"));
        assert!(h.contains("<span class=\"err\">not computed: no rows at d = 9</span>"));
        // The figure is inlined as base64 and decodes back to the SVG.
        let b64 = h
            .split("src=\"data:image/svg+xml;base64,")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        let svg = BASE64_STANDARD.decode(b64).unwrap();
        assert_eq!(svg, exps[0].figures[0].svg.as_ref().unwrap().as_bytes());
        assert!(h.contains("<img class=\"fig\" alt=\"fig &quot;one&quot;\""));
    }
}
