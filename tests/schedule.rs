//! The layer-wise schedule engine end to end: presets equal their explicit `[[schedule]]`,
//! deeper networks train through the binary, and bad schedules are one-line errors.

mod common;

use common::{describe, mim, scratch};
use mim_model::{to_host, Precision, TwoLayer};
use mim_run::checkpoint::load_model;
use mim_run::config::parse_toml;
use mim_run::{RunConfig, RunOptions, Summary, ValidConfig};
use mim_train::Gradient;
use serde_json::Value;
use std::path::Path;

fn config(sets: &[&str]) -> RunConfig {
    let mut table = parse_toml("", "test").unwrap();
    for s in sets {
        mim_run::config::apply_override(&mut table, s).unwrap();
    }
    RunConfig::from_table(table).unwrap()
}

fn run(valid: &ValidConfig, name: &str) -> (Summary, TwoLayer) {
    let out = scratch(name);
    let summary = mim_run::train(
        valid,
        &RunOptions {
            out_dir: out.clone(),
            quiet: true,
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let device = mim_run::backend::open_device(valid.config.backend).unwrap();
    let template = valid
        .config
        .model
        .two_layer()
        .symmetric_init(valid.config.data.d, 0, &device, valid.config.dtype)
        .unwrap();
    let model = load_model(&out.join("model.bpk"), template).unwrap();
    (summary, model)
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// Each preset, run as `method = …` through its fast path (fused kernel on CPU), equals its
/// expansion into an explicit `[[schedule]]` run through the generic autodiff stage: the same
/// W, a, c and metrics, to 1e-9 in f64 and 1e-4 in f32.
#[test]
fn presets_equal_their_explicit_schedules_through_autodiff() {
    let base = [
        "data.d=16",
        "data.n1=600",
        "data.n2=500",
        "data.n_test=400",
        "model.width=12",
        "model.init_scale=0.01",
        "threads=1",
    ];
    for (method, extra) in [
        ("layerwise", &["stage1.steps=4"][..]),
        // The dls22 variant (the default) has no schedule form: its init, rescale and raw
        // ridge have no stage keys (tested in mim-run's config tests).
        ("one_step", &["one_step.variant=mim"][..]),
        ("random_features", &[][..]),
        (
            "joint",
            &[
                "joint.steps=60",
                "joint.batch_size=64",
                "joint.eval_every=20",
                "joint.lr=0.01",
            ][..],
        ),
    ] {
        for (dtype, tol) in [("f64", 1e-9), ("f32", 1e-4)] {
            let mut sets: Vec<String> = base.iter().map(|s| s.to_string()).collect();
            sets.push(format!("method={method}"));
            sets.push(format!("dtype={dtype}"));
            sets.extend(extra.iter().map(|s| s.to_string()));
            let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
            let preset = config(&sets).validate().unwrap();
            let mut explicit = preset.config.clone();
            explicit.schedule = preset.expanded_schedule().expect("preset expands");
            for stage in &mut explicit.schedule {
                if stage.solver.is_none() && stage.optimizer == mim_train::StageOptimizer::Gd {
                    stage.gradient = Gradient::Autodiff;
                }
            }
            let explicit = explicit.validate().unwrap();
            let tag = format!("{method}-{dtype}");
            let (s_fast, m_fast) = run(&preset, &format!("preset-{tag}"));
            let (s_gen, m_gen) = run(&explicit, &format!("explicit-{tag}"));
            let p = |m: &TwoLayer| {
                (
                    to_host(m.w.val()),
                    to_host(m.a.val()),
                    to_host(m.b.val()),
                    to_host(m.c.val()),
                )
            };
            let (a, b) = (p(&m_fast), p(&m_gen));
            for (what, x, y) in [
                ("W", &a.0, &b.0),
                ("a", &a.1, &b.1),
                ("b", &a.2, &b.2),
                ("c", &a.3, &b.3),
            ] {
                let scale = x.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
                let diff = max_diff(x, y);
                assert!(
                    diff <= tol * scale,
                    "{tag}: {what} differs by {diff} (max |{what}| {scale})"
                );
            }
            for (what, x, y) in [
                (
                    "alignment_mean",
                    s_fast.w.alignment_mean,
                    s_gen.w.alignment_mean,
                ),
                (
                    "subspace_cos_min",
                    s_fast.w.subspace_cos_min,
                    s_gen.w.subspace_cos_min,
                ),
                (
                    "energy_fraction",
                    s_fast.w.energy_fraction,
                    s_gen.w.energy_fraction,
                ),
                ("test_mse", s_fast.test_mse, s_gen.test_mse),
                ("train_mse", s_fast.train_mse, s_gen.train_mse),
            ] {
                assert!(
                    (x - y).abs() <= tol * x.abs().max(1.0),
                    "{tag}: {what} {x} vs {y}"
                );
            }
            assert_eq!(s_gen.method, "schedule");
            assert_eq!(s_fast.ridge_lambda, s_gen.ridge_lambda, "{tag}: λ");
            let _ = Precision::F64;
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const DEEP: &str = r#"
seed = 0
threads = 1
[data]
d = 12
r = 2
link = "tanh(2*(h2(z1)+h2(z2))/2)"
n1 = 2000
n2 = 1000
n3 = 1000
n_test = 1000
[data.features]
q = "(h2(z1)+h2(z2))/2"
[model]
widths = [32, 16]
activations = ["logcosh", "tanh"]
[[schedule]]
name = "layer1"
train = ["layers.0.weight"]
head = 1
steps = 3
weight_decay = "inverse_lr"
mode = "normalized"
loss = "huber"
center_labels = true
[[schedule]]
name = "layer2"
reinit = { "layers.0.bias" = "gaussian", "layers.1.weight" = "zero" }
standardize = 1
train = ["layers.1.weight"]
data = "D2"
steps = 20
lr = 2e-3
[[schedule]]
name = "readout"
reinit = { "layers.1.bias" = "gaussian" }
data = "D3"
solver = "ridge"
"#;

/// A three-layer schedule runs through the binary on every backend, reports each stage, the
/// per-layer feature R² and the first-layer metrics, and is bit-for-bit repeatable on CPU.
/// flex and ndarray agree to 1e-8 in f64; in f32 the backends' rounding, amplified through
/// three stages, moves test_mse by about 1e-3 (flex vs ndarray measured 1.8e-3 here), so
/// wgpu is compared with flex at 2e-2.
#[test]
fn deep_schedule_runs_on_every_backend() {
    let dir = scratch("deep-cfg");
    let cfg = write(&dir, "deep.toml", DEEP);
    let mut summaries = Vec::new();
    for (backend, dtype) in [
        ("flex", "f64"),
        ("ndarray", "f64"),
        ("flex", "f32"),
        ("wgpu", "f32"),
        ("flex", "f32"),
    ] {
        let out = scratch(&format!("deep-{backend}-{}", summaries.len()));
        let o = mim(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--backend",
            backend,
            "--set",
            &format!("dtype={dtype}"),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(o.status.success(), "{backend}: {}", describe(&o));
        let s: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        let stages: Vec<&str> = s["schedule"]
            .as_array()
            .unwrap()
            .iter()
            .map(|st| st["name"].as_str().unwrap())
            .collect();
        assert_eq!(stages, ["layer1", "layer2", "readout"], "{backend}");
        let r2 = s["feature_r2"]["q"].as_array().unwrap();
        assert_eq!(r2.len(), 2, "{backend}: one R² per hidden layer");
        for st in s["schedule"].as_array().unwrap() {
            let per_stage = st["feature_r2"]["q"].as_array().unwrap();
            assert_eq!(
                per_stage.len(),
                2,
                "{backend}: R² after stage {}",
                st["name"]
            );
        }
        assert_eq!(&s["schedule"][2]["feature_r2"]["q"], &s["feature_r2"]["q"]);
        let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert!(
            lines.lines().any(|l| l.contains("\"stage\":\"layer2\"")),
            "{backend}: layer2 steps recorded"
        );
        summaries.push(s);
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        for k in [
            "stage1_seconds",
            "stage2_seconds",
            "total_seconds",
            "peak_rss_mib",
            "backend",
        ] {
            v.as_object_mut().unwrap().remove(k);
        }
        for st in v["schedule"].as_array_mut().unwrap() {
            st.as_object_mut().unwrap().remove("seconds");
        }
        v
    };
    assert_eq!(
        strip(&summaries[2]),
        strip(&summaries[4]),
        "flex f32 twice: identical"
    );
    for (i, j, tol, what) in [
        (0, 1, 1e-8, "ndarray f64 vs flex f64"),
        (2, 3, 2e-2, "wgpu f32 vs flex f32"),
        (0, 2, 2e-2, "flex f32 vs f64"),
    ] {
        for key in ["test_mse", "alignment_mean", "subspace_cos_min"] {
            let (a, b) = (
                summaries[i][key].as_f64().unwrap(),
                summaries[j][key].as_f64().unwrap(),
            );
            assert!(
                (a - b).abs() <= tol * a.abs().max(1.0),
                "{what}: {key} {a} vs {b}"
            );
        }
    }
}

/// Bad schedules exit 2 with one line naming the field.
#[test]
fn bad_schedules_exit_2_with_one_line_naming_the_field() {
    let dir = scratch("bad-schedules");
    let cases: &[(&str, &str, &str)] = &[
        ("unknown-group", "[[schedule]]\ntrain = [\"W\"]\nsteps = 1\n", "schedule.0.train: unknown parameter group `W`"),
        ("trains-nothing", "[[schedule]]\nsteps = 1\n", "schedule.0.train = []"),
        ("no-dataset", "[[schedule]]\ntrain = [\"w\"]\ndata = \"D7\"\n", "schedule.0.data"),
        ("unknown-reinit", "[[schedule]]\nsolver = \"ridge\"\nreinit = { q = \"zero\" }\n", "schedule.0.reinit: unknown parameter group `q`"),
        ("widths-activations", "[model]\nwidths = [8, 4]\nactivations = [\"tanh\", \"tanh\", \"tanh\"]\n[[schedule]]\nsolver = \"ridge\"\n", "model.activations"),
        ("ridge-trains-w", "[[schedule]]\nsolver = \"ridge\"\ntrain = [\"w\"]\n", "schedule.0.train"),
        ("standardize-two-layer", "[[schedule]]\nstandardize = 1\nsolver = \"ridge\"\n", "schedule.0.standardize"),
        ("deep-without-schedule", "[model]\nwidths = [8, 4]\n", "model.widths"),
        ("width-and-widths", "[model]\nwidth = 8\nwidths = [8, 4]\n", "model.width and model.widths"),
        // Absurd sizes are refused by the memory check (exit 2), never by an allocation.
        ("huge-deep", "[data]\nd = 10000000\n[model]\nwidths = [1000000000, 64]\n[[schedule]]\nsolver = \"ridge\"\n", "data"),
        ("fused-on-deep", "[model]\nwidths = [8, 4]\n[[schedule]]\ntrain = [\"layers.0.weight\"]\ngradient = \"fused\"\nsteps = 1\n", "schedule.0.gradient"),
    ];
    for (name, text, want) in cases {
        let cfg = write(&dir, &format!("{name}.toml"), text);
        let o = mim(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            dir.join(name).to_str().unwrap(),
            "--quiet",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", describe(&o));
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
        assert!(
            err.contains(want),
            "{name}: {err:?} should contain {want:?}"
        );
    }
}

/// `--set schedule.K.key=value` reaches stage K of a `[[schedule]]`.
#[test]
fn overrides_reach_schedule_stages() {
    let table = {
        let mut t = parse_toml(DEEP, "deep").unwrap();
        mim_run::config::apply_override(&mut t, "schedule.1.steps=7").unwrap();
        t
    };
    let cfg = RunConfig::from_table(table).unwrap();
    assert_eq!(cfg.schedule[1].steps, 7);
    assert_eq!(cfg.schedule[0].steps, 3);
    let mut t = parse_toml(DEEP, "deep").unwrap();
    let e = mim_run::config::apply_override(&mut t, "schedule.5.steps=7").unwrap_err();
    assert!(e.0.contains("schedule") && e.0.contains("3 entries"), "{e}");
    // The resolved config re-runs identically: it parses back to the same schedule.
    let again = RunConfig::from_table(parse_toml(&cfg.to_toml(), "again").unwrap()).unwrap();
    assert_eq!(again, cfg);
}

fn test_mse(config: &str, out: &str, sets: &[&str]) -> f64 {
    let out = scratch(out);
    let mut args = vec![
        "train",
        "--config",
        config,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = mim(&args);
    assert!(o.status.success(), "{config}: {}", describe(&o));
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    s["test_mse"].as_f64().unwrap()
}

/// The shipped three-layer schedule beats the paper's two-layer algorithm on its hierarchical
/// target with the same total sample count (reduced: N = 12 288 instead of 24 576). Measured at
/// this size, seeds 0 and 1: three layers 0.18 / 0.16, two layers 0.28 / 0.27.
#[test]
fn three_layers_beat_two_on_the_hierarchical_target() {
    let three = test_mse(
        "configs/three-layer-hierarchical.toml",
        "h3",
        &[
            "data.n1=8192",
            "data.n2=2048",
            "data.n3=2048",
            "data.n_test=4096",
        ],
    );
    let two = test_mse(
        "configs/two-layer-hierarchical.toml",
        "h2",
        &["data.n1=8192", "data.n2=4096", "data.n_test=4096"],
    );
    assert!(two > 0.2, "two-layer test_mse {two}: the cap should show");
    assert!(
        three < two - 0.05,
        "three layers {three} vs two layers {two}"
    );
}

/// A sweep varies a stage key (`"schedule.1.steps"`) like any other key: one point per value,
/// each a valid config whose stage 1 has that many steps.
#[test]
fn sweeps_vary_stage_keys() {
    let dir = scratch("sweep-stage-keys");
    write(&dir, "deep.toml", DEEP);
    let sweep = write(
        &dir,
        "sweep.toml",
        "base = \"deep.toml\"\n[axes]\n\"schedule.1.steps\" = [2, 5]\n",
    );
    let db = dir.join("results.sqlite");
    let out = dir.join("points");
    let o = mim(&[
        "sweep",
        sweep.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "1",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", describe(&o));
    let mut steps: Vec<u64> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| {
            let s: Value = serde_json::from_str(
                &std::fs::read_to_string(e.path().join("summary.json")).unwrap(),
            )
            .unwrap();
            s["schedule"][1]["steps"].as_u64().unwrap()
        })
        .collect();
    steps.sort();
    assert_eq!(steps, [2, 5]);
}

/// A method's run folder holds `schedule.toml`, its expansion into an explicit `[[schedule]]`;
/// run as a config it gives the method's numbers exactly (the same engine, the same fused
/// gradient).
#[test]
fn the_expanded_schedule_of_a_method_reruns_identically() {
    let preset = scratch("expanded-preset");
    let o = mim(&[
        "train",
        "--quiet",
        "--config",
        "configs/default.toml",
        "--set",
        "data.n_test=1000",
        "--set",
        "model.width=64",
        "--set",
        "threads=1",
        "--out",
        preset.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", describe(&o));
    let text = std::fs::read_to_string(preset.join("schedule.toml")).unwrap();
    assert!(
        text.contains("[[schedule]]") && text.contains("name = \"stage2\""),
        "{text}"
    );
    let again = scratch("expanded-again");
    let o = mim(&[
        "train",
        "--quiet",
        "--config",
        preset.join("schedule.toml").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", describe(&o));
    let read = |d: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap()
    };
    let (a, b) = (read(&preset), read(&again));
    for key in [
        "alignment_mean",
        "subspace_cos",
        "m_gram",
        "q_spectrum",
        "ridge_lambda",
        "test_mse",
        "train_mse",
    ] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert_eq!(b["method"], "schedule");
}
