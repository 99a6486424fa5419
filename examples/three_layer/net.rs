//! A three-layer network written as a user of mim would write one: its own Burn module, its
//! own initialisation, and the [`Network`] impl that lets mim's schedule engine train it.
//!
//! f(x) = Σ_k a_k tanh(w2_k · h1(x) + b2_k) + c,  h1(x) = log cosh(W1 x + b1).
//! Shapes: W1 m1×d, b1 m1, W2 m2×m1, b2 m2, a m2, c 1. Parameter paths: `w1`, `b1`, `w2`,
//! `b2`, `a`, `c`.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use mim_model::{
    from_host_1d, from_host_2d, set_norm, standard_normals, Activation, Network, Precision, Readout,
};

/// The user's network.
#[derive(Module, Debug)]
pub struct ThreeLayer {
    /// First layer W1 (m1×d).
    pub w1: Param<Tensor<2>>,
    /// First-layer biases (m1).
    pub b1: Param<Tensor<1>>,
    /// Second layer W2 (m2×m1).
    pub w2: Param<Tensor<2>>,
    /// Second-layer biases (m2).
    pub b2: Param<Tensor<1>>,
    /// Readout (m2).
    pub a: Param<Tensor<1>>,
    /// Readout offset (1).
    pub c: Param<Tensor<1>>,
}

impl ThreeLayer {
    /// Symmetric init: rows of W1 paired (w_j = w_{j+m1/2} = ε0·u_j), W2 rows N(0, I/m1) and
    /// paired, a = (+1, …, −1, …), biases and c zero, so f ≡ 0 at init. All draws from `seed`.
    pub fn init(
        d: usize,
        m1: usize,
        m2: usize,
        eps0: f64,
        seed: u64,
        device: &Device,
        p: Precision,
    ) -> Self {
        let mut w1 = standard_normals(m1 / 2 * d, seed);
        w1.chunks_mut(d).for_each(|row| set_norm(row, eps0));
        let w1: Vec<f64> = w1.iter().chain(w1.iter()).copied().collect();
        let w2: Vec<f64> = standard_normals(m2 / 2 * m1, seed + 1)
            .into_iter()
            .map(|v| v / (m1 as f64).sqrt())
            .collect();
        let w2: Vec<f64> = w2.iter().chain(w2.iter()).copied().collect();
        let a: Vec<f64> = (0..m2)
            .map(|k| if k < m2 / 2 { 1.0 } else { -1.0 })
            .collect();
        Self {
            w1: Param::from_tensor(from_host_2d(&w1, m1, d, device, p)),
            b1: Param::from_tensor(from_host_1d(&vec![0.0; m1], device, p)),
            w2: Param::from_tensor(from_host_2d(&w2, m2, m1, device, p)),
            b2: Param::from_tensor(from_host_1d(&vec![0.0; m2], device, p)),
            a: Param::from_tensor(from_host_1d(&a, device, p)),
            c: Param::from_tensor(from_host_1d(&[0.0], device, p)),
        }
    }

    fn h1(&self, x: Tensor<2>) -> Tensor<2> {
        Activation::Logcosh
            .apply(x.matmul(self.w1.val().transpose()) + self.b1.val().unsqueeze_dim::<2>(0))
    }

    fn h2(&self, h1: Tensor<2>) -> Tensor<2> {
        Activation::Tanh
            .apply(h1.matmul(self.w2.val().transpose()) + self.b2.val().unsqueeze_dim::<2>(0))
    }
}

impl Network for ThreeLayer {
    fn forward(&self, x: Tensor<2>) -> Tensor<1> {
        let h2 = self.h2(self.h1(x));
        h2.matmul(self.a.val().unsqueeze_dim::<2>(1))
            .squeeze_dim::<1>(1)
            + self.c.val()
    }

    fn hidden(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        let h1 = self.h1(x);
        let h2 = self.h2(h1.clone());
        vec![h1, h2]
    }

    fn readout(&self) -> Option<Readout> {
        Some(Readout {
            weight: "a".into(),
            bias: Some("c".into()),
        })
    }

    fn first_layer(&self) -> Tensor<2> {
        self.w1.val()
    }

    fn first_layer_path(&self) -> String {
        "w1".into()
    }
}
