//! Validated hyper-parameters of the two stages, as they appear under `[stage1]` and
//! `[stage2]` of a run config. Every field has a default here, the one source of truth.

use crate::loss::Loss;
pub use mim_data::loss::{CenterBy, LossName, Stage1Labels};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A value or the keyword `"auto"` (e.g. `steps = "auto"`, `ridge_lambda = "auto"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Auto<T> {
    /// Chosen by the program (documented per field).
    Auto,
    /// Given explicitly.
    Value(T),
}

/// Number of stage-1 steps T1: an integer, or `"auto"` = ⌈c·√ln d⌉ with c = `steps_c`.
pub type Steps = Auto<usize>;

/// Stage-1 weight decay β1: a number, or `"inverse_lr"` (β1 = 1/η1: pure power iteration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightDecay {
    /// β1 = 1/η1.
    InverseLr,
    /// β1 given.
    Value(f64),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Int(i64),
    Float(f64),
    Str(String),
}

fn raw_number(raw: &Raw) -> Option<f64> {
    match *raw {
        Raw::Int(i) => Some(i as f64),
        Raw::Float(f) => Some(f),
        Raw::Str(_) => None,
    }
}

impl<'de> Deserialize<'de> for Auto<usize> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Raw::deserialize(d)
            .map_err(|_| de::Error::custom("expected an integer ≥ 0 or \"auto\""))?
        {
            Raw::Str(s) if s == "auto" => Ok(Auto::Auto),
            Raw::Int(i) if i >= 0 => Ok(Auto::Value(i as usize)),
            Raw::Int(i) => Err(de::Error::custom(format!(
                "{i} is negative; expected an integer ≥ 0 or \"auto\""
            ))),
            Raw::Float(f) => Err(de::Error::custom(format!(
                "{f} is not an integer; expected an integer ≥ 0 or \"auto\""
            ))),
            Raw::Str(s) => Err(de::Error::custom(format!(
                "\"{s}\": expected an integer ≥ 0 or \"auto\""
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Auto<f64> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw =
            Raw::deserialize(d).map_err(|_| de::Error::custom("expected a number or \"auto\""))?;
        match (&raw, raw_number(&raw)) {
            (Raw::Str(s), _) if s == "auto" => Ok(Auto::Auto),
            (_, Some(v)) => Ok(Auto::Value(v)),
            (Raw::Str(s), _) => Err(de::Error::custom(format!(
                "\"{s}\": expected a number or \"auto\""
            ))),
            _ => unreachable!("numbers handled above"),
        }
    }
}

impl<T: Serialize> Serialize for Auto<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Auto::Auto => s.serialize_str("auto"),
            Auto::Value(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for WeightDecay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Raw::deserialize(d)
            .map_err(|_| de::Error::custom("expected a number or \"inverse_lr\""))?;
        match (&raw, raw_number(&raw)) {
            (Raw::Str(s), _) if s == "inverse_lr" => Ok(WeightDecay::InverseLr),
            (_, Some(v)) => Ok(WeightDecay::Value(v)),
            (Raw::Str(s), _) => Err(de::Error::custom(format!(
                "\"{s}\": expected a number or \"inverse_lr\""
            ))),
            _ => unreachable!("numbers handled above"),
        }
    }
}

impl Serialize for WeightDecay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WeightDecay::InverseLr => s.serialize_str("inverse_lr"),
            WeightDecay::Value(v) => v.serialize(s),
        }
    }
}

impl<T: fmt::Display> fmt::Display for Auto<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auto::Auto => f.write_str("auto"),
            Auto::Value(v) => v.fmt(f),
        }
    }
}

/// How stage 1 controls the scale of W.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Exactly W ← W − η1 (∇_W L̂ + β1 W); nothing else.
    Literal,
    /// The update, then each row rescaled to norm ε0; after the last step to norm 1.
    Normalized,
    /// The update, then the rows of each half of the matrix (rows j < m/2 and j ≥ m/2: the
    /// two readout signs of the ±-paired symmetric init) orthonormalised by Gram–Schmidt in
    /// row order and scaled to norm ε0; after the last step to norm 1. Each half's row span
    /// then follows subspace iteration, which per-row rescaling cannot resolve past the top
    /// eigenvector in floating point (seed 003's GD twin of the spectral estimator). Needs
    /// m/2 ≤ d; the rows go through the host every step.
    Orthonormal,
}

impl Mode {
    /// Whether rows are projected after each step (to norm ε0, or orthonormalised).
    pub fn projects(self) -> bool {
        self != Mode::Literal
    }
}

/// How the stage-1 gradient is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gradient {
    /// The fastest path for the backend: `fused` on CPU backends, `closed_form` on wgpu.
    Auto,
    /// The closed form in one fused pass over row blocks on host storage (CPU backends;
    /// see [`crate::fused`]).
    Fused,
    /// Burn autodiff through the loss, with a, b, c frozen.
    Autodiff,
    /// The closed form G = (1/n) [ℓ'(f, y) ⊙ σ'(Z) ⊙ a]ᵀ X (paper §3).
    ClosedForm,
}

/// `[stage1]`: first-layer training on D1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stage1Config {
    /// T1, or `"auto"` = ⌈steps_c·√ln d⌉.
    pub steps: Steps,
    /// The constant c of `steps = "auto"`.
    pub steps_c: f64,
    /// η1 > 0.
    pub lr: f64,
    /// β1 ≥ 0, or `"inverse_lr"`.
    pub weight_decay: WeightDecay,
    /// The loss ℓ.
    pub loss: LossName,
    /// δ of the Huber loss.
    pub huber_delta: f64,
    /// s of the smoothed ℓ1 loss √(r² + s²) − s.
    pub l1_smoothing: f64,
    /// Scale control.
    pub mode: Mode,
    /// Centre the stage-1 labels (by [`CenterBy`]).
    pub center_labels: bool,
    /// What centring subtracts: the mean, or the loss's location (mean T = 0).
    #[serde(skip_serializing_if = "CenterBy::is_default")]
    pub center_by: CenterBy,
    /// Also remove the linear part of the labels, y ← y − β̂ᵀx with β̂ = (1/n1) Σ y_i x_i
    /// (DLS22's preprocessing; always on for `method = "one_step"`).
    pub remove_linear: bool,
    /// Gradient path.
    pub gradient: Gradient,
}

impl Default for Stage1Config {
    fn default() -> Self {
        Self {
            steps: Auto::Auto,
            steps_c: 2.0,
            lr: 1.0,
            weight_decay: WeightDecay::InverseLr,
            loss: LossName::Huber,
            huber_delta: 1.0,
            l1_smoothing: 0.1,
            mode: Mode::Normalized,
            center_labels: true,
            center_by: CenterBy::Mean,
            remove_linear: false,
            gradient: Gradient::Auto,
        }
    }
}

/// `v` if positive and finite; else the error naming `field`.
pub(crate) fn positive(field: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{field} = {v}: must be positive and finite"))
    }
}

impl WeightDecay {
    /// β as a number for step size `lr` (`inverse_lr`: β = 1/η).
    pub fn resolve(self, lr: f64) -> f64 {
        match self {
            WeightDecay::InverseLr => 1.0 / lr,
            WeightDecay::Value(b) => b,
        }
    }

    /// Checks a given β (≥ 0 and finite); the error names `field`.
    pub(crate) fn check(self, field: &str) -> Result<(), String> {
        match self {
            WeightDecay::Value(b) if !(b.is_finite() && b >= 0.0) => Err(format!(
                "{field} = {b}: must be ≥ 0 and finite, or \"inverse_lr\""
            )),
            _ => Ok(()),
        }
    }
}

/// Checks a given ridge λ (≥ 0 and finite, or `"auto"`); the error names `field`.
pub(crate) fn check_ridge_lambda(field: &str, lambda: Auto<f64>) -> Result<(), String> {
    match lambda {
        Auto::Value(l) if !(l.is_finite() && l >= 0.0) => Err(format!(
            "{field} = {l}: must be ≥ 0 and finite, or \"auto\""
        )),
        _ => Ok(()),
    }
}

impl Stage1Config {
    /// T1 for input dimension d: the given number, or ⌈c·√ln d⌉.
    pub fn resolved_steps(&self, d: usize) -> usize {
        match self.steps {
            Auto::Value(t) => t,
            Auto::Auto => (self.steps_c * (d.max(2) as f64).ln().sqrt()).ceil() as usize,
        }
    }

    /// β1 as a number.
    pub fn resolved_weight_decay(&self) -> f64 {
        self.weight_decay.resolve(self.lr)
    }

    /// What `center_labels` subtracts: `None` without centring, else [`Stage1Config::center_by`].
    pub fn centering(&self) -> Option<CenterBy> {
        self.center_labels.then_some(self.center_by)
    }

    /// The loss with its parameter.
    pub fn loss(&self) -> Loss {
        self.loss.with(self.huber_delta, self.l1_smoothing)
    }

    /// The loss and label fields of this section as the host-side [`Stage1Labels`] (what the
    /// spectral twin `loss:*` reads).
    pub fn labels(&self) -> Stage1Labels {
        Stage1Labels {
            loss: self.loss,
            huber_delta: self.huber_delta,
            l1_smoothing: self.l1_smoothing,
            center: self.centering(),
            remove_linear: self.remove_linear,
        }
    }

    /// Checks every field; the message names the field (`stage1.lr = NaN: …`).
    pub fn validate(&self) -> Result<(), String> {
        positive("stage1.lr", self.lr)?;
        positive("stage1.steps_c", self.steps_c)?;
        positive("stage1.huber_delta", self.huber_delta)?;
        positive("stage1.l1_smoothing", self.l1_smoothing)?;
        self.weight_decay.check("stage1.weight_decay")?;
        if let Auto::Value(t) = self.steps {
            if t > 100_000 {
                return Err(format!(
                    "stage1.steps = {t}: more than 100000 steps is surely a typo"
                ));
            }
        }
        Ok(())
    }
}

/// Stage-2 bias re-draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BiasInit {
    /// b_j ~ N(0, 1).
    Gaussian,
    /// b_j ~ U[−1, 1].
    Uniform,
    /// b_j = 0.
    Zero,
    /// Keep the stage-1 biases.
    Keep,
}

/// Stage-2 readout solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage2Solver {
    /// Exact ridge regression (Cholesky, faer).
    Ridge,
    /// Full-batch GD on the same objective.
    Gd,
}

/// `[stage2]`: readout fit on D2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stage2Config {
    /// Bias re-draw.
    pub bias: BiasInit,
    /// Solver.
    pub solver: Stage2Solver,
    /// λ of the ridge on standardised features, or `"auto"`: chosen on a held-out 20 % of
    /// D2 over the grid 10^{−6}, 10^{−5.5}, …, 10^{3}, then refit on all of D2.
    pub ridge_lambda: Auto<f64>,
    /// GD steps (solver = "gd").
    pub steps: usize,
    /// GD learning rate (solver = "gd").
    pub lr: f64,
    /// GD weight decay λ (solver = "gd").
    pub weight_decay: f64,
}

impl Default for Stage2Config {
    fn default() -> Self {
        Self {
            bias: BiasInit::Gaussian,
            solver: Stage2Solver::Ridge,
            ridge_lambda: Auto::Auto,
            steps: 2000,
            lr: 0.5,
            weight_decay: 1e-4,
        }
    }
}

impl Stage2Config {
    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        check_ridge_lambda("stage2.ridge_lambda", self.ridge_lambda)?;
        positive("stage2.lr", self.lr)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!(
                "stage2.weight_decay = {}: must be ≥ 0 and finite",
                self.weight_decay
            ));
        }
        if self.solver == Stage2Solver::Gd && self.steps == 0 {
            return Err("stage2.steps = 0: solver = \"gd\" needs at least one step".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct T {
        steps: Steps,
        wd: WeightDecay,
        lam: Auto<f64>,
    }

    #[test]
    fn keywords_and_numbers() {
        let t: T = toml::from_str("steps = \"auto\"\nwd = \"inverse_lr\"\nlam = 1").unwrap();
        assert_eq!(
            (t.steps, t.wd, t.lam),
            (Auto::Auto, WeightDecay::InverseLr, Auto::Value(1.0))
        );
        let t: T = toml::from_str("steps = 8\nwd = 0.5\nlam = \"auto\"").unwrap();
        assert_eq!(
            (t.steps, t.wd, t.lam),
            (Auto::Value(8), WeightDecay::Value(0.5), Auto::Auto)
        );
        assert!(toml::from_str::<T>("steps = -1\nwd = 0\nlam = 0").is_err());
        assert!(toml::from_str::<T>("steps = 1.5\nwd = 0\nlam = 0").is_err());
        assert!(toml::from_str::<T>("steps = 1\nwd = \"big\"\nlam = 0").is_err());
    }

    #[test]
    fn auto_steps() {
        let c = Stage1Config::default();
        // ⌈2·√ln 200⌉ = ⌈2·2.302⌉ = 5
        assert_eq!(c.resolved_steps(200), 5);
        assert_eq!(
            Stage1Config {
                steps: Auto::Value(3),
                ..c
            }
            .resolved_steps(200),
            3
        );
    }

    /// `labels()` carries the loss and label fields the spectral twin reads.
    #[test]
    fn labels_carry_the_loss_and_label_fields() {
        let d = Stage1Config::default();
        let l = d.labels();
        assert_eq!(
            (l.loss(), l.center, l.remove_linear),
            (d.loss(), Some(CenterBy::Mean), false)
        );
        let c = Stage1Config {
            loss: LossName::L1,
            l1_smoothing: 0.3,
            center_labels: false,
            remove_linear: true,
            ..d
        };
        let l = c.labels();
        assert_eq!(
            (l.loss(), l.center, l.remove_linear),
            (c.loss(), None, true)
        );
        assert_eq!(l.loss(), Loss::L1 { smoothing: 0.3 });
    }

    #[test]
    fn validation_names_fields() {
        let c = Stage1Config {
            lr: f64::NAN,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().starts_with("stage1.lr"));
        let c = Stage2Config {
            ridge_lambda: Auto::Value(-1.0),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().starts_with("stage2.ridge_lambda"));
    }
}
