//! The results database (SQLite, WAL mode): one row per point in `points`, one row per stage-1
//! step in `steps`, and `meta(schema_version)`. A point and its steps are written in one
//! transaction, so a killed sweep never leaves a half-written point.

use crate::spec::Point;
use crate::SweepError;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a write waits for another process holding the database lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Config columns of `points` (filled from the resolved config, also for failed points).
pub const CONFIG_COLUMNS: &[(&str, &str)] = &[
    ("method", "TEXT"),
    ("link", "TEXT"),
    ("loss", "TEXT"),
    ("activation", "TEXT"),
    ("backend", "TEXT"),
    ("dtype", "TEXT"),
    ("seed", "INTEGER"),
    ("d", "INTEGER"),
    ("r", "INTEGER"),
    ("n1", "INTEGER"),
    ("n2", "INTEGER"),
    ("n_test", "INTEGER"),
    ("width", "INTEGER"),
    ("steps", "INTEGER"),
    ("lr", "REAL"),
    ("weight_decay", "REAL"),
];

/// Metric columns of `points` (from `summary.json`; NULL for failed points).
pub const METRIC_COLUMNS: &[&str] = &[
    "alignment_mean",
    "alignment_median",
    "frac_aligned_0_9",
    "subspace_cos_min",
    "energy_fraction",
    "power_iteration_cos",
    "ridge_lambda",
    "test_mse",
    "train_mse",
    "stage1_seconds",
    "stage2_seconds",
    "total_seconds",
];

/// A finished point, ready to be stored.
#[derive(Clone, Debug)]
pub struct PointRecord {
    /// The point's key.
    pub key: String,
    /// The sweep's name.
    pub sweep: String,
    /// `"ok"` or `"failed"`.
    pub status: String,
    /// The error of a failed point.
    pub error: Option<String>,
    /// The resolved config TOML.
    pub config_toml: String,
    /// The axis values (JSON object).
    pub params: Value,
    /// Config column values, in [`CONFIG_COLUMNS`] order.
    pub config_values: Vec<Value>,
    /// `summary.json` (for ok points).
    pub summary: Option<Value>,
    /// Per-step records: (step, JSON text).
    pub steps: Vec<(i64, String)>,
}

impl PointRecord {
    /// A record for `point` with the given outcome; config columns come from the config.
    pub fn new(
        point: &Point,
        sweep: &str,
        status: &str,
        error: Option<String>,
        summary: Option<Value>,
        steps: Vec<(i64, String)>,
    ) -> PointRecord {
        let v = &point.config;
        let c = &v.config;
        let table: toml::Table = point.config_toml.parse().unwrap_or_default();
        let s = |sec: Option<&str>, k: &str| -> Value {
            let t = match sec {
                Some(sec) => table.get(sec).and_then(|x| x.as_table()),
                None => Some(&table),
            };
            t.and_then(|t| t.get(k))
                .and_then(|x| x.as_str())
                .map(|x| Value::String(x.into()))
                .unwrap_or(Value::Null)
        };
        let (steps_run, lr, wd) = if c.method == mim_run::Method::Joint {
            (c.joint.steps, c.joint.lr, 0.0)
        } else {
            (v.stage1.steps, v.stage1.lr, v.stage1.weight_decay)
        };
        let config_values = vec![
            Value::String(c.method.name().into()),
            Value::String(c.data.link.clone()),
            s(Some("stage1"), "loss"),
            s(Some("model"), "activation"),
            s(None, "backend"),
            s(None, "dtype"),
            i64::try_from(c.seed)
                .map(Value::from)
                .unwrap_or(Value::Null),
            c.data.d.into(),
            c.data.r.into(),
            v.n1.into(),
            v.n2.into(),
            c.data.n_test.into(),
            c.model.width.into(),
            steps_run.into(),
            lr.into(),
            wd.into(),
        ];
        PointRecord {
            key: point.key.clone(),
            sweep: sweep.into(),
            status: status.into(),
            error,
            config_toml: point.config_toml.clone(),
            params: point.params_json(),
            config_values,
            summary,
            steps,
        }
    }
}

/// One sweep in a database, as `mim results ls` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepListing {
    /// Sweep name.
    pub sweep: String,
    /// Points with status ok.
    pub ok: usize,
    /// Points with status failed.
    pub failed: usize,
    /// Each axis seen and its distinct values (as JSON text, sorted).
    pub axes: BTreeMap<String, Vec<String>>,
}

/// One exported row: ordered (column, value) pairs.
pub type Row = Vec<(String, Value)>;

/// An open results database.
pub struct Db {
    conn: Connection,
    path: PathBuf,
}

/// What went wrong, as text for a one-line message.
trait Why {
    fn why(&self) -> String;
}

impl Why for &str {
    fn why(&self) -> String {
        self.to_string()
    }
}

impl Why for String {
    fn why(&self) -> String {
        self.clone()
    }
}

/// SQLite errors a user can act on (lock, read-only, cannot open) say what to do.
impl Why for rusqlite::Error {
    fn why(&self) -> String {
        use rusqlite::ErrorCode as C;
        match self.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => format!(
                "locked by another process ({self}): wait for it to finish, give it longer \
                 with `mim sweep --lock-timeout`, or use another --db"
            ),
            Some(C::ReadOnly) => {
                format!("read-only ({self}): make it writable or use another --db")
            }
            Some(C::CannotOpen) => format!(
                "cannot be opened or created ({self}): is its folder read-only or not writable?"
            ),
            _ => self.to_string(),
        }
    }
}

fn db_err(path: &Path, e: impl Why) -> String {
    let msg = e.why().split_whitespace().collect::<Vec<_>>().join(" ");
    format!("database {}: {msg}", path.display())
}

fn sql_value(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Null => S::Null,
        Value::Bool(b) => S::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => S::Integer(i),
            None => n.as_f64().map(S::Real).unwrap_or(S::Null),
        },
        Value::String(s) => S::Text(s.clone()),
        other => S::Text(other.to_string()),
    }
}

fn json_value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef as R;
    match v {
        R::Null => Value::Null,
        R::Integer(i) => i.into(),
        R::Real(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        R::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        R::Blob(_) => Value::Null,
    }
}

fn create_sql() -> String {
    let mut cols = vec![
        "key TEXT PRIMARY KEY".to_string(),
        "sweep TEXT NOT NULL".into(),
        "status TEXT NOT NULL".into(),
        "error TEXT".into(),
        "config_toml TEXT NOT NULL".into(),
        "params_json TEXT NOT NULL".into(),
        "summary_json TEXT".into(),
    ];
    cols.extend(CONFIG_COLUMNS.iter().map(|(c, t)| format!("{c} {t}")));
    cols.extend(METRIC_COLUMNS.iter().map(|c| format!("{c} REAL")));
    cols.push("created_at TEXT NOT NULL".into());
    format!(
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS points ({});
         CREATE TABLE IF NOT EXISTS steps (key TEXT NOT NULL, step INTEGER NOT NULL,
             record_json TEXT NOT NULL, PRIMARY KEY (key, step));
         INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}');",
        cols.join(", ")
    )
}

impl Db {
    /// Opens (creating if needed) a database for writing, with the default busy timeout.
    pub fn open(path: &Path) -> Result<Db, SweepError> {
        Self::open_with_timeout(path, BUSY_TIMEOUT)
    }

    /// Opens (creating if needed) a database for writing. WAL mode; writers wait up to
    /// `timeout` for a lock. Errors (locked, read-only, not a database, another schema version)
    /// are one line naming the path.
    pub fn open_with_timeout(path: &Path, timeout: Duration) -> Result<Db, SweepError> {
        let input = |e: String| SweepError::Input(e);
        if path.is_dir() {
            return Err(input(db_err(path, "is a directory")));
        }
        let existing = path.ancestors().skip(1).find(|a| a.exists());
        if let Some(file) = existing.filter(|a| !a.is_dir()) {
            let msg = format!("{} is a file, not a folder", file.display());
            return Err(input(db_err(path, msg)));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| input(db_err(path, format!("cannot create its folder: {e}"))))?;
        }
        let conn = Connection::open(path).map_err(|e| input(db_err(path, e)))?;
        conn.busy_timeout(timeout)
            .map_err(|e| input(db_err(path, e)))?;
        let db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(|e| input(db_err(path, e)))?;
        db.check_version()?;
        db.conn
            .execute_batch(&format!("BEGIN IMMEDIATE; {} COMMIT;", create_sql()))
            .map_err(|e| {
                let _ = db.conn.execute_batch("ROLLBACK");
                input(db_err(path, e))
            })?;
        db.check_version()?;
        Ok(db)
    }

    /// Opens an existing database read-only (for `ls` and `export`).
    pub fn open_read_only(path: &Path) -> Result<Db, SweepError> {
        let input = |e: String| SweepError::Input(e);
        if !path.is_file() {
            return Err(input(db_err(path, "no such database file")));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| input(db_err(path, e)))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| input(db_err(path, e)))?;
        let db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.check_version()?;
        let has_points: bool = db
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('points', 'steps')",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n == 2)
            .map_err(|e| input(db_err(path, e)))?;
        if !has_points {
            return Err(input(db_err(
                path,
                "not a mim results database (no points table)",
            )));
        }
        Ok(db)
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses a database written with another schema version.
    fn check_version(&self) -> Result<(), SweepError> {
        let input = |e: String| SweepError::Input(e);
        let has_meta: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| input(db_err(&self.path, e)))?;
        if has_meta == 0 {
            return Ok(());
        }
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE name = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| input(db_err(&self.path, e)))?;
        match v {
            None => Ok(()),
            Some(v) if v.trim() == SCHEMA_VERSION.to_string() => Ok(()),
            Some(v) => Err(input(db_err(
                &self.path,
                format!("schema version {v}, but this mim reads version {SCHEMA_VERSION} only"),
            ))),
        }
    }

    fn runtime(&self, e: impl Why) -> SweepError {
        SweepError::Runtime(db_err(&self.path, e))
    }

    /// Keys stored with status ok.
    pub fn done_keys(&self) -> Result<HashSet<String>, SweepError> {
        let mut st = self
            .conn
            .prepare("SELECT key FROM points WHERE status = 'ok'")
            .map_err(|e| self.runtime(e))?;
        let keys = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.runtime(e))?
            .collect::<Result<HashSet<_>, _>>()
            .map_err(|e| self.runtime(e));
        keys
    }

    /// Stores a point and its steps in one transaction, replacing an earlier row of the key.
    pub fn insert(&mut self, rec: &PointRecord) -> Result<(), SweepError> {
        let path = self.path.clone();
        let rt = |e: rusqlite::Error| SweepError::Runtime(db_err(&path, e));
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(rt)?;
        tx.execute("DELETE FROM steps WHERE key = ?1", [&rec.key])
            .map_err(rt)?;
        let mut names = vec![
            "key",
            "sweep",
            "status",
            "error",
            "config_toml",
            "params_json",
            "summary_json",
        ];
        names.extend(CONFIG_COLUMNS.iter().map(|(c, _)| *c));
        names.extend(METRIC_COLUMNS.iter().copied());
        let mut values: Vec<rusqlite::types::Value> = vec![
            rec.key.clone().into(),
            rec.sweep.clone().into(),
            rec.status.clone().into(),
            rec.error.clone().into(),
            rec.config_toml.clone().into(),
            rec.params.to_string().into(),
            rec.summary.as_ref().map(|s| s.to_string()).into(),
        ];
        values.extend(rec.config_values.iter().map(sql_value));
        for m in METRIC_COLUMNS {
            let v = rec
                .summary
                .as_ref()
                .and_then(|s| s.get(*m))
                .and_then(|v| v.as_f64());
            values.push(v.into());
        }
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT OR REPLACE INTO points ({}, created_at) VALUES ({}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            names.join(", "),
            placeholders.join(", ")
        );
        tx.execute(&sql, rusqlite::params_from_iter(values))
            .map_err(rt)?;
        {
            let mut st = tx
                .prepare(
                    "INSERT OR REPLACE INTO steps (key, step, record_json) VALUES (?1, ?2, ?3)",
                )
                .map_err(rt)?;
            for (step, json) in &rec.steps {
                st.execute(params![rec.key, step, json]).map_err(rt)?;
            }
        }
        tx.commit().map_err(rt)
    }

    /// Per sweep: ok and failed counts and the axis values seen.
    pub fn list(&self) -> Result<Vec<SweepListing>, SweepError> {
        let mut st = self
            .conn
            .prepare("SELECT sweep, status, params_json FROM points ORDER BY sweep, key")
            .map_err(|e| self.runtime(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.runtime(e))?;
        let mut out: Vec<SweepListing> = Vec::new();
        let mut values: BTreeMap<String, BTreeMap<String, HashSet<String>>> = BTreeMap::new();
        for row in rows {
            let (sweep, status, params) = row.map_err(|e| self.runtime(e))?;
            if out.last().map(|l| l.sweep != sweep).unwrap_or(true) {
                out.push(SweepListing {
                    sweep: sweep.clone(),
                    ok: 0,
                    failed: 0,
                    axes: BTreeMap::new(),
                });
            }
            let l = out.last_mut().expect("pushed");
            if status == "ok" {
                l.ok += 1;
            } else {
                l.failed += 1;
            }
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&params) {
                let axes = values.entry(sweep).or_default();
                for (k, v) in m {
                    axes.entry(k).or_default().insert(v.to_string());
                }
            }
        }
        for l in &mut out {
            if let Some(axes) = values.remove(&l.sweep) {
                for (k, vs) in axes {
                    let mut vs: Vec<String> = vs.into_iter().collect();
                    vs.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                        (Ok(x), Ok(y)) => x.total_cmp(&y),
                        _ => a.cmp(b),
                    });
                    l.axes.insert(k, vs);
                }
            }
        }
        Ok(out)
    }

    /// One row per point: key, sweep, status, the axis values (by their dotted names), the
    /// config and metric columns, error. Ordered by sweep, then key.
    pub fn export_points(&self) -> Result<Vec<Row>, SweepError> {
        self.points_rows(false)
    }

    /// [`Db::export_points`] plus each point's whole `summary.json` under `summary` (every
    /// metric, including lists such as `direction_projection`, not only the columns).
    pub fn export_points_with_summary(&self) -> Result<Vec<Row>, SweepError> {
        self.points_rows(true)
    }

    fn points_rows(&self, with_summary: bool) -> Result<Vec<Row>, SweepError> {
        let mut cols = vec!["key", "sweep", "status", "params_json"];
        if with_summary {
            cols.push("summary_json");
        }
        cols.extend(CONFIG_COLUMNS.iter().map(|(c, _)| *c));
        cols.extend(METRIC_COLUMNS.iter().copied());
        cols.extend(["error", "created_at"]);
        let sql = format!("SELECT {} FROM points ORDER BY sweep, key", cols.join(", "));
        let mut st = self.conn.prepare(&sql).map_err(|e| self.runtime(e))?;
        let mut rows = st.query([]).map_err(|e| self.runtime(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.runtime(e))? {
            let mut row: Row = Vec::new();
            for (i, c) in cols.iter().enumerate() {
                let v = json_value(r.get_ref(i).map_err(|e| self.runtime(e))?);
                if *c == "params_json" {
                    if let Some(Value::Object(m)) =
                        v.as_str().and_then(|s| serde_json::from_str(s).ok())
                    {
                        row.extend(m);
                    }
                } else if *c == "summary_json" {
                    if let Some(summary) = v.as_str().and_then(|s| serde_json::from_str(s).ok()) {
                        row.push(("summary".to_string(), summary));
                    }
                } else {
                    row.push((c.to_string(), v));
                }
            }
            out.push(row);
        }
        Ok(out)
    }

    /// One row per stored step: key, sweep, the axis values, then the step record's fields.
    pub fn export_steps(&self) -> Result<Vec<Row>, SweepError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT s.key, p.sweep, p.params_json, s.record_json FROM steps s
                 JOIN points p ON p.key = s.key ORDER BY p.sweep, s.key, s.step",
            )
            .map_err(|e| self.runtime(e))?;
        let mut rows = st.query([]).map_err(|e| self.runtime(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.runtime(e))? {
            let key: String = r.get(0).map_err(|e| self.runtime(e))?;
            let sweep: String = r.get(1).map_err(|e| self.runtime(e))?;
            let params: String = r.get(2).map_err(|e| self.runtime(e))?;
            let record: String = r.get(3).map_err(|e| self.runtime(e))?;
            let mut row: Row = vec![("key".into(), key.into()), ("sweep".into(), sweep.into())];
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&params) {
                row.extend(m);
            }
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&record) {
                row.extend(m);
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Adds the points (and their steps) of the database at `other`: keys not present are
    /// copied; a key present here only as failed is replaced by an ok one from `other`; other
    /// keys stay as they are. One transaction. Returns the number of points taken.
    pub fn merge_from(&mut self, other: &Path) -> Result<usize, SweepError> {
        // Validate the input first (exists, schema version, tables).
        drop(Db::open_read_only(other)?);
        let path = self.path.clone();
        let rt = |e: rusqlite::Error| SweepError::Runtime(db_err(&path, e));
        self.conn
            .execute(
                "ATTACH DATABASE ?1 AS src",
                [other.to_string_lossy().as_ref()],
            )
            .map_err(|e| SweepError::Input(db_err(other, e)))?;
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(rt)?;
            tx.execute_batch(
                "CREATE TEMP TABLE take AS
                   SELECT s.key FROM src.points s LEFT JOIN main.points p ON p.key = s.key
                   WHERE p.key IS NULL OR (p.status != 'ok' AND s.status = 'ok');
                 DELETE FROM main.steps WHERE key IN (SELECT key FROM take);
                 DELETE FROM main.points WHERE key IN (SELECT key FROM take);
                 INSERT INTO main.points SELECT * FROM src.points WHERE key IN (SELECT key FROM take);
                 INSERT INTO main.steps SELECT * FROM src.steps WHERE key IN (SELECT key FROM take);",
            )
            .map_err(rt)?;
            let n: i64 = tx
                .query_row("SELECT count(*) FROM take", [], |r| r.get(0))
                .map_err(rt)?;
            tx.execute_batch("DROP TABLE temp.take").map_err(rt)?;
            tx.commit().map_err(rt)?;
            Ok(n as usize)
        })();
        let detach = self.conn.execute_batch("DETACH DATABASE src").map_err(rt);
        let n = result?;
        detach?;
        Ok(n)
    }

    /// `PRAGMA integrity_check`: `"ok"` for a sound database.
    pub fn integrity_check(&self) -> Result<String, SweepError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.runtime(e))
    }

    /// The number of points stored (all statuses).
    pub fn count(&self) -> Result<usize, SweepError> {
        self.conn
            .query_row("SELECT count(*) FROM points", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|e| self.runtime(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SweepSpec;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mim-sweep-db-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn points() -> Vec<Point> {
        SweepSpec::parse(
            "[set]\n\"data.d\" = 20\n\"model.width\" = 8\n[axes]\nseed = \"0..3\"\n",
            Path::new("s.toml"),
        )
        .unwrap()
        .points()
        .unwrap()
    }

    fn record(p: &Point, status: &str, value: f64) -> PointRecord {
        let summary =
            serde_json::json!({"status": status, "alignment_mean": value, "test_mse": 0.5});
        PointRecord::new(
            p,
            "s",
            status,
            (status != "ok").then(|| "boom".to_string()),
            Some(summary),
            vec![
                (0, "{\"step\":0,\"stage\":\"stage1\"}".into()),
                (1, "{\"step\":1}".into()),
            ],
        )
    }

    #[test]
    fn insert_list_export_and_replace() {
        let dir = tmp("insert");
        let pts = points();
        let mut db = Db::open(&dir.join("r.sqlite")).unwrap();
        db.insert(&record(&pts[0], "ok", 0.7)).unwrap();
        db.insert(&record(&pts[1], "failed", 0.1)).unwrap();
        assert_eq!(db.done_keys().unwrap(), HashSet::from([pts[0].key.clone()]));
        db.insert(&record(&pts[1], "ok", 0.8)).unwrap();
        assert_eq!(db.count().unwrap(), 2);
        let l = db.list().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].ok, l[0].failed), (2, 0));
        assert_eq!(l[0].axes["seed"], vec!["0", "1"]);
        let rows = db.export_points().unwrap();
        let get = |row: &Row, k: &str| row.iter().find(|(c, _)| c == k).unwrap().1.clone();
        assert_eq!(rows.len(), 2);
        assert!(rows
            .iter()
            .all(|r| get(r, "d") == 20 && get(r, "width") == 8));
        let steps = db.export_steps().unwrap();
        assert_eq!(steps.len(), 4);
        assert_eq!(db.integrity_check().unwrap(), "ok");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_schema_version_and_bad_paths_are_refused() {
        let dir = tmp("version");
        let p = dir.join("r.sqlite");
        drop(Db::open(&p).unwrap());
        let c = Connection::open(&p).unwrap();
        c.execute(
            "UPDATE meta SET value = '99' WHERE name = 'schema_version'",
            [],
        )
        .unwrap();
        drop(c);
        for e in [
            Db::open(&p).err().unwrap(),
            Db::open_read_only(&p).err().unwrap(),
        ] {
            let m = e.to_string();
            assert!(
                m.contains("schema version 99") && m.contains("r.sqlite"),
                "{m}"
            );
        }
        let m = Db::open(&dir).err().unwrap().to_string();
        assert!(m.contains("is a directory"), "{m}");
        let junk = dir.join("junk.sqlite");
        std::fs::write(
            &junk,
            "this is not a database, just some text that is long enough",
        )
        .unwrap();
        let m = Db::open(&junk).err().unwrap().to_string();
        assert!(m.contains("junk.sqlite") && !m.contains('\n'), "{m}");
        let m = Db::open_read_only(&dir.join("missing.sqlite"))
            .err()
            .unwrap()
            .to_string();
        assert!(m.contains("missing.sqlite"), "{m}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn locked_database_is_a_one_line_error_naming_the_path() {
        let dir = tmp("locked");
        let p = dir.join("r.sqlite");
        let pts = points();
        let mut db = Db::open(&p).unwrap();
        let holder = Connection::open(&p).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let mut other = Db::open_with_timeout(&p, Duration::from_millis(100)).ok();
        // Either the open or the write reports the lock.
        let m = match other.as_mut() {
            None => Db::open_with_timeout(&p, Duration::from_millis(100))
                .err()
                .unwrap()
                .to_string(),
            Some(o) => o
                .insert(&record(&pts[0], "ok", 0.5))
                .unwrap_err()
                .to_string(),
        };
        assert!(m.contains("locked") && m.contains("r.sqlite"), "{m}");
        assert!(!m.contains('\n'));
        holder.execute_batch("COMMIT").unwrap();
        db.insert(&record(&pts[0], "ok", 0.5)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn merge_is_a_union_by_key_preferring_ok() {
        let dir = tmp("merge");
        let pts = points();
        let (a, b, out) = (
            dir.join("a.sqlite"),
            dir.join("b.sqlite"),
            dir.join("o.sqlite"),
        );
        let mut da = Db::open(&a).unwrap();
        da.insert(&record(&pts[0], "ok", 0.1)).unwrap();
        da.insert(&record(&pts[1], "failed", 0.2)).unwrap();
        let mut dbb = Db::open(&b).unwrap();
        dbb.insert(&record(&pts[0], "ok", 0.9)).unwrap();
        dbb.insert(&record(&pts[1], "ok", 0.3)).unwrap();
        dbb.insert(&record(&pts[2], "ok", 0.4)).unwrap();
        drop((da, dbb));
        let mut o = Db::open(&out).unwrap();
        assert_eq!(o.merge_from(&a).unwrap(), 2);
        assert_eq!(o.merge_from(&b).unwrap(), 2);
        assert_eq!(o.merge_from(&b).unwrap(), 0);
        assert_eq!(o.count().unwrap(), 3);
        assert_eq!(o.done_keys().unwrap().len(), 3);
        let rows = o.export_points().unwrap();
        let val = |k: &str| {
            let r = rows
                .iter()
                .find(|r| r.iter().any(|(c, v)| c == "key" && v == k))
                .unwrap();
            r.iter()
                .find(|(c, _)| c == "alignment_mean")
                .unwrap()
                .1
                .as_f64()
                .unwrap()
        };
        assert_eq!(val(&pts[0].key), 0.1); // first seen kept
        assert_eq!(val(&pts[1].key), 0.3); // failed replaced by ok
        assert_eq!(o.export_steps().unwrap().len(), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
