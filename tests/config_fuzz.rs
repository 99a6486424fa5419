//! Config fuzzing (proptest): random and mutated configs — random TOML tables with known and
//! unknown keys, wrong types, extreme numbers, NaN/±inf, negative sizes, malformed link formulas
//! with huge exponents, unknown functions and out-of-range indices, garbage and mutated TOML
//! text, and random `--set` overrides — go through `parse_toml`, `apply_override`,
//! `RunConfig::from_table`, `validate` and the memory check. None may panic, and every rejection
//! is one line naming the field (or the file, for malformed TOML). A sample of the rejected ones
//! then goes through the real `mim train`: exit code 2, exactly one line on stderr, no panic.
//!
//! Cases per run: [`TABLE_CASES`] + [`TEXT_CASES`] + [`OVERRIDE_CASES`] (printed at the end of
//! each test), plus [`BINARY_SAMPLE`] runs of the binary.

mod common;

use common::{assert_one_line_error, empty_dir, mim_command, root};
use mim_run::config::{apply_override, parse_toml};
use mim_run::limits::{check_memory, MemoryLimit};
use mim_run::RunConfig;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Random tables per run.
const TABLE_CASES: u32 = 3000;
/// Random/mutated TOML texts per run.
const TEXT_CASES: u32 = 1000;
/// Random `--set` overrides per run.
const OVERRIDE_CASES: u32 = 1000;
/// Rejected configs run through the binary.
const BINARY_SAMPLE: usize = 30;

/// Every key of the config, by dotted path.
const KNOWN: &[&str] = &[
    "seed",
    "method",
    "backend",
    "dtype",
    "threads",
    "data.d",
    "data.r",
    "data.link",
    "data.noise",
    "data.n1",
    "data.alpha1",
    "data.n2",
    "data.n3",
    "data.alpha3",
    "model.widths",
    "model.activations",
    "model.bias",
    "data.alpha2",
    "data.n_test",
    "data.normalize",
    "data.streaming",
    "data.chunk_rows",
    "model.width",
    "model.activation",
    "model.init_scale",
    "stage1.steps",
    "stage1.steps_c",
    "stage1.lr",
    "stage1.weight_decay",
    "stage1.loss",
    "stage1.huber_delta",
    "stage1.l1_smoothing",
    "stage1.mode",
    "stage1.center_labels",
    "stage1.center_by",
    "stage1.remove_linear",
    "stage1.gradient",
    "spectral.T",
    "spectral.order",
    "spectral.shift",
    "spectral.k",
    "spectral.tau",
    "spectral.method",
    "spectral.init_noise",
    "stage2.bias",
    "stage2.solver",
    "stage2.ridge_lambda",
    "stage2.steps",
    "stage2.lr",
    "stage2.weight_decay",
    "metrics.power_iteration",
    "one_step.lr_scale",
    "one_step.variant",
    "one_step.lambda_min",
    "one_step.lambda_max",
    "one_step.lambda_count",
    "joint.optimizer",
    "joint.lr",
    "joint.steps",
    "joint.batch_size",
    "joint.batches",
    "joint.eval_every",
    "checkpoint.every",
];

const SECTIONS: &[&str] = &[
    "schedule",
    "data",
    "model",
    "stage1",
    "stage2",
    "metrics",
    "one_step",
    "joint",
    "checkpoint",
    "spectral",
];

/// Words that are valid somewhere (so enum fields are sometimes right).
const WORDS: &[&str] = &[
    "auto",
    "inverse_lr",
    "flex",
    "ndarray",
    "wgpu",
    "cuda",
    "f32",
    "f64",
    "f16",
    "layerwise",
    "one_step",
    "random_features",
    "joint",
    "dls22",
    "mim",
    "on",
    "off",
    "logcosh",
    "relu",
    "tanh",
    "quadratic",
    "swish",
    "huber",
    "square",
    "l1",
    "literal",
    "normalized",
    "fused",
    "autodiff",
    "closed_form",
    "mean",
    "none",
    "loss",
    "lal",
    "identity",
    "largest",
    "smallest",
    "abs",
    "dense",
    "iterative",
    "spectral_init",
    "gaussian",
    "uniform",
    "zero",
    "keep",
    "ridge",
    "gd",
    "adam",
    "sgd",
    "reused",
    "fresh",
    "",
];

/// The memory limit used everywhere here, so no accepted config is ever huge.
fn limit() -> MemoryLimit {
    MemoryLimit {
        bytes: Some(8.0 * (1u64 << 30) as f64),
        source: "--max-memory 8GiB".into(),
    }
}

// ---------------------------------------------------------------- strategies

fn link_formula() -> impl Strategy<Value = String> {
    let index = prop_oneof![0usize..6, Just(999_999_999_999_999_999usize)];
    let factor = prop_oneof![
        (0usize..12, index.clone()).prop_map(|(k, i)| format!("h{k}(z{i})")),
        (index.clone(), 0u64..40).prop_map(|(i, k)| format!("z{i}^{k}")),
        (index.clone(), Just(u64::MAX)).prop_map(|(i, k)| format!("z{i}^{k}")),
        index.clone().prop_map(|i| format!("z{i}")),
        (
            prop::sample::select(vec![
                "abs", "sign", "tanh", "relu", "cos", "exp", "log", "sqrt", "h", ""
            ]),
            index,
        )
            .prop_map(|(f, i)| format!("{f}(z{i})")),
        prop::sample::select(vec![
            "0.5", "-2", "1e400", "1e-400", "nan", "inf", ".5", "1.", "1e", "3.5e+2"
        ])
        .prop_map(String::from),
    ];
    let term = prop::collection::vec(factor, 1..4).prop_map(|f| f.join("*"));
    let structured = (
        prop::collection::vec(term, 1..4),
        prop::sample::select(vec!["+", "-", " + ", "++", "*", "^"]),
    )
        .prop_map(|(t, op)| t.join(op));
    let tokens = prop::collection::vec(
        prop::sample::select(vec![
            "h", "z", "(", ")", "+", "-", "*", "^", "2", "1", "0", "99", "abs", "sign", "tanh",
            "relu", "cosh", " ", ".", "e", "h4(z1)", "z2", "\n", "é", "\u{0}",
        ]),
        0..12,
    )
    .prop_map(|t| t.concat());
    prop_oneof![4 => structured, 2 => tokens, 1 => "\\PC{0,24}"]
}

fn scalar() -> impl Strategy<Value = toml::Value> {
    use toml::Value as V;
    prop_oneof![
        3 => prop_oneof![
            -5i64..300,
            Just(0i64),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(1i64 << 40),
            any::<i64>()
        ]
        .prop_map(V::Integer),
        3 => prop_oneof![
            -10.0f64..1000.0,
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(1e308),
            Just(-0.0),
            Just(5e-324),
            any::<f64>()
        ]
        .prop_map(V::Float),
        3 => prop::sample::select(WORDS).prop_map(|w| V::String(w.into())),
        3 => link_formula().prop_map(V::String),
        1 => "\\PC{0,16}".prop_map(V::String),
        1 => any::<bool>().prop_map(V::Boolean),
    ]
}

fn value() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        12 => scalar(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(toml::Value::Array),
        1 => prop::collection::btree_map("[a-z_]{1,6}", scalar(), 0..3)
            .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => prop::sample::select(KNOWN).prop_map(String::from),
        1 => prop::sample::select(SECTIONS).prop_map(String::from),
        1 => "[a-z_]{1,8}",
        1 => (prop::sample::select(SECTIONS), "[a-z_]{1,8}").prop_map(|(s, k)| format!("{s}.{k}")),
        1 => (prop::sample::select(KNOWN), "[a-z]{1,4}").prop_map(|(s, k)| format!("{s}.{k}")),
    ]
}

/// Sets `path` (dotted) in `table` to `value`, turning non-tables on the way into tables.
fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        cur = entry.as_table_mut().expect("table");
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
}

fn remove_path(table: &mut toml::Table, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        match cur.get_mut(*p).and_then(|v| v.as_table_mut()) {
            Some(t) => cur = t,
            None => return,
        }
    }
    cur.remove(parts[parts.len() - 1]);
}

/// The shipped configs, the starting points of mutated configs.
fn shipped() -> Vec<toml::Table> {
    let mut out = vec![toml::Table::new()];
    for entry in std::fs::read_dir(root().join("configs")).expect("configs/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push(parse_toml(&text, "shipped").expect("shipped configs parse"));
        }
    }
    out
}

/// A random table (from scratch or a shipped config) with up to 8 keys set or removed.
fn table() -> impl Strategy<Value = toml::Table> {
    let base = shipped();
    let n = base.len();
    (
        0..n,
        prop::collection::vec((key(), value(), prop::bool::weighted(0.1)), 0..8),
    )
        .prop_map(move |(i, edits)| {
            let mut t = base[i].clone();
            for (k, v, remove) in edits {
                if remove {
                    remove_path(&mut t, &k);
                } else {
                    set_path(&mut t, &k, v);
                }
            }
            t
        })
}

/// Shipped config text with byte-level mutations, or garbage.
fn text() -> impl Strategy<Value = String> {
    let mut texts = vec![String::new()];
    for entry in std::fs::read_dir(root().join("configs")).expect("configs/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            texts.push(std::fs::read_to_string(&path).unwrap());
        }
    }
    let n = texts.len();
    let mutated = (
        0..n,
        prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, "\\PC{0,6}"), 0..5),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(move |(i, edits, cut, truncate)| {
            let mut chars: Vec<char> = texts[i].chars().collect();
            for (at, del, ins) in edits {
                let at = if chars.is_empty() {
                    0
                } else {
                    at.index(chars.len())
                };
                let del = del.min(chars.len() - at);
                chars.splice(at..at + del, ins.chars());
            }
            if truncate && !chars.is_empty() {
                chars.truncate(cut.index(chars.len()));
            }
            chars.into_iter().collect::<String>()
        });
    prop_oneof![
        6 => mutated,
        1 => "\\PC{0,80}",
        1 => "(\\[[a-z0-9_.]{0,8}\\]\n)?([a-z_.]{1,10} ?= ?[-+a-z0-9_.\"'\\[\\]{}]{0,12}\n){0,5}",
    ]
}

// ---------------------------------------------------------------- checks

/// The error names a field: it starts with a config path (`data.n1 = …`, `dtype: …`), or is
/// serde's `unknown field `x``.
fn assert_names_field(msg: &str, what: &str) {
    assert!(!msg.is_empty(), "{what}: empty error");
    assert!(!msg.contains('\n'), "{what}: multi-line error: {msg:?}");
    let head = msg
        .split([' ', ':', '=', '['])
        .next()
        .unwrap_or_default()
        .trim_end_matches(',');
    let known = KNOWN.contains(&head)
        || SECTIONS.contains(&head)
        || KNOWN
            .iter()
            .any(|k| head.starts_with(&format!("{k}.")) || head.starts_with(&format!("{k}[")));
    let section_key = SECTIONS.iter().any(|s| head.starts_with(&format!("{s}.")));
    assert!(
        known || section_key || msg.contains("unknown field `"),
        "{what}: error does not start with a field name: {msg:?}"
    );
}

/// from_table → validate → memory check: never panics; an error is one line naming a field.
/// Returns whether the config was rejected.
fn check_table(table: toml::Table, what: &str) -> bool {
    let result = RunConfig::from_table(table)
        .and_then(|c| c.validate())
        .and_then(|v| check_memory(&v, &limit()).map(|_| v));
    match result {
        Ok(v) => {
            // An accepted config round-trips through its resolved TOML.
            let again = RunConfig::from_table(parse_toml(&v.config.to_toml(), "resolved").unwrap())
                .expect("resolved config re-reads");
            assert_eq!(again, v.config, "{what}");
            false
        }
        Err(e) => {
            if std::env::var_os("MIM_FUZZ_SHOW").is_some() {
                eprintln!("rejected: {}", e.0);
            }
            assert_names_field(&e.0, what);
            true
        }
    }
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `cases` cases of `strategy` through `test` (which returns whether the case was
/// rejected), fails on the first failing case (proptest shrinks it), and reports the counts.
fn fuzz<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let (total, rejected) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&strategy, |v| {
        total.fetch_add(1, Ordering::Relaxed);
        if test(v)? {
            rejected.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let (total, rejected) = (total.into_inner(), rejected.into_inner());
    eprintln!("{name}: {total} configs fuzzed, {rejected} rejected, none panicked");
    assert!(total >= cases as usize);
    assert!(
        rejected > 0 && rejected < total,
        "{name}: the mix is degenerate"
    );
}

/// Random and mutated tables.
#[test]
fn random_tables_never_panic_and_name_the_field() {
    fuzz("tables", TABLE_CASES, table(), |t| {
        Ok(check_table(t.clone(), &format!("{t:?}")))
    });
}

/// Mutated and garbage TOML text: malformed TOML names the file, on one line.
#[test]
fn mutated_toml_text_never_panics() {
    fuzz("texts", TEXT_CASES, text(), |text| {
        match parse_toml(&text, "fuzz.toml") {
            Ok(t) => Ok(check_table(t, &format!("{text:?}"))),
            Err(e) => {
                prop_assert!(!e.0.contains('\n'), "multi-line: {:?}", e.0);
                prop_assert!(e.0.starts_with("fuzz.toml: malformed TOML"), "{:?}", e.0);
                Ok(true)
            }
        }
    });
}

/// Random `--set key=value` overrides (known/unknown keys, TOML and non-TOML values).
#[test]
fn random_overrides_never_panic() {
    let sets = prop::collection::vec(
        (
            key(),
            prop_oneof![
                scalar().prop_map(|v| v.to_string()),
                link_formula(),
                "\\PC{0,12}",
            ],
            prop::bool::weighted(0.05),
        ),
        1..4,
    );
    fuzz("overrides", OVERRIDE_CASES, sets, |sets| {
        let mut t = toml::Table::new();
        for (k, v, no_eq) in &sets {
            let assignment = if *no_eq {
                k.clone()
            } else {
                format!("{k}={v}")
            };
            if let Err(e) = apply_override(&mut t, &assignment) {
                prop_assert!(!e.0.contains('\n'), "multi-line: {:?}", e.0);
                prop_assert!(e.0.starts_with("--set "), "{:?}", e.0);
                return Ok(true);
            }
        }
        Ok(check_table(t, &format!("{sets:?}")))
    });
}

/// Runs `mim` with a timeout; returns its exit status and stderr (stdout is not kept).
fn run_mim(args: &[&str]) -> Output {
    let mut child = mim_command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mim runs");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = Vec::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_end(&mut stderr)
                .unwrap();
            return Output {
                status,
                stdout: Vec::new(),
                stderr,
            };
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("mim {args:?} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A fixed-seed sample of rejected configs through the real binary: exit 2, one stderr line,
/// no panic.
#[test]
fn rejected_configs_exit_2_through_the_binary() {
    let dir = empty_dir("binary");
    let mut runner = TestRunner::new_with_rng(
        config(1),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = table();
    let mut ran = 0;
    let mut tried = 0;
    while ran < BINARY_SAMPLE {
        tried += 1;
        assert!(tried < 5000, "too few rejected configs");
        let t = strategy.new_tree(&mut runner).unwrap().current();
        let Ok(text) = toml::to_string(&t) else {
            continue;
        };
        // Only configs that are rejected after the round trip through text.
        let Ok(reparsed) = parse_toml(&text, "x") else {
            continue;
        };
        if !check_table(reparsed, &text) {
            continue;
        }
        let file = dir.join(format!("case{ran}.toml"));
        std::fs::write(&file, &text).unwrap();
        let out = dir.join(format!("out{ran}"));
        let o = run_mim(&[
            "train",
            "--quiet",
            "--max-memory",
            "8GiB",
            "--config",
            &file.to_string_lossy(),
            "--out",
            &out.to_string_lossy(),
        ]);
        assert_one_line_error(&o, 2, &text);
        ran += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("binary sample: {ran} rejected configs, each exit 2 with one stderr line");
}
