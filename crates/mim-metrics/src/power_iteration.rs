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
//!
//! The iterates may follow a subset of the neurons ([`neuron_subset`]: P rows spread evenly over
//! the m, `metrics.power_neurons`): every cost above then scales with P instead of m, and the
//! cosine is the mean over those P neurons. The rows of W(0) are i.i.d. and the two halves
//! a = ±1 are mirror images, so an evenly spread subset is a uniform sample of the neurons and
//! its mean an unbiased estimate of the mean over all m.

use burn::tensor::{DType, Int, Tensor, TensorData};
use mim_model::to_host_as;

/// Explicit power iteration alongside stage 1.
pub struct PowerIteration {
    operator: Operator,
    a: Tensor<2>,
    v: Tensor<2>,
    /// The rows of W the iterates follow (`None`: all of them).
    rows: Option<Tensor<1, Int>>,
    keep: f64,
    lr: f64,
}

/// P neurons out of m spread evenly, j_i = ⌊i·m/P⌋ for i = 0..P (both halves of a symmetric
/// initialisation alike); `None` when P = 0 or P ≥ m (follow them all).
pub fn neuron_subset(m: usize, p: usize) -> Option<Vec<usize>> {
    (p > 0 && p < m).then(|| (0..p).map(|i| i * m / p).collect())
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

/// Σ̂_T = Xᵀ diag(T) X / n1 (d×d) for the dense route. On a CPU backend (flex, ndarray: the
/// tensors live in host memory) the lower triangle is one faer product on all threads, half
/// the flops of the full one (n1·d² instead of 2·n1·d²), then mirrored; elsewhere (wgpu) the
/// product runs on the device.
fn sigma_t(x: Tensor<2>, t: Tensor<2>) -> Tensor<2> {
    let device = x.device();
    let [n, d] = x.dims();
    if !mim_model::host::is_host_device(&device) {
        return (x.clone() * t).transpose().matmul(x).div_scalar(n as f64);
    }
    let dtype = x.dtype();
    let values = match dtype {
        DType::F64 => TensorData::new(
            host_sigma_t(
                &to_host_as::<f64, 2>(&x),
                &to_host_as::<f64, 2>(&t),
                d,
                1.0 / n as f64,
            ),
            [d, d],
        ),
        _ => TensorData::new(
            host_sigma_t(
                &to_host_as::<f32, 2>(&x),
                &to_host_as::<f32, 2>(&t),
                d,
                1.0 / n as f32,
            ),
            [d, d],
        ),
    };
    Tensor::from_data(values, (&device, dtype))
}

/// Σ̂_T on the host: the lower triangle of Xᵀ (diag(T/n) X) by faer, mirrored to a full
/// row-major d×d matrix. `x`: n×d row-major, `t`: n, `inv_n` = 1/n in T.
fn host_sigma_t<T: faer::traits::RealField + Copy + std::ops::MulAssign>(
    x: &[T],
    t: &[T],
    d: usize,
    inv_n: T,
) -> Vec<T> {
    use faer::linalg::matmul::triangular::{matmul, BlockStructure};
    let n = t.len();
    let mut weighted = x.to_vec();
    for (row, &ti) in weighted.chunks_exact_mut(d).zip(t) {
        let s = ti * inv_n;
        row.iter_mut().for_each(|v| *v *= s);
    }
    let xm = faer::MatRef::from_row_major_slice(x, n, d);
    let ym = faer::MatRef::from_row_major_slice(&weighted, n, d);
    let mut sigma = faer::Mat::<T>::zeros(d, d);
    matmul(
        sigma.as_mut(),
        BlockStructure::TriangularLower,
        faer::Accum::Replace,
        xm.transpose(),
        BlockStructure::Rectangular,
        ym,
        BlockStructure::Rectangular,
        T::one_impl(),
        faer::Par::rayon(0),
    );
    (0..d * d)
        .map(|k| {
            let (i, j) = (k / d, k % d);
            if j <= i {
                sigma[(i, j)]
            } else {
                sigma[(j, i)]
            }
        })
        .collect()
}

impl PowerIteration {
    /// Whether forming Σ̂_T once is cheaper than `steps` matrix-free iterates for X: n×d and
    /// m rows: 2nd² + steps·2md² < steps·4ndm, and d ≤ 16 384.
    pub fn dense_pays(n: usize, d: usize, m: usize, steps: usize) -> bool {
        let (n, d, m, s) = (n as f64, d as f64, m as f64, steps as f64);
        d <= DENSE_MAX_D as f64 && d * (n + s * m) < 2.0 * s * n * m
    }

    /// Starts at V = W(0), following the neurons `rows` (all m when `None`; see
    /// [`neuron_subset`]). `x`: n×d, `t`: T(y_i) (n), `a`: second layer (m), `w0`: m×d;
    /// `dense` picks the route (see [`PowerIteration::dense_pays`], with m the number of
    /// neurons followed).
    pub fn new(
        x: Tensor<2>,
        t: Tensor<1>,
        a: Tensor<1>,
        w0: Tensor<2>,
        (lr, weight_decay): (f64, f64),
        dense: bool,
        rows: Option<&[usize]>,
    ) -> Self {
        let t = t.unsqueeze_dim::<2>(1);
        let rows = rows.map(|r| {
            let index: Vec<i64> = r.iter().map(|&j| j as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(index, [r.len()]), &w0.device())
        });
        let (a, w0) = match &rows {
            Some(index) => (a.select(0, index.clone()), w0.select(0, index.clone())),
            None => (a, w0),
        };
        let operator = if dense {
            Operator::Dense(Box::new(sigma_t(x, t)))
        } else {
            Operator::MatrixFree(Box::new((x, t)))
        };
        Self {
            operator,
            a: a.unsqueeze_dim::<2>(1),
            v: unit_rows(w0),
            rows,
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

    /// Per-row cosines cos(w_j, v_j) against the current iterate, for the neurons followed.
    /// `w`: m×d.
    pub fn cosines(&self, w: &Tensor<2>) -> Tensor<1> {
        let w = match &self.rows {
            Some(index) => w.clone().select(0, index.clone()),
            None => w.clone(),
        };
        (unit_rows(w) * self.v.clone())
            .sum_dim(1)
            .squeeze_dim::<1>(1)
    }

    /// mean_j cos(w_j, v_j) over the neurons followed.
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
        let device = Device::flex();
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
                None,
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

    /// Following a subset is following those rows of the full iterate: the map acts row by
    /// row, so after 5 iterates the subset's rows equal the full run's to 1e-12 and its mean
    /// cosine is the mean of the full run's cosines over those rows; the subset spreads over
    /// both halves (a = +1 and a = −1).
    #[test]
    fn a_subset_follows_the_same_rows_as_the_full_iterate() {
        let device = Device::flex();
        let (n, d, m) = (200, 15, 40);
        let f64_ = |t: Tensor<2>| t.cast(burn::tensor::DType::F64);
        let x = f64_(tensor2(n, d, 4, &device));
        let x1 = x.clone().slice([0..n, 0..1]).squeeze_dim::<1>(1);
        let t = (x1.clone() * x1).sub_scalar(1.0);
        let signs: Vec<f64> = (0..m).map(|j| if j < m / 2 { 1.0 } else { -1.0 }).collect();
        let a = Tensor::<1>::from_data(TensorData::new(signs, [m]), &device)
            .cast(burn::tensor::DType::F64);
        let w0 = f64_(tensor2(m, d, 5, &device));
        let rows = neuron_subset(m, 7).unwrap();
        assert_eq!(rows, [0, 5, 11, 17, 22, 28, 34]);
        assert!(rows.iter().any(|&j| j < m / 2) && rows.iter().any(|&j| j >= m / 2));
        assert_eq!(neuron_subset(m, m), None);
        assert_eq!(neuron_subset(m, 0), None);
        let run = |rows: Option<&[usize]>| {
            let mut p = PowerIteration::new(
                x.clone(),
                t.clone(),
                a.clone(),
                w0.clone(),
                (2.0, 0.2),
                false,
                rows,
            );
            (0..5).for_each(|_| p.step());
            p
        };
        let (full, part) = (run(None), run(Some(&rows)));
        let full_v = mim_model::to_host(full.v.clone());
        let part_v = mim_model::to_host(part.v.clone());
        for (i, &j) in rows.iter().enumerate() {
            for c in 0..d {
                assert!((full_v[j * d + c] - part_v[i * d + c]).abs() < 1e-12);
            }
        }
        let all = mim_model::to_host(full.cosines(&w0));
        let want = rows.iter().map(|&j| all[j]).sum::<f64>() / rows.len() as f64;
        let got = part.mean_cosine(&w0);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        assert!(
            (full.mean_cosine(&w0) - got).abs() > 1e-6,
            "the subset mean is its own"
        );
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
