//! Label preprocessings T and the labels they are applied to.
//!
//! | name | T(y) | default order | default shift |
//! |---|---|---|---|
//! | `loss` / `loss:square\|huber\|l1` | −ℓ'(0, y) of the stage-1 loss: y, clamp(y, ±δ), y/√(y² + s²) | `abs` | `none` |
//! | `identity` | y | `abs` | `mean` |
//! | `lal` | max(1 − 1/y, −10) (y ≤ 1/11 ↦ −10) | `largest` | `mean` |
//! | `filtered` | 1{\|y\| > τ} | `abs` | `mean` |
//! | `clip:<c>` | clamp(y, −c, c) | `abs` | `mean` |
//! | `sign` | sign(y) (0 ↦ 0) | `abs` | `mean` |
//!
//! `loss:*` is the spectral twin of the network: it sees the stage-1 labels exactly as stage 1
//! does (centred when `stage1.center_labels`, minus β̂ᵀx when `stage1.remove_linear`, read from
//! [`Stage1Labels`]) and, by
//! default, takes the eigenvectors of largest |λ| of the matrix stage 1 and the power-iteration
//! metric iterate, Xᵀdiag(T)X/n1 without the identity shift (`shift = none`): that is what
//! power iteration with β1 = 1/η1 amplifies (paper §4). When mean(T) ≠ 0 (e.g. Huber on a
//! skewed link centred by its mean) the shifted matrix can put the larger |λ| at the other end.
//! Every other T is a classical estimator: it sees the raw labels y (never centred) and uses
//! (1/n) Σ T(y_i)(x_i x_iᵀ − I) (`shift = mean`); `lal` in particular is only meaningful on
//! non-negative labels such as y = z² with `data.normalize = false`, and centring would move
//! its supremum away from 1.

use crate::eigen::{Order, Shift};
use mim_data::loss::{label_shift, stage1_labels, CenterBy, Loss, LossName, Stage1Labels};

/// Lower clip of `lal`: T(y) = max(1 − 1/y, LAL_FLOOR).
pub const LAL_FLOOR: f64 = -10.0;

/// A label preprocessing T: ℝ → ℝ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Preprocessing {
    /// T(y) = −ℓ'(0, y) of a stage-1 loss ([`Loss::label_transform`]).
    Loss(Loss),
    /// T(y) = y.
    Identity,
    /// Luo–Alghamdi–Lu's optimal preprocessing for noiseless real phase retrieval,
    /// T(y) = 1 − 1/y, clipped below at −10 (so y ≤ 1/11, including y ≤ 0, maps to −10);
    /// sup T = 1. Assumes y ≥ 0-ish labels (e.g. `z1^2` with `data.normalize = false`).
    Lal,
    /// Chen–Meka filtered PCA: T(y) = 1{|y| > τ}.
    Filtered {
        /// τ ≥ 0.
        tau: f64,
    },
    /// T(y) = clamp(y, −c, c).
    Clip {
        /// c > 0.
        c: f64,
    },
    /// T(y) = sign(y), with sign(0) = 0.
    Sign,
}

impl Preprocessing {
    /// Parses a `spectral.T` value. `loss` alone means the config's stage-1 loss; `loss:<name>`
    /// takes that loss with the config's `huber_delta` / `l1_smoothing`; `tau` is used by
    /// `filtered`. The error names `spectral.T` (or `spectral.tau`).
    pub fn parse(spec: &str, stage1: &Stage1Labels, tau: f64) -> Result<Self, String> {
        let bad = |why: &str| format!("spectral.T = {spec:?}: {why}");
        let s = spec.trim();
        let (head, arg) = match s.split_once(':') {
            Some((h, a)) => (h.trim(), Some(a.trim())),
            None => (s, None),
        };
        let no_arg = |p: Preprocessing| match arg {
            None => Ok(p),
            Some(_) => Err(bad(&format!("`{head}` takes no argument"))),
        };
        match head {
            "loss" => {
                let mut cfg = *stage1;
                if let Some(name) = arg {
                    cfg.loss = match name {
                        "square" => LossName::Square,
                        "huber" => LossName::Huber,
                        "l1" => LossName::L1,
                        _ => return Err(bad("unknown loss; expected loss:square, loss:huber or loss:l1")),
                    };
                }
                Ok(Preprocessing::Loss(cfg.loss()))
            }
            "identity" => no_arg(Preprocessing::Identity),
            "lal" => no_arg(Preprocessing::Lal),
            "sign" => no_arg(Preprocessing::Sign),
            "filtered" => {
                if !(tau.is_finite() && tau >= 0.0) {
                    return Err(format!("spectral.tau = {tau}: must be ≥ 0 and finite"));
                }
                no_arg(Preprocessing::Filtered { tau })
            }
            "clip" => {
                let c: f64 = arg
                    .ok_or_else(|| bad("expected clip:<c>, e.g. clip:2"))?
                    .parse()
                    .map_err(|_| bad("expected clip:<c> with a number c, e.g. clip:2"))?;
                if !(c.is_finite() && c > 0.0) {
                    return Err(bad("the clip level c must be positive and finite"));
                }
                Ok(Preprocessing::Clip { c })
            }
            _ => Err(bad(
                "unknown preprocessing; expected loss, loss:square|huber|l1, identity, lal, filtered, clip:<c> or sign",
            )),
        }
    }

    /// T(y).
    pub fn apply(&self, y: f64) -> f64 {
        match *self {
            Preprocessing::Loss(loss) => loss.label_transform(y),
            Preprocessing::Identity => y,
            Preprocessing::Lal => {
                if y <= 1.0 / (1.0 - LAL_FLOOR) {
                    LAL_FLOOR
                } else {
                    (1.0 - 1.0 / y).max(LAL_FLOOR)
                }
            }
            Preprocessing::Filtered { tau } => {
                if y.abs() > tau {
                    1.0
                } else {
                    0.0
                }
            }
            Preprocessing::Clip { c } => y.clamp(-c, c),
            Preprocessing::Sign => {
                if y > 0.0 {
                    1.0
                } else if y < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// The default end of the spectrum: `largest` for `lal` (its heavy negative tail puts a
    /// large negative bulk edge opposite the signal, so `abs` would pick noise), `abs`
    /// otherwise (the largest |λ|, the end power iteration on the matrix amplifies; e.g.
    /// clipped T on h4 links puts the signal at the negative end).
    pub fn default_order(&self) -> Order {
        match self {
            Preprocessing::Lal => Order::Largest,
            _ => Order::Abs,
        }
    }

    /// The default matrix: unshifted for `loss:*` (the network's twin: what stage 1 and the
    /// power-iteration metric iterate), the classical shifted estimator otherwise.
    pub fn default_shift(&self) -> Shift {
        match self {
            Preprocessing::Loss(_) => Shift::None,
            _ => Shift::Mean,
        }
    }

    /// Whether this T sees the stage-1 labels (centred / de-linearised per `[stage1]`):
    /// only the `loss:*` preprocessings.
    pub fn is_loss(&self) -> bool {
        matches!(self, Preprocessing::Loss(_))
    }

    /// Canonical name with parameters, e.g. `loss:huber(δ=1)`, `clip:2`, `filtered(τ=1)`.
    pub fn name(&self) -> String {
        match self {
            Preprocessing::Loss(Loss::Square) => "loss:square".into(),
            Preprocessing::Loss(Loss::Huber { delta }) => format!("loss:huber(δ={delta})"),
            Preprocessing::Loss(Loss::L1 { smoothing }) => format!("loss:l1(s={smoothing})"),
            Preprocessing::Identity => "identity".into(),
            Preprocessing::Lal => "lal".into(),
            Preprocessing::Filtered { tau } => format!("filtered(τ={tau})"),
            Preprocessing::Clip { c } => format!("clip:{c}"),
            Preprocessing::Sign => "sign".into(),
        }
    }

    /// Points where T is discontinuous or kinked (quadrature panels are split there).
    pub fn breakpoints(&self) -> Vec<f64> {
        match *self {
            Preprocessing::Loss(Loss::Huber { delta }) => vec![-delta, delta],
            Preprocessing::Loss(_) | Preprocessing::Identity => vec![],
            Preprocessing::Lal => vec![0.0, 1.0 / (1.0 - LAL_FLOOR)],
            Preprocessing::Filtered { tau } => vec![-tau, tau],
            Preprocessing::Clip { c } => vec![-c, c],
            Preprocessing::Sign => vec![0.0],
        }
    }
}

/// Which labels T is applied to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LabelPrep {
    /// Centre y first: by its mean, or at the loss's location (mean T(y − c) = 0); `None`: raw.
    pub center: Option<CenterBy>,
    /// Then subtract the linear part β̂ᵀx, β̂ = (1/n) Σ y_i x_i.
    pub remove_linear: bool,
}

impl LabelPrep {
    /// The rule of this crate: `loss:*` sees the stage-1 labels (`center_labels`,
    /// `remove_linear` from `[stage1]`), every other T the raw labels.
    pub fn for_preprocessing(pre: &Preprocessing, stage1: &Stage1Labels) -> Self {
        if pre.is_loss() {
            LabelPrep {
                center: stage1.center,
                remove_linear: stage1.remove_linear,
            }
        } else {
            LabelPrep::default()
        }
    }
}

/// T(ỹ_i) for every row, with ỹ the labels prepared per `prep` (x: n×d row-major).
pub fn spectral_labels(
    pre: &Preprocessing,
    x: &[f64],
    y: &[f64],
    d: usize,
    prep: LabelPrep,
) -> Vec<f64> {
    // Only `loss:*` is centred by LabelPrep::for_preprocessing; a hand-made LabelPrep on
    // another T centres at the square loss's location, the mean.
    let loss = match pre {
        Preprocessing::Loss(loss) => *loss,
        _ => Loss::Square,
    };
    let shift = label_shift(y, prep.center, &loss);
    let lab = stage1_labels(x, y, d, shift, prep.remove_linear);
    lab.iter().map(|&v| pre.apply(v)).collect()
}

/// `[stage1]`'s defaults, as `mim_train::Stage1Config::default().labels()` gives them (Huber
/// δ = 1, s = 0.1, centred by the mean), for the tests of this crate.
#[cfg(test)]
pub(crate) fn stage1_defaults() -> Stage1Labels {
    Stage1Labels {
        loss: LossName::Huber,
        huber_delta: 1.0,
        l1_smoothing: 0.1,
        center: Some(CenterBy::Mean),
        remove_linear: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_applies() {
        let s1 = stage1_defaults();
        let p = |s: &str| Preprocessing::parse(s, &s1, 1.5).unwrap();
        assert_eq!(p("loss").apply(3.0), 1.0); // default stage-1 loss: Huber δ = 1
        assert_eq!(p("loss:square").apply(3.0), 3.0);
        assert!((p("loss:l1").apply(-5.0) + 1.0).abs() < 1e-3);
        assert_eq!(p("identity").apply(-2.0), -2.0);
        assert_eq!(p("lal").apply(2.0), 0.5);
        assert_eq!(p("lal").apply(0.01), LAL_FLOOR);
        assert_eq!(p("lal").apply(-3.0), LAL_FLOOR);
        assert_eq!(p("filtered").apply(-2.0), 1.0);
        assert_eq!(p("filtered").apply(1.0), 0.0);
        assert_eq!(p("clip:2").apply(-7.0), -2.0);
        assert_eq!(p("sign").apply(-0.1), -1.0);
        assert_eq!(p("lal").default_order(), Order::Largest);
        assert_eq!(p("loss:huber").default_order(), Order::Abs);
        assert_eq!(p("loss").default_shift(), Shift::None);
        assert_eq!(p("identity").default_shift(), Shift::Mean);
        assert_eq!(p("lal").default_shift(), Shift::Mean);
        for bad in ["clip", "clip:-1", "clip:x", "lal:2", "foo", "loss:mse"] {
            let e = Preprocessing::parse(bad, &s1, 1.0).unwrap_err();
            assert!(e.starts_with("spectral.T"), "{e}");
        }
        assert!(Preprocessing::parse("filtered", &s1, -1.0)
            .unwrap_err()
            .starts_with("spectral.tau"));
    }

    #[test]
    fn labels_centred_only_for_loss() {
        let s1 = stage1_defaults();
        let y = [1.0, 2.0, 3.0];
        let x = [0.0; 3];
        let sq = Preprocessing::parse("loss:square", &s1, 1.0).unwrap();
        let prep = LabelPrep::for_preprocessing(&sq, &s1);
        assert_eq!(spectral_labels(&sq, &x, &y, 1, prep), vec![-1.0, 0.0, 1.0]);
        let id = Preprocessing::Identity;
        let prep = LabelPrep::for_preprocessing(&id, &s1);
        assert_eq!(spectral_labels(&id, &x, &y, 1, prep), y.to_vec());
    }
}
