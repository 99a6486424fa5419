//! The two-layer network f(x) = Σ_j a_j σ(w_j·x + b_j) + c and its symmetric initialisation.

use crate::activation::Activation;
use crate::host::{from_host_1d, from_host_2d, set_norm, Precision};
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// The network. Shapes: `w` m×d, `b` m, `a` m, `c` 1.
#[derive(Module, Debug)]
pub struct TwoLayer {
    /// First-layer weights W (m×d), row j is w_j.
    pub w: Param<Tensor<2>>,
    /// Biases b (m).
    pub b: Param<Tensor<1>>,
    /// Second-layer weights a (m).
    pub a: Param<Tensor<1>>,
    /// Readout offset c (1 element); 0 at init, fitted with `a` in stage 2.
    pub c: Param<Tensor<1>>,
    /// The activation σ (not a parameter).
    #[module(skip)]
    pub activation: Activation,
}

/// Invalid network hyper-parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// Width zero or odd.
    #[error("model.width = {0}: must be a positive even number (symmetric init pairs neurons)")]
    Width(usize),
    /// Init scale not positive and finite.
    #[error("model.init_scale = {0}: must be positive and finite")]
    InitScale(f64),
    /// An [`Mlp`](crate::Mlp) without hidden layers.
    #[error("model.widths = []: an MLP needs at least one hidden layer")]
    NoHiddenLayer,
    /// A hidden width of an [`Mlp`](crate::Mlp) that is zero.
    #[error("model.widths[{index}] = 0: every hidden width must be at least 1")]
    ZeroWidth {
        /// 0-based position in `model.widths`.
        index: usize,
    },
    /// An odd first or last hidden width of an [`Mlp`](crate::Mlp) under the symmetric init.
    #[error("model.widths[{index}] = {width}: the first and the last hidden layer must have even widths (symmetric init pairs their units)")]
    OddPairedWidth {
        /// 0-based position in `model.widths`.
        index: usize,
        /// The width given.
        width: usize,
    },
    /// A per-layer list of an [`Mlp`](crate::Mlp) whose length is neither 1 nor the depth.
    #[error("model.{field} has {len} entries but model.widths has {depth} hidden layers: give one per hidden layer or a single one for all")]
    PerLayerLength {
        /// The field (`activations`, `bias`).
        field: &'static str,
        /// Its length.
        len: usize,
        /// The number of hidden layers L.
        depth: usize,
    },
    /// A hidden-layer number outside 1..=L.
    #[error("{what} = {layer}: this network has hidden layers 1..={depth}")]
    Layer {
        /// What named the layer (`standardize`, `layer`).
        what: &'static str,
        /// The layer asked for (1-based).
        layer: usize,
        /// The number of hidden layers L.
        depth: usize,
    },
}

/// Hyper-parameters of [`TwoLayer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwoLayerConfig {
    /// Width m (even).
    pub width: usize,
    /// The activation σ.
    pub activation: Activation,
    /// ε0: norm of each first-layer row at init.
    pub init_scale: f64,
}

impl Default for TwoLayerConfig {
    fn default() -> Self {
        Self {
            width: 256,
            activation: Activation::Logcosh,
            init_scale: 1e-3,
        }
    }
}

impl TwoLayerConfig {
    /// Checks the hyper-parameters.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.width == 0 || self.width % 2 == 1 {
            return Err(ModelError::Width(self.width));
        }
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) {
            return Err(ModelError::InitScale(self.init_scale));
        }
        Ok(())
    }

    /// Symmetric initialisation (paper §2): for j < m/2, w_j = ε0·u_j with u_j uniform on
    /// S^{d−1}, a_j = +1, b_j = 0; neuron j + m/2 has the same w_j, b_j and a = −1. Hence
    /// f ≡ 0 at init. Directions are drawn on the host from `seed` (ChaCha8), so every
    /// backend starts from the same W.
    pub fn symmetric_init(
        &self,
        d: usize,
        seed: u64,
        device: &Device,
        precision: Precision,
    ) -> Result<TwoLayer, ModelError> {
        self.validate()?;
        let m = self.width;
        let half = m / 2;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut w = vec![0.0f64; m * d];
        for j in 0..half {
            let row = &mut w[j * d..(j + 1) * d];
            for v in row.iter_mut() {
                *v = StandardNormal.sample(&mut rng);
            }
            set_norm(row, self.init_scale);
        }
        let (top, bottom) = w.split_at_mut(half * d);
        bottom.copy_from_slice(top);
        let a: Vec<f64> = (0..m).map(|j| if j < half { 1.0 } else { -1.0 }).collect();
        Ok(TwoLayer {
            w: Param::from_tensor(from_host_2d(&w, m, d, device, precision)),
            b: Param::from_tensor(from_host_1d(&vec![0.0; m], device, precision)),
            a: Param::from_tensor(from_host_1d(&a, device, precision)),
            c: Param::from_tensor(from_host_1d(&[0.0], device, precision)),
            activation: self.activation,
        })
    }
}

impl TwoLayer {
    /// Width m.
    pub fn width(&self) -> usize {
        self.w.val().dims()[0]
    }

    /// Input dimension d.
    pub fn input_dim(&self) -> usize {
        self.w.val().dims()[1]
    }

    /// Pre-activations Z = X Wᵀ + 1 bᵀ. X: n×d → n×m.
    pub fn preactivation(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.w.val().transpose()) + self.b.val().unsqueeze_dim::<2>(0)
    }

    /// Features Φ = σ(X Wᵀ + 1 bᵀ). X: n×d → n×m.
    pub fn features(&self, x: Tensor<2>) -> Tensor<2> {
        self.activation.apply(self.preactivation(x))
    }

    /// f(X) = Φ a + c. X: n×d → n.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<1> {
        let phi = self.features(x);
        phi.matmul(self.a.val().unsqueeze_dim::<2>(1))
            .squeeze_dim::<1>(1)
            + self.c.val()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{standard_normals as gaussian, to_host};

    /// f ≡ 0 at symmetric init for every activation, exactly (pairs cancel term by term).
    #[test]
    fn symmetric_init_is_identically_zero() {
        let (n, d) = (64, 30);
        for precision in [Precision::F32, Precision::F64] {
            for act in Activation::ALL {
                let dev = Device::flex();
                let cfg = TwoLayerConfig {
                    width: 16,
                    activation: act,
                    init_scale: 0.7,
                };
                let model = cfg.symmetric_init(d, 3, &dev, precision).unwrap();
                let x = from_host_2d(&gaussian(n * d, 1), n, d, &dev, precision);
                let f = to_host(model.forward(x));
                let worst = f.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                assert!(worst < 1e-6, "{act} {precision:?}: max|f| = {worst}");
            }
        }
    }

    #[test]
    fn init_rows_have_norm_eps0_and_are_paired() {
        let dev = Device::flex();
        let cfg = TwoLayerConfig {
            width: 8,
            activation: Activation::Logcosh,
            init_scale: 1e-3,
        };
        let model = cfg.symmetric_init(5, 0, &dev, Precision::F64).unwrap();
        let w = to_host(model.w.val());
        let a = to_host(model.a.val());
        for j in 0..8 {
            let norm = w[j * 5..(j + 1) * 5]
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt();
            assert!((norm - 1e-3).abs() < 1e-15);
        }
        assert_eq!(&w[..20], &w[20..]);
        assert_eq!(a, vec![1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]);
    }

    #[test]
    fn bad_width_and_scale_are_rejected() {
        let mut cfg = TwoLayerConfig {
            width: 7,
            ..Default::default()
        };
        assert_eq!(cfg.validate(), Err(ModelError::Width(7)));
        cfg.width = 0;
        assert!(cfg.validate().is_err());
        cfg.width = 8;
        cfg.init_scale = f64::NAN;
        assert!(cfg.validate().is_err());
    }
}
