//! Reading inputs from files: per-step trajectories from a run folder's `metrics.jsonl` and
//! columns of a CSV (e.g. `mim theory` output).

use crate::plot::Trajectory;
use std::path::Path;

/// Reads the stage-1 trajectory of `metric` from `<run_dir>/metrics.jsonl` (or from the file
/// itself when `run_dir` is a file): one point per record with `"stage": "stage1"`, x = `step`.
/// Records without the metric (e.g. `power_iteration_cos` when disabled) are skipped. The
/// label is the run folder's name. Errors are one line naming the file.
pub fn read_trajectory(run_dir: &Path, metric: &str) -> Result<Trajectory, String> {
    let file = if run_dir.is_dir() {
        run_dir.join("metrics.jsonl")
    } else {
        run_dir.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    let mut points = Vec::new();
    let mut seen_metric = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("{}:{}: not JSON: {e}", file.display(), i + 1))?;
        if v.get("stage").and_then(|s| s.as_str()) != Some("stage1") {
            continue;
        }
        let step = v.get("step").and_then(|s| s.as_f64());
        let y = crate::rows::row_metric(&v, metric);
        if y.is_some() {
            seen_metric = true;
        }
        if let (Some(step), Some(y)) = (step, y) {
            points.push((step, y));
        }
    }
    if !seen_metric {
        return Err(format!(
            "{}: no stage-1 record has the metric `{metric}`",
            file.display()
        ));
    }
    let dir = if run_dir.is_dir() {
        run_dir
    } else {
        run_dir.parent().unwrap_or(run_dir)
    };
    let label = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    Ok(Trajectory { label, points })
}

/// A parsed CSV: header names and rows of cells.
#[derive(Clone, Debug, Default)]
pub struct Csv {
    /// Column names.
    pub header: Vec<String>,
    /// Rows of raw cells.
    pub rows: Vec<Vec<String>>,
}

impl Csv {
    /// Parses CSV text with the `csv` crate: RFC 4180 quoting (a quoted cell may hold commas,
    /// doubled quotes and line breaks), the first record being the header. Cells are trimmed,
    /// rows may differ in length, lines starting with `#` are comments and blank lines are
    /// skipped. Errors are one line with the record's position.
    pub fn parse(text: &str) -> Result<Csv, String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let mut records = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| e.to_string())?;
            // A line of blanks reads as one empty cell.
            if record.len() == 1 && record[0].is_empty() {
                continue;
            }
            records.push(record.iter().map(str::to_string).collect::<Vec<_>>());
        }
        let mut records = records.into_iter();
        let header = records.next().unwrap_or_default();
        Ok(Csv {
            header,
            rows: records.collect(),
        })
    }

    /// Reads a CSV file (see [`Csv::parse`]).
    pub fn read(path: &Path) -> Result<Csv, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Csv::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The numeric (x, y) pairs of two columns (rows where either is not a number are skipped).
    pub fn xy(&self, x: &str, y: &str) -> Result<Vec<(f64, f64)>, String> {
        let col = |name: &str| {
            self.header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| format!("no column `{name}` (columns: {})", self.header.join(", ")))
        };
        let (ix, iy) = (col(x)?, col(y)?);
        Ok(self
            .rows
            .iter()
            .filter_map(|r| {
                let a = r.get(ix)?.parse::<f64>().ok()?;
                let b = r.get(iy)?.parse::<f64>().ok()?;
                (a.is_finite() && b.is_finite()).then_some((a, b))
            })
            .collect())
    }

    /// Linear interpolation of column `y` at `x0` over column `x` (sorted by x); `None` outside
    /// the range.
    pub fn interpolate(&self, x: &str, y: &str, x0: f64) -> Result<Option<f64>, String> {
        let mut pts = self.xy(x, y)?;
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in pts.windows(2) {
            let ((a, fa), (b, fb)) = (w[0], w[1]);
            if a <= x0 && x0 <= b {
                if b == a {
                    return Ok(Some(fa));
                }
                return Ok(Some(fa + (x0 - a) / (b - a) * (fb - fa)));
            }
        }
        Ok(pts.iter().find(|p| p.0 == x0).map(|p| p.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trajectory_from_metrics_jsonl() {
        let dir = std::env::temp_dir().join(format!("mim-plot-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lines = [
            r#"{"stage":"stage1","step":0,"alignment_mean":0.1,"power_iteration_cos":1.0}"#,
            r#"{"stage":"stage1","step":1,"alignment_mean":0.3,"power_iteration_cos":0.999}"#,
            r#"{"stage":"stage2","alignment_mean":0.3}"#,
            r#"{"stage":"final","alignment_mean":0.3,"test_mse":0.5}"#,
        ];
        std::fs::write(dir.join("metrics.jsonl"), lines.join("\n")).unwrap();
        let t = read_trajectory(&dir, "alignment_mean").unwrap();
        assert_eq!(t.points, vec![(0.0, 0.1), (1.0, 0.3)]);
        assert!(read_trajectory(&dir, "nope")
            .unwrap_err()
            .contains("`nope`"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn csv_columns_and_interpolation() {
        let csv =
            Csv::parse("alpha,overlap_sq_theory,lambda\n1,0.23,3\n\n2,0.64,4\n# c\n  \n4,0.8,x\n")
                .unwrap();
        assert_eq!(csv.xy("alpha", "overlap_sq_theory").unwrap().len(), 3);
        assert_eq!(csv.xy("alpha", "lambda").unwrap().len(), 2);
        let v = csv
            .interpolate("alpha", "overlap_sq_theory", 1.5)
            .unwrap()
            .unwrap();
        assert!((v - 0.435).abs() < 1e-12);
        assert!(csv.xy("alpha", "zz").unwrap_err().contains("`zz`"));
    }

    /// RFC 4180 quoting (what `mim results export --csv` writes): a quoted field keeps its
    /// commas, and a doubled quote inside it is one quote.
    #[test]
    fn csv_quoted_fields() {
        let csv = Csv::parse("name,\"a,b\"\n\"x, \"\"y\"\"\",2\n").unwrap();
        assert_eq!(csv.header, vec!["name", "a,b"]);
        assert_eq!(csv.rows, vec![vec!["x, \"y\"".to_string(), "2".into()]]);
        assert_eq!(csv.xy("a,b", "a,b").unwrap(), vec![(2.0, 2.0)]);
    }
}
