//! Checkpoints and resume (`mim train --resume DIR`).
//!
//! `DIR/checkpoints/` holds the model as a Burnpack file (`stage1-000004.bpk`,
//! `stage1_done-000008.bpk`, `stage2_done-000008.bpk`) and `state.json`: the phase, the stage-1
//! steps done, the elapsed times, the `metrics.jsonl` lines written so far and the numbers the
//! rest of the run needs (power-iteration cosine, λ, train MSE). Checkpoints are written after
//! stage 1, after stage 2 and every `checkpoint.every` stage-1 steps. Each file is written
//! atomically (temporary file, fsync, rename); the model file is written before the state that
//! names it, and older model files are removed only after that, so a kill at any moment leaves
//! a consistent pair.
//!
//! A resumed run loads the model, truncates `metrics.jsonl` to the recorded lines and continues
//! from the recorded step; every stage-1 step depends only on W (and the data, regenerated from
//! the seed), so on a CPU backend at a fixed thread count the result equals the uninterrupted
//! run bit for bit (timings aside). The power-iteration metric is restored by replaying its
//! iterates from W(0), which is deterministic. A `[[schedule]]` run checkpoints after every
//! stage (phase `stage`; a kill inside a stage reruns that stage). Runs with streamed data and
//! the `joint` method write no checkpoints; resuming them starts them again.

use crate::results::{tmp_path, write_json_atomic};
use crate::run::RunError;
use crate::tracker::{Stage1Record, Stage1Tracker};
use burn::module::Param;
use burn::store::{BurnpackStore, ModuleSnapshot};
use mim_model::TwoLayer;
use mim_train::{Observer, Stage1State, TrainError};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The checkpoint folder inside a run folder.
pub const CHECKPOINT_DIR: &str = "checkpoints";
/// The state file inside [`CHECKPOINT_DIR`].
pub const STATE_FILE: &str = "state.json";
/// Version of the state file format.
pub const STATE_FORMAT: u32 = 1;

/// How far a checkpointed run got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Inside stage 1: `step` steps done, the model holds W(step) (before the final rescale).
    Stage1,
    /// Stage 1 finished (the model is the stage-1 output).
    Stage1Done,
    /// Stage 2 finished (the model is the trained network).
    Stage2Done,
    /// A `[[schedule]]` run: `step` stages finished (the model is their output).
    Stage,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Stage1 => "stage1",
            Phase::Stage1Done => "stage1_done",
            Phase::Stage2Done => "stage2_done",
            Phase::Stage => "stage",
        }
    }
}

/// `checkpoints/state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// How far the run got.
    pub phase: Phase,
    /// Stage-1 steps done.
    pub step: usize,
    /// The model file in the checkpoint folder.
    pub model: String,
    /// The resolved config (`config.toml`) the checkpoint belongs to.
    pub config: String,
    /// Stage-1 wall time so far.
    pub stage1_seconds: f64,
    /// Stage-2 wall time (0 before stage 2).
    pub stage2_seconds: f64,
    /// Wall time of the whole run so far.
    pub total_seconds: f64,
    /// The lines of `metrics.jsonl` written up to the checkpoint.
    pub records: Vec<String>,
    /// Power-iteration cosine after the last stage-1 step (phases after stage 1).
    pub power_iteration_cos: Option<f64>,
    /// λ of the readout (phase `stage2_done`).
    pub ridge_lambda: Option<f64>,
    /// Normalised MSE on D2 (phase `stage2_done`; the last ridge stage's data for phase `stage`).
    pub train_mse: Option<f64>,
    /// Phase `stage`: the summaries of the stages done (`summary.json`'s `schedule` entries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<serde_json::Value>,
    /// Phase `stage`: re-initialisations drawn so far (the next one's stream ordinal).
    #[serde(default)]
    pub reinits: usize,
}

impl CheckpointState {
    /// The last stage-1 record among [`CheckpointState::records`].
    pub fn last_stage1_record(&self) -> Option<Stage1Record> {
        self.records
            .iter()
            .rev()
            .filter_map(|l| serde_json::from_str::<Stage1Record>(l).ok())
            .find(|r| r.stage == "stage1")
    }
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> RunError {
    RunError::Io(format!("{what} {}: {e}", path.display()))
}

/// Saves `model` as a Burnpack file at `path` atomically: written to a temporary file, synced
/// to disk, then renamed.
pub fn save_model_atomic<M: ModuleSnapshot>(model: &M, path: &Path) -> Result<(), RunError> {
    let tmp = tmp_path(path).with_extension("tmp.bpk");
    let mut store = BurnpackStore::from_file(&tmp).overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| io_err("saving model", &tmp, format!("{e:?}")))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err("syncing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err("saving model", path, e))
}

/// Loads a Burnpack model file into `template` (same width, d, dtype and device); every
/// parameter must be present.
pub fn load_model(path: &Path, template: TwoLayer) -> Result<TwoLayer, RunError> {
    load_into(path, template)
}

/// Loads a Burnpack model file into `template`, any module: the file is read whole first (so
/// a file replaced or removed later cannot change what was loaded), and every parameter of the
/// template must be in it and every tensor of the file in the template.
pub fn load_into<M: ModuleSnapshot>(path: &Path, mut template: M) -> Result<M, RunError> {
    let bytes = fs::read(path).map_err(|e| io_err("loading checkpoint", path, e))?;
    let mut store = BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(bytes)));
    let result = template
        .load_from(&mut store)
        .map_err(|e| io_err("loading checkpoint", path, format!("{e}")))?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(io_err(
            "loading checkpoint",
            path,
            format!(
                "missing {:?}, unused {:?}, errors {:?}",
                result.missing, result.unused, result.errors
            ),
        ));
    }
    Ok(template)
}

/// Reads `DIR/checkpoints/state.json`; `None` when there is none.
pub fn read_state(run_dir: &Path) -> Result<Option<CheckpointState>, RunError> {
    let path = run_dir.join(CHECKPOINT_DIR).join(STATE_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("reading", &path, e)),
    };
    let state: CheckpointState =
        serde_json::from_str(&text).map_err(|e| io_err("reading", &path, e))?;
    if state.format != STATE_FORMAT {
        return Err(io_err(
            "reading",
            &path,
            format!("state format {} (expected {STATE_FORMAT})", state.format),
        ));
    }
    Ok(Some(state))
}

/// Removes leftovers of interrupted atomic writes (`*.tmp`, `*.tmp.bpk`) in `dir`.
pub fn remove_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") || name.ends_with(".tmp.bpk") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes the checkpoints of one run.
pub struct Checkpointer {
    dir: PathBuf,
    /// Checkpoint every k stage-1 steps (0 = only after each stage).
    pub every: usize,
    /// False for runs that write no checkpoints (streamed data, `joint`).
    pub enabled: bool,
    config: String,
    started: Instant,
    prior_seconds: f64,
}

impl Checkpointer {
    /// Checkpoints of the run in `run_dir` for the resolved config text `config`; the run
    /// started `prior_seconds` before `started` (non-zero for a resumed run).
    pub fn new(
        run_dir: &Path,
        every: usize,
        enabled: bool,
        config: String,
        started: Instant,
        prior_seconds: f64,
    ) -> Self {
        Self {
            dir: run_dir.join(CHECKPOINT_DIR),
            every,
            enabled,
            config,
            started,
            prior_seconds,
        }
    }

    /// Wall time of the whole run so far, across resumes.
    pub fn total_seconds(&self) -> f64 {
        self.prior_seconds + self.started.elapsed().as_secs_f64()
    }

    /// The model file of a state.
    pub fn model_path(&self, state: &CheckpointState) -> PathBuf {
        self.dir.join(&state.model)
    }

    /// Writes a checkpoint: the model file, then `state.json` naming it, then removes the older
    /// model files. `state.model`, `state.config`, `state.format` and `state.total_seconds` are
    /// filled in here.
    pub fn save<M: ModuleSnapshot>(
        &self,
        model: &M,
        mut state: CheckpointState,
    ) -> Result<(), RunError> {
        if !self.enabled {
            return Ok(());
        }
        fs::create_dir_all(&self.dir).map_err(|e| io_err("creating", &self.dir, e))?;
        let name = format!("{}-{:06}.bpk", state.phase.name(), state.step);
        save_model_atomic(model, &self.dir.join(&name))?;
        state.model = name.clone();
        state.config = self.config.clone();
        state.format = STATE_FORMAT;
        state.total_seconds = self.total_seconds();
        let path = self.dir.join(STATE_FILE);
        write_json_atomic(&path, &state).map_err(|e| io_err("writing", &path, e))?;
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let other = entry.file_name().to_string_lossy().into_owned();
                if other.ends_with(".bpk") && other != name {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// A state of `phase` after `step` stage-1 steps with the given records; the remaining
    /// fields are `None`/0 (set them before [`Checkpointer::save`]).
    pub fn state(
        phase: Phase,
        step: usize,
        records: &[String],
        stage1_seconds: f64,
    ) -> CheckpointState {
        CheckpointState {
            format: STATE_FORMAT,
            phase,
            step,
            model: String::new(),
            config: String::new(),
            stage1_seconds,
            stage2_seconds: 0.0,
            total_seconds: 0.0,
            records: records.to_vec(),
            power_iteration_cos: None,
            ridge_lambda: None,
            train_mse: None,
            stages: Vec::new(),
            reinits: 0,
        }
    }
}

/// The stage-1 observer with checkpoints: measures and records each step through the tracker,
/// then every `every` steps saves the model (`template` with W replaced) and the state.
pub struct CheckpointingTracker<'a, 'b> {
    /// The metric tracker.
    pub tracker: &'a mut Stage1Tracker<'b>,
    /// Where checkpoints go.
    pub checkpointer: &'a Checkpointer,
    /// The network whose a, b, c are saved with each W.
    pub template: &'a TwoLayer,
}

impl Observer for CheckpointingTracker<'_, '_> {
    fn stage1_step(&mut self, s: &Stage1State<'_>) -> Result<(), TrainError> {
        self.tracker.stage1_step(s)?;
        let every = self.checkpointer.every;
        if self.checkpointer.enabled && every > 0 && s.step > 0 && s.step.is_multiple_of(every) {
            let mut model = self.template.clone();
            model.w = Param::from_tensor(s.w.clone());
            let state = Checkpointer::state(
                Phase::Stage1,
                s.step,
                self.tracker.reporter.lines(),
                self.tracker.start.elapsed().as_secs_f64(),
            );
            self.checkpointer
                .save(&model, state)
                .map_err(|e| TrainError::Observer(format!("checkpoint at step {}: {e}", s.step)))?;
        }
        Ok(())
    }
}
