//! Activations σ with their derivatives, as tensor ops (for the network) and as scalars (for checks).
//!
//! The theory (paper §2) needs σ ∈ C³ with σ'(0) = 0 and σ''(0) = 1, so that for small
//! pre-activations σ'(u) ≈ u and a stage-1 step is a power-iteration step.

use burn::tensor::Tensor;
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

    /// σ(u), elementwise.
    pub fn apply<const D: usize>(self, u: Tensor<D>) -> Tensor<D> {
        match self {
            // log cosh u = |u| + log(1 + e^{−2|u|}) − ln 2, stable for large |u|.
            Activation::Logcosh => {
                let au = u.abs();
                au.clone()
                    + au.mul_scalar(-2.0)
                        .exp()
                        .log1p()
                        .sub_scalar(std::f64::consts::LN_2)
            }
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
}
