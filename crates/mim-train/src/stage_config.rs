//! One `[[schedule]]` entry of a run config, as written: which parameter groups a stage trains,
//! on which dataset, by which rule. Resolution against a network and the data sizes happens in
//! the runner (`mim-run`), which names `schedule.K.<key>` in every error (K 0-based, as in
//! `--set schedule.1.steps=4`).

use crate::config::{
    check_ridge_lambda, positive, Auto, CenterBy, Gradient, LossName, Mode, Stage2Solver,
    WeightDecay,
};
use crate::loss::Loss;
use mim_model::Reinit;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a non-convex stage updates its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageOptimizer {
    /// Full-batch gradient descent with weight decay (and the `normalized` row projection).
    #[default]
    Gd,
    /// Burn's SGD on minibatches of `batch_size`.
    Sgd,
    /// Burn's Adam on minibatches of `batch_size`.
    Adam,
    /// Online spherical SGD on the first layer, one fresh sample per step (seed 004; see
    /// [`crate::online`]): `steps` samples at most, σ = h_`hermite`, label `transform`,
    /// smoothing λ = `smoothing`·d^{1/4}, η = `lr`·d^{−max(s,2)/2}(1 + λ²)^{s−1}.
    OnlineSphere,
}

/// A stage of a `[[schedule]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageConfig {
    /// Name in `metrics.jsonl`, progress and errors (default `stage<K+1>`).
    pub name: String,
    /// Parameter groups trained, by Burn module path or path prefix (`["w"]`, `["layers.1"]`);
    /// everything else is frozen. A `ridge` stage trains the readout (the default there).
    pub train: Vec<String>,
    /// The dataset: `"D1"`, `"D2"`, `"D3"` (independent seeded draws of sizes `data.n1`,
    /// `data.n2`, `data.n3`), or `"fresh"` (new samples for every minibatch; SGD/Adam only).
    pub data: String,
    /// Steps (GD steps, or optimizer steps for SGD/Adam).
    pub steps: usize,
    /// `gd`, `sgd` or `adam`.
    pub optimizer: StageOptimizer,
    /// Learning rate η.
    pub lr: f64,
    /// GD weight decay β: a number or `"inverse_lr"` (β = 1/η).
    pub weight_decay: WeightDecay,
    /// GD scale control: `literal`, or `normalized` (rows of every trained matrix to norm
    /// `model.init_scale` after each step, to norm 1 after the last).
    pub mode: Mode,
    /// GD: rescale every row of the trained matrices to this norm after the last step (default:
    /// 1 in `normalized` mode, rows left as they are in `literal` mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_row_norm: Option<f64>,
    /// Minibatch size of SGD/Adam.
    pub batch_size: usize,
    /// SGD/Adam: report every this many steps (0 = steps/10).
    pub eval_every: usize,
    /// The loss ℓ.
    pub loss: LossName,
    /// δ of the Huber loss.
    pub huber_delta: f64,
    /// s of the smoothed ℓ1 loss.
    pub l1_smoothing: f64,
    /// Centre the stage's labels (by `center_by`), as `stage1.center_labels`.
    pub center_labels: bool,
    /// What centring subtracts: the mean, or the loss's location.
    pub center_by: CenterBy,
    /// Subtract the labels' linear part β̂ᵀx.
    pub remove_linear: bool,
    /// Re-initialisations applied first: group → `gaussian` | `uniform` | `zero`.
    pub reinit: BTreeMap<String, Reinit>,
    /// Freeze a per-unit standardisation of this hidden layer (1-based) with the statistics of
    /// the stage's data, before training (0 = none).
    pub standardize: usize,
    /// `"ridge"` (or `"gd"`): this stage is the convex fit of the final linear readout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub solver: Option<Stage2Solver>,
    /// λ of the ridge readout, or `"auto"` (held-out 20 %, as `stage2.ridge_lambda`).
    pub ridge_lambda: Auto<f64>,
    /// Which prediction the loss sees: 0 = the network's output (default); l ≥ 1 = a fixed
    /// paired readout (+1 on the first half of hidden layer l's units, −1 on the second), so
    /// layer 1 of a deep network is trained exactly as the paper's stage 1 (`head = 1`).
    pub head: usize,
    /// GD gradient path: `auto` (fused on CPU / closed form on wgpu where the two-layer
    /// specialisation applies, autodiff otherwise), `autodiff`, `closed_form`, `fused`.
    pub gradient: Gradient,
    /// `online_sphere`: the degree s of σ = h_s = He_s/√s! (1..=8).
    #[serde(skip_serializing_if = "is_zero")]
    pub hermite: usize,
    /// `online_sphere`: κ of the smoothing radius λ = κ·d^{1/4} (0 = no smoothing).
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub smoothing: f64,
    /// `online_sphere`: the label transformation T (`identity`, `sign`, `tanh`, `clip:<c>`,
    /// `hermite:<k>`, `cdf:cos:<j>`, `cdf:sin:<j>`, `cdf:step:<τ>`).
    #[serde(skip_serializing_if = "is_identity")]
    pub transform: String,
    /// `online_sphere`: pilot samples for T's median and the standardisation of T(y), counted
    /// in `steps` (0 = min(500, steps/10)).
    #[serde(skip_serializing_if = "is_zero")]
    pub pilot: usize,
    /// `online_sphere`: independent chains (own init and samples); the summary gives the n at
    /// which 80 % of them reached alignment 0.5 and 0.9.
    #[serde(skip_serializing_if = "is_one")]
    pub replicas: usize,
    /// `online_sphere`: a chain stops once its alignment max_j |⟨w_j, θ*⟩| reaches this level
    /// (0.5 or 0.9 are recorded; default 0.5, weak recovery).
    #[serde(skip_serializing_if = "is_half")]
    pub stop_alignment: f64,
    /// `online_sphere`, sparse θ* (`data.sparsity = k`): n_A, the samples of the support
    /// search (seed 004 §2.3 stage A, after the pilot, counted in `steps`): G_i = mean of
    /// ỹ·He_s(x_i) over n_A samples, Ŝ = the k largest |G_i|, then the chain runs inside
    /// span{e_i : i ∈ Ŝ} (dimension k). 0 = no support search (the dense method).
    #[serde(skip_serializing_if = "is_zero")]
    pub support_samples: usize,
}

fn is_half(v: &f64) -> bool {
    *v == 0.5
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}
fn is_one(v: &usize) -> bool {
    *v == 1
}
fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}
fn is_identity(v: &String) -> bool {
    v == "identity"
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            train: Vec::new(),
            data: "D1".into(),
            steps: 0,
            optimizer: StageOptimizer::Gd,
            lr: 1.0,
            weight_decay: WeightDecay::Value(0.0),
            mode: Mode::Literal,
            final_row_norm: None,
            batch_size: 256,
            eval_every: 0,
            loss: LossName::Square,
            huber_delta: 1.0,
            l1_smoothing: 0.1,
            center_labels: false,
            center_by: CenterBy::Mean,
            remove_linear: false,
            reinit: BTreeMap::new(),
            standardize: 0,
            solver: None,
            ridge_lambda: Auto::Auto,
            head: 0,
            gradient: Gradient::Auto,
            hermite: 0,
            smoothing: 0.0,
            transform: "identity".into(),
            pilot: 0,
            replicas: 1,
            stop_alignment: 0.5,
            support_samples: 0,
        }
    }
}

impl StageConfig {
    /// The loss with its parameter.
    pub fn loss(&self) -> Loss {
        self.loss.with(self.huber_delta, self.l1_smoothing)
    }

    /// The stage's name: `name`, or `stage<index+1>`.
    pub fn display_name(&self, index: usize) -> String {
        if self.name.is_empty() {
            format!("stage{}", index + 1)
        } else {
            self.name.clone()
        }
    }

    /// β as a number.
    pub fn resolved_weight_decay(&self) -> f64 {
        self.weight_decay.resolve(self.lr)
    }

    /// Checks the fields that need no network or data; `index` is K of `schedule.K`. The
    /// message names the field.
    pub fn validate(&self, index: usize) -> Result<(), String> {
        let f = |key: &str| format!("schedule.{index}.{key}");
        let positive = |key: &str, v: f64| positive(&f(key), v);
        positive("lr", self.lr)?;
        positive("huber_delta", self.huber_delta)?;
        positive("l1_smoothing", self.l1_smoothing)?;
        if let Some(norm) = self.final_row_norm {
            positive("final_row_norm", norm)?;
        }
        self.weight_decay.check(&f("weight_decay"))?;
        if self.optimizer == StageOptimizer::OnlineSphere {
            return self.validate_online(index);
        }
        let online_keys = [
            ("hermite", self.hermite != 0),
            ("smoothing", self.smoothing != 0.0),
            ("transform", self.transform != "identity"),
            ("pilot", self.pilot != 0),
            ("replicas", self.replicas != 1),
            ("stop_alignment", self.stop_alignment != 0.5),
            ("support_samples", self.support_samples != 0),
        ];
        if let Some((key, _)) = online_keys.iter().find(|(_, set)| *set) {
            return Err(format!(
                "{}: only for optimizer = \"online_sphere\" (this stage is not one)",
                f(key)
            ));
        }
        if self.steps > 1_000_000 {
            return Err(format!(
                "{} = {}: more than 1000000 steps is surely a typo",
                f("steps"),
                self.steps
            ));
        }
        check_ridge_lambda(&f("ridge_lambda"), self.ridge_lambda)?;
        let data_ok = matches!(self.data.as_str(), "D1" | "D2" | "D3" | "fresh");
        if !data_ok {
            return Err(format!(
                "{} = {:?}: no such dataset (expected \"D1\", \"D2\", \"D3\" or \"fresh\")",
                f("data"),
                self.data
            ));
        }
        if self.solver.is_some() {
            if self.data == "fresh" {
                return Err(format!(
                    "{} = \"fresh\": a ridge stage needs a dataset (D1, D2, D3)",
                    f("data")
                ));
            }
            return Ok(());
        }
        if self.train.is_empty() {
            return Err(format!(
                "{} = []: the stage trains nothing (name at least one parameter group, or set solver = \"ridge\")",
                f("train")
            ));
        }
        match self.optimizer {
            StageOptimizer::Gd if self.data == "fresh" => Err(format!(
                "{} = \"fresh\": full-batch GD needs a dataset (D1, D2, D3); use optimizer = \"sgd\" or \"adam\" for fresh minibatches",
                f("data")
            )),
            StageOptimizer::Sgd | StageOptimizer::Adam if self.batch_size == 0 => Err(format!(
                "{} = 0: SGD/Adam need a minibatch of at least one sample",
                f("batch_size")
            )),
            StageOptimizer::Sgd | StageOptimizer::Adam if self.steps == 0 => Err(format!(
                "{} = 0: an SGD/Adam stage needs at least one step",
                f("steps")
            )),
            _ => Ok(()),
        }
    }

    fn validate_online(&self, index: usize) -> Result<(), String> {
        let f = |key: &str| format!("schedule.{index}.{key}");
        if self.data != "fresh" {
            return Err(format!(
                "{} = {:?}: online_sphere draws one fresh sample per step; use data = \"fresh\"",
                f("data"),
                self.data
            ));
        }
        if !(1..=8).contains(&self.hermite) {
            return Err(format!(
                "{} = {}: online_sphere needs the degree s of σ = h_s, 1..=8",
                f("hermite"),
                self.hermite
            ));
        }
        if !(self.smoothing.is_finite() && self.smoothing >= 0.0) {
            return Err(format!(
                "{} = {}: κ must be ≥ 0 and finite",
                f("smoothing"),
                self.smoothing
            ));
        }
        crate::online::LabelTransform::parse(&self.transform, &f("transform"))?;
        if self.steps == 0 || self.steps > 1_000_000_000 {
            return Err(format!(
                "{} = {}: an online stage takes 1..=10⁹ samples",
                f("steps"),
                self.steps
            ));
        }
        if self.pilot >= self.steps {
            return Err(format!(
                "{} = {}: the pilot must be fewer than the stage's {} samples",
                f("pilot"),
                self.pilot,
                self.steps
            ));
        }
        if self.support_samples > 0
            && self.online_pilot().saturating_add(self.support_samples) >= self.steps
        {
            return Err(format!(
                "{} = {}: the pilot ({}) and the support search must be fewer than the stage's {} samples",
                f("support_samples"),
                self.support_samples,
                self.online_pilot(),
                self.steps
            ));
        }
        if !(self.stop_alignment > 0.0 && self.stop_alignment <= 1.0) {
            return Err(format!(
                "{} = {}: an alignment level in (0, 1]",
                f("stop_alignment"),
                self.stop_alignment
            ));
        }
        if !(1..=10_000).contains(&self.replicas) {
            return Err(format!(
                "{} = {}: 1..=10000 chains",
                f("replicas"),
                self.replicas
            ));
        }
        if self.train.is_empty() {
            return Err(format!("{} = []: name the first layer", f("train")));
        }
        Ok(())
    }

    /// The pilot size of an online stage: `pilot`, or min(500, steps/10).
    pub fn online_pilot(&self) -> usize {
        if self.pilot > 0 {
            self.pilot
        } else {
            (self.steps / 10).min(500)
        }
    }
}
