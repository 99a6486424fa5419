//! Mechanism check (paper §4, §6.6): explicit power iterates
//!   v_j(t) = (1 − η1β1) v_j(t−1) + η1 a_j Σ̂_T v_j(t−1),   v_j(0) = w_j(0),
//!   Σ̂_T = (1/n1) Σ_i T(y_i) x_i x_iᵀ,  T = −ℓ'(0, ·)   (no identity shift mean(T)·I),
//! run on the device and compared with the stage-1 rows by the mean cosine
//! (1/m) Σ_j cos(w_j(t), v_j(t)). Rows are rescaled to unit norm after each iterate (the cosine
//! does not depend on the scale; the map is linear). With β1 = 1/η1 the rows converge to the
//! eigenvector of largest |λ| of this unshifted Σ̂_T, the one `mim spectral` takes for
//! `spectral.T = "loss"` with its defaults `order = "abs"`, `shift = "none"`.
//!
//! Two exact routes to V Σ̂_T, picked by cost ([`PowerIteration::dense_pays`]):
//! - dense: Σ̂_T = Xᵀ diag(T) X / n1 (d×d) formed once (2·n1·d² flops), then V Σ̂_T costs
//!   2·m·d² per iterate — 1/(2α1) of a stage-1 step (4·n1·d·m);
//! - matrix-free: V Σ̂_T = ((X Vᵀ) ⊙ T)ᵀ X / n1, 4·n1·d·m per iterate (as much as a step), for
//!   large d, where d² would not pay off over the steps or not fit.

use burn::tensor::Tensor;

/// Explicit power iteration alongside stage 1.
pub struct PowerIteration {
    operator: Operator,
    a: Tensor<2>,
    v: Tensor<2>,
    keep: f64,
    lr: f64,
}

/// How V Σ̂_T is applied (boxed: a tensor handle is large).
enum Operator {
    /// Σ̂_T (d×d).
    Dense(Box<Tensor<2>>),
    /// X (n×d) and T (n×1).
    MatrixFree(Box<(Tensor<2>, Tensor<2>)>),
}

/// Largest d for the dense route (d² values: 1 GiB in f32).
const DENSE_MAX_D: usize = 16_384;

fn unit_rows(v: Tensor<2>) -> Tensor<2> {
    mim_model::normalize_rows(v, 1.0)
}

impl PowerIteration {
    /// Whether forming Σ̂_T once is cheaper than `steps` matrix-free iterates for X: n×d and
    /// m rows: 2nd² + steps·2md² < steps·4ndm, and d ≤ 16 384.
    pub fn dense_pays(n: usize, d: usize, m: usize, steps: usize) -> bool {
        let (n, d, m, s) = (n as f64, d as f64, m as f64, steps as f64);
        d <= DENSE_MAX_D as f64 && d * (n + s * m) < 2.0 * s * n * m
    }

    /// Starts at V = W(0). `x`: n×d, `t`: T(y_i) (n), `a`: second layer (m), `w0`: m×d;
    /// `dense` picks the route (see [`PowerIteration::dense_pays`]).
    pub fn new(
        x: Tensor<2>,
        t: Tensor<1>,
        a: Tensor<1>,
        w0: Tensor<2>,
        (lr, weight_decay): (f64, f64),
        dense: bool,
    ) -> Self {
        let n = x.dims()[0] as f64;
        let t = t.unsqueeze_dim::<2>(1);
        let operator = if dense {
            Operator::Dense(Box::new(
                (x.clone() * t).transpose().matmul(x).div_scalar(n),
            ))
        } else {
            Operator::MatrixFree(Box::new((x, t)))
        };
        Self {
            operator,
            a: a.unsqueeze_dim::<2>(1),
            v: unit_rows(w0),
            keep: 1.0 - lr * weight_decay,
            lr,
        }
    }

    /// One iterate: V ← (1 − ηβ)V + η diag(a) Σ̂_T V, rows then rescaled to unit norm.
    pub fn step(&mut self) {
        let sv = match &self.operator {
            Operator::Dense(sigma) => self.v.clone().matmul(sigma.as_ref().clone()), // m×d
            Operator::MatrixFree(xt) => {
                let (x, t) = xt.as_ref();
                let n = x.dims()[0] as f64;
                let xv = x.clone().matmul(self.v.clone().transpose()); // n×m
                (xv * t.clone()).transpose().matmul(x.clone()).div_scalar(n) // m×d
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn tensor2(rows: usize, cols: usize, seed: u64, device: &Device) -> Tensor<2> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f64> = (0..rows * cols)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        Tensor::from_data(TensorData::new(v, [rows, cols]), device)
    }

    /// The dense and the matrix-free routes are the same map: after 5 iterates in f64 the
    /// rows agree to 1e-10, and both track W for a W that is itself the power iterate.
    #[test]
    fn dense_and_matrix_free_routes_agree() {
        let device = Device::default();
        let (n, d, m) = (300, 20, 12);
        let x = tensor2(n, d, 1, &device).cast(burn::tensor::DType::F64);
        // T(y) = x_1² − 1 (a He2 label): Σ̂_T ≈ 2 e1e1ᵀ, which turns the rows towards ±e1.
        let x1 = x.clone().slice([0..n, 0..1]).squeeze_dim::<1>(1);
        let t = (x1.clone() * x1).sub_scalar(1.0);
        let a = Tensor::<1>::from_data(
            TensorData::new(
                (0..m)
                    .map(|j| if j % 2 == 0 { 1.0 } else { -1.0 })
                    .collect::<Vec<f64>>(),
                [m],
            ),
            &device,
        )
        .cast(burn::tensor::DType::F64);
        let w0 = tensor2(m, d, 3, &device).cast(burn::tensor::DType::F64);
        let mut routes = [true, false].map(|dense| {
            PowerIteration::new(
                x.clone(),
                t.clone(),
                a.clone(),
                w0.clone(),
                (3.0, 0.1),
                dense,
            )
        });
        for _ in 0..5 {
            routes.iter_mut().for_each(|p| p.step());
        }
        let gap = (routes[0].v.clone() - routes[1].v.clone()).abs().max();
        let gap = mim_model::to_host(gap)[0];
        assert!(gap < 1e-10, "{gap}");
        // W = the (unnormalised) iterate itself: cosine 1; W(0) after 5 iterates: below 1.
        let w = routes[1].v.clone().mul_scalar(3.0);
        assert!((routes[0].mean_cosine(&w) - 1.0).abs() < 1e-10);
        let moved = routes[0].mean_cosine(&w0);
        assert!(moved < 0.9, "{moved}");
    }

    #[test]
    fn dense_pays_when_d_is_small_next_to_the_steps_times_m() {
        assert!(PowerIteration::dense_pays(10_000, 100, 256, 5));
        assert!(PowerIteration::dense_pays(20_000, 1000, 1000, 11));
        // d = 16 384, m = 1024, 4 steps: Σ̂_T would cost more than the iterates.
        assert!(!PowerIteration::dense_pays(262_144, 16_384, 1024, 4));
        assert!(!PowerIteration::dense_pays(1 << 20, 20_000, 1 << 20, 100));
    }
}
