//! `mim theory`: the d → ∞ spectral theory for the configured target and preprocessing —
//! the fixed-T overlap² curve over α (single index) and the optimal weak-recovery threshold
//! α_c (paper §8), by deterministic quadrature.

use crate::run_args::ConfigArgs;
use crate::spectral_cmd::{load, single_index_theory};
use clap::Args;
use mim_run::results::write_atomic;
use mim_run::target_of;
use mim_spectral::theory::alpha_c;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `mim theory`.
#[derive(Args)]
pub struct TheoryArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Sample ratios α = n/d, comma-separated (default 0.25,0.5,1,2,4; for a hierarchical
    /// link 1,2,5,10,20,50,100,200,500,1000).
    #[arg(long)]
    alphas: Option<String>,
    /// Also write the table as CSV (`alpha,overlap_sq_theory,alpha_c`; for a hierarchical link
    /// `alpha,weighted_subspace_error_theory,directions_recovered_theory,detectable,pi_1,…,pi_K`).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Also write everything printed as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The BBP table of a hierarchical link (seed 003): α_k, and E_th(α), k★(α), the recovered
/// count and π_k(α) at each α.
fn hierarchical_theory(
    h: &mim_data::Hierarchical,
    target: &mim_data::Target,
    alphas: &[f64],
    csv: &mut String,
) -> serde_json::Value {
    let b = mim_data::Bbp::new(h, target.scale, target.noise);
    let slope = mim_data::Bbp::predicted_slope(h.gamma);
    let shown: Vec<String> = b
        .alpha_k
        .iter()
        .take(12)
        .enumerate()
        .map(|(i, a)| format!("α_{} = {a:.3}", i + 1))
        .collect();
    println!(
        "BBP thresholds    α_k = E[y²]/(μ₂² a_k²), μ₂ = {:.4}: {}{}",
        h.mu2(),
        shown.join(", "),
        if h.k > 12 {
            format!(", …, α_{} = {:.3}", h.k, b.alpha_k[h.k - 1])
        } else {
            String::new()
        }
    );
    match slope {
        Some(s) => println!(
            "power law         E_th ∝ α^{s:.4} for 1 ≪ k★(α) ≪ K (−(1 − 1/(2γ)), γ = {}), ∝ 1/α above α_K",
            h.gamma
        ),
        None => println!(
            "power law         none for γ = {} ≤ 1/2: the tail mass Σ_{{k>k★}} a_k² dominates",
            h.gamma
        ),
    }
    println!(
        "{:>10} {:>10} {:>10} {:>10}   π_1, π_2, π_3, …",
        "alpha", "E_th", "k★", "π_k > ½"
    );
    let _ = write!(
        csv,
        "alpha,weighted_subspace_error_theory,directions_recovered_theory,detectable"
    );
    for k in 1..=h.k {
        let _ = write!(csv, ",pi_{k}");
    }
    csv.push('\n');
    let mut rows = Vec::new();
    for &a in alphas {
        let pi = b.projection(a);
        let e = b.subspace_error(a);
        let head: Vec<String> = pi.iter().take(6).map(|p| format!("{p:.3}")).collect();
        println!(
            "{a:>10} {e:>10.4} {:>10} {:>10}   {}",
            b.detectable(a),
            b.recovered(a),
            head.join(", ")
        );
        let _ = write!(csv, "{a},{e},{},{}", b.recovered(a), b.detectable(a));
        for p in &pi {
            let _ = write!(csv, ",{p}");
        }
        csv.push('\n');
        rows.push(serde_json::json!({
            "alpha": a, "weighted_subspace_error": e, "detectable": b.detectable(a),
            "directions_recovered": b.recovered(a), "direction_projection": pi,
        }));
    }
    serde_json::json!({
        "mu2": h.mu2(), "gamma": h.gamma, "K": h.k,
        "bbp_alpha_k": b.alpha_k, "predicted_slope": slope, "table": rows,
    })
}

fn parse_alphas(s: &str) -> Result<Vec<f64>, String> {
    let v: Result<Vec<f64>, String> = s
        .split(',')
        .map(|a| {
            let a = a.trim();
            match a.parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
                _ => Err(format!(
                    "--alphas {s:?}: `{a}` is not a positive number (expected e.g. 0.25,0.5,1,2,4)"
                )),
            }
        })
        .collect();
    v
}

fn csv_num(x: Option<f64>) -> String {
    x.map(|v| format!("{v}")).unwrap_or_default()
}

/// Runs `mim theory`.
pub fn run(args: TheoryArgs) -> ExitCode {
    let prepared = load(args.cfg.config.as_deref(), &args.cfg.set).and_then(|loaded| {
        let target = target_of(&loaded.valid)?;
        let default = if target.link.hierarchical().is_some() {
            "1,2,5,10,20,50,100,200,500,1000"
        } else {
            "0.25,0.5,1,2,4"
        };
        let alphas = parse_alphas(args.alphas.as_deref().unwrap_or(default))?;
        Ok((alphas, loaded, target))
    });
    let (alphas, loaded, target) = match prepared {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let c = &loaded.valid.config;
    let rs = &loaded.resolved;
    let r = c.data.r;
    println!(
        "target            {} (r = {r}, label scale {:.4}, noise {})",
        loaded.valid.link, target.scale, c.data.noise
    );
    let mut json = serde_json::json!({
        "link": loaded.valid.link.to_string(), "r": r, "label_scale": target.scale,
        "noise": c.data.noise,
    });
    if let Some(h) = target.link.hierarchical() {
        let mut csv = String::new();
        json["hierarchical"] = hierarchical_theory(h, &target, &alphas, &mut csv);
        return finish(&args, &csv, &json);
    }
    if r == 1 {
        match mim_spectral::exponents::exponents(&loaded.valid.link, target.scale, c.data.noise) {
            Ok(e) => {
                let show = |cs: &[mim_spectral::exponents::Coefficient]| -> String {
                    cs.iter()
                        .map(|c| format!("{:+.4}±{:.0e}", c.value, c.se))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let name = |k: Option<usize>| {
                    k.map_or(format!("> {}", mim_spectral::exponents::MAX_DEGREE), |k| {
                        k.to_string()
                    })
                };
                println!(
                    "k* (information)  {}   c_k = E[y h_k(z)]/sd(y), k = 1..8: {}",
                    name(e.information_exponent),
                    show(&e.hermite_coefficients)
                );
                println!(
                    "s* (generative)   {}   λ_k² = E[E[h_k(z)|y]²] ({}, cross-fitted): {}",
                    name(e.generative_exponent),
                    e.label_grouping,
                    show(&e.generative_coefficients)
                );
                if let serde_json::Value::Object(m) = serde_json::json!(e) {
                    json.as_object_mut().expect("json object").extend(m);
                }
            }
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
        }
    }
    // α_c (variational formula; r ≤ 3 without noise, r ≤ 2 with).
    let ac = alpha_c(&loaded.valid.link, r, target.scale, c.data.noise);
    match &ac {
        Ok(a) if a.trivial => println!(
            "α_c (optimal)     0: E[z|y] ≠ 0, first-order directions are learnable at any α > 0"
        ),
        Ok(a) => println!(
            "α_c (optimal)     {:.4} ± {:.1e}   (1/ρ(E_y[G⊗G]), G = E[zzᵀ − I | y]; quadrature, conditional expectations binned in y)",
            a.value, a.error
        ),
        Err(e) => println!("α_c (optimal)     not available: {e}"),
    }
    let ac_value = ac.as_ref().ok().map(|a| a.value);
    json["alpha_c"] = serde_json::json!(ac_value);
    json["alpha_c_error"] = serde_json::json!(ac.as_ref().ok().map(|a| a.error));
    let mut curve = Vec::new();
    let mut csv = String::from("alpha,overlap_sq_theory,alpha_c\n");
    match single_index_theory(&loaded, &target) {
        Ok(th) => {
            println!("spectral          {}", rs.describe());
            match th.law.spectral_threshold(&*th.t, rs.order, rs.shift) {
                Some(a) => println!("α_T (this T)      {a:.4}   (overlap² > 0 above it)"),
                None => println!("α_T (this T)      none below α = 10⁴ (no outlier at this end)"),
            }
            println!(
                "{:>10} {:>12} {:>14} {:>12} {:>8}",
                "alpha", "overlap²", "eigenvalue", "bulk edge", "end"
            );
            for &a in &alphas {
                let p = th.law.overlap(&*th.t, a, rs.order, rs.shift);
                println!(
                    "{:>10} {:>12.4} {:>+14.4} {:>+12.4} {:>8}",
                    a,
                    p.overlap_sq,
                    p.eigenvalue,
                    p.bulk_edge,
                    p.end.name()
                );
                let _ = writeln!(csv, "{a},{},{}", p.overlap_sq, csv_num(ac_value));
                curve.push(serde_json::json!({
                    "alpha": a, "overlap_sq": p.overlap_sq, "eigenvalue": p.eigenvalue,
                    "bulk_edge": p.bulk_edge,
                }));
            }
            json["overlap_sq_curve"] = serde_json::json!(curve);
        }
        Err(e) => {
            println!("overlap² curve    not available: {e}");
            for &a in &alphas {
                let _ = writeln!(csv, "{a},,{}", csv_num(ac_value));
            }
        }
    }
    finish(&args, &csv, &json)
}

/// Writes the CSV and JSON files asked for.
fn finish(args: &TheoryArgs, csv: &str, json: &serde_json::Value) -> ExitCode {
    if let Some(path) = &args.csv {
        if let Err(e) = write_atomic(path, csv.as_bytes()) {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::from(1);
        }
        println!("csv               {}", path.display());
    }
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(json).unwrap_or_default();
        text.push('\n');
        if let Err(e) = write_atomic(path, text.as_bytes()) {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::from(1);
        }
        println!("json              {}", path.display());
    }
    ExitCode::SUCCESS
}
