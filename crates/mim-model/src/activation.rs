//! Activations σ with their derivatives, as tensor ops (for the network) and as scalars (for checks).
//!
//! The theory (paper §2) needs σ ∈ C³ with σ'(0) = 0 and σ''(0) = 1, so that for small
//! pre-activations σ'(u) ≈ u and a stage-1 step is a power-iteration step.

use burn::tensor::{DType, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An activation function σ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// σ(u) = log cosh u, σ'(u) = tanh u. The default.
    #[default]
    Logcosh,
    /// σ(u) = 1 − cos u, σ'(u) = sin u.
    OneMinusCos,
    /// σ(u) = 4·(softplus(u) − u/2 − ln 2), σ'(u) = 4·(sigmoid(u) − 1/2).
    ShiftedSoftplus,
    /// σ(u) = u²/2, σ'(u) = u (only degree-2 features in stage 2).
    Quadratic,
    /// σ(u) = tanh u (violates σ'(0) = 0).
    Tanh,
    /// σ(u) = max(u, 0) (violates σ'(0) = 0 and σ''(0) = 1).
    Relu,
}

/// An activation name that is not one of [`Activation::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown activation `{0}` (expected one of: logcosh, one_minus_cos, shifted_softplus, quadratic, tanh, relu)")]
pub struct ActivationError(pub String);

impl Activation {
    /// Every activation, in the order of [`Activation::NAMES`].
    pub const ALL: [Activation; 6] = [
        Activation::Logcosh,
        Activation::OneMinusCos,
        Activation::ShiftedSoftplus,
        Activation::Quadratic,
        Activation::Tanh,
        Activation::Relu,
    ];
    /// The config names of the activations.
    pub const NAMES: [&'static str; 6] = [
        "logcosh",
        "one_minus_cos",
        "shifted_softplus",
        "quadratic",
        "tanh",
        "relu",
    ];

    /// The config name of this activation.
    pub fn name(self) -> &'static str {
        let i = Self::ALL.iter().position(|&a| a == self).unwrap_or(0);
        Self::NAMES[i]
    }

    /// σ(u), elementwise. log cosh of an f32 tensor on a CPU backend (flex, ndarray: host
    /// memory) is one threaded SIMD pass on the host ([`crate::logcosh`]: the values of the
    /// fused stage-1 kernel), tracked by autodiff or not (then with the gradient tanh u from the
    /// same pass), so a forward pass gives the same bits either way; elsewhere (wgpu, f64) σ is
    /// the composition of tensor ops below (for log cosh on flex that is six single-threaded
    /// elementwise passes, each with a fresh buffer).
    pub fn apply<const D: usize>(self, u: Tensor<D>) -> Tensor<D> {
        match self {
            // log cosh u = |u| + log(1 + e^{−2|u|}) − ln 2, stable for large |u|.
            Activation::Logcosh => match host_logcosh(&u) {
                Some(s) => s,
                None => {
                    let au = u.abs();
                    au.clone()
                        + au.mul_scalar(-2.0)
                            .exp()
                            .log1p()
                            .sub_scalar(std::f64::consts::LN_2)
                }
            },
            Activation::OneMinusCos => u.cos().neg().add_scalar(1.0),
            Activation::ShiftedSoftplus => {
                // softplus(u) = max(u, 0) + log(1 + e^{−|u|})
                let sp = u.clone().clamp_min(0.0) + u.clone().abs().neg().exp().log1p();
                (sp - u.mul_scalar(0.5))
                    .sub_scalar(std::f64::consts::LN_2)
                    .mul_scalar(4.0)
            }
            Activation::Quadratic => u.square().mul_scalar(0.5),
            Activation::Tanh => u.tanh(),
            Activation::Relu => u.clamp_min(0.0),
        }
    }

    /// σ'(u), elementwise.
    pub fn derivative<const D: usize>(self, u: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Logcosh => u.tanh(),
            Activation::OneMinusCos => u.sin(),
            // 4(sigmoid(u) − 1/2) = 2 tanh(u/2)
            Activation::ShiftedSoftplus => u.mul_scalar(0.5).tanh().mul_scalar(2.0),
            Activation::Quadratic => u,
            Activation::Tanh => {
                let t = u.tanh();
                t.square().neg().add_scalar(1.0)
            }
            Activation::Relu => {
                let zeros = u.zeros_like();
                let ones = u.ones_like();
                zeros.mask_where(u.greater_elem(0.0), ones)
            }
        }
    }

    /// σ(u) for one scalar.
    pub fn scalar(self, u: f64) -> f64 {
        match self {
            Activation::Logcosh => {
                let au = u.abs();
                au + (-2.0 * au).exp().ln_1p() - std::f64::consts::LN_2
            }
            Activation::OneMinusCos => 1.0 - u.cos(),
            Activation::ShiftedSoftplus => {
                let sp = u.max(0.0) + (-u.abs()).exp().ln_1p();
                4.0 * (sp - u / 2.0 - std::f64::consts::LN_2)
            }
            Activation::Quadratic => 0.5 * u * u,
            Activation::Tanh => u.tanh(),
            Activation::Relu => u.max(0.0),
        }
    }

    /// σ'(u) for one scalar.
    pub fn scalar_derivative(self, u: f64) -> f64 {
        match self {
            Activation::Logcosh => u.tanh(),
            Activation::OneMinusCos => u.sin(),
            Activation::ShiftedSoftplus => 2.0 * (u / 2.0).tanh(),
            Activation::Quadratic => u,
            Activation::Tanh => 1.0 - u.tanh().powi(2),
            Activation::Relu => {
                if u > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// Why this σ falls outside the theory, if it does: checks σ'(0) = 0 and σ''(0) = 1
    /// (σ'' by a central difference of σ').
    pub fn theory_violation(self) -> Option<String> {
        let h = 1e-5;
        let d1 = self.scalar_derivative(0.0);
        let d2 = (self.scalar_derivative(h) - self.scalar_derivative(-h)) / (2.0 * h);
        let mut why = Vec::new();
        if d1.abs() > 1e-8 {
            why.push(format!("σ'(0) = {d1} ≠ 0"));
        }
        if (d2 - 1.0).abs() > 1e-6 {
            why.push(format!("σ''(0) = {d2:.3} ≠ 1"));
        }
        (!why.is_empty()).then(|| {
            format!(
                "activation `{}` violates the theory's assumptions ({}): stage 1 is then not a power iteration",
                self.name(),
                why.join(", ")
            )
        })
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = ActivationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .position(|&n| n == s)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| ActivationError(s.to_string()))
    }
}

/// log cosh of an f32 tensor of a CPU backend on the host (see [`Activation::apply`]); `None`
/// for any other tensor (the tensor-op path). A tracked u gets
/// σ_host + (u − sg(u)) ⊙ sg(tanh_host), sg = detach: the same values (u − sg(u) = 0 exactly)
/// with the gradient tanh u (first order only: nothing in mim differentiates twice).
fn host_logcosh<const D: usize>(u: &Tensor<D>) -> Option<Tensor<D>> {
    let device = u.device();
    if !crate::host::is_host_device(&device) || u.dtype() != DType::F32 {
        return None;
    }
    let mut data = u.clone().detach().into_data();
    let shape = data.shape().clone();
    let values = data.as_mut_slice::<f32>().ok()?;
    let upload = |d: TensorData| Tensor::from_data(d, (&device, DType::F32));
    if !u.is_tracked() {
        crate::logcosh::logcosh_in_place(values, None);
        return Some(upload(data));
    }
    let mut ds = vec![0f32; values.len()];
    crate::logcosh::logcosh_pair_in_place(values, &mut ds);
    let ds = upload(TensorData::new(ds, shape));
    Some(upload(data) + (u.clone() - u.clone().detach()) * ds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{from_host_1d, to_host, Precision};
    use burn::tensor::Device;

    #[test]
    fn names_round_trip() {
        for a in Activation::ALL {
            assert_eq!(a.name().parse::<Activation>().unwrap(), a);
        }
        assert!("cosh".parse::<Activation>().is_err());
    }

    #[test]
    fn theory_conditions() {
        for a in [
            Activation::Logcosh,
            Activation::OneMinusCos,
            Activation::ShiftedSoftplus,
            Activation::Quadratic,
        ] {
            assert!(a.theory_violation().is_none(), "{a}");
        }
        assert!(Activation::Tanh.theory_violation().is_some());
        assert!(Activation::Relu.theory_violation().is_some());
    }

    /// Tensor σ and σ' agree with the scalar forms, and σ' is the derivative of σ
    /// (central difference), over a range including large |u|.
    #[test]
    fn tensor_matches_scalar_and_derivative() {
        let dev = Device::flex();
        let us: Vec<f64> = (-40..=40).map(|i| i as f64 * 0.37).collect();
        for a in Activation::ALL {
            let t = from_host_1d(&us, &dev, Precision::F64);
            let s = to_host(a.apply(t.clone()));
            let ds = to_host(a.derivative(t));
            for (k, &u) in us.iter().enumerate() {
                assert!(
                    (s[k] - a.scalar(u)).abs() < 1e-9 * (1.0 + u.abs()),
                    "{a} σ({u})"
                );
                assert!((ds[k] - a.scalar_derivative(u)).abs() < 1e-9, "{a} σ'({u})");
                if a != Activation::Relu || u.abs() > 1e-3 {
                    let h = 1e-6;
                    let fd = (a.scalar(u + h) - a.scalar(u - h)) / (2.0 * h);
                    assert!((fd - a.scalar_derivative(u)).abs() < 1e-5, "{a} fd at {u}");
                }
            }
        }
    }

    /// log cosh of an f32 tensor on flex is the host SIMD pass (bit-identical to the scalar
    /// `logcosh_pair_f32`), whether autodiff tracks it or not; a tracked one keeps its graph with
    /// the gradient tanh u, and a chain through it (σ(2u)) gets the chain rule. The tensor-op
    /// path (f64) agrees to rounding. Shapes survive (a transposed 2-d view included).
    #[test]
    fn host_logcosh_is_taken_where_it_may_be() {
        use crate::host::{from_host_2d, to_host_as};
        use crate::logcosh::logcosh_pair_f32;
        let us: Vec<f64> = (-200..=200).map(|i| i as f64 * 0.173).collect();
        let host_bits = |v: &[f32]| -> Vec<u32> {
            v.iter().map(|&u| logcosh_pair_f32(u).0.to_bits()).collect()
        };
        let (rows, cols) = (3, 133);
        let u = from_host_2d(
            &us[..rows * cols],
            rows,
            cols,
            &Device::flex(),
            Precision::F32,
        )
        .transpose();
        let s = Activation::Logcosh.apply(u.clone());
        assert_eq!(s.dims(), [cols, rows]);
        let bits = |t: &Tensor<2>| -> Vec<u32> {
            to_host_as::<f32, 2>(t)
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(
            bits(&s),
            host_bits(&to_host_as::<f32, 2>(&u)),
            "untracked: not the host pass"
        );
        let ad = Device::flex().autodiff();
        let t = from_host_1d(&us, &ad, Precision::F32).require_grad();
        let s = Activation::Logcosh.apply(t.clone().mul_scalar(2.0));
        assert!(s.is_tracked());
        let grads = s.clone().sum().backward();
        let g = to_host(t.grad(&grads).unwrap());
        let doubled: Vec<f32> = us.iter().map(|&u| (u as f32) * 2.0).collect();
        let got: Vec<u32> = to_host_as::<f32, 1>(&s)
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(got, host_bits(&doubled), "tracked: not the host values");
        let s64 = to_host(
            Activation::Logcosh
                .apply(from_host_1d(&us, &Device::flex(), Precision::F64).mul_scalar(2.0)),
        );
        for (k, &u) in us.iter().enumerate() {
            let host = logcosh_pair_f32(doubled[k]).0 as f64;
            assert!(
                (s64[k] - host).abs() < 4e-6 * (1.0 + u.abs()),
                "σ(2·{u}): {} vs {host}",
                s64[k]
            );
            assert!(
                (g[k] - 2.0 * (2.0 * u).tanh()).abs() < 2e-6,
                "dσ(2u)/du at {u} = {}",
                g[k]
            );
        }
    }
}
