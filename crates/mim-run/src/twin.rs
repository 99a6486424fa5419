//! The spectral twin of stage 1 (seed 003 §2): with small ε0, an activation with σ'(u) ≈ u
//! (exact for `quadratic`) and f ≡ 0 (symmetric init, even σ), one stage-1 step on a row
//! with readout a_j = +1 is the linear map
//!
//! ```text
//!   w ← (1 − η1β1) w + η1 Σ̂_T w,   Σ̂_T = (1/n1) Σ_i T(y_i) x_i x_iᵀ   (d×d, unshifted),
//! ```
//!
//! and a row rescale does not change the row span. So the span of the a = +1 half of W after
//! T1 steps is subspace iteration on Σ̂_T: it converges to the p = m/2 eigenvectors that the
//! step amplifies most, the largest |1 − η1β1 + η1λ|, λ an eigenvalue of this unshifted Σ̂_T
//! (the same matrix the power-iteration metric iterates; no mean(T)·I is subtracted). That is
//! the target-agnostic spectral estimator (top-p algebraic eigenvectors, `mim spectral` with
//! `order = "largest"`, the same vectors with or without the shift) when β1 = 0 and η1 small —
//! the small-learning-rate limit — and the largest |λ| of the unshifted Σ̂_T for the paper's
//! β1 = 1/η1 (`mim spectral` with `order = "abs"` and `shift = "none"`, the defaults for
//! `spectral.T = "loss"`; the classical `shift = "mean"` can pick the other end when
//! mean(T) ≠ 0).
//!
//! [`twin_angles`] measures both: the largest principal angle between span(W₊) and each
//! eigenspace.

use mim_metrics::{learned_span, principal_cosines, RowMajor, SvdMethod};
use serde::{Deserialize, Serialize};

/// Largest principal angles (degrees) between the a = +1 half of W and two eigenspaces of Σ̂_T.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TwinAngles {
    /// Against the top-p eigenvectors by algebraic value (the spectral estimator).
    pub twin_angle_deg: f64,
    /// Against the top-p eigenvectors by |1 − η1β1 + η1λ| (what the steps amplify).
    pub twin_angle_amplified_deg: f64,
    /// p: rows of the a = +1 half.
    pub twin_k: usize,
}

/// Σ̂_T = (1/n) Xᵀ diag(t) X for X n×d row-major.
pub fn sigma_t(x: &[f64], t: &[f64], d: usize) -> faer::Mat<f64> {
    let n = t.len();
    let xm = faer::MatRef::from_row_major_slice(x, n, d);
    let scaled = faer::Mat::from_fn(n, d, |i, j| t[i] * xm[(i, j)] / n as f64);
    xm.transpose() * &scaled
}

/// [`TwinAngles`] of `w_plus` (p×d row-major: the rows with a_j = +1) against Σ̂_T, for the
/// stage's η1 = `lr` and β1 = `weight_decay`.
pub fn twin_angles(
    sigma: &faer::Mat<f64>,
    w_plus: &[f64],
    p: usize,
    lr: f64,
    weight_decay: f64,
) -> Result<TwinAngles, String> {
    let d = sigma.nrows();
    let evd = sigma
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| format!("eigendecomposition of Σ̂_T failed: {e:?}"))?;
    let (vecs, vals) = (evd.U(), evd.S().column_vector());
    let top = |key: &dyn Fn(f64) -> f64| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..d).collect();
        idx.sort_by(|&i, &j| key(vals[j]).total_cmp(&key(vals[i])));
        // p×d row-major: the chosen eigenvectors as rows.
        idx.iter()
            .take(p)
            .flat_map(|&c| (0..d).map(move |i| vecs[(i, c)]))
            .collect()
    };
    let keep = 1.0 - lr * weight_decay;
    let span = learned_span(RowMajor::new(w_plus, p, d), p, SvdMethod::Exact)?;
    let angle = |rows: Vec<f64>| -> Result<f64, String> {
        let cos = principal_cosines(RowMajor::new(&rows, p.min(d), d), &span)?;
        let min = cos.iter().copied().fold(1.0f64, f64::min).clamp(0.0, 1.0);
        Ok(min.acos().to_degrees())
    };
    Ok(TwinAngles {
        twin_angle_deg: angle(top(&|l| l))?,
        twin_angle_amplified_deg: angle(top(&|l| (keep + lr * l).abs()))?,
        twin_k: p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    /// Subspace iteration W ← W(I + ηΣ), rows orthonormalised, from a random W converges to the top-p
    /// eigenspace (angle → 0), while a few steps of the |λ|-amplifying map W ← WΣ pick the
    /// large negative eigenvalue instead: the two angles separate as they should.
    #[test]
    fn subspace_iteration_reaches_the_twin_eigenspace() {
        let (d, p) = (12, 2);
        // Σ = diag(3, 2, −5, small …).
        let mut sigma = faer::Mat::<f64>::zeros(d, d);
        let diag = [3.0, 2.0, -5.0];
        for i in 0..d {
            sigma[(i, i)] = diag.get(i).copied().unwrap_or(0.1 * i as f64 / d as f64);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let w0: Vec<f64> = (0..p * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let iterate = |w: &[f64], f: &dyn Fn(f64) -> f64, steps: usize| -> Vec<f64> {
            let mut w = w.to_vec();
            for _ in 0..steps {
                for row in w.chunks_exact_mut(d) {
                    for (i, v) in row.iter_mut().enumerate() {
                        *v *= f(sigma[(i, i)]);
                    }
                }
                // Subspace iteration: Gram–Schmidt on the rows (the span is unchanged).
                for j in 0..p {
                    let (done, rest) = w.split_at_mut(j * d);
                    let row = &mut rest[..d];
                    for q in done.chunks_exact(d) {
                        let c: f64 = q.iter().zip(row.iter()).map(|(a, b)| a * b).sum();
                        row.iter_mut().zip(q).for_each(|(r, q)| *r -= c * q);
                    }
                    let n = row.iter().map(|v| v * v).sum::<f64>().sqrt();
                    row.iter_mut().for_each(|v| *v /= n);
                }
            }
            w
        };
        // Small η, β = 0: the algebraic top {e1, e2}.
        let (lr, wd) = (0.05, 0.0);
        let w = iterate(&w0, &|l| 1.0 + lr * l, 400);
        let a = twin_angles(&sigma, &w, p, lr, wd).unwrap();
        assert!(a.twin_angle_deg < 1e-3, "{a:?}");
        assert!(a.twin_angle_amplified_deg < 1e-3, "{a:?}");
        // β = 1/η: power iteration on Σ amplifies |λ|: {e3, e1}, 90° from {e1, e2}.
        let w = iterate(&w0, &|l| l, 60);
        let b = twin_angles(&sigma, &w, p, 1.0, 1.0).unwrap();
        assert!(b.twin_angle_amplified_deg < 1e-3, "{b:?}");
        assert!(b.twin_angle_deg > 89.0, "{b:?}");
    }

    /// Σ̂_T against a direct sum.
    #[test]
    fn sigma_t_is_the_weighted_second_moment() {
        let (n, d) = (5, 3);
        let x: Vec<f64> = (0..n * d).map(|i| (i as f64 * 0.7).sin()).collect();
        let t: Vec<f64> = (0..n).map(|i| i as f64 - 2.0).collect();
        let s = sigma_t(&x, &t, d);
        for a in 0..d {
            for b in 0..d {
                let want: f64 = (0..n)
                    .map(|i| t[i] * x[i * d + a] * x[i * d + b])
                    .sum::<f64>()
                    / n as f64;
                assert!((s[(a, b)] - want).abs() < 1e-14);
            }
        }
    }
}
