//! `mim`: train the layer-wise algorithm for multi-index models from a TOML config.
//!
//! ```text
//! mim train [--config FILE] [--backend flex|ndarray|wgpu] [--set key=value]... [--out DIR] [--quiet]
//!           [--max-memory SIZE]
//! mim train --resume DIR [--quiet] [--max-memory SIZE]
//! ```
//! Exit codes: 0 success; 2 invalid config or usage (one line naming the field); 1 runtime
//! failure (divergence, I/O).

mod bench_cmd;
mod plot_cmd;
mod report_cmd;
mod results_cmd;
mod run_args;
mod spectral_cmd;
mod sweep_cmd;
mod theory_cmd;

use clap::{Parser, Subcommand};
use mim_run::{RunConfig, RunError, RunOptions, Summary};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mim",
    version,
    about = "Feature learning in multi-index models: layer-wise training of two-layer networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every point of a sweep file not yet in its results database (resumable).
    Sweep(sweep_cmd::SweepArgs),
    /// Inspect, export and merge results databases.
    Results(results_cmd::ResultsArgs),
    /// Time stage-1 steps (each gradient path), the stage-2 solve, data generation and SGEMM.
    Bench(bench_cmd::BenchArgs),
    /// Draw a figure (SVG + PNG) from a results database or from run folders' metrics.jsonl.
    Plot(Box<plot_cmd::PlotArgs>),
    /// Run the sweeps of a report file, draw its figures, check its claims: one HTML page.
    Report(report_cmd::ReportArgs),
    /// Spectral estimator: eigenvectors of Σ̂_T = (1/n1) Σ T(y_i)(x_i x_iᵀ − I) on D1, with the theory value.
    Spectral(spectral_cmd::SpectralArgs),
    /// Spectral theory (d → ∞): fixed-T overlap² over α and the optimal threshold α_c.
    Theory(theory_cmd::TheoryArgs),
    /// Train one run: symmetric init, stage 1 (first layer), stage 2 (readout), metrics.
    Train {
        #[command(flatten)]
        cfg: run_args::ConfigArgs,
        /// Compute backend (overrides `backend` in the config).
        #[arg(long, value_name = "flex|ndarray|wgpu")]
        backend: Option<String>,
        #[command(flatten)]
        folder: run_args::FolderArgs,
        /// Continue the run in DIR from its last checkpoint (reads DIR/config.toml).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "set", "out", "backend"])]
        resume: Option<PathBuf>,
        /// Refuse runs whose estimated memory exceeds this (e.g. 8GiB, 500MiB; default 80% of RAM).
        #[arg(long, value_name = "SIZE")]
        max_memory: Option<String>,
    },
}

fn print_summary(s: &Summary, out: &std::path::Path) {
    let cos: Vec<String> = s.w.subspace_cos.iter().map(|c| format!("{c:.3}")).collect();
    println!("run folder        {}", out.display());
    println!(
        "target            {} (d = {}, r = {}), n1 = {}, n2 = {}, m = {}",
        s.link, s.d, s.r, s.n1, s.n2, s.width
    );
    if s.schedule.is_empty() {
        println!(
            "{:<17} T1 = {}, η1 = {}, β1 = {} ({:.2} s)",
            s.method, s.steps, s.lr, s.weight_decay, s.stage1_seconds
        );
    }
    for st in &s.schedule {
        let result = match (st.ridge_lambda, st.loss) {
            (Some(l), _) => format!("λ = {l:.3e}"),
            (None, Some(loss)) => format!("{} steps, loss {loss:.4}", st.steps),
            (None, None) => format!("{} steps", st.steps),
        };
        println!(
            "{:<17} {} on {} ({}): {result} ({:.2} s)",
            st.name,
            st.kind,
            st.train.join(", "),
            st.data,
            st.seconds
        );
    }
    println!(
        "alignment_mean    {:.4}   (median {:.4}, frac > 0.9: {:.3})",
        s.w.alignment_mean, s.w.alignment_median, s.w.frac_aligned_0_9
    );
    println!(
        "subspace_cos      [{}]   (min {:.4})",
        cos.join(", "),
        s.w.subspace_cos_min
    );
    if s.bbp.is_some() || s.r > 2 {
        spectral_cmd::print_directions(
            s.r,
            s.w.directions_recovered,
            s.w.weighted_subspace_error,
            s.w.oracle_excess_risk,
            s.bbp.as_ref(),
        );
    }
    if let Some(t) = &s.twin {
        println!(
            "spectral twin     largest angle {:.2}° to the top-{} eigenvectors of Σ̂_T ({:.2}° to the {} the steps amplify)",
            t.twin_angle_deg, t.twin_k, t.twin_angle_amplified_deg, t.twin_k
        );
    }
    if let Some(c) = s.power_iteration_cos {
        println!("power_iter_cos    {c:.4}");
    }
    for (feature, r2) in &s.feature_r2 {
        let r2: Vec<String> = r2.iter().map(|v| format!("{v:.3}")).collect();
        println!("R²({feature} | h_l)      [{}]", r2.join(", "));
    }
    if let (Some(lambda), true) = (s.ridge_lambda, s.schedule.is_empty()) {
        println!(
            "stage 2           λ = {lambda:.3e} ({:.2} s)",
            s.stage2_seconds
        );
    }
    println!("train_mse         {:.4}", s.train_mse);
    println!("test_mse          {:.4}", s.test_mse);
    println!(
        "backend           {} / {}, seed {}, {:.2} s total",
        s.backend, s.dtype, s.seed, s.total_seconds
    );
}

/// Help and version (and help for a missing subcommand) are printed by clap; a usage error
/// (unknown option, a value that does not parse) is one line on stderr, exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        e.exit();
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("error: bad command line");
    eprintln!("{first} (see --help)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match cli.command {
        Command::Bench(args) => bench_cmd::run(args),
        Command::Plot(args) => plot_cmd::run(*args),
        Command::Report(args) => report_cmd::run(args),
        Command::Sweep(args) => sweep_cmd::run(args),
        Command::Results(args) => results_cmd::run(args),
        Command::Spectral(args) => spectral_cmd::run(args),
        Command::Theory(args) => theory_cmd::run(args),
        Command::Train {
            cfg,
            backend,
            folder,
            resume,
            max_memory,
        } => {
            let mut set = cfg.set.clone();
            if let Some(b) = backend {
                // Checked with the config, so the error is the same one-line message.
                set.push(format!("backend={}", toml::Value::String(b)));
            }
            let config_path = match &resume {
                Some(dir) => Some(dir.join("config.toml")),
                None => cfg.config.clone(),
            };
            let valid = match RunConfig::load(config_path.as_deref(), &set)
                .and_then(|c| c.validate())
                .and_then(|v| {
                    let limit = mim_run::limits::MemoryLimit::from_option(max_memory.as_deref())?;
                    mim_run::limits::check_memory(&v, &limit).map(|_| v)
                }) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let out_dir = resume
                .clone()
                .unwrap_or_else(|| folder.out_dir(&cfg.stem()));
            let opts = RunOptions {
                out_dir: out_dir.clone(),
                quiet: folder.quiet,
            };
            let result = match resume {
                Some(_) => mim_run::run::resume(&valid, &opts),
                None => mim_run::train(&valid, &opts),
            };
            match result {
                Ok(summary) => {
                    print_summary(&summary, &out_dir);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    let code = e.exit_code();
                    let prefix = if matches!(e, RunError::Train(_)) {
                        "error: training failed: "
                    } else {
                        "error: "
                    };
                    eprintln!("{prefix}{e}");
                    ExitCode::from(code as u8)
                }
            }
        }
    }
}
