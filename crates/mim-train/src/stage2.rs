//! Stage 2 (paper §3): biases re-drawn, W and b frozen, readout fitted on D2 by a convex
//! problem. Features Φ = σ(X Wᵀ + 1bᵀ) are standardised (centred, unit variance); the ridge
//! solution on them is
//!   β(λ) = (C + λI)^{−1} r,   C = Φ̃ᵀΦ̃/n,  r = Φ̃ᵀ(y − ȳ)/n,  Φ̃ = (Φ − 1μᵀ) diag(1/s),
//! and maps back to the network as a_j = β_j/s_j, c = ȳ − Σ_j a_j μ_j.
//! C and r come from f64 sums over the rows ([`GramSums`], [`HeldOutSums`]: the same for data in
//! memory and streamed); solves go through faer: Cholesky for the final fit, one Householder
//! tridiagonalisation C = QTQᵀ reused across the λ grid of `ridge_lambda = "auto"`.

use crate::config::{Auto, BiasInit, Stage2Config, Stage2Solver};
use crate::error::TrainError;
use burn::module::Param;
use burn::tensor::Tensor;
use faer::linalg::solvers::Solve;
use faer::{Mat, Par, Side};
use mim_model::{from_host_1d, to_host, Precision, TwoLayer};
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

/// Raw sums over rows of features φ (m) and labels y, accumulated chunk by chunk (the one
/// form of stage 2's normal equations, in memory and streamed): n, Σφ, Σφφᵀ, Σφy, Σy, Σy².
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
        // aᵀ(Σφφᵀ)a from the stored lower triangle, row by row (contiguous):
        // Σ_i a_i (2 Σ_{j<i} G_ij a_j + G_ii a_i).
        let quad: f64 = self
            .phiphi
            .chunks_exact(m)
            .enumerate()
            .map(|(i, row)| {
                let off: f64 = row[..i].iter().zip(a).map(|(g, aj)| g * aj).sum();
                a[i] * (2.0 * off + row[i] * a[i])
            })
            .sum();
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

/// The sums of stage 2 split as its λ choice needs them: rows `0..n_tr` (n_tr = ⌊4n/5⌋) in
/// `train`, the last 20 % in `val` (held out when λ = "auto"). Rows may arrive in chunks in
/// any split (in memory, [`fit_readout`]; streamed, chunk by chunk), each with its first
/// row's index.
#[derive(Clone, Debug)]
pub struct HeldOutSums {
    train: GramSums,
    val: GramSums,
    n: usize,
    n_tr: usize,
}

impl HeldOutSums {
    /// Empty sums for m features and n rows in all.
    pub fn new(m: usize, n: usize) -> Self {
        Self {
            train: GramSums::new(m),
            val: GramSums::new(m),
            n,
            n_tr: n * 4 / 5,
        }
    }

    /// Adds rows `start..start + y.len()`: features `phi` (rows×m row-major) and labels `y`.
    pub fn add(&mut self, start: usize, phi: &[f64], y: &[f64]) {
        let rows = y.len();
        let m = self.train.m;
        let cut = self.n_tr.saturating_sub(start).min(rows);
        if cut > 0 {
            self.train.add(&phi[..cut * m], &y[..cut]);
        }
        if cut < rows {
            self.val.add(&phi[cut * m..rows * m], &y[cut..]);
        }
    }

    /// [`fit_readout_from_sums`] on the rows added, after checking that λ = "auto" has rows
    /// to fit (≥ 2) and to hold out (≥ 1).
    pub fn fit(&self, cfg: &Stage2Config) -> Result<(Vec<f64>, f64, Stage2Report), TrainError> {
        let auto = matches!(
            (cfg.solver, cfg.ridge_lambda),
            (Stage2Solver::Ridge, Auto::Auto)
        );
        if auto && (self.train.count() < 2 || self.val.count() < 1) {
            return Err(TrainError::Numerical {
                stage: "stage2".into(),
                message: format!(
                    "ridge_lambda = \"auto\" needs at least 3 stage-2 samples, got {}",
                    self.n
                ),
            });
        }
        fit_readout_from_sums(&self.train, &self.val, cfg)
    }
}

/// Fits the readout from the sums: λ = "auto" is chosen on the held-out sums `val`
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
            let path = RidgePath::new(&ne);
            // Computed at the first λ that needs it, then reused for the rest of the grid.
            let mut eig = None;
            let mut grid = Vec::new();
            for lambda in lambda_grid() {
                let beta = match path.beta(lambda) {
                    Some(beta) => beta,
                    // T + λI not numerically positive definite (a C with rounding-negative
                    // eigenvalues below −λ): the eigendecomposition with them set to 0.
                    None => {
                        if eig.is_none() {
                            eig = Some(eigen(&ne)?);
                        }
                        ridge_from_eigen(&ne, eig.as_ref().expect("just set"), lambda)
                    }
                };
                let (a, c) = ne.readout(&beta);
                grid.push((lambda, val.normalized_mse(&a, c)));
            }
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
    ridge_solve_eigen(ne, lambda)
}

/// β = (C + λI)^{−1} r through C = QΛQᵀ with the rounding-negative eigenvalues set to 0 (with
/// λ = 0 the null directions are dropped: the minimum-norm solution).
fn ridge_solve_eigen(ne: &Normal, lambda: f64) -> Result<Vec<f64>, TrainError> {
    Ok(ridge_from_eigen(ne, &eigen(ne)?, lambda))
}

/// [`ridge_solve_eigen`] from an eigendecomposition `(vals, q)` of C already at hand.
fn ridge_from_eigen(ne: &Normal, (vals, q): &(Vec<f64>, Mat<f64>), lambda: f64) -> Vec<f64> {
    let m = ne.m;
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
    (0..m)
        .map(|i| (0..m).map(|k| q[(i, k)] * coef[k]).sum())
        .collect()
}

/// β(λ) = (C + λI)⁻¹ r for the whole λ grid from one Householder tridiagonalisation
/// C = Q T Qᵀ (faer's `tridiag_in_place`; Q = 1 ⊕ Q′, its reflectors below T's subdiagonal):
/// ≈ (4/3)m³ flops once, about half an eigendecomposition with eigenvectors, then per λ one
/// LDLᵀ solve of the tridiagonal T + λI (O(m)) and one sweep of the reflectors (O(m²)).
struct RidgePath {
    /// T's diagonal and subdiagonal in their places, Q′'s reflectors below (m×m).
    t: Mat<f64>,
    /// The reflectors' block coefficients.
    h: Mat<f64>,
    /// Qᵀ r.
    qtr: Vec<f64>,
}

impl RidgePath {
    fn new(ne: &Normal) -> Self {
        use faer::dyn_stack::{MemBuffer, MemStack};
        use faer::linalg::{evd::tridiag, householder, qr::no_pivoting::factor};
        let m = ne.m;
        let mut t = mat(m, &ne.c);
        let mut qtr = Mat::from_fn(m, 1, |i, _| ne.r[i]);
        let bs = factor::recommended_block_size::<f64>(m, m);
        let mut h = Mat::<f64>::zeros(bs, m.saturating_sub(1));
        if m > 1 {
            let par = faer::get_global_parallelism();
            let mut mem = MemBuffer::new(
                tridiag::tridiag_in_place_scratch::<f64>(m, par, Default::default()).or(
                    householder::apply_block_householder_sequence_transpose_on_the_left_in_place_scratch::<f64>(
                        m - 1,
                        bs,
                        1,
                    ),
                ),
            );
            let stack = MemStack::new(&mut mem);
            tridiag::tridiag_in_place(t.as_mut(), h.as_mut(), par, stack, Default::default());
            householder::apply_block_householder_sequence_transpose_on_the_left_in_place_with_conj(
                t.as_ref().submatrix(1, 0, m - 1, m - 1),
                h.as_ref(),
                faer::Conj::No,
                qtr.as_mut().subrows_mut(1, m - 1),
                Par::Seq,
                stack,
            );
        }
        Self {
            qtr: (0..m).map(|i| qtr[(i, 0)]).collect(),
            t,
            h,
        }
    }

    /// β(λ); `None` if T + λI is not numerically positive definite.
    fn beta(&self, lambda: f64) -> Option<Vec<f64>> {
        use faer::dyn_stack::{MemBuffer, MemStack};
        use faer::linalg::householder;
        let m = self.qtr.len();
        // LDLᵀ of T + λI: d_i = t_ii + λ − l_i t_{i,i−1}, l_i = t_{i,i−1}/d_{i−1}; L y = Qᵀr.
        let (mut d, mut l, mut z) = (vec![0.0; m], vec![0.0; m], self.qtr.clone());
        for i in 0..m {
            let e = if i > 0 { self.t[(i, i - 1)] } else { 0.0 };
            if i > 0 {
                l[i] = e / d[i - 1];
                z[i] -= l[i] * z[i - 1];
            }
            d[i] = self.t[(i, i)] + lambda - l[i] * e;
            if !(d[i] > 0.0 && d[i].is_finite()) {
                return None;
            }
        }
        // D Lᵀ z = y, from the last row up.
        for i in (0..m).rev() {
            z[i] /= d[i];
            if i + 1 < m {
                z[i] -= l[i + 1] * z[i + 1];
            }
        }
        if m > 1 {
            let bs = self.h.nrows();
            let mut mem = MemBuffer::new(
                householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<f64>(
                    m - 1,
                    bs,
                    1,
                ),
            );
            let mut col = Mat::from_fn(m - 1, 1, |i, _| z[i + 1]);
            householder::apply_block_householder_sequence_on_the_left_in_place_with_conj(
                self.t.as_ref().submatrix(1, 0, m - 1, m - 1),
                self.h.as_ref(),
                faer::Conj::No,
                col.as_mut(),
                Par::Seq,
                MemStack::new(&mut mem),
            );
            for i in 1..m {
                z[i] = col[(i - 1, 0)];
            }
        }
        z.iter().all(|v| v.is_finite()).then_some(z)
    }
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

/// Rows of Φ per host copy when [`fit_readout`] sums a feature tensor into [`HeldOutSums`]:
/// the f64 copy is at most this many rows × m (32 MiB at m = 1000).
pub const GRAM_CHUNK_ROWS: usize = 4096;

/// The convex readout fit on features Φ (n×m) and labels y (n): the rows are summed into
/// [`HeldOutSums`] in chunks of [`GRAM_CHUNK_ROWS`] (one host f64 copy of a chunk at a time,
/// whatever the backend), then [`HeldOutSums::fit`]: λ as `cfg` says (fixed, or `"auto"` on
/// the last 20 % of rows), ridge (or GD) on all rows. Returns (a, c, report) with `train_mse`
/// from the sums. Errors are reported under the stage name `stage`.
pub fn fit_readout(
    phi: &Tensor<2>,
    y: &Tensor<1>,
    cfg: &Stage2Config,
    stage: &str,
) -> Result<(Vec<f64>, f64, Stage2Report), TrainError> {
    fit_readout_chunked(phi, y, cfg, stage, GRAM_CHUNK_ROWS)
}

/// [`fit_readout`] with `chunk` rows per host copy.
fn fit_readout_chunked(
    phi: &Tensor<2>,
    y: &Tensor<1>,
    cfg: &Stage2Config,
    stage: &str,
    chunk: usize,
) -> Result<(Vec<f64>, f64, Stage2Report), TrainError> {
    let [n, m] = phi.dims();
    let y = to_host(y.clone());
    let mut sums = HeldOutSums::new(m, n);
    let mut start = 0;
    while start < n {
        let rows = (n - start).min(chunk.max(1));
        let part = to_host(phi.clone().narrow(0, start, rows));
        sums.add(start, &part, &y[start..start + rows]);
        start += rows;
    }
    sums.fit(cfg).map_err(|e| e.in_stage(stage))
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
    use mim_model::{from_host_2d, standard_normals as gaussian, Activation, TwoLayerConfig};

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

    /// A dense reference for the standardised ridge fit, from the rows themselves (no sums):
    /// Φ̃ = (Φ − 1μᵀ) diag(1/s), β = (Φ̃ᵀΦ̃/n + λI)⁻¹ Φ̃ᵀ(y − ȳ)/n, a = β/s, c = ȳ − aᵀμ.
    fn dense_ridge(phi: &[f64], y: &[f64], m: usize, lambda: f64) -> (Vec<f64>, f64) {
        let n = y.len();
        let nf = n as f64;
        let mu: Vec<f64> = (0..m)
            .map(|j| (0..n).map(|i| phi[i * m + j]).sum::<f64>() / nf)
            .collect();
        let s: Vec<f64> = (0..m)
            .map(|j| {
                let v = (0..n)
                    .map(|i| (phi[i * m + j] - mu[j]).powi(2))
                    .sum::<f64>()
                    / nf;
                if v.sqrt() > 1e-10 {
                    v.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let ybar = y.iter().sum::<f64>() / nf;
        let t = Mat::from_fn(n, m, |i, j| (phi[i * m + j] - mu[j]) / s[j]);
        let yc = Mat::from_fn(n, 1, |i, _| y[i] - ybar);
        let mut lhs = t.transpose() * &t * faer::Scale(1.0 / nf);
        for j in 0..m {
            lhs[(j, j)] += lambda;
        }
        let rhs = t.transpose() * &yc * faer::Scale(1.0 / nf);
        let beta = lhs.llt(Side::Lower).unwrap().solve(&rhs);
        let a: Vec<f64> = (0..m).map(|j| beta[(j, 0)] / s[j]).collect();
        let c = ybar - (0..m).map(|j| a[j] * mu[j]).sum::<f64>();
        (a, c)
    }

    /// The readout fitted from the sums, with the rows copied to the host in chunks of any size
    /// (across the train/held-out cut or not), equals the dense reference; λ = "auto" picks the
    /// λ whose dense fit on the first 80 % has the smallest normalised error on the last 20 %.
    #[test]
    fn fit_readout_equals_a_dense_reference_at_any_chunk_size() {
        let (n, m) = (500, 10);
        let dev = Device::flex();
        let phi_h: Vec<f64> = gaussian(n * m, 3)
            .iter()
            .enumerate()
            .map(|(k, v)| (v + 0.5 * (k % m) as f64).tanh() + 0.1 * (k % 3) as f64)
            .collect();
        let y_h: Vec<f64> = (0..n)
            .map(|i| phi_h[i * m] * phi_h[i * m + 1] + 0.3 * gaussian(n, 4)[i])
            .collect();
        let phi = from_host_2d(&phi_h, n, m, &dev, Precision::F64);
        let y = from_host_1d(&y_h, &dev, Precision::F64);
        let close = |a: &[f64], b: &[f64], what: &str| {
            for (j, (u, v)) in a.iter().zip(b).enumerate() {
                assert!(
                    (u - v).abs() < 1e-9 * (1.0 + v.abs()),
                    "{what}[{j}]: {u} vs {v}"
                );
            }
        };
        // Fixed λ: all rows.
        let (a_ref, c_ref) = dense_ridge(&phi_h, &y_h, m, 1e-2);
        let fixed = Stage2Config {
            ridge_lambda: Auto::Value(1e-2),
            ..Default::default()
        };
        // λ = "auto": the held-out choice of the dense reference.
        let n_tr = n * 4 / 5;
        let val_y = &y_h[n_tr..];
        let val_var = label_variance(val_y);
        let grid_ref: Vec<(f64, f64)> = lambda_grid()
            .into_iter()
            .map(|l| {
                let (a, c) = dense_ridge(&phi_h[..n_tr * m], &y_h[..n_tr], m, l);
                let sse: f64 = (n_tr..n)
                    .map(|i| {
                        let f = c + (0..m).map(|j| a[j] * phi_h[i * m + j]).sum::<f64>();
                        (f - y_h[i]).powi(2)
                    })
                    .sum();
                (l, sse / (n - n_tr) as f64 / val_var)
            })
            .collect();
        let best = best_lambda(&grid_ref).unwrap();
        let (a_auto, c_auto) = dense_ridge(&phi_h, &y_h, m, best);
        for chunk in [7, n_tr, n_tr + 1, n] {
            let (a, c, rep) = fit_readout_chunked(&phi, &y, &fixed, "t", chunk).unwrap();
            close(&a, &a_ref, &format!("a (fixed λ, chunk {chunk})"));
            close(&[c], &[c_ref], &format!("c (fixed λ, chunk {chunk})"));
            assert!(rep.lambda_grid.is_empty());
            let cfg = Stage2Config::default();
            let (a, c, rep) = fit_readout_chunked(&phi, &y, &cfg, "t", chunk).unwrap();
            assert_eq!(rep.lambda, best, "chunk {chunk}");
            let (got, want): (Vec<f64>, Vec<f64>) = rep
                .lambda_grid
                .iter()
                .zip(&grid_ref)
                .map(|(g, r)| (g.1, r.1))
                .unzip();
            close(&got, &want, &format!("held-out grid (chunk {chunk})"));
            close(&a, &a_auto, &format!("a (auto, chunk {chunk})"));
            close(&[c], &[c_auto], &format!("c (auto, chunk {chunk})"));
        }
        // Too few rows to hold any out: a clear error under the stage's name.
        let two = fit_readout(
            &phi.clone().narrow(0, 0, 2),
            &y.clone().narrow(0, 0, 2),
            &Stage2Config::default(),
            "stage2",
        );
        let msg = two.unwrap_err().to_string();
        assert!(
            msg.contains("needs at least 3 stage-2 samples, got 2"),
            "{msg}"
        );
    }

    /// The tridiagonal path solves (C + λI)β = r over the whole grid: residual at rounding level
    /// (m = 150, past faer's reflector block size, with a rank-deficient C: 40 zero
    /// eigenvalues), for standardised normal equations as stage 2 builds them.
    #[test]
    fn ridge_path_solves_the_shifted_system_for_every_lambda() {
        let (n, m) = (110, 150);
        let phi: Vec<f64> = gaussian(n * m, 5);
        let y: Vec<f64> = gaussian(n, 6);
        let mut sums = GramSums::new(m);
        sums.add(&phi, &y);
        let ne = sums.normal();
        let path = RidgePath::new(&ne);
        let c = mat(m, &ne.c);
        for lambda in lambda_grid() {
            let beta = path.beta(lambda).expect("C + λI is positive definite");
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let res: Vec<f64> = (0..m)
                .map(|i| {
                    (0..m).map(|j| c[(i, j)] * beta[j]).sum::<f64>() + lambda * beta[i] - ne.r[i]
                })
                .collect();
            let scale = m as f64 * norm(&beta) + norm(&ne.r);
            assert!(
                norm(&res) < 1e-11 * scale,
                "λ = {lambda}: residual {} (scale {scale})",
                norm(&res)
            );
        }
    }
}
