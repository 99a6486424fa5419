//! End-to-end tests of the `mim` binary: the paper's claims on the shipped configs, the CLI
//! contract (run folder, exit codes, one-line errors), determinism and backend agreement.

mod common;

use common::{
    assert_one_line_error, empty_dir, mim, mim_ok, num, read_json, run_to_summary, scratch_path,
    strip_volatile,
};
use serde_json::Value;

/// Trains with `config` plus overrides into a fresh folder; returns summary.json.
fn train(name: &str, config: &str, sets: &[&str], extra: &[&str]) -> Value {
    let (out, summary) = run_to_summary("train", name, config, sets, extra);
    for f in ["config.toml", "metrics.jsonl", "summary.json", "model.bpk"] {
        assert!(out.join(f).is_file(), "{f} missing in {}", out.display());
    }
    summary
}

/// Paper §4: with a sign-like T (smoothed ℓ1) on the skewed h2(z1)+h2(z2), mean-centred labels
/// leave E[T] ≠ 0, an identity shift of Σ̂_T that power iteration amplifies instead of the
/// signal; centring at the loss's location (mean T = 0, `stage1.center_by = "loss"`) removes it.
#[test]
fn l1_needs_t_centred_labels() {
    let run = |name: &str, by: &str| {
        let sets = [
            "data.d=100",
            "data.n_test=2000",
            "data.link=h2(z1)+h2(z2)",
            "stage1.loss=l1",
            by,
        ];
        num(
            &train(name, "configs/h4h4-huber.toml", &sets, &[]),
            "alignment_mean",
        )
    };
    let mean = run("l1-mean", "stage1.center_by=mean");
    let loss = run("l1-loss", "stage1.center_by=loss");
    assert!(
        mean < 0.3 && loss > 0.8,
        "mean-centred {mean}, T-centred {loss}"
    );
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
        // With ε0 = 1e-3 the rows and the iterates agree to rounding (measured: 1.0 in f32).
        num(&s, "power_iteration_cos") > 0.9999,
        "{}",
        s["power_iteration_cos"]
    );
}

/// Same seed ⇒ identical summary (timings aside); another seed ⇒ different numbers.
#[test]
fn same_seed_same_summary() {
    let sets = ["data.alpha1=8", "data.alpha2=8", "data.n_test=2000"];
    let a = strip_volatile(train("det-a", "configs/default.toml", &sets, &[]));
    let b = strip_volatile(train("det-b", "configs/default.toml", &sets, &[]));
    assert_eq!(a, b);
    let c = strip_volatile(train(
        "det-c",
        "configs/default.toml",
        &[&sets[..], &["seed=1"]].concat(),
        &[],
    ));
    assert_ne!(a["test_mse"], c["test_mse"]);
}

/// The excess risk is the raw test MSE minus σ²: test_mse · Var(y_test) − noise², with
/// Var(y_test) ≈ 1 + σ² for a normalised link (unit-variance signal), in the in-memory
/// method path and in the schedule path alike.
#[test]
fn summary_reports_the_test_excess_risk() {
    for (name, extra) in [
        ("excess-a", None),
        ("excess-b", Some("method=random_features")),
    ] {
        let mut sets = vec![
            "data.alpha1=8",
            "data.alpha2=8",
            "data.n_test=8000",
            "data.noise=0.5",
        ];
        sets.extend(extra);
        let s = train(name, "configs/default.toml", &sets, &[]);
        let (mse, var, excess) = (
            num(&s, "test_mse"),
            num(&s, "test_label_variance"),
            num(&s, "test_excess_risk"),
        );
        assert!((var - 1.25).abs() < 0.1, "{name}: Var(y_test) = {var}");
        assert!(
            (excess - (mse * var - 0.25)).abs() < 1e-12,
            "{name}: {excess}"
        );
        assert!(excess > 0.0 && excess < mse * var, "{name}: {excess}");
    }
    // The schedule engine's path, on the method's own explicit schedule: the same numbers.
    let sets = [
        "data.alpha1=8",
        "data.alpha2=8",
        "data.n_test=8000",
        "data.noise=0.5",
    ];
    let (out, method) = run_to_summary("train", "excess-c", "configs/default.toml", &sets, &[]);
    let explicit = out.join("schedule.toml");
    let s = train("excess-d", explicit.to_str().unwrap(), &[], &[]);
    let (v, e) = (num(&s, "test_label_variance"), num(&s, "test_excess_risk"));
    assert!(
        (v - num(&method, "test_label_variance")).abs() < 1e-9,
        "{v}"
    );
    assert!((e - (num(&s, "test_mse") * v - 0.25)).abs() < 1e-12, "{e}");
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

/// Settings shared by the agreement tests.
const AGREE: [&str; 4] = [
    "data.alpha1=8",
    "data.alpha2=8",
    "data.n_test=2000",
    "stage2.ridge_lambda=1e-3",
];

/// One run of an agreement test: its name, more `--set`s, more arguments.
type Variant<'a> = (&'a str, &'a [&'a str], &'a [&'a str]);

/// Trains `a` and `b` on [`AGREE`] plus `sets` and asserts that every compared metric agrees
/// to `tol`; returns b's summary.
fn assert_agree(sets: &[&str], a: Variant, b: Variant, tol: f64) -> Value {
    let run = |(name, more, extra): Variant| {
        let sets = [&AGREE[..], sets, more].concat();
        train(name, "configs/default.toml", &sets, extra)
    };
    let (first, second) = (run(a), run(b));
    assert_close(&first, &second, tol, &format!("{} vs {}", a.0, b.0));
    second
}

/// The CPU backends agree to 1e-4 on every reported metric.
#[test]
fn flex_and_ndarray_agree() {
    let nd = assert_agree(
        &[],
        ("be-flex", &[], &["--backend", "flex"]),
        ("be-ndarray", &[], &["--backend", "ndarray"]),
        1e-4,
    );
    assert_eq!(nd["backend"], "ndarray");
    // The default gradient is the same host kernel on both CPU backends; compare each
    // backend's own tensor paths too (Burn autodiff and the closed form run on the backend).
    for gradient in ["autodiff", "closed_form"] {
        let set = format!("stage1.gradient=\"{gradient}\"");
        assert_agree(
            &[set.as_str()],
            (&format!("be-flex-{gradient}"), &[], &["--backend", "flex"]),
            (&format!("be-nd-{gradient}"), &[], &["--backend", "ndarray"]),
            1e-4,
        );
    }
}

/// f32 and f64 give the same answer up to single-precision effects.
#[test]
fn f32_and_f64_agree() {
    let f64 = assert_agree(
        &[],
        ("dt-f32", &[], &[]),
        ("dt-f64", &["dtype=\"f64\""], &[]),
        1e-3,
    );
    assert_eq!(f64["dtype"], "f64");
}

/// The wgpu backend (a real GPU, or Mesa's software Vulkan driver in CI) agrees with flex.
#[test]
fn wgpu_agrees_with_flex() {
    let gpu = assert_agree(
        &["model.width=64"],
        ("gpu-flex", &[], &[]),
        ("gpu-wgpu", &[], &["--backend", "wgpu"]),
        1e-3,
    );
    assert_eq!(gpu["backend"], "wgpu");
}

/// The baselines with a closed-form first layer also agree across flex and wgpu (`joint`, a
/// long stochastic optimisation, runs on wgpu in `joint_baseline_runs` and is compared loosely
/// there).
#[test]
fn wgpu_baselines_agree_with_flex() {
    for method in ["one_step", "random_features", "spectral_init"] {
        let set = format!("method=\"{method}\"");
        let gpu = assert_agree(
            &["model.width=64", &set],
            (&format!("gpu-{method}-flex"), &[], &[]),
            (&format!("gpu-{method}-wgpu"), &[], &["--backend", "wgpu"]),
            1e-3,
        );
        assert_eq!(gpu["method"], method);
    }
}

/// Bad input: exit code 2 and exactly one line on stderr naming the field, no panic.
#[test]
fn bad_configs_exit_2_with_one_line() {
    let dir = empty_dir("bad");
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
            vec!["--set", "one_step.lambda_count=0"],
            "one_step.lambda_count",
        ),
        (
            vec!["--set", "method=one_step", "--set", "data.n2=0"],
            "data.n2",
        ),
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
        let err = assert_one_line_error(&mim(&full), 2, &full);
        assert!(
            err.contains(field),
            "{full:?}: `{err}` does not name {field}"
        );
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
    let resolved = scratch_path("rerun-a").join("config.toml");
    let again = train("rerun-b", &resolved.to_string_lossy(), &[], &[]);
    assert_eq!(strip_volatile(first), strip_volatile(again));
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
    let text = std::fs::read_to_string(scratch_path("jsonl").join("metrics.jsonl")).unwrap();
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
    let text = std::fs::read_to_string(scratch_path("m-joint").join("metrics.jsonl")).unwrap();
    let steps: Vec<i64> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["stage"] == "joint")
        .map(|r| r["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, [0, 20, 40, 60]);
    // On wgpu: the same schedule; Adam/SGD over 60 steps amplifies sum-order differences, so
    // only closeness to the flex run at the 0.05 level is asserted.
    let gpu = train(
        "m-joint-wgpu",
        "configs/default.toml",
        &sets,
        &["--backend", "wgpu"],
    );
    assert_eq!(
        (&gpu["backend"], &gpu["method"]),
        (&"wgpu".into(), &"joint".into())
    );
    for k in ["alignment_mean", "subspace_cos_min"] {
        let (a, b) = (num(&s, k), num(&gpu, k));
        assert!((a - b).abs() < 0.05, "joint flex vs wgpu: {k} {a} vs {b}");
    }
}

/// `mim bench` works at a tiny size (CI checks that it runs, not how fast).
#[test]
fn bench_smoke_test() {
    let json = empty_dir("bench").join("bench.json");
    let json_s = json.to_string_lossy();
    mim_ok(&[
        "bench",
        "--sizes",
        "tiny",
        "--reps",
        "1",
        "--peak-gflops",
        "1000",
        "--json",
        &json_s,
    ]);
    let report = read_json(&json);
    assert!(num(&report, "sgemm_gflops") > 0.0);
    assert_eq!(num(&report, "peak_gflops"), 1000.0);
    for t in report["timings"].as_array().unwrap() {
        match (t["gflops"].as_f64(), t["ratio_to_peak"].as_f64()) {
            (Some(g), Some(r)) => assert!((r - g / 1000.0).abs() <= 1e-12 * r.abs(), "{t}"),
            (None, None) => {}
            _ => panic!("ratio_to_peak without gflops or the reverse: {t}"),
        }
        // Only stage-1 steps have a paired ratio to SGEMM, positive and finite (one whose
        // difference of two runs timed ≤ 0 at this tiny size has none).
        let step = t["name"].as_str().unwrap().starts_with("stage1_step");
        if let Some(r) = t["paired_ratio_to_sgemm"].as_f64() {
            assert!(step && r > 0.0 && r.is_finite(), "{t}");
        }
    }
    let paired = report["timings"].as_array().unwrap().iter();
    assert!(
        paired
            .filter(|t| t["paired_ratio_to_sgemm"].as_f64().is_some())
            .count()
            >= 2,
        "no stage-1 step has a paired ratio"
    );
    for bad in ["0", "-1", "nan", "inf"] {
        let out = mim(&["bench", "--sizes", "tiny", &format!("--peak-gflops={bad}")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("--peak-gflops") && err.trim().lines().count() == 1,
            "{err}"
        );
    }
    let names: Vec<&str> = report["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for generator in ["v1", "v2"] {
        let row = format!("data_generation[{generator}]");
        assert!(names.iter().any(|n| n.starts_with(&row)), "{names:?}");
    }
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
    // Both label centrings: the streamed label pass computes the same shift as in memory;
    // with the linear part removed, the passes that need the f64 rows (β̂ and y − c − β̂·x).
    // And both generators: v2 streams rows by their counters, any chunk start.
    for (by, linear, gen) in [
        ("mean", false, "v1"),
        ("loss", false, "v1"),
        ("mean", true, "v1"),
        ("mean", false, "v2"),
    ] {
        let center = format!("stage1.center_by={by}");
        let remove = format!("stage1.remove_linear={linear}");
        let generator = format!("data.generator={gen}");
        let by = format!("{}-{gen}", if linear { "mean-linear" } else { by });
        let sets = [
            "dtype=f64",
            &generator,
            "data.n1=5000",
            "data.n2=4500",
            "data.n_test=2500",
            "data.chunk_rows=1024",
            "model.width=64",
            &center,
            &remove,
        ];
        let mem = train(
            &format!("st-off-{by}"),
            "configs/h4h4-huber.toml",
            &[&sets[..], &["data.streaming=off"]].concat(),
            &[],
        );
        let st = train(
            &format!("st-on-{by}"),
            "configs/h4h4-huber.toml",
            &[&sets[..], &["data.streaming=on"]].concat(),
            &[],
        );
        assert_eq!(st["streaming"], true);
        assert_eq!(mem["streaming"], false);
        assert_eq!(
            (&mem["data_generator"], &st["data_generator"]),
            (&gen.into(), &gen.into())
        );
        assert_close(&mem, &st, 1e-9, &format!("in memory vs streaming ({by})"));
        assert_eq!(mem["ridge_lambda"], st["ridge_lambda"]);
    }
}
