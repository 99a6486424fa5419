//! Sweep files and their expansion into points.
//!
//! A sweep file is TOML:
//!
//! ```toml
//! base = "../h4h4-huber.toml"        # optional, relative to the sweep file
//! [set]                              # optional fixed overrides (dotted keys or sections)
//! "model.width" = 128
//! [axes]                             # the Cartesian product of these
//! "data.alpha1" = [4, 16]
//! seed = "0..3"                      # integer range: 0, 1, 2 ("0..=2" is the same)
//! [[zip]]                            # axes that advance together (equal lengths)
//! "stage1.lr" = [0.5, 1.0]
//! "stage1.weight_decay" = [2.0, 1.0]
//! ```
//!
//! Each point is the base config, then `[set]`, then its axis values, applied as `--set`
//! overrides, resolved and validated with [`RunConfig`]. Its key is a hash of the resolved
//! config TOML, so identical configs share a key however they were written.

use crate::SweepError;
use mim_run::config::{apply_override, parse_toml, read_table};
use mim_run::{RunConfig, ValidConfig};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The most points one sweep may expand to (a guard against typos like `seed = "0..1e9"`).
pub const MAX_POINTS: usize = 1_000_000;

/// One axis: a dotted config key and the values it takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Dotted config key, e.g. `data.alpha1`.
    pub key: String,
    /// The values, in order.
    pub values: Vec<toml::Value>,
}

/// A parsed sweep file.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// The sweep's name: the file stem.
    pub name: String,
    /// The sweep file.
    pub path: PathBuf,
    /// The base config file, resolved against the sweep file's folder.
    pub base: Option<PathBuf>,
    /// The base config's table (empty without a base).
    pub base_table: toml::Table,
    /// Fixed overrides from `[set]`, in order.
    pub set: Vec<(String, toml::Value)>,
    /// Independent axes (the Cartesian product runs over them).
    pub axes: Vec<Axis>,
    /// Zipped groups: the axes of one group advance together.
    pub zips: Vec<Vec<Axis>>,
}

/// One point of a sweep: a resolved, validated config and its key.
#[derive(Clone, Debug)]
pub struct Point {
    /// The first 16 hex digits of SHA-256 of [`Point::config_toml`].
    pub key: String,
    /// The axis values of this point, in axis order.
    pub params: Vec<(String, toml::Value)>,
    /// The validated config.
    pub config: ValidConfig,
    /// The resolved config as TOML ([`RunConfig::to_toml`]).
    pub config_toml: String,
}

impl Point {
    /// The axis values as a JSON object (key → value).
    pub fn params_json(&self) -> serde_json::Value {
        params_to_json(&self.params)
    }

    /// The axis values as `key=value` pairs joined by spaces.
    pub fn params_text(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Converts axis values to a JSON object.
pub fn params_to_json(params: &[(String, toml::Value)]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, v) in params {
        map.insert(
            k.clone(),
            serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
        );
    }
    serde_json::Value::Object(map)
}

/// The key of a resolved config: the first 16 hex digits of SHA-256 of its TOML text.
pub fn config_key(config_toml: &str) -> String {
    let digest = Sha256::digest(config_toml.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Flattens nested tables into dotted keys (`[set.data] d = 3` and `"data.d" = 3` are the same).
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let full = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&full, t, out),
            _ => out.push((full, v.clone())),
        }
    }
}

/// Parses `"a..b"` (exclusive) or `"a..=b"` (inclusive) into integers.
pub fn parse_range(text: &str) -> Option<Vec<i64>> {
    let t = text.trim();
    let (a, b, inclusive) = if let Some((a, b)) = t.split_once("..=") {
        (a, b, true)
    } else {
        let (a, b) = t.split_once("..")?;
        (a, b, false)
    };
    let a: i64 = a.trim().parse().ok()?;
    let b: i64 = b.trim().parse().ok()?;
    let end = if inclusive { b.checked_add(1)? } else { b };
    if end.saturating_sub(a) > MAX_POINTS as i64 {
        return None;
    }
    Some((a..end).collect())
}

impl SweepSpec {
    /// Reads and parses a sweep file (errors are one line naming the file and the field).
    pub fn load(path: &Path) -> Result<SweepSpec, SweepError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SweepError::Input(format!("sweep {}: cannot read: {e}", path.display()))
        })?;
        Self::parse(&text, path)
    }

    /// Parses sweep-file text; `path` names the file in errors and anchors a relative `base`.
    pub fn parse(text: &str, path: &Path) -> Result<SweepSpec, SweepError> {
        let origin = format!("sweep {}", path.display());
        let bad = |msg: String| SweepError::Input(format!("{origin}: {msg}"));
        let table = parse_toml(text, &origin).map_err(|e| SweepError::Input(e.0))?;
        for k in table.keys() {
            if !matches!(k.as_str(), "base" | "set" | "axes" | "zip") {
                return Err(bad(format!(
                    "unknown key `{k}` (a sweep file has base, [set], [axes], [[zip]])"
                )));
            }
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sweep".into());

        let (base, base_table) = match table.get("base") {
            None => (None, toml::Table::new()),
            Some(toml::Value::String(b)) => {
                let dir = path.parent().unwrap_or_else(|| Path::new(""));
                let p = dir.join(b);
                let t = read_table(&p).map_err(|e| bad(format!("base: {}", e.0)))?;
                (Some(p), t)
            }
            Some(_) => return Err(bad("base: expected a path string".into())),
        };

        let mut set = Vec::new();
        match table.get("set") {
            None => {}
            Some(toml::Value::Table(t)) => flatten("", t, &mut set),
            Some(_) => return Err(bad("set: expected a table of key = value".into())),
        }

        let mut seen = HashSet::new();
        let mut read_axes = |t: &toml::Table, what: &str| -> Result<Vec<Axis>, SweepError> {
            let mut flat = Vec::new();
            flatten("", t, &mut flat);
            let mut axes = Vec::new();
            for (key, v) in flat {
                let values = match &v {
                    toml::Value::Array(a) if a.is_empty() => {
                        return Err(bad(format!("{what}.\"{key}\": empty axis (no values)")))
                    }
                    toml::Value::Array(a) => a.clone(),
                    toml::Value::String(s) => match parse_range(s) {
                        Some(r) if r.is_empty() => {
                            return Err(bad(format!(
                                "{what}.\"{key}\" = \"{s}\": empty range (no values)"
                            )))
                        }
                        Some(r) => r.into_iter().map(toml::Value::Integer).collect(),
                        None => {
                            return Err(bad(format!(
                                "{what}.\"{key}\" = \"{s}\": not an integer range like \"0..5\" or \"0..=4\" (for one string value write [\"{s}\"])"
                            )))
                        }
                    },
                    other => {
                        return Err(bad(format!(
                            "{what}.\"{key}\" = {other}: expected a list of values or an integer range string like \"0..5\""
                        )))
                    }
                };
                if !seen.insert(key.clone()) {
                    return Err(bad(format!("{what}.\"{key}\": axis given twice")));
                }
                axes.push(Axis { key, values });
            }
            Ok(axes)
        };

        let axes = match table.get("axes") {
            None => Vec::new(),
            Some(toml::Value::Table(t)) => read_axes(t, "axes")?,
            Some(_) => return Err(bad("axes: expected a table of key = [values]".into())),
        };
        let mut zips = Vec::new();
        match table.get("zip") {
            None => {}
            Some(toml::Value::Array(groups)) => {
                for (i, g) in groups.iter().enumerate() {
                    let what = format!("zip[{i}]");
                    let toml::Value::Table(t) = g else {
                        return Err(bad(format!("{what}: expected a table ([[zip]])")));
                    };
                    let group = read_axes(t, &what)?;
                    if group.is_empty() {
                        return Err(bad(format!("{what}: empty group (no axes)")));
                    }
                    let n = group[0].values.len();
                    if let Some(a) = group.iter().find(|a| a.values.len() != n) {
                        return Err(bad(format!(
                            "{what}: zipped axes need equal lengths: \"{}\" has {n} values, \"{}\" has {}",
                            group[0].key,
                            a.key,
                            a.values.len()
                        )));
                    }
                    zips.push(group);
                }
            }
            Some(_) => return Err(bad("zip: expected an array of tables ([[zip]])".into())),
        }
        if axes.is_empty() && zips.is_empty() {
            return Err(bad(
                "no axes: give [axes] (or [[zip]]) with at least one key = [values]".into(),
            ));
        }

        let spec = SweepSpec {
            name,
            path: path.to_path_buf(),
            base,
            base_table,
            set,
            axes,
            zips,
        };
        spec.check_keys()?;
        Ok(spec)
    }

    fn origin(&self) -> String {
        format!("sweep {}", self.path.display())
    }

    /// Checks every `[set]` and axis key on its own against an empty config, so an unknown key
    /// is reported as such, before any point is built.
    fn check_keys(&self) -> Result<(), SweepError> {
        let mut checks: Vec<(String, &str, &toml::Value)> = self
            .set
            .iter()
            .map(|(k, v)| ("set".to_string(), k.as_str(), v))
            .collect();
        for a in &self.axes {
            checks.push(("axes".into(), &a.key, &a.values[0]));
        }
        for (i, g) in self.zips.iter().enumerate() {
            for a in g {
                checks.push((format!("zip[{i}]"), &a.key, &a.values[0]));
            }
        }
        for (what, key, value) in checks {
            // A stage key (`schedule.K.…`) indexes the base's `[[schedule]]` list, so it is
            // checked against the base; every other key alone.
            let mut t = if key.starts_with("schedule.") {
                self.base_table.clone()
            } else {
                toml::Table::new()
            };
            apply_override(&mut t, &format!("{key}={value}"))
                .and_then(|_| RunConfig::from_table(t))
                .map_err(|e| {
                    let msg = if e.0.contains("unknown field") {
                        format!("unknown config key ({})", e.0)
                    } else {
                        e.0
                    };
                    SweepError::Input(format!("{}: {what}.\"{key}\": {msg}", self.origin()))
                })?;
        }
        Ok(())
    }

    /// The number of points before de-duplication (product of the group lengths).
    pub fn raw_len(&self) -> usize {
        self.groups()
            .iter()
            .map(|g| g[0].values.len())
            .fold(1usize, |acc, n| acc.saturating_mul(n))
    }

    /// The groups of the product: each independent axis alone, then each zip group.
    fn groups(&self) -> Vec<Vec<&Axis>> {
        let mut g: Vec<Vec<&Axis>> = self.axes.iter().map(|a| vec![a]).collect();
        g.extend(self.zips.iter().map(|z| z.iter().collect()));
        g
    }

    /// The axis keys, in order (independent axes, then zipped ones).
    pub fn axis_keys(&self) -> Vec<String> {
        self.groups()
            .into_iter()
            .flatten()
            .map(|a| a.key.clone())
            .collect()
    }

    /// Expands the sweep into its points, each resolved and validated. Points whose resolved
    /// configs are identical appear once (the first). Any invalid point is an error naming it.
    pub fn points(&self) -> Result<Vec<Point>, SweepError> {
        let n = self.raw_len();
        if n == 0 {
            return Err(SweepError::Input(format!("{}: zero points", self.origin())));
        }
        if n > MAX_POINTS {
            return Err(SweepError::Input(format!(
                "{}: {n} points: more than {MAX_POINTS}",
                self.origin()
            )));
        }
        let groups = self.groups();
        let mut base = self.base_table.clone();
        for (k, v) in &self.set {
            apply_override(&mut base, &format!("{k}={v}")).map_err(|e| {
                SweepError::Input(format!("{}: set.\"{k}\": {}", self.origin(), e.0))
            })?;
        }
        let mut seen = HashSet::new();
        let mut points = Vec::with_capacity(n);
        let mut idx = vec![0usize; groups.len()];
        for _ in 0..n {
            let mut params = Vec::new();
            for (g, &i) in groups.iter().zip(&idx) {
                for a in g {
                    params.push((a.key.clone(), a.values[i].clone()));
                }
            }
            let point = self.point(&base, params)?;
            if seen.insert(point.key.clone()) {
                points.push(point);
            }
            // Mixed-radix increment, the last group fastest.
            for (j, g) in groups.iter().enumerate().rev() {
                idx[j] += 1;
                if idx[j] < g[0].values.len() {
                    break;
                }
                idx[j] = 0;
            }
        }
        Ok(points)
    }

    fn point(
        &self,
        base: &toml::Table,
        params: Vec<(String, toml::Value)>,
    ) -> Result<Point, SweepError> {
        let mut table = base.clone();
        let label = || {
            params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let fail = |e: mim_run::ConfigError| {
            SweepError::Input(format!("{}: point [{}]: {}", self.origin(), label(), e.0))
        };
        for (k, v) in &params {
            apply_override(&mut table, &format!("{k}={v}")).map_err(fail)?;
        }
        let config = RunConfig::from_table(table)
            .and_then(|c| c.validate())
            .map_err(fail)?;
        let config_toml = config.config.to_toml();
        Ok(Point {
            key: config_key(&config_toml),
            params,
            config,
            config_toml,
        })
    }
}

/// Which part of the points a process runs: shard `index` of `count` (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1 ≤ index ≤ count.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Parses `i/N`, or `slurm` (from `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT` and, when
    /// set, `SLURM_ARRAY_TASK_MIN`: shard = ID − MIN + 1 of COUNT).
    pub fn parse(text: &str) -> Result<Shard, SweepError> {
        let env = |k: &str| std::env::var(k).ok();
        Self::parse_with(text, env)
    }

    /// [`Shard::parse`] with the environment given as a function (for tests).
    pub fn parse_with(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard, SweepError> {
        let bad = |m: String| SweepError::Input(format!("--shard {text}: {m}"));
        let shard = if text.trim() == "slurm" {
            let get = |k: &str| -> Result<usize, SweepError> {
                let v = env(k).ok_or_else(|| bad(format!("{k} is not set")))?;
                v.trim()
                    .parse()
                    .map_err(|_| bad(format!("{k} = {v}: not a number")))
            };
            let id = get("SLURM_ARRAY_TASK_ID")?;
            let count = get("SLURM_ARRAY_TASK_COUNT")?;
            let min = match env("SLURM_ARRAY_TASK_MIN") {
                Some(_) => get("SLURM_ARRAY_TASK_MIN")?,
                None => 0,
            };
            let index = id
                .checked_sub(min)
                .ok_or_else(|| bad(format!("SLURM_ARRAY_TASK_ID {id} < MIN {min}")))?
                + 1;
            Shard { index, count }
        } else {
            let (i, n) = text
                .split_once('/')
                .ok_or_else(|| bad("expected i/N (e.g. 1/4) or slurm".into()))?;
            let i = i
                .trim()
                .parse()
                .map_err(|_| bad("expected i/N (e.g. 1/4) or slurm".into()))?;
            let n = n
                .trim()
                .parse()
                .map_err(|_| bad("expected i/N (e.g. 1/4) or slurm".into()))?;
            Shard { index: i, count: n }
        };
        if shard.count == 0 || shard.index == 0 || shard.index > shard.count {
            return Err(bad(format!(
                "shard {} of {}: need 1 ≤ i ≤ N",
                shard.index, shard.count
            )));
        }
        Ok(shard)
    }

    /// The points of this shard: sorted by key, those whose index % count == index − 1.
    pub fn select(&self, points: &[Point]) -> Vec<Point> {
        let mut sorted: Vec<&Point> = points.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        sorted
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index - 1)
            .map(|(_, p)| p.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<SweepSpec, SweepError> {
        SweepSpec::parse(text, Path::new("/nonexistent/test-sweep.toml"))
    }

    fn err(text: &str) -> String {
        let e = spec(text).and_then(|s| s.points().map(|_| ())).unwrap_err();
        assert!(matches!(e, SweepError::Input(_)), "{e}");
        let m = e.to_string();
        assert!(!m.contains('\n'), "multi-line: {m}");
        m
    }

    const TINY: &str = "[set]\n\"data.d\" = 20\n\"model.width\" = 8\n\"data.n_test\" = 50\n";

    #[test]
    fn product_of_axes_with_ranges() {
        let s = spec(&format!(
            "{TINY}[axes]\n\"stage1.steps\" = [0, 1, 2]\n\"data.alpha1\" = [4, 16]\nseed = \"0..=1\"\n"
        ))
        .unwrap();
        assert_eq!(s.raw_len(), 12);
        let pts = s.points().unwrap();
        assert_eq!(pts.len(), 12);
        let keys: HashSet<_> = pts.iter().map(|p| p.key.clone()).collect();
        assert_eq!(keys.len(), 12);
        // Axes run in key order, the last one fastest: seed, then stage1.steps.
        let combos: HashSet<(u64, usize, u64)> = pts
            .iter()
            .map(|p| {
                let c = &p.config.config;
                (c.seed, p.config.stage1.steps, c.data.alpha1.unwrap() as u64)
            })
            .collect();
        for seed in 0..2 {
            for steps in 0..3 {
                for a in [4, 16] {
                    assert!(combos.contains(&(seed, steps, a)));
                }
            }
        }
        assert!(pts.iter().all(|p| p.config.config.data.d == 20));
        assert_eq!(pts[0].params.len(), 3);
        assert_eq!(pts[0].params_json()["seed"], 0);
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("0..5"), Some(vec![0, 1, 2, 3, 4]));
        assert_eq!(parse_range("0..=4"), Some(vec![0, 1, 2, 3, 4]));
        assert_eq!(parse_range(" 2 .. 4 "), Some(vec![2, 3]));
        assert_eq!(parse_range("3..3"), Some(vec![]));
        assert_eq!(parse_range("a..3"), None);
        assert_eq!(parse_range("h4"), None);
    }

    #[test]
    fn zip_advances_together() {
        let s = spec(&format!(
            "{TINY}[axes]\nseed = [0, 1]\n[[zip]]\n\"stage1.lr\" = [0.5, 1.0, 2.0]\n\"stage1.weight_decay\" = [2.0, 1.0, 0.5]\n"
        ))
        .unwrap();
        let pts = s.points().unwrap();
        assert_eq!(pts.len(), 6);
        for p in &pts {
            let st = &p.config.stage1;
            assert!((st.lr * st.weight_decay - 1.0).abs() < 1e-12, "{st:?}");
        }
        assert_eq!(
            s.axis_keys(),
            vec!["seed", "stage1.lr", "stage1.weight_decay"]
        );
        let m = err(&format!(
            "{TINY}[[zip]]\n\"stage1.lr\" = [0.5, 1.0]\n\"stage1.weight_decay\" = [2.0]\n"
        ));
        assert!(m.contains("equal lengths"), "{m}");
    }

    #[test]
    fn identical_configs_share_a_key() {
        // The same config written three ways: range vs list, integer vs float, section vs dotted.
        let a = spec(&format!(
            "{TINY}[axes]\nseed = \"0..2\"\n\"data.alpha1\" = [4]\n"
        ))
        .unwrap()
        .points()
        .unwrap();
        let b = spec("[set.data]\nd = 20\nn_test = 50\n[set.model]\nwidth = 8\n[axes]\nseed = [1, 0]\ndata.alpha1 = [4.0]\n")
            .unwrap()
            .points()
            .unwrap();
        let ka: HashSet<_> = a.iter().map(|p| p.key.clone()).collect();
        let kb: HashSet<_> = b.iter().map(|p| p.key.clone()).collect();
        assert_eq!(ka, kb);
        assert_eq!(a[0].key.len(), 16);
        // Duplicates inside one sweep collapse.
        let c = spec(&format!("{TINY}[axes]\n\"data.alpha1\" = [4, 4.0]\n"))
            .unwrap()
            .points()
            .unwrap();
        assert_eq!(c.len(), 1);
        // A different value gives a different key.
        assert_ne!(a[0].key, a[1].key);
        assert_eq!(config_key(&a[0].config_toml), a[0].key);
    }

    #[test]
    fn base_is_relative_to_the_sweep_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/sweeps");
        let s = SweepSpec::parse(
            "base = \"../h4h4-huber.toml\"\n[axes]\nseed = [0, 1]\n",
            &root.join("x.toml"),
        )
        .unwrap();
        let pts = s.points().unwrap();
        assert_eq!(pts[0].config.config.data.link, "h4(z1)+h4(z2)");
        assert_eq!(pts[0].config.config.data.d, 200);
        assert_eq!(s.name, "x");
    }

    #[test]
    fn bad_sweeps_are_one_line_errors_naming_the_field() {
        let cases: &[(&str, &str)] = &[
            ("[axes]\n\"data.foo\" = [1]\n", "data.foo"),
            ("[axes]\nbogus = [1]\n", "bogus"),
            ("[axes]\nseed = []\n", "empty axis"),
            ("[axes]\nseed = \"3..3\"\n", "empty range"),
            ("[axes]\nseed = \"lots\"\n", "integer range"),
            ("[axes]\nseed = 3\n", "expected a list"),
            (
                "[set]\n\"model.widht\" = 8\n[axes]\nseed = [0]\n",
                "model.widht",
            ),
            ("[axes]\n", "no axes"),
            ("", "no axes"),
            ("[axes\nseed = [0]\n", "malformed TOML"),
            (
                "base = \"missing.toml\"\n[axes]\nseed = [0]\n",
                "cannot read",
            ),
            ("nope = 1\n[axes]\nseed = [0]\n", "nope"),
            ("[axes]\n\"model.width\" = [8, 7]\n", "model.width"),
            ("[axes]\nseed = [0]\n[[zip]]\nseed = [1]\n", "twice"),
        ];
        for (text, needle) in cases {
            let m = err(text);
            assert!(m.contains(needle), "{text:?}: {m}");
            assert!(m.starts_with("sweep /nonexistent/test-sweep.toml"), "{m}");
        }
        // The invalid point is named by its axis values.
        let m = err("[set]\n\"data.d\" = 3\n[axes]\n\"data.r\" = [2, 5]\n");
        assert!(
            m.contains("point [data.r=5]") && m.contains("data.r"),
            "{m}"
        );
    }

    #[test]
    fn shards_partition_the_points() {
        let pts = spec(&format!("{TINY}[axes]\nseed = \"0..7\"\n"))
            .unwrap()
            .points()
            .unwrap();
        let mut all = Vec::new();
        for i in 1..=3 {
            let s = Shard::parse(&format!("{i}/3")).unwrap();
            let part = s.select(&pts);
            assert!(part.len() == 2 || part.len() == 3);
            all.extend(part.into_iter().map(|p| p.key));
        }
        all.sort();
        let mut keys: Vec<_> = pts.iter().map(|p| p.key.clone()).collect();
        keys.sort();
        assert_eq!(all, keys);
        for bad in ["0/2", "3/2", "1/0", "x", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let env = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("5".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("3".to_string()),
            _ => None,
        };
        assert_eq!(
            Shard::parse_with("slurm", env).unwrap(),
            Shard { index: 3, count: 4 }
        );
        assert!(Shard::parse_with("slurm", |_| None).is_err());
    }
}
