//! `[[schedule]]` runs: config → data (D1, D2, D3 or fresh samples) → any [`Network`] →
//! stages, in order, through the engine of `mim_train::schedule` → metrics → run folder.
//!
//! Each stage: re-initialisations first (`reinit`, drawn from the seed), then the optional
//! per-unit standardisation of a hidden layer on the stage's data, then the stage itself —
//! full-batch GD ([`gd_stage`]), Burn's SGD/Adam ([`optimizer_stage`]) or the convex readout
//! fit ([`ridge_stage`]) — with every group outside `train` frozen through Burn.

use crate::backend::Backend;
use crate::batches::JointBatches;
use crate::checkpoint::{load_into, CheckpointState, Checkpointer, Phase};
use crate::config::{ConfigError, RunConfig, ValidConfig};
use crate::progress::Reporter;
use crate::run::RunError;
use crate::seeds::{derive_seed, Purpose};
use crate::tracker::{w_metrics, Stage1Tracker, WMetrics};
use burn::tensor::{Device, Tensor};
use mim_data::{Dataset, Link, Split, Target};
use mim_model::{
    from_host_1d, from_host_2d, param_infos, resolve_paths, set_values, to_host, MlpConfig,
    Network, Precision,
};
use mim_train::stage2::{label_variance, normalized_mse};
use mim_train::{
    gd_stage, label_shift, optimizer_stage, ridge_stage, stage1_labels, Auto, Batches, GdStage,
    Gradient, JointOptimizer, Observer, OptimizerStage, Stage1State, Stage2Config, Stage2Solver,
    StageConfig, StageOptimizer, TrainError,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// What one stage of a schedule did (`summary.json`'s `schedule` list).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    /// The stage's name.
    pub name: String,
    /// `gd`, `sgd`, `adam` or `ridge`.
    pub kind: String,
    /// The parameters it trained (resolved paths).
    pub train: Vec<String>,
    /// Its dataset.
    pub data: String,
    /// Steps run (0 for ridge).
    pub steps: usize,
    /// Loss on its data after its last step (GD/SGD/Adam; the last reported minibatch for SGD/Adam).
    pub loss: Option<f64>,
    /// λ of a ridge stage.
    pub ridge_lambda: Option<f64>,
    /// Normalised MSE of the network on a ridge stage's data after the fit.
    pub train_mse: Option<f64>,
    /// Feature name → held-out R² on each hidden layer after this stage (`data.features`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_r2: BTreeMap<String, Vec<f64>>,
    /// Wall time.
    pub seconds: f64,
    /// An `online_sphere` stage's hitting times (seed 004).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<mim_train::online::OnlineSummary>,
}

/// What a schedule run produced.
pub struct ScheduleFit {
    /// First-layer weights (m1×d, row-major) and m1.
    pub first_layer: (Vec<f64>, usize),
    /// Per-stage summaries.
    pub stages: Vec<StageSummary>,
    /// Normalised test MSE.
    pub test_mse: f64,
    /// Var(y) of the test labels.
    pub test_label_variance: f64,
    /// Normalised MSE on the last ridge stage's data (on the last stage's data otherwise).
    pub train_mse: f64,
    /// λ of the last ridge stage.
    pub ridge_lambda: Option<f64>,
    /// Feature name → held-out R² of a ridge of that feature on each hidden layer's activations.
    pub feature_r2: BTreeMap<String, Vec<f64>>,
}

/// The seed of the `ordinal`-th re-initialisation of a schedule (0-based, in stage order and
/// then path order): the first is the stage-2 bias stream of the two-layer algorithm, so
/// the paper's schedule re-draws exactly the biases `method = "layerwise"` draws.
pub fn reinit_seed(seed: u64, ordinal: usize) -> u64 {
    let base = derive_seed(seed, Purpose::Bias);
    if ordinal == 0 {
        base
    } else {
        derive_seed(
            base ^ (ordinal as u64).wrapping_mul(0xA076_1D64_78BD_642F),
            Purpose::Bias,
        )
    }
}

/// Checks a schedule against the network it will train, before any data exist: every group
/// named in `train` and `reinit` exists, a ridge stage has a readout to fit, `standardize`
/// names a hidden layer, and the two-layer gradient specialisations are asked for only where
/// they apply. Errors name `schedule.K.<key>`.
pub fn check_schedule(cfg: &RunConfig) -> Result<(), String> {
    // Parameter paths, depth and readout do not depend on the sizes: check against a
    // miniature of the network (d = 1, every width 2), so that a config with absurd sizes is
    // refused by the memory check later, not by an allocation here. Parities of the real
    // widths are checked on the config.
    let device = Device::flex();
    match &cfg.model.mlp {
        None => {
            let tiny = mim_model::TwoLayerConfig {
                width: 2,
                ..cfg.model.two_layer()
            };
            let model = tiny
                .symmetric_init(1, 0, &device, Precision::F32)
                .map_err(|e| e.to_string())?;
            check_on(cfg, &model, &device, Some(&[cfg.model.width]))
        }
        Some(mlp) => {
            mlp.validate().map_err(|e| e.to_string())?;
            let tiny = MlpConfig {
                widths: vec![2; mlp.widths.len()],
                ..mlp.clone()
            };
            let model = tiny
                .symmetric_init(1, 0, &device, Precision::F32)
                .map_err(|e| e.to_string())?;
            check_on(cfg, &model, &device, Some(&mlp.widths))
        }
    }
}

/// [`check_schedule`] against a given network (a user's own, through
/// [`crate::run::train_network`]).
pub fn check_with<M: Network>(cfg: &RunConfig, model: &M, device: &Device) -> Result<(), String> {
    check_on(cfg, model, device, None)
}

/// [`check_with`], with the network's hidden widths given (`None`: measured on the network).
fn check_on<M: Network>(
    cfg: &RunConfig,
    model: &M,
    device: &Device,
    widths: Option<&[usize]>,
) -> Result<(), String> {
    let d = model.first_layer().dims()[1];
    let measured: Vec<usize> = model
        .hidden(Tensor::zeros([1, d], (device, Precision::F32.dtype())))
        .iter()
        .map(|h| h.dims()[1])
        .collect();
    let widths = widths.map_or(measured, <[usize]>::to_vec);
    let depth = widths.len();
    for (k, st) in cfg.schedule.iter().enumerate() {
        for group in st.reinit.keys() {
            resolve_paths(
                model,
                std::slice::from_ref(group),
                &format!("schedule.{k}.reinit"),
            )?;
        }
        if st.standardize > depth {
            return Err(format!(
                "schedule.{k}.standardize = {}: the network has {depth} hidden layer(s)",
                st.standardize
            ));
        }
        if st.standardize > 0 {
            // The network's own check (e.g. a network without standardisation refuses).
            model
                .clone()
                .standardize(
                    st.standardize,
                    Tensor::zeros([2, d], (device, Precision::F32.dtype())),
                )
                .map_err(|e| format!("schedule.{k}.{e}"))?;
        }
        if st.solver.is_some() {
            let readout = model.readout().ok_or_else(|| {
                format!("schedule.{k}.solver = \"ridge\": this network has no final linear readout to fit")
            })?;
            if readout.bias.is_none() {
                return Err(format!(
                    "schedule.{k}.solver = \"ridge\": the readout needs an offset parameter"
                ));
            }
            if !st.train.is_empty() {
                let mut want = vec![readout.weight.clone()];
                want.extend(readout.bias.clone());
                want.sort();
                let got = resolve_paths(model, &st.train, &format!("schedule.{k}.train"))?;
                if got != want {
                    return Err(format!(
                        "schedule.{k}.train = {:?}: a ridge stage fits the readout ({}) and nothing else",
                        st.train,
                        want.join(", ")
                    ));
                }
            }
            continue;
        }
        if st.optimizer == StageOptimizer::OnlineSphere {
            let paths = resolve_paths(model, &st.train, &format!("schedule.{k}.train"))?;
            if paths != [model.first_layer_path()] {
                return Err(format!(
                    "schedule.{k}.train = {:?}: online_sphere trains the first layer's weight ({}) and nothing else",
                    st.train,
                    model.first_layer_path()
                ));
            }
            if cfg.data.r != 1 {
                return Err(format!(
                    "schedule.{k}.optimizer = \"online_sphere\": it measures the alignment with θ*, so the target must be single-index (data.r = 1, here {})",
                    cfg.data.r
                ));
            }
            if st.support_samples > 0 && cfg.data.sparsity.is_none() {
                return Err(format!(
                    "schedule.{k}.support_samples = {}: the support search keeps the k = data.sparsity largest scores; set data.sparsity (a k-sparse θ*)",
                    st.support_samples
                ));
            }
            continue;
        }
        if st.head > depth {
            return Err(format!(
                "schedule.{k}.head = {}: the network has {depth} hidden layer(s)",
                st.head
            ));
        }
        if st.head > 0 && widths[st.head - 1] % 2 == 1 {
            return Err(format!(
                "schedule.{k}.head = {}: hidden layer {} has an odd width {} (the paired readout needs an even one)",
                st.head, st.head, widths[st.head - 1]
            ));
        }
        let paths = resolve_paths(model, &st.train, &format!("schedule.{k}.train"))?;
        let fast = st.head == 0 && mim_train::schedule::has_two_layer_fast_path(model, &paths);
        match st.gradient {
            Gradient::Fused | Gradient::ClosedForm if !fast => {
                return Err(format!(
                    "schedule.{k}.gradient = \"{}\": only for the two-layer network with train = [\"w\"]; use \"autodiff\" or \"auto\"",
                    if st.gradient == Gradient::Fused { "fused" } else { "closed_form" }
                ))
            }
            Gradient::Fused if cfg.backend == Backend::Wgpu => {
                return Err(format!("schedule.{k}.gradient = \"fused\" runs on host storage: use a CPU backend, or \"auto\""))
            }
            _ => {}
        }
        if st.optimizer != StageOptimizer::Gd && st.gradient != Gradient::Auto {
            return Err(format!(
                "schedule.{k}.gradient: SGD/Adam stages use Burn autodiff; leave gradient = \"auto\""
            ));
        }
    }
    Ok(())
}

/// A dataset on the host and on the device.
struct Data {
    host: Dataset,
    x: Tensor<2>,
    y: Tensor<1>,
}

/// The named datasets of a schedule (D1, D2, D3), each drawn and uploaded once, when first
/// used.
struct Datasets<'a> {
    valid: &'a ValidConfig,
    target: &'a Target,
    seed: u64,
    device: &'a Device,
    precision: Precision,
    held: BTreeMap<String, Data>,
}

impl Datasets<'_> {
    /// The dataset `name` (`"D1"`, `"D2"` or `"D3"`).
    fn get(&mut self, name: &str) -> &Data {
        if !self.held.contains_key(name) {
            let (split, n) = match name {
                "D1" => (Split::Stage1, self.valid.n1),
                "D2" => (Split::Stage2, self.valid.n2),
                _ => (Split::Custom(3), self.valid.n3),
            };
            let host = self.target.sample(split, n, self.seed);
            let crate::run::DeviceData { x, y } =
                crate::run::upload(&host, self.device, self.precision);
            self.held.insert(name.to_string(), Data { host, x, y });
        }
        &self.held[name]
    }
}

/// Records only the loss of each step (stages that leave the first layer frozen, whose W
/// metrics would not change).
struct LossTracker<'a> {
    reporter: &'a mut Reporter,
    start: Instant,
    last_loss: Option<f64>,
}

impl Observer for LossTracker<'_> {
    fn stage1_step(&mut self, s: &Stage1State<'_>) -> Result<(), TrainError> {
        let loss = s.loss.is_finite().then_some(s.loss);
        if s.step > 0 {
            self.last_loss = loss;
        }
        self.reporter
            .step(
                &serde_json::json!({
                    "stage": s.stage, "step": s.step, "loss": loss,
                    "grad_norm": s.grad_norm.is_finite().then_some(s.grad_norm),
                    "seconds": self.start.elapsed().as_secs_f64(),
                }),
                s.stage,
                s.step,
                s.total,
                &loss.map(|l| format!("loss {l:.4}")).unwrap_or_default(),
            )
            .map_err(|e| TrainError::Observer(format!("writing metrics.jsonl: {e}")))
    }
}

/// Runs the schedule of `valid` on the network its `[model]` describes, writing `model.bpk`
/// to `model_path`.
pub fn fit_schedule(
    valid: &ValidConfig,
    target: &Target,
    device: &Device,
    reporter: &mut Reporter,
    model_path: &std::path::Path,
    checkpoints: (&Checkpointer, Option<&CheckpointState>),
) -> Result<ScheduleFit, RunError> {
    let cfg = &valid.config;
    let init_seed = derive_seed(cfg.seed, Purpose::Init);
    let bad = |e: mim_model::ModelError| RunError::Config(ConfigError(e.to_string()));
    match &cfg.model.mlp {
        None => {
            let model = cfg
                .model
                .two_layer()
                .symmetric_init(cfg.data.d, init_seed, device, cfg.dtype)
                .map_err(bad)?;
            fit_network(
                valid,
                target,
                model,
                device,
                reporter,
                model_path,
                checkpoints,
            )
        }
        Some(mlp) => {
            let model = mlp
                .symmetric_init(cfg.data.d, init_seed, device, cfg.dtype)
                .map_err(bad)?;
            fit_network(
                valid,
                target,
                model,
                device,
                reporter,
                model_path,
                checkpoints,
            )
        }
    }
}

fn stage_err(name: &str) -> impl Fn(String) -> RunError + '_ {
    move |message| {
        RunError::Train(TrainError::Numerical {
            stage: name.into(),
            message,
        })
    }
}

/// Runs the schedule of `valid` on `model`, writing `model.bpk` to `model_path`.
#[allow(clippy::too_many_arguments)]
pub fn fit_network<M: Network>(
    valid: &ValidConfig,
    target: &Target,
    mut model: M,
    device: &Device,
    reporter: &mut Reporter,
    model_path: &std::path::Path,
    checkpoints: (&Checkpointer, Option<&CheckpointState>),
) -> Result<ScheduleFit, RunError> {
    let cfg = &valid.config;
    let (d, p) = (cfg.data.d, cfg.dtype);
    let data_seed = derive_seed(cfg.seed, Purpose::Data);
    let mut data = Datasets {
        valid,
        target,
        seed: data_seed,
        device,
        precision: p,
        held: BTreeMap::new(),
    };
    let mut stages: Vec<StageSummary> = Vec::new();
    let mut reinits = 0usize;
    let (mut ridge_lambda, mut train_mse) = (None, f64::NAN);
    let (ckpt, resumed) = checkpoints;
    let mut start = 0;
    if let Some(st) = resumed.filter(|st| st.phase == Phase::Stage) {
        // The structure the finished stages gave the network (standardisations) first, so
        // that the checkpoint's tensors all have a place; their values then come from it.
        for done in &cfg.schedule[..st.step.min(cfg.schedule.len())] {
            if done.standardize > 0 && done.data != "fresh" {
                let x = data.get(&done.data).x.clone();
                model = model
                    .standardize(done.standardize, x)
                    .map_err(stage_err("resume"))?;
            }
        }
        model = load_into(&ckpt.model_path(st), model)?;
        stages = st
            .stages
            .iter()
            .map(|v| serde_json::from_value(v.clone()))
            .collect::<Result<_, _>>()
            .map_err(|e| RunError::Io(format!("reading the checkpoint's stages: {e}")))?;
        (start, reinits, ridge_lambda) = (st.step, st.reinits, st.ridge_lambda);
        train_mse = st.train_mse.unwrap_or(f64::NAN);
    }
    // The test set, for the per-stage feature R² (when the target declares features).
    let probe = (!cfg.data.features.is_empty()).then(|| {
        let test = target.sample(Split::Test, cfg.data.n_test, data_seed);
        let xt = from_host_2d(&test.x, test.n, d, device, p);
        (test, xt)
    });
    for (k, st) in cfg.schedule.iter().enumerate().skip(start) {
        let name = st.display_name(k);
        let t0 = Instant::now();
        let err = stage_err(&name);
        // 1. Re-initialisations, in path order, each from its own stream.
        for (group, how) in &st.reinit {
            let paths =
                resolve_paths(&model, std::slice::from_ref(group), "reinit").map_err(&err)?;
            let infos = param_infos(&model);
            let mut values = BTreeMap::new();
            for path in paths {
                let len = infos
                    .iter()
                    .find(|i| i.path == path)
                    .map_or(0, |i| i.shape.iter().product());
                values.insert(path, how.draw(len, reinit_seed(cfg.seed, reinits)));
                reinits += 1;
            }
            model = set_values(model, &values, p);
        }
        // 2. The stage's data.
        let ds = (st.data != "fresh").then(|| data.get(&st.data));
        // 3. Standardisation of a hidden layer on the stage's data.
        if st.standardize > 0 {
            let x = ds.map(|ds| ds.x.clone()).ok_or_else(|| {
                err("standardize needs a dataset (D1, D2, D3), not fresh samples".into())
            })?;
            model = model.standardize(st.standardize, x).map_err(&err)?;
        }
        let loss = st.loss();
        let summary = if let Some(solver) = st.solver {
            let ds = ds.expect("ridge stages have a dataset (validated)");
            let s2 = Stage2Config {
                solver,
                ridge_lambda: st.ridge_lambda,
                ..Stage2Config::default()
            };
            let (fitted, report) = ridge_stage(model, &ds.x, &ds.y, &s2, p, &name)?;
            model = fitted;
            ridge_lambda = Some(report.lambda);
            train_mse = report.train_mse;
            reporter
                .record(&serde_json::json!({
                    "stage": &name, "ridge_lambda": report.lambda,
                    "train_mse": report.train_mse, "seconds": t0.elapsed().as_secs_f64(),
                }))
                .map_err(|e| RunError::Io(format!("writing metrics.jsonl: {e}")))?;
            let readout = model.readout().expect("checked");
            StageSummary {
                name: name.clone(),
                kind: "ridge".into(),
                train: [Some(readout.weight), readout.bias]
                    .into_iter()
                    .flatten()
                    .collect(),
                data: st.data.clone(),
                steps: 0,
                loss: None,
                ridge_lambda: Some(report.lambda),
                train_mse: Some(report.train_mse),
                feature_r2: BTreeMap::new(),
                seconds: t0.elapsed().as_secs_f64(),
                online: None,
            }
        } else if st.optimizer == StageOptimizer::OnlineSphere {
            let (trained, online) = online_stage(valid, target, st, k, model, reporter, &name)?;
            model = trained;
            StageSummary {
                name: name.clone(),
                kind: "online_sphere".into(),
                train: vec![model.first_layer_path()],
                data: st.data.clone(),
                steps: st.steps,
                loss: None,
                ridge_lambda: None,
                train_mse: None,
                feature_r2: BTreeMap::new(),
                seconds: t0.elapsed().as_secs_f64(),
                online: Some(online),
            }
        } else {
            let paths = resolve_paths(&model, &st.train, "train").map_err(&err)?;
            let first = paths.contains(&model.first_layer_path());
            // First-layer metrics where the stage trains the first layer, the loss otherwise.
            let (mut tracker, mut losses) = (None, None);
            let observer: &mut dyn Observer = if first {
                tracker.insert(Stage1Tracker::new(target, reporter, cfg.metrics.svd))
            } else {
                losses.insert(LossTracker {
                    reporter,
                    start: Instant::now(),
                    last_loss: None,
                })
            };
            let trained = run_stage(
                valid,
                target,
                st,
                k,
                &name,
                paths.clone(),
                model,
                ds,
                loss,
                device,
                observer,
            )?;
            let last_loss = match (tracker, losses) {
                (Some(t), _) => t.last.and_then(|rec| rec.loss),
                (_, Some(l)) => l.last_loss,
                _ => None,
            };
            model = trained;
            StageSummary {
                name: name.clone(),
                kind: match st.optimizer {
                    StageOptimizer::Gd => "gd",
                    StageOptimizer::Sgd => "sgd",
                    StageOptimizer::Adam => "adam",
                    StageOptimizer::OnlineSphere => "online_sphere",
                }
                .into(),
                train: paths,
                data: st.data.clone(),
                steps: st.steps,
                loss: last_loss,
                ridge_lambda: None,
                train_mse: None,
                feature_r2: BTreeMap::new(),
                seconds: t0.elapsed().as_secs_f64(),
                online: None,
            }
        };
        let mut summary = summary;
        // How well each hidden layer represents the declared features, after this stage.
        if let Some((test, xt)) = &probe {
            summary.feature_r2 = feature_r2(cfg, target, &model, test, xt, p)?;
            reporter
                .record(&serde_json::json!({"stage": &name, "feature_r2": &summary.feature_r2}))
                .map_err(|e| RunError::Io(format!("writing metrics.jsonl: {e}")))?;
        }
        stages.push(summary);
        let mut state = Checkpointer::state(Phase::Stage, k + 1, reporter.lines(), 0.0);
        state.stages = stages
            .iter()
            .map(|s| serde_json::to_value(s).expect("serialises"))
            .collect();
        state.reinits = reinits;
        state.ridge_lambda = ridge_lambda;
        state.train_mse = train_mse.is_finite().then_some(train_mse);
        ckpt.save(&model, state)?;
    }
    // Test error and per-layer feature R² on the test set.
    let test = target.sample(Split::Test, cfg.data.n_test, data_seed);
    let xt = from_host_2d(&test.x, test.n, d, device, p);
    let f = to_host(model.forward(xt.clone()).detach());
    // Labels in the run's precision, as the methods measure them.
    let y_test = to_host(from_host_1d(&test.y, device, p));
    let test_mse = normalized_mse(&f, &y_test);
    let test_label_variance = label_variance(&y_test);
    if !train_mse.is_finite() {
        // No ridge stage: the error on the last stage's data (D1 for fresh samples).
        let last = cfg.schedule.last().map_or("D1", |s| s.data.as_str());
        let name = if last == "fresh" { "D1" } else { last };
        let ds = data.get(name);
        train_mse = normalized_mse(
            &to_host(model.forward(ds.x.clone()).detach()),
            &to_host(ds.y.clone()),
        );
    }
    // After the last stage: its per-stage R² (measured on the same test set).
    let feature_r2 = stages
        .last()
        .map(|s| s.feature_r2.clone())
        .unwrap_or_default();
    crate::checkpoint::save_model_atomic(&model, model_path)?;
    let m1 = model.first_layer().dims()[0];
    Ok(ScheduleFit {
        first_layer: (to_host(model.first_layer()), m1),
        stages,
        test_mse,
        test_label_variance,
        train_mse,
        ridge_lambda,
        feature_r2,
    })
}

/// The stage's label transformation; `auto` becomes ζ_s(y) = E[h_s(z) | y] for σ = h_s
/// (s = the stage's `hermite`), computed by quadrature over the config's link
/// ([`mim_spectral::exponents::optimal_transform`]): the oracle transformation, which a
/// simulator can build because it knows g (the `cdf:*` transforms approximate it without g).
fn resolve_transform(
    target: &Target,
    st: &StageConfig,
    index: usize,
) -> Result<mim_train::online::LabelTransform, RunError> {
    use mim_train::online::{LabelTransform, StepMap};
    let field = format!("schedule.{index}.transform");
    let config = |e: String| RunError::Config(ConfigError(e));
    match LabelTransform::parse(&st.transform, &field).map_err(config)? {
        LabelTransform::Auto => {
            let (edges, values, _) = mim_spectral::exponents::optimal_transform(
                &target.link,
                target.scale,
                target.noise,
                st.hermite,
            )
            .map_err(|e| config(format!("{field} = \"auto\": {e}")))?;
            Ok(LabelTransform::Table(std::sync::Arc::new(StepMap {
                edges,
                values,
            })))
        }
        t => Ok(t),
    }
}

/// An `online_sphere` stage: `replicas` chains, chain 0 from the network's first layer (its
/// rows made unit; readout signs +1 on the first half of the rows, −1 on the second, as the
/// symmetric init pairs them), chain r ≥ 1 from Gaussian rows of its own seed, each on its own
/// stream of fresh samples (split `Custom(1000·(K+1) + r)`, drawn 4096 rows at a time). The
/// network keeps chain 0's W. Progress goes to `metrics.jsonl` about 100 times per chain 0.
/// With `support_samples = n_A > 0` (and `data.sparsity = k`) each chain is the sparse
/// variant: pilot, n_A samples of support search, then the chain in dimension k, with
/// λ = κ·k^{1/4} and η = online_lr(c, s, λ, k) (the dense rule in dimension k).
fn online_stage<M: Network>(
    valid: &ValidConfig,
    target: &Target,
    st: &StageConfig,
    index: usize,
    model: M,
    reporter: &mut Reporter,
    name: &str,
) -> Result<(M, mim_train::online::OnlineSummary), RunError> {
    use mim_train::online::{
        online_lr, online_sphere, online_sphere_sparse, OnlineSphere, OnlineSummary, SupportSearch,
    };
    let cfg = &valid.config;
    let d = cfg.data.d;
    // The sparse variant's chain runs in dimension k.
    let search = (st.support_samples > 0).then(|| SupportSearch {
        samples: st.support_samples,
        k: cfg.data.sparsity.expect("validated"),
    });
    let dim = search.as_ref().map_or(d, |s| s.k);
    let lambda = st.smoothing * (dim as f64).powf(0.25);
    let params = OnlineSphere {
        hermite: st.hermite,
        lambda,
        lr: online_lr(st.lr, st.hermite, lambda, dim),
        samples: st.steps,
        pilot: st.online_pilot(),
        transform: resolve_transform(target, st, index)?,
        stop_at: st.stop_alignment,
    };
    let w0 = to_host(model.first_layer());
    let m = w0.len() / d;
    let a: Vec<f64> = (0..m).map(|j| if j < m / 2 { 1.0 } else { -1.0 }).collect();
    let theta = target.u_row(0).to_vec();
    let seed = derive_seed(cfg.seed, Purpose::Data);
    let mut chains = Vec::with_capacity(st.replicas);
    let mut w_final = w0.clone();
    for rep in 0..st.replicas {
        let mut w = if rep == 0 {
            w0.clone()
        } else {
            mim_model::standard_normals(m * d, reinit_seed(seed ^ 0xA5A5, index * 10_007 + rep))
        };
        let split = Split::Custom(1000 * (index as u32 + 1) + rep as u32);
        let (mut buf, mut at, mut start) = (Dataset::default(), 0usize, 0usize);
        let next = |x: &mut [f64]| {
            if at == buf.n {
                target.sample_rows_into(split, seed, start, 4096, &mut buf);
                start += 4096;
                at = 0;
            }
            x.copy_from_slice(&buf.x[at * d..(at + 1) * d]);
            at += 1;
            buf.y[at - 1]
        };
        let chain = match &search {
            Some(search) => online_sphere_sparse(&mut w, &a, &theta, &params, search, next),
            None => online_sphere(&mut w, &a, &theta, &params, next),
        };
        let mut record = serde_json::json!({
            "stage": name, "chain": rep, "hitting_times": &chain.hitting_times,
            "final_alignment": chain.final_alignment, "samples": chain.samples,
        });
        if let Some(found) = &chain.support {
            record["support"] = serde_json::json!(found);
        }
        reporter
            .record(&record)
            .map_err(|e| RunError::Io(format!("writing metrics.jsonl: {e}")))?;
        if rep == 0 {
            w_final = w;
        }
        chains.push(chain);
    }
    let mut values = BTreeMap::new();
    values.insert(model.first_layer_path(), w_final);
    let model = set_values(model, &values, cfg.dtype);
    let summary = OnlineSummary::new(chains, params.lr, lambda);
    let summary = match &search {
        Some(s) => summary.with_support(s.k, s.samples),
        None => summary,
    };
    Ok((model, summary))
}

#[allow(clippy::too_many_arguments)]
fn run_stage<M: Network>(
    valid: &ValidConfig,
    target: &Target,
    st: &StageConfig,
    index: usize,
    name: &str,
    paths: Vec<String>,
    model: M,
    ds: Option<&Data>,
    loss: mim_train::Loss,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<M, RunError> {
    let cfg = &valid.config;
    let p = cfg.dtype;
    let fast = st.head == 0 && mim_train::schedule::has_two_layer_fast_path(&model, &paths);
    Ok(match st.optimizer {
        StageOptimizer::Gd => {
            let ds = ds.expect("GD stages have a dataset (validated)");
            let shift = label_shift(&ds.host.y, st.center_labels.then_some(st.center_by), &loss);
            let y = stage1_labels(&ds.host.x, &ds.host.y, cfg.data.d, shift, st.remove_linear);
            let y = from_host_1d(&y, device, p);
            let gradient = match (st.gradient, fast, cfg.backend) {
                (Gradient::Auto, true, Backend::Wgpu) => Gradient::ClosedForm,
                (Gradient::Auto, true, _) => Gradient::Fused,
                (Gradient::Auto, false, _) => Gradient::Autodiff,
                (g, _, _) => g,
            };
            let stage = GdStage {
                name: name.into(),
                train: paths,
                steps: st.steps,
                lr: st.lr,
                weight_decay: st.resolved_weight_decay(),
                loss,
                mode: st.mode,
                row_norm: cfg.model.init_scale,
                final_row_norm: st.final_row_norm.or(st.mode.projects().then_some(1.0)),
                gradient,
                head: st.head,
            };
            gd_stage(model, &ds.x, &y, &stage, observer, 0)?
        }
        opt => {
            let kind = if st.data == "fresh" {
                Batches::Fresh
            } else {
                Batches::Reused
            };
            let empty = Dataset::default();
            let host = ds.map_or(&empty, |ds| &ds.host);
            // Stage 0 uses the stream of the joint baseline (so the `joint` preset reproduces);
            // later stages mix in their index.
            let seed = derive_seed(cfg.seed, Purpose::Data)
                ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut source = JointBatches::of(target, host, kind, st.batch_size, seed, device, p);
            let stage = OptimizerStage {
                name: name.into(),
                train: paths,
                optimizer: if opt == StageOptimizer::Sgd {
                    JointOptimizer::Sgd
                } else {
                    JointOptimizer::Adam
                },
                lr: st.lr,
                steps: st.steps,
                eval_every: if st.eval_every == 0 {
                    (st.steps / 10).max(1)
                } else {
                    st.eval_every
                },
                loss,
                head: st.head,
            };
            optimizer_stage(model, &mut source, &stage, observer)?
        }
    })
}

/// Held-out R² of a ridge regression of each declared feature (a formula in z = Ux) on each
/// hidden layer's activations: fitted on the first half of the test set (λ chosen on a
/// held-out 20 % of it), scored on the second half.
pub(crate) fn feature_r2<M: Network>(
    cfg: &RunConfig,
    target: &Target,
    model: &M,
    test: &Dataset,
    xt: &Tensor<2>,
    p: Precision,
) -> Result<BTreeMap<String, Vec<f64>>, RunError> {
    let mut out = BTreeMap::new();
    if cfg.data.features.is_empty() {
        return Ok(out);
    }
    let (n, r) = (test.n, cfg.data.r);
    let half = n / 2;
    let hidden: Vec<Tensor<2>> = model
        .hidden(xt.clone())
        .into_iter()
        .map(|h| h.detach())
        .collect();
    let mut z = vec![0.0; r];
    for (name, formula) in &cfg.data.features {
        let link = Link::parse(formula)
            .map_err(|e| RunError::Config(ConfigError(format!("data.features.{name}: {e}"))))?;
        let q: Vec<f64> = (0..n)
            .map(|i| {
                target.project(test.row(i), &mut z);
                link.eval(&z)
            })
            .collect();
        let mut per_layer = Vec::new();
        for h in &hidden {
            let m = h.dims()[1];
            let (fit, score) = (
                h.clone().narrow(0, 0, half),
                h.clone().narrow(0, half, n - half),
            );
            let qf = from_host_1d(&q[..half], &h.device(), p);
            let s2 = Stage2Config {
                solver: Stage2Solver::Ridge,
                ridge_lambda: Auto::Auto,
                ..Stage2Config::default()
            };
            let (a, c, _) = mim_train::fit_readout(&fit, &qf, &s2, "metrics")?;
            let pred = to_host(
                score
                    .matmul(from_host_2d(&a, m, 1, &h.device(), p))
                    .squeeze_dim::<1>(1),
            );
            let pred: Vec<f64> = pred.iter().map(|v| v + c).collect();
            per_layer.push(1.0 - normalized_mse(&pred, &q[half..]));
        }
        out.insert(name.clone(), per_layer);
    }
    Ok(out)
}

/// First-layer metrics of a schedule run.
pub fn first_layer_metrics(
    fit: &ScheduleFit,
    target: &Target,
    svd: mim_metrics::SvdMethod,
) -> Result<WMetrics, RunError> {
    let (w, m) = &fit.first_layer;
    w_metrics(w, *m, target, svd).map_err(|e| {
        RunError::Train(TrainError::Numerical {
            stage: "metrics".into(),
            message: e,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::open_device;
    use mim_model::{standard_normals, values_of, Activation, MlpConfig, Readout};
    use mim_train::{Loss, Mode, NoObserver};

    fn all_values<M: Network>(model: &M) -> BTreeMap<String, Vec<f64>> {
        param_infos(model)
            .into_iter()
            .map(|i| {
                let v = values_of(model, &i.path).unwrap();
                (i.path, v)
            })
            .collect()
    }

    fn gd(train: Vec<String>) -> GdStage {
        GdStage {
            name: "t".into(),
            train,
            steps: 3,
            lr: 0.1,
            weight_decay: 0.01,
            loss: Loss::Square,
            mode: Mode::Literal,
            row_norm: 1e-3,
            final_row_norm: None,
            gradient: Gradient::Autodiff,
            head: 0,
        }
    }

    /// Over a GD stage, every parameter outside the stage's group is bit-for-bit unchanged and
    /// every parameter inside it moves, on flex, ndarray and wgpu.
    #[test]
    fn frozen_groups_are_unchanged_bit_for_bit_and_trained_ones_move() {
        let (n, d) = (40, 5);
        for backend in [Backend::Flex, Backend::Ndarray, Backend::Wgpu] {
            let device = open_device(backend).unwrap();
            let p = Precision::F32;
            let mut model = MlpConfig {
                widths: vec![8, 6],
                activations: vec![Activation::Tanh],
                init_scale: 0.5,
                ..MlpConfig::default()
            }
            .symmetric_init(d, 1, &device, p)
            .unwrap();
            // A readout that is not paired, so that every layer gets a gradient.
            let mut a = BTreeMap::new();
            a.insert("a".to_string(), standard_normals(6, 4));
            a.insert("layers.0.bias".to_string(), standard_normals(8, 5));
            a.insert("layers.1.bias".to_string(), standard_normals(6, 6));
            model = set_values(model, &a, p);
            let x = from_host_2d(&standard_normals(n * d, 2), n, d, &device, p);
            let y = from_host_1d(&standard_normals(n, 3), &device, p);
            for group in [&["layers.1.weight"][..], &["layers.0"], &["a", "c"]] {
                let names: Vec<String> = group.iter().map(|s| s.to_string()).collect();
                let paths = resolve_paths(&model, &names, "t").unwrap();
                let before = all_values(&model);
                let trained = gd_stage(
                    model.clone(),
                    &x,
                    &y,
                    &gd(paths.clone()),
                    &mut NoObserver,
                    0,
                )
                .unwrap();
                let after = all_values(&trained);
                for (path, v) in &before {
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    if paths.contains(path) {
                        assert_ne!(
                            bits(v),
                            bits(&after[path]),
                            "{backend:?} {group:?}: {path} did not move"
                        );
                    } else {
                        assert_eq!(
                            bits(v),
                            bits(&after[path]),
                            "{backend:?} {group:?}: frozen {path} changed"
                        );
                    }
                }
            }
        }
    }

    /// A network with no final linear readout: a ridge stage refuses it.
    #[derive(burn::module::Module, Debug)]
    struct NoReadout {
        w: burn::module::Param<Tensor<2>>,
    }

    impl Network for NoReadout {
        fn forward(&self, x: Tensor<2>) -> Tensor<1> {
            x.matmul(self.w.val().transpose())
                .tanh()
                .sum_dim(1)
                .squeeze_dim::<1>(1)
        }
        fn hidden(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
            vec![x.matmul(self.w.val().transpose()).tanh()]
        }
        fn readout(&self) -> Option<Readout> {
            None
        }
        fn first_layer(&self) -> Tensor<2> {
            self.w.val()
        }
        fn first_layer_path(&self) -> String {
            "w".into()
        }
    }

    #[test]
    fn ridge_stage_on_a_network_without_readout_is_a_config_error() {
        let device = Device::flex();
        let p = Precision::F32;
        let model = NoReadout {
            w: burn::module::Param::from_tensor(from_host_2d(
                &standard_normals(6, 1),
                2,
                3,
                &device,
                p,
            )),
        };
        let mut cfg = RunConfig::default();
        cfg.data.d = 3;
        cfg.data.r = 1;
        cfg.data.link = "z1".into();
        cfg.schedule = vec![StageConfig {
            solver: Some(Stage2Solver::Ridge),
            ..StageConfig::default()
        }];
        let err = check_with(&cfg, &model, &device).unwrap_err();
        assert!(
            err.starts_with("schedule.0.solver") && err.contains("no final linear readout"),
            "{err}"
        );
        let x = from_host_2d(&standard_normals(30, 2), 10, 3, &device, p);
        let y = from_host_1d(&standard_normals(10, 3), &device, p);
        assert!(ridge_stage(model, &x, &y, &Stage2Config::default(), p, "r").is_err());
    }
}
