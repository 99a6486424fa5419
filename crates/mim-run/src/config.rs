//! The run config: TOML with sections `[data] [model] [stage1] [stage2] [metrics]` and
//! top-level `seed`, `backend`, `dtype`, `threads`, plus `--set key=value` overrides by dotted
//! path. Every key has its default in the struct that owns it; [`RunConfig::validate`] checks
//! every field and names it in the error.

use crate::backend::Backend;
use crate::model_config::ModelConfig;
use mim_data::{Generator, Link};
use mim_model::Precision;
use mim_spectral::{ResolvedSpectral, SpectralConfig};
use mim_train::{
    Gradient, JointConfig, Mode, Stage1Config, Stage1Params, Stage2Config, StageConfig,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// `[data]`: the target and the three datasets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Input dimension d.
    pub d: usize,
    /// Number of hidden directions r ≤ d.
    pub r: usize,
    /// Link g as a formula over z1..zr, e.g. `h4(z1)+h4(z2)`.
    pub link: String,
    /// Std of the additive Gaussian label noise (relative to the unit-variance signal).
    pub noise: f64,
    /// Stage-1 sample count n1 (or give `alpha1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n1: Option<usize>,
    /// n1 = alpha1·d (default 16 when neither is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha1: Option<f64>,
    /// Stage-2 sample count n2 (or give `alpha2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n2: Option<usize>,
    /// n2 = alpha2·d (default 16 when neither is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha2: Option<f64>,
    /// Size of D3, the third independent draw (only for a `[[schedule]]` stage with
    /// `data = "D3"`; or give `alpha3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n3: Option<usize>,
    /// n3 = alpha3·d (default 16 when neither is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha3: Option<f64>,
    /// Named intermediate features of the target, as formulas in z (the link grammar), e.g.
    /// `q = "(h2(z1)+h2(z2))/2"`: each hidden layer's activations are scored by the held-out
    /// R² of a ridge regression of each feature on them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, String>,
    /// Test-set size.
    pub n_test: usize,
    /// Scale the noiseless labels to unit variance by a constant computed from the link.
    pub normalize: bool,
    /// Regenerate the datasets chunk by chunk instead of holding them in memory: `"auto"`
    /// (when the in-memory estimate exceeds half of the physical memory), `"on"`, `"off"`.
    pub streaming: Streaming,
    /// Rows per streamed chunk (0 = about 256 MiB of rows; rounded to whole generator blocks).
    pub chunk_rows: usize,
    /// A k-sparse θ* (seed 004 §2.3, r = 1 only): a random support of `k` coordinates with
    /// entries ±k^{−1/2}, drawn from the seed's `U` stream ([`mim_data::Target::new_sparse`]).
    /// Absent = a dense θ*. `k = 0`, `k > d` and `r > 1` are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<usize>,
    /// The generator of the rows ([`mim_data::Generator`]): `"v1"` (ChaCha8 + ziggurat, f64;
    /// what a config without the key means, so earlier results keep their meaning) or `"v2"`
    /// (Philox4x32-10 counters + vectorised f32 Box–Muller, several times faster; the shipped
    /// configs use it). Left out of the config text at v1, so earlier sweep keys are unchanged.
    #[serde(skip_serializing_if = "Generator::is_v1")]
    pub generator: Generator,
}

/// When to stream the datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Streaming {
    /// Stream when the in-memory estimate exceeds half of the physical memory.
    #[default]
    Auto,
    /// Always stream (CPU backends, layer-wise methods).
    On,
    /// Never stream.
    Off,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            d: 100,
            r: 2,
            link: "h2(z1)+h2(z2)".into(),
            noise: 0.0,
            n1: None,
            alpha1: None,
            n2: None,
            alpha2: None,
            n3: None,
            alpha3: None,
            features: BTreeMap::new(),
            n_test: 10_000,
            normalize: true,
            streaming: Streaming::Auto,
            chunk_rows: 0,
            sparsity: None,
            generator: Generator::V1,
        }
    }
}

/// Default multiple of d for n1 and n2.
pub const DEFAULT_ALPHA: f64 = 16.0;

fn resolve_size(
    name: &str,
    n: Option<usize>,
    alpha: Option<f64>,
    d: usize,
) -> Result<usize, String> {
    match (n, alpha) {
        (Some(_), Some(_)) => Err(format!(
            "data.n{name} and data.alpha{name} are both given: give one"
        )),
        (Some(0), None) => Err(format!("data.n{name} = 0: need at least one sample")),
        (Some(n), None) => Ok(n),
        (None, a) => {
            let a = a.unwrap_or(DEFAULT_ALPHA);
            if !(a.is_finite() && a > 0.0) {
                return Err(format!(
                    "data.alpha{name} = {a}: must be positive and finite"
                ));
            }
            let n = (a * d as f64).round();
            if !(1.0..=1e10).contains(&n) {
                return Err(format!(
                    "data.alpha{name} = {a}: gives n{name} = {n} samples"
                ));
            }
            Ok(n as usize)
        }
    }
}

/// `[metrics]`: what is measured along the way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Run explicit power iterates of Σ̂_T next to stage 1 and report `power_iteration_cos`.
    pub power_iteration: bool,
    /// How many neurons the power iterates follow: P spread evenly over the m
    /// ([`mim_metrics::power_iteration::neuron_subset`]; the check then costs P/m of the full
    /// one), or `"all"`. Omitted from `config.toml` at its default, so that the config text
    /// (a sweep's point key) of runs from before the option stays what it was.
    #[serde(skip_serializing_if = "PowerNeurons::is_default")]
    pub power_neurons: PowerNeurons,
    /// After stage 1, the largest principal angles between the a = +1 half of W and the
    /// top-m/2 eigenspaces of the dense Σ̂_T on D1 (`twin_angle_deg`,
    /// `twin_angle_amplified_deg`; see [`crate::twin`]). Costs n1·d² + d³ once; layer-wise
    /// two-layer runs held in memory only.
    pub spectral_twin: bool,
    /// How the per-step W metrics find the top singular subspaces of W and of row-normalised
    /// W: `"subspace"` (randomized subspace iteration, O(m·d·r) per iterate, 2–4 iterates once
    /// W is aligned) or `"exact"` (a full decomposition per step); see
    /// [`mim_metrics::lowrank`].
    pub svd: mim_metrics::SvdMethod,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            power_iteration: true,
            power_neurons: PowerNeurons::Count(PowerNeurons::DEFAULT),
            spectral_twin: false,
            svd: mim_metrics::SvdMethod::Subspace,
        }
    }
}

/// `metrics.power_neurons`: a positive number of neurons, or every neuron (`"all"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerNeurons {
    /// This many neurons, spread evenly (all of them when at least m).
    Count(usize),
    /// Every neuron: the exact mean over the m rows.
    All,
}

impl PowerNeurons {
    /// The default count: at m = 1000 the check costs 1/8 of following every neuron.
    pub const DEFAULT: usize = 128;

    /// The rows followed out of m (`None`: all of them).
    pub fn rows(self, m: usize) -> Option<Vec<usize>> {
        match self {
            Self::Count(p) => mim_metrics::power_iteration::neuron_subset(m, p),
            Self::All => None,
        }
    }

    /// How many rows are followed out of m.
    pub fn count(self, m: usize) -> usize {
        self.rows(m).map_or(m, |r| r.len())
    }

    /// Whether this is the default count (then left out of `config.toml`).
    pub fn is_default(&self) -> bool {
        *self == Self::Count(Self::DEFAULT)
    }
}

impl Serialize for PowerNeurons {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(p) => s.serialize_u64(*p as u64),
            Self::All => s.serialize_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for PowerNeurons {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PowerNeurons;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a positive number of neurons or \"all\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PowerNeurons, E> {
                match usize::try_from(v) {
                    Ok(p) if p > 0 => Ok(PowerNeurons::Count(p)),
                    _ => Err(E::custom(format!(
                        "invalid value `{v}`, expected a positive number of neurons or \"all\""
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PowerNeurons, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PowerNeurons, E> {
                match v {
                    "all" => Ok(PowerNeurons::All),
                    _ => Err(E::custom(format!(
                        "invalid value `{v}`, expected a positive number of neurons or \"all\""
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `[checkpoint]`: Burnpack checkpoints in `DIR/checkpoints/` for `mim train --resume DIR`.
/// A checkpoint is always written after stage 1 and after stage 2; `every = k > 0` adds one
/// every k stage-1 steps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Checkpoint every k stage-1 steps (0 = only after each stage).
    pub every: usize,
}

impl CheckpointConfig {
    /// True for the default (left out of `config.toml`, so sweep keys do not change).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Which training schedule a run uses (`method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The layer-wise algorithm: stage 1 then stage 2.
    #[default]
    Layerwise,
    /// DLS22's one gradient step: by default their algorithm as their code runs it
    /// ([`OneStepVariant::Dls22`]); `one_step.variant = "mim"` is mim's earlier preset (one
    /// stage-1 step with η1 = `one_step.lr_scale`·√d, β1 = 1/η1, the linear part of y removed,
    /// then stage 2).
    OneStep,
    /// Random features: no stage-1 step (rows of W random unit vectors), then stage 2.
    RandomFeatures,
    /// Both layers trained together by SGD/Adam (`[joint]`); no stage 2.
    Joint,
    /// No stage-1 step: the rows of W are set from the top-k eigenvectors V of the spectral
    /// estimator Σ̂_T on D1 (`[spectral]`, as in `mim spectral`), w_j ∝ Vᵀc_j/‖c_j‖ + ε·g_j
    /// with c_j ~ N(0, I_k), g_j ~ N(0, I_d/d), ε = `spectral.init_noise`, rows of unit norm;
    /// then stage 2.
    SpectralInit,
}

impl Method {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Layerwise => "layerwise",
            Method::OneStep => "one_step",
            Method::RandomFeatures => "random_features",
            Method::Joint => "joint",
            Method::SpectralInit => "spectral_init",
        }
    }
}

/// Which algorithm `method = "one_step"` runs (`one_step.variant`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OneStepVariant {
    /// DLS22 as the authors' `main.py` runs it ([`mim_train::one_step`]): paired init with
    /// w_j ~ N(0, I/d), b_j ~ N(0, 1) kept for the readout, a_j = ±1; labels minus C0 + C1ᵀx
    /// (estimated on D1) for the step, the readout, the validation and the test; one
    /// square-loss step W ← −∇W/rms_j‖∇w_j‖; ridge on the raw features of the same D1, no
    /// intercept, λ on the grid `one_step.lambda_*` picked on D2 (the validation set). Not
    /// used: `[stage1]`, `[stage2]`, `model.init_scale`, `one_step.lr_scale`.
    #[default]
    Dls22,
    /// mim's own preset (before issue 16): the `[stage1]` step from mim's init with
    /// η1 = `lr_scale`·√d, β1 = 1/η1 and y − β̂ᵀx, rows renormalised one by one, then
    /// `[stage2]` (biases re-drawn, standardised ridge with an intercept) on D2.
    Mim,
}

impl OneStepVariant {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            OneStepVariant::Dls22 => "dls22",
            OneStepVariant::Mim => "mim",
        }
    }
}

/// `[one_step]`: the DLS22 baseline.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OneStepConfig {
    /// η1 = lr_scale·√d (`variant = "mim"` only).
    pub lr_scale: f64,
    /// `dls22` (the authors' algorithm) or `mim` (mim's earlier preset).
    pub variant: OneStepVariant,
    /// Smallest λ of the readout's grid (`variant = "dls22"`; theirs 1e−10).
    pub lambda_min: f64,
    /// Largest λ of the grid (theirs 1e15).
    pub lambda_max: f64,
    /// Grid points, log-spaced from `lambda_min` to `lambda_max` (theirs 100).
    pub lambda_count: usize,
    /// Set by [`RunConfig::to_toml`] on its copy: write `lr_scale` alone (see there).
    #[serde(skip)]
    lr_scale_only: bool,
}

impl Default for OneStepConfig {
    fn default() -> Self {
        Self {
            lr_scale: 1.0,
            variant: OneStepVariant::Dls22,
            lambda_min: 1e-10,
            lambda_max: 1e15,
            lambda_count: 100,
            lr_scale_only: false,
        }
    }
}

impl OneStepConfig {
    /// Whether every key but `lr_scale` is at its default.
    fn only_lr_scale_set(&self) -> bool {
        *self
            == Self {
                lr_scale: self.lr_scale,
                ..Self::default()
            }
    }

    /// The readout's λ grid (`variant = "dls22"`).
    pub fn lambda_grid(&self) -> Vec<f64> {
        mim_train::one_step::geometric_grid(self.lambda_min, self.lambda_max, self.lambda_count)
    }

    /// Checks every field; the message names the field.
    fn validate(&self) -> Result<(), String> {
        let positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "one_step.{field} = {v}: must be positive and finite"
                ))
            }
        };
        positive("lr_scale", self.lr_scale)?;
        positive("lambda_min", self.lambda_min)?;
        positive("lambda_max", self.lambda_max)?;
        if self.lambda_max < self.lambda_min {
            return Err(format!(
                "one_step.lambda_max = {} is below one_step.lambda_min = {}: the λ grid runs from min to max",
                self.lambda_max, self.lambda_min
            ));
        }
        match self.lambda_count {
            0 => Err("one_step.lambda_count = 0: the λ grid needs at least one point".into()),
            k if k > 10_000 => Err(format!(
                "one_step.lambda_count = {k}: more than 10000 grid points is surely a typo"
            )),
            _ => Ok(()),
        }
    }
}

impl Serialize for OneStepConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("OneStepConfig", 5)?;
        st.serialize_field("lr_scale", &self.lr_scale)?;
        if self.lr_scale_only {
            for key in ["variant", "lambda_min", "lambda_max", "lambda_count"] {
                st.skip_field(key)?;
            }
        } else {
            st.serialize_field("variant", &self.variant)?;
            st.serialize_field("lambda_min", &self.lambda_min)?;
            st.serialize_field("lambda_max", &self.lambda_max)?;
            st.serialize_field("lambda_count", &self.lambda_count)?;
        }
        st.end()
    }
}

/// The whole run config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Master seed; every random draw derives from it.
    pub seed: u64,
    /// Training schedule.
    pub method: Method,
    /// Compute backend.
    pub backend: Backend,
    /// Float precision (`f64` only on CPU backends).
    pub dtype: Precision,
    /// CPU threads for the backend's thread pool (0 = all cores).
    pub threads: usize,
    /// Data.
    pub data: DataConfig,
    /// Network: the two-layer network, or a deeper one (`model.widths`).
    pub model: ModelConfig,
    /// Stage 1.
    pub stage1: Stage1Config,
    /// Stage 2.
    pub stage2: Stage2Config,
    /// The DLS22 one-step baseline (`method = "one_step"`).
    pub one_step: OneStepConfig,
    /// The joint-training baseline (`method = "joint"`).
    pub joint: JointConfig,
    /// Metrics.
    pub metrics: MetricsConfig,
    /// Checkpoints (`[checkpoint]`; omitted from `config.toml` when default).
    #[serde(skip_serializing_if = "CheckpointConfig::is_default")]
    pub checkpoint: CheckpointConfig,
    /// The spectral estimator (`[spectral]`): used by `method = "spectral_init"` and by
    /// `mim spectral`; omitted from `config.toml` when default.
    #[serde(skip_serializing_if = "SpectralConfig::is_default")]
    pub spectral: SpectralConfig,
    /// An explicit layer-wise schedule (`[[schedule]]`, in order). When given it is what
    /// runs; `method`, `[stage1]`, `[stage2]` and `[joint]` are then not used.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<StageConfig>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            method: Method::Layerwise,
            backend: Backend::Flex,
            dtype: Precision::F32,
            threads: 0,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            stage1: Stage1Config::default(),
            stage2: Stage2Config::default(),
            one_step: OneStepConfig::default(),
            joint: JointConfig::default(),
            metrics: MetricsConfig::default(),
            checkpoint: CheckpointConfig::default(),
            spectral: SpectralConfig::default(),
            schedule: Vec::new(),
        }
    }
}

/// A config that passed [`RunConfig::validate`], with every "auto" and size resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidConfig {
    /// The config as given (defaults filled in), written to the run folder as is.
    pub config: RunConfig,
    /// The parsed link.
    pub link: Link,
    /// n1.
    pub n1: usize,
    /// n2.
    pub n2: usize,
    /// n3 (the size of D3; used only by a `[[schedule]]` stage with `data = "D3"`).
    pub n3: usize,
    /// Stage 1 as it will run (T1, η1, β1, mode after the method's rules).
    pub stage1: Stage1Params,
    /// Remove the linear part of the stage-1 labels.
    pub remove_linear: bool,
    /// Stream the datasets (resolved from `data.streaming`).
    pub streaming: bool,
    /// `[spectral]` resolved against r, d and `[stage1]` (`Some` for `method = "spectral_init"`).
    pub spectral: Option<ResolvedSpectral>,
    /// Warnings to show (e.g. an activation outside the theory).
    pub warnings: Vec<String>,
}

/// A config that cannot be used (exit code 2). The message is one line naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A value echoed in an error: quoted with escapes (so it stays on one line), at most 80
/// characters.
fn show(s: &str) -> String {
    let q = format!("{s:?}");
    if q.chars().count() <= 80 {
        q
    } else {
        format!("{}…\"", q.chars().take(77).collect::<String>())
    }
}

/// Relative threshold below which the link's variance counts as zero (as in `mim_data::Target`).
const CONSTANT_LINK: f64 = 1e-12;

/// Degenerate targets, found from the exact moments of the link before any data exist: a
/// variance that overflows is an error; a constant link is an error with `normalize` (no scale)
/// or without noise (constant labels: nothing to learn, and every normalised error is 0/0),
/// and a warning with noise (the labels are pure noise).
fn check_link_variance(
    link: &Link,
    shown: &str,
    normalize: bool,
    noise: f64,
) -> Result<Option<String>, ConfigError> {
    let variance = match link.try_moments() {
        Ok(m) => m.variance,
        // Without normalisation nothing needs the moments of a nested formula.
        Err(_) if !normalize => return Ok(None),
        Err(err) => return Err(ConfigError(format!("data.link = {shown}: {err}"))),
    };
    if !variance.is_finite() {
        return Err(ConfigError(format!(
            "data.link = {shown}: Var g overflows f64 (exponents too large); use smaller powers"
        )));
    }
    if variance > CONSTANT_LINK * link.variance_reference() {
        return Ok(None);
    }
    if normalize {
        return Err(ConfigError(format!(
            "data.link = {shown}: g is constant (variance 0), so data.normalize = true cannot scale it to unit variance"
        )));
    }
    if noise == 0.0 {
        return Err(ConfigError(format!(
            "data.link = {shown}: g is constant and data.noise = 0, so every label is the same number; there is nothing to learn"
        )));
    }
    Ok(Some(format!(
        "data.link = {shown} is constant: the labels are pure noise (data.noise = {noise})"
    )))
}

/// Parses TOML text into a table, with a one-line error naming the file and line.
pub fn parse_toml(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
        ConfigError(one_line(&format!(
            "{origin}: malformed TOML{at}: {}",
            e.message()
        )))
    })
}

/// Reads a config file into a table.
pub fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("config {}: cannot read: {e}", path.display())))?;
    parse_toml(&text, &format!("config {}", path.display()))
}

/// Keys that are alternatives to each other: setting one removes the other.
const ALTERNATIVES: [(&str, &str); 2] = [("data.n1", "data.alpha1"), ("data.n2", "data.alpha2")];

/// Parses an override value as a TOML value; anything that is not valid TOML is a string
/// (so `--set data.link=h4(z1)+h4(z2)` needs no quotes).
fn parse_value(text: &str) -> toml::Value {
    match format!("v = {text}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.into()),
    }
}

/// Applies one `key=value` override to the table, creating sections as needed.
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    override_fields(table, assignment).map_err(|err| ConfigError(one_line(&err.0)))
}

fn override_fields(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| ConfigError(format!("--set {assignment}: expected key=value")))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError(format!(
            "--set {assignment}: malformed key `{key}`"
        )));
    }
    for (a, b) in ALTERNATIVES {
        let other = if key == a {
            Some(b)
        } else if key == b {
            Some(a)
        } else {
            None
        };
        if let Some(other) = other {
            let (sec, field) = other.split_once('.').expect("dotted");
            if let Some(toml::Value::Table(t)) = table.get_mut(sec) {
                t.remove(field);
            }
        }
    }
    let mut cur = table;
    let mut i = 0;
    while i + 1 < parts.len() {
        let entry = cur
            .entry(parts[i].to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // An array of tables (`[[schedule]]`) is entered by a 0-based index: schedule.1.steps.
        let list = matches!(entry, toml::Value::Array(_)) && i + 2 < parts.len();
        let entry = if list {
            let toml::Value::Array(items) = entry else {
                unreachable!("checked above")
            };
            let len = items.len();
            let k: usize = parts[i + 1].parse().map_err(|_| {
                ConfigError(format!(
                    "--set {assignment}: `{}` is a list; give an index 0..{len} after it",
                    parts[..=i].join(".")
                ))
            })?;
            i += 1;
            items.get_mut(k).ok_or_else(|| {
                ConfigError(format!(
                    "--set {assignment}: `{}` has {len} entries (indices 0..{len})",
                    parts[..i].join(".")
                ))
            })?
        } else {
            entry
        };
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(ConfigError(format!(
                    "--set {assignment}: `{}` is not a section",
                    parts[..=i].join(".")
                )))
            }
        };
        i += 1;
    }
    cur.insert(
        parts[parts.len() - 1].to_string(),
        parse_value(value.trim()),
    );
    Ok(())
}

impl RunConfig {
    /// Builds a config from a table (unknown keys and wrong types are errors naming the key).
    pub fn from_table(table: toml::Table) -> Result<RunConfig, ConfigError> {
        let value = toml::Value::Table(table);
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = one_line(&e.inner().to_string());
            ConfigError(one_line(&if path == "." || path.is_empty() {
                inner
            } else {
                format!("{path}: {inner}")
            }))
        })
    }

    /// Loads `path` (or the defaults when `None`) and applies the overrides in order.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<RunConfig, ConfigError> {
        let mut table = match path {
            Some(p) => read_table(p)?,
            None => toml::Table::new(),
        };
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        Self::from_table(table)
    }

    /// The resolved config as TOML (re-runnable as is).
    ///
    /// The `[one_step]` keys other than `lr_scale` (added with `one_step.variant`) are written
    /// only for `method = "one_step"` or when set away from their defaults: every other run's
    /// text, hence its sweep key, is what it was before them, while a `one_step` run's text
    /// (and key) changed with its algorithm.
    pub fn to_toml(&self) -> String {
        if self.method != Method::OneStep && self.one_step.only_lr_scale_set() {
            let mut shown = self.clone();
            shown.one_step.lr_scale_only = true;
            return toml::to_string(&shown).expect("config serialises");
        }
        toml::to_string(self).expect("config serialises")
    }

    /// Whether this config runs DLS22's own algorithm: `method = "one_step"` with
    /// `one_step.variant = "dls22"` (the default) and no `[[schedule]]`.
    pub fn is_dls22(&self) -> bool {
        self.schedule.is_empty()
            && self.method == Method::OneStep
            && self.one_step.variant == OneStepVariant::Dls22
    }

    /// Checks every field and resolves sizes and "auto" values. The error is one line naming
    /// the field (newlines in echoed values are escaped).
    pub fn validate(&self) -> Result<ValidConfig, ConfigError> {
        self.validate_fields(true)
            .map_err(|err| ConfigError(one_line(&err.0)))
    }

    /// [`RunConfig::validate`] for a network of the caller's own
    /// ([`crate::run::train_network`]): the `[[schedule]]` is not checked against `[model]`
    /// (the caller's network is checked when training starts).
    pub fn validate_custom(&self) -> Result<ValidConfig, ConfigError> {
        self.validate_fields(false)
            .map_err(|err| ConfigError(one_line(&err.0)))
    }

    fn validate_fields(&self, builtin_model: bool) -> Result<ValidConfig, ConfigError> {
        let e = |s: String| ConfigError(s);
        let data = &self.data;
        if data.d == 0 {
            return Err(e("data.d = 0: must be at least 1".into()));
        }
        if data.r == 0 {
            return Err(e("data.r = 0: must be at least 1".into()));
        }
        if data.r > data.d {
            return Err(e(format!(
                "data.r = {} exceeds data.d = {}: U must have orthonormal rows",
                data.r, data.d
            )));
        }
        match data.sparsity {
            Some(0) => {
                return Err(e(
                    "data.sparsity = 0: the support needs at least one coordinate (omit the key for a dense θ*)".into(),
                ))
            }
            Some(k) if k > data.d => {
                return Err(e(format!(
                    "data.sparsity = {k} exceeds data.d = {}: the support has at most d coordinates",
                    data.d
                )))
            }
            Some(k) if data.r != 1 => {
                return Err(e(format!(
                    "data.sparsity = {k}: a sparse θ* is for single-index targets (data.r = 1, here {})",
                    data.r
                )))
            }
            _ => {}
        }
        if !(data.noise.is_finite() && data.noise >= 0.0) {
            return Err(e(format!(
                "data.noise = {}: must be ≥ 0 and finite",
                data.noise
            )));
        }
        if data.n_test < 2 {
            return Err(e(format!(
                "data.n_test = {}: need at least 2 test samples",
                data.n_test
            )));
        }
        let shown = show(&data.link);
        let link =
            Link::parse(&data.link).map_err(|err| e(format!("data.link = {shown}: {err}")))?;
        link.check_indices(data.r)
            .map_err(|err| e(format!("data.link = {shown}: {err}")))?;
        if let Some(h) = link.hierarchical() {
            if h.k != data.r {
                return Err(e(format!(
                    "data.r = {}: data.link = {shown} has K = {} directions; set data.r = {}",
                    data.r, h.k, h.k
                )));
            }
        }
        let link_warning = check_link_variance(&link, &shown, data.normalize, data.noise)?;
        let n1 = resolve_size("1", data.n1, data.alpha1, data.d).map_err(e)?;
        let n2 = resolve_size("2", data.n2, data.alpha2, data.d).map_err(e)?;
        let n3 = resolve_size("3", data.n3, data.alpha3, data.d).map_err(e)?;
        if n2 < 3 {
            return Err(e(if self.is_dls22() {
                format!("data.n2 = {n2}: D2 is the validation set of one_step.variant = \"dls22\" (λ is picked on it); it needs at least 3 samples")
            } else {
                format!("data.n2 = {n2}: stage 2 needs at least 3 samples")
            }));
        }
        self.model.validate().map_err(|err| e(err.to_string()))?;
        self.stage1.validate().map_err(e)?;
        self.stage2.validate().map_err(e)?;
        self.joint.validate().map_err(e)?;
        self.one_step.validate().map_err(e)?;
        let dls22 = self.is_dls22();
        if dls22 && n1 < 2 {
            return Err(e(format!(
                "data.n1 = {n1}: one_step.variant = \"dls22\" estimates C0 and C1 and fits the readout on D1; it needs at least 2 samples"
            )));
        }
        if self.dtype == Precision::F64 && self.backend == Backend::Wgpu {
            return Err(e("dtype = \"f64\" with backend = \"wgpu\": f64 transcendental functions on that path return wrong numbers silently; use dtype = \"f32\" or a CPU backend".into()));
        }
        if self.threads > 1024 {
            return Err(e(format!(
                "threads = {}: more than 1024 threads is surely a typo",
                self.threads
            )));
        }
        let mut warnings = Vec::new();
        if let Some(w) = self.model.activation.theory_violation() {
            warnings.push(w);
        }
        warnings.extend(link_warning);
        if n1 < data.d && self.method != Method::RandomFeatures {
            warnings.push(format!(
                "n1 = {n1} < d = {}: the stage-1 matrix Σ̂_T has rank ≤ n1, so its top directions are mostly noise (α1 < 1)",
                data.d
            ));
        }
        if dls22 && n1 < self.model.width {
            warnings.push(format!(
                "n1 = {n1} < width = {}: the one_step readout (ridge on D1) has more coefficients than samples; only the ridge penalty λ keeps it determined",
                self.model.width
            ));
        }
        if n2 < self.model.width && self.method != Method::Joint && !dls22 {
            warnings.push(match self.stage2.ridge_lambda {
                mim_train::Auto::Value(0.0) => format!(
                    "n2 = {n2} < width = {}: ridge with λ = 0 is singular",
                    self.model.width
                ),
                _ => format!(
                    "n2 = {n2} < width = {}: the stage-2 readout has more coefficients than samples; only the ridge penalty λ keeps it determined (expect it to interpolate D2)",
                    self.model.width
                ),
            });
        }
        let s1 = &self.stage1;
        let mut stage1 = Stage1Params {
            steps: s1.resolved_steps(data.d),
            lr: s1.lr,
            weight_decay: s1.resolved_weight_decay(),
            loss: s1.loss(),
            mode: s1.mode,
            gradient: match (s1.gradient, self.backend) {
                (Gradient::Auto, Backend::Wgpu) => Gradient::ClosedForm,
                (Gradient::Auto, _) => Gradient::Fused,
                (Gradient::Fused, Backend::Wgpu) => {
                    return Err(e("stage1.gradient = \"fused\" runs on host storage: use it with a CPU backend (flex, ndarray), or \"auto\"".into()))
                }
                (g, _) => g,
            },
            init_scale: self.model.init_scale,
        };
        if stage1.steps > 100_000 {
            return Err(e(format!(
                "stage1.steps_c = {}: gives T1 = {} steps; more than 100000 is surely a typo",
                s1.steps_c, stage1.steps
            )));
        }
        let mut remove_linear = s1.remove_linear;
        match self.method {
            Method::Layerwise | Method::Joint => {}
            Method::OneStep => {
                stage1.steps = 1;
                stage1.lr = self.one_step.lr_scale * (data.d as f64).sqrt();
                stage1.weight_decay = 1.0 / stage1.lr;
                remove_linear = true;
            }
            Method::RandomFeatures | Method::SpectralInit => {
                stage1.steps = 0;
                stage1.mode = Mode::Normalized;
            }
        }
        // Resolved for every method, so a bad `[spectral]` never passes silently.
        let spectral = self
            .spectral
            .resolve(data.r, data.d, &self.stage1.labels())
            .map_err(e)?;
        let dtype_bytes = if self.dtype == Precision::F64 { 8 } else { 4 };
        let bytes = crate::streaming::in_memory_bytes(
            data.d,
            n1,
            n2,
            data.n_test,
            self.model.width,
            dtype_bytes,
        );
        let streaming = match data.streaming {
            Streaming::On => true,
            Streaming::Off => false,
            Streaming::Auto => {
                crate::streaming::physical_memory_bytes().is_some_and(|ram| bytes > 0.5 * ram)
            }
        };
        if streaming && self.backend == Backend::Wgpu {
            return Err(e(format!(
                "data.streaming: the data need ≈ {:.1} GiB in memory and streaming runs on CPU backends only; use --backend flex or smaller sizes",
                bytes / (1u64 << 30) as f64
            )));
        }
        if streaming && dls22 {
            return Err(e(format!("data.streaming: method = \"one_step\" with one_step.variant = \"dls22\" needs D1, D2 and the test set in memory (≈ {:.1} GiB); use data.streaming = \"off\", smaller sizes or one_step.variant = \"mim\"", bytes / (1u64 << 30) as f64)));
        }
        if streaming && matches!(self.method, Method::Joint | Method::SpectralInit) {
            return Err(e(format!("data.streaming: method = \"{}\" needs D1 in memory; use data.streaming = \"off\" or smaller sizes", self.method.name())));
        }
        if streaming {
            stage1.gradient = Gradient::Fused;
        }
        for (name, formula) in &data.features {
            let link = Link::parse(formula)
                .map_err(|err| e(format!("data.features.{name} = {}: {err}", show(formula))))?;
            link.check_indices(data.r)
                .map_err(|err| e(format!("data.features.{name} = {}: {err}", show(formula))))?;
        }
        if stage1.mode == mim_train::Mode::Orthonormal && self.model.width / 2 > data.d {
            return Err(e(format!(
                "stage1.mode = \"orthonormal\": each half of W (model.width/2 = {} rows) must fit in data.d = {} dimensions",
                self.model.width / 2,
                data.d
            )));
        }
        if self.metrics.spectral_twin
            && (streaming || !self.schedule.is_empty() || self.method == Method::Joint || dls22)
        {
            return Err(e("metrics.spectral_twin: measured for the two-layer methods with D1 in memory (not joint, one_step.variant = \"dls22\", [[schedule]] or streamed runs)".into()));
        }
        if self.schedule.is_empty() && self.model.mlp.is_some() {
            return Err(e("model.widths: a deeper network is trained by an explicit [[schedule]] (the methods are two-layer presets)".into()));
        }
        if !self.schedule.is_empty() {
            if streaming {
                return Err(e("data.streaming: a [[schedule]] runs with its datasets in memory; use data.streaming = \"off\" or smaller sizes".into()));
            }
            for (k, stage) in self.schedule.iter().enumerate() {
                stage.validate(k).map_err(e)?;
            }
            if builtin_model {
                crate::schedule_run::check_schedule(self).map_err(e)?;
            }
        }
        Ok(ValidConfig {
            config: self.clone(),
            link,
            n1,
            n2,
            n3,
            stage1,
            remove_linear,
            streaming,
            spectral: (self.method == Method::SpectralInit).then_some(spectral),
            warnings,
        })
    }
}

impl ValidConfig {
    /// The run folder's `config.toml`: the resolved config and, for a method, its expansion
    /// into an explicit schedule as TOML comments (they change neither what the file runs nor
    /// its sweep key; uncommented, that block runs the same stages, as `schedule.toml` does).
    pub fn config_text(&self) -> String {
        let mut text = self.config.to_toml();
        if self.config.schedule.is_empty() {
            if let Some(schedule) = self.expanded_schedule() {
                let block = RunConfig {
                    schedule,
                    ..RunConfig::default()
                }
                .to_toml();
                let start = block.find("[[schedule]]").unwrap_or(0);
                text.push_str(&format!(
                    "\n# method = \"{}\" is this schedule (the run folder's schedule.toml runs it):\n",
                    self.config.method.name()
                ));
                for line in block[start..].lines() {
                    text.push_str(&format!("# {line}\n"));
                }
            }
        }
        text
    }

    /// The method as an explicit `[[schedule]]` (`None` for `spectral_init`, whose first layer
    /// is set from eigenvectors rather than trained, and for `one_step` with
    /// `one_step.variant = "dls22"`, whose init, rescale and readout have no schedule keys):
    /// `layerwise`, `one_step` (`variant = "mim"`) and
    /// `random_features` are GD on `w` over D1 (`stage1`, with T1, η1, β1 and the label
    /// preprocessing as resolved) then the biases re-drawn and the ridge readout on D2
    /// (`stage2`); `joint` is one Adam/SGD stage on every group. Run through the schedule
    /// engine it gives the same network as the method.
    pub fn expanded_schedule(&self) -> Option<Vec<StageConfig>> {
        let cfg = &self.config;
        let s1 = &cfg.stage1;
        let label_keys = StageConfig {
            loss: s1.loss,
            huber_delta: s1.huber_delta,
            l1_smoothing: s1.l1_smoothing,
            ..StageConfig::default()
        };
        if cfg.is_dls22() {
            // Paired Gaussian init, the global rms rescale and the raw ridge on a validation
            // set have no schedule keys.
            return None;
        }
        match cfg.method {
            Method::SpectralInit => None,
            Method::Joint => Some(vec![StageConfig {
                name: "joint".into(),
                train: ["w", "b", "a", "c"].map(String::from).to_vec(),
                data: match cfg.joint.batches {
                    mim_train::Batches::Fresh => "fresh".into(),
                    mim_train::Batches::Reused => "D1".into(),
                },
                steps: cfg.joint.steps,
                optimizer: match cfg.joint.optimizer {
                    mim_train::JointOptimizer::Adam => mim_train::StageOptimizer::Adam,
                    mim_train::JointOptimizer::Sgd => mim_train::StageOptimizer::Sgd,
                },
                lr: cfg.joint.lr,
                batch_size: cfg.joint.batch_size,
                eval_every: cfg.joint.eval_every,
                ..label_keys
            }]),
            Method::Layerwise | Method::OneStep | Method::RandomFeatures => {
                let p = &self.stage1;
                let stage1 = StageConfig {
                    name: "stage1".into(),
                    train: vec!["w".into()],
                    data: "D1".into(),
                    steps: p.steps,
                    lr: p.lr,
                    weight_decay: mim_train::WeightDecay::Value(p.weight_decay),
                    mode: p.mode,
                    center_labels: s1.center_labels,
                    center_by: s1.center_by,
                    remove_linear: self.remove_linear,
                    gradient: s1.gradient,
                    ..label_keys
                };
                let reinit = match cfg.stage2.bias {
                    mim_train::BiasInit::Gaussian => Some(mim_model::Reinit::Gaussian),
                    mim_train::BiasInit::Uniform => Some(mim_model::Reinit::Uniform),
                    mim_train::BiasInit::Zero => Some(mim_model::Reinit::Zero),
                    mim_train::BiasInit::Keep => None,
                };
                let stage2 = StageConfig {
                    name: "stage2".into(),
                    data: "D2".into(),
                    solver: Some(cfg.stage2.solver),
                    ridge_lambda: cfg.stage2.ridge_lambda,
                    reinit: reinit
                        .map(|r| BTreeMap::from([("b".to_string(), r)]))
                        .unwrap_or_default(),
                    ..StageConfig::default()
                };
                Some(vec![stage1, stage2])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, sets: &[&str]) -> Result<RunConfig, ConfigError> {
        let mut t = parse_toml(text, "test")?;
        for s in sets {
            apply_override(&mut t, s)?;
        }
        RunConfig::from_table(t)
    }

    #[test]
    fn overrides_by_dotted_path() {
        let c = load(
            "seed = 3\n[data]\nd = 50\n",
            &[
                "stage1.steps=8",
                "data.link=h4(z1)+h4(z2)",
                "model.width=64",
            ],
        )
        .unwrap();
        assert_eq!(c.seed, 3);
        assert_eq!(c.data.d, 50);
        assert_eq!(c.stage1.steps, mim_train::Auto::Value(8));
        assert_eq!(c.data.link, "h4(z1)+h4(z2)");
        assert_eq!(c.model.width, 64);
    }

    /// `data.generator`: v1 when absent (and then absent from the config text, so earlier
    /// runs' sweep keys are unchanged), v2 when named, written back when set.
    #[test]
    fn generator_is_v1_unless_named() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.data.generator, Generator::V1);
        assert!(!c.to_toml().contains("generator"));
        let c = load("[data]\ngenerator = \"v2\"\n", &[]).unwrap();
        assert_eq!(c.data.generator, Generator::V2);
        assert!(c.to_toml().contains("generator = \"v2\""));
        let back = load(&c.to_toml(), &[]).unwrap();
        assert_eq!(back.data.generator, Generator::V2);
        let c = load("", &["data.generator=v1"]).unwrap();
        assert_eq!(c.data.generator, Generator::V1);
    }

    /// `metrics.power_neurons`: a count or "all"; left out of the config text at its
    /// default (so earlier runs' sweep keys are unchanged), written back when set.
    #[test]
    fn power_neurons_reads_a_count_or_all() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.metrics.power_neurons, PowerNeurons::Count(128));
        assert!(!c.to_toml().contains("power_neurons"));
        let c = load("[metrics]\npower_neurons = \"all\"\n", &[]).unwrap();
        assert_eq!(c.metrics.power_neurons, PowerNeurons::All);
        assert_eq!(c.metrics.power_neurons.rows(1000), None);
        let c = load("", &["metrics.power_neurons=64"]).unwrap();
        assert_eq!(c.metrics.power_neurons.count(1000), 64);
        assert_eq!(c.metrics.power_neurons.count(40), 40);
        let back = load(&c.to_toml(), &[]).unwrap();
        assert_eq!(back.metrics.power_neurons, PowerNeurons::Count(64));
    }

    #[test]
    fn size_forms_replace_each_other_but_not_in_one_file() {
        let both = "[data]\nn1 = 100\nalpha1 = 2.0\n";
        let err = load(both, &[]).unwrap().validate().unwrap_err();
        assert!(err.0.contains("data.n1 and data.alpha1"), "{err}");
        let c = load(both, &["data.alpha1=4"]).unwrap().validate().unwrap();
        assert_eq!(c.n1, 400);
        let c = load("[data]\nalpha2 = 3\n", &["data.n2=77"])
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.n2, 77);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("", &["data.r=5", "data.d=3"], "data.r"),
            ("", &["model.width=7"], "model.width"),
            ("", &["model.width=0"], "model.width"),
            ("", &["stage1.lr=nan"], "stage1.lr"),
            ("", &["data.link=cos(z1)"], "data.link"),
            ("", &["data.link=h2(z3)"], "data.link"),
            ("", &["model.activation=swish"], "model.activation"),
            ("", &["backend=cuda"], "backend"),
            ("", &["data.foo=1"], "data"),
            ("", &["data.n1=-5"], "data.n1"),
            ("", &["dtype=f64", "backend=wgpu"], "dtype"),
            ("", &["stage1.steps=many"], "stage1.steps"),
            (
                "",
                &["data.link=hierarchical(K=3, gamma=1, g=h2)", "data.r=4"],
                "data.r",
            ),
            (
                "",
                &["data.link=hierarchical(K=5, gamma=1, g=h2)", "data.r=4"],
                "data.link",
            ),
            ("", &["one_step.lambda_count=0"], "one_step.lambda_count"),
            ("", &["one_step.lambda_min=0"], "one_step.lambda_min"),
            ("", &["one_step.lambda_min=nan"], "one_step.lambda_min"),
            ("", &["one_step.lambda_max=1e-12"], "one_step.lambda_max"),
            ("", &["one_step.lr_scale=-1"], "one_step.lr_scale"),
            ("", &["one_step.variant=dls23"], "one_step.variant"),
            ("", &["method=one_step", "data.n2=0"], "data.n2"),
            ("", &["method=one_step", "data.n2=-3"], "data.n2"),
            ("", &["method=one_step", "data.n1=1"], "data.n1"),
            (
                "",
                &["method=one_step", "data.streaming=on"],
                "data.streaming",
            ),
            (
                "",
                &["method=one_step", "metrics.spectral_twin=true"],
                "metrics.spectral_twin",
            ),
            ("", &["metrics.power_neurons=0"], "metrics.power_neurons"),
            ("", &["data.generator=v3"], "data.generator"),
            ("", &["metrics.power_neurons=-4"], "metrics.power_neurons"),
            ("", &["metrics.power_neurons=some"], "metrics.power_neurons"),
        ];
        for (text, sets, field) in cases {
            let err = load(text, sets)
                .and_then(|c| c.validate().map(|_| ()))
                .unwrap_err();
            assert!(err.0.contains(field), "{sets:?}: {err}");
            assert!(!err.0.contains('\n'), "multi-line: {err}");
        }
        let err = parse_toml("[data\nd = 3", "x.toml").unwrap_err();
        assert!(
            err.0.contains("malformed TOML") && !err.0.contains('\n'),
            "{err}"
        );
    }

    /// The `[one_step]` keys of the dls22 variant appear in the config text (the sweep key)
    /// of `one_step` runs and of runs that set them, never in the text of other runs, which is
    /// what it was before them; every form reads back to the same config.
    #[test]
    fn one_step_keys_are_written_where_they_matter() {
        let section = |c: &RunConfig| {
            let text = c.to_toml();
            let start = text.find("[one_step]").expect("a [one_step] section");
            let rest = &text[start..];
            let end = rest[1..].find("\n[").map_or(rest.len(), |k| k + 1);
            rest[..end].trim().to_string()
        };
        let layerwise = load("", &[]).unwrap();
        assert_eq!(section(&layerwise), "[one_step]\nlr_scale = 1.0");
        let scaled = load("", &["one_step.lr_scale=2"]).unwrap();
        assert_eq!(section(&scaled), "[one_step]\nlr_scale = 2.0");
        let one_step = load("", &["method=one_step"]).unwrap();
        assert_eq!(
            section(&one_step),
            "[one_step]\nlr_scale = 1.0\nvariant = \"dls22\"\nlambda_min = 0.0000000001\nlambda_max = 1000000000000000.0\nlambda_count = 100"
        );
        let mim = load("", &["method=one_step", "one_step.variant=mim"]).unwrap();
        assert!(section(&mim).contains("variant = \"mim\""));
        let set = load("", &["one_step.lambda_count=7"]).unwrap();
        assert!(
            section(&set).contains("lambda_count = 7"),
            "{}",
            section(&set)
        );
        for c in [layerwise, scaled, one_step, mim, set] {
            let again = RunConfig::from_table(parse_toml(&c.to_toml(), "x").unwrap()).unwrap();
            assert_eq!(c, again);
        }
    }

    /// The dls22 variant has no explicit schedule; `variant = "mim"` expands as before.
    #[test]
    fn only_the_mim_variant_expands_into_a_schedule() {
        let dls22 = load("", &["method=one_step"]).unwrap().validate().unwrap();
        assert!(dls22.config.is_dls22());
        assert!(dls22.expanded_schedule().is_none());
        assert!(!dls22.config_text().contains("[[schedule]]"));
        assert_eq!(dls22.config.one_step.lambda_grid().len(), 100);
        let mim = load("", &["method=one_step", "one_step.variant=mim"])
            .unwrap()
            .validate()
            .unwrap();
        assert!(!mim.config.is_dls22());
        assert_eq!(mim.expanded_schedule().map(|s| s.len()), Some(2));
        // An explicit [[schedule]] runs instead of any method.
        let with_schedule = load(
            "method = \"one_step\"\n[[schedule]]\nname = \"s\"\ntrain = [\"w\"]\nsteps = 1\n",
            &[],
        )
        .unwrap();
        assert!(!with_schedule.is_dls22());
    }

    #[test]
    fn resolved_config_round_trips() {
        let c = load("[data]\nalpha1 = 4\n", &["stage1.weight_decay=0.5"]).unwrap();
        let again = RunConfig::from_table(parse_toml(&c.to_toml(), "x").unwrap()).unwrap();
        assert_eq!(c, again);
    }
}
