//! Resumable sweeps over `mim train` runs and their SQLite results database.
//!
//! - [`spec`]: sweep files (base config + `[set]` + `[axes]` + `[[zip]]`) expanded into
//!   validated points, each keyed by a hash of its resolved config;
//! - [`runner`]: runs the points not yet stored as child `mim train` processes, `jobs` at a
//!   time, optionally one deterministic shard of them;
//! - [`db`]: the results database (points, per-step records, schema version; WAL, one
//!   transaction per point), listing, export and merge;
//! - [`export`]: CSV and JSON-lines writers.
#![warn(missing_docs)]

pub mod db;
pub mod export;
pub mod runner;
pub mod spec;

pub use db::{Db, PointRecord, SweepListing, BUSY_TIMEOUT, SCHEMA_VERSION};
pub use runner::{default_jobs, run_points, run_sweep, SweepOptions, SweepOutcome};
pub use spec::{config_key, Axis, Point, Shard, SweepSpec};

/// Why a sweep or a database command failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SweepError {
    /// Bad input: sweep file, point config, option or database path (exit code 2).
    #[error("{0}")]
    Input(String),
    /// A failure while running (exit code 1).
    #[error("{0}")]
    Runtime(String),
}

impl SweepError {
    /// The process exit code: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            SweepError::Input(_) => 2,
            SweepError::Runtime(_) => 1,
        }
    }
}
