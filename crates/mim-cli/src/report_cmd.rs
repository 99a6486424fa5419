//! `mim report`: run (or reuse) the sweeps of a report file, draw its figures, check its
//! criteria and write one self-contained HTML page.
//!
//! ```text
//! mim report configs/report/paper.toml [--out DIR] [--jobs N] [--db FILE] [--quiet]
//! ```
//! Writes `DIR/report.html` (default DIR: `runs/report/<report name>`), the figures as SVG and
//! PNG under `DIR/figures/`, run folders under `DIR/points/` and the results database
//! `DIR/results.sqlite` (points already there are reused, so a second run only redraws).
//! Exit codes: 0 page written (whatever the verdicts); 2 bad input; 1 runtime failure.

use crate::plot_cmd::{load_rows, load_steps};
use clap::Args;
use mim_plot::figures::{
    default_name, draw_figure, filter_pairs, FigureData, FigureKind, FigureSpec, SpectrumData,
};
use mim_plot::report::{
    run_check, write_html, ExperimentOut, ExperimentSpec, FigureOut, PageMeta, ReportSpec,
    SweepRef, Verdict,
};
use mim_plot::rows::{row_matches, value_label};
use mim_plot::stats::fmt_num;
use mim_plot::RefLine;
use mim_sweep::{SweepOptions, SweepSpec};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// Options of `mim report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The report file (TOML: title, `[[experiment]]` with sweep, figures and checks).
    file: PathBuf,
    /// Output folder (default `runs/report/<report name>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Points run at the same time (default: the number of cores).
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Results database (default `<out>/results.sqlite`); points already in it are reused.
    #[arg(long)]
    db: Option<PathBuf>,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

/// Capabilities beyond training runs that this build provides to `needs = [...]`: a
/// subcommand of this executable that answers `--help` (`spectral`, `theory`).
fn capabilities(exe: &Path) -> Vec<String> {
    ["spectral", "theory"]
        .iter()
        .filter(|c| {
            Command::new(exe)
                .args([c, "--help"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|c| c.to_string())
        .collect()
}

/// Why a capability is missing, shown on the page.
fn missing_capability(name: &str) -> String {
    match name {
        "spectral" => "needs spectral estimates of Σ̂_T (`mim spectral`, crate mim-spectral), \
                       which this build does not include"
            .into(),
        "theory" => "needs theory curves (`mim theory`, crate mim-spectral), which this build \
                     does not include"
            .into(),
        other => format!("needs `{other}`, which this build does not provide"),
    }
}

/// The folder of one `mim spectral` run: `<out>/spectral/<point key>-<settings hash>`.
fn spectral_dir(out: &Path, key: &str, settings: &str) -> PathBuf {
    // FNV-1a of the settings: stable across builds and platforms.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in settings.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    out.join("spectral").join(format!("{key}-{h:016x}"))
}

/// Runs (or reuses) `mim spectral` for one point: config = the point's resolved config plus
/// `[spectral]` = `settings` (and `extra` overrides); returns its summary.json.
fn run_spectral(
    exe: &Path,
    point: &mim_sweep::Point,
    settings: &toml::Table,
    extra: &[String],
    dir: &Path,
) -> Result<Value, String> {
    let summary_path = dir.join("summary.json");
    let read_summary = || -> Result<Value, String> {
        let text = std::fs::read_to_string(&summary_path)
            .map_err(|e| format!("{}: {e}", summary_path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", summary_path.display()))
    };
    if let Ok(v) = read_summary() {
        if v["status"] == "ok" {
            return Ok(v);
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The point's config with the experiment's `[spectral]` keys merged over its own (so a
    // sweep axis such as `spectral.k` survives unless the experiment sets that key).
    let mut config: toml::Table = toml::from_str(&point.config_toml)
        .map_err(|e| format!("point {}: config: {e}", point.key))?;
    let section = config
        .entry("spectral")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(t) = section {
        t.extend(settings.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let text = toml::to_string(&config).map_err(|e| e.to_string())?;
    let cfg = dir.join("config.in.toml");
    std::fs::write(&cfg, text).map_err(|e| format!("{}: {e}", cfg.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("spectral")
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(dir)
        .arg("--quiet")
        .args(["--set", "threads=1"]);
    for x in extra {
        cmd.args(["--set", x]);
    }
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {} spectral: {e}", exe.display()))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let line = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!(
            "mim spectral failed for point {}: {line}",
            point.key
        ));
    }
    read_summary()
}

/// Runs `mim spectral` on every point, `jobs` at a time; results in point order.
fn run_spectral_all(
    exe: &Path,
    points: &[mim_sweep::Point],
    settings: &toml::Table,
    out: &Path,
    jobs: usize,
) -> Vec<Result<Value, String>> {
    let text = toml::to_string(settings).unwrap_or_default();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<Value, String>>>> =
        points.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(points.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(p) = points.get(i) else { break };
                let dir = spectral_dir(out, &p.key, &text);
                let r = run_spectral(exe, p, settings, &[], &dir);
                *results[i].lock().expect("result slot") = Some(r);
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err("not run".into()))
        })
        .collect()
}

fn quote(p: &Path) -> String {
    let s = p.display().to_string();
    if s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
        format!("'{}'", s.replace('\'', "'\\''"))
    } else {
        s
    }
}

/// Where a figure's rows come from, for the command that redraws it.
enum Source<'a> {
    /// The results database, restricted to a sweep's points.
    Db { db: &'a Path, sweep: &'a Path },
    /// A JSON-lines file of rows (experiments with spectral columns).
    Rows(&'a Path),
}

/// The `mim plot` command that redraws a figure.
fn plot_command(f: &FigureSpec, source: &Source, out: &Path) -> String {
    let mut c = match source {
        Source::Db { db, sweep } => format!(
            "mim plot --db {} --sweep {} --kind {}",
            quote(db),
            quote(sweep),
            f.kind.name()
        ),
        Source::Rows(r) => format!("mim plot --rows {} --kind {}", quote(r), f.kind.name()),
    };
    if let Some(x) = &f.x {
        c.push_str(&format!(" --x {x}"));
    }
    c.push_str(&format!(" --y {}", f.y));
    if let Some(z) = &f.z {
        c.push_str(&format!(" --z {z}"));
    }
    if let Some(g) = &f.group {
        c.push_str(&format!(" --group {g}"));
    }
    for m in &f.extra_y {
        c.push_str(&format!(" --also {m}"));
    }
    if let Some(o) = &f.overlay {
        c.push_str(&format!(" --overlay {o}"));
    }
    for (k, v) in filter_pairs(&f.filter) {
        let v = if v.is_string() {
            value_label(&v)
        } else {
            v.to_string()
        };
        c.push_str(&format!(" --where {k}={v}"));
    }
    if let Some(l) = f.level {
        c.push_str(&format!(" --level {l}"));
        if f.direction == mim_plot::Direction::Down {
            c.push_str(" --direction down");
        }
    }
    if let Some(t) = &f.theory {
        c.push_str(&format!(
            " --theory {} --theory-x {} --theory-y {}",
            quote(&t.csv),
            t.x,
            t.y
        ));
    }
    if f.log_y {
        c.push_str(" --log-y");
    }
    if let Some(t) = &f.title {
        c.push_str(&format!(" --title '{}'", t.replace('\'', "'\\''")));
    }
    c.push_str(&format!(" --out {}", quote(out)));
    c
}

/// Writes an inline sweep to `<out>/sweeps/<id>.toml`, with a relative `base` made absolute
/// (it was relative to the report file), and returns the path.
fn write_inline_sweep(
    table: &toml::Table,
    report_dir: &Path,
    out: &Path,
    id: &str,
) -> Result<PathBuf, String> {
    let mut t = table.clone();
    if let Some(toml::Value::String(b)) = t.get("base").cloned() {
        let p = report_dir.join(&b);
        let abs = std::fs::canonicalize(&p)
            .map_err(|e| format!("experiment {id}: sweep base {}: {e}", p.display()))?;
        t.insert(
            "base".into(),
            toml::Value::String(abs.display().to_string()),
        );
    }
    let dir = out.join("sweeps");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{id}.toml"));
    let text = format!(
        "# Inline sweep of experiment {id} (written by mim report).\n{}",
        toml::to_string(&t).map_err(|e| format!("experiment {id}: sweep: {e}"))?
    );
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

struct Ctx<'a> {
    spec: &'a ReportSpec,
    out: PathBuf,
    db: PathBuf,
    jobs: usize,
    quiet: bool,
    exe: PathBuf,
    caps: Vec<String>,
}

/// Runs one experiment: sweep, figures, checks.
fn run_experiment(ctx: &Ctx, e: &ExperimentSpec, index: usize) -> ExperimentOut {
    let t0 = Instant::now();
    let mut out = ExperimentOut {
        id: e.id.clone(),
        title: e.title.clone(),
        claim: e.claim.clone(),
        notes: e.notes.clone(),
        data_commands: Vec::new(),
        facts: Vec::new(),
        figures: Vec::new(),
        checks: Vec::new(),
        verdict: Verdict::NotReproduced,
        seconds: 0.0,
    };
    let finish = |mut o: ExperimentOut, v: Verdict| {
        o.verdict = v;
        o.seconds = t0.elapsed().as_secs_f64();
        o
    };
    if let Some(missing) = e.needs.iter().find(|n| !ctx.caps.contains(n)) {
        return finish(out, Verdict::NotRun(missing_capability(missing)));
    }
    let report_dir = ctx.spec.dir();
    let sweep_path = match &e.sweep {
        None => return finish(out, Verdict::NotRun("the experiment names no sweep".into())),
        Some(SweepRef::File(p)) => report_dir.join(p),
        Some(SweepRef::Inline(t)) => match write_inline_sweep(t, &report_dir, &ctx.out, &e.id) {
            Ok(p) => p,
            Err(m) => return finish(out, Verdict::NotRun(m)),
        },
    };
    let sweep = match SweepSpec::load(&sweep_path) {
        Ok(s) => s,
        Err(m) => return finish(out, Verdict::NotRun(m.to_string())),
    };
    let points = match sweep.points() {
        Ok(p) => p,
        Err(m) => return finish(out, Verdict::NotRun(m.to_string())),
    };
    let points_dir = ctx.out.join("points");
    let train = e.train.unwrap_or(e.spectral.is_none());
    if train {
        out.data_commands.push(format!(
            "mim sweep {} --db {} --out {} --jobs {}",
            quote(&sweep_path),
            quote(&ctx.db),
            quote(&points_dir),
            ctx.jobs
        ));
    }
    if !ctx.quiet {
        eprintln!(
            "== {} {}: {} points ({})",
            e.id,
            e.title,
            points.len(),
            sweep_path.display()
        );
    }
    let mut rows: Vec<Value> = Vec::new();
    let mut steps = Vec::new();
    if train {
        let opts = SweepOptions {
            exe: ctx.exe.clone(),
            jobs: ctx.jobs,
            db: ctx.db.clone(),
            out: points_dir,
            shard: None,
            quiet: ctx.quiet,
            lock_timeout: mim_sweep::BUSY_TIMEOUT,
        };
        let t_run = Instant::now();
        let outcome = match mim_sweep::run_points(&sweep.name, &points, &opts) {
            Ok(o) => o,
            Err(m) => return finish(out, Verdict::NotRun(format!("sweep failed: {m}"))),
        };
        out.facts.push(format!(
            "{} points: {} run now ({:.0} s), {} reused from the database, {} failed",
            outcome.total,
            outcome.ok,
            t_run.elapsed().as_secs_f64(),
            outcome.skipped,
            outcome.failed.len()
        ));
        for (k, m) in outcome.failed.iter().take(3) {
            out.facts.push(format!("failed point {k}: {m}"));
        }
        rows = match load_rows(&ctx.db, Some(&sweep)) {
            Ok(r) => r,
            Err(m) => return finish(out, Verdict::NotRun(m)),
        };
        if e.figures.iter().any(|f| f.kind == FigureKind::Trajectories) {
            steps = load_steps(&ctx.db, Some(&sweep)).unwrap_or_default();
        }
    }
    if let Some(settings) = &e.spectral {
        let t_run = Instant::now();
        let results = run_spectral_all(&ctx.exe, &points, settings, &ctx.out, ctx.jobs);
        let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        let settings_text = toml::to_string(settings)
            .unwrap_or_default()
            .trim()
            .replace('\n', ", ");
        out.facts.push(format!(
            "mim spectral ([spectral] {settings_text}) on {} points: {} ok, {} failed ({:.0} s; reused when already run)",
            points.len(),
            results.len() - failed.len(),
            failed.len(),
            t_run.elapsed().as_secs_f64()
        ));
        for m in failed.iter().take(3) {
            out.facts.push(m.to_string());
        }
        out.data_commands.push(format!(
            "# per point: mim spectral --config <point config + [spectral] {settings_text}> --out {}/spectral/<key>-<hash>",
            quote(&ctx.out)
        ));
        for (p, r) in points.iter().zip(results) {
            let Ok(Value::Object(summary)) = r else {
                continue;
            };
            if train {
                if let Some(Value::Object(row)) = rows
                    .iter_mut()
                    .find(|row| row.get("key").and_then(|k| k.as_str()) == Some(p.key.as_str()))
                {
                    for (k, v) in summary {
                        row.insert(format!("spectral.{k}"), v);
                    }
                }
            } else {
                let mut row = serde_json::Map::new();
                row.insert("key".into(), Value::String(p.key.clone()));
                row.extend(summary);
                if let Value::Object(params) = p.params_json() {
                    row.extend(params);
                }
                rows.push(Value::Object(row));
            }
        }
    }
    // Rows with spectral columns are not all in the database: keep them next to the page.
    let mut rows_file = None;
    if e.spectral.is_some() {
        let dir = ctx.out.join("rows");
        let path = dir.join(format!("{}.jsonl", e.id));
        let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
        match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text)) {
            Ok(()) => rows_file = Some(path),
            Err(err) => out
                .facts
                .push(format!("rows not written to {}: {err}", path.display())),
        }
    }
    let data = FigureData {
        rows: &rows,
        steps: &steps,
        spectra: &[],
        resamples: ctx.spec.resamples,
        base_dir: Some(&report_dir),
    };
    let fig_dir = ctx.out.join("figures");
    for (k, f) in e.figures.iter().enumerate() {
        let name = f.name.clone().unwrap_or_else(|| default_name(f));
        let base = fig_dir.join(format!("{}-{}-{name}", e.id, k + 1));
        let mut theory_fixed = f.clone();
        if let Some(t) = &mut theory_fixed.theory {
            if t.csv.is_relative() {
                t.csv = report_dir.join(&t.csv);
            }
        }
        let source = match &rows_file {
            Some(r) => Source::Rows(r),
            None => Source::Db {
                db: &ctx.db,
                sweep: &sweep_path,
            },
        };
        let command = plot_command(&theory_fixed, &source, &base);
        let mut spectra = Vec::new();
        let mut spectrum_error = None;
        if f.kind == FigureKind::Spectrum {
            match full_spectrum(ctx, e, f, &points) {
                Ok(s) => spectra.push(s),
                Err(m) => spectrum_error = Some(m),
            }
        }
        let fig_data = FigureData {
            spectra: &spectra,
            ..data.clone()
        };
        let drawn = match spectrum_error {
            Some(m) => Err(mim_plot::PlotError::NoData(m)),
            None => draw_figure(f, &fig_data, &base),
        };
        let command = if f.kind == FigureKind::Spectrum {
            format!(
                "mim spectral --config <point config + [spectral]> --set spectral.k=<d> --out DIR   # all d eigenvalues; histogram drawn by mim report ({})",
                base.display()
            )
        } else {
            command
        };
        let fo = match drawn {
            Ok(d) => {
                let svg = std::fs::read_to_string(&d.figure.svg).ok();
                FigureOut {
                    title: d.title,
                    error: svg.is_none().then(|| "SVG not readable".into()),
                    svg,
                    command,
                    notes: d.notes.into_iter().chain(d.figure.warnings).collect(),
                    png: d.figure.png.map(|p| p.display().to_string()),
                }
            }
            Err(m) => FigureOut {
                title: f.title.clone().unwrap_or_else(|| name.clone()),
                svg: None,
                error: Some(m.to_string()),
                command,
                notes: Vec::new(),
                png: None,
            },
        };
        out.figures.push(fo);
    }
    for (k, c) in e.checks.iter().enumerate() {
        let seed = (index as u64) << 16 | k as u64;
        out.checks
            .push(run_check(c, &rows, &report_dir, ctx.spec.resamples, seed));
    }
    let v = Verdict::from_checks(&out.checks);
    finish(out, v)
}

/// All d eigenvalues of Σ̂_T for the first point matching the figure's `where` (a `mim
/// spectral` run with k = d), with the bulk edges: the theory value (d → ∞) when the summary
/// has one.
fn full_spectrum(
    ctx: &Ctx,
    e: &ExperimentSpec,
    f: &FigureSpec,
    points: &[mim_sweep::Point],
) -> Result<SpectrumData, String> {
    let settings = e
        .spectral
        .as_ref()
        .ok_or("a spectrum figure needs the experiment's [spectral] settings")?;
    let filter = filter_pairs(&f.filter);
    let p = points
        .iter()
        .find(|p| row_matches(&p.params_json(), &filter))
        .ok_or("no point matches the figure's `where`")?;
    let d = p.config.config.data.d;
    let mut full = settings.clone();
    full.insert("k".into(), toml::Value::Integer(d as i64));
    full.insert("order".into(), toml::Value::String("largest".into()));
    full.insert("method".into(), toml::Value::String("dense".into()));
    let text = toml::to_string(&full).unwrap_or_default();
    let dir = spectral_dir(&ctx.out, &p.key, &text);
    let v = run_spectral(&ctx.exe, p, &full, &[], &dir)?;
    let eigenvalues: Vec<f64> = v["eigenvalues"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    let edges = [
        ("theory_bulk_edge", "bulk edge, theory d → ∞"),
        ("theory_eigenvalue", "signal eigenvalue, theory"),
    ]
    .into_iter()
    .filter_map(|(field, what)| {
        let at = v[field].as_f64()?;
        Some(RefLine {
            at,
            label: format!("{what} ({})", fmt_num(at)),
        })
    })
    .collect();
    Ok(SpectrumData {
        label: p.params_text(),
        eigenvalues,
        edges,
    })
}

/// Runs `mim report`.
pub fn run(args: ReportArgs) -> ExitCode {
    let t0 = Instant::now();
    let spec = match ReportSpec::load(&args.file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.jobs == Some(0) {
        eprintln!("error: --jobs 0: need at least one job");
        return ExitCode::from(2);
    }
    let name = args
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/report").join(&name));
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("error: --out {}: cannot create: {e}", out.display());
        return ExitCode::from(2);
    }
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| out.join("results.sqlite"));
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot locate the mim executable: {e}");
            return ExitCode::from(1);
        }
    };
    let jobs = args.jobs.unwrap_or_else(mim_sweep::default_jobs);
    let ctx = Ctx {
        spec: &spec,
        out: out.clone(),
        db: db.clone(),
        jobs,
        quiet: args.quiet,
        caps: capabilities(&exe),
        exe,
    };
    let mut exps = Vec::new();
    for (i, e) in spec.experiments.iter().enumerate() {
        let r = run_experiment(&ctx, e, i);
        if !args.quiet {
            eprintln!("   {}: {} ({:.0} s)", r.id, r.verdict.label(), r.seconds);
        }
        exps.push(r);
    }
    let mut command = format!("mim report {}", quote(&args.file));
    if let Some(o) = &args.out {
        command.push_str(&format!(" --out {}", quote(o)));
    }
    if let Some(d) = &args.db {
        command.push_str(&format!(" --db {}", quote(d)));
    }
    command.push_str(&format!(" --jobs {jobs}"));
    let meta = PageMeta {
        title: spec.title.clone(),
        intro: spec.intro.clone(),
        command,
        seconds: t0.elapsed().as_secs_f64(),
        facts: vec![
            format!(
                "mim {} · database {} · {} jobs · {} bootstrap resamples",
                env!("CARGO_PKG_VERSION"),
                db.display(),
                jobs,
                spec.resamples
            ),
            format!(
                "Figures as SVG and PNG in {}",
                out.join("figures").display()
            ),
        ],
    };
    let html = out.join("report.html");
    if let Err(e) = write_html(&meta, &exps, &html) {
        eprintln!("error: writing the report: {e}");
        return ExitCode::from(1);
    }
    for e in &exps {
        println!("{:<4} {:<15} {}", e.id, e.verdict.label(), e.title);
        for c in &e.checks {
            let side = |r: &Result<mim_plot::report::Evaluated, String>| match r {
                Ok(v) => fmt_num(v.value),
                Err(m) => format!("n/a ({m})"),
            };
            println!(
                "       [{}] {}: {} {} {}",
                if c.pass { "pass" } else { "FAIL" },
                c.text,
                side(&c.left),
                c.op,
                side(&c.right)
            );
        }
        if let Verdict::NotRun(r) = &e.verdict {
            println!("       {r}");
        }
    }
    println!(
        "report {} ({} of {} reproduced, {:.0} s)",
        html.display(),
        exps.iter()
            .filter(|e| e.verdict == Verdict::Reproduced)
            .count(),
        exps.len(),
        t0.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
