//! The backend-agnostic runner behind `mim train`: a validated [`RunConfig`] flows one way
//! through data (`mim-data`), model (`mim-model`), schedule (`mim-train`) and metrics
//! (`mim-metrics`) into a run folder:
//!
//! - `config.toml`: the config with every default filled in (re-runnable as is);
//! - `metrics.jsonl`: one JSON object per stage-1 step, then `stage2` and `final`;
//! - `summary.json`: final metrics, timings, backend, dtype, seed, version;
//! - `model.bpk`: the trained network (Burn's Burnpack store).
#![warn(missing_docs)]

pub mod backend;
pub mod batches;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod limits;
pub mod model_config;
mod one_step;
pub mod progress;
pub mod results;
pub mod run;
pub mod schedule_run;
pub mod seeds;
pub mod spectral_init;
pub mod streaming;
pub mod tracker;
pub mod twin;

pub use backend::Backend;
pub use config::{ConfigError, Method, OneStepVariant, RunConfig, ValidConfig};
pub use run::{target_of, train, train_network, RunError, RunOptions, Summary};
