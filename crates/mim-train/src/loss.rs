//! Stage-1 losses ℓ(t, y) of the prediction t and label y, written through the residual
//! r = t − y, and their label transform T(y) = −∂ℓ/∂t(0, y) (paper §4: "choosing ℓ is
//! choosing T"). [`Loss`] and its host forms (scalar ℓ and ℓ', T(y), the location
//! M-estimate) live in [`mim_data::loss`], below the spectral crate that shares them; this
//! module adds the tensor forms ([`TensorLoss`]).

use burn::tensor::Tensor;

pub use mim_data::loss::Loss;

/// The tensor forms of a [`Loss`] (its host forms, T(y) and the location are in
/// [`mim_data::loss`]).
pub trait TensorLoss {
    /// ℓ(r) elementwise, r = f − y (any shape).
    fn value<const D: usize>(&self, r: Tensor<D>) -> Tensor<D>;
    /// ∂ℓ/∂t at residual r, elementwise.
    fn derivative<const D: usize>(&self, r: Tensor<D>) -> Tensor<D>;
    /// L̂ = mean_i ℓ(f_i − y_i), a one-element tensor.
    fn mean(&self, f: Tensor<1>, y: Tensor<1>) -> Tensor<1>;
}

impl TensorLoss for Loss {
    fn value<const D: usize>(&self, r: Tensor<D>) -> Tensor<D> {
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

    fn derivative<const D: usize>(&self, r: Tensor<D>) -> Tensor<D> {
        match *self {
            Loss::Square => r,
            Loss::Huber { delta } => r.clamp(-delta, delta),
            Loss::L1 { smoothing } => {
                let den = r.clone().square().add_scalar(smoothing * smoothing).sqrt();
                r / den
            }
        }
    }

    fn mean(&self, f: Tensor<1>, y: Tensor<1>) -> Tensor<1> {
        self.value(f - y).mean()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use mim_model::{from_host_1d, to_host, Precision};

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
}
