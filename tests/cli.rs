//! End-to-end tests of the `mim` binary: the paper's claims on the shipped configs, the CLI
//! contract (run folder, exit codes, one-line errors), determinism and backend agreement.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The run folder of test run `name` (per test process).
fn run_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mim-cli-{}-{name}", std::process::id()))
}

/// [`run_dir`], emptied.
fn scratch(name: &str) -> PathBuf {
    let dir = run_dir(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn mim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mim"))
        .args(args)
        .current_dir(root())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("mim runs")
}

/// Trains with `config` plus overrides into a fresh folder; returns summary.json.
fn train(name: &str, config: &str, sets: &[&str], extra: &[&str]) -> Value {
    let out = scratch(name);
    let out_s = out.to_string_lossy().into_owned();
    let mut args = vec!["train", "--config", config, "--out", &out_s, "--quiet"];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    args.extend_from_slice(extra);
    let o = mim(&args);
    assert!(
        o.status.success(),
        "mim {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    for f in ["config.toml", "metrics.jsonl", "summary.json", "model.bpk"] {
        assert!(out.join(f).is_file(), "{f} missing in {}", out.display());
    }
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

fn num(s: &Value, key: &str) -> f64 {
    s[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {s}"))
}

/// Paper §1: on h4(z1)+h4(z2) Huber learns the subspace while the square loss cannot.
#[test]
fn h4h4_huber_learns_and_square_loss_does_not() {
    let huber = train("h4-huber", "configs/h4h4-huber.toml", &[], &[]);
    let square = train(
        "h4-square",
        "configs/h4h4-huber.toml",
        &["stage1.loss=square"],
        &[],
    );
    eprintln!(
        "huber: align {} cos_min {}; square: align {} cos_min {}",
        huber["alignment_mean"],
        huber["subspace_cos_min"],
        square["alignment_mean"],
        square["subspace_cos_min"]
    );
    assert!(num(&huber, "alignment_mean") >= 0.6);
    assert!(num(&huber, "subspace_cos_min") >= 0.6);
    assert!(num(&square, "alignment_mean") <= 0.45);
    assert!(num(&square, "subspace_cos_min") <= 0.45);
}

/// End to end on h2(z1)+h2(z2): a few stage-1 steps make the readout work; random
/// features (T1 = 0) do not.
#[test]
fn h2h2_end_to_end_beats_random_features() {
    let learned = train("h2-t2", "configs/h2h2-e2e.toml", &[], &[]);
    let random = train("h2-t0", "configs/h2h2-e2e.toml", &["stage1.steps=0"], &[]);
    eprintln!(
        "test_mse T1=2: {}, T1=0: {}",
        learned["test_mse"], random["test_mse"]
    );
    assert!(num(&learned, "test_mse") <= 0.15);
    assert!(num(&random, "test_mse") >= 0.8);
}

/// Paper §4: with small ε0 the stage-1 rows follow explicit power iterates of Σ̂_T.
#[test]
fn stage1_is_power_iteration() {
    let s = train(
        "power",
        "configs/default.toml",
        &["data.alpha1=8", "data.alpha2=4"],
        &[],
    );
    assert!(
        num(&s, "power_iteration_cos") > 0.99,
        "{}",
        s["power_iteration_cos"]
    );
}

/// The summary without what is measured rather than computed (wall times, peak memory).
fn strip_timings(mut s: Value) -> Value {
    for k in [
        "stage1_seconds",
        "stage2_seconds",
        "total_seconds",
        "peak_rss_mib",
    ] {
        s.as_object_mut().unwrap().remove(k);
    }
    s
}

/// Same seed ⇒ identical summary (timings aside); another seed ⇒ different numbers.
#[test]
fn same_seed_same_summary() {
    let sets = ["data.alpha1=8", "data.alpha2=8", "data.n_test=2000"];
    let a = strip_timings(train("det-a", "configs/default.toml", &sets, &[]));
    let b = strip_timings(train("det-b", "configs/default.toml", &sets, &[]));
    assert_eq!(a, b);
    let c = strip_timings(train(
        "det-c",
        "configs/default.toml",
        &[&sets[..], &["seed=1"]].concat(),
        &[],
    ));
    assert_ne!(a["test_mse"], c["test_mse"]);
}

const COMPARED: [&str; 5] = [
    "alignment_mean",
    "alignment_median",
    "subspace_cos_min",
    "test_mse",
    "train_mse",
];

fn assert_close(a: &Value, b: &Value, tol: f64, what: &str) {
    for k in COMPARED {
        let (x, y) = (num(a, k), num(b, k));
        assert!((x - y).abs() <= tol, "{what}: {k} {x} vs {y}");
    }
}

/// The CPU backends agree to 1e-4 on every reported metric.
#[test]
fn flex_and_ndarray_agree() {
    let sets = [
        "data.alpha1=8",
        "data.alpha2=8",
        "data.n_test=2000",
        "stage2.ridge_lambda=1e-3",
    ];
    let flex = train(
        "be-flex",
        "configs/default.toml",
        &sets,
        &["--backend", "flex"],
    );
    let nd = train(
        "be-ndarray",
        "configs/default.toml",
        &sets,
        &["--backend", "ndarray"],
    );
    assert_eq!(nd["backend"], "ndarray");
    assert_close(&flex, &nd, 1e-4, "flex vs ndarray");
}

/// f32 and f64 give the same answer up to single-precision effects.
#[test]
fn f32_and_f64_agree() {
    let sets = [
        "data.alpha1=8",
        "data.alpha2=8",
        "data.n_test=2000",
        "stage2.ridge_lambda=1e-3",
    ];
    let f32 = train("dt-f32", "configs/default.toml", &sets, &[]);
    let f64 = train(
        "dt-f64",
        "configs/default.toml",
        &[&sets[..], &["dtype=\"f64\""]].concat(),
        &[],
    );
    assert_eq!(f64["dtype"], "f64");
    assert_close(&f32, &f64, 1e-3, "f32 vs f64");
}

/// The wgpu backend (a real GPU, or Mesa's software Vulkan driver in CI) agrees with flex.
#[test]
fn wgpu_agrees_with_flex() {
    let sets = [
        "data.alpha1=8",
        "data.alpha2=8",
        "data.n_test=2000",
        "stage2.ridge_lambda=1e-3",
        "model.width=64",
    ];
    let flex = train("gpu-flex", "configs/default.toml", &sets, &[]);
    let gpu = train(
        "gpu-wgpu",
        "configs/default.toml",
        &sets,
        &["--backend", "wgpu"],
    );
    assert_eq!(gpu["backend"], "wgpu");
    assert_close(&flex, &gpu, 1e-3, "flex vs wgpu");
}

/// Bad input: exit code 2 and exactly one line on stderr naming the field, no panic.
#[test]
fn bad_configs_exit_2_with_one_line() {
    let dir = scratch("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let malformed = dir.join("malformed.toml");
    std::fs::write(&malformed, "[data\nd = 3\n").unwrap();
    let malformed = malformed.to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--set", "data.r=300"], "data.r"),
        (vec!["--set", "model.width=7"], "model.width"),
        (vec!["--set", "model.width=0"], "model.width"),
        (vec!["--set", "data.n1=-5"], "data.n1"),
        (vec!["--set", "data.alpha2=-1"], "data.alpha2"),
        (vec!["--set", "stage1.lr=nan"], "stage1.lr"),
        (vec!["--set", "data.link=cosh(z1)"], "data.link"),
        (vec!["--set", "data.link=h2(z3)"], "data.link"),
        (vec!["--set", "model.activation=swish"], "model.activation"),
        (vec!["--set", "backend=cuda"], "backend"),
        (vec!["--backend", "cuda"], "backend"),
        (vec!["--set", "stage1.bogus=1"], "bogus"),
        (vec!["--set", "dtype=f64", "--backend", "wgpu"], "dtype"),
        (
            vec!["--config", "does/not/exist.toml"],
            "does/not/exist.toml",
        ),
        (vec!["--config", &malformed], "malformed TOML"),
    ];
    for (args, field) in cases {
        let mut full = vec!["train", "--quiet"];
        if !args.contains(&"--config") {
            full.extend(["--config", "configs/default.toml"]);
        }
        full.extend(args.iter().copied());
        let o = mim(&full);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{full:?}: {err}");
        assert!(
            err.contains(field),
            "{full:?}: `{err}` does not name {field}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{full:?}: not one line: {err}"
        );
        assert!(!err.contains("panicked"), "{full:?}: {err}");
    }
}

/// The resolved config written to the run folder re-runs to the same result.
#[test]
fn resolved_config_reruns_identically() {
    let sets = [
        "data.alpha1=4",
        "data.alpha2=8",
        "data.n_test=1000",
        "model.width=32",
    ];
    let first = train("rerun-a", "configs/default.toml", &sets, &[]);
    let resolved = run_dir("rerun-a").join("config.toml");
    let again = train("rerun-b", &resolved.to_string_lossy(), &[], &[]);
    assert_eq!(strip_timings(first), strip_timings(again));
}

/// metrics.jsonl has one record per stage-1 step (0..=T1), then stage2 and final.
#[test]
fn metrics_jsonl_has_every_step() {
    let s = train(
        "jsonl",
        "configs/default.toml",
        &["stage1.steps=3", "data.alpha1=4", "data.alpha2=4"],
        &[],
    );
    assert_eq!(s["steps"], 3);
    let text = std::fs::read_to_string(run_dir("jsonl").join("metrics.jsonl")).unwrap();
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stages: Vec<&str> = recs.iter().map(|r| r["stage"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        ["stage1", "stage1", "stage1", "stage1", "stage2", "final"]
    );
    for (t, r) in recs.iter().take(4).enumerate() {
        assert_eq!(r["step"], t);
        assert!(r["subspace_cos"].as_array().unwrap().len() == 2);
    }
}

/// Baselines on identical data and seeds (paper §7.3): one GD step (DLS22) and random
/// features stay far below layer-wise training with T1 = 8 on h4(z1)+h4(z2) at α = 16.
#[test]
fn baselines_trail_layerwise() {
    let layerwise = train("m-layerwise", "configs/h4h4-huber.toml", &[], &[]);
    let one_step = train(
        "m-one-step",
        "configs/h4h4-huber.toml",
        &["method=one_step"],
        &[],
    );
    let rf = train(
        "m-rf",
        "configs/h4h4-huber.toml",
        &["method=random_features"],
        &[],
    );
    assert_eq!(one_step["method"], "one_step");
    assert_eq!(one_step["steps"], 1);
    assert_eq!(rf["steps"], 0);
    let lw = num(&layerwise, "alignment_mean");
    eprintln!(
        "alignment_mean: layerwise {lw}, one_step {}, random_features {}",
        one_step["alignment_mean"], rf["alignment_mean"]
    );
    assert!(num(&one_step, "alignment_mean") < lw - 0.3);
    // Random directions: ρ ≈ √(r/d) = 0.1.
    assert!(num(&rf, "alignment_mean") < 0.15);
}

/// The joint baseline trains both layers with a Burn optimizer, reports W along the way and
/// has no stage 2.
#[test]
fn joint_baseline_runs() {
    let sets = [
        "method=joint",
        "joint.steps=60",
        "joint.eval_every=20",
        "joint.batches=fresh",
        "data.alpha1=4",
        "data.n_test=500",
        "model.width=32",
    ];
    let s = train("m-joint", "configs/default.toml", &sets, &[]);
    assert_eq!(s["method"], "joint");
    assert!(s["ridge_lambda"].is_null());
    let text = std::fs::read_to_string(run_dir("m-joint").join("metrics.jsonl")).unwrap();
    let steps: Vec<i64> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["stage"] == "joint")
        .map(|r| r["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, [0, 20, 40, 60]);
}

/// `mim bench` works at a tiny size (CI checks that it runs, not how fast).
#[test]
fn bench_smoke_test() {
    let out = scratch("bench");
    std::fs::create_dir_all(&out).unwrap();
    let json = out.join("bench.json");
    let o = mim(&[
        "bench",
        "--sizes",
        "tiny",
        "--reps",
        "1",
        "--json",
        &json.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(num(&report, "sgemm_gflops") > 0.0);
    let names: Vec<&str> = report["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for path in ["autodiff", "closedform", "fused"] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("stage1_step[{path}]"))),
            "{names:?}"
        );
    }
    assert_eq!(mim(&["bench", "--sizes", "huge"]).status.code(), Some(2));
}

/// Streamed data (regenerated chunk by chunk, several chunks, the 80/20 split of D2 inside a
/// chunk) give the in-memory result: f64 metrics agree to 1e-9.
#[test]
fn streaming_equals_in_memory() {
    let sets = [
        "dtype=f64",
        "data.n1=5000",
        "data.n2=4500",
        "data.n_test=2500",
        "data.chunk_rows=1024",
        "model.width=64",
    ];
    let mem = train(
        "st-off",
        "configs/h4h4-huber.toml",
        &[&sets[..], &["data.streaming=off"]].concat(),
        &[],
    );
    let st = train(
        "st-on",
        "configs/h4h4-huber.toml",
        &[&sets[..], &["data.streaming=on"]].concat(),
        &[],
    );
    assert_eq!(st["streaming"], true);
    assert_eq!(mem["streaming"], false);
    assert_close(&mem, &st, 1e-9, "in memory vs streaming");
    assert_eq!(mem["ridge_lambda"], st["ridge_lambda"]);
}
