//! `mim train`: config → data → model → stage 1 (or a baseline) → stage 2 → metrics → run folder.

use crate::backend::{open_device, with_threads};
use crate::batches::JointBatches;
use crate::checkpoint::{
    load_model, read_state, remove_temporaries, CheckpointState, Checkpointer,
    CheckpointingTracker, Phase, CHECKPOINT_DIR,
};
use crate::config::{ConfigError, Method, ValidConfig};
use crate::progress::Reporter;
use crate::results::{write_atomic, write_json_atomic, JsonlWriter};
use crate::schedule_run::{first_layer_metrics, fit_schedule, StageSummary};
use crate::seeds::{derive_seed, Purpose};
use crate::spectral_init::spectral_rows;
use crate::tracker::{w_metrics, Stage1Tracker, WMetrics};
use burn::tensor::{Device, Tensor};
use mim_data::{Dataset, Split, Target};
use mim_metrics::PowerIteration;
use mim_model::{from_host_1d, from_host_2d, to_host, Network, Precision, TwoLayer};
use mim_spectral::ResolvedSpectral;
use mim_train::stage2::{label_variance, normalized_mse};
use mim_train::{label_shift, run_joint, run_stage1_from, run_stage2, stage1_labels, TrainError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where and how a run reports.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The run folder.
    pub out_dir: PathBuf,
    /// No progress output.
    pub quiet: bool,
}

/// Why a run failed. [`RunError::exit_code`]: 2 for bad input, 1 for runtime failures.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The backend's device cannot be opened.
    #[error("{0}")]
    Device(String),
    /// Files could not be written.
    #[error("{0}")]
    Io(String),
    /// Training failed (divergence, numerical failure).
    #[error(transparent)]
    Train(#[from] TrainError),
}

impl RunError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) | RunError::Device(_) => 2,
            RunError::Io(_) | RunError::Train(_) => 1,
        }
    }
}

/// `summary.json` of a finished run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// mim version.
    pub version: String,
    /// `"ok"`.
    pub status: String,
    /// Training schedule (`layerwise`, `one_step`, `random_features`, `joint`).
    pub method: String,
    /// Master seed.
    pub seed: u64,
    /// Backend name.
    pub backend: String,
    /// `f32` or `f64`.
    pub dtype: String,
    /// Input dimension d.
    pub d: usize,
    /// Hidden dimension r.
    pub r: usize,
    /// The link, canonical form.
    pub link: String,
    /// Label scale 1/sd(g) (1 when not normalised).
    pub label_scale: f64,
    /// The generator of the data rows (`data.generator`: `v1` or `v2`; summaries written
    /// before the option lack it and were v1).
    #[serde(default)]
    pub data_generator: mim_data::Generator,
    /// Width m.
    pub width: usize,
    /// Stage-1 samples.
    pub n1: usize,
    /// Stage-2 samples.
    pub n2: usize,
    /// Test samples.
    pub n_test: usize,
    /// T1 as run (optimizer steps for `joint`).
    pub steps: usize,
    /// η1 as run (the optimizer's learning rate for `joint`).
    pub lr: f64,
    /// β1 as run (0 for `joint`).
    pub weight_decay: f64,
    /// λ of the stage-2 readout (null for `joint`, which has no stage 2).
    pub ridge_lambda: Option<f64>,
    /// Final first-layer metrics.
    #[serde(flatten)]
    pub w: WMetrics,
    /// Mean cosine with explicit power iterates after the last step (null when disabled).
    pub power_iteration_cos: Option<f64>,
    /// How many neurons `power_iteration_cos` averages over (`metrics.power_neurons`; absent
    /// when disabled, and in summaries written before the option, which averaged over all m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_iteration_neurons: Option<usize>,
    /// mean (f − y)²/Var(y) on the test set.
    pub test_mse: f64,
    /// Var(y) over the test labels, so that test_mse · Var(y) is the raw test MSE.
    pub test_label_variance: f64,
    /// The test excess risk mean (f − y)² − σ² = test_mse · Var(y_test) − data.noise²
    /// (the metric of DLS22 and of most of the literature; ≈ mean (f − f*)²).
    pub test_excess_risk: f64,
    /// mean (f − y)²/Var(y) on D2 (on D1 for `joint`).
    pub train_mse: f64,
    /// Wall time of stage 1 (with its per-step metrics).
    pub stage1_seconds: f64,
    /// Wall time of stage 2.
    pub stage2_seconds: f64,
    /// Wall time of the whole run.
    pub total_seconds: f64,
    /// Whether the data were streamed chunk by chunk rather than held in memory.
    pub streaming: bool,
    /// Peak resident memory of the process (VmHWM), MiB, where the OS reports it.
    pub peak_rss_mib: Option<f64>,
    /// Warnings raised.
    pub warnings: Vec<String>,
    /// What each stage of a `[[schedule]]` did (absent for the methods).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<StageSummary>,
    /// Held-out R² of each declared feature (`data.features`) on each hidden layer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_r2: BTreeMap<String, Vec<f64>>,
    /// `metrics.spectral_twin`: principal angles between stage 1 and its spectral twin.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<crate::twin::TwinAngles>,
    /// The BBP predictions at α1 = n1/d for a hierarchical link (seed 003).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub bbp: Option<crate::tracker::BbpTheory>,
}

impl Summary {
    /// The fields every run shares — version, status `ok`, the run's identity and sizes, and
    /// the BBP predictions at α1 = n1/d — with the outcome fields empty (NaN, 0, None) for the
    /// caller to fill.
    fn of_run(valid: &ValidConfig, target: &Target, method: &str, p: Precision) -> Summary {
        let cfg = &valid.config;
        let d = cfg.data.d;
        Summary {
            version: env!("CARGO_PKG_VERSION").into(),
            status: "ok".into(),
            method: method.into(),
            seed: cfg.seed,
            backend: cfg.backend.name().into(),
            dtype: p.name().into(),
            d,
            r: cfg.data.r,
            link: target.link.to_string(),
            label_scale: target.scale,
            data_generator: target.generator,
            width: cfg.model.width,
            n1: valid.n1,
            n2: valid.n2,
            n_test: cfg.data.n_test,
            steps: 0,
            lr: 0.0,
            weight_decay: 0.0,
            ridge_lambda: None,
            w: WMetrics::default(),
            power_iteration_cos: None,
            power_iteration_neurons: None,
            test_mse: f64::NAN,
            test_label_variance: f64::NAN,
            test_excess_risk: f64::NAN,
            train_mse: f64::NAN,
            stage1_seconds: 0.0,
            stage2_seconds: 0.0,
            total_seconds: 0.0,
            streaming: false,
            peak_rss_mib: crate::streaming::peak_rss_mib(),
            warnings: valid.warnings.clone(),
            schedule: Vec::new(),
            feature_r2: BTreeMap::new(),
            twin: None,
            bbp: crate::tracker::bbp_theory(target, valid.n1 as f64 / d as f64),
        }
    }
}

/// `summary.json` of a failed run.
#[derive(Clone, Debug, Serialize)]
struct FailedSummary<'a> {
    version: &'a str,
    status: &'a str,
    error: String,
}

/// A dataset on the device.
pub(crate) struct DeviceData {
    pub(crate) x: Tensor<2>,
    pub(crate) y: Tensor<1>,
}

/// `ds` on the device in precision `p`.
pub(crate) fn upload(ds: &Dataset, device: &Device, p: Precision) -> DeviceData {
    DeviceData {
        x: from_host_2d(&ds.x, ds.n, ds.d, device, p),
        y: from_host_1d(&ds.y, device, p),
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> RunError {
    RunError::Io(format!("{what} {}: {e}", path.display()))
}

/// Saves the model with Burn's store (Burnpack) atomically at `path` (`…/model.bpk`).
pub fn save_model(model: &TwoLayer, path: &Path) -> Result<(), RunError> {
    crate::checkpoint::save_model_atomic(model, path)
}

/// Runs the whole layer-wise algorithm for a validated config, writing the run folder.
pub fn train(valid: &ValidConfig, opts: &RunOptions) -> Result<Summary, RunError> {
    train_or_resume(valid, opts, None)
}

/// Continues the run in `opts.out_dir` from its last checkpoint (`mim train --resume DIR`);
/// `valid` must be DIR/config.toml, validated. Without a checkpoint the run starts again in
/// DIR; a run whose `summary.json` says `"ok"` is finished and its summary is returned as is.
/// On a CPU backend at a fixed thread count the result equals the uninterrupted run's
/// (timings aside).
pub fn resume(valid: &ValidConfig, opts: &RunOptions) -> Result<Summary, RunError> {
    let dir = &opts.out_dir;
    if let Ok(text) = fs::read_to_string(dir.join("summary.json")) {
        if let Ok(done) = serde_json::from_str::<Summary>(&text) {
            if done.status == "ok" {
                return Ok(done);
            }
        }
    }
    // Streamed, joint and DLS22 one-step runs write no checkpoints (a state can only come from
    // a machine where `streaming = "auto"` resolved differently): they start again.
    let state = read_state(dir)?.filter(|_| {
        !valid.streaming
            && !valid.config.is_dls22()
            && (!valid.config.schedule.is_empty() || valid.config.method != Method::Joint)
    });
    if let Some(st) = &state {
        if st.config != valid.config.to_toml() {
            return Err(RunError::Config(ConfigError(format!(
                "--resume {}: config.toml differs from the config of the checkpoint in {}/{CHECKPOINT_DIR}; restore it or start a new run",
                dir.display(),
                dir.display()
            ))));
        }
    }
    train_or_resume(valid, opts, state)
}

fn train_or_resume(
    valid: &ValidConfig,
    opts: &RunOptions,
    state: Option<CheckpointState>,
) -> Result<Summary, RunError> {
    with_threads(valid.config.threads, || {
        train_or_resume_here(valid, opts, state)
    })
    .map_err(|e| RunError::Config(ConfigError(e)))?
}

/// [`train_or_resume`] on the current thread pool.
fn train_or_resume_here(
    valid: &ValidConfig,
    opts: &RunOptions,
    state: Option<CheckpointState>,
) -> Result<Summary, RunError> {
    let result = train_inner(valid, opts, state);
    if let Err(e) = &result {
        if !matches!(e, RunError::Config(_) | RunError::Device(_)) && opts.out_dir.is_dir() {
            let failed = FailedSummary {
                version: env!("CARGO_PKG_VERSION"),
                status: "failed",
                error: e.to_string(),
            };
            let _ = write_json_atomic(&opts.out_dir.join("summary.json"), &failed);
        }
    }
    result
}

/// [`crate::twin::TwinAngles`] of the stage-1 W (m×d, host): D1 and its stage-1 labels
/// T(y) regenerated from the seed, the a = +1 half = the first m/2 rows (symmetric init).
fn stage1_twin(
    valid: &ValidConfig,
    target: &Target,
    w: &[f64],
) -> Result<crate::twin::TwinAngles, RunError> {
    let cfg = &valid.config;
    let d = cfg.data.d;
    let d1 = target.sample(
        Split::Stage1,
        valid.n1,
        derive_seed(cfg.seed, Purpose::Data),
    );
    let loss = cfg.stage1.loss();
    let shift = label_shift(&d1.y, cfg.stage1.centering(), &loss);
    let t: Vec<f64> = stage1_labels(&d1.x, &d1.y, d, shift, valid.remove_linear)
        .iter()
        .map(|&y| loss.label_transform(y))
        .collect();
    let sigma = crate::twin::sigma_t(&d1.x, &t, d);
    let half = cfg.model.width / 2;
    crate::twin::twin_angles(
        &sigma,
        &w[..half * d],
        half,
        valid.stage1.lr,
        valid.stage1.weight_decay,
    )
    .map_err(|e| {
        RunError::Train(TrainError::Numerical {
            stage: "metrics".into(),
            message: e,
        })
    })
}

/// What fitting the network produced (in memory or streamed).
pub struct Fitted {
    /// The trained network.
    pub model: TwoLayer,
    /// Mean cosine with the explicit power iterates after the last step.
    pub power_iteration_cos: Option<f64>,
    /// λ of the readout (None for `joint`).
    pub ridge_lambda: Option<f64>,
    /// Normalised MSE on the readout's training data.
    pub train_mse: f64,
    /// Normalised MSE on the test set.
    pub test_mse: f64,
    /// Var(y) of the test labels (test_mse's denominator).
    pub test_label_variance: f64,
    /// Wall time of stage 1 (or joint training).
    pub stage1_seconds: f64,
    /// Wall time of stage 2.
    pub stage2_seconds: f64,
    /// The step size of a first-layer step whose η is set by the data rather than the config
    /// (`one_step.variant = "dls22"`: η = 1/rms_j‖∇w_j‖, β = 1/η); None otherwise.
    pub step_lr: Option<f64>,
}

/// Fits the network with D1, D2 and the test set held in memory (on the device).
fn fit_in_memory(
    valid: &ValidConfig,
    target: &Target,
    model: TwoLayer,
    device: &Device,
    reporter: &mut Reporter,
    checkpoints: (&Checkpointer, Option<&CheckpointState>),
) -> Result<Fitted, RunError> {
    let (ckpt, resumed) = checkpoints;
    let phase = resumed.map(|st| st.phase);
    let cfg = &valid.config;
    let (d, p) = (cfg.data.d, cfg.dtype);
    let loss = cfg.stage1.loss();
    let data_seed = derive_seed(cfg.seed, Purpose::Data);
    let d1 = target.sample(Split::Stage1, valid.n1, data_seed);
    let test = upload(
        &target.sample(Split::Test, cfg.data.n_test, data_seed),
        device,
        p,
    );

    // The first layer: stage 1 (layerwise, one_step, random_features) or joint training.
    let mut tracker = Stage1Tracker::new(target, reporter, cfg.metrics.svd);
    let t1 = tracker.start;
    let (model, stage2_data) = if cfg.method == Method::Joint {
        let mut source = JointBatches::new(target, &d1, &cfg.joint, data_seed, device, p);
        (
            run_joint(model, &mut source, &cfg.joint, &loss, &mut tracker)?,
            upload(&d1, device, p),
        )
    } else {
        let shift = label_shift(&d1.y, cfg.stage1.centering(), &loss);
        let y1 = stage1_labels(&d1.x, &d1.y, d, shift, valid.remove_linear);
        let x1 = from_host_2d(&d1.x, d1.n, d, device, p);
        let params = &valid.stage1;
        let power_check = cfg.metrics.power_iteration && cfg.method != Method::SpectralInit;
        tracker.power = power_check.then(|| {
            let t: Vec<f64> = y1.iter().map(|&y| loss.label_transform(y)).collect();
            PowerIteration::new(
                x1.clone(),
                from_host_1d(&t, device, p),
                model.a.val().detach(),
                model.w.val().detach(),
                (params.lr, params.weight_decay),
                PowerIteration::dense_pays(
                    valid.n1,
                    d,
                    cfg.metrics.power_neurons.count(cfg.model.width),
                    params.steps,
                ),
                cfg.metrics.power_neurons.rows(cfg.model.width).as_deref(),
            )
        });
        let template = model.clone();
        let (model, start) = match resumed {
            Some(st) => (load_model(&ckpt.model_path(st), model)?, st.step),
            None => (model, 0),
        };
        if let Some(st) = resumed {
            // Restore the tracker: power iterates replayed from W(0), the last record, the clock.
            if st.phase == Phase::Stage1 {
                if let Some(power) = tracker.power.as_mut() {
                    (0..start).for_each(|_| power.step());
                }
            }
            tracker.last = st.last_stage1_record();
            tracker.start = t1
                .checked_sub(std::time::Duration::from_secs_f64(st.stage1_seconds))
                .unwrap_or(t1);
        }
        let model = if phase.is_none() || phase == Some(Phase::Stage1) {
            let model = run_stage1_from(
                model,
                &x1,
                &from_host_1d(&y1, device, p),
                params,
                &mut CheckpointingTracker {
                    tracker: &mut tracker,
                    checkpointer: ckpt,
                    template: &template,
                },
                start,
            )?;
            let model = match &valid.spectral {
                Some(spectral) => spectral_init(valid, spectral, &d1, model, tracker.reporter)?,
                None => model,
            };
            let mut st = Checkpointer::state(
                Phase::Stage1Done,
                params.steps,
                tracker.reporter.lines(),
                tracker.start.elapsed().as_secs_f64(),
            );
            st.power_iteration_cos = tracker.last.as_ref().and_then(|r| r.power_iteration_cos);
            ckpt.save(&model, st)?;
            model
        } else {
            model
        };
        (
            model,
            upload(
                &target.sample(Split::Stage2, valid.n2, data_seed),
                device,
                p,
            ),
        )
    };
    let power_iteration_cos = tracker
        .last
        .as_ref()
        .and_then(|rec| rec.power_iteration_cos);
    let stage1_seconds = match (resumed, phase) {
        (Some(st), Some(Phase::Stage1Done | Phase::Stage2Done)) => st.stage1_seconds,
        _ => tracker.start.elapsed().as_secs_f64(),
    };

    // Stage 2 (not for joint training, whose readout is trained already).
    let t2 = Instant::now();
    let (model, ridge_lambda, train_mse) = if cfg.method == Method::Joint {
        let f = to_host(model.forward(stage2_data.x.clone()).detach());
        let train_mse = normalized_mse(&f, &to_host(stage2_data.y.clone()));
        (model, None, train_mse)
    } else if let (Some(st), Some(Phase::Stage2Done)) = (resumed, phase) {
        let lambda = st.ridge_lambda;
        (model, lambda, st.train_mse.unwrap_or(f64::NAN))
    } else {
        let (model, report) = run_stage2(
            model,
            &stage2_data.x,
            &stage2_data.y,
            &cfg.stage2,
            derive_seed(cfg.seed, Purpose::Bias),
            p,
        )?;
        let mut st = Checkpointer::state(
            Phase::Stage2Done,
            valid.stage1.steps,
            reporter.lines(),
            stage1_seconds,
        );
        st.stage2_seconds = t2.elapsed().as_secs_f64();
        st.power_iteration_cos = power_iteration_cos;
        st.ridge_lambda = Some(report.lambda);
        st.train_mse = Some(report.train_mse);
        ckpt.save(&model, st)?;
        (model, Some(report.lambda), report.train_mse)
    };
    let stage2_seconds = match (resumed, phase) {
        (Some(st), Some(Phase::Stage2Done)) => st.stage2_seconds,
        _ => t2.elapsed().as_secs_f64(),
    };
    let f_test = to_host(model.forward(test.x.clone()).detach());
    let y_test = to_host(test.y.clone());
    let test_mse = normalized_mse(&f_test, &y_test);
    Ok(Fitted {
        model,
        power_iteration_cos,
        ridge_lambda,
        train_mse,
        test_mse,
        test_label_variance: label_variance(&y_test),
        stage1_seconds,
        stage2_seconds,
        step_lr: None,
    })
}

/// `method = "spectral_init"`: W ← rows built from Σ̂_T's eigenvectors on D1
/// ([`crate::spectral_init`]); the spectrum goes to `metrics.jsonl` as a `spectral_init` record.
fn spectral_init(
    valid: &ValidConfig,
    spectral: &ResolvedSpectral,
    d1: &Dataset,
    model: TwoLayer,
    reporter: &mut Reporter,
) -> Result<TwoLayer, RunError> {
    let cfg = &valid.config;
    let spectrum = spectral
        .estimate(&d1.x, &d1.y, d1.d)
        .map_err(|e| TrainError::Numerical {
            stage: "spectral_init".into(),
            message: e.to_string(),
        })?;
    let m = cfg.model.width;
    let w = spectral_rows(
        &spectrum,
        m,
        cfg.spectral.init_noise,
        derive_seed(cfg.seed, Purpose::Init),
    );
    reporter
        .record(&serde_json::json!({
            "stage": "spectral_init", "T": spectral.preprocessing.name(),
            "order": spectral.order.name(), "shift": spectral.shift.name(),
            "eigenvalues": &spectrum.eigenvalues,
            "indices": &spectrum.indices, "bulk_edge": spectrum.bulk_edge,
            "solver": spectrum.method.name(), "converged": spectrum.converged,
        }))
        .map_err(|e| RunError::Io(format!("writing metrics.jsonl: {e}")))?;
    let device = model.w.val().device();
    let p = cfg.dtype;
    let mut model = model;
    model.w = model
        .w
        .map(|_| from_host_2d(&w, m, d1.d, &device, p).detach());
    Ok(model)
}

/// What every run opens before training: the device, the run folder's `config.toml` and
/// `metrics.jsonl` (through the reporter) and the target.
struct RunSetup {
    t0: Instant,
    device: Device,
    reporter: Reporter,
    target: Target,
}

fn open_run(
    valid: &ValidConfig,
    opts: &RunOptions,
    resumed: Option<&CheckpointState>,
) -> Result<RunSetup, RunError> {
    let t0 = Instant::now();
    let cfg = &valid.config;
    let device = open_device(cfg.backend).map_err(RunError::Device)?;

    let out = &opts.out_dir;
    fs::create_dir_all(out).map_err(|e| {
        RunError::Config(ConfigError(format!(
            "--out {}: cannot create the run folder: {e}",
            out.display()
        )))
    })?;
    for stale in ["summary.json", "model.bpk"] {
        let _ = fs::remove_file(out.join(stale));
    }
    let jsonl = match resumed {
        None => {
            // config.toml first: a kill in between leaves old checkpoints that no longer match
            // it, which --resume refuses, never a run of the wrong config.
            write_atomic(&out.join("config.toml"), valid.config_text().as_bytes()).map_err(
                |e| {
                    io_err(
                        "run folder not writable: writing",
                        &out.join("config.toml"),
                        e,
                    )
                },
            )?;
            let _ = fs::remove_dir_all(out.join(CHECKPOINT_DIR));
            JsonlWriter::create(&out.join("metrics.jsonl"))
        }
        Some(st) => {
            remove_temporaries(out);
            remove_temporaries(&out.join(CHECKPOINT_DIR));
            JsonlWriter::resume(&out.join("metrics.jsonl"), st.records.clone())
        }
    }
    .map_err(|e| io_err("writing", &out.join("metrics.jsonl"), e))?;
    let mut reporter = Reporter::new(jsonl, opts.quiet);
    for w in &valid.warnings {
        reporter.message(&format!("warning: {w}"));
    }
    // Data: U and the datasets, drawn on the host from the seed.
    let target = target_of(valid).map_err(|e| RunError::Config(ConfigError(e)))?;
    Ok(RunSetup {
        t0,
        device,
        reporter,
        target,
    })
}

/// The target of the run config: `U` drawn from `derive_seed(seed, Target)` (dense, or
/// `data.sparsity`-sparse), rows by `data.generator`; the one target `mim train`, `mim spectral`
/// and `mim theory` all sample.
pub fn target_of(valid: &ValidConfig) -> Result<Target, String> {
    let c = &valid.config;
    let seed = derive_seed(c.seed, Purpose::Target);
    let (link, noise, normalize) = (valid.link.clone(), c.data.noise, c.data.normalize);
    match c.data.sparsity {
        Some(k) => Target::new_sparse(c.data.d, k, link, noise, normalize, seed),
        None => Target::new(c.data.d, c.data.r, link, noise, normalize, seed),
    }
    .map(|t| t.with_generator(c.data.generator))
    .map_err(|e| format!("data: {e}"))
}

/// Trains a network of the caller's own (any [`Network`]) by the config's `[[schedule]]`,
/// writing the run folder as `mim train` does. `build(device, init_seed, precision)` makes the
/// initial network; its parameter paths are what the schedule's `train` and `reinit` name
/// (checked before any data are drawn: a bad name is a config error). Validate the config
/// with [`RunConfig::validate_custom`](crate::RunConfig::validate_custom), which does not check
/// the schedule against the built-in `[model]`.
pub fn train_network<M: Network>(
    valid: &ValidConfig,
    opts: &RunOptions,
    build: impl FnOnce(&Device, u64, Precision) -> M + Send,
) -> Result<Summary, RunError> {
    with_threads(valid.config.threads, || {
        train_network_here(valid, opts, build)
    })
    .map_err(|e| RunError::Config(ConfigError(e)))?
}

/// [`train_network`] on the current thread pool.
fn train_network_here<M: Network>(
    valid: &ValidConfig,
    opts: &RunOptions,
    build: impl FnOnce(&Device, u64, Precision) -> M,
) -> Result<Summary, RunError> {
    let cfg = &valid.config;
    if cfg.schedule.is_empty() {
        return Err(RunError::Config(ConfigError(
            "schedule: train_network needs a [[schedule]] over the network's parameter groups"
                .into(),
        )));
    }
    let mut setup = open_run(valid, opts, None)?;
    let model = build(
        &setup.device,
        derive_seed(cfg.seed, Purpose::Init),
        cfg.dtype,
    );
    crate::schedule_run::check_with(cfg, &model, &setup.device)
        .map_err(|e| RunError::Config(ConfigError(e)))?;
    let checkpointer = Checkpointer::new(&opts.out_dir, 0, true, cfg.to_toml(), setup.t0, 0.0);
    let fit = crate::schedule_run::fit_network(
        valid,
        &setup.target,
        model,
        &setup.device,
        &mut setup.reporter,
        &opts.out_dir.join("model.bpk"),
        (&checkpointer, None),
    )?;
    let total = checkpointer.total_seconds();
    schedule_summary(
        valid,
        &setup.target,
        fit,
        &mut setup.reporter,
        &opts.out_dir,
        total,
    )
}

fn train_inner(
    valid: &ValidConfig,
    opts: &RunOptions,
    resumed: Option<CheckpointState>,
) -> Result<Summary, RunError> {
    let cfg = &valid.config;
    let (d, p) = (cfg.data.d, cfg.dtype);
    let out = &opts.out_dir;
    let RunSetup {
        t0,
        device,
        mut reporter,
        target,
    } = open_run(valid, opts, resumed.as_ref())?;
    let record_err = |e| io_err("writing", &out.join("metrics.jsonl"), e);
    if !cfg.schedule.is_empty() {
        let checkpointer = Checkpointer::new(
            out,
            0,
            true,
            cfg.to_toml(),
            t0,
            resumed.as_ref().map_or(0.0, |st| st.total_seconds),
        );
        let fit = fit_schedule(
            valid,
            &target,
            &device,
            &mut reporter,
            &out.join("model.bpk"),
            (&checkpointer, resumed.as_ref()),
        )?;
        let total = checkpointer.total_seconds();
        return schedule_summary(valid, &target, fit, &mut reporter, out, total);
    }
    let model = cfg
        .model
        .two_layer()
        .symmetric_init(d, derive_seed(cfg.seed, Purpose::Init), &device, p)
        .map_err(|e| RunError::Config(ConfigError(e.to_string())))?;
    let streaming = valid.streaming;
    if streaming {
        reporter.message("streaming: D1, D2 and the test set are regenerated chunk by chunk (power_iteration_cos is not computed)");
    }
    let checkpointer = Checkpointer::new(
        out,
        cfg.checkpoint.every,
        !streaming && cfg.method != Method::Joint && !cfg.is_dls22(),
        cfg.to_toml(),
        t0,
        resumed.as_ref().map_or(0.0, |st| st.total_seconds),
    );
    let fit = if cfg.is_dls22() {
        crate::one_step::fit_dls22(valid, &target, &device, &mut reporter)?
    } else if streaming {
        crate::streaming::fit_streaming(valid, &target, model, &device, &mut reporter)?
    } else {
        fit_in_memory(
            valid,
            &target,
            model,
            &device,
            &mut reporter,
            (&checkpointer, resumed.as_ref()),
        )?
    };
    let model = &fit.model;
    // Per-layer feature R² (when the target declares features; in memory only).
    let feature_r2 = if cfg.data.features.is_empty() || streaming {
        BTreeMap::new()
    } else {
        let test = target.sample(
            Split::Test,
            cfg.data.n_test,
            derive_seed(cfg.seed, Purpose::Data),
        );
        let xt = from_host_2d(&test.x, test.n, d, &device, p);
        crate::schedule_run::feature_r2(cfg, &target, model, &test, &xt, p)?
    };
    let readout = to_host(model.a.val())
        .into_iter()
        .chain(to_host(model.c.val()))
        .find(|v| !v.is_finite());
    let stage = if cfg.method == Method::Joint {
        "joint"
    } else {
        "stage2"
    };
    for (quantity, value) in [
        ("readout a", readout.unwrap_or(0.0)),
        ("train_mse", fit.train_mse),
        ("test_mse", fit.test_mse),
    ] {
        if !value.is_finite() {
            return Err(TrainError::Diverged {
                stage: stage.into(),
                step: 0,
                quantity: quantity.into(),
                value,
            }
            .into());
        }
    }
    if cfg.method != Method::Joint {
        reporter
            .record(&serde_json::json!({
                "stage": "stage2", "ridge_lambda": fit.ridge_lambda,
                "train_mse": fit.train_mse, "test_mse": fit.test_mse, "seconds": fit.stage2_seconds,
            }))
            .map_err(record_err)?;
    }

    let w = to_host(model.w.val());
    let twin = if cfg.metrics.spectral_twin {
        Some(stage1_twin(valid, &target, &w)?)
    } else {
        None
    };
    let wm = w_metrics(&w, cfg.model.width, &target, cfg.metrics.svd).map_err(|e| {
        TrainError::Numerical {
            stage: "metrics".into(),
            message: e,
        }
    })?;
    save_model(model, &out.join("model.bpk"))?;
    // The method as the explicit schedule the engine runs (re-runnable as a config).
    if let Some(schedule) = valid.expanded_schedule() {
        let mut explicit = cfg.clone();
        explicit.schedule = schedule;
        let path = out.join("schedule.toml");
        let text = format!(
            "# `method = \"{}\"` as an explicit [[schedule]]: `mim train --config {}` runs the same stages\n# through the schedule engine (same W, a, c and metrics; no power_iteration_cos).\n{}",
            cfg.method.name(),
            path.display(),
            explicit.to_toml()
        );
        write_atomic(&path, text.as_bytes()).map_err(|e| io_err("writing", &path, e))?;
    }
    let (steps, lr, weight_decay) = match (cfg.method, fit.step_lr) {
        (Method::Joint, _) => (cfg.joint.steps, cfg.joint.lr, 0.0),
        (_, Some(lr)) => (1, lr, 1.0 / lr),
        _ => (
            valid.stage1.steps,
            valid.stage1.lr,
            valid.stage1.weight_decay,
        ),
    };
    let summary = Summary {
        steps,
        lr,
        weight_decay,
        ridge_lambda: fit.ridge_lambda,
        w: wm,
        power_iteration_cos: fit.power_iteration_cos,
        power_iteration_neurons: fit
            .power_iteration_cos
            .map(|_| cfg.metrics.power_neurons.count(cfg.model.width)),
        test_mse: fit.test_mse,
        test_label_variance: fit.test_label_variance,
        test_excess_risk: fit.test_mse * fit.test_label_variance - target.noise.powi(2),
        train_mse: fit.train_mse,
        stage1_seconds: fit.stage1_seconds,
        stage2_seconds: fit.stage2_seconds,
        total_seconds: checkpointer.total_seconds(),
        streaming,
        peak_rss_mib: crate::streaming::peak_rss_mib(),
        warnings: valid.warnings.clone(),
        schedule: Vec::new(),
        feature_r2,
        twin,
        ..Summary::of_run(valid, &target, cfg.method.name(), p)
    };
    reporter
        .record(&serde_json::json!({"stage": "final", "summary": &summary}))
        .map_err(record_err)?;
    write_json_atomic(&out.join("summary.json"), &summary)
        .map_err(|e| io_err("writing", &out.join("summary.json"), e))?;
    Ok(summary)
}

/// The summary of a `[[schedule]]` run (written to `summary.json` and `metrics.jsonl`).
fn schedule_summary(
    valid: &ValidConfig,
    target: &Target,
    fit: crate::schedule_run::ScheduleFit,
    reporter: &mut Reporter,
    out: &Path,
    total_seconds: f64,
) -> Result<Summary, RunError> {
    let cfg = &valid.config;
    for (quantity, value) in [("train_mse", fit.train_mse), ("test_mse", fit.test_mse)] {
        if !value.is_finite() {
            return Err(TrainError::Diverged {
                stage: "schedule".into(),
                step: 0,
                quantity: quantity.into(),
                value,
            }
            .into());
        }
    }
    let wm = first_layer_metrics(&fit, target, cfg.metrics.svd)?;
    let first_gd = cfg.schedule.iter().find(|s| s.solver.is_none());
    let seconds = |pred: &dyn Fn(&StageSummary) -> bool| -> f64 {
        fit.stages
            .iter()
            .filter(|s| pred(s))
            .map(|s| s.seconds)
            .sum()
    };
    let summary = Summary {
        steps: first_gd.map_or(0, |s| s.steps),
        lr: first_gd.map_or(0.0, |s| s.lr),
        weight_decay: first_gd.map_or(0.0, |s| s.resolved_weight_decay()),
        ridge_lambda: fit.ridge_lambda,
        w: wm,
        power_iteration_cos: None,
        test_mse: fit.test_mse,
        test_label_variance: fit.test_label_variance,
        test_excess_risk: fit.test_mse * fit.test_label_variance - target.noise.powi(2),
        train_mse: fit.train_mse,
        stage1_seconds: seconds(&|s| s.kind != "ridge"),
        stage2_seconds: seconds(&|s| s.kind == "ridge"),
        total_seconds,
        streaming: false,
        peak_rss_mib: crate::streaming::peak_rss_mib(),
        warnings: valid.warnings.clone(),
        schedule: fit.stages,
        feature_r2: fit.feature_r2,
        twin: None,
        ..Summary::of_run(valid, target, "schedule", cfg.dtype)
    };
    reporter
        .record(&serde_json::json!({"stage": "final", "summary": &summary}))
        .map_err(|e| io_err("writing", &out.join("metrics.jsonl"), e))?;
    write_json_atomic(&out.join("summary.json"), &summary)
        .map_err(|e| io_err("writing", &out.join("summary.json"), e))?;
    Ok(summary)
}
