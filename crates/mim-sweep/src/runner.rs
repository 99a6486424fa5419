//! Running a sweep: every point not yet stored runs as a child `mim train` process, `jobs` at a
//! time; each finished point is stored in one transaction as it lands.

use crate::db::{Db, PointRecord, BUSY_TIMEOUT};
use crate::spec::{Point, Shard, SweepSpec};
use crate::SweepError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::collections::VecDeque;
use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// How a sweep runs.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// The `mim` executable that runs each point (`mim train ...`).
    pub exe: PathBuf,
    /// Points run at the same time (≥ 1). With more than one, each point gets `threads = 1`.
    pub jobs: usize,
    /// The results database.
    pub db: PathBuf,
    /// The folder holding one run folder per point (`<out>/<key>/`).
    pub out: PathBuf,
    /// Run only this shard of the points.
    pub shard: Option<Shard>,
    /// No progress output.
    pub quiet: bool,
    /// How long a write waits for another process holding the database lock.
    pub lock_timeout: Duration,
}

impl SweepOptions {
    /// Defaults for a sweep named `name`: db `runs/<name>/results.sqlite`, points in
    /// `runs/<name>/points/`, jobs = available cores.
    pub fn defaults(name: &str, exe: PathBuf) -> SweepOptions {
        let root = PathBuf::from("runs").join(name);
        SweepOptions {
            exe,
            jobs: default_jobs(),
            db: root.join("results.sqlite"),
            out: root.join("points"),
            shard: None,
            quiet: false,
            lock_timeout: BUSY_TIMEOUT,
        }
    }
}

/// The number of cores (1 when unknown).
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepOutcome {
    /// Distinct points of the sweep.
    pub total: usize,
    /// Points in this shard (all of them without `--shard`).
    pub selected: usize,
    /// Points skipped because the database has them with status ok.
    pub skipped: usize,
    /// Points run now that succeeded.
    pub ok: usize,
    /// Points run now that failed: (key, error).
    pub failed: Vec<(String, String)>,
}

impl SweepOutcome {
    /// Points run now.
    pub fn ran(&self) -> usize {
        self.ok + self.failed.len()
    }
}

/// The result of one child run.
struct Finished {
    index: usize,
    status: &'static str,
    error: Option<String>,
    summary: Option<Value>,
    steps: Vec<(i64, String)>,
    seconds: f64,
}

/// Runs every point of `spec` (in its shard) that `opts.db` does not hold with status ok.
pub fn run_sweep(spec: &SweepSpec, opts: &SweepOptions) -> Result<SweepOutcome, SweepError> {
    let points = spec.points()?;
    run_points(&spec.name, &points, opts)
}

/// [`run_sweep`] for points already expanded.
pub fn run_points(
    sweep: &str,
    points: &[Point],
    opts: &SweepOptions,
) -> Result<SweepOutcome, SweepError> {
    if opts.jobs == 0 {
        return Err(SweepError::Input("--jobs 0: need at least one job".into()));
    }
    let selected = match opts.shard {
        Some(s) => s.select(points),
        None => points.to_vec(),
    };
    let mut db = Db::open_with_timeout(&opts.db, opts.lock_timeout)?;
    let done = db.done_keys()?;
    let pending: Vec<Point> = selected
        .iter()
        .filter(|p| !done.contains(&p.key))
        .cloned()
        .collect();
    let mut outcome = SweepOutcome {
        total: points.len(),
        selected: selected.len(),
        skipped: selected.len() - pending.len(),
        ..Default::default()
    };
    if pending.is_empty() {
        return Ok(outcome);
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| {
        SweepError::Input(format!("--out {}: cannot create: {e}", opts.out.display()))
    })?;

    let progress = Progress::new(pending.len(), opts.quiet);
    progress.start(&outcome);
    let queue = Mutex::new((0..pending.len()).collect::<VecDeque<usize>>());
    let stop = AtomicBool::new(false);
    let jobs = opts.jobs.min(pending.len());
    let (tx, rx) = mpsc::channel::<Finished>();
    let mut fatal = None;
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (queue, stop, pending) = (&queue, &stop, &pending);
            scope.spawn(move || loop {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Some(i) = queue.lock().expect("queue").pop_front() else {
                    break;
                };
                let p = &pending[i];
                let f = run_point(&opts.exe, p, &opts.out.join(&p.key), opts.jobs > 1, i);
                if tx.send(f).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for f in rx {
            let p = &pending[f.index];
            let rec = PointRecord::new(p, sweep, f.status, f.error.clone(), f.summary, f.steps);
            if let Err(e) = db.insert(&rec) {
                stop.store(true, Ordering::SeqCst);
                fatal.get_or_insert(e);
                continue;
            }
            if f.status == "ok" {
                outcome.ok += 1;
            } else {
                outcome
                    .failed
                    .push((p.key.clone(), f.error.clone().unwrap_or_default()));
            }
            progress.point(p, f.status, f.error.as_deref(), f.seconds);
        }
    });
    progress.finish();
    match fatal {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// Runs one point as `exe train --config <dir>/config.toml --out <dir> --quiet` with output
/// to `<dir>/log.txt`, and reads its results.
fn run_point(exe: &Path, p: &Point, dir: &Path, one_thread: bool, index: usize) -> Finished {
    let t0 = Instant::now();
    let fail = |error: String| Finished {
        index,
        status: "failed",
        error: Some(error),
        summary: None,
        steps: Vec::new(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    let cfg = dir.join("config.toml");
    let prepared = std::fs::create_dir_all(dir)
        .and_then(|_| {
            let _ = std::fs::remove_file(dir.join("summary.json"));
            mim_run::results::write_atomic(&cfg, p.config_toml.as_bytes())
        })
        .and_then(|_| File::create(dir.join("log.txt")));
    let log = match prepared {
        Ok(f) => f,
        Err(e) => return fail(format!("preparing {}: {e}", dir.display())),
    };
    let mut cmd = Command::new(exe);
    cmd.arg("train")
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(dir)
        .arg("--quiet");
    if one_thread {
        cmd.args(["--set", "threads=1"]);
    }
    let stdout = match log.try_clone() {
        Ok(f) => f,
        Err(e) => return fail(format!("log {}: {e}", dir.display())),
    };
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(log);
    die_with_parent(&mut cmd);
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot start {}: {e}", exe.display())),
    };
    let summary: Option<Value> = std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if !status.success() {
        let from_summary = summary
            .as_ref()
            .filter(|s| s["status"] == "failed")
            .and_then(|s| s["error"].as_str().map(String::from));
        let from_log = std::fs::read_to_string(dir.join("log.txt"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(String::from)
            });
        return fail(
            from_summary
                .or(from_log)
                .unwrap_or_else(|| format!("mim train exited with {status}")),
        );
    }
    let Some(summary) = summary.filter(|s| s["status"] == "ok") else {
        return fail(format!(
            "{}: missing or not ok after a successful exit",
            dir.join("summary.json").display()
        ));
    };
    let metrics = dir.join("metrics.jsonl");
    let text = match std::fs::read_to_string(&metrics) {
        Ok(t) => t,
        Err(e) => return fail(format!("reading {}: {e}", metrics.display())),
    };
    let mut steps = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return fail(format!("{} line {}: {e}", metrics.display(), n + 1)),
        };
        if let Some(step) = v.get("step").and_then(|s| s.as_i64()) {
            steps.push((step, line.to_string()));
        }
    }
    Finished {
        index,
        status: "ok",
        error: None,
        summary: Some(summary),
        steps,
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// On Linux the child gets SIGKILL when the thread that started it dies, so a `kill -9` of the
/// sweep leaves no orphan writing into a point folder that a re-run is about to reuse.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Overall progress: a bar on a terminal, plain lines otherwise, nothing when quiet.
struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    total: usize,
    done: std::cell::Cell<usize>,
    start: Instant,
}

impl Progress {
    fn new(total: usize, quiet: bool) -> Progress {
        let term = std::io::stderr().is_terminal();
        let bar = (!quiet && term).then(|| {
            let b = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} points  {elapsed_precise} elapsed, ETA {eta}  {wide_msg}",
                )
                .expect("template"),
            );
            b
        });
        Progress {
            bar,
            plain: !quiet && !term,
            total,
            done: std::cell::Cell::new(0),
            start: Instant::now(),
        }
    }

    fn start(&self, o: &SweepOutcome) {
        if self.plain || self.bar.is_some() {
            let line = format!(
                "sweep: {} points to run ({} in sweep, {} in shard, {} already stored)",
                self.total, o.total, o.selected, o.skipped
            );
            match &self.bar {
                Some(b) => b.println(line),
                None => eprintln!("{line}"),
            }
        }
    }

    fn point(&self, p: &Point, status: &str, error: Option<&str>, seconds: f64) {
        self.done.set(self.done.get() + 1);
        let k = self.done.get();
        let err = error.map(|e| format!(": {e}")).unwrap_or_default();
        if let Some(b) = &self.bar {
            if status != "ok" {
                b.println(format!("{} {} failed{err}", p.key, p.params_text()));
            }
            b.set_message(format!("last: {}", p.params_text()));
            b.inc(1);
        } else if self.plain {
            let elapsed = self.start.elapsed().as_secs_f64();
            let eta = elapsed / k as f64 * (self.total - k) as f64;
            eprintln!(
                "[{k}/{}] {} {} {status} ({seconds:.2} s){err}; ETA {eta:.0} s",
                self.total,
                p.key,
                p.params_text()
            );
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
