//! `mim results`: list, export and merge results databases.

use clap::{Args, Subcommand};
use mim_sweep::export::{write_csv, write_jsonl};
use mim_sweep::{Db, SweepError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `mim results`.
#[derive(Args)]
pub struct ResultsArgs {
    #[command(subcommand)]
    command: ResultsCommand,
}

#[derive(Subcommand)]
enum ResultsCommand {
    /// One line per sweep: points ok / failed and the axes seen.
    Ls {
        /// Results database.
        db: PathBuf,
    },
    /// Export one row per point (key, status, axis values, main metrics), or per step.
    Export {
        /// Results database.
        db: PathBuf,
        /// Write CSV here.
        #[arg(long, conflicts_with = "jsonl", required_unless_present = "jsonl")]
        csv: Option<PathBuf>,
        /// Write JSON lines here.
        #[arg(long)]
        jsonl: Option<PathBuf>,
        /// One row per stage-1 step instead of per point.
        #[arg(long)]
        steps: bool,
    },
    /// Union of databases by key into OUT (created if needed); identical keys appear once.
    Merge {
        /// The database written.
        out: PathBuf,
        /// The databases read.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

fn fail(e: &SweepError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(e.exit_code())
}

fn ls(db: &Path) -> Result<(), SweepError> {
    let db = Db::open_read_only(db)?;
    let list = db.list()?;
    if list.is_empty() {
        println!("{}: no points", db.path().display());
    }
    for l in list {
        let axes: Vec<String> = l
            .axes
            .iter()
            .map(|(k, vs)| {
                if vs.len() <= 8 {
                    format!("{k} [{}]", vs.join(", "))
                } else {
                    format!("{k} ({} values)", vs.len())
                }
            })
            .collect();
        println!(
            "{}: {} points ({} ok, {} failed); axes: {}",
            l.sweep,
            l.ok + l.failed,
            l.ok,
            l.failed,
            if axes.is_empty() {
                "none".into()
            } else {
                axes.join("; ")
            }
        );
    }
    Ok(())
}

fn export(
    db: &Path,
    csv: Option<&Path>,
    jsonl: Option<&Path>,
    steps: bool,
) -> Result<(), SweepError> {
    let db = Db::open_read_only(db)?;
    let rows = if steps {
        db.export_steps()?
    } else {
        db.export_points()?
    };
    let (path, is_csv) = match (csv, jsonl) {
        (Some(p), _) => (p, true),
        (None, Some(p)) => (p, false),
        (None, None) => return Err(SweepError::Input("give --csv FILE or --jsonl FILE".into())),
    };
    let mut buf = Vec::new();
    let written = if is_csv {
        write_csv(&rows, &mut buf)
    } else {
        write_jsonl(&rows, &mut buf)
    };
    written
        .and_then(|_| mim_run::results::write_atomic(path, &buf))
        .map_err(|e| SweepError::Input(format!("{}: cannot write: {e}", path.display())))?;
    eprintln!("{} rows written to {}", rows.len(), path.display());
    Ok(())
}

fn merge(out: &Path, inputs: &[PathBuf]) -> Result<(), SweepError> {
    let mut db = Db::open(out)?;
    for input in inputs {
        let n = db.merge_from(input)?;
        eprintln!("{}: {n} points taken", input.display());
    }
    println!("{}: {} points", out.display(), db.count()?);
    Ok(())
}

/// Runs `mim results`.
pub fn run(args: ResultsArgs) -> ExitCode {
    let r = match &args.command {
        ResultsCommand::Ls { db } => ls(db),
        ResultsCommand::Export {
            db,
            csv,
            jsonl,
            steps,
        } => export(db, csv.as_deref(), jsonl.as_deref(), *steps),
        ResultsCommand::Merge { out, inputs } => merge(out, inputs),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}
