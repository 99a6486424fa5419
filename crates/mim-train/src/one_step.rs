//! DLS22's one gradient step (Damian, Lee, Soltanolkotabi, COLT 2022) as the authors' own
//! `main.py` runs it (github.com/adamian98/COLT2022 @ 54d55ee; the peer script is
//! `benches/peers/dls22.py`): the pieces of `method = "one_step"` with
//! `one_step.variant = "dls22"` (the default).
//!
//! 1. [`paired_gaussian_init`]: for j < m/2, w_j ~ N(0, I/d), b_j ~ N(0, 1), a_j = ±1
//!    (Rademacher); neuron j + m/2 copies w_j and b_j and negates a_j, so f ≡ 0.
//! 2. [`LinearPart`]: C0 = mean(y), C1 = mean(y·x) on the training set; every label set (the
//!    step's, the readout's, the validation and the test labels) becomes y − C0 − C1ᵀx.
//! 3. [`dls22_step`]: the square-loss gradient G = ∇_W L̂ at the init (a, b frozen), then
//!    W ← −G / rms_j‖g_j‖: the init is dropped, relative row norms are kept, the rms row norm
//!    is 1 ([`rescale_to_unit_rms`]); the biases stay.
//! 4. [`fit_raw_ridge`]: ridge on the raw features H = σ(XWᵀ + 1bᵀ) of the same samples, no
//!    intercept, a(λ) = (HᵀH/n + λI)⁻¹Hᵀy/n, with λ from a geometric grid
//!    ([`geometric_grid`]; theirs: 1e−10 … 1e15, 100 points) picked by the MSE on a separate
//!    validation set.

use crate::error::TrainError;
use crate::loss::Loss;
use crate::stage1::closed_form_gradient;
use burn::module::Param;
use burn::tensor::{Device, Tensor};
use faer::{Mat, Side};
use mim_model::{
    from_host_1d, from_host_2d, to_host, Activation, ModelError, Precision, TwoLayer,
    TwoLayerConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// `count` points from `min` to `max` (both included), evenly spaced in log scale (numpy's
/// `geomspace`); one point is `min`, none is empty.
pub fn geometric_grid(min: f64, max: f64, count: usize) -> Vec<f64> {
    match count {
        0 => Vec::new(),
        1 => vec![min],
        _ => {
            let ratio = (max / min).ln();
            let mut grid: Vec<f64> = (0..count)
                .map(|k| min * (ratio * k as f64 / (count - 1) as f64).exp())
                .collect();
            grid[count - 1] = max;
            grid
        }
    }
}

/// DLS22's symmetric init: for j < m/2, w_j ~ N(0, I/d), b_j ~ N(0, 1), a_j uniform on
/// {−1, +1}; neuron j + m/2 has the same w_j and b_j and −a_j, so f ≡ 0 at init (the pairs
/// cancel term by term). c = 0. Drawn on the host from `seed` (ChaCha8: the m/2 rows, then the
/// m/2 biases, then the m/2 signs), so every backend starts from the same network.
pub fn paired_gaussian_init(
    width: usize,
    activation: Activation,
    d: usize,
    seed: u64,
    device: &Device,
    precision: Precision,
) -> Result<TwoLayer, ModelError> {
    TwoLayerConfig {
        width,
        activation,
        init_scale: 1.0,
    }
    .validate()?;
    let (m, half) = (width, width / 2);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = 1.0 / (d as f64).sqrt();
    let mut w = vec![0.0f64; m * d];
    for v in &mut w[..half * d] {
        let g: f64 = StandardNormal.sample(&mut rng);
        *v = scale * g;
    }
    let (top, bottom) = w.split_at_mut(half * d);
    bottom.copy_from_slice(top);
    let mut b: Vec<f64> = (0..half).map(|_| StandardNormal.sample(&mut rng)).collect();
    b.extend_from_within(..);
    let mut a: Vec<f64> = (0..half)
        .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
        .collect();
    a.extend((0..half).map(|j| -a[j]).collect::<Vec<_>>());
    Ok(TwoLayer {
        w: Param::from_tensor(from_host_2d(&w, m, d, device, precision)),
        b: Param::from_tensor(from_host_1d(&b, device, precision)),
        a: Param::from_tensor(from_host_1d(&a, device, precision)),
        c: Param::from_tensor(from_host_1d(&[0.0], device, precision)),
        activation,
    })
}

/// The labels' constant and linear part as DLS22 estimate it on the training set:
/// C0 = mean(y), C1 = mean(y·x) = Xᵀy/n (for x ~ N(0, I) the first two Hermite coefficients).
#[derive(Clone, Debug, PartialEq)]
pub struct LinearPart {
    /// C0.
    pub c0: f64,
    /// C1 (d).
    pub c1: Vec<f64>,
}

impl LinearPart {
    /// C0 and C1 of labels `y` (n) at inputs `x` (n×d, row-major).
    pub fn estimate(x: &[f64], y: &[f64], d: usize) -> LinearPart {
        let nf = y.len().max(1) as f64;
        let mut c1 = vec![0.0; d];
        for (yi, row) in y.iter().zip(x.chunks_exact(d)) {
            for (c, xv) in c1.iter_mut().zip(row) {
                *c += yi * xv;
            }
        }
        c1.iter_mut().for_each(|c| *c /= nf);
        LinearPart {
            c0: y.iter().sum::<f64>() / nf,
            c1,
        }
    }

    /// y − C0 − C1ᵀx for each row of `x` (n×d).
    pub fn remove(&self, x: &[f64], y: &[f64]) -> Vec<f64> {
        let d = self.c1.len();
        y.iter()
            .zip(x.chunks_exact(d))
            .map(|(yi, row)| {
                yi - self.c0 - row.iter().zip(&self.c1).map(|(a, b)| a * b).sum::<f64>()
            })
            .collect()
    }
}

/// rms_j ‖w_j‖ = √(Σ_jk w_jk² / m) of an m×d row-major matrix.
pub fn rms_row_norm(w: &[f64], d: usize) -> f64 {
    let m = (w.len() / d.max(1)).max(1) as f64;
    (w.iter().map(|v| v * v).sum::<f64>() / m).sqrt()
}

/// Divides every row of `w` (m×d) by the rms row norm (DLS22's `w = -dw / avg_norm` without
/// the sign): the relative row norms are kept and the rms row norm becomes 1. Returns the rms
/// before; a zero or non-finite rms leaves `w` as it was.
pub fn rescale_to_unit_rms(w: &mut [f64], d: usize) -> f64 {
    let rms = rms_row_norm(w, d);
    if rms.is_finite() && rms > 0.0 {
        w.iter_mut().for_each(|v| *v /= rms);
    }
    rms
}

/// What [`dls22_step`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// L̂ = mean (f − y)²/2 at the init (with f ≡ 0: half the mean square label).
    pub loss: f64,
    /// ‖∇_W L̂‖_F.
    pub grad_norm: f64,
    /// rms_j ‖∇_{w_j} L̂‖: the step is W ← −η∇_W L̂ with η = 1/rms.
    pub grad_rms: f64,
}

impl StepReport {
    /// The step size η = 1/rms_j‖∇_{w_j} L̂‖ of W ← W − η(∇_W L̂ + W/η) = −η∇_W L̂.
    pub fn lr(&self) -> f64 {
        1.0 / self.grad_rms
    }
}

/// DLS22's step: G = ∇_W L̂ of the square loss on (x, y) (y: the labels minus their linear
/// part) with a, b, c frozen, then W ← −G / rms_j‖g_j‖. b, a and c are unchanged. A zero or
/// non-finite gradient is an error (stage `one_step`).
pub fn dls22_step(
    mut model: TwoLayer,
    x: &Tensor<2>,
    y: &Tensor<1>,
    precision: Precision,
) -> Result<(TwoLayer, StepReport), TrainError> {
    let [m, d] = model.w.val().dims();
    let (g, loss) = closed_form_gradient(&model, x, y, &Loss::Square);
    let mut g = to_host(g);
    let grad_norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let grad_rms = rescale_to_unit_rms(&mut g, d);
    if !(grad_rms.is_finite() && grad_rms > 0.0) {
        return Err(TrainError::Diverged {
            stage: "one_step".into(),
            step: 1,
            quantity: "rms row norm of ∇W".into(),
            value: grad_rms,
        });
    }
    g.iter_mut().for_each(|v| *v = -*v);
    let device = x.device();
    model.w = Param::from_tensor(from_host_2d(&g, m, d, &device, precision));
    Ok((
        model,
        StepReport {
            loss: to_host(loss)[0],
            grad_norm,
            grad_rms,
        },
    ))
}

/// The readout [`fit_raw_ridge`] chose.
#[derive(Clone, Debug, PartialEq)]
pub struct RawRidge {
    /// a(λ*) (m); the intercept is 0.
    pub a: Vec<f64>,
    /// λ*: the grid point with the smallest validation MSE (the first of equals).
    pub lambda: f64,
    /// (λ, validation MSE) for every grid point, in grid order.
    pub grid: Vec<(f64, f64)>,
}

fn numerical(message: String) -> TrainError {
    TrainError::Numerical {
        stage: "one_step".into(),
        message,
    }
}

/// Ridge on raw features without intercept, λ on a validation set (DLS22's readout):
/// a(λ) = (HᵀH/n + λI)⁻¹ Hᵀy/n with H = `phi` (n×m) and y (n); HᵀH/n = QΛQᵀ is decomposed
/// once (in f64 on the host; rounding-negative eigenvalues count as 0) and reused for every λ
/// of `lambdas`; each a(λ) is scored by mean (H_val a(λ) − y_val)² on (`phi_val`, `y_val`),
/// and the smallest finite score wins.
pub fn fit_raw_ridge(
    phi: &Tensor<2>,
    y: &Tensor<1>,
    phi_val: &Tensor<2>,
    y_val: &Tensor<1>,
    lambdas: &[f64],
    precision: Precision,
) -> Result<RawRidge, TrainError> {
    let [n, m] = phi.dims();
    if lambdas.is_empty() {
        return Err(numerical("the λ grid is empty".into()));
    }
    if n == 0 || phi_val.dims()[0] == 0 {
        return Err(numerical(format!(
            "the ridge needs training and validation samples (got {n} and {})",
            phi_val.dims()[0]
        )));
    }
    let nf = n as f64;
    let hth = to_host(phi.clone().transpose().matmul(phi.clone()).div_scalar(nf));
    let hty = to_host(
        phi.clone()
            .transpose()
            .matmul(y.clone().unsqueeze_dim::<2>(1))
            .div_scalar(nf),
    );
    let evd = Mat::from_fn(m, m, |i, j| hth[i * m + j])
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| numerical(format!("eigendecomposition of HᵀH/n failed ({e:?})")))?;
    let (q, s) = (evd.U(), evd.S().column_vector());
    let qty: Vec<f64> = (0..m)
        .map(|k| (0..m).map(|i| q[(i, k)] * hty[i]).sum())
        .collect();
    let k = lambdas.len();
    // Column j of A is a(λ_j) = Q diag(1/(Λ + λ_j)) Qᵀ Hᵀy/n.
    let coef = Mat::from_fn(m, k, |i, j| qty[i] / (s[i].max(0.0) + lambdas[j]));
    let a_all: Mat<f64> = q * coef.as_ref();
    let a_host: Vec<f64> = (0..m)
        .flat_map(|i| (0..k).map(move |j| (i, j)))
        .map(|(i, j)| a_all[(i, j)])
        .collect();
    let device = phi.device();
    let pred = phi_val
        .clone()
        .matmul(from_host_2d(&a_host, m, k, &device, precision));
    let resid = pred - y_val.clone().unsqueeze_dim::<2>(1);
    let scores = to_host(resid.square().mean_dim(0));
    let grid: Vec<(f64, f64)> = lambdas.iter().copied().zip(scores).collect();
    let best = crate::stage2::argmin_finite(grid.iter().map(|&(_, mse)| mse)).ok_or_else(|| {
        TrainError::Diverged {
            stage: "one_step".into(),
            step: 0,
            quantity: "validation MSE".into(),
            value: f64::NAN,
        }
    })?;
    let a: Vec<f64> = (0..m).map(|i| a_all[(i, best)]).collect();
    if let Some(bad) = a.iter().find(|v| !v.is_finite()) {
        return Err(TrainError::Diverged {
            stage: "one_step".into(),
            step: 0,
            quantity: "readout a".into(),
            value: *bad,
        });
    }
    Ok(RawRidge {
        a,
        lambda: lambdas[best],
        grid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mim_model::standard_normals as gaussian;

    fn dev() -> Device {
        Device::flex()
    }

    /// f ≡ 0 at the paired init (biases nonzero), the pairs share w and b and have opposite a,
    /// the rows are N(0, I/d) (mean square row norm ≈ 1) and the biases N(0, 1).
    #[test]
    fn paired_init_is_identically_zero_with_gaussian_rows_and_biases() {
        let (n, d, m) = (200, 40, 400);
        let p = Precision::F64;
        let model = paired_gaussian_init(m, Activation::Relu, d, 5, &dev(), p).unwrap();
        let x = from_host_2d(&gaussian(n * d, 1), n, d, &dev(), p);
        let f = to_host(model.forward(x));
        let worst = f.iter().fold(0.0f64, |s, v| s.max(v.abs()));
        assert!(worst < 1e-12, "max|f| = {worst}");
        let (w, b, a) = (
            to_host(model.w.val()),
            to_host(model.b.val()),
            to_host(model.a.val()),
        );
        let half = m / 2;
        assert_eq!(&w[..half * d], &w[half * d..]);
        assert_eq!(&b[..half], &b[half..]);
        for j in 0..half {
            assert_eq!(a[j], -a[j + half]);
            assert_eq!(a[j].abs(), 1.0);
        }
        let plus = a[..half].iter().filter(|&&v| v > 0.0).count();
        assert!(plus > 60 && plus < 140, "{plus} of {half} signs are +1");
        let ms_row = w.iter().map(|v| v * v).sum::<f64>() / m as f64;
        assert!((ms_row - 1.0).abs() < 0.05, "mean ‖w_j‖² = {ms_row}");
        let mean_b = b[..half].iter().sum::<f64>() / half as f64;
        let var_b = b[..half].iter().map(|v| v * v).sum::<f64>() / half as f64;
        assert!(
            mean_b.abs() < 0.3 && (var_b - 1.0).abs() < 0.3,
            "b: {mean_b} {var_b}"
        );
        assert!(paired_gaussian_init(7, Activation::Relu, d, 5, &dev(), p).is_err());
    }

    /// The rescale keeps every ratio of row norms and makes the rms row norm 1 (not each row).
    #[test]
    fn rms_rescale_keeps_relative_row_norms() {
        let d = 3;
        let mut w = vec![3.0, 0.0, 4.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 2.0];
        let norms = |w: &[f64]| -> Vec<f64> {
            w.chunks(d)
                .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
                .collect()
        };
        let before = norms(&w);
        // rms = √((25 + 1 + 0 + 9)/4)
        let rms = rescale_to_unit_rms(&mut w, d);
        assert!((rms - (35.0f64 / 4.0).sqrt()).abs() < 1e-12);
        assert!((rms_row_norm(&w, d) - 1.0).abs() < 1e-12);
        let after = norms(&w);
        for (x, y) in before.iter().zip(&after) {
            assert!((y * rms - x).abs() < 1e-12, "{x} → {y}");
        }
        assert!(
            after[0] > 1.0 && after[1] < 1.0,
            "rows were not all set to 1"
        );
        let mut zero = vec![0.0; 6];
        assert_eq!(rescale_to_unit_rms(&mut zero, 3), 0.0);
        assert_eq!(zero, vec![0.0; 6]);
    }

    /// y − C0 − C1ᵀx has mean ≈ 0 and ≈ zero correlation with every coordinate of x, even for
    /// labels with a large constant and linear part.
    #[test]
    fn linear_part_removal_leaves_no_mean_or_correlation() {
        let (n, d) = (20000, 5);
        let x = gaussian(n * d, 3);
        let noise = gaussian(n, 4);
        let y: Vec<f64> = x
            .chunks(d)
            .zip(&noise)
            .map(|(r, e)| 2.0 + 1.5 * r[0] - 0.7 * r[3] + (r[1] * r[1] - 1.0) + 0.3 * e)
            .collect();
        let lin = LinearPart::estimate(&x, &y, d);
        assert!((lin.c0 - 2.0).abs() < 0.05, "C0 = {}", lin.c0);
        assert!((lin.c1[0] - 1.5).abs() < 0.05 && (lin.c1[3] + 0.7).abs() < 0.05);
        let r = lin.remove(&x, &y);
        let mean = r.iter().sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        for k in 0..d {
            let corr = r
                .iter()
                .zip(x.chunks(d))
                .map(|(v, row)| v * row[k])
                .sum::<f64>()
                / n as f64;
            assert!(corr.abs() < 0.05, "corr with x_{k}: {corr}");
        }
        // The nonlinear part stays: E[r·(x1² − 1)] ≈ 2.
        let he2 = r
            .iter()
            .zip(x.chunks(d))
            .map(|(v, row)| v * (row[1] * row[1] - 1.0))
            .sum::<f64>()
            / n as f64;
        assert!((he2 - 2.0).abs() < 0.2, "He2 part {he2}");
    }

    #[test]
    fn geometric_grid_is_numpys_geomspace() {
        let g = geometric_grid(1e-10, 1e15, 100);
        assert_eq!(g.len(), 100);
        assert_eq!((g[0], g[99]), (1e-10, 1e15));
        let ratio = 10f64.powf(25.0 / 99.0);
        for w in g.windows(2) {
            assert!((w[1] / w[0] / ratio - 1.0).abs() < 1e-9);
        }
        assert_eq!(geometric_grid(2.0, 5.0, 1), vec![2.0]);
        assert!(geometric_grid(2.0, 5.0, 0).is_empty());
    }

    /// The step: W ← −G/rms(G) for the square-loss gradient at the init, b, a kept.
    #[test]
    fn step_is_the_rescaled_negative_gradient() {
        let (n, d, m) = (300, 6, 10);
        let p = Precision::F64;
        let device = dev();
        let model = paired_gaussian_init(m, Activation::Relu, d, 2, &device, p).unwrap();
        let xv = gaussian(n * d, 7);
        let yv: Vec<f64> = xv.chunks(d).map(|r| r[0] * r[0] - 1.0).collect();
        let x = from_host_2d(&xv, n, d, &device, p);
        let y = from_host_1d(&yv, &device, p);
        let g = to_host(closed_form_gradient(&model, &x, &y, &Loss::Square).0);
        let (b0, a0) = (to_host(model.b.val()), to_host(model.a.val()));
        let (stepped, rep) = dls22_step(model, &x, &y, p).unwrap();
        let w = to_host(stepped.w.val());
        assert!((rep.grad_rms - rms_row_norm(&g, d)).abs() < 1e-12);
        for (wk, gk) in w.iter().zip(&g) {
            assert!((wk + gk / rep.grad_rms).abs() < 1e-12);
        }
        assert!((rms_row_norm(&w, d) - 1.0).abs() < 1e-12);
        assert_eq!(to_host(stepped.b.val()), b0);
        assert_eq!(to_host(stepped.a.val()), a0);
        let ms = yv.iter().map(|v| v * v).sum::<f64>() / n as f64;
        assert!((rep.loss - ms / 2.0).abs() < 1e-12, "f ≡ 0: L̂ = mean y²/2");
    }

    /// On a realisable readout without intercept the validation picks a λ from the grid (the
    /// smallest score, scores as recomputed by hand), and the readout recovers a*.
    #[test]
    fn ridge_picks_lambda_from_the_grid_on_the_validation_set() {
        let (n, nv, d, m) = (600, 300, 5, 8);
        let p = Precision::F64;
        let device = dev();
        let mut model = paired_gaussian_init(m, Activation::Relu, d, 3, &device, p).unwrap();
        model.w = Param::from_tensor(from_host_2d(&gaussian(m * d, 9), m, d, &device, p));
        let a_star = gaussian(m, 10);
        let feats = |seed: u64, rows: usize| {
            let x = from_host_2d(&gaussian(rows * d, seed), rows, d, &device, p);
            let phi = model.features(x);
            let h = to_host(phi.clone());
            let y: Vec<f64> = h
                .chunks(m)
                .zip(gaussian(rows, seed + 100))
                .map(|(r, e)| r.iter().zip(&a_star).map(|(u, v)| u * v).sum::<f64>() + 0.1 * e)
                .collect();
            (phi, h, y)
        };
        let (phi, _, y) = feats(11, n);
        let (phi_v, hv, yv) = feats(12, nv);
        let grid = geometric_grid(1e-8, 1e4, 13);
        let fit = fit_raw_ridge(
            &phi,
            &from_host_1d(&y, &device, p),
            &phi_v,
            &from_host_1d(&yv, &device, p),
            &grid,
            p,
        )
        .unwrap();
        assert!(
            grid.contains(&fit.lambda),
            "λ* = {} not on the grid",
            fit.lambda
        );
        assert_eq!(fit.grid.len(), grid.len());
        let best = fit.grid.iter().map(|g| g.1).fold(f64::INFINITY, f64::min);
        let chosen = fit.grid.iter().find(|g| g.0 == fit.lambda).unwrap().1;
        assert_eq!(chosen, best);
        assert!(
            fit.lambda < 1.0,
            "noise 0.1 should pick a small λ, got {}",
            fit.lambda
        );
        let score = hv
            .chunks(m)
            .zip(&yv)
            .map(|(r, t)| (r.iter().zip(&fit.a).map(|(u, v)| u * v).sum::<f64>() - t).powi(2))
            .sum::<f64>()
            / nv as f64;
        assert!(
            (score - chosen).abs() < 1e-9 * chosen.max(1.0),
            "{score} vs {chosen}"
        );
        for (j, (got, want)) in fit.a.iter().zip(&a_star).enumerate() {
            assert!((got - want).abs() < 0.1, "a[{j}] {got} vs {want}");
        }
        // A huge λ only: the readout shrinks to ≈ 0; an empty grid is an error.
        let big = fit_raw_ridge(
            &phi,
            &from_host_1d(&y, &device, p),
            &phi_v,
            &from_host_1d(&yv, &device, p),
            &[1e12],
            p,
        )
        .unwrap();
        assert!(big.a.iter().all(|v| v.abs() < 1e-6));
        let err = fit_raw_ridge(
            &phi,
            &from_host_1d(&y, &device, p),
            &phi_v,
            &from_host_1d(&yv, &device, p),
            &[],
            p,
        )
        .unwrap_err();
        assert!(err.to_string().contains("λ grid"), "{err}");
    }
}
