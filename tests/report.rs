//! End-to-end test of `mim plot` and `mim report`: a tiny report (seconds) is generated and
//! opened in a real headless browser (Chromium), which must render every figure.
//!
//! Chromium is required: on Debian `apt-get install chromium` (`.ci/run` installs it). Set
//! `MIM_CHROMIUM` to use another binary.

mod common;

use common::{assert_one_line_error, assert_runs, describe, empty_dir, mim_command};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Chromium binary, or a panic saying how to install it (never a silent skip).
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("MIM_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser"] {
        if let Ok(o) = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
        {
            let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if o.status.success() && !p.is_empty() {
                return PathBuf::from(p);
            }
        }
    }
    panic!(
        "the report test needs a headless Chromium and none was found: install it with \
         `apt-get install chromium` (Debian; .ci/run does this) or set MIM_CHROMIUM to a \
         Chromium/Chrome binary"
    );
}

/// Runs headless Chromium with a fresh profile on `args` (plus the page URL) and a time limit.
fn run_chromium(profile: &Path, args: &[String], page: &Path) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()));
    cmd.output().expect("starting chromium")
}

const BASE: &str = r#"seed = 0
[data]
d = 20
r = 2
link = "h2(z1)+h2(z2)"
alpha1 = 8
alpha2 = 8
n_test = 300
[model]
width = 16
[stage1]
steps = 2
"#;

const SWEEP: &str = r#"base = "base.toml"
[axes]
"data.alpha1" = [4, 16]
"stage1.steps" = [0, 3]
seed = "0..2"
"#;

const REPORT: &str = r#"title = "tiny report"
intro = "A report small enough for a test."
resamples = 200

[[experiment]]
id = "T1"
title = "Stage-1 steps align neurons"
claim = "alignment_mean grows with T1"
sweep = "sweep.toml"

[[experiment.figure]]
kind = "line"
x = "stage1.steps"
y = "alignment_mean"
group = "data.alpha1"

[[experiment.figure]]
kind = "logx"
x = "data.alpha1"
y = "alignment_mean"
group = "stage1.steps"
level = 0.3

[[experiment.figure]]
kind = "heatmap"
x = "data.alpha1"
y = "stage1.steps"
z = "alignment_mean"

[[experiment.figure]]
kind = "trajectories"
y = "alignment_mean"
group = "data.alpha1"
where = { "stage1.steps" = 3 }

[[experiment.figure]]
kind = "bars"
x = "stage1.steps"
y = "test_mse"

[[experiment.check]]
text = "alignment_mean at T1 = 3 exceeds T1 = 0 at α = 16"
left = { metric = "alignment_mean", where = { "stage1.steps" = 3, "data.alpha1" = 16 } }
op = ">"
right = { metric = "alignment_mean", where = { "stage1.steps" = 0, "data.alpha1" = 16 } }

[[experiment]]
id = "X"
title = "Needs something this build lacks"
claim = "shown as not run"
needs = ["no-such-capability"]
"#;

const FIGURES: usize = 5;

/// Injected into a copy of the page: after load, writes one marker per image (natural size,
/// complete flag) and a summary line into the DOM for `--dump-dom` to read back.
const PROBE: &str = r#"<script>
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.fig');
  var ok = 0, out = [];
  imgs.forEach(function (im, i) {
    var good = im.complete && im.naturalWidth > 0 && im.naturalHeight > 0;
    if (good) ok++;
    out.push('img' + i + ':' + im.naturalWidth + 'x' + im.naturalHeight + ':' + (good ? 'ok' : 'BAD'));
  });
  var d = document.createElement('pre');
  d.id = 'mim-probe';
  // The marker is built from pieces so the script's own text never matches it.
  d.textContent = 'MIM' + 'PROBE total=' + imgs.length + ' rendered=' + ok + ' ' + out.join(' ') + ' END' + 'PROBE';
  document.body.appendChild(d);
});
</script>"#;

#[test]
fn report_renders_in_headless_chromium() {
    let browser = chromium(); // fail first, with the install hint, if it is missing
    let dir = empty_dir("e2e");
    std::fs::write(dir.join("base.toml"), BASE).unwrap();
    std::fs::write(dir.join("sweep.toml"), SWEEP).unwrap();
    std::fs::write(dir.join("tiny.toml"), REPORT).unwrap();
    let out = dir.join("out");
    let o = assert_runs(
        mim_command(["report"])
            .arg(dir.join("tiny.toml"))
            .arg("--out")
            .arg(&out)
            .args(["--jobs", "2", "--quiet"]),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("T1   reproduced"), "{}", describe(&o));
    assert!(stdout.contains("X    not run"), "{}", describe(&o));

    let html_path = out.join("report.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert_eq!(
        html.matches("<img class=\"fig\"").count(),
        FIGURES,
        "figures inlined"
    );
    assert!(
        !html.contains("Figure not drawn"),
        "a figure failed to draw"
    );
    assert!(
        html.contains("mim plot --db"),
        "each figure shows its command"
    );
    assert!(html.contains("data-verdict=\"reproduced\""));
    assert!(html.contains("data-verdict=\"not run\""));
    // Self-contained: no external resources.
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    for k in 1..=FIGURES {
        let n = std::fs::read_dir(out.join("figures"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("T1-{k}-"))
            })
            .count();
        assert_eq!(n, 2, "figure {k}: an SVG and a PNG");
    }

    // The browser must render every figure.
    let probe = dir.join("probe.html");
    std::fs::write(&probe, html.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let o = run_chromium(&dir.join("profile1"), &["--dump-dom".into()], &probe);
    let dom = String::from_utf8_lossy(&o.stdout);
    let marker = dom
        .split("MIMPROBE ")
        .nth(1)
        .and_then(|s| s.split(" ENDPROBE").next())
        .unwrap_or_else(|| {
            panic!(
                "{} wrote no probe marker (did the page load?)\n{}",
                browser.display(),
                describe(&o)
            )
        });
    assert!(
        marker.starts_with(&format!("total={FIGURES} rendered={FIGURES} ")),
        "not every figure rendered: {marker}"
    );

    // And a screenshot of the page is produced (what a reader sees).
    let shot = dir.join("shot.png");
    let o = run_chromium(
        &dir.join("profile2"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,2400".into(),
            "--hide-scrollbars".into(),
        ],
        &html_path,
    );
    let bytes =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot: {e}\n{}", describe(&o)));
    assert!(
        bytes.len() > 20_000 && &bytes[1..4] == b"PNG",
        "screenshot too small"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_second_run_reuses_points() {
    let dir = empty_dir("reuse");
    std::fs::write(dir.join("base.toml"), BASE).unwrap();
    std::fs::write(
        dir.join("sweep.toml"),
        "base = \"base.toml\"\n[axes]\n\"stage1.steps\" = [0, 2]\nseed = \"0..2\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("r.toml"),
        "title = \"t\"\n[[experiment]]\nid = \"A\"\ntitle = \"a\"\nclaim = \"c\"\nsweep = \"sweep.toml\"\n\
         [[experiment.figure]]\nx = \"stage1.steps\"\ny = \"alignment_mean\"\n\
         [[experiment.check]]\ntext = \"rho\"\nleft = { metric = \"alignment_mean\" }\nop = \">=\"\nright = { value = 0 }\n",
    )
    .unwrap();
    for _ in 0..2 {
        assert_runs(
            mim_command(["report"])
                .arg(dir.join("r.toml"))
                .arg("--out")
                .arg(dir.join("out"))
                .args(["--jobs", "2", "--quiet"]),
        );
    }
    let html = std::fs::read_to_string(dir.join("out/report.html")).unwrap();
    assert!(
        html.contains("4 points: 0 run now"),
        "second run should reuse all points"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_report_and_plot_input_exit_2_naming_the_option() {
    let dir = empty_dir("bad");
    let p = dir.join("r.toml");
    std::fs::write(&p, "title = \"t\"\n[[experiment]]\nid = \"A\"\ntitle = \"a\"\nclaim = \"c\"\n[[experiment.check]]\ntext = \"x\"\nleft = { value = 1 }\nop = \"~\"\nright = { value = 1 }\n").unwrap();
    let o = mim_command(["report"]).arg(&p).output().unwrap();
    let err = assert_one_line_error(&o, 2, &p);
    assert!(err.contains("op `~`"), "{err}");

    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "plot",
                "--db",
                "nope.sqlite",
                "--x",
                "a",
                "--y",
                "b",
                "--out",
                "f",
            ],
            "--db",
        ),
        (&["plot", "--y", "b", "--out", "f"], "--db"),
        (&["plot", "--db", "x", "--x", "a", "--out", "f"], "--y"),
        (
            &[
                "plot",
                "--trajectories",
                "/nonexistent",
                "--y",
                "b",
                "--out",
                "f",
            ],
            "--trajectories",
        ),
    ];
    for (args, opt) in cases {
        let o = mim_command(*args).current_dir(&dir).output().unwrap();
        let err = assert_one_line_error(&o, 2, args);
        assert!(err.contains(opt), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plot_from_database_and_trajectories() {
    let dir = empty_dir("plot");
    std::fs::write(dir.join("base.toml"), BASE).unwrap();
    std::fs::write(dir.join("sweep.toml"), SWEEP).unwrap();
    let db = dir.join("r.sqlite");
    assert_runs(
        mim_command(["sweep"])
            .arg(dir.join("sweep.toml"))
            .arg("--db")
            .arg(&db)
            .arg("--out")
            .arg(dir.join("points"))
            .args(["--jobs", "2", "--quiet"]),
    );
    assert_runs(
        mim_command(["plot", "--db"])
            .arg(&db)
            .args(["--x", "data.alpha1", "--y", "alignment_mean"])
            .args([
                "--group",
                "stage1.steps",
                "--kind",
                "logx",
                "--level",
                "0.3",
            ])
            .arg("--out")
            .arg(dir.join("fig")),
    );
    assert!(dir.join("fig.svg").exists() && dir.join("fig.png").exists());
    // Bad keys name the key.
    let o = mim_command(["plot", "--db"])
        .arg(&db)
        .args(["--x", "data.nope", "--y", "alignment_mean", "--out"])
        .arg(dir.join("g"))
        .output()
        .unwrap();
    let err = assert_one_line_error(&o, 2, &"plot --x data.nope");
    assert!(err.contains("data.nope"), "{err}");
    // Trajectories from run folders.
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("points"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 8);
    assert_runs(
        mim_command(["plot", "--trajectories"])
            .args(&runs)
            .args(["--y", "power_iteration_cos", "--out"])
            .arg(dir.join("traj")),
    );
    let svg = std::fs::read_to_string(dir.join("traj.svg")).unwrap();
    assert!(svg.contains("power_iteration_cos"));
    let _ = std::fs::remove_dir_all(&dir);
}
