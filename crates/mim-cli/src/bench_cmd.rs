//! `mim bench`: stage-1 step, stage-2 solve, data generation and SGEMM timings.

use clap::Args;
use mim_run::bench::{preset, run_bench};
use mim_run::results::write_json_atomic;
use mim_run::Backend;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `mim bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Size preset: tiny (CI smoke test), small (d = 100), paper (d = 100 and 1000),
    /// gpu (d = 4096, n = 65 536, m = 1024).
    #[arg(long, default_value = "small")]
    sizes: String,
    /// Timed repetitions per item (median reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Backend: flex, ndarray or wgpu.
    #[arg(long, default_value = "flex")]
    backend: String,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The device's FP32 peak in GFLOP/s (e.g. from the GPU's data sheet): adds each item's
    /// fraction of it (the ÷peak column).
    #[arg(long)]
    peak_gflops: Option<f64>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `mim bench`.
pub fn run(args: BenchArgs) -> ExitCode {
    if args.reps == 0 {
        eprintln!("error: --reps 0: need at least one repetition");
        return ExitCode::from(2);
    }
    if let Some(p) = args.peak_gflops.filter(|p| !(p.is_finite() && *p > 0.0)) {
        eprintln!("error: --peak-gflops {p}: expected a positive number of GFLOP/s");
        return ExitCode::from(2);
    }
    let parsed = preset(&args.sizes).and_then(|s| args.backend.parse::<Backend>().map(|b| (s, b)));
    let (sizes, backend) = match parsed {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match run_bench(backend, &sizes, args.reps, args.threads) {
        Ok(r) => match args.peak_gflops {
            Some(peak) => r.with_peak(peak),
            None => r,
        },
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "mim {} bench: backend {}, {} threads, SGEMM (f32 2048³, faer) {:.1} GFLOP/s",
        report.version, report.backend, report.threads, report.sgemm_gflops
    );
    if let Some(peak) = report.peak_gflops {
        println!("stated FP32 peak of the device: {peak:.1} GFLOP/s");
    }
    let two = |v: Option<f64>| v.map(|r| format!("{r:.2}")).unwrap_or_default();
    println!(
        "{:<52} {:>10} {:>10} {:>8} {:>8} {:>8}",
        "item", "median ms", "GFLOP/s", "÷SGEMM", "paired", "÷peak"
    );
    for t in &report.timings {
        let g = t.gflops.map(|g| format!("{g:.1}")).unwrap_or_default();
        println!(
            "{:<52} {:>10.2} {:>10} {:>8} {:>8} {:>8}",
            t.name,
            t.median_ms,
            g,
            two(t.ratio_to_sgemm),
            two(t.paired_ratio_to_sgemm),
            two(t.ratio_to_peak)
        );
    }
    println!(
        "÷SGEMM: median GFLOP/s over the median SGEMM sample; paired: median over repetitions of \
         each one's GFLOP/s over the SGEMM samples just before and after it"
    );
    for t in &report.timings {
        if let Some(share) = t.share_of_step {
            println!(
                "{}: {:.1} % of the rest of the step (both timed in the same runs)",
                t.name,
                100.0 * share
            );
        }
    }
    if let Some(path) = args.json {
        if let Err(e) = write_json_atomic(&path, &report) {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
