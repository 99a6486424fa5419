//! The top-k singular triplets of a dense matrix A (rows×cols), at the cost a per-step metric
//! can afford.
//!
//! - [`SvdMethod::Exact`]: a full decomposition. When rows < cols, the rows×rows Gram matrix
//!   A Aᵀ = Û Λ Ûᵀ gives v_k = Aᵀ û_k / √λ_k; otherwise a thin SVD of A.
//! - [`SvdMethod::Subspace`]: randomized subspace iteration with Rayleigh–Ritz (Halko,
//!   Martinsson & Tropp 2011, Alg. 4.4 with a Ritz step per iterate). With b = k +
//!   [`OVERSAMPLE`] and Q = orth(Ω) (Ω a fixed-seed Gaussian cols×b, so the result is a
//!   deterministic function of A): Z = A Q (rows×b), thin SVD Z = U S Vᵀ gives the Ritz values
//!   S and vectors Q V; stop when the top-k Ritz values moved by less than [`RITZ_TOL`]·σ̃_1
//!   since the previous iterate (or after [`MAX_ITERATIONS`]), else Q ← orth(Aᵀ Z). An iterate
//!   costs 4·rows·cols·b flops instead of the rows·cols·min(rows, cols) of a decomposition;
//!   values converge like (σ_{b+1}/σ_k)^{4t}, so a W with a gap after its top k (an aligned
//!   W) takes 2–4 iterates. When min(rows, cols) ≤ 12b the Gram matrix of the short side is
//!   decomposed exactly instead.
//!
//! Accuracy of `Subspace`: exact to ~1e-10 once the top-k singular values are separated from
//! the rest; without a gap (a random W at initialisation) the Ritz values lie within a few per
//! cent below the true ones and the span is one of the nearly-equivalent top subspaces (test
//! `subspace_matches_exact`). `metrics.svd = "exact"` keeps the full decomposition.

use faer::{Mat, MatRef};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// How the top singular subspace is computed (`metrics.svd` in a run config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SvdMethod {
    /// A full decomposition (Gram eigendecomposition or thin SVD).
    Exact,
    /// Randomized subspace iteration (a decomposition of the short side's Gram when that is
    /// cheaper).
    #[default]
    Subspace,
}

impl SvdMethod {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Subspace => "subspace",
        }
    }
}

/// Columns added to the block beyond k.
pub const OVERSAMPLE: usize = 6;
/// [`SvdMethod::Subspace`] decomposes the short side's Gram matrix when min(rows, cols) is at
/// most this many blocks b: 2·rows·cols·n flops for n ≤ 12b cost less than the worst case of
/// the iteration.
pub const GRAM_BLOCKS: usize = 12;
/// Most iterates of [`SvdMethod::Subspace`].
pub const MAX_ITERATIONS: usize = 10;
/// Convergence for [`top_singular`]: the top-k Ritz values moved by less than this times σ̃_1
/// (the vectors are then accurate to about its square root, principal cosines to it).
pub const RITZ_TOL: f64 = 1e-10;
/// Convergence for [`top_singular_values`] and the values of [`w_spectra`] (values only: the
/// spectrum of Q is a diagnostic, and values inside the bulk converge slowly).
pub const VALUES_TOL: f64 = 1e-4;
/// Most iterates for values only: the top r values of an aligned W converge in 2–3; the bulk
/// values after them (q_spectrum's r + 1, r + 2) creep up slowly and are reported as the lower
/// bounds the iterate has reached (a few per cent low without a gap).
pub const VALUES_MAX_ITERATIONS: usize = 5;
/// Seed of the start block Ω (fixed: the metric is a function of A alone).
const START_SEED: u64 = 0x6d69_6d5f_6b72_796c;

/// The top-k singular values (descending) and right singular vectors of a matrix.
#[derive(Clone, Debug)]
pub struct TopSingular {
    /// σ_1 ≥ … ≥ σ_k (k = min(k, rows, cols)).
    pub values: Vec<f64>,
    /// v_1 … v_k as the orthonormal columns of a cols×k matrix (a column is zero where A has
    /// rank below k on the exact Gram route).
    pub vectors: Mat<f64>,
}

/// The top-k singular triplets of `a` (rows×cols) by `method` (see the module doc).
pub fn top_singular(
    a: MatRef<'_, f64>,
    k: usize,
    method: SvdMethod,
) -> Result<TopSingular, String> {
    let (rows, cols) = (a.nrows(), a.ncols());
    let k = k.min(rows).min(cols);
    if k == 0 {
        return Ok(TopSingular {
            values: Vec::new(),
            vectors: Mat::zeros(cols, 0),
        });
    }
    match method {
        SvdMethod::Exact if rows < cols => gram_rows(a, k),
        SvdMethod::Exact => {
            let svd = a.thin_svd().map_err(|e| format!("SVD failed: {e:?}"))?;
            Ok(TopSingular {
                values: (0..k).map(|i| svd.S()[i]).collect(),
                vectors: svd.V().subcols(0, k).to_owned(),
            })
        }
        SvdMethod::Subspace if gram_is_cheaper(rows, cols, k) && rows < cols => gram_rows(a, k),
        SvdMethod::Subspace if gram_is_cheaper(rows, cols, k) => gram_cols(a, k),
        SvdMethod::Subspace => subspace_iteration(a, k, RITZ_TOL),
    }
}

/// Whether [`SvdMethod::Subspace`] decomposes the short side's Gram matrix for the top k:
/// min(rows, cols) ≤ [`GRAM_BLOCKS`]·(k + [`OVERSAMPLE`]).
fn gram_is_cheaper(rows: usize, cols: usize, k: usize) -> bool {
    rows.min(cols) <= GRAM_BLOCKS * (k + OVERSAMPLE)
}

/// The top-k singular values of `a` (descending) by `method`: values only — a full SVD's
/// values for [`SvdMethod::Exact`]; for [`SvdMethod::Subspace`] the eigenvalues of the short
/// side's Gram matrix where that is cheaper, else the iteration, stopped at [`VALUES_TOL`] or
/// [`VALUES_MAX_ITERATIONS`].
pub fn top_singular_values(
    a: MatRef<'_, f64>,
    k: usize,
    method: SvdMethod,
) -> Result<Vec<f64>, String> {
    let (rows, cols) = (a.nrows(), a.ncols());
    let k = k.min(rows).min(cols);
    if k == 0 {
        return Ok(Vec::new());
    }
    match method {
        SvdMethod::Exact => {
            let mut values = a
                .singular_values()
                .map_err(|e| format!("SVD failed: {e:?}"))?;
            values.truncate(k);
            Ok(values)
        }
        SvdMethod::Subspace if gram_is_cheaper(rows, cols, k) => {
            let gram = if rows < cols {
                gram_lower(a)
            } else {
                gram_lower(a.transpose())
            };
            let mut eig = gram
                .self_adjoint_eigenvalues(faer::Side::Lower)
                .map_err(|e| format!("eigendecomposition failed: {e:?}"))?;
            eig.reverse();
            Ok(eig.iter().take(k).map(|l| l.max(0.0).sqrt()).collect())
        }
        SvdMethod::Subspace => {
            let [top] = iterate(a, &[], [(k, VALUES_TOL, VALUES_MAX_ITERATIONS, false)])?;
            Ok(top.values)
        }
    }
}

/// What the W metrics take from W (m×d): the top-`span_k` right singular vectors of the
/// row-normalised W_n = diag(s) W (s_j = 1/‖w_j‖, 0 for a zero row) and the top-`values_k`
/// singular values of W itself.
#[derive(Clone, Debug)]
pub struct WSpectra {
    /// v_1 … v_k of W_n as the columns of a d×k matrix.
    pub span: Mat<f64>,
    /// σ_1 ≥ … of W.
    pub values: Vec<f64>,
}

/// [`WSpectra`] by `method`. With [`SvdMethod::Subspace`] on a large W both iterations run
/// side by side on one block [Q_n | Q_w], so each iterate reads W twice in all
/// (W_n Q = diag(s)(W Q), W_nᵀ Z = Wᵀ diag(s) Z) and W_n is never formed; each half stops at
/// its own tolerance ([`RITZ_TOL`] for the span, [`VALUES_TOL`] for the values).
pub fn w_spectra(
    w: crate::RowMajor<'_>,
    span_k: usize,
    values_k: usize,
    method: SvdMethod,
) -> Result<WSpectra, String> {
    let norm2: Vec<f64> = (0..w.rows)
        .map(|i| crate::dot(w.row(i), w.row(i)))
        .collect();
    w_spectra_with_norms(w, &norm2, span_k, values_k, method)
}

/// [`w_spectra`] given the squared row norms ‖w_j‖² (e.g. [`crate::Projections::norm2`], which
/// the per-step metrics compute anyway).
pub fn w_spectra_with_norms(
    w: crate::RowMajor<'_>,
    norm2: &[f64],
    span_k: usize,
    values_k: usize,
    method: SvdMethod,
) -> Result<WSpectra, String> {
    let (rows, cols) = (w.rows, w.cols);
    let scales: Vec<f64> = norm2
        .iter()
        .map(|&n2| if n2 > 0.0 { 1.0 / n2.sqrt() } else { 0.0 })
        .collect();
    let a = faer::MatRef::from_row_major_slice(w.data, rows, cols);
    let (span_k, values_k) = (span_k.min(rows).min(cols), values_k.min(rows).min(cols));
    if method == SvdMethod::Exact || gram_is_cheaper(rows, cols, span_k.max(values_k)) {
        let mut normalised = vec![0.0; rows * cols];
        for ((out, row), &s) in normalised
            .chunks_exact_mut(cols.max(1))
            .zip(w.data.chunks_exact(cols.max(1)))
            .zip(&scales)
        {
            out.iter_mut().zip(row).for_each(|(o, v)| *o = v * s);
        }
        let normalised = faer::MatRef::from_row_major_slice(&normalised, rows, cols);
        // Small Gram matrices (≤ GRAM_BLOCKS·(k + OVERSAMPLE) on a side) decompose faster on
        // one thread than with rayon's hand-offs (m = 1000, d = 100: `mim bench`'s metrics_w
        // 8.1 → 5.5 ms); faer's global setting is restored afterwards. The exact mode's
        // full decompositions keep the caller's parallelism.
        let small = method == SvdMethod::Subspace;
        let previous = faer::get_global_parallelism();
        if small {
            faer::set_global_parallelism(faer::Par::Seq);
        }
        let spectra = if small && equal_norms(&scales) {
            ritz_values_on_normalised_span(a, normalised, span_k, values_k)
        } else {
            top_singular(normalised, span_k, method).and_then(|span| {
                Ok(WSpectra {
                    span: span.vectors,
                    values: top_singular_values(a, values_k, method)?,
                })
            })
        };
        faer::set_global_parallelism(previous);
        return spectra;
    }
    let [span, values] = iterate(
        a,
        &scales,
        [
            (span_k, RITZ_TOL, MAX_ITERATIONS, true),
            (values_k, VALUES_TOL, VALUES_MAX_ITERATIONS, false),
        ],
    )?;
    Ok(WSpectra {
        span: span.vectors,
        values: values.values,
    })
}

/// Relative spread of the row norms below which [`w_spectra`]'s Gram route takes the values
/// of W from the decomposition of the row-normalised W (stage 1's projected modes keep every
/// row at one norm up to f32 rounding, ≈ 1e-7).
pub const EQUAL_NORMS_TOL: f64 = 1e-6;

/// Whether all row scales agree to [`EQUAL_NORMS_TOL`] (and none is zero).
fn equal_norms(scales: &[f64]) -> bool {
    let (lo, hi) = scales.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &s| {
        (lo.min(s), hi.max(s))
    });
    lo > 0.0 && hi <= lo * (1.0 + EQUAL_NORMS_TOL)
}

/// The Gram route when the rows of W share one norm c (W = c·W_n up to a relative spread δ ≤
/// [`EQUAL_NORMS_TOL`]): one decomposition of W_n's Gram matrix gives its top b = values_k +
/// [`OVERSAMPLE`] right singular vectors V_b; the span is their first span_k, and the values
/// of W are the Ritz values on span(V_b), the singular values of W V_b (m×b). They are lower
/// bounds of W's (Courant–Fischer), equal to them for δ = 0 and off by O(δ) at most otherwise
/// (≈ 1e-13 relative at the f32 spread δ ≈ 1e-7: test `equal_norm_rows_take_one_decomposition`).
/// This saves the second Gram product and eigendecomposition.
fn ritz_values_on_normalised_span(
    a: MatRef<'_, f64>,
    normalised: MatRef<'_, f64>,
    span_k: usize,
    values_k: usize,
) -> Result<WSpectra, String> {
    let b = (values_k + OVERSAMPLE)
        .max(span_k)
        .min(a.nrows())
        .min(a.ncols());
    let top = top_singular(normalised, b, SvdMethod::Subspace)?;
    let mut values = (a * &top.vectors)
        .singular_values()
        .map_err(|e| format!("SVD failed: {e:?}"))?;
    values.truncate(values_k);
    Ok(WSpectra {
        span: top.vectors.subcols(0, span_k).to_owned(),
        values,
    })
}

/// Randomized subspace iteration for several k at once on one matrix A (rows×cols), sharing
/// its reads (module doc): track t = (k, tol, cap, scaled) iterates on diag(s)A when `scaled`
/// (s = `scales`, one per row), on A otherwise, from its own fixed-seed start block of k +
/// [`OVERSAMPLE`] columns; a track stops when its top-k Ritz values moved by at most tol·σ̃_1,
/// or at its `cap` of iterates.
fn iterate<const T: usize>(
    a: faer::MatRef<'_, f64>,
    scales: &[f64],
    tracks: [(usize, f64, usize, bool); T],
) -> Result<[TopSingular; T], String> {
    struct Track {
        k: usize,
        tol: f64,
        cap: usize,
        scaled: bool,
        q: Mat<f64>,
        previous: Option<Vec<f64>>,
        done: Option<TopSingular>,
    }
    let (rows, cols) = (a.nrows(), a.ncols());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(START_SEED);
    let cap_all = tracks.iter().map(|t| t.2).max().unwrap_or(0);
    let mut tracks = tracks.map(|(k, tol, cap, scaled)| {
        let omega =
            Mat::<f64>::from_fn(cols, k + OVERSAMPLE, |_, _| StandardNormal.sample(&mut rng));
        Track {
            k,
            tol,
            cap,
            scaled,
            q: omega.qr().compute_thin_Q(),
            previous: None,
            done: (k == 0).then(|| TopSingular {
                values: Vec::new(),
                vectors: Mat::zeros(cols, 0),
            }),
        }
    });
    let scale_rows = |z: &mut Mat<f64>| {
        for j in 0..z.ncols() {
            for (i, s) in scales.iter().enumerate() {
                z[(i, j)] *= s;
            }
        }
    };
    for iterate in 1..=cap_all {
        let active: Vec<usize> = (0..T).filter(|&t| tracks[t].done.is_none()).collect();
        if active.is_empty() {
            break;
        }
        let width: usize = active.iter().map(|&t| tracks[t].q.ncols()).sum();
        let mut stacked = Mat::<f64>::zeros(cols, width);
        let mut offset = 0;
        for &t in &active {
            let b = tracks[t].q.ncols();
            stacked.subcols_mut(offset, b).copy_from(&tracks[t].q);
            offset += b;
        }
        let product = a * &stacked; // rows × width: A [Q_1 | Q_2 | …]
        let mut back = Mat::<f64>::zeros(rows, width);
        let mut offset = 0;
        for &t in &active {
            let tr = &mut tracks[t];
            let b = tr.q.ncols();
            let mut z = product.subcols(offset, b).to_owned();
            if tr.scaled {
                scale_rows(&mut z); // diag(s) A Q
            }
            let svd = z.thin_svd().map_err(|e| format!("SVD failed: {e:?}"))?;
            let values: Vec<f64> = (0..tr.k).map(|i| svd.S()[i]).collect();
            let converged = tr.previous.as_ref().is_some_and(|p| {
                let moved = p.iter().zip(&values).map(|(x, y)| (x - y).abs());
                moved.fold(0.0, f64::max) <= tr.tol * values[0]
            });
            if converged || iterate >= tr.cap {
                tr.done = Some(TopSingular {
                    vectors: &tr.q * svd.V().subcols(0, tr.k),
                    values,
                });
            } else {
                tr.previous = Some(values);
                if tr.scaled {
                    scale_rows(&mut z); // so that Aᵀ(diag(s) z) = (diag(s)A)ᵀ z
                }
                back.subcols_mut(offset, b).copy_from(&z);
            }
            offset += b;
        }
        let grown = a.transpose() * &back; // cols × width
        let mut offset = 0;
        for &t in &active {
            let b = tracks[t].q.ncols();
            if tracks[t].done.is_none() {
                tracks[t].q = grown.subcols(offset, b).to_owned().qr().compute_thin_Q();
            }
            offset += b;
        }
    }
    Ok(tracks.map(|t| t.done.expect("every track ends at its cap")))
}

/// The lower triangle of B Bᵀ (B: n×k), the half a self-adjoint decomposition reads: half the
/// flops of the full product.
fn gram_lower(b: MatRef<'_, f64>) -> Mat<f64> {
    use faer::linalg::matmul::triangular::{matmul, BlockStructure};
    let n = b.nrows();
    let mut g = Mat::<f64>::zeros(n, n);
    matmul(
        g.as_mut(),
        BlockStructure::TriangularLower,
        faer::Accum::Replace,
        b,
        BlockStructure::Rectangular,
        b.transpose(),
        BlockStructure::Rectangular,
        1.0,
        faer::get_global_parallelism(),
    );
    g
}

/// Exact route through A Aᵀ (rows×rows): v = Aᵀû/√λ.
fn gram_rows(a: MatRef<'_, f64>, k: usize) -> Result<TopSingular, String> {
    let (rows, cols) = (a.nrows(), a.ncols());
    let evd = gram_lower(a)
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| format!("eigendecomposition failed: {e:?}"))?;
    let (u, s) = (evd.U(), evd.S().column_vector());
    let mut values = Vec::with_capacity(k);
    let mut vectors = Mat::<f64>::zeros(cols, k);
    // Eigenvalues ascending: the top k are the last k columns.
    for c in 0..k {
        let col = rows - 1 - c;
        let sigma = s[col].max(0.0).sqrt();
        values.push(sigma);
        if sigma > 0.0 {
            let vk = a.transpose() * u.col(col);
            for i in 0..cols {
                vectors[(i, c)] = vk[i] / sigma;
            }
        }
    }
    Ok(TopSingular { values, vectors })
}

/// Exact route through AᵀA (cols×cols): its top eigenvectors are the v_k.
fn gram_cols(a: MatRef<'_, f64>, k: usize) -> Result<TopSingular, String> {
    let cols = a.ncols();
    let evd = gram_lower(a.transpose())
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| format!("eigendecomposition failed: {e:?}"))?;
    let (v, s) = (evd.U(), evd.S().column_vector());
    let order: Vec<usize> = (0..k).map(|c| cols - 1 - c).collect();
    Ok(TopSingular {
        values: order.iter().map(|&c| s[c].max(0.0).sqrt()).collect(),
        vectors: Mat::from_fn(cols, k, |i, c| v[(i, order[c])]),
    })
}

/// Randomized subspace iteration with a Rayleigh–Ritz step per iterate (module doc).
fn subspace_iteration(a: MatRef<'_, f64>, k: usize, tol: f64) -> Result<TopSingular, String> {
    let [top] = iterate(a, &[], [(k, tol, MAX_ITERATIONS, false)])?;
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(rows: usize, cols: usize, seed: u64) -> Mat<f64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Mat::from_fn(rows, cols, |_, _| StandardNormal.sample(&mut rng))
    }

    /// Cosines of the principal angles between two orthonormal column sets.
    fn cosines(a: &Mat<f64>, b: &Mat<f64>) -> Vec<f64> {
        (a.transpose() * b).singular_values().unwrap()
    }

    /// A = G_r D Hᵀ + noise: r planted directions with singular values well above the bulk.
    fn planted(rows: usize, cols: usize, r: usize, seed: u64) -> (Mat<f64>, Mat<f64>) {
        let h = gaussian(cols, r, seed + 1).qr().compute_thin_Q();
        let g = gaussian(rows, r, seed + 2);
        let scale = Mat::from_fn(r, r, |i, j| if i == j { 8.0 - i as f64 } else { 0.0 });
        let noise = gaussian(rows, cols, seed + 3) * faer::Scale(1.0 / (cols as f64).sqrt());
        (&g * &scale * h.transpose() + noise, h)
    }

    /// With a gap, subspace iteration equals the exact decomposition to rounding; without one (values
    /// inside the bulk, or a pure Gaussian matrix) its values are within 3 % and never above.
    #[test]
    fn subspace_matches_exact() {
        for (rows, cols) in [(400, 300), (300, 400)] {
            let (a, h) = planted(rows, cols, 3, 7);
            let exact = top_singular(a.as_ref(), 5, SvdMethod::Exact).unwrap();
            let fast = subspace_iteration(a.as_ref(), 5, RITZ_TOL).unwrap();
            // The 3 planted values to rounding, the 2 from the bulk within 3 %.
            for (i, (e, f)) in exact.values.iter().zip(&fast.values).enumerate() {
                let tol = if i < 3 { 1e-9 } else { 0.03 };
                assert!((e - f).abs() < tol * e, "{rows}×{cols}, σ_{i}: {e} vs {f}");
            }
            let span = |t: &TopSingular| t.vectors.subcols(0, 3).to_owned();
            for c in cosines(&span(&exact), &span(&fast)) {
                assert!((c - 1.0).abs() < 1e-9, "{rows}×{cols}: {c}");
            }
            // And the planted directions are what both found.
            assert!(cosines(&h, &span(&fast))[2] > 0.99);
        }
        let a = gaussian(500, 400, 11);
        let exact = top_singular(a.as_ref(), 4, SvdMethod::Exact).unwrap();
        let fast = subspace_iteration(a.as_ref(), 4, RITZ_TOL).unwrap();
        for (e, f) in exact.values.iter().zip(&fast.values) {
            assert!(
                f <= &(e * (1.0 + 1e-12)) && (e - f) / e < 0.03,
                "{e} vs {f}"
            );
        }
        // Values only, capped at 5 iterates: lower bounds within 10 %.
        let capped = top_singular_values(a.as_ref(), 4, SvdMethod::Subspace).unwrap();
        for (e, f) in exact.values.iter().zip(&capped) {
            assert!(f <= &(e * (1.0 + 1e-12)) && (e - f) / e < 0.1, "{e} vs {f}");
        }
    }

    /// The values-only route agrees with the full one: to 1e-9 on the Gram route, to 1e-5
    /// (its tolerance) with the iteration on a planted matrix.
    #[test]
    fn values_only_agree() {
        for (rows, cols, tol) in [(30, 12, 1e-9), (12, 30, 1e-9), (400, 300, 1e-5)] {
            let (a, _) = planted(rows, cols, 3, 5);
            let full = top_singular(a.as_ref(), 3, SvdMethod::Exact)
                .unwrap()
                .values;
            let values = top_singular_values(a.as_ref(), 3, SvdMethod::Subspace).unwrap();
            for (f, v) in full.iter().zip(&values) {
                assert!((f - v).abs() < tol * full[0], "{rows}×{cols}: {f} vs {v}");
            }
        }
    }

    /// The joint iteration gives what the two separate ones give: the span of the row-
    /// normalised matrix and the values of the raw one.
    #[test]
    fn w_spectra_equals_the_separate_routes() {
        let (a, _) = planted(500, 400, 2, 9);
        let data: Vec<f64> = (0..500 * 400).map(|i| a[(i / 400, i % 400)]).collect();
        let w = crate::RowMajor::new(&data, 500, 400);
        let joint = w_spectra(w, 2, 4, SvdMethod::Subspace).unwrap();
        let exact = w_spectra(w, 2, 4, SvdMethod::Exact).unwrap();
        let norms: Vec<f64> = (0..500)
            .map(|i| (0..400).map(|j| a[(i, j)].powi(2)).sum::<f64>().sqrt())
            .collect();
        let normalised = Mat::from_fn(500, 400, |i, j| a[(i, j)] / norms[i]);
        let reference = a.thin_svd().unwrap();
        let span = top_singular(normalised.as_ref(), 2, SvdMethod::Exact)
            .unwrap()
            .vectors;
        for c in cosines(&joint.span, &span)
            .into_iter()
            .chain(cosines(&exact.span, &span))
        {
            assert!((c - 1.0).abs() < 1e-9, "{c}");
        }
        for i in 0..2 {
            for v in [joint.values[i], exact.values[i]] {
                assert!((v - reference.S()[i]).abs() < 1e-5 * reference.S()[0]);
            }
        }
    }

    /// Rows of one norm (up to a relative spread of 1e-7, as stage 1 leaves them in f32) take
    /// the one-decomposition Gram route, and its span and values equal the exact ones; with
    /// unequal norms the route is not taken, and the values still equal the exact ones.
    #[test]
    fn equal_norm_rows_take_one_decomposition() {
        for (rows, cols) in [(300, 40), (40, 300)] {
            let (a, _) = planted(rows, cols, 2, 13);
            let mut data: Vec<f64> = (0..rows * cols).map(|i| a[(i / cols, i % cols)]).collect();
            for (i, row) in data.chunks_exact_mut(cols).enumerate() {
                let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
                let c = 0.7 * (1.0 + 1e-7 * ((i % 5) as f64 - 2.0) / 2.0);
                row.iter_mut().for_each(|v| *v *= c / norm);
            }
            let scales: Vec<f64> = data
                .chunks_exact(cols)
                .map(|r| 1.0 / r.iter().map(|v| v * v).sum::<f64>().sqrt())
                .collect();
            assert!(equal_norms(&scales));
            // The subspace method's values against the exact ones; its span.
            let compare = |data: &[f64]| {
                let w = crate::RowMajor::new(data, rows, cols);
                let fast = w_spectra(w, 2, 4, SvdMethod::Subspace).unwrap();
                let exact = w_spectra(w, 2, 4, SvdMethod::Exact).unwrap();
                for (f, e) in fast.values.iter().zip(&exact.values) {
                    let tol = 1e-10 * exact.values[0];
                    assert!((f - e).abs() < tol, "{rows}×{cols}: {f} vs {e}");
                }
                cosines(&fast.span, &exact.span)
            };
            for c in compare(&data) {
                assert!((c - 1.0).abs() < 1e-9, "{rows}×{cols}: {c}");
            }
            // One row at twice the norm: the route is not taken; values still exact.
            data[..cols].iter_mut().for_each(|v| *v *= 2.0);
            compare(&data);
        }
        assert!(!equal_norms(&[1.0, 1.0 + 2e-6]) && !equal_norms(&[0.0, 0.0]));
    }

    /// Both Gram routes and the thin SVD agree on a small matrix; the subspace method takes
    /// them when the matrix is small, so it equals the exact one there.
    #[test]
    fn gram_routes_agree_with_svd() {
        for (rows, cols) in [(12, 30), (30, 12)] {
            let (a, _) = planted(rows, cols, 2, 3);
            let svd = a.thin_svd().unwrap();
            for t in [
                gram_rows(a.as_ref(), 4).unwrap(),
                gram_cols(a.as_ref(), 4).unwrap(),
                top_singular(a.as_ref(), 4, SvdMethod::Subspace).unwrap(),
            ] {
                for i in 0..4 {
                    assert!((t.values[i] - svd.S()[i]).abs() < 1e-9 * svd.S()[0]);
                }
                let reference = svd.V().subcols(0, 4).to_owned();
                for c in cosines(&t.vectors, &reference) {
                    assert!((c - 1.0).abs() < 1e-8, "{rows}×{cols}: {c}");
                }
            }
        }
    }
}
