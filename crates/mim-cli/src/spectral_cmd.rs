//! `mim spectral`: the spectral estimator on the same D1 (same U, same rows) that `mim train`
//! uses for the same config and seed — the eigenvectors of Σ̂_T = (1/n1) Σ T(y_i) x_i x_iᵀ
//! (`spectral.shift = "none"`, the default for `loss:*`: what stage 1 and the power-iteration
//! metric iterate) or of (1/n1) Σ T(y_i)(x_i x_iᵀ − I) (`"mean"`, the classical estimator, the
//! default for every other T) — subspace recovery, and the d → ∞ theory value next to it.

use crate::run_args::{ConfigArgs, FolderArgs};
use clap::Args;
use mim_data::{Split, Target};
use mim_run::config::Streaming;
use mim_run::limits::{format_bytes, MemoryLimit};
use mim_run::results::write_atomic;
use mim_run::seeds::{derive_seed, Purpose};
use mim_run::streaming::{chunk_rows, Streams};
use mim_run::{target_of, RunConfig, ValidConfig};
use mim_spectral::theory::alpha_c;
use mim_spectral::Preprocessing;
use mim_spectral::{
    spectral_estimate_observed, spectral_labels, Law, ResolvedSpectral, Rows, SpectralConfig,
    TheoryPoint,
};
use mim_train::CenterBy;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// Options of `mim spectral`.
#[derive(Args)]
pub struct SpectralArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    #[command(flatten)]
    folder: FolderArgs,
}

/// A config file plus overrides, split into the run config and the `[spectral]` section, both
/// validated. The error is one line naming the field.
pub struct Loaded {
    /// The run config (data, stage-1 loss, seed).
    pub valid: ValidConfig,
    /// `[spectral]` as given (defaults filled in).
    pub spectral: SpectralConfig,
    /// `[spectral]` resolved against the run config.
    pub resolved: ResolvedSpectral,
    /// Regenerate D1 on every pass instead of holding it (`data.streaming`, see [`plan`]).
    pub streaming: bool,
}

/// Whether `mim spectral` streams D1, and a refusal (one line naming the field) when the
/// estimator would not fit the memory limit: D1 held needs n1·d·8 bytes; streamed, one block of
/// rows per worker; `spectral.method = "dense"` adds the d×d matrix and its eigendecomposition
/// (≈ 3·d²·8 bytes), the iterative solver its basis ([`mim_spectral::iterative_bytes`]).
/// `data.streaming = "auto"` streams when D1 would take more than half of the physical memory.
pub fn plan(valid: &ValidConfig, rs: &ResolvedSpectral) -> Result<bool, String> {
    let c = &valid.config;
    let d = c.data.d as f64;
    let d1_bytes = valid.n1 as f64 * d * 8.0;
    let ram = mim_run::streaming::physical_memory_bytes();
    let streaming = match c.data.streaming {
        Streaming::On => true,
        Streaming::Off => false,
        Streaming::Auto => ram.is_some_and(|ram| d1_bytes > 0.5 * ram),
    };
    if streaming && rs.prep.remove_linear {
        return Err("data.streaming: spectral.T = loss with stage1.remove_linear needs D1 in memory (β̂ᵀx per row); use data.streaming = \"off\" or smaller sizes".into());
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16) as f64;
    let held = if streaming {
        workers * mim_data::BLOCK_ROWS as f64 * d * 8.0 * 2.0
    } else {
        d1_bytes
    };
    let dense = if rs.method == mim_spectral::Method::Dense {
        3.0 * d * d * 8.0
    } else {
        0.0
    };
    let basis = match rs.method.resolve(c.data.d) {
        mim_spectral::Method::Iterative => mim_spectral::iterative_bytes(c.data.d, rs.k),
        _ => 0.0,
    };
    let need = held + dense + basis + valid.n1 as f64 * 8.0 * 3.0;
    let limit = MemoryLimit::default_for_machine();
    match limit.bytes {
        Some(max) if need > max => Err(format!(
            "{}: the estimator needs ≈ {} (D1 {} + d×d matrix {}) but the limit is {} ({}); {}",
            if dense > 0.0 {
                "spectral.method"
            } else {
                "data"
            },
            format_bytes(need),
            if streaming { "streamed" } else { "held" },
            format_bytes(dense),
            format_bytes(max),
            limit.source,
            if dense > 0.0 {
                "use spectral.method = \"iterative\" (matrix-free)"
            } else {
                "use data.streaming = \"on\" or smaller sizes"
            }
        )),
        _ => Ok(streaming),
    }
}

/// Loads `config` (or the defaults) and applies `sets` in order; `[spectral]` is part of the
/// run config ([`RunConfig::spectral`]), resolved here against its r, d and `[stage1]`.
pub fn load(config: Option<&Path>, sets: &[String]) -> Result<Loaded, String> {
    let valid = RunConfig::load(config, sets)
        .and_then(|c| c.validate())
        .map_err(|e| e.to_string())?;
    let c = &valid.config;
    let spectral = c.spectral.clone();
    let resolved = spectral.resolve(c.data.r, c.data.d, &c.stage1.labels())?;
    let streaming = plan(&valid, &resolved)?;
    Ok(Loaded {
        valid,
        spectral,
        resolved,
        streaming,
    })
}

/// The theory of the configured T for a single-index target: the law and T(y) (with the
/// centring of `loss:*` folded in), or why it is not available.
pub struct SingleIndexTheory {
    /// The quadrature law of (y, z²).
    pub law: Law,
    /// T applied to raw labels.
    pub t: Box<dyn Fn(f64) -> f64 + Sync>,
}

/// Builds [`SingleIndexTheory`] for `r = 1` without `remove_linear`.
pub fn single_index_theory(loaded: &Loaded, target: &Target) -> Result<SingleIndexTheory, String> {
    let c = &loaded.valid.config;
    if c.data.r != 1 {
        return Err(format!(
            "the fixed-T overlap formula is for single-index targets (r = 1); here r = {}",
            c.data.r
        ));
    }
    let pre = loaded.resolved.preprocessing;
    if loaded.resolved.prep.remove_linear {
        return Err("stage1.remove_linear makes T depend on x, outside the fixed-T formula".into());
    }
    // Breakpoints first in the centred coordinate; the shift needs E[y] from a first law.
    let link = &loaded.valid.link;
    let mut law =
        Law::single_index(link, target.scale, c.data.noise, &[]).map_err(|e| e.to_string())?;
    let prep = loaded.resolved.prep;
    let shift = match (prep.center, pre) {
        (None, _) => 0.0,
        (Some(CenterBy::Loss), Preprocessing::Loss(loss)) => law.location(&loss),
        (Some(_), _) => law.mean_y(),
    };
    if c.data.noise > 0.0 {
        let bps: Vec<f64> = pre.breakpoints().iter().map(|b| b + shift).collect();
        law =
            Law::single_index(link, target.scale, c.data.noise, &bps).map_err(|e| e.to_string())?;
    }
    Ok(SingleIndexTheory {
        law,
        t: Box::new(move |y| pre.apply(y - shift)),
    })
}

fn fmt_list(v: &[f64], prec: usize) -> String {
    v.iter()
        .map(|x| format!("{x:+.prec$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `mim spectral`.
pub fn run(args: SpectralArgs) -> ExitCode {
    let t0 = Instant::now();
    let loaded = match load(args.cfg.config.as_deref(), &args.cfg.set) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let target = match target_of(&loaded.valid) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let out = args
        .folder
        .out_dir(&format!("{}-spectral", args.cfg.stem()));
    match execute(&loaded, &target, &out, t0, args.folder.quiet) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Seconds between progress lines of the solver.
const PROGRESS_EVERY_S: f64 = 30.0;

fn execute(
    loaded: &Loaded,
    target: &Target,
    out: &Path,
    t0: Instant,
    quiet: bool,
) -> Result<(), String> {
    let c = &loaded.valid.config;
    let rs = &loaded.resolved;
    let (d, r, n1) = (c.data.d, c.data.r, loaded.valid.n1);
    let alpha = n1 as f64 / d as f64;
    let mut warnings: Vec<String> = Vec::new();
    if !quiet {
        eprintln!(
            "spectral: drawing D1 (n1 = {n1}, d = {d}) and solving ({})",
            rs.method.name()
        );
    }
    let seed = derive_seed(c.seed, Purpose::Data);
    // Streamed: labels from one pass over the rows (the rows themselves are regenerated by
    // every product of the solver); held: D1 once.
    let (d1, y) = if loaded.streaming {
        let streams = Streams {
            target,
            seed,
            chunk: chunk_rows(d, c.data.chunk_rows),
        };
        let mut y = Vec::with_capacity(n1);
        let _ = streams.for_chunks::<f64, ()>(Split::Stage1, n1, false, |_, _, _, labels| {
            y.extend_from_slice(labels);
            Ok(())
        });
        (None, y)
    } else {
        let d1 = target.sample(Split::Stage1, n1, seed);
        let y = d1.y.clone();
        (Some(d1), y)
    };
    let negative = y.iter().filter(|y| **y < 0.0).count();
    if matches!(rs.preprocessing, mim_spectral::Preprocessing::Lal) && negative > 0 {
        warnings.push(format!(
            "lal expects labels y ≥ 0 (e.g. z1^2 with data.normalize = false); {negative} of {n1} labels are negative and map to T = −10"
        ));
    }
    let rows = match &d1 {
        Some(d1) => Rows::Memory(&d1.x),
        None => Rows::Stream {
            target,
            split: Split::Stage1,
            seed,
        },
    };
    // x is only read for remove_linear, which streaming refuses (see `plan`).
    let x: &[f64] = d1.as_ref().map_or(&[], |d1| &d1.x);
    let t = spectral_labels(&rs.preprocessing, x, &y, d, rs.prep);
    let t_solve = Instant::now();
    // A progress line every 30 s of a long matrix-free solve (each pass regenerates a streamed D1).
    let last_line = std::sync::Mutex::new(Instant::now());
    let on_pass = |passes: usize| {
        if let (false, Ok(mut last)) = (quiet, last_line.lock()) {
            if last.elapsed().as_secs_f64() >= PROGRESS_EVERY_S {
                let s = t_solve.elapsed().as_secs_f64();
                eprintln!("spectral: {passes} passes over D1, {s:.0} s");
                *last = Instant::now();
            }
        }
    };
    let (k, order, shift, method) = (rs.k, rs.order, rs.shift, rs.method);
    let spectrum = spectral_estimate_observed(rows, d, &t, k, order, shift, method, &on_pass)
        .map_err(|e| e.to_string())?;
    let solve_seconds = t_solve.elapsed().as_secs_f64();
    drop(d1);
    if !spectrum.converged {
        warnings.push(format!(
            "the iterative eigen-solver stopped after {} passes over D1 without meeting its tolerance (residual {:.2e})",
            spectrum.iterations, spectrum.max_residual
        ));
    }
    let span = mim_run::tracker::span_metrics(target, &spectrum.span())?;
    let bbp = mim_run::tracker::bbp_theory(target, alpha);
    let cos = span.subspace_cos.clone();
    let cos_min = cos.last().copied().unwrap_or(0.0);
    let overlap_sq = (r == 1).then(|| {
        let dot: f64 = target
            .u_row(0)
            .iter()
            .zip(spectrum.eigenvector(0))
            .map(|(a, b)| a * b)
            .sum();
        dot * dot
    });
    // Theory (single index).
    let (theory, theory_note, ac): (Option<TheoryPoint>, Option<String>, _) =
        match single_index_theory(loaded, target) {
            Ok(th) => {
                let p = th.law.overlap(&*th.t, alpha, rs.order, rs.shift);
                let ac = alpha_c(&loaded.valid.link, 1, target.scale, c.data.noise).ok();
                (Some(p), None, ac)
            }
            Err(e) => (None, Some(e), None),
        };
    let seconds = t0.elapsed().as_secs_f64();
    let mut summary = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "status": "ok",
        "command": "spectral",
        "seed": c.seed,
        "d": d,
        "r": r,
        "link": loaded.valid.link.to_string(),
        "label_scale": target.scale,
        "noise": c.data.noise,
        "n1": n1,
        "alpha1": alpha,
        "preprocessing": rs.preprocessing.name(),
        "centered_labels": rs.prep.center.is_some(),
        "remove_linear": rs.prep.remove_linear,
        "order": rs.order.name(),
        "shift": rs.shift.name(),
        "k": rs.k,
        "method": spectrum.method.name(),
        "eigenvalues": spectrum.eigenvalues,
        "indices": spectrum.indices,
        "bulk_edge": spectrum.bulk_edge,
        "mean_t": spectrum.mean_t,
        "max_residual": spectrum.max_residual,
        "iterations": spectrum.iterations,
        "converged": spectrum.converged,
        "subspace_cos": cos,
        "subspace_cos_min": cos_min,
        "overlap_sq": overlap_sq,
        "theory_overlap_sq": theory.map(|p| p.overlap_sq),
        "theory_eigenvalue": theory.map(|p| p.eigenvalue),
        "theory_bulk_edge": theory.map(|p| p.bulk_edge),
        "theory_note": theory_note,
        "alpha_c": ac.map(|a| a.value),
        "alpha_c_error": ac.map(|a| a.error),
        "solve_seconds": solve_seconds,
        "streaming": loaded.streaming,
        "peak_rss_mib": mim_run::streaming::peak_rss_mib(),
        "seconds": seconds,
        "warnings": warnings,
    });
    // Per-direction recovery (seed 003) and, for a hierarchical link, the BBP predictions.
    let extra = [
        ("direction_projection", json!(span.direction_projection)),
        ("directions_recovered", json!(span.directions_recovered)),
        (
            "weighted_subspace_error",
            json!(span.weighted_subspace_error),
        ),
        ("oracle_excess_risk", json!(span.oracle_excess_risk)),
    ];
    for (k, v) in extra {
        summary[k] = v;
    }
    if let Some(b) = &bbp {
        if let serde_json::Value::Object(m) = json!(b) {
            summary.as_object_mut().expect("summary object").extend(m);
        }
    }
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let config_text = RunConfig {
        spectral: loaded.spectral.resolved(rs),
        ..c.clone()
    }
    .to_toml();
    let write = |file: &str, bytes: &[u8]| {
        let p = out.join(file);
        write_atomic(&p, bytes).map_err(|e| format!("writing {}: {e}", p.display()))
    };
    write("config.toml", config_text.as_bytes())?;
    let mut json_text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    json_text.push('\n');
    write("summary.json", json_text.as_bytes())?;

    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let cos_s: Vec<String> = cos.iter().map(|c| format!("{c:.3}")).collect();
    println!("run folder        {}", out.display());
    println!(
        "target            {} (d = {d}, r = {r}), n1 = {n1} (α = {alpha})",
        loaded.valid.link
    );
    println!(
        "spectral          {}, k = {}, {} ({:.2} s)",
        rs.describe(),
        rs.k,
        spectrum.method.name(),
        solve_seconds
    );
    let edge = spectrum
        .bulk_edge
        .map(|e| format!("{e:+.4}"))
        .unwrap_or_else(|| "–".into());
    println!(
        "eigenvalues       [{}] at ascending indices {:?} of {d}; bulk edge {edge}",
        fmt_list(&spectrum.eigenvalues, 4),
        spectrum.indices
    );
    if let Some(p) = theory {
        println!(
            "  theory (d → ∞)  extreme eigenvalue {:+.4}, bulk edge {:+.4}",
            p.eigenvalue, p.bulk_edge
        );
    }
    println!(
        "subspace_cos      [{}]   (min {cos_min:.4})",
        cos_s.join(", ")
    );
    if target.link.hierarchical().is_some() || r > 2 {
        print_directions(
            r,
            span.directions_recovered,
            span.weighted_subspace_error,
            span.oracle_excess_risk,
            bbp.as_ref(),
        );
    }
    if let Some(q) = overlap_sq {
        match theory {
            Some(p) => println!(
                "overlap²          {q:.4}   theory {:.4}   (α = {alpha}, d → ∞)",
                p.overlap_sq
            ),
            None => println!("overlap²          {q:.4}"),
        }
    }
    if let Some(note) = &theory_note {
        println!("theory            not available: {note}");
    }
    if let Some(a) = ac {
        if a.trivial {
            println!("α_c (optimal)     0 (E[z|y] ≠ 0: first-order signal)");
        } else {
            println!("α_c (optimal)     {:.4} (± {:.1e})", a.value, a.error);
        }
    }
    println!("seed              {}, {seconds:.2} s total", c.seed);
    Ok(())
}

/// The per-direction lines of `mim spectral` and `mim train` (seed 003): recovered count and
/// weighted subspace error next to the BBP values, and the oracle readout where there is one.
pub(crate) fn print_directions(
    r: usize,
    recovered: usize,
    error: f64,
    oracle: Option<f64>,
    bbp: Option<&mim_run::tracker::BbpTheory>,
) {
    let th = bbp
        .map(|b| {
            format!(
                "   theory {} and {:.4}",
                b.theory_directions_recovered, b.theory_weighted_subspace_error
            )
        })
        .unwrap_or_default();
    println!("directions        {recovered} of {r} with π_k > 1/2, weighted subspace error {error:.4}{th}");
    if let Some(o) = oracle {
        println!("oracle readout    excess risk {o:.4} (best quadratic readout on the span)");
    }
}
