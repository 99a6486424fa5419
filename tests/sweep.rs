//! End-to-end tests of `mim sweep` and `mim results`: bad input, resume, failed points,
//! sharding + merge against one unsharded run, and `kill -9` in the middle of a sweep.

use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A fresh scratch folder for test `name` (per test process).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mim-sweep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mim_cmd(cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mim"));
    c.args(args)
        .current_dir(cwd)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .env_remove("SLURM_ARRAY_TASK_MIN");
    c
}

fn mim(cwd: &Path, args: &[&str]) -> Output {
    mim_cmd(cwd, args).output().expect("mim runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed ({:?}): {}\n{}",
        o.status.code(),
        text(&o.stderr),
        text(&o.stdout)
    );
    text(&o.stdout)
}

/// Sizes that run in milliseconds.
const TINY: &str = "[set]\n\"data.d\" = 20\n\"model.width\" = 8\n\"data.alpha1\" = 4\n\"data.alpha2\" = 4\n\"data.n_test\" = 200\n";

fn write_sweep(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, format!("{TINY}{body}")).unwrap();
    p
}

fn open(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// key → (status, metric values) for every point.
type PointMap = BTreeMap<String, (String, Vec<Option<f64>>)>;

fn points(db: &Path) -> PointMap {
    let c = open(db);
    let mut st = c
        .prepare(
            "SELECT key, status, alignment_mean, subspace_cos_min, test_mse, train_mse,
                    energy_fraction, power_iteration_cos FROM points",
        )
        .unwrap();
    st.query_map([], |r| {
        let vals = (2..8)
            .map(|i| r.get::<_, Option<f64>>(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((r.get::<_, String>(0)?, (r.get::<_, String>(1)?, vals)))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn steps_per_key(db: &Path) -> BTreeMap<String, i64> {
    let c = open(db);
    let mut st = c
        .prepare("SELECT key, count(*) FROM steps GROUP BY key")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn bad_sweep_files_exit_2_with_one_line() {
    let dir = scratch("bad");
    let cases: &[(&str, &str)] = &[
        ("[axes]\n\"data.bogus\" = [1, 2]\n", "data.bogus"),
        ("[axes]\n\"stage1.stepz\" = [1]\n", "stage1.stepz"),
        ("[axes]\nseed = []\n", "empty axis"),
        ("[axes]\nseed = \"4..2\"\n", "empty range"),
        ("[axes]\n", "no axes"),
        (
            "[[zip]]\n\"stage1.lr\" = [1.0, 2.0]\n\"stage1.weight_decay\" = [1.0]\n",
            "equal lengths",
        ),
        ("[axes\nseed = [0]\n", "malformed TOML"),
        (
            "base = \"no-such-base.toml\"\n[axes]\nseed = [0]\n",
            "no-such-base.toml",
        ),
        ("[axes]\n\"data.r\" = [2, 50]\n", "data.r"),
    ];
    for (i, (body, needle)) in cases.iter().enumerate() {
        // The base line has to come before [set]; write it first.
        let (head, rest) = match body.strip_prefix("base = ") {
            Some(r) => {
                let (line, rest) = r.split_once('\n').unwrap();
                (format!("base = {line}\n"), rest.to_string())
            }
            None => (String::new(), body.to_string()),
        };
        let p = dir.join(format!("bad{i}.toml"));
        std::fs::write(&p, format!("{head}{TINY}{rest}")).unwrap();
        let o = mim(&dir, &["sweep", p.to_str().unwrap(), "--quiet"]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{body:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{body:?}: {err}");
        assert!(err.contains(needle), "{body:?}: {err}");
        assert!(!dir.join("runs").exists(), "{body:?} created runs/");
    }
    // A missing sweep file, a bad shard, a database path that is a folder.
    let good = write_sweep(&dir, "good", "[axes]\nseed = [0]\n");
    let g = good.to_str().unwrap();
    for (args, needle) in [
        (vec!["sweep", "missing.toml"], "missing.toml"),
        (vec!["sweep", g, "--shard", "3/2"], "--shard"),
        (vec!["sweep", g, "--shard", "slurm"], "SLURM_ARRAY_TASK_ID"),
        (
            vec!["sweep", g, "--db", dir.to_str().unwrap()],
            "is a directory",
        ),
        (vec!["sweep", g, "--jobs", "0"], "--jobs"),
        (vec!["results", "ls", "missing.sqlite"], "missing.sqlite"),
    ] {
        let o = mim(&dir, &args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A database from another schema version is refused, by sweep and by results.
    let db = dir.join("v.sqlite");
    let d = db.to_str().unwrap();
    ok(&mim(&dir, &["sweep", g, "--db", d, "--quiet"]));
    open(&db)
        .execute(
            "UPDATE meta SET value = '7' WHERE name = 'schema_version'",
            [],
        )
        .unwrap();
    for args in [vec!["sweep", g, "--db", d], vec!["results", "ls", d]] {
        let o = mim(&dir, &args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains("schema version 7") && err.contains("v.sqlite"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_skips_done_points_and_results_export_them() {
    let dir = scratch("resume");
    let s = write_sweep(
        &dir,
        "grid",
        "[axes]\nseed = \"0..3\"\n\"stage1.steps\" = [1, 3]\n",
    );
    let s = s.to_str().unwrap();
    // Default paths: runs/<stem>/results.sqlite and runs/<stem>/points/<key>/.
    let first = ok(&mim(&dir, &["sweep", s, "--jobs", "2", "--quiet"]));
    assert!(
        first.contains("6 points, 0 already stored, 6 ran: 6 ok, 0 failed"),
        "{first}"
    );
    let db = dir.join("runs/grid/results.sqlite");
    let pts = points(&db);
    assert_eq!(pts.len(), 6);
    assert!(pts
        .values()
        .all(|(st, v)| st == "ok" && v.iter().all(|x| x.is_some())));
    for key in pts.keys() {
        let folder = dir.join("runs/grid/points").join(key);
        for f in ["config.toml", "metrics.jsonl", "summary.json", "log.txt"] {
            assert!(
                folder.join(f).is_file(),
                "{f} missing in {}",
                folder.display()
            );
        }
    }
    // Steps: T1 + 1 records (step 0 = init) per point.
    let steps = steps_per_key(&db);
    let c = open(&db);
    for (key, n) in &steps {
        let t1: i64 = c
            .query_row("SELECT steps FROM points WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(*n, t1 + 1, "{key}");
    }
    drop(c);

    let again = ok(&mim(&dir, &["sweep", s, "--quiet"]));
    assert!(again.contains("6 already stored, 0 ran"), "{again}");
    assert_eq!(points(&db), pts, "the second run changed stored points");

    // results ls / export.
    let d = db.to_str().unwrap();
    let ls = ok(&mim(&dir, &["results", "ls", d]));
    assert_eq!(ls.trim_end().lines().count(), 1, "{ls}");
    assert!(ls.contains("grid: 6 points (6 ok, 0 failed)"), "{ls}");
    assert!(
        ls.contains("seed [0, 1, 2]") && ls.contains("stage1.steps [1, 3]"),
        "{ls}"
    );
    let csv = dir.join("out.csv");
    ok(&mim(
        &dir,
        &["results", "export", d, "--csv", csv.to_str().unwrap()],
    ));
    let csv = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 7);
    let header: Vec<&str> = lines[0].split(',').collect();
    for col in [
        "key",
        "status",
        "seed",
        "stage1.steps",
        "alignment_mean",
        "test_mse",
        "d",
    ] {
        assert!(header.contains(&col), "{col} not in {header:?}");
    }
    let jsonl = dir.join("out.jsonl");
    ok(&mim(
        &dir,
        &["results", "export", d, "--jsonl", jsonl.to_str().unwrap()],
    ));
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    for r in &rows {
        let (_, vals) = &pts[r["key"].as_str().unwrap()];
        assert_eq!(r["alignment_mean"].as_f64(), vals[0]);
        assert_eq!(r["d"], 20);
    }
    let sj = dir.join("steps.jsonl");
    ok(&mim(
        &dir,
        &[
            "results",
            "export",
            d,
            "--steps",
            "--jsonl",
            sj.to_str().unwrap(),
        ],
    ));
    let n: i64 = steps.values().sum();
    let step_rows = std::fs::read_to_string(&sj).unwrap();
    assert_eq!(step_rows.lines().count() as i64, n);
    assert!(step_rows
        .lines()
        .all(|l| l.contains("\"stage\":\"stage1\"")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_points_are_recorded_and_rerun() {
    let dir = scratch("failed");
    // The second zip entry diverges (literal GD with a huge step): those points fail.
    let s = write_sweep(
        &dir,
        "f",
        "[axes]\nseed = [0, 1]\n[[zip]]\n\"stage1.mode\" = [\"normalized\", \"literal\"]\n\"stage1.lr\" = [1.0, 1e30]\n\"stage1.weight_decay\" = [1.0, 0.0]\n",
    );
    let (s, db) = (s.to_str().unwrap(), dir.join("f.sqlite"));
    let d = db.to_str().unwrap();
    let o = mim(&dir, &["sweep", s, "--db", d, "--jobs", "2", "--quiet"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("4 ran: 2 ok, 2 failed"),
        "{}",
        text(&o.stdout)
    );
    assert!(text(&o.stderr).contains("2 of 4 points failed"));
    let c = open(&db);
    let errors: Vec<String> = c
        .prepare("SELECT error FROM points WHERE status = 'failed'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| e.contains("diverged")), "{errors:?}");
    drop(c);
    // A re-run runs the failed points again (and only them).
    let o = mim(&dir, &["sweep", s, "--db", d, "--quiet"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).contains("2 already stored, 2 ran"),
        "{}",
        text(&o.stdout)
    );
    let ls = ok(&mim(&dir, &["results", "ls", d]));
    assert!(ls.contains("f: 4 points (2 ok, 2 failed)"), "{ls}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shards_and_merge_equal_one_unsharded_run() {
    let dir = scratch("shard");
    let s = write_sweep(
        &dir,
        "sh",
        "[axes]\nseed = \"0..3\"\n\"data.alpha1\" = [2, 4]\n",
    );
    let s = s.to_str().unwrap();
    let db = |n: &str| dir.join(format!("{n}.sqlite"));
    let whole = db("whole");
    ok(&mim(
        &dir,
        &[
            "sweep",
            s,
            "--db",
            whole.to_str().unwrap(),
            "--jobs",
            "2",
            "--quiet",
        ],
    ));
    // Two shards as two processes at once; the second through the SLURM variables.
    let a = mim_cmd(
        &dir,
        &[
            "sweep",
            s,
            "--db",
            db("a").to_str().unwrap(),
            "--jobs",
            "2",
            "--shard",
            "1/2",
            "--quiet",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let b = mim_cmd(
        &dir,
        &[
            "sweep",
            s,
            "--db",
            db("b").to_str().unwrap(),
            "--jobs",
            "2",
            "--shard",
            "slurm",
            "--quiet",
        ],
    )
    .env("SLURM_ARRAY_TASK_ID", "1")
    .env("SLURM_ARRAY_TASK_COUNT", "2")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(ok(&oa).contains("(3 in shard 1/2)"), "{}", text(&oa.stdout));
    assert!(ok(&ob).contains("(3 in shard 2/2)"), "{}", text(&ob.stdout));
    let (pa, pb) = (points(&db("a")), points(&db("b")));
    assert_eq!(pa.len(), 3);
    assert_eq!(pb.len(), 3);
    assert!(pa.keys().all(|k| !pb.contains_key(k)), "shards overlap");

    let merged = db("merged");
    let m = merged.to_str().unwrap();
    ok(&mim(
        &dir,
        &[
            "results",
            "merge",
            m,
            db("a").to_str().unwrap(),
            db("b").to_str().unwrap(),
        ],
    ));
    let pm = points(&merged);
    let pw = points(&whole);
    assert_eq!(pm.keys().collect::<Vec<_>>(), pw.keys().collect::<Vec<_>>());
    assert_eq!(
        pm, pw,
        "metric values differ between sharded and unsharded runs"
    );
    assert_eq!(steps_per_key(&merged), steps_per_key(&whole));
    // Merging the unsharded database in too: identical keys appear once.
    ok(&mim(
        &dir,
        &["results", "merge", m, whole.to_str().unwrap()],
    ));
    assert_eq!(points(&merged), pw);
    let n: i64 = open(&merged)
        .query_row("SELECT count(*) FROM points", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn ok_count(db: &Path) -> usize {
    if !db.exists() {
        return 0;
    }
    let Ok(c) = Connection::open(db) else {
        return 0;
    };
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row("SELECT count(*) FROM points WHERE status = 'ok'", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as usize)
    .unwrap_or(0)
}

#[test]
fn kill_9_then_resume_keeps_every_point_exactly_once() {
    let dir = scratch("kill");
    // 6 points of ~0.3 s each (2000 tiny stage-1 steps, so 2001 step rows per point).
    let s = write_sweep(
        &dir,
        "k",
        "\"stage1.steps\" = 2000\n[axes]\nseed = \"0..6\"\n",
    );
    let s = s.to_str().unwrap();
    let db = dir.join("k.sqlite");
    let d = db.to_str().unwrap();
    let mut child = mim_cmd(&dir, &["sweep", s, "--db", d, "--jobs", "2", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while ok_count(&db) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no point landed");
        assert!(
            child.try_wait().unwrap().is_none(),
            "sweep ended before any point landed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let c = open(&db);
    assert_eq!(
        c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .unwrap(),
        "ok"
    );
    let before: BTreeMap<String, String> = c
        .prepare("SELECT key, created_at FROM points WHERE status = 'ok'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    drop(c);
    assert!(!before.is_empty());
    assert!(
        before.len() < 6,
        "the sweep finished before the kill: nothing tested"
    );
    // Whatever landed is whole: every stored point has all its step rows.
    let steps = steps_per_key(&db);
    for k in before.keys() {
        assert_eq!(steps.get(k), Some(&2001), "{k} half-written");
    }

    let out = ok(&mim(
        &dir,
        &["sweep", s, "--db", d, "--jobs", "2", "--quiet"],
    ));
    let expected = format!(
        "{} already stored, {} ran: {} ok",
        before.len(),
        6 - before.len(),
        6 - before.len()
    );
    assert!(out.contains(&expected), "{out}");

    let c = open(&db);
    assert_eq!(
        c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .unwrap(),
        "ok"
    );
    let rows: Vec<(String, String, String)> = c
        .prepare("SELECT key, status, created_at FROM points")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    // The resumed run added exactly the points the killed one had not stored, each stamped
    // after every point stored before the kill (the primary key already forbids duplicates).
    let newer: Vec<&(String, String, String)> =
        rows.iter().filter(|r| !before.contains_key(&r.0)).collect();
    assert_eq!(newer.len(), 6 - before.len(), "{rows:?}");
    let last_before = before
        .values()
        .max()
        .expect("points stored before the kill");
    assert!(
        newer.iter().all(|r| &r.2 >= last_before),
        "a point of the resumed run is older than the kill: {rows:?}"
    );
    assert!(rows.iter().all(|r| r.1 == "ok"));
    for (k, at) in &before {
        let row = rows.iter().find(|r| &r.0 == k).expect("point lost");
        assert_eq!(&row.2, at, "{k} was run again");
    }
    let steps = steps_per_key(&db);
    assert_eq!(steps.len(), 6);
    assert!(steps.values().all(|&n| n == 2001), "{steps:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `mim sweep` on `db` and returns its one-line error (exit code 2 asserted).
fn one_line_db_error(dir: &Path, sweep: &str, db: &str, extra: &[&str]) -> String {
    let mut args = vec!["sweep", sweep, "--db", db, "--quiet"];
    args.extend_from_slice(extra);
    let o = mim(dir, &args);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    err
}

#[test]
fn locked_or_unwritable_databases_exit_2_with_one_line_and_a_hint() {
    let dir = scratch("unusable");
    let s = write_sweep(&dir, "u", "[axes]\nseed = [0]\n");
    let s = s.to_str().unwrap();

    // Locked: another process holds the write lock for longer than --lock-timeout.
    let db = dir.join("held.sqlite");
    let d = db.to_str().unwrap();
    ok(&mim(&dir, &["sweep", s, "--db", d, "--quiet"]));
    let holder = open(&db);
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let t0 = Instant::now();
    let err = one_line_db_error(&dir, s, d, &["--lock-timeout", "0.2"]);
    assert!(t0.elapsed() >= Duration::from_millis(200), "did not wait");
    assert!(
        err.contains("held.sqlite") && err.contains("locked") && err.contains("--lock-timeout"),
        "{err}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    // Released, the same command goes through.
    ok(&mim(
        &dir,
        &["sweep", s, "--db", d, "--quiet", "--lock-timeout", "0.2"],
    ));

    // Bad --lock-timeout values.
    for bad in ["-1", "NaN", "inf", "soon"] {
        let arg = format!("--lock-timeout={bad}");
        let err = one_line_db_error(&dir, s, d, &[&arg]);
        assert!(err.contains("--lock-timeout"), "{bad}: {err}");
    }

    // A folder on the path that is a file.
    std::fs::write(dir.join("afile"), "x").unwrap();
    let err = one_line_db_error(&dir, s, "afile/sub/r.sqlite", &[]);
    assert!(err.contains("afile") && err.contains("is a file"), "{err}");

    // A location nobody can create files in (procfs refuses new files, even for root).
    let err = one_line_db_error(&dir, s, "/proc/mim-r.sqlite", &[]);
    assert!(
        err.contains("/proc/mim-r.sqlite") && err.contains("cannot"),
        "{err}"
    );

    // A read-only database file. Root ignores permission bits, so as root the file is made
    // immutable (`chattr +i`) instead; the case is checked only where the file really is
    // unwritable, and says so on stderr where it is not.
    let ro = dir.join("ro.sqlite");
    let r = ro.to_str().unwrap();
    ok(&mim(&dir, &["sweep", s, "--db", r, "--quiet"]));
    let guard = ReadOnly::make(&ro);
    if std::fs::OpenOptions::new().append(true).open(&ro).is_err() {
        let err = one_line_db_error(&dir, s, r, &[]);
        assert!(
            err.contains("ro.sqlite") && err.contains("read-only"),
            "{err}"
        );
    } else {
        eprintln!("NOT CHECKED: read-only database file (cannot make {r} unwritable here)");
    }
    drop(guard);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Makes a file unwritable (permission bits, plus `chattr +i` for root) until dropped.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn make(p: &Path) -> ReadOnly {
        let mut perms = std::fs::metadata(p).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(p, perms).unwrap();
        if std::fs::OpenOptions::new().append(true).open(p).is_ok() {
            let _ = Command::new("chattr").arg("+i").arg(p).output();
        }
        ReadOnly(p.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).output();
        if let Ok(meta) = std::fs::metadata(&self.0) {
            let mut perms = meta.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            let _ = std::fs::set_permissions(&self.0, perms);
        }
    }
}
