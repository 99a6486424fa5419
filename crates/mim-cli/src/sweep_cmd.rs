//! `mim sweep`: run every point of a sweep file that the results database does not hold yet.

use clap::Args;
use mim_sweep::{Shard, SweepError, SweepOptions, SweepSpec};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `mim sweep`.
#[derive(Args)]
pub struct SweepArgs {
    /// The sweep file (TOML: base, `[set]`, `[axes]`, `[[zip]]`).
    file: PathBuf,
    /// Points run at the same time (default: the number of cores); each gets threads = 1 when > 1.
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Results database (default `runs/<sweep name>/results.sqlite`).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Folder of the per-point run folders (default `runs/<sweep name>/points`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run a deterministic part of the points: `i/N` (1 ≤ i ≤ N), or `slurm` (from
    /// SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT).
    #[arg(long, value_name = "i/N|slurm")]
    shard: Option<String>,
    /// Print the points (key and axis values) and exit without running anything.
    #[arg(long)]
    dry_run: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    /// Seconds a database write waits while another process holds the lock (default 30).
    #[arg(long, value_name = "SECONDS")]
    lock_timeout: Option<f64>,
}

/// `--lock-timeout` as a duration: a finite number of seconds in [0, 10⁶].
fn lock_timeout(seconds: Option<f64>) -> Result<std::time::Duration, SweepError> {
    match seconds {
        None => Ok(mim_sweep::BUSY_TIMEOUT),
        Some(s) if s.is_finite() && (0.0..=1e6).contains(&s) => {
            Ok(std::time::Duration::from_secs_f64(s))
        }
        Some(s) => Err(SweepError::Input(format!(
            "--lock-timeout: must be a number of seconds in [0, 1e6], got {s}"
        ))),
    }
}

fn fail(e: &SweepError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(e.exit_code())
}

/// Runs `mim sweep`.
pub fn run(args: SweepArgs) -> ExitCode {
    let spec = match SweepSpec::load(&args.file) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let points = match spec.points() {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let shard = match args.shard.as_deref().map(Shard::parse).transpose() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let lock_timeout = match lock_timeout(args.lock_timeout) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    if args.dry_run {
        let shown = match shard {
            Some(s) => s.select(&points),
            None => points,
        };
        for p in &shown {
            println!("{} {}", p.key, p.params_text());
        }
        return ExitCode::SUCCESS;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot locate the mim executable: {e}");
            return ExitCode::from(1);
        }
    };
    let mut opts = SweepOptions::defaults(&spec.name, exe);
    if let Some(j) = args.jobs {
        opts.jobs = j;
    }
    if let Some(db) = args.db {
        opts.db = db;
    }
    if let Some(out) = args.out {
        opts.out = out;
    }
    opts.shard = shard;
    opts.quiet = args.quiet;
    opts.lock_timeout = lock_timeout;
    let outcome = match mim_sweep::run_points(&spec.name, &points, &opts) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    println!(
        "sweep {}: {} points{}, {} already stored, {} ran: {} ok, {} failed; database {}",
        spec.name,
        outcome.total,
        shard
            .map(|s| format!(" ({} in shard {}/{})", outcome.selected, s.index, s.count))
            .unwrap_or_default(),
        outcome.skipped,
        outcome.ran(),
        outcome.ok,
        outcome.failed.len(),
        opts.db.display()
    );
    if outcome.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for (key, err) in &outcome.failed {
            eprintln!("failed: {key}: {err}");
        }
        eprintln!(
            "error: {} of {} points failed (logs in {}/<key>/log.txt)",
            outcome.failed.len(),
            outcome.ran(),
            opts.out.display()
        );
        ExitCode::from(1)
    }
}
