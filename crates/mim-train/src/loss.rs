//! Stage-1 losses ℓ(t, y) of the prediction t and label y, written through the residual
//! r = t − y, and their label transform T(y) = −∂ℓ/∂t(0, y) (paper §4: "choosing ℓ is
//! choosing T").

use burn::tensor::Tensor;

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
    /// ℓ(r) elementwise, r = f − y (any shape).
    pub fn value<const D: usize>(&self, r: Tensor<D>) -> Tensor<D> {
        match *self {
            Loss::Square => r.square().mul_scalar(0.5),
            // c = clamp(r, ±δ): c·(r − c/2) equals r²/2 inside and δ(|r| − δ/2) outside.
            Loss::Huber { delta } => {
                let c = r.clone().clamp(-delta, delta);
                c.clone() * (r - c.mul_scalar(0.5))
            }
            Loss::L1 { smoothing } => r
                .square()
                .add_scalar(smoothing * smoothing)
                .sqrt()
                .sub_scalar(smoothing),
        }
    }

    /// ∂ℓ/∂t at residual r, elementwise.
    pub fn derivative<const D: usize>(&self, r: Tensor<D>) -> Tensor<D> {
        match *self {
            Loss::Square => r,
            Loss::Huber { delta } => r.clamp(-delta, delta),
            Loss::L1 { smoothing } => {
                let den = r.clone().square().add_scalar(smoothing * smoothing).sqrt();
                r / den
            }
        }
    }

    /// L̂ = mean_i ℓ(f_i − y_i), a one-element tensor.
    pub fn mean(&self, f: Tensor<1>, y: Tensor<1>) -> Tensor<1> {
        self.value(f - y).mean()
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use mim_model::{from_host_1d, to_host, Precision};

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

    /// The tensor derivative is the derivative of the tensor value (central differences)
    /// and matches the scalar form, for each loss.
    #[test]
    fn derivative_matches_value() {
        let dev = Device::flex();
        let rs: Vec<f64> = (-30..=30).map(|i| i as f64 * 0.173).collect();
        for loss in [
            Loss::Square,
            Loss::Huber { delta: 1.0 },
            Loss::L1 { smoothing: 0.1 },
        ] {
            let h = 1e-6;
            let v = |off: f64| {
                let r: Vec<f64> = rs.iter().map(|r| r + off).collect();
                to_host(loss.value(from_host_1d(&r, &dev, Precision::F64)))
            };
            let (vp, vm) = (v(h), v(-h));
            let d = to_host(loss.derivative(from_host_1d(&rs, &dev, Precision::F64)));
            for k in 0..rs.len() {
                let fd = (vp[k] - vm[k]) / (2.0 * h);
                assert!(
                    (fd - d[k]).abs() < 1e-6,
                    "{loss:?} at r={}: {fd} vs {}",
                    rs[k],
                    d[k]
                );
                assert!((d[k] - loss.scalar_derivative(rs[k], 0.0)).abs() < 1e-12);
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
}
