//! Helpers shared by the end-to-end tests of the `mim` binary (`mod common;` in each test
//! file): scratch folders, running the binary, asserting on its exit and reading its output.
// Each test crate uses its own subset of these.
#![allow(dead_code)]

use serde_json::Value;
use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root: `mim` runs there, so `configs/…` paths resolve.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Scratch item `name` of this test crate and process: `<tmp>/mim-<test>-<pid>-<name>`
/// (left as it is).
pub fn scratch_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "mim-{}-{}-{name}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ))
}

/// [`scratch_path`], removed if it exists (for `--out` folders `mim` creates itself).
pub fn scratch(name: &str) -> PathBuf {
    let dir = scratch_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// [`scratch`], created empty.
pub fn empty_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `mim` command with `args`, run from [`root`] with `XDG_RUNTIME_DIR` set (wgpu wants one).
pub fn mim_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(env!("CARGO_BIN_EXE_mim"));
    c.args(args)
        .current_dir(root())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

/// Runs `mim` with `args` to the end.
pub fn mim<S: AsRef<OsStr>>(args: &[S]) -> Output {
    mim_command(args).output().expect("mim runs")
}

/// The exit status, stdout and stderr of a finished command, for assertion messages.
pub fn describe(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` to the end and asserts that it succeeded.
pub fn assert_runs(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("mim runs");
    assert!(o.status.success(), "{cmd:?} failed: {}", describe(&o));
    o
}

/// Runs `mim` with `args`, asserts that it succeeded and returns its stdout.
pub fn mim_ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    let o = assert_runs(&mut mim_command(args));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts that `o` failed with exit code `code` and exactly one line on stderr, without a
/// panic (`what`: the input, for the messages); returns the stderr.
pub fn assert_one_line_error(o: &Output, code: i32, what: &dyn Debug) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{what:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what:?}: not one line: {err}"
    );
    assert!(!err.contains("panicked"), "{what:?}: {err}");
    err
}

/// `args` followed by `--set S` for each of `sets`.
pub fn with_sets<S: AsRef<str>>(args: &[&str], sets: &[S]) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for s in sets {
        out.push("--set".into());
        out.push(s.as_ref().to_string());
    }
    out
}

/// `mim <command> --config <config> --out <scratch folder name> --quiet`, `--set` for each of
/// `sets`, then `extra`: asserts success and returns the folder and its summary.json.
pub fn run_to_summary<S: AsRef<str>>(
    command: &str,
    name: &str,
    config: &str,
    sets: &[S],
    extra: &[&str],
) -> (PathBuf, Value) {
    let out = scratch(name);
    let out_s = out.to_string_lossy().into_owned();
    let head = [command, "--config", config, "--out", &out_s, "--quiet"];
    let mut args = with_sets(&head, sets);
    args.extend(extra.iter().map(|s| s.to_string()));
    mim_ok(&args);
    let summary = read_json(&out.join("summary.json"));
    (out, summary)
}

/// Reads a JSON file (panics naming the file).
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is corrupt: {e}", path.display()))
}

/// `s[key]` as a number (panics naming the key).
pub fn num(s: &Value, key: &str) -> f64 {
    s[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {s}"))
}

/// Timings and the process's peak memory: the only fields allowed to differ between runs.
pub const VOLATILE: [&str; 5] = [
    "seconds",
    "stage1_seconds",
    "stage2_seconds",
    "total_seconds",
    "peak_rss_mib",
];

/// `v` without its [`VOLATILE`] fields, at any depth.
pub fn strip_volatile(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !VOLATILE.contains(&k.as_str()))
                .map(|(k, v)| (k, strip_volatile(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_volatile).collect()),
        v => v,
    }
}

/// `mim train --config <config> --out <empty folder> --set S…` must fail with one line and
/// exit 2; returns that line, asserted to contain `field`.
pub fn train_config_error(config: &str, sets: &[&str], field: &str) -> String {
    let out = empty_dir("config-error");
    let out_s = out.to_string_lossy().into_owned();
    let args = with_sets(&["train", "--config", config, "--out", &out_s], sets);
    let err = assert_one_line_error(&mim(&args), 2, &sets);
    assert!(err.contains(field), "{sets:?}: {err}");
    err
}
