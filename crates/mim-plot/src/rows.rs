//! Result rows (one JSON object per sweep point) and grouping them into mean ± s.e. series.
//!
//! A row is what `mim results export --jsonl` writes: an object with the point's axis values
//! under `params` (dotted key → value), its resolved config under `config` (nested tables, as
//! in `config.toml`) and its summary metrics at the top level or under `summary`. The lookups
//! here accept any of these places, so rows assembled by hand (tests, other tools) work too.

use crate::stats::{mean_se, MeanSe, SeedPoint};
use serde_json::Value;

/// Looks up a dotted path (`data.alpha1`) in nested JSON objects; array elements by index
/// (`subspace_cos.1`).
pub fn lookup_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A parameter of a row: `params[key]`, then the top level (`row[key]`), then the resolved
/// config (`config.<dotted path>`), then `summary[key]`, then the database column of that
/// config key ([`column_alias`]: `data.d` → `d`).
pub fn row_param<'a>(row: &'a Value, key: &str) -> Option<&'a Value> {
    if let Some(v) = row.get("params").and_then(|p| p.get(key)) {
        return Some(v);
    }
    if let Some(v) = row.get(key) {
        if !v.is_object() {
            return Some(v);
        }
    }
    if let Some(v) = row.get("config").and_then(|c| lookup_path(c, key)) {
        return Some(v);
    }
    if let Some(v) = row.get("summary").and_then(|s| lookup_path(s, key)) {
        return Some(v);
    }
    // The results database's config columns carry short names (`d` for `data.d`).
    column_alias(key)
        .and_then(|c| row.get(c))
        .filter(|v| !v.is_null())
}

/// The results-database column holding a dotted config key, where it has one.
pub fn column_alias(key: &str) -> Option<&'static str> {
    Some(match key {
        "data.d" => "d",
        "data.r" => "r",
        "data.link" => "link",
        "data.n1" => "n1",
        "data.n2" => "n2",
        "data.n_test" => "n_test",
        "model.width" => "width",
        "model.activation" => "activation",
        "stage1.loss" => "loss",
        "stage1.steps" => "steps",
        "stage1.lr" => "lr",
        "stage1.weight_decay" => "weight_decay",
        _ => return None,
    })
}

/// A metric of a row as a number: `row[name]` (dotted paths allowed), then `summary.<name>`,
/// then `metrics.<name>`. Booleans count as 0/1; non-numbers give `None`.
pub fn row_metric(row: &Value, name: &str) -> Option<f64> {
    for base in [Some(row), row.get("summary"), row.get("metrics")]
        .into_iter()
        .flatten()
    {
        // A flat key that contains dots (`spectral.subspace_cos_min`) first, then a path, then
        // a flat dotted key followed by a path (`spectral.direction_projection` + `.0`).
        let split = || {
            name.match_indices('.').find_map(|(i, _)| {
                base.get(&name[..i])
                    .and_then(|v| lookup_path(v, &name[i + 1..]))
            })
        };
        if let Some(v) = base
            .get(name)
            .or_else(|| lookup_path(base, name))
            .or_else(split)
        {
            if let Some(x) = value_f64(v) {
                return Some(x);
            }
        }
    }
    None
}

/// A JSON value as a number (numbers, booleans as 0/1, numeric strings).
pub fn value_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A JSON value as a short label (strings unquoted, numbers shortest form).
pub fn value_label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    format!("{}", f as i64)
                } else {
                    format!("{f}")
                }
            }
        }
        other => other.to_string(),
    }
}

/// Whether two parameter values are equal: numerically when both are numbers (16 = 16.0),
/// otherwise as labels (so `"16"` matches 16 and `"huber"` matches "huber").
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => {
            let (x, y) = (value_f64(a).unwrap(), value_f64(b).unwrap());
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        _ => {
            if let (Some(x), Some(y)) = (value_f64(a), value_f64(b)) {
                if !(a.is_string() && b.is_string()) {
                    return (x - y).abs() <= 1e-9 * x.abs().max(y.abs());
                }
            }
            value_label(a) == value_label(b)
        }
    }
}

/// Whether a row has every `key = value` of `filter` (a missing key does not match).
pub fn row_matches(row: &Value, filter: &[(String, Value)]) -> bool {
    filter
        .iter()
        .all(|(k, v)| row_param(row, k).is_some_and(|rv| values_equal(rv, v)))
}

/// The rows that match `filter` (see [`row_matches`]).
pub fn filter_rows(rows: &[Value], filter: &[(String, Value)]) -> Vec<Value> {
    rows.iter()
        .filter(|r| row_matches(r, filter))
        .cloned()
        .collect()
}

/// `filter` for people: `α = 16, T1 = 8` (short keys, value labels).
pub fn filter_text(filter: &[(String, Value)]) -> String {
    filter
        .iter()
        .map(|(k, v)| format!("{} = {}", short_key(k), value_label(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `KEY=VALUE` (the value as JSON when it parses, otherwise as a string).
pub fn parse_filter(text: &str) -> Option<(String, Value)> {
    let (k, v) = text.split_once('=')?;
    let k = k.trim();
    if k.is_empty() {
        return None;
    }
    let v = v.trim();
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Some((k.to_string(), value))
}

/// The seed of a row (`seed` parameter), or its position when it has none.
fn row_seed(row: &Value, index: usize) -> i64 {
    row_param(row, "seed")
        .and_then(value_f64)
        .map(|s| s as i64)
        .unwrap_or(index as i64)
}

/// One x of a series: the seed-averaged metric.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesPoint {
    /// Numeric x (for a categorical x, the category's index).
    pub x: f64,
    /// The x as written (a number or a category name).
    pub x_label: String,
    /// Mean ± s.e. over the rows (seeds) at this x.
    pub stats: MeanSe,
    /// The per-seed values `(seed, value)`.
    pub values: Vec<(i64, f64)>,
}

/// One line of a plot: all points sharing a value of the group key.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label, e.g. `data.alpha1 = 16`.
    pub label: String,
    /// The group value (`None` without a group key).
    pub group: Option<Value>,
    /// Points, ascending in x.
    pub points: Vec<SeriesPoint>,
}

impl Series {
    /// The points as [`SeedPoint`]s for threshold localisation.
    pub fn seed_points(&self) -> Vec<SeedPoint> {
        self.points
            .iter()
            .map(|p| SeedPoint {
                x: p.x,
                values: p.values.clone(),
            })
            .collect()
    }

    /// The seed-averaged value at `x` (numerically equal), if present.
    pub fn at(&self, x: f64) -> Option<&SeriesPoint> {
        self.points
            .iter()
            .find(|p| (p.x - x).abs() <= 1e-9 * x.abs().max(1.0))
    }
}

/// Sort key for group/x values: numbers numerically, then strings.
fn sort_key(v: &Value) -> (u8, f64, String) {
    match value_f64(v) {
        Some(x) if !v.is_string() => (0, x, String::new()),
        _ => (1, 0.0, value_label(v)),
    }
}

/// Whether every x value is a number (so the axis is numeric, not categorical).
pub fn is_numeric_axis(rows: &[Value], key: &str) -> bool {
    rows.iter()
        .filter_map(|r| row_param(r, key))
        .all(|v| v.is_number())
}

/// Per x value of one group: the (seed, value) pairs.
type XValues = Vec<(Value, Vec<(i64, f64)>)>;

/// Groups rows by `group_key` (one series per value; one series without it) and, within a
/// group, by `x_key`; each point is the mean ± s.e. of `metric` over its rows (the seeds).
/// Rows lacking the x key or the metric are skipped. A non-numeric x (e.g. `method`) becomes
/// categorical: x = the index of its value among all values, sorted. Errors name the key when
/// no row has it.
pub fn group_rows(
    rows: &[Value],
    x_key: &str,
    group_key: Option<&str>,
    metric: &str,
) -> Result<Vec<Series>, String> {
    if rows.is_empty() {
        return Err("no rows to plot".into());
    }
    if !rows.iter().any(|r| row_param(r, x_key).is_some()) {
        return Err(format!("no row has the x key `{x_key}`"));
    }
    if let Some(g) = group_key {
        if !rows.iter().any(|r| row_param(r, g).is_some()) {
            return Err(format!("no row has the group key `{g}`"));
        }
    }
    if !rows.iter().any(|r| row_metric(r, metric).is_some()) {
        return Err(format!("no row has the metric `{metric}`"));
    }
    let numeric = is_numeric_axis(rows, x_key);
    let mut categories: Vec<Value> = Vec::new();
    if !numeric {
        for r in rows {
            if let Some(v) = row_param(r, x_key) {
                if !categories.iter().any(|c| values_equal(c, v)) {
                    categories.push(v.clone());
                }
            }
        }
        categories.sort_by(|a, b| sort_key(a).partial_cmp(&sort_key(b)).unwrap());
    }

    // group value → x value → [(seed, value)]
    let mut groups: Vec<(Option<Value>, XValues)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let (Some(xv), Some(y)) = (row_param(r, x_key), row_metric(r, metric)) else {
            continue;
        };
        let gv = match group_key {
            Some(g) => match row_param(r, g) {
                Some(v) => Some(v.clone()),
                None => continue,
            },
            None => None,
        };
        let gi = match groups.iter().position(|(g, _)| match (g, &gv) {
            (Some(a), Some(b)) => values_equal(a, b),
            (None, None) => true,
            _ => false,
        }) {
            Some(i) => i,
            None => {
                groups.push((gv.clone(), Vec::new()));
                groups.len() - 1
            }
        };
        let xs = &mut groups[gi].1;
        let seed = row_seed(r, i);
        match xs.iter_mut().find(|(x, _)| values_equal(x, xv)) {
            Some((_, vals)) => vals.push((seed, y)),
            None => xs.push((xv.clone(), vec![(seed, y)])),
        }
    }
    groups.sort_by(|a, b| {
        let ka = a.0.as_ref().map(sort_key);
        let kb = b.0.as_ref().map(sort_key);
        ka.partial_cmp(&kb).unwrap()
    });
    let series = groups
        .into_iter()
        .map(|(g, xs)| {
            let mut points: Vec<SeriesPoint> = xs
                .into_iter()
                .map(|(xv, values)| {
                    let x = if numeric {
                        value_f64(&xv).unwrap_or(f64::NAN)
                    } else {
                        categories
                            .iter()
                            .position(|c| values_equal(c, &xv))
                            .unwrap_or(0) as f64
                    };
                    SeriesPoint {
                        x,
                        x_label: value_label(&xv),
                        stats: mean_se(&values.iter().map(|v| v.1).collect::<Vec<_>>()),
                        values,
                    }
                })
                .collect();
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            let label = match (&g, group_key) {
                (Some(v), Some(k)) => format!("{} = {}", short_key(k), value_label(v)),
                _ => metric.to_string(),
            };
            Series {
                label,
                group: g,
                points,
            }
        })
        .collect();
    Ok(series)
}

/// The distinct x values of all `series`, ascending, each with its label.
pub fn distinct_x(series: &[Series]) -> Vec<(f64, String)> {
    let mut xs: Vec<(f64, String)> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| (p.x, p.x_label.clone())))
        .collect();
    xs.sort_by(|a, b| a.0.total_cmp(&b.0));
    xs.dedup_by(|a, b| a.0 == b.0);
    xs
}

/// A short display name for a config key: `data.alpha1` → `α`, `stage1.steps` → `T1`, …;
/// other keys unchanged.
pub fn short_key(key: &str) -> String {
    match key {
        "data.alpha1" => "α".into(),
        "data.alpha2" => "α2".into(),
        "stage1.steps" => "T1".into(),
        "data.d" => "d".into(),
        "model.width" => "m".into(),
        "stage1.loss" => "loss".into(),
        "model.init_scale" => "ε0".into(),
        "data.link" => "link".into(),
        _ => key.to_string(),
    }
}

/// An axis title for a config key or metric: `α = n1/d (data.alpha1)`, `T1 (stage1.steps)`.
pub fn axis_title(key: &str) -> String {
    let short = short_key(key);
    if short == key {
        key.to_string()
    } else if key == "data.alpha1" {
        format!("α = n1/d ({key})")
    } else {
        format!("{short} ({key})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows() -> Vec<Value> {
        let mut out = Vec::new();
        for (a, base) in [(4, 0.2), (16, 0.5)] {
            for t in [1, 8] {
                for seed in 0..3 {
                    out.push(json!({
                        "params": {"data.alpha1": a, "stage1.steps": t, "seed": seed},
                        "summary": {"alignment_mean": base + 0.01 * t as f64 + 0.01 * seed as f64},
                        "test_mse": 1.0,
                    }));
                }
            }
        }
        out
    }

    /// List entries by index, under a flat dotted key (`spectral.…` columns) or in the summary.
    #[test]
    fn metrics_index_into_lists() {
        let row = json!({
            "spectral.direction_projection": [0.9, 0.4],
            "summary": {"direction_projection": [0.8, 0.3], "a": {"b": 2.0}},
        });
        assert_eq!(
            row_metric(&row, "spectral.direction_projection.1"),
            Some(0.4)
        );
        assert_eq!(row_metric(&row, "direction_projection.0"), Some(0.8));
        assert_eq!(row_metric(&row, "a.b"), Some(2.0));
        assert_eq!(row_metric(&row, "spectral.direction_projection.2"), None);
    }

    #[test]
    fn groups_mean_se_count() {
        let s = group_rows(
            &rows(),
            "stage1.steps",
            Some("data.alpha1"),
            "alignment_mean",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label, "α = 4");
        assert_eq!(s[1].points.len(), 2);
        let p = &s[1].points[1];
        assert_eq!(p.x, 8.0);
        assert_eq!(p.stats.n, 3);
        assert!((p.stats.mean - (0.5 + 0.08 + 0.01)).abs() < 1e-12);
        assert!((p.stats.se - 0.01 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(
            p.values.iter().map(|v| v.0).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(s[1].at(8.0).is_some());
        // Top-level metrics work too.
        let s = group_rows(&rows(), "data.alpha1", None, "test_mse").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].points[0].stats.n, 6);
    }

    #[test]
    fn missing_keys_are_named() {
        let e = group_rows(&rows(), "nope", None, "alignment_mean").unwrap_err();
        assert!(e.contains("`nope`"));
        let e = group_rows(&rows(), "data.alpha1", None, "zzz").unwrap_err();
        assert!(e.contains("`zzz`"));
        assert!(group_rows(&[], "a", None, "b").is_err());
    }

    #[test]
    fn categorical_x_and_filters() {
        let rows = vec![
            json!({"params": {"method": "one_step"}, "alignment_mean": 0.2}),
            json!({"params": {"method": "layerwise"}, "alignment_mean": 0.7}),
            json!({"config": {"method": "joint", "data": {"d": 100}}, "alignment_mean": 0.3}),
        ];
        let s = group_rows(&rows, "method", None, "alignment_mean").unwrap();
        let labels: Vec<_> = s[0].points.iter().map(|p| p.x_label.clone()).collect();
        assert_eq!(labels, ["joint", "layerwise", "one_step"]);
        assert!(row_matches(&rows[2], &[("data.d".into(), json!(100.0))]));
        assert!(!row_matches(&rows[2], &[("data.d".into(), json!(200))]));
        assert_eq!(
            parse_filter("data.alpha1=16"),
            Some(("data.alpha1".into(), json!(16)))
        );
        assert_eq!(
            parse_filter("stage1.loss=huber"),
            Some(("stage1.loss".into(), json!("huber")))
        );
        assert!(values_equal(&json!("16"), &json!(16)));
        assert_eq!(lookup_path(&json!({"a": [1, 2]}), "a.1"), Some(&json!(2)));
        assert_eq!(
            row_metric(&json!({"spectral.x": 0.5}), "spectral.x"),
            Some(0.5)
        );
        let exported = json!({"key": "k", "data.alpha1": 4, "d": 200, "loss": "huber"});
        assert!(row_matches(
            &exported,
            &[
                ("data.d".into(), json!(200)),
                ("stage1.loss".into(), json!("huber"))
            ]
        ));
    }
}
