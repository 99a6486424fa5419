//! Block thick-restart Lanczos: a few extreme eigenpairs of a symmetric d×d operator A that is
//! only applied to blocks of b vectors, V ↦ AV (d×b).
//!
//! Why blocks: every product of `mim spectral`'s streamed operator regenerates all of D1, and
//! at large d the regeneration costs more than the arithmetic. A block product pays one
//! regeneration for b vectors, so the solver needs about b times fewer passes over the rows
//! than single-vector Lanczos for the same Krylov dimension.
//!
//! The method (a block Krylov–Schur restart with an explicit Rayleigh–Ritz step):
//! - Q (d×m, orthonormal columns) and its image W = AQ (d×m) are kept side by side, and
//!   H = QᵀW (m×m, symmetrised) is extended as blocks arrive; no three-term recurrence is
//!   trusted, so rounding cannot make H drift from the Rayleigh quotient of Q.
//! - Start: Q = orth(G) for a seeded Gaussian G (d×b); W = AQ.
//! - Rayleigh–Ritz: H = SΘSᵀ; the `want` Ritz pairs at the wanted end ([`Order`], by
//!   `select`) are (θ_j, y_j = Qs_j) with residuals ‖Ws_j − θ_j Qs_j‖, computed from W, not
//!   estimated. Done when every one is ≤ tol (the last one, the bulk edge in `eigen`, ≤ its
//!   own, looser `edge_tol`).
//! - Next block: the image of the newest block, W_new, with its components along every column
//!   of Q removed (classical Gram–Schmidt, twice), orthonormalised (modified Gram–Schmidt,
//!   twice; a column that cancels to < 1e−10 of its norm, i.e. an invariant subspace, is
//!   replaced by a seeded Gaussian). Since AQ = QH + R Eᵀ with R that remainder, every Ritz
//!   residual lies in span(R): span{Q, R} is the next Krylov space.
//! - Thick restart when Q would exceed m columns: Q ← QS_keep, W ← WS_keep, H ← diag(θ_keep) for
//!   the `keep` Ritz pairs at the wanted end (about half of m). R was taken orthogonal to the
//!   whole old Q, so it is still the next block and no product is repeated.
//!
//! Everything is deterministic (faer with `Par::Seq` for the small dense steps, a seeded
//! ChaCha8 start), so the result is bit-for-bit repeatable given a repeatable product.

use crate::eigen::{select, Order};
use crate::error::SpectralError;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Settings of [`block_lanczos`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockOptions {
    /// Block size b: vectors per product.
    pub block: usize,
    /// Basis size m before a thick restart (≥ 2·(want + b), < d).
    pub basis: usize,
    /// Residual tolerance, relative to ‖A g‖ for the unit first start vector g.
    pub tol: f64,
    /// Residual tolerance of the last wanted pair (relative, like `tol`).
    pub edge_tol: f64,
    /// Most products (passes).
    pub max_passes: usize,
    /// Seed of the start block (and of any replacement column).
    pub seed: u64,
}

/// The wanted Ritz pairs of [`block_lanczos`].
pub(crate) struct Ritz {
    /// Ritz values, in `select` order (most extreme first at the wanted end).
    pub values: Vec<f64>,
    /// Their unit Ritz vectors, d × want.
    pub vectors: Mat<f64>,
    /// Whether every wanted residual met the tolerance.
    pub converged: bool,
    /// How many leading pairs (in order) met it.
    pub leading_converged: usize,
    /// Products A·V made (each one pass over the rows).
    pub passes: usize,
    /// The tolerance scale ‖A g‖ (read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub scale: f64,
}

/// d×b seeded Gaussian.
fn gaussian(d: usize, b: usize, rng: &mut ChaCha8Rng) -> Mat<f64> {
    Mat::from_fn(d, b, |_, _| StandardNormal.sample(rng))
}

/// Removes from the columns of `r` their components along the orthonormal columns of `q`
/// (classical Gram–Schmidt, twice).
fn project_out(q: MatRef<'_, f64>, mut r: MatMut<'_, f64>) {
    if q.ncols() == 0 {
        return;
    }
    for _ in 0..2 {
        let c = q.transpose() * r.as_ref();
        matmul(r.as_mut(), Accum::Add, q, c.as_ref(), -1.0, Par::Seq);
    }
}

/// ‖Av_j − θ_j v_j‖ for every column j of `v` (d×k), from the images `av` = AV (d×k): the
/// residuals of the pairs (θ_j, v_j), computed, not estimated.
pub(crate) fn residual_norms(av: MatRef<'_, f64>, v: MatRef<'_, f64>, theta: &[f64]) -> Vec<f64> {
    theta
        .iter()
        .enumerate()
        .map(|(j, &th)| {
            (0..v.nrows())
                .map(|i| (av[(i, j)] - th * v[(i, j)]).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

/// `r` (d×b) made orthonormal and orthogonal to the orthonormal columns of `q`: projected out
/// of `q`, then modified Gram–Schmidt (twice) within the block. A column left with less than
/// 1e−10 of its norm is replaced by a Gaussian from `rng`, projected the same way.
fn orthonormal_block(q: MatRef<'_, f64>, mut r: Mat<f64>, rng: &mut ChaCha8Rng) -> Mat<f64> {
    let (d, b) = (r.nrows(), r.ncols());
    let before: Vec<f64> = (0..b).map(|j| r.col(j).norm_l2()).collect();
    project_out(q, r.as_mut());
    for j in 0..b {
        let mut reference = before[j];
        for attempt in 0..4 {
            for _ in 0..2 {
                for l in 0..j {
                    let c: f64 = (0..d).map(|i| r[(i, l)] * r[(i, j)]).sum();
                    for i in 0..d {
                        r[(i, j)] -= c * r[(i, l)];
                    }
                }
            }
            let norm = r.col(j).norm_l2();
            if norm > 1e-10 * reference && norm > 0.0 {
                for i in 0..d {
                    r[(i, j)] /= norm;
                }
                break;
            }
            if attempt == 3 {
                // Unreachable for b + q.ncols() < d with a continuous Gaussian.
                for i in 0..d {
                    r[(i, j)] = 0.0;
                }
                break;
            }
            let mut g = gaussian(d, 1, rng);
            reference = g.col(0).norm_l2();
            project_out(q, g.as_mut());
            for i in 0..d {
                r[(i, j)] = g[(i, 0)];
            }
        }
    }
    r
}

/// The `want` extreme eigenpairs of the symmetric operator `apply` (d×d) at the `order` end,
/// by block thick-restart Lanczos (see the module doc). `apply(V)` must return AV for V d×b.
/// Stops when every wanted residual ‖Ay − θy‖ ≤ tol·‖Ag‖ or after `max_passes` products (then
/// `converged` is false).
///
/// Errors: [`SpectralError::Solver`] if a product is non-finite, A g = 0, or the projected
/// eigenproblem fails.
pub(crate) fn block_lanczos(
    apply: &dyn Fn(MatRef<'_, f64>) -> Mat<f64>,
    d: usize,
    want: usize,
    order: Order,
    opts: &BlockOptions,
) -> Result<Ritz, SpectralError> {
    let b = opts.block;
    let cap = opts.basis;
    debug_assert!(
        cap >= 2 * (want + b) && cap < d,
        "basis {cap}, d {d}, b {b}"
    );
    let keep_n = ((cap - b) / 2).max(want);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut q = Mat::<f64>::zeros(d, cap);
    let mut w = Mat::<f64>::zeros(d, cap);
    let mut h = Mat::<f64>::zeros(cap, cap);
    let mut filled = 0;
    let mut next = gaussian(d, b, &mut rng);
    let mut scale = 0.0;
    let mut passes = 0;
    loop {
        let block = orthonormal_block(q.as_ref().subcols(0, filled), next, &mut rng);
        let img = apply(block.as_ref());
        passes += 1;
        if img.col_iter().any(|c| c.iter().any(|a| !a.is_finite())) {
            return Err(SpectralError::Solver("non-finite Σ̂V".into()));
        }
        if passes == 1 {
            scale = img.col(0).norm_l2();
            if scale == 0.0 {
                return Err(SpectralError::Solver(
                    "Σ̂_T v = 0 for the random start v: Σ̂_T is zero".into(),
                ));
            }
        }
        q.as_mut().subcols_mut(filled, b).copy_from(&block);
        w.as_mut().subcols_mut(filled, b).copy_from(&img);
        let c = q.as_ref().subcols(0, filled + b).transpose() * &img;
        for j in 0..b {
            for i in 0..filled + b {
                h[(i, filled + j)] = c[(i, j)];
                h[(filled + j, i)] = c[(i, j)];
            }
        }
        filled += b;
        // The next block: the newest image outside the whole current basis (taken before a
        // restart shrinks the basis).
        let mut r = img;
        project_out(q.as_ref().subcols(0, filled), r.as_mut());
        next = r;
        if filled < want {
            // Too few vectors for the wanted pairs yet (b < want): grow the basis.
            continue;
        }
        // Rayleigh–Ritz on span(Q).
        let hm = Mat::<f64>::from_fn(filled, filled, |i, j| 0.5 * (h[(i, j)] + h[(j, i)]));
        let evd = hm
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| SpectralError::Solver(format!("{e:?}")))?;
        let ev: Vec<f64> = (0..filled).map(|i| evd.S().column_vector()[i]).collect();
        if ev.iter().any(|a| !a.is_finite()) {
            return Err(SpectralError::Solver("non-finite Ritz values".into()));
        }
        let sel = select(&ev, order, want);
        let s = Mat::<f64>::from_fn(filled, want, |i, j| evd.U()[(i, sel[j])]);
        let ys = q.as_ref().subcols(0, filled) * &s;
        let ws = w.as_ref().subcols(0, filled) * &s;
        let values: Vec<f64> = sel.iter().map(|&j| ev[j]).collect();
        let met: Vec<bool> = residual_norms(ws.as_ref(), ys.as_ref(), &values)
            .iter()
            .enumerate()
            .map(|(j, &r)| {
                let tol = if j + 1 == want {
                    opts.edge_tol
                } else {
                    opts.tol
                };
                r <= tol * scale
            })
            .collect();
        let converged = met.iter().all(|&m| m);
        if converged || passes >= opts.max_passes {
            return Ok(Ritz {
                values,
                vectors: ys,
                converged,
                leading_converged: met.iter().take_while(|&&m| m).count(),
                passes,
                scale,
            });
        }
        if filled + b > cap {
            // Thick restart on the `keep_n` Ritz pairs at the wanted end.
            let keep = select(&ev, order, keep_n);
            let sk = Mat::<f64>::from_fn(filled, keep_n, |i, j| evd.U()[(i, keep[j])]);
            let qk = q.as_ref().subcols(0, filled) * &sk;
            let wk = w.as_ref().subcols(0, filled) * &sk;
            q.as_mut().subcols_mut(0, keep_n).copy_from(&qk);
            w.as_mut().subcols_mut(0, keep_n).copy_from(&wk);
            h.fill(0.0);
            for (j, &e) in keep.iter().enumerate() {
                h[(j, j)] = ev[e];
            }
            filled = keep_n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The residuals ‖Ay − θy‖ of the returned pairs, recomputed from A.
    fn residuals(a: &Mat<f64>, ritz: &Ritz) -> Vec<f64> {
        residual_norms(
            (a * &ritz.vectors).as_ref(),
            ritz.vectors.as_ref(),
            &ritz.values,
        )
    }

    /// The columns of `v` are orthonormal to `tol`.
    fn assert_orthonormal(v: &Mat<f64>, tol: f64, tag: &str) {
        let gram = v.transpose() * v;
        for i in 0..v.ncols() {
            for j in 0..v.ncols() {
                let e = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (gram[(i, j)] - e).abs() < tol,
                    "{tag} ({i}, {j}): {}",
                    gram[(i, j)]
                );
            }
        }
    }

    /// A = P diag(λ) Pᵀ with a seeded orthogonal P: known spectrum, a near-degenerate top
    /// pair, a dense bulk and a negative end.
    fn known(d: usize) -> (Mat<f64>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let g = gaussian(d, d, &mut rng);
        let p = g.qr().compute_thin_Q();
        let lambda: Vec<f64> = (0..d)
            .map(|i| match i {
                0 => 5.0,
                1 => 4.999,
                2 => -3.0,
                _ => (i as f64 / d as f64) - 0.5,
            })
            .collect();
        let a = Mat::from_fn(d, d, |i, j| {
            (0..d).map(|l| p[(i, l)] * lambda[l] * p[(j, l)]).sum()
        });
        (a, lambda)
    }

    #[test]
    fn finds_the_known_extreme_pairs_with_restarts() {
        let d = 200;
        let (a, lambda) = known(d);
        let mut sorted = lambda.clone();
        sorted.sort_by(f64::total_cmp);
        for (order, want, b, basis) in [
            (Order::Largest, 3, 4, 24),
            (Order::Smallest, 2, 3, 16),
            (Order::Abs, 4, 8, 48),
            (Order::Abs, 3, 1, 12),
        ] {
            let opts = BlockOptions {
                block: b,
                basis,
                tol: 1e-10,
                edge_tol: 1e-10,
                max_passes: 2000,
                seed: 7,
            };
            let apply = |v: MatRef<'_, f64>| &a * v;
            let ritz = block_lanczos(&apply, d, want, order, &opts).unwrap();
            let tag = format!("{order:?} want={want} b={b}");
            assert!(ritz.converged, "{tag}: {} passes", ritz.passes);
            assert_eq!(ritz.leading_converged, want, "{tag}");
            let expect: Vec<f64> = select(&sorted, order, want)
                .iter()
                .map(|&j| sorted[j])
                .collect();
            for (x, y) in ritz.values.iter().zip(&expect) {
                assert!(
                    (x - y).abs() < 1e-8,
                    "{tag}: {:?} vs {expect:?}",
                    ritz.values
                );
            }
            // Explicit residuals and orthonormality.
            for (j, r) in residuals(&a, &ritz).into_iter().enumerate() {
                assert!(r <= 1e-10 * ritz.scale * 1.01, "{tag} j={j}: {r}");
            }
            assert_orthonormal(&ritz.vectors, 1e-10, &tag);
            assert!(ritz.passes < 2000, "{tag}");
            // A looser tolerance on the last pair: the same iterates, stopped no later; the
            // others still meet tol and the last its own.
            let loose = BlockOptions {
                edge_tol: 1e-4,
                ..opts
            };
            let early = block_lanczos(&apply, d, want, order, &loose).unwrap();
            assert!(early.converged && early.passes <= ritz.passes, "{tag}");
            for (j, r) in residuals(&a, &early).into_iter().enumerate() {
                let tol = if j + 1 == want { 1e-4 } else { 1e-10 };
                assert!(r <= tol * early.scale * 1.01, "{tag} j={j}: {r}");
            }
        }
    }

    /// A = diag(2, 1 (×50), 0 (rest)) has three distinct eigenvalues, so the Krylov space of
    /// a start block of 2 is invariant after three blocks and holds only 2 of the 50
    /// directions of λ = 1. The third wanted λ = 1 needs the fresh Gaussian columns that
    /// replace the cancelled ones (without them the solver would report λ = 0 as converged).
    #[test]
    fn invariant_subspace_is_left_for_fresh_directions() {
        let d = 120;
        let a = Mat::<f64>::from_fn(d, d, |i, j| match (i == j, i) {
            (true, 0) => 2.0,
            (true, 1..=50) => 1.0,
            _ => 0.0,
        });
        let opts = BlockOptions {
            block: 2,
            basis: 24,
            tol: 1e-12,
            edge_tol: 1e-12,
            max_passes: 100,
            seed: 1,
        };
        let apply = |v: MatRef<'_, f64>| &a * v;
        let ritz = block_lanczos(&apply, d, 4, Order::Largest, &opts).unwrap();
        assert!(ritz.converged);
        for (x, y) in ritz.values.iter().zip([2.0, 1.0, 1.0, 1.0]) {
            assert!((x - y).abs() < 1e-12, "{:?}", ritz.values);
        }
        assert_orthonormal(&ritz.vectors, 1e-12, "invariant");
    }

    #[test]
    fn zero_operator_is_an_error() {
        let opts = BlockOptions {
            block: 2,
            basis: 12,
            tol: 1e-9,
            edge_tol: 1e-9,
            max_passes: 10,
            seed: 1,
        };
        let apply = |v: MatRef<'_, f64>| Mat::<f64>::zeros(v.nrows(), v.ncols());
        assert!(block_lanczos(&apply, 50, 2, Order::Abs, &opts).is_err());
    }
}
