//! `mim theory`: the d → ∞ spectral theory for the configured target and preprocessing —
//! the fixed-T overlap² curve over α (single index) and the optimal weak-recovery threshold
//! α_c (paper §8), by deterministic quadrature.

use crate::run_args::ConfigArgs;
use crate::spectral_cmd::{load, single_index_theory, target_of};
use clap::Args;
use mim_run::results::write_atomic;
use mim_spectral::theory::alpha_c;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `mim theory`.
#[derive(Args)]
pub struct TheoryArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Sample ratios α = n/d, comma-separated.
    #[arg(long, default_value = "0.25,0.5,1,2,4")]
    alphas: String,
    /// Also write the table as CSV (`alpha,overlap_sq_theory,alpha_c`).
    #[arg(long)]
    csv: Option<PathBuf>,
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
    let prepared = parse_alphas(&args.alphas).and_then(|alphas| {
        let loaded = load(args.cfg.config.as_deref(), &args.cfg.set)?;
        let target = target_of(&loaded.valid)?;
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
    let mut csv = String::from("alpha,overlap_sq_theory,alpha_c\n");
    match single_index_theory(&loaded, &target) {
        Ok(th) => {
            println!(
                "spectral          T = {} on {} labels, order = {}",
                rs.preprocessing.name(),
                if rs.prep.center.is_some() {
                    "centred"
                } else {
                    "raw"
                },
                rs.order.name()
            );
            match th.law.spectral_threshold(&*th.t, rs.order) {
                Some(a) => println!("α_T (this T)      {a:.4}   (overlap² > 0 above it)"),
                None => println!("α_T (this T)      none below α = 10⁴ (no outlier at this end)"),
            }
            println!(
                "{:>10} {:>12} {:>14} {:>12} {:>8}",
                "alpha", "overlap²", "eigenvalue", "bulk edge", "end"
            );
            for &a in &alphas {
                let p = th.law.overlap(&*th.t, a, rs.order);
                println!(
                    "{:>10} {:>12.4} {:>+14.4} {:>+12.4} {:>8}",
                    a,
                    p.overlap_sq,
                    p.eigenvalue,
                    p.bulk_edge,
                    p.end.name()
                );
                let _ = writeln!(csv, "{a},{},{}", p.overlap_sq, csv_num(ac_value));
            }
        }
        Err(e) => {
            println!("overlap² curve    not available: {e}");
            for &a in &alphas {
                let _ = writeln!(csv, "{a},,{}", csv_num(ac_value));
            }
        }
    }
    if let Some(path) = &args.csv {
        if let Err(e) = write_atomic(path, csv.as_bytes()) {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::from(1);
        }
        println!("csv               {}", path.display());
    }
    ExitCode::SUCCESS
}
