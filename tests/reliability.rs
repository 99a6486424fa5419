//! Reliability of `mim train`: checkpoints and `--resume` (including `kill -9` at random
//! moments), numerical guards, degenerate data, resource limits, unwritable output, and
//! determinism at a fixed thread count. Every run here is small (a few seconds at most).

mod common;

use common::{
    assert_one_line_error, empty_dir, mim, mim_command, mim_ok, read_json, scratch, strip_volatile,
    with_sets,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `train --quiet --out DIR` with `--set` for each of `sets`, plus `extra` arguments.
fn train_args(out: &Path, sets: &[&str], extra: &[&str]) -> Vec<String> {
    let out = out.to_string_lossy();
    let mut args = with_sets(&["train", "--quiet", "--out", &out], sets);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `train --quiet --resume DIR`.
fn resume_args(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    ["train", "--quiet", "--resume", &dir]
        .map(String::from)
        .to_vec()
}

/// Runs and asserts the exit code and exactly one stderr line without a panic; returns it.
fn run_fails(args: &[String], code: i32) -> String {
    assert_one_line_error(&mim(args), code, &args)
}

fn summary(dir: &Path) -> Value {
    strip_volatile(read_json(&dir.join("summary.json")))
}

fn metrics(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            strip_volatile(
                serde_json::from_str(l).unwrap_or_else(|e| panic!("corrupt line {l:?}: {e}")),
            )
        })
        .collect()
}

/// No file in the run folder (or its checkpoints) is corrupt: every `.json` parses, every line
/// of every `.jsonl` parses, every `.bpk` is non-empty. With `finished`, no temporary file is
/// left either.
fn assert_consistent(dir: &Path, finished: bool) {
    for sub in [dir.to_path_buf(), dir.join("checkpoints")] {
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp") {
                assert!(!finished, "temporary file left: {}", path.display());
                continue;
            }
            if name.ends_with(".jsonl") {
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    serde_json::from_str::<Value>(line).unwrap_or_else(|e| {
                        panic!("{}: corrupt line {line:?}: {e}", path.display())
                    });
                }
            } else if name.ends_with(".json") {
                read_json(&path);
            } else if name.ends_with(".bpk") {
                assert!(
                    std::fs::metadata(&path).unwrap().len() > 0,
                    "{}",
                    path.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------- checkpoints and resume

/// A run that lasts 1–2 s on 2 cores with a checkpoint every step or two (each one synced).
const KILL_RUN: [&str; 9] = [
    "threads=2",
    "data.d=100",
    "model.width=128",
    "data.alpha1=32",
    "data.alpha2=16",
    "data.n_test=2000",
    "stage1.steps=40",
    "stage2.ridge_lambda=1e-2",
    "checkpoint.every=1",
];

/// The same in f64 with the device-tensor closed-form gradient and checkpoints every 2 steps.
const KILL_RUN_F64: [&str; 10] = [
    "threads=2",
    "dtype=f64",
    "stage1.gradient=closed_form",
    "data.d=100",
    "model.width=128",
    "data.alpha1=32",
    "data.alpha2=16",
    "data.n_test=2000",
    "stage1.steps=20",
    "checkpoint.every=2",
];

/// The phase and step of the last checkpoint, if any.
fn checkpoint_of(dir: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(dir.join("checkpoints/state.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some((v["phase"].as_str()?.to_string(), v["step"].as_u64()?))
}

/// When to kill.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// As soon as a stage-1 checkpoint of at least this step exists.
    Stage1Step(u64),
    /// As soon as the stage-1 checkpoint exists.
    Stage1Done,
    /// This long after config.toml appears.
    After(Duration),
    /// As soon as a `[[schedule]]` checkpoint of at least this many stages exists.
    StageDone(u64),
}

fn spawn(args: &[String]) -> Child {
    mim_command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mim runs")
}

/// Waits for `moment` (polling every 2 ms, at most 60 s), then `kill -9`s the child. Returns the
/// checkpoint at the kill, or `None` when the run ended before.
fn kill_at(child: &mut Child, dir: &Path, moment: Moment) -> Option<Option<(String, u64)>> {
    let start = Instant::now();
    let mut config_seen: Option<Instant> = None;
    loop {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        let ckpt = checkpoint_of(dir);
        let now = match moment {
            Moment::Stage1Step(k) => {
                matches!(&ckpt, Some((p, s)) if p != "stage1" || *s >= k)
            }
            Moment::Stage1Done => matches!(&ckpt, Some((p, _)) if p != "stage1"),
            Moment::StageDone(k) => matches!(&ckpt, Some((p, s)) if p == "stage" && *s >= k),
            Moment::After(wait) => {
                if config_seen.is_none() && dir.join("config.toml").exists() {
                    config_seen = Some(Instant::now());
                }
                config_seen.is_some_and(|t| t.elapsed() >= wait)
            }
        };
        if now {
            child.kill().expect("SIGKILL");
            child.wait().unwrap();
            return Some(checkpoint_of(dir));
        }
        assert!(start.elapsed() < Duration::from_secs(60), "run hangs");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A random duration in [0, max) from the clock (printed, so a failure can be replayed).
fn random_moment(max: Duration, salt: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut x = nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    max.mul_f64((x % 10_000) as f64 / 10_000.0)
}

/// Kills `mim train` (and, in the last scenarios, `mim train --resume` itself) with SIGKILL at
/// several moments — early and late in stage 1, after stage 1, at random times — then resumes:
/// summary.json and metrics.jsonl equal the uninterrupted run's (timings aside), and no file in
/// the folder is corrupt, after the kill and after the resume.
#[test]
fn kill_9_then_resume_reproduces_the_uninterrupted_run() {
    let mut kills = 0;
    for (label, sets) in [("f32", &KILL_RUN[..]), ("f64", &KILL_RUN_F64[..])] {
        let reference = scratch(&format!("kill-ref-{label}"));
        let t = Instant::now();
        mim_ok(&train_args(&reference, sets, &[]));
        let duration = t.elapsed();
        assert_consistent(&reference, true);
        let (want_summary, want_metrics) = (summary(&reference), metrics(&reference));
        assert_eq!(want_summary["status"], "ok");

        let mut moments = vec![
            vec![Moment::Stage1Step(1)],
            vec![Moment::Stage1Step(12)],
            vec![Moment::Stage1Done],
            vec![Moment::After(random_moment(duration, 1))],
        ];
        if label == "f32" {
            // Killed again while resuming.
            moments.push(vec![
                Moment::After(random_moment(duration / 2, 2)),
                Moment::After(random_moment(duration / 2, 3)),
            ]);
        }
        for (i, plan) in moments.into_iter().enumerate() {
            let dir = scratch(&format!("kill-{label}-{i}"));
            let mut args = train_args(&dir, sets, &[]);
            for moment in &plan {
                let mut child = spawn(&args);
                match kill_at(&mut child, &dir, *moment) {
                    Some(at) => {
                        kills += 1;
                        eprintln!("{label} #{i}: killed at {moment:?}, last checkpoint {at:?}");
                        assert_consistent(&dir, false);
                    }
                    None => eprintln!("{label} #{i}: finished before {moment:?}"),
                }
                args = resume_args(&dir);
            }
            mim_ok(&args);
            assert_consistent(&dir, true);
            assert_eq!(summary(&dir), want_summary, "{label} #{i}: summary differs");
            assert_eq!(
                metrics(&dir),
                want_metrics,
                "{label} #{i}: metrics.jsonl differs"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        let _ = std::fs::remove_dir_all(&reference);
    }
    eprintln!("kills survived: {kills}");
    assert!(kills >= 6, "only {kills} kills landed");
}

/// Tiny sizes for the quick checks below.
const TINY: [&str; 5] = [
    "data.d=20",
    "model.width=8",
    "data.alpha1=4",
    "data.alpha2=4",
    "data.n_test=200",
];

fn tiny<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    [&TINY[..], extra].concat()
}

/// Resuming a finished run changes nothing; resuming from the stage-2 checkpoint (summary
/// gone) gives the same result; an edited config.toml is refused (exit 2, naming it).
#[test]
fn resume_from_stage_checkpoints_and_refuse_an_edited_config() {
    let dir = scratch("resume-stages");
    mim_ok(&train_args(&dir, &tiny(&["checkpoint.every=2"]), &[]));
    let (want, want_metrics) = (summary(&dir), metrics(&dir));
    let resume = resume_args(&dir);
    mim_ok(&resume);
    assert_eq!(summary(&dir), want);

    assert_eq!(checkpoint_of(&dir).unwrap().0, "stage2_done");
    std::fs::remove_file(dir.join("summary.json")).unwrap();
    std::fs::remove_file(dir.join("model.bpk")).unwrap();
    mim_ok(&resume);
    assert_eq!(summary(&dir), want);
    assert_eq!(metrics(&dir), want_metrics);
    assert!(dir.join("model.bpk").is_file());

    std::fs::remove_file(dir.join("summary.json")).unwrap();
    let config = dir.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("seed = 0", "seed = 5")).unwrap();
    let err = run_fails(&resume, 2);
    assert!(err.contains("config.toml differs"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    let err = run_fails(
        &[
            "train".into(),
            "--resume".into(),
            scratch("resume-missing").to_string_lossy().into_owned(),
        ],
        2,
    );
    assert!(err.contains("config.toml"), "{err}");
}

// ---------------------------------------------------------------- numerical guards

/// Trains the tiny config plus `sets` into scratch folder `name`, which must diverge: exit 1
/// with one line containing `want`, and summary.json marks the failure. Returns the folder and
/// the error line.
fn assert_diverges(name: &str, sets: &[&str], want: &str) -> (PathBuf, String) {
    let dir = scratch(name);
    let err = run_fails(&train_args(&dir, &tiny(sets), &[]), 1);
    assert!(err.contains(want), "{err}");
    let s = read_json(&dir.join("summary.json"));
    assert_eq!(s["status"], "failed");
    assert!(s["error"].as_str().unwrap().contains(want), "{s}");
    (dir, err)
}

/// NaN/Inf or exploding weights stop the run: exit 1, one line naming the stage, step and
/// quantity, summary.json marks the failure, the last good checkpoint stays.
#[test]
fn divergence_stops_the_run_with_stage_step_and_quantity() {
    let literal = ["stage1.mode=literal", "stage1.weight_decay=0"];
    let (dir, _) = assert_diverges(
        "diverge-1",
        &[&literal[..], &["stage1.lr=1e30"]].concat(),
        "stage1 diverged at step 1: max|W|",
    );
    assert_consistent(&dir, true);

    // Diverges at step 2: the step-1 checkpoint is kept.
    let (dir, _) = assert_diverges(
        "diverge-2",
        &[
            &literal[..],
            &["stage1.lr=1e14", "stage1.steps=8", "checkpoint.every=1"],
        ]
        .concat(),
        "stage1 diverged at step 2: max|W|",
    );
    assert_eq!(checkpoint_of(&dir), Some(("stage1".into(), 1)));
    assert!(dir.join("checkpoints/stage1-000001.bpk").is_file());
    assert_consistent(&dir, true);

    // Stage 2: GD with a step size far beyond 2/λ_max.
    let (_, err) = assert_diverges(
        "diverge-3",
        &["stage2.solver=gd", "stage2.lr=100"],
        "stage2 diverged at step",
    );
    assert!(err.contains("‖a‖ is inf"), "{err}");
    for d in ["diverge-1", "diverge-2", "diverge-3"] {
        let _ = std::fs::remove_dir_all(scratch(d));
    }
}

/// Constant labels are refused (or warned about when they are pure noise); n2 < width and
/// n1 < d warn.
#[test]
fn degenerate_data_is_refused_or_warned() {
    let dir = scratch("degenerate");
    for normalize in ["true", "false"] {
        let n = format!("data.normalize={normalize}");
        let err = run_fails(&train_args(&dir, &tiny(&["data.link=h0(z1)", &n]), &[]), 2);
        assert!(
            err.contains("data.link") && err.contains("constant"),
            "{err}"
        );
    }
    assert!(!dir.exists(), "a refused config created its run folder");

    mim_ok(&train_args(
        &dir,
        &tiny(&["data.link=h0(z1)", "data.normalize=false", "data.noise=0.5"]),
        &[],
    ));
    let s = summary(&dir);
    assert!(s["warnings"].to_string().contains("pure noise"), "{s}");

    mim_ok(&train_args(
        &dir,
        &tiny(&["model.width=16", "data.n2=10", "data.n1=10"]),
        &[],
    ));
    let s = summary(&dir);
    let warnings = s["warnings"].to_string();
    assert!(warnings.contains("n2 = 10 < width = 16"), "{s}");
    assert!(warnings.contains("n1 = 10 < d = 20"), "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- resource limits and I/O

/// A config whose data would not fit is refused before anything runs: exit 2 with the
/// estimate and the limit.
#[test]
fn memory_limit_refuses_absurd_runs_up_front() {
    let dir = scratch("memory");
    let big = [
        "data.d=20000",
        "data.n1=100000",
        "data.streaming=off",
        "model.width=8",
    ];
    let err = run_fails(&train_args(&dir, &big, &["--max-memory", "1GiB"]), 2);
    assert!(
        err.contains("the run needs ≈") && err.contains("1.0 GiB (--max-memory 1GiB)"),
        "{err}"
    );
    assert!(!dir.exists());
    // The default limit is 80 % of the physical memory.
    let huge = [
        "data.d=100000",
        "data.n1=10000000",
        "data.streaming=off",
        "model.width=8",
    ];
    if std::fs::read_to_string("/proc/meminfo").is_ok() {
        let err = run_fails(&train_args(&dir, &huge, &[]), 2);
        assert!(err.contains("80% of RAM"), "{err}");
    }
    let err = run_fails(&train_args(&dir, &TINY, &["--max-memory", "lots"]), 2);
    assert!(err.contains("--max-memory"), "{err}");
    // A tiny run fits a small limit.
    mim_ok(&train_args(&dir, &TINY, &["--max-memory", "200MiB"]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An --out path that cannot be created is a usage error (exit 2, naming --out); a full disk
/// while writing is a runtime error (exit 1, naming the file and the reason).
#[test]
fn unwritable_output_is_a_clear_error() {
    let dir = empty_dir("io");
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = run_fails(&train_args(&file.join("run"), &TINY, &[]), 2);
    assert!(
        err.contains("--out") && err.contains("cannot create the run folder"),
        "{err}"
    );

    if Path::new("/dev/full").exists() {
        let run = dir.join("full");
        std::fs::create_dir_all(&run).unwrap();
        std::os::unix::fs::symlink("/dev/full", run.join("metrics.jsonl")).unwrap();
        let err = run_fails(&train_args(&run, &TINY, &[]), 1);
        assert!(err.contains("metrics.jsonl"), "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        assert_eq!(read_json(&run.join("summary.json"))["status"], "failed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- determinism

/// Same seed ⇒ identical summary.json and metrics.jsonl (timings aside) on CPU at a fixed
/// thread count (1 and 2); 1 and 2 threads agree to 1e-5 (f32 sums in another order).
#[test]
fn same_seed_same_results_at_fixed_threads() {
    let mut by_threads = Vec::new();
    for threads in ["threads=1", "threads=2"] {
        let sets = [
            threads,
            "data.d=50",
            "model.width=32",
            "data.alpha1=8",
            "data.alpha2=8",
            "data.n_test=1000",
            "stage2.ridge_lambda=1e-3",
        ];
        let (a, b) = (
            scratch(&format!("det-{threads}-a")),
            scratch(&format!("det-{threads}-b")),
        );
        mim_ok(&train_args(&a, &sets, &[]));
        mim_ok(&train_args(&b, &sets, &[]));
        assert_eq!(summary(&a), summary(&b), "{threads}");
        assert_eq!(metrics(&a), metrics(&b), "{threads}");
        by_threads.push(summary(&a));
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }
    for key in [
        "alignment_mean",
        "alignment_median",
        "subspace_cos_min",
        "energy_fraction",
        "test_mse",
        "train_mse",
    ] {
        let (x, y) = (
            by_threads[0][key].as_f64().unwrap(),
            by_threads[1][key].as_f64().unwrap(),
        );
        assert!(
            (x - y).abs() <= 1e-5,
            "{key}: 1 thread {x} vs 2 threads {y}"
        );
    }
}

/// A three-stage `[[schedule]]` run (two-layer network: GD on w, GD on a, ridge) of about a
/// second, for the stage checkpoints.
const KILL_SCHEDULE: &str = r#"
threads = 2
[data]
d = 60
r = 2
link = "h2(z1)+h2(z2)"
n1 = 4000
n2 = 2000
n3 = 2000
n_test = 2000
[model]
width = 128
[[schedule]]
name = "first"
train = ["w"]
steps = 12
weight_decay = "inverse_lr"
mode = "normalized"
loss = "huber"
center_labels = true
[[schedule]]
name = "second"
reinit = { b = "gaussian" }
train = ["a"]
data = "D2"
steps = 40
lr = 1e-3
gradient = "autodiff"
[[schedule]]
name = "readout"
data = "D3"
solver = "ridge"
"#;

/// `kill -9` during a `[[schedule]]` run, at random moments and right after each stage
/// checkpoint, then `--resume`: summary.json and metrics.jsonl equal the uninterrupted run's.
#[test]
fn schedule_runs_resume_across_stages_bit_for_bit() {
    let dir0 = empty_dir("kill-schedule-cfg");
    let cfg = dir0.join("schedule.toml");
    std::fs::write(&cfg, KILL_SCHEDULE).unwrap();
    let cfg = cfg.to_string_lossy().into_owned();
    let reference = scratch("kill-schedule-ref");
    let t = Instant::now();
    mim_ok(&train_args(&reference, &[], &["--config", &cfg]));
    let duration = t.elapsed();
    let want = summary(&reference);
    let want_metrics = metrics(&reference);
    assert_eq!(checkpoint_of(&reference), Some(("stage".into(), 3)));
    let mut kills = 0;
    for (i, moment) in [
        Moment::StageDone(1),
        Moment::StageDone(2),
        Moment::After(random_moment(duration, 11)),
        Moment::After(random_moment(duration, 12)),
    ]
    .iter()
    .enumerate()
    {
        let dir = scratch(&format!("kill-schedule-{i}"));
        let mut child = spawn(&train_args(&dir, &[], &["--config", &cfg]));
        if let Some(at) = kill_at(&mut child, &dir, *moment) {
            kills += 1;
            eprintln!("schedule #{i}: killed at {moment:?}, last checkpoint {at:?}");
            assert_consistent(&dir, false);
        }
        if dir.join("config.toml").exists() {
            mim_ok(&resume_args(&dir));
        } else {
            mim_ok(&train_args(&dir, &[], &["--config", &cfg]));
        }
        assert_consistent(&dir, true);
        assert_eq!(summary(&dir), want, "#{i}: summary");
        assert_eq!(metrics(&dir), want_metrics, "#{i}: metrics.jsonl");
    }
    assert!(kills >= 2, "only {kills} kills landed");
}
