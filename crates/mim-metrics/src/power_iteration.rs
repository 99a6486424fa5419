//! Mechanism check (paper §4, §6.6): explicit power iterates
//!   v_j(t) = (1 − η1β1) v_j(t−1) + η1 a_j Σ̂_T v_j(t−1),   v_j(0) = w_j(0),
//!   Σ̂_T = (1/n1) Σ_i T(y_i) x_i x_iᵀ,  T = −ℓ'(0, ·),
//! run on the device without forming Σ̂_T (Σ̂_T V = Xᵀ(T ⊙ X V)/n1), and compared with the
//! stage-1 rows by the mean cosine (1/m) Σ_j cos(w_j(t), v_j(t)). Rows are rescaled to unit
//! norm after each iterate (the cosine does not depend on the scale; the map is linear).

use burn::tensor::Tensor;

/// Explicit power iteration alongside stage 1.
pub struct PowerIteration {
    x: Tensor<2>,
    t: Tensor<2>,
    a: Tensor<2>,
    v: Tensor<2>,
    keep: f64,
    lr: f64,
}

fn unit_rows(v: Tensor<2>) -> Tensor<2> {
    let n = v.clone().square().sum_dim(1).sqrt().clamp_min(1e-300);
    v / n
}

impl PowerIteration {
    /// Starts at V = W(0). `x`: n×d, `t`: T(y_i) (n), `a`: second layer (m), `w0`: m×d.
    pub fn new(
        x: Tensor<2>,
        t: Tensor<1>,
        a: Tensor<1>,
        w0: Tensor<2>,
        lr: f64,
        weight_decay: f64,
    ) -> Self {
        Self {
            x,
            t: t.unsqueeze_dim::<2>(1),
            a: a.unsqueeze_dim::<2>(1),
            v: unit_rows(w0),
            keep: 1.0 - lr * weight_decay,
            lr,
        }
    }

    /// One iterate: V ← (1 − ηβ)V + η diag(a) Σ̂_T V, rows then rescaled to unit norm.
    pub fn step(&mut self) {
        let n = self.x.dims()[0] as f64;
        let xv = self.x.clone().matmul(self.v.clone().transpose()); // n×m
        let sv = (xv * self.t.clone())
            .transpose()
            .matmul(self.x.clone())
            .div_scalar(n); // m×d
        let next = self.v.clone().mul_scalar(self.keep) + (sv * self.a.clone()).mul_scalar(self.lr);
        self.v = unit_rows(next);
    }

    /// Per-row cosines cos(w_j, v_j) against the current iterate. `w`: m×d.
    pub fn cosines(&self, w: &Tensor<2>) -> Tensor<1> {
        (unit_rows(w.clone()) * self.v.clone())
            .sum_dim(1)
            .squeeze_dim::<1>(1)
    }

    /// mean_j cos(w_j, v_j).
    pub fn mean_cosine(&self, w: &Tensor<2>) -> f64 {
        mim_model::to_host(self.cosines(w).mean())[0]
    }
}
