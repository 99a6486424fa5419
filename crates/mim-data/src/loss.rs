//! Stage-1 losses ℓ(t, y) of the prediction t and label y, written through the residual
//! r = t − y, their label transform T(y) = −∂ℓ/∂t(0, y) (paper §4: "choosing ℓ is choosing
//! T"), and the stage-1 labels they are applied to (centred, de-linearised).
//!
//! Host-side `f64` only: the trainer (`mim-train`, which adds the tensor forms of ℓ and ℓ')
//! and the spectral estimators (`mim-spectral`, whose `loss:*` is stage 1's twin) share this
//! one definition.

use serde::{Deserialize, Serialize};

/// A stage-1 loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// ℓ = r²/2; ℓ' = r; T(y) = y.
    Square,
    /// Huber with threshold δ: ℓ = r²/2 for |r| ≤ δ, δ(|r| − δ/2) otherwise;
    /// ℓ' = clamp(r, −δ, δ); T(y) = clamp(y, −δ, δ).
    Huber {
        /// δ > 0.
        delta: f64,
    },
    /// Smoothed ℓ1 (pseudo-Huber) with smoothing s: ℓ = √(r² + s²) − s;
    /// ℓ' = r/√(r² + s²); T(y) = y/√(y² + s²) → sign(y) as s → 0.
    L1 {
        /// s > 0.
        smoothing: f64,
    },
}

impl Loss {
    /// ℓ at residual r, for one scalar.
    pub fn scalar_value(&self, r: f64) -> f64 {
        match *self {
            Loss::Square => 0.5 * r * r,
            Loss::Huber { delta } => {
                let c = r.clamp(-delta, delta);
                c * (r - 0.5 * c)
            }
            Loss::L1 { smoothing } => (r * r + smoothing * smoothing).sqrt() - smoothing,
        }
    }

    /// ∂ℓ/∂t(t, y) for scalars.
    pub fn scalar_derivative(&self, t: f64, y: f64) -> f64 {
        let r = t - y;
        match *self {
            Loss::Square => r,
            Loss::Huber { delta } => r.clamp(-delta, delta),
            Loss::L1 { smoothing } => r / (r * r + smoothing * smoothing).sqrt(),
        }
    }

    /// The label transform T(y) = −∂ℓ/∂t(0, y): stage 1 is power iteration on
    /// Σ̂_T = (1/n) Σ_i T(y_i) x_i x_iᵀ.
    pub fn label_transform(&self, y: f64) -> f64 {
        -self.scalar_derivative(0.0, y)
    }

    /// The location M-estimate of the sample `y` (weights `w`, or all 1): the c with
    /// Σ_i w_i T(y_i − c) = 0. T is non-decreasing, so the sum is non-increasing in c, ≥ 0 at
    /// min y and ≤ 0 at max y: bisection to the resolution of f64. The square loss gives the
    /// weighted mean exactly.
    pub fn location(&self, y: &[f64], w: Option<&[f64]>) -> f64 {
        let weight = |i: usize| w.map_or(1.0, |w| w[i]);
        if matches!(self, Loss::Square) || y.is_empty() {
            let total: f64 = (0..y.len()).map(weight).sum();
            let sum: f64 = y.iter().enumerate().map(|(i, v)| weight(i) * v).sum();
            return sum / total.max(f64::MIN_POSITIVE);
        }
        let g = |c: f64| {
            y.iter()
                .enumerate()
                .map(|(i, v)| weight(i) * self.label_transform(v - c))
                .sum::<f64>()
        };
        let (mut lo, mut hi) = y
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if g(mid) > 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }
}

/// Name of a stage-1 loss (`stage1.loss`; its parameters are separate keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossName {
    /// ℓ = (t − y)²/2.
    Square,
    /// Huber, threshold `huber_delta`.
    Huber,
    /// Smoothed ℓ1, smoothing `l1_smoothing`.
    L1,
}

impl LossName {
    /// The loss with its parameter: δ for Huber, s for smoothed ℓ1 (the other is unused).
    pub fn with(self, huber_delta: f64, l1_smoothing: f64) -> Loss {
        match self {
            LossName::Square => Loss::Square,
            LossName::Huber => Loss::Huber { delta: huber_delta },
            LossName::L1 => Loss::L1 {
                smoothing: l1_smoothing,
            },
        }
    }
}

/// What `stage1.center_labels` subtracts from the stage-1 labels (`stage1.center_by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CenterBy {
    /// c = mean(y over D1).
    #[default]
    Mean,
    /// c solving (1/n1) Σ T(y_i − c) = 0, T = −ℓ'(0,·) of the stage-1 loss: the loss's location
    /// M-estimate (the mean for square, about the median for smoothed ℓ1, Huber's location for
    /// huber). Then mean T = 0 on D1, so Σ̂_T carries no identity shift E\[T\]·I that would
    /// shrink the signal-to-bulk ratio of power iteration (paper §4).
    Loss,
}

impl CenterBy {
    /// True for the default (left out of `config.toml`, so sweep keys do not change).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The stage-1 loss and labels as `[stage1]` sets them up, the fields a host-side consumer
/// (the spectral twin `loss:*`) needs: the loss by name with both parameters (so that
/// `loss:<name>` can change the name and keep the configured δ and s), the centring and the
/// linear-part removal. `mim_train::Stage1Config::labels` builds it; [`stage1_labels`] applies
/// the centring and removal to a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage1Labels {
    /// `stage1.loss`.
    pub loss: LossName,
    /// `stage1.huber_delta`: δ of the Huber loss.
    pub huber_delta: f64,
    /// `stage1.l1_smoothing`: s of the smoothed ℓ1 loss.
    pub l1_smoothing: f64,
    /// What centring subtracts; `None` when `stage1.center_labels = false`.
    pub center: Option<CenterBy>,
    /// `stage1.remove_linear`: y ← y − β̂ᵀx, β̂ = (1/n) Σ y_i x_i.
    pub remove_linear: bool,
}

impl Stage1Labels {
    /// The loss with its parameter.
    pub fn loss(&self) -> Loss {
        self.loss.with(self.huber_delta, self.l1_smoothing)
    }
}

/// The shift c subtracted from the stage-1 labels: 0 when `center` is `None`, mean(y) for
/// [`CenterBy::Mean`], and for [`CenterBy::Loss`] the loss's location M-estimate
/// ([`Loss::location`]: mean_i T(y_i − c) = 0).
pub fn label_shift(y: &[f64], center: Option<CenterBy>, loss: &Loss) -> f64 {
    match center {
        None => 0.0,
        Some(CenterBy::Loss) => loss.location(y, None),
        Some(CenterBy::Mean) => y.iter().sum::<f64>() / y.len().max(1) as f64,
    }
}

/// Stage-1 labels: y − `shift` (see [`label_shift`]), then minus its linear part β̂ᵀx
/// (β̂ = (1/n) Σ y_i x_i) if `remove_linear`. `x` is n×d row-major (read only for
/// `remove_linear`).
pub fn stage1_labels(x: &[f64], y: &[f64], d: usize, shift: f64, remove_linear: bool) -> Vec<f64> {
    let nf = y.len().max(1) as f64;
    let mut lab: Vec<f64> = y.iter().map(|v| v - shift).collect();
    if remove_linear {
        let mut beta = vec![0.0; d];
        for (yi, row) in lab.iter().zip(x.chunks_exact(d)) {
            for (b, xv) in beta.iter_mut().zip(row) {
                *b += yi * xv / nf;
            }
        }
        for (yi, row) in lab.iter_mut().zip(x.chunks_exact(d)) {
            *yi -= row.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>();
        }
    }
    lab
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Square → mean; smoothed ℓ1 with tiny s → the median; Huber with huge δ → the mean;
    /// weights count as repeated points.
    #[test]
    fn location_is_the_loss_m_estimate() {
        let y = [0.0, 1.0, 2.0, 10.0, 3.0];
        assert_eq!(Loss::Square.location(&y, None), 3.2);
        let l1 = Loss::L1 { smoothing: 1e-9 };
        assert!((l1.location(&y, None) - 2.0).abs() < 1e-6);
        let huber = Loss::Huber { delta: 100.0 };
        assert!((huber.location(&y, None) - 3.2).abs() < 1e-12);
        let h1 = Loss::Huber { delta: 1.0 };
        let c = h1.location(&y, None);
        let g: f64 = y.iter().map(|v| h1.label_transform(v - c)).sum();
        assert!(g.abs() < 1e-9 && (2.0..3.2).contains(&c), "{c} {g}");
        let w = [1.0, 1.0, 3.0, 1.0, 1.0];
        let rep = [0.0, 1.0, 2.0, 2.0, 2.0, 10.0, 3.0];
        assert!((h1.location(&y, Some(&w)) - h1.location(&rep, None)).abs() < 1e-12);
    }

    /// The scalar derivative is the derivative of the scalar value (central differences).
    #[test]
    fn scalar_derivative_matches_value() {
        for loss in [
            Loss::Square,
            Loss::Huber { delta: 1.0 },
            Loss::L1 { smoothing: 0.1 },
        ] {
            for i in -30..=30 {
                let r = i as f64 * 0.173;
                let h = 1e-6;
                let fd = (loss.scalar_value(r + h) - loss.scalar_value(r - h)) / (2.0 * h);
                let d = loss.scalar_derivative(r, 0.0);
                assert!((fd - d).abs() < 1e-6, "{loss:?} at r={r}: {fd} vs {d}");
            }
        }
    }

    #[test]
    fn label_transforms() {
        assert_eq!(Loss::Square.label_transform(2.5), 2.5);
        assert_eq!(Loss::Huber { delta: 1.0 }.label_transform(2.5), 1.0);
        assert_eq!(Loss::Huber { delta: 1.0 }.label_transform(-0.25), -0.25);
        let t = Loss::L1 { smoothing: 1e-3 }.label_transform(-2.0);
        assert!((t + 1.0).abs() < 1e-6);
    }

    /// Centring by the mean or the location, and the linear part β̂ᵀx removed.
    #[test]
    fn shifted_and_delinearised_labels() {
        let y = [1.0, 2.0, 6.0];
        let sq = Loss::Square;
        assert_eq!(label_shift(&y, None, &sq), 0.0);
        assert_eq!(label_shift(&y, Some(CenterBy::Mean), &sq), 3.0);
        let l1 = Loss::L1 { smoothing: 1e-9 };
        assert!((label_shift(&y, Some(CenterBy::Loss), &l1) - 2.0).abs() < 1e-6);
        let x = [1.0, 0.5, -1.0, 2.0, 0.3, -0.7];
        assert_eq!(stage1_labels(&x, &y, 2, 3.0, false), vec![-2.0, -1.0, 3.0]);
        let lab = stage1_labels(&x, &y, 2, 0.0, true);
        let nf = y.len() as f64;
        let beta: Vec<f64> = (0..2)
            .map(|j| (0..3).map(|i| y[i] * x[i * 2 + j]).sum::<f64>() / nf)
            .collect();
        for i in 0..3 {
            let want = y[i] - (x[i * 2] * beta[0] + x[i * 2 + 1] * beta[1]);
            assert!((lab[i] - want).abs() < 1e-12);
        }
    }
}
