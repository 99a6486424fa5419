//! Options shared by the commands that start from a run config (`train`, `spectral`, `theory`).

use clap::Args;
use std::path::PathBuf;

/// `--config FILE` and `--set KEY=VALUE`...
#[derive(Args)]
pub struct ConfigArgs {
    /// TOML config (every missing key takes its default; without it, all defaults). Its
    /// `[spectral]` section configures the spectral estimator.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Override any key by its dotted path, e.g. `--set stage1.steps=8` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// The config file's stem (`default` without a file): names the default output folder.
    pub fn stem(&self) -> String {
        self.config
            .as_deref()
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "default".into())
    }
}

/// `--out DIR` and `--quiet`.
#[derive(Args)]
pub struct FolderArgs {
    /// Run folder (default `runs/<config stem>`; `runs/<config stem>-spectral` for `spectral`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress output (the summary is still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

impl FolderArgs {
    /// `--out`, or `runs/<name>`.
    pub fn out_dir(&self, name: &str) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(name))
    }
}
