//! Stage 2 (paper §3): biases re-drawn, W and b frozen, readout fitted on D2 by a convex
//! problem. Features Φ = σ(X Wᵀ + 1bᵀ) are standardised (centred, unit variance); the ridge
//! solution on them is
//!   β(λ) = (C + λI)^{−1} r,   C = Φ̃ᵀΦ̃/n,  r = Φ̃ᵀ(y − ȳ)/n,  Φ̃ = (Φ − 1μᵀ) diag(1/s),
//! and maps back to the network as a_j = β_j/s_j, c = ȳ − Σ_j a_j μ_j.
//! Solves go through faer (Cholesky; a symmetric eigendecomposition reused for the λ grid).

use crate::config::{Auto, BiasInit, Stage2Config, Stage2Solver};
use crate::error::TrainError;
use burn::module::Param;
use burn::tensor::Tensor;
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use mim_model::{from_host_1d, from_host_2d, to_host, Precision, TwoLayer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

/// What stage 2 chose and reached.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stage2Report {
    /// The λ used for the final fit (the weight decay for solver = "gd").
    pub lambda: f64,
    /// (λ, held-out normalised MSE) for each grid point when λ = "auto"; empty otherwise.
    pub lambda_grid: Vec<(f64, f64)>,
    /// mean (f − y)² / Var(y) on D2.
    pub train_mse: f64,
}

/// The λ grid of `ridge_lambda = "auto"`: 10^{−6}, 10^{−5.5}, …, 10^{3}.
pub fn lambda_grid() -> Vec<f64> {
    (0..=18)
        .map(|k| 10f64.powf(-6.0 + 0.5 * k as f64))
        .collect()
}

/// Standardised normal equations of one block of rows.
struct Normal {
    m: usize,
    mu: Vec<f64>,
    s: Vec<f64>,
    ybar: f64,
    /// C, m×m row-major.
    c: Vec<f64>,
    r: Vec<f64>,
}

impl Normal {
    /// From the feature means μ, label mean ȳ, the centred covariance Φ_cᵀΦ_c/n (m×m) and
    /// Φ_cᵀ(y − ȳ)/n: scales s_i = √C_ii (1 for constant features) and standardises.
    fn standardise(mu: Vec<f64>, ybar: f64, cov: &[f64], cross: &[f64]) -> Normal {
        let m = mu.len();
        let s: Vec<f64> = (0..m)
            .map(|i| {
                let v = cov[i * m + i].max(0.0).sqrt();
                if v > 1e-10 {
                    v
                } else {
                    1.0
                }
            })
            .collect();
        let c = (0..m * m).map(|k| cov[k] / (s[k / m] * s[k % m])).collect();
        let r = (0..m).map(|i| cross[i] / s[i]).collect();
        Normal {
            m,
            mu,
            s,
            ybar,
            c,
            r,
        }
    }

    /// The network readout (a, c) for standardised coefficients β: a_j = β_j/s_j,
    /// c = ȳ − Σ_j a_j μ_j.
    fn readout(&self, beta: &[f64]) -> (Vec<f64>, f64) {
        let a: Vec<f64> = (0..self.m).map(|j| beta[j] / self.s[j]).collect();
        let c = self.ybar - (0..self.m).map(|j| a[j] * self.mu[j]).sum::<f64>();
        (a, c)
    }
}

/// Computes μ, s, ȳ, C and r for features Φ (n×m) and labels y on the device, then moves the
/// m×m system to the host in f64.
fn normal_equations(phi: &Tensor<2>, y: &Tensor<1>) -> Normal {
    let nf = phi.dims()[0] as f64;
    let mu_t = phi.clone().mean_dim(0); // 1×m
    let phic = phi.clone() - mu_t.clone();
    let ybar = to_host(y.clone().mean())[0];
    let yc = y.clone().sub_scalar(ybar);
    let cov = to_host(phic.clone().transpose().matmul(phic.clone()).div_scalar(nf));
    let cross = to_host(
        phic.transpose()
            .matmul(yc.unsqueeze_dim::<2>(1))
            .div_scalar(nf),
    );
    Normal::standardise(to_host(mu_t), ybar, &cov, &cross)
}

/// Raw sums over rows of features φ (m) and labels y, accumulated chunk by chunk (for data
/// that is streamed rather than held in memory): n, Σφ, Σφφᵀ, Σφy, Σy, Σy².
#[derive(Clone, Debug)]
pub struct GramSums {
    m: usize,
    n: usize,
    phi: Vec<f64>,
    /// Σφφᵀ, m×m row-major, lower triangle only (j ≤ i; the upper stays 0): half the flops
    /// of the full product. Read it through `GramSums::gram`.
    phiphi: Vec<f64>,
    phiy: Vec<f64>,
    y: f64,
    yy: f64,
}

impl GramSums {
    /// Empty sums for m features.
    pub fn new(m: usize) -> Self {
        Self {
            m,
            n: 0,
            phi: vec![0.0; m],
            phiphi: vec![0.0; m * m],
            phiy: vec![0.0; m],
            y: 0.0,
            yy: 0.0,
        }
    }

    /// Rows so far.
    pub fn count(&self) -> usize {
        self.n
    }

    /// (Σφφᵀ)_ij from the stored lower triangle.
    #[inline(always)]
    fn gram(&self, i: usize, j: usize) -> f64 {
        self.phiphi[i.max(j) * self.m + i.min(j)]
    }

    /// Adds rows: `phi` rows×m row-major, `y` rows.
    pub fn add(&mut self, phi: &[f64], y: &[f64]) {
        use faer::linalg::matmul::triangular::{matmul, BlockStructure};
        let (m, rows) = (self.m, y.len());
        let pm = faer::MatRef::from_row_major_slice(phi, rows, m);
        matmul(
            faer::MatMut::from_row_major_slice_mut(&mut self.phiphi, m, m),
            BlockStructure::TriangularLower,
            faer::Accum::Add,
            pm.transpose(),
            BlockStructure::Rectangular,
            pm,
            BlockStructure::Rectangular,
            1.0,
            faer::Par::rayon(0),
        );
        for (row, &yi) in phi.chunks_exact(m).zip(y) {
            for ((s, sy), &v) in self.phi.iter_mut().zip(self.phiy.iter_mut()).zip(row) {
                *s += v;
                *sy += v * yi;
            }
            self.y += yi;
            self.yy += yi * yi;
        }
        self.n += rows;
    }

    fn normal(&self) -> Normal {
        let (m, n) = (self.m, self.n as f64);
        let mu: Vec<f64> = self.phi.iter().map(|v| v / n).collect();
        let ybar = self.y / n;
        let cov: Vec<f64> = (0..m * m)
            .map(|k| self.gram(k / m, k % m) / n - mu[k / m] * mu[k % m])
            .collect();
        let cross: Vec<f64> = (0..m).map(|j| self.phiy[j] / n - mu[j] * ybar).collect();
        Normal::standardise(mu, ybar, &cov, &cross)
    }

    /// mean (aᵀφ + c − y)² / Var(y) over the summed rows, from the sums alone.
    pub fn normalized_mse(&self, a: &[f64], c: f64) -> f64 {
        let (m, n) = (self.m, self.n as f64);
        let mut quad = 0.0;
        for i in 0..m {
            quad += a[i] * (0..m).map(|j| self.gram(i, j) * a[j]).sum::<f64>();
        }
        let a_phi: f64 = (0..m).map(|j| a[j] * self.phi[j]).sum();
        let a_phiy: f64 = (0..m).map(|j| a[j] * self.phiy[j]).sum();
        let sse = quad + 2.0 * c * a_phi - 2.0 * a_phiy + n * c * c - 2.0 * c * self.y + self.yy;
        let var = self.yy / n - (self.y / n).powi(2);
        (sse / n) / var.max(1e-300)
    }

    /// The sums of two disjoint row sets.
    pub fn merged(&self, other: &GramSums) -> GramSums {
        let add = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect();
        GramSums {
            m: self.m,
            n: self.n + other.n,
            phi: add(&self.phi, &other.phi),
            phiphi: add(&self.phiphi, &other.phiphi),
            phiy: add(&self.phiy, &other.phiy),
            y: self.y + other.y,
            yy: self.yy + other.yy,
        }
    }
}

/// Fits the readout from streamed sums: λ = "auto" is chosen on the held-out sums `val`
/// (fit on `train`, the same grid as [`lambda_grid`]), then the readout is refit on
/// train + val. Returns (a, c, report) with `train_mse` on train + val.
pub fn fit_readout_from_sums(
    train: &GramSums,
    val: &GramSums,
    cfg: &Stage2Config,
) -> Result<(Vec<f64>, f64, Stage2Report), TrainError> {
    let (lambda, lambda_grid) = match (cfg.solver, cfg.ridge_lambda) {
        (Stage2Solver::Gd, _) => (cfg.weight_decay, Vec::new()),
        (Stage2Solver::Ridge, Auto::Value(l)) => (l, Vec::new()),
        (Stage2Solver::Ridge, Auto::Auto) => {
            let ne = train.normal();
            let (vals, q) = eigen(&ne)?;
            let m = ne.m;
            let qtr: Vec<f64> = (0..m)
                .map(|k| (0..m).map(|i| q[(i, k)] * ne.r[i]).sum())
                .collect();
            let grid: Vec<(f64, f64)> = lambda_grid()
                .into_iter()
                .map(|lambda| {
                    let coef: Vec<f64> = (0..m)
                        .map(|k| qtr[k] / (vals[k].max(0.0) + lambda))
                        .collect();
                    let beta: Vec<f64> = (0..m)
                        .map(|i| (0..m).map(|k| q[(i, k)] * coef[k]).sum())
                        .collect();
                    let (a, c) = ne.readout(&beta);
                    (lambda, val.normalized_mse(&a, c))
                })
                .collect();
            (best_lambda(&grid)?, grid)
        }
    };
    let all = train.merged(val);
    let ne = all.normal();
    let beta = match cfg.solver {
        Stage2Solver::Ridge => ridge_solve(&ne, lambda)?,
        Stage2Solver::Gd => gd_solve(&ne, lambda, cfg.lr, cfg.steps)?,
    };
    let (a, c) = checked_readout(&ne, &beta)?;
    let train_mse = all.normalized_mse(&a, c);
    Ok((
        a,
        c,
        Stage2Report {
            lambda,
            lambda_grid,
            train_mse,
        },
    ))
}

/// The index of the smallest finite score (the first of equals); None if none is finite.
pub(crate) fn argmin_finite(scores: impl IntoIterator<Item = f64>) -> Option<usize> {
    scores
        .into_iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .fold(None, |best: Option<(usize, f64)>, (j, v)| match best {
            Some((_, b)) if b <= v => best,
            _ => Some((j, v)),
        })
        .map(|(j, _)| j)
}

/// The λ with the smallest finite held-out error (the first of equals).
fn best_lambda(grid: &[(f64, f64)]) -> Result<f64, TrainError> {
    argmin_finite(grid.iter().map(|&(_, mse)| mse))
        .map(|j| grid[j].0)
        .ok_or_else(|| TrainError::Diverged {
            stage: "stage2".into(),
            step: 0,
            quantity: "held-out MSE".into(),
            value: f64::NAN,
        })
}

/// [`Normal::readout`], refusing non-finite values.
fn checked_readout(ne: &Normal, beta: &[f64]) -> Result<(Vec<f64>, f64), TrainError> {
    let (a, c) = ne.readout(beta);
    if let Some(bad) = a.iter().chain([c].iter()).find(|v| !v.is_finite()) {
        return Err(TrainError::Diverged {
            stage: "stage2".into(),
            step: 0,
            quantity: "readout a".into(),
            value: *bad,
        });
    }
    Ok((a, c))
}

fn mat(m: usize, v: &[f64]) -> Mat<f64> {
    Mat::from_fn(m, m, |i, j| v[i * m + j])
}

/// β = (C + λI)^{−1} r by Cholesky. When C + λI is numerically not positive definite
/// (nearly collinear features and a tiny λ), the same system is solved through the
/// eigendecomposition C = QΛQᵀ with the rounding-negative eigenvalues set to 0 (the same
/// treatment the λ grid search uses), and with λ = 0 the null directions are dropped
/// (minimum-norm solution).
fn ridge_solve(ne: &Normal, lambda: f64) -> Result<Vec<f64>, TrainError> {
    let m = ne.m;
    let mut a = mat(m, &ne.c);
    for i in 0..m {
        a[(i, i)] += lambda;
    }
    let rhs = Mat::from_fn(m, 1, |i, _| ne.r[i]);
    if let Ok(llt) = a.llt(Side::Lower) {
        let sol = llt.solve(&rhs);
        return Ok((0..m).map(|i| sol[(i, 0)]).collect());
    }
    let (vals, q) = eigen(ne)?;
    let top = vals.last().copied().unwrap_or(0.0).max(0.0);
    let coef: Vec<f64> = (0..m)
        .map(|k| {
            let den = vals[k].max(0.0) + lambda;
            let qtr: f64 = (0..m).map(|i| q[(i, k)] * ne.r[i]).sum();
            if den > 1e-12 * top.max(1e-300) {
                qtr / den
            } else {
                0.0
            }
        })
        .collect();
    Ok((0..m)
        .map(|i| (0..m).map(|k| q[(i, k)] * coef[k]).sum())
        .collect())
}

/// Symmetric eigendecomposition C = Q Λ Qᵀ (eigenvalues ascending).
fn eigen(ne: &Normal) -> Result<(Vec<f64>, Mat<f64>), TrainError> {
    let evd = mat(ne.m, &ne.c)
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| TrainError::Numerical {
            stage: "stage2".into(),
            message: format!("eigendecomposition of the feature Gram matrix failed ({e:?})"),
        })?;
    let s = evd.S().column_vector();
    let vals = (0..ne.m).map(|i| s[i]).collect();
    Ok((vals, evd.U().to_owned()))
}

/// Held-out choice of λ: fit on the first 80 % of rows, score on the last 20 %.
fn choose_lambda(
    phi: &Tensor<2>,
    y: &Tensor<1>,
    precision: Precision,
) -> Result<(f64, Vec<(f64, f64)>), TrainError> {
    let [n, m] = phi.dims();
    let n_tr = (n * 4) / 5;
    let n_val = n - n_tr;
    if n_tr < 2 || n_val < 1 {
        return Err(TrainError::Numerical {
            stage: "stage2".into(),
            message: format!("ridge_lambda = \"auto\" needs at least 3 stage-2 samples, got {n}"),
        });
    }
    let ne = normal_equations(
        &phi.clone().narrow(0, 0, n_tr),
        &y.clone().narrow(0, 0, n_tr),
    );
    let (vals, q) = eigen(&ne)?;
    // P = (Φ_val − 1μᵀ) diag(1/s) Q, computed on the device: n_val×m.
    let scaled_q: Vec<f64> = (0..m * m)
        .map(|k| q[(k / m, k % m)] / ne.s[k / m])
        .collect();
    let device = phi.device();
    let mu = from_host_2d(&ne.mu, 1, m, &device, precision);
    let p = to_host(
        (phi.clone().narrow(0, n_tr, n_val) - mu)
            .matmul(from_host_2d(&scaled_q, m, m, &device, precision)),
    );
    let y_val = to_host(y.clone().narrow(0, n_tr, n_val));
    let y_mean = y_val.iter().sum::<f64>() / n_val as f64;
    let y_var =
        (y_val.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / n_val as f64).max(1e-300);
    // Qᵀ r
    let qtr: Vec<f64> = (0..m)
        .map(|k| (0..m).map(|i| q[(i, k)] * ne.r[i]).sum())
        .collect();
    let mut grid = Vec::new();
    for lambda in lambda_grid() {
        let coef: Vec<f64> = (0..m)
            .map(|k| qtr[k] / (vals[k].max(0.0) + lambda))
            .collect();
        let mse = (0..n_val)
            .map(|i| {
                let pred = ne.ybar + (0..m).map(|k| p[i * m + k] * coef[k]).sum::<f64>();
                (pred - y_val[i]).powi(2)
            })
            .sum::<f64>()
            / n_val as f64
            / y_var;
        grid.push((lambda, mse));
    }
    Ok((best_lambda(&grid)?, grid))
}

/// GD on β for (1/2n)‖Φ̃β − (y − ȳ)‖² + (λ/2)‖β‖² from β = 0, i.e. β ← β − η(Cβ − r + λβ),
/// with η = lr / λ_max(C + λI) so that lr < 2 converges.
fn gd_solve(ne: &Normal, lambda: f64, lr: f64, steps: usize) -> Result<Vec<f64>, TrainError> {
    let m = ne.m;
    let (vals, _) = eigen(ne)?;
    let top = vals.last().copied().unwrap_or(1.0).max(0.0) + lambda;
    let eta = lr / top.max(1e-300);
    let c = mat(m, &ne.c);
    let mut beta = Mat::<f64>::zeros(m, 1);
    let r = Mat::from_fn(m, 1, |i, _| ne.r[i]);
    for step in 1..=steps {
        let grad = &c * &beta - &r + &beta * faer::Scale(lambda);
        beta = &beta - &grad * faer::Scale(eta);
        let norm = beta.norm_l2();
        if !norm.is_finite() {
            return Err(TrainError::Diverged {
                stage: "stage2".into(),
                step,
                quantity: "‖a‖".into(),
                value: norm,
            });
        }
    }
    Ok((0..m).map(|i| beta[(i, 0)]).collect())
}

/// Draws the stage-2 biases (host, from `seed`).
pub fn draw_biases(kind: BiasInit, m: usize, seed: u64, current: Vec<f64>) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    match kind {
        BiasInit::Gaussian => (0..m).map(|_| StandardNormal.sample(&mut rng)).collect(),
        BiasInit::Uniform => (0..m).map(|_| rng.random_range(-1.0..=1.0)).collect(),
        BiasInit::Zero => vec![0.0; m],
        BiasInit::Keep => current,
    }
}

/// Var(y) = mean (y − ȳ)² (the population form, as [`normalized_mse`] divides by).
pub fn label_variance(y: &[f64]) -> f64 {
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n
}

/// Normalised mean squared error mean (f − y)² / Var(y) (Var over the same sample).
pub fn normalized_mse(f: &[f64], y: &[f64]) -> f64 {
    let n = y.len() as f64;
    let mse = f.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n;
    mse / label_variance(y).max(1e-300)
}

/// The convex readout fit on features Φ (n×m) and labels y (n): λ as `cfg` says (fixed, or
/// `"auto"` on a held-out 20 %), then ridge (or GD) on all rows. Returns (a, c, report) with
/// `train_mse` left at NaN (the caller measures it through the network). Errors are reported
/// under the stage name `stage`.
pub fn fit_readout(
    phi: &Tensor<2>,
    y: &Tensor<1>,
    cfg: &Stage2Config,
    precision: Precision,
    stage: &str,
) -> Result<(Vec<f64>, f64, Stage2Report), TrainError> {
    let fit = || -> Result<(Vec<f64>, f64, Stage2Report), TrainError> {
        let (lambda, lambda_grid) = match (cfg.solver, cfg.ridge_lambda) {
            (Stage2Solver::Gd, _) => (cfg.weight_decay, Vec::new()),
            (Stage2Solver::Ridge, Auto::Value(l)) => (l, Vec::new()),
            (Stage2Solver::Ridge, Auto::Auto) => choose_lambda(phi, y, precision)?,
        };
        let ne = normal_equations(phi, y);
        let beta = match cfg.solver {
            Stage2Solver::Ridge => ridge_solve(&ne, lambda)?,
            Stage2Solver::Gd => gd_solve(&ne, lambda, cfg.lr, cfg.steps)?,
        };
        let (a, c) = checked_readout(&ne, &beta)?;
        Ok((
            a,
            c,
            Stage2Report {
                lambda,
                lambda_grid,
                train_mse: f64::NAN,
            },
        ))
    };
    fit().map_err(|e| e.in_stage(stage))
}

/// Runs stage 2 on (x, y) = D2 and returns the model with new b, a, c: the biases re-drawn
/// (`cfg.bias`, from `seed`), then the [`crate::schedule::ridge_stage`] on the features.
pub fn run_stage2(
    mut model: TwoLayer,
    x: &Tensor<2>,
    y: &Tensor<1>,
    cfg: &Stage2Config,
    seed: u64,
    precision: Precision,
) -> Result<(TwoLayer, Stage2Report), TrainError> {
    let device = x.device();
    let m = model.width();
    let b = draw_biases(cfg.bias, m, seed, to_host(model.b.val()));
    model.b = Param::from_tensor(from_host_1d(&b, &device, precision));
    crate::schedule::ridge_stage(model, x, y, cfg, precision, "stage2")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use mim_model::{standard_normals as gaussian, Activation, TwoLayerConfig};

    /// A logcosh network with Gaussian first-layer rows (seed 2), for readout tests.
    fn random_model(m: usize, d: usize, dev: &Device, p: Precision) -> TwoLayer {
        let mut model = TwoLayerConfig {
            width: m,
            activation: Activation::Logcosh,
            init_scale: 1.0,
        }
        .symmetric_init(d, 1, dev, p)
        .unwrap();
        model.w = Param::from_tensor(from_host_2d(&gaussian(m * d, 2), m, d, dev, p));
        model
    }

    /// When y is exactly a readout of the features, ridge with tiny λ recovers it (train MSE ≈ 0),
    /// GD approaches the same solution, and "auto" picks a small λ.
    #[test]
    fn ridge_and_gd_fit_a_realisable_readout() {
        let (n, d, m) = (400, 5, 8);
        let dev = Device::flex();
        let p = Precision::F64;
        let model = random_model(m, d, &dev, p);
        let x = from_host_2d(&gaussian(n * d, 3), n, d, &dev, p);
        // Teacher: same W, biases of the "gaussian" draw with seed 7, readout a*, offset 0.3.
        let b = draw_biases(BiasInit::Gaussian, m, 7, vec![]);
        let a_star = gaussian(m, 4);
        let mut teacher = random_model(m, d, &dev, p);
        teacher.b = Param::from_tensor(from_host_1d(&b, &dev, p));
        teacher.a = Param::from_tensor(from_host_1d(&a_star, &dev, p));
        teacher.c = Param::from_tensor(from_host_1d(&[0.3], &dev, p));
        let y = teacher.forward(x.clone());

        let ridge = Stage2Config {
            ridge_lambda: Auto::Value(1e-10),
            ..Default::default()
        };
        let (fitted, rep) = run_stage2(model.clone(), &x, &y, &ridge, 7, p).unwrap();
        assert!(rep.train_mse < 1e-8, "ridge train mse {}", rep.train_mse);
        let a = to_host(fitted.a.val());
        for j in 0..m {
            assert!(
                (a[j] - a_star[j]).abs() < 1e-3,
                "a[{j}] = {} vs {}",
                a[j],
                a_star[j]
            );
        }

        let auto = Stage2Config::default();
        let (_, rep) = run_stage2(model.clone(), &x, &y, &auto, 7, p).unwrap();
        assert_eq!(rep.lambda_grid.len(), lambda_grid().len());
        assert!(rep.lambda <= 1e-4, "auto λ = {}", rep.lambda);

        let gd = Stage2Config {
            solver: Stage2Solver::Gd,
            steps: 20000,
            lr: 1.0,
            weight_decay: 0.0,
            ..Default::default()
        };
        let (_, rep) = run_stage2(model, &x, &y, &gd, 7, p).unwrap();
        assert!(rep.train_mse < 0.05, "gd train mse {}", rep.train_mse);
    }

    #[test]
    fn normalized_mse_of_mean_predictor_is_one() {
        let y = [1.0, 2.0, 3.0, 6.0];
        let f = [3.0; 4];
        assert!((normalized_mse(&f, &y) - 1.0).abs() < 1e-12);
    }

    /// Streamed sums give the same readout and the same λ choice as the in-memory device path.
    #[test]
    fn sums_path_equals_device_path() {
        let (n, d, m) = (500, 6, 10);
        let dev = Device::flex();
        let p = Precision::F64;
        let model = random_model(m, d, &dev, p);
        let x = from_host_2d(&gaussian(n * d, 3), n, d, &dev, p);
        let yv: Vec<f64> = gaussian(n, 4)
            .iter()
            .zip(gaussian(n * d, 3).chunks(d))
            .map(|(e, r)| r[0] * r[1] + 0.3 * e)
            .collect();
        let y = from_host_1d(&yv, &dev, p);
        for cfg in [
            Stage2Config {
                ridge_lambda: Auto::Value(1e-2),
                ..Default::default()
            },
            Stage2Config::default(),
        ] {
            let (fitted, rep) = run_stage2(model.clone(), &x, &y, &cfg, 7, p).unwrap();
            let phi = to_host(fitted.features(x.clone()));
            let n_tr = n * 4 / 5;
            let (mut tr, mut va) = (GramSums::new(m), GramSums::new(m));
            tr.add(&phi[..n_tr * m], &yv[..n_tr]);
            va.add(&phi[n_tr * m..], &yv[n_tr..]);
            let (a, c, srep) = fit_readout_from_sums(&tr, &va, &cfg).unwrap();
            assert_eq!(rep.lambda, srep.lambda);
            let a_dev = to_host(fitted.a.val());
            for j in 0..m {
                assert!(
                    (a[j] - a_dev[j]).abs() < 1e-8 * (1.0 + a_dev[j].abs()),
                    "a[{j}] {} vs {}",
                    a[j],
                    a_dev[j]
                );
            }
            assert!((c - to_host(fitted.c.val())[0]).abs() < 1e-8);
            assert!(
                (rep.train_mse - srep.train_mse).abs() < 1e-8,
                "{} vs {}",
                rep.train_mse,
                srep.train_mse
            );
        }
    }
}
