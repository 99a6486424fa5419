//! Eigenvectors of Σ̂_T: the weighted second moment Xᵀdiag(T)X/n = (1/n) Σ_i T_i x_i x_iᵀ, or
//! the classical spectral estimator (1/n) Σ_i T_i (x_i x_iᵀ − I) = Xᵀdiag(T)X/n − mean(T)·I
//! ([`Shift`]).
//!
//! The two differ by a multiple of the identity: same eigenvectors, eigenvalues moved by
//! mean(T). `Largest` and `Smallest` therefore take the same vectors from both, but `Abs` does
//! not: the shift decides which end has the larger |λ|. Stage 1 with β1 = 1/η1 and the
//! power-iteration metric iterate the unshifted matrix ([`Shift::None`]), so they amplify its
//! largest |λ|; that is the network's spectral twin.
//!
//! Two solvers:
//! - **dense** ([`Method::Dense`]): Σ̂_T is formed (d×d, one GEMM per block of rows) and
//!   decomposed by faer's self-adjoint eigen-solver; cost ≈ n·d² + O(d³) flops, d² memory.
//! - **iterative** ([`Method::Iterative`]): matrix-free block thick-restart Lanczos
//!   (`krylov.rs`: b = 8 vectors per product, a basis of ≤ 128 vectors with its image,
//!   explicit Rayleigh–Ritz, so every end of the spectrum is read off the same basis) for the
//!   k + 1 pairs at the wanted end of the operator that applies
//!   Σ̂_T V = Xᵀ(T ⊙ XV)/n − s·V (s = mean(T) or 0) in fixed row groups (bit-for-bit
//!   repeatable, rows in memory or streamed). A block product costs one pass over the rows for
//!   b vectors, which is what matters when each pass regenerates D1. The start block is a
//!   seeded Gaussian. Σ̂_T is never formed; memory beyond X: the basis and its image,
//!   2·128·d numbers (O(d)). Where the basis would be most of the space (d < 2·max(4b,
//!   2(k + 1 + b)), i.e. d < 64 at k ≤ 7) the dense solver runs instead (exact;
//!   `Spectrum::method` says so).
//!
//! The product reads the rows in pieces that fit in cache (`PIECE_BYTES`, 1 MiB); streamed rows are
//! regenerated into one reused buffer per worker (v1: a generator block at a time, handed out
//! piece by piece; v2: a piece at a time), in the same pieces as in memory, so a streamed
//! estimate equals the in-memory one bit for bit.
//!
//! [`Method::Auto`] is dense for d ≤ [`DENSE_MAX_D`], iterative above.

use crate::error::SpectralError;
use crate::krylov::{block_lanczos, residual_norms, BlockOptions};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};
use mim_data::{Generator, Split, Target, BLOCK_ROWS};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Largest d for which [`Method::Auto`] forms Σ̂_T densely.
pub const DENSE_MAX_D: usize = 2000;

/// Which end of the spectrum of Σ̂_T holds the signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// The k largest (most positive) eigenvalues.
    Largest,
    /// The k smallest (most negative) eigenvalues.
    Smallest,
    /// The k eigenvalues of largest |λ| (what power iteration on this matrix amplifies); they
    /// are always the p largest and the k − p smallest for some p. Which end wins depends on
    /// the [`Shift`].
    Abs,
}

/// Which matrix: the weighted second moment, or it minus mean(T)·I.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shift {
    /// Xᵀdiag(T)X/n = (1/n) Σ_i T_i x_i x_iᵀ: the matrix stage 1 (β1 = 1/η1) and the
    /// power-iteration metric iterate, so `Abs` selects what they amplify (the spectral twin).
    None,
    /// Xᵀdiag(T)X/n − mean(T)·I = (1/n) Σ_i T_i (x_i x_iᵀ − I): the classical spectral
    /// estimator of the literature (its population matrix has rank ≤ r).
    Mean,
}

impl Shift {
    /// Config name.
    pub fn name(self) -> &'static str {
        match self {
            Shift::None => "none",
            Shift::Mean => "mean",
        }
    }
}

impl Order {
    /// Config name.
    pub fn name(self) -> &'static str {
        match self {
            Order::Largest => "largest",
            Order::Smallest => "smallest",
            Order::Abs => "abs",
        }
    }
}

/// Eigen-solver choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Dense for d ≤ [`DENSE_MAX_D`], iterative above.
    #[default]
    Auto,
    /// Form Σ̂_T (d×d) and decompose it fully.
    Dense,
    /// Matrix-free: block thick-restart Lanczos on the operator Σ̂_T (dense where its basis
    /// would be most of ℝ^d: d < 2·max(32, 2(k + 9)), i.e. d < 64 at k ≤ 7).
    Iterative,
}

impl Method {
    /// Config name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Dense => "dense",
            Method::Iterative => "iterative",
        }
    }

    /// `Auto` resolved for dimension d.
    pub fn resolve(self, d: usize) -> Method {
        match self {
            Method::Auto if d <= DENSE_MAX_D => Method::Dense,
            Method::Auto => Method::Iterative,
            m => m,
        }
    }
}

/// Settings of the iterative solver (block thick-restart Lanczos, `krylov.rs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IterativeOptions {
    /// Done when every one of the k taken Ritz pairs and the next one has
    /// ‖Σ̂_T y − θy‖ ≤ tol·‖Σ̂_T v0‖ (v0 the first unit start vector: ≈ the RMS eigenvalue,
    /// ≤ ‖Σ̂_T‖), the residual computed from the products, not estimated.
    pub tol: f64,
    /// The same for the bulk edge (the (k+1)-th pair), looser: its Ritz value is within
    /// ‖r‖²/gap of an eigenvalue (‖r‖ its residual, gap the distance to the rest of the
    /// spectrum; at d = 2500 the default moved it by 7e−11 from a 1e−9 solve), while a tight
    /// residual deep in the bulk, where the gap is tiny, would cost most of the passes.
    pub edge_tol: f64,
    /// Most products (passes over the rows).
    pub max_passes: usize,
    /// Vectors per product (b): one pass over the rows serves b vectors.
    pub block: usize,
    /// Basis size before a thick restart (raised to 2(k + 1 + block) for large k, capped at
    /// d/2).
    pub basis: usize,
    /// Seed of the random start block.
    pub seed: u64,
}

impl Default for IterativeOptions {
    fn default() -> Self {
        Self {
            tol: 1e-9,
            edge_tol: 3e-5,
            max_passes: 2000,
            block: 8,
            basis: 128,
            seed: 0x5eed,
        }
    }
}

/// Bytes the iterative solver holds beyond the rows at dimension d for k pairs with the
/// default options: its basis and the basis' image (2·basis·d f64) and the partial products
/// of the row groups (16·block·d f64); e.g. 48 MiB at d = 16 384, k ≤ 55.
pub fn iterative_bytes(d: usize, k: usize) -> f64 {
    let o = IterativeOptions::default();
    (2 * basis_size(d, k, &o) + GROUPS * o.block) as f64 * d as f64 * 8.0
}

/// Columns of the iterative solver's basis for k pairs (k + 1 with the bulk edge): the
/// configured size, raised to twice the wanted pairs plus a block, at most d/2.
fn basis_size(d: usize, k: usize, opts: &IterativeOptions) -> usize {
    opts.basis.max(2 * (k + 1 + opts.block)).min(d / 2)
}

/// The k eigenpairs taken from Σ̂_T.
#[derive(Clone, Debug, PartialEq)]
pub struct Spectrum {
    /// Dimension d.
    pub d: usize,
    /// The k taken eigenvalues (signed), most extreme first in the chosen order.
    pub eigenvalues: Vec<f64>,
    /// Their unit eigenvectors, k×d row-major; each with its largest-|·| entry positive.
    pub eigenvectors: Vec<f64>,
    /// Where each taken eigenvalue sits in the ascending spectrum (0 = most negative,
    /// d − 1 = largest).
    pub indices: Vec<usize>,
    /// Bulk-edge estimate: the (k+1)-th eigenvalue in the chosen order (the most extreme one
    /// not taken), signed; `None` when k = d or when the iterative solver did not converge.
    pub bulk_edge: Option<f64>,
    /// The order used.
    pub order: Order,
    /// The solver that ran (`Dense` or `Iterative`; `Iterative` runs dense at small d).
    pub method: Method,
    /// Block products Σ̂_T V of the iterative solver (b = [`IterativeOptions::block`] vectors
    /// each), i.e. passes over the rows (0 for dense).
    pub iterations: usize,
    /// max_i ‖Σ̂v_i − λ_i v_i‖ over the taken pairs.
    pub max_residual: f64,
    /// Whether the iterative solver met its tolerance (always true for dense).
    pub converged: bool,
    /// Which matrix the pairs belong to.
    pub shift: Shift,
    /// mean(T); subtracted from Xᵀdiag(T)X/n (times I) when `shift` is [`Shift::Mean`].
    pub mean_t: f64,
}

impl Spectrum {
    /// Number of eigenpairs taken.
    pub fn k(&self) -> usize {
        self.eigenvalues.len()
    }

    /// Eigenvector i (length d).
    pub fn eigenvector(&self, i: usize) -> &[f64] {
        &self.eigenvectors[i * self.d..(i + 1) * self.d]
    }

    /// The eigenvectors as the orthonormal columns of a d×k matrix (the learned span).
    pub fn span(&self) -> Mat<f64> {
        Mat::from_fn(self.d, self.k(), |i, j| self.eigenvector(j)[i])
    }
}

/// Rows per GEMM block.
const CHUNK: usize = 512;
/// Fixed number of row groups for the matrix-free product (independent of the thread count,
/// so the sum order and hence the result are too).
const GROUPS: usize = 16;

/// Where the n rows of X come from.
#[derive(Clone, Copy)]
pub enum Rows<'a> {
    /// n×d row-major, in memory.
    Memory(&'a [f64]),
    /// Regenerated on every pass from the dataset's seeded streams ([`Target::sample_rows`]):
    /// bit-identical rows, so the estimate equals the in-memory one, with one buffer of
    /// [`BLOCK_ROWS`] rows per worker in memory instead of n·d values.
    Stream {
        /// The target that draws the rows.
        target: &'a Target,
        /// Which dataset.
        split: Split,
        /// Its data seed.
        seed: u64,
    },
}

/// Bytes of rows (f64) a piece of the matrix-free product holds: about half of a 2 MiB L2
/// cache, so both products of [`Operator::apply`] read the piece from cache.
const PIECE_BYTES: usize = 1 << 20;

/// Rows per piece of the matrix-free product at dimension d: the largest power of two whose
/// rows fit [`PIECE_BYTES`], between 1 and [`CHUNK`] (a power of two dividing [`BLOCK_ROWS`]).
fn product_piece(d: usize) -> usize {
    let fit = (PIECE_BYTES / (8 * d.max(1))).clamp(1, CHUNK);
    1 << fit.ilog2()
}

impl Rows<'_> {
    /// Calls `f(start, rows)` over rows `lo..hi` in order, in pieces of `piece` rows (the
    /// last shorter); `piece` must divide [`BLOCK_ROWS`] or be a multiple of it, and `lo` be a
    /// multiple of [`BLOCK_ROWS`]. The pieces are the same in memory and streamed, so the
    /// results are too. Streamed rows go through one reused buffer: v1 rows a whole generator
    /// block at a time (no row generated twice), handed out piece by piece; v2 rows, each
    /// drawn from its own counters, a piece at a time (a piece that fits in cache is drawn
    /// into cache).
    fn each(&self, lo: usize, hi: usize, d: usize, piece: usize, mut f: impl FnMut(usize, &[f64])) {
        let mut pieces = |start: usize, xs: &[f64]| {
            for (i, xs) in xs.chunks(piece * d).enumerate() {
                f(start + i * piece, xs);
            }
        };
        match *self {
            Rows::Memory(x) => pieces(lo, &x[lo * d..hi * d]),
            Rows::Stream {
                target,
                split,
                seed,
            } => {
                let drawn = match target.generator {
                    Generator::V1 => piece.max(BLOCK_ROWS),
                    Generator::V2 => piece,
                };
                let mut rows = Vec::new();
                let mut start = lo;
                while start < hi {
                    let len = drawn.min(hi - start);
                    target.sample_inputs_as(split, seed, start, len, &mut rows, |v| v);
                    pieces(start, &rows);
                    start += len;
                }
            }
        }
    }
}

/// The operator V ↦ Σ̂_T V.
struct Operator<'a> {
    rows: Rows<'a>,
    t: &'a [f64],
    n: usize,
    d: usize,
    /// mean(T) (reported).
    mean_t: f64,
    /// Which matrix.
    kind: Shift,
    /// s in Σ̂_T = Xᵀdiag(T)X/n − s·I: mean(T) for [`Shift::Mean`], 0 for [`Shift::None`].
    shift: f64,
    /// Passes over the rows so far, and the callback told of each.
    passes: AtomicUsize,
    on_pass: &'a (dyn Fn(usize) + Sync),
}

impl Operator<'_> {
    /// Counts one more pass over the rows and reports it.
    fn pass_done(&self) {
        (self.on_pass)(self.passes.fetch_add(1, Relaxed) + 1);
    }

    /// Rows of group g of [`GROUPS`]; groups start at whole generator blocks (so streamed rows
    /// are generated once). Empty (lo ≥ hi) past the end.
    fn group(&self, g: usize) -> (usize, usize) {
        let per = self.n.div_ceil(GROUPS).div_ceil(BLOCK_ROWS).max(1) * BLOCK_ROWS;
        (g * per, ((g + 1) * per).min(self.n))
    }

    /// Σ̂_T V = Xᵀ(T ⊙ XV)/n − s·V for V d×b.
    fn apply(&self, v: MatRef<'_, f64>) -> Mat<f64> {
        let (n, d, b) = (self.n, self.d, v.ncols());
        let partials: Vec<Mat<f64>> = (0..GROUPS)
            .into_par_iter()
            .filter_map(|g| {
                let (lo, hi) = self.group(g);
                if lo >= hi {
                    return None;
                }
                let mut acc = Mat::<f64>::zeros(d, b);
                let piece = product_piece(d);
                let mut z = Mat::<f64>::zeros(piece.min(hi - lo), b);
                self.rows.each(lo, hi, d, piece, |r0, xs| {
                    let rows = xs.len() / d;
                    let xc = MatRef::from_row_major_slice(xs, rows, d);
                    let mut zc = z.as_mut().subrows_mut(0, rows);
                    matmul(zc.as_mut(), Accum::Replace, xc, v, 1.0, Par::Seq);
                    for c in 0..b {
                        for i in 0..rows {
                            zc[(i, c)] *= self.t[r0 + i];
                        }
                    }
                    matmul(
                        acc.as_mut(),
                        Accum::Add,
                        xc.transpose(),
                        zc.as_ref(),
                        1.0,
                        Par::Seq,
                    );
                });
                Some(acc)
            })
            .collect();
        self.pass_done();
        let inv_n = 1.0 / n as f64;
        let mut out = Mat::<f64>::from_fn(d, b, |i, j| -self.shift * v[(i, j)]);
        for p in &partials {
            for j in 0..b {
                for i in 0..d {
                    out[(i, j)] += p[(i, j)] * inv_n;
                }
            }
        }
        out
    }

    /// The dense d×d matrix (lower triangle is what the eigen-solver reads).
    fn dense(&self) -> Mat<f64> {
        let (n, d) = (self.n, self.d);
        let mut s = Mat::<f64>::zeros(d, d);
        let mut scaled = vec![0.0; CHUNK.min(n) * d];
        self.rows.each(0, n, d, CHUNK, |start, xs| {
            for (c0, xs) in xs.chunks(CHUNK * d).enumerate() {
                let (r0, rows) = (start + c0 * CHUNK, xs.len() / d);
                for (i, (dst, src)) in scaled
                    .chunks_exact_mut(d)
                    .zip(xs.chunks_exact(d))
                    .enumerate()
                {
                    let ti = self.t[r0 + i];
                    for (a, b) in dst.iter_mut().zip(src) {
                        *a = ti * b;
                    }
                }
                let xc = MatRef::from_row_major_slice(xs, rows, d);
                let sc = MatRef::from_row_major_slice(&scaled[..rows * d], rows, d);
                matmul(
                    s.as_mut(),
                    Accum::Add,
                    xc.transpose(),
                    sc,
                    1.0 / n as f64,
                    Par::rayon(0),
                );
            }
        });
        for i in 0..d {
            s[(i, i)] -= self.shift;
        }
        s
    }
}

/// The top `count` positions of an ascending spectrum `ev` in `order`.
pub(crate) fn select(ev: &[f64], order: Order, count: usize) -> Vec<usize> {
    let m = ev.len();
    let count = count.min(m);
    match order {
        Order::Largest => (0..count).map(|j| m - 1 - j).collect(),
        Order::Smallest => (0..count).collect(),
        Order::Abs => {
            let (mut lo, mut hi) = (0usize, m - 1);
            let mut out = Vec::with_capacity(count);
            while out.len() < count {
                if lo == hi || ev[hi].abs() >= ev[lo].abs() {
                    out.push(hi);
                    if hi == 0 {
                        break;
                    }
                    hi -= 1;
                } else {
                    out.push(lo);
                    lo += 1;
                }
            }
            out
        }
    }
}

/// The k eigenpairs of Σ̂_T at the `order` end, Σ̂_T = (1/n) Σ_i t_i x_i x_iᵀ for
/// [`Shift::None`] (what power iteration amplifies) or (1/n) Σ_i t_i (x_i x_iᵀ − I) for
/// [`Shift::Mean`]. `rows` gives X (n×d, in memory or regenerated per pass), `t` the
/// preprocessed labels T(y_i) (length n = the number of rows). The iterative solver (block
/// Lanczos, `krylov.rs`) runs with [`IterativeOptions::default`]; it only applies Σ̂_T
/// to blocks of vectors, so a streamed X never exists whole (`Dense` forms the d×d matrix, as
/// does `Iterative` where its basis would be most of the space, d < 64 at k ≤ 7).
///
/// Errors ([`SpectralError::Input`]): n = 0, d = 0, wrong lengths, k = 0 or k > d,
/// non-finite x or t; [`SpectralError::Solver`] if the eigen-solver fails.
pub fn spectral_estimate(
    rows: Rows<'_>,
    d: usize,
    t: &[f64],
    k: usize,
    order: Order,
    shift: Shift,
    method: Method,
) -> Result<Spectrum, SpectralError> {
    spectral_estimate_observed(rows, d, t, k, order, shift, method, &|_| {})
}

/// [`spectral_estimate`], calling `on_pass(p)` after the p-th matrix-free pass over the rows
/// (a product Σ̂_T V, or the bound pass of `Largest` / `Smallest`; each regenerates streamed
/// rows), e.g. for a progress line during a long streamed solve. A dense solve forms Σ̂_T in
/// one pass of its own and then makes one (the residuals).
#[allow(clippy::too_many_arguments)]
pub fn spectral_estimate_observed(
    rows: Rows<'_>,
    d: usize,
    t: &[f64],
    k: usize,
    order: Order,
    shift: Shift,
    method: Method,
    on_pass: &(dyn Fn(usize) + Sync),
) -> Result<Spectrum, SpectralError> {
    let n = t.len();
    let opts = &IterativeOptions::default();
    let input = |s: String| Err(SpectralError::Input(s));
    if n == 0 || d == 0 {
        return input(format!("n = {n}, d = {d}: need n ≥ 1 and d ≥ 1"));
    }
    if let Rows::Memory(x) = rows {
        if n.checked_mul(d) != Some(x.len()) {
            return input(format!("x has {} values, expected n·d = {n}·{d}", x.len()));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return input("x has non-finite values".into());
        }
    }
    if k == 0 || k > d {
        return input(format!("k = {k}: need 1 ≤ k ≤ d = {d}"));
    }
    if let Some(i) = t.iter().position(|v| !v.is_finite()) {
        return input(format!(
            "t[{i}] = {}: preprocessed labels must be finite",
            t[i]
        ));
    }
    let mean_t = t.iter().sum::<f64>() / n as f64;
    let op = Operator {
        rows,
        t,
        n,
        d,
        mean_t,
        kind: shift,
        shift: match shift {
            Shift::None => 0.0,
            Shift::Mean => mean_t,
        },
        passes: AtomicUsize::new(0),
        on_pass,
    };
    let mut spec = match method.resolve(d) {
        Method::Iterative if block_fits(d, k, opts) => iterative(&op, k, order, opts)?,
        _ => dense(&op, k, order)?,
    };
    // Residuals of the taken pairs (k operator columns).
    let v = Mat::<f64>::from_fn(d, k, |i, j| spec.eigenvectors[j * d + i]);
    let av = op.apply(v.as_ref());
    spec.max_residual = residual_norms(av.as_ref(), v.as_ref(), &spec.eigenvalues)
        .into_iter()
        .fold(0.0, f64::max);
    if !spec.max_residual.is_finite() {
        return Err(SpectralError::Solver("non-finite residual".into()));
    }
    Ok(spec)
}

/// Unit vector with its largest-|·| entry made positive, appended to `out`.
fn push_normalised(out: &mut Vec<f64>, col: impl Iterator<Item = f64>) {
    let v: Vec<f64> = col.collect();
    let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let big = v
        .iter()
        .copied()
        .fold(0.0f64, |m, a| if a.abs() > m.abs() { a } else { m });
    let s = if big < 0.0 { -1.0 } else { 1.0 } / if norm > 0.0 { norm } else { 1.0 };
    out.extend(v.iter().map(|a| a * s));
}

fn dense(op: &Operator<'_>, k: usize, order: Order) -> Result<Spectrum, SpectralError> {
    let d = op.d;
    let s = op.dense();
    let evd = s
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| SpectralError::Solver(format!("{e:?}")))?;
    let ev: Vec<f64> = (0..d).map(|i| evd.S().column_vector()[i]).collect();
    if ev.iter().any(|v| !v.is_finite()) {
        return Err(SpectralError::Solver("non-finite eigenvalues".into()));
    }
    let sel = select(&ev, order, k + 1);
    let u = evd.U();
    let mut eigenvectors = Vec::with_capacity(k * d);
    for &j in &sel[..k] {
        push_normalised(&mut eigenvectors, (0..d).map(|i| u[(i, j)]));
    }
    Ok(Spectrum {
        d,
        eigenvalues: sel[..k].iter().map(|&j| ev[j]).collect(),
        eigenvectors,
        indices: sel[..k].to_vec(),
        bulk_edge: sel.get(k).map(|&j| ev[j]),
        order,
        method: Method::Dense,
        iterations: 0,
        max_residual: 0.0,
        converged: true,
        shift: op.kind,
        mean_t: op.mean_t,
    })
}

/// Whether the block solver runs for k pairs (k + 1 with the bulk edge): its basis (at most
/// d/2 columns) must hold at least four blocks and twice the wanted pairs plus a block. Below
/// that the Krylov space would be most of ℝ^d and [`spectral_estimate`] solves densely (exact).
fn block_fits(d: usize, k: usize, opts: &IterativeOptions) -> bool {
    d / 2 >= (4 * opts.block).max(2 * (k + 1 + opts.block))
}

/// The block thick-restart Lanczos solver (`krylov.rs`) on Σ̂_T for the k + 1 pairs at
/// the `order` end; its Rayleigh–Ritz step sees the whole projected spectrum, so every end is
/// taken from Σ̂_T itself.
fn iterative(
    op: &Operator<'_>,
    k: usize,
    order: Order,
    opts: &IterativeOptions,
) -> Result<Spectrum, SpectralError> {
    let d = op.d;
    let nev = k + 1;
    let block = BlockOptions {
        block: opts.block,
        basis: basis_size(d, k, opts),
        tol: opts.tol,
        edge_tol: opts.edge_tol,
        max_passes: opts.max_passes,
        seed: opts.seed,
    };
    let ritz = block_lanczos(&|v| op.apply(v), d, nev, order, &block)?;
    if ritz.leading_converged < k {
        return Err(SpectralError::Solver(format!(
            "block Lanczos: {} of {k} eigenpairs met the tolerance in {} passes",
            ritz.leading_converged, ritz.passes
        )));
    }
    let theta = &ritz.values;
    let mut eigenvectors = Vec::with_capacity(k * d);
    for j in 0..k {
        push_normalised(&mut eigenvectors, (0..d).map(|i| ritz.vectors[(i, j)]));
    }
    // Positions in the ascending spectrum (see `Order::Abs`).
    let (mut hi, mut lo) = (0usize, 0usize);
    let indices = theta[..k]
        .iter()
        .map(|&th| {
            let top = match order {
                Order::Largest => true,
                Order::Smallest => false,
                Order::Abs => th > 0.0,
            };
            if top {
                hi += 1;
                d - hi
            } else {
                lo += 1;
                lo - 1
            }
        })
        .collect();
    Ok(Spectrum {
        d,
        eigenvalues: theta[..k].to_vec(),
        eigenvectors,
        indices,
        bulk_edge: ritz.converged.then(|| theta[k]),
        order,
        method: Method::Iterative,
        iterations: ritz.passes,
        max_residual: 0.0,
        converged: ritz.converged,
        shift: op.kind,
        mean_t: op.mean_t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    /// x_i ~ N(0, I) and t_i = θ·((u·x_i)² − 1) + ξ_i: Σ̂_T ≈ 2θ·uuᵀ + noise, plus a planted
    /// negative direction w: t_i also has −θ2·((w·x_i)² − 1).
    fn planted(n: usize, d: usize, theta: f64, theta2: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x: Vec<f64> = (0..n * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let t = (0..n)
            .map(|i| {
                let (a, b) = (x[i * d], x[i * d + 1]);
                let xi: f64 = StandardNormal.sample(&mut rng);
                theta * (a * a - 1.0) - theta2 * (b * b - 1.0) + 0.3 * xi
            })
            .collect();
        (x, t)
    }

    #[test]
    fn dense_and_iterative_agree_on_planted_spike() {
        let (n, d) = (3000, 150);
        let (x, t) = planted(n, d, 1.0, 0.7, 1);
        for order in [Order::Largest, Order::Smallest, Order::Abs] {
            for k in [1, 2] {
                let a = spectral_estimate(
                    Rows::Memory(&x),
                    d,
                    &t,
                    k,
                    order,
                    Shift::Mean,
                    Method::Dense,
                )
                .unwrap();
                let b = spectral_estimate(
                    Rows::Memory(&x),
                    d,
                    &t,
                    k,
                    order,
                    Shift::Mean,
                    Method::Iterative,
                )
                .unwrap();
                assert!(b.converged, "{order:?} k={k}: not converged");
                assert_eq!(a.indices, b.indices, "{order:?} k={k}");
                for j in 0..k {
                    assert!(
                        (a.eigenvalues[j] - b.eigenvalues[j]).abs() < 1e-8,
                        "{order:?} k={k}: {:?} vs {:?}",
                        a.eigenvalues,
                        b.eigenvalues
                    );
                    let dot: f64 = a
                        .eigenvector(j)
                        .iter()
                        .zip(b.eigenvector(j))
                        .map(|(p, q)| p * q)
                        .sum();
                    assert!(
                        (dot.abs() - 1.0).abs() < 1e-6,
                        "{order:?} k={k} j={j}: {dot}"
                    );
                }
                let (ea, eb) = (a.bulk_edge.unwrap(), b.bulk_edge.unwrap());
                assert!((ea - eb).abs() < 1e-6, "{order:?} k={k}: edge {ea} vs {eb}");
                assert!(a.max_residual < 1e-8 && b.max_residual < 1e-6);
            }
        }
        // The spike: e1 at the top (≈ +2), e2 at the bottom (≈ −1.4).
        let top = spectral_estimate(
            Rows::Memory(&x),
            d,
            &t,
            1,
            Order::Largest,
            Shift::Mean,
            Method::Dense,
        )
        .unwrap();
        assert!(
            top.eigenvector(0)[0].abs() > 0.9,
            "{:?}",
            &top.eigenvector(0)[..3]
        );
        assert_eq!(top.indices, vec![d - 1]);
        let bottom = spectral_estimate(
            Rows::Memory(&x),
            d,
            &t,
            1,
            Order::Smallest,
            Shift::Mean,
            Method::Dense,
        )
        .unwrap();
        assert!(bottom.eigenvector(0)[1].abs() > 0.9);
        assert_eq!(bottom.indices, vec![0]);
        let abs = spectral_estimate(
            Rows::Memory(&x),
            d,
            &t,
            2,
            Order::Abs,
            Shift::Mean,
            Method::Dense,
        )
        .unwrap();
        assert_eq!(abs.indices, vec![d - 1, 0]);
        assert!(abs.eigenvalues[0] > 0.0 && abs.eigenvalues[1] < 0.0);
    }

    /// `on_pass` hears of every pass over the rows, counted 1, 2, …: one per block product
    /// of the solver plus one (the residuals); dense solves only the residual pass.
    #[test]
    fn passes_are_reported() {
        let (n, d) = (3000, 120);
        let (x, t) = planted(n, d, 1.0, 0.0, 21);
        for (method, order) in [
            (Method::Iterative, Order::Largest),
            (Method::Dense, Order::Abs),
        ] {
            let seen = std::sync::Mutex::new(Vec::new());
            let est = spectral_estimate_observed(
                Rows::Memory(&x),
                d,
                &t,
                2,
                order,
                Shift::Mean,
                method,
                &|p| seen.lock().unwrap().push(p),
            )
            .unwrap();
            let seen = seen.into_inner().unwrap();
            assert_eq!(seen, (1..=seen.len()).collect::<Vec<_>>(), "{method:?}");
            let want = match method {
                Method::Iterative => est.iterations + 1,
                _ => 1,
            };
            assert_eq!(seen.len(), want, "{method:?}");
        }
    }

    /// Rows regenerated from the streams give exactly the in-memory estimate (both solvers;
    /// d = 30 is below the block basis, so `Iterative` runs dense there), over a row count
    /// that is not a multiple of the generator block.
    #[test]
    fn streamed_rows_equal_in_memory_rows() {
        // d = 1100: pieces of 64 rows (v1 hands out a generated block piece by piece).
        let cases = [(5000, 30, 11), (3000, 80, 12), (2200, 1100, 13)];
        for ((n, d, seed), generator) in cases
            .into_iter()
            .flat_map(|c| [(c, Generator::V1), (c, Generator::V2)])
        {
            assert!(d < 1000 || product_piece(d) == 64);
            let link = mim_data::Link::parse("h2(z1)+h2(z2)").unwrap();
            let target = Target::new(d, 2, link, 0.0, true, 3)
                .unwrap()
                .with_generator(generator);
            let data = target.sample(Split::Stage1, n, seed);
            let t: Vec<f64> = data.y.iter().map(|y| y.clamp(-1.0, 1.0)).collect();
            let stream = Rows::Stream {
                target: &target,
                split: Split::Stage1,
                seed,
            };
            for method in [Method::Dense, Method::Iterative] {
                for shift in [Shift::None, Shift::Mean] {
                    let est = |rows| spectral_estimate(rows, d, &t, 2, Order::Abs, shift, method);
                    let (a, b) = (est(Rows::Memory(&data.x)), est(stream));
                    let a = a.unwrap();
                    let ran = if method == Method::Iterative && d > 64 {
                        Method::Iterative
                    } else {
                        Method::Dense
                    };
                    assert_eq!(a.method, ran, "d={d}");
                    assert_eq!(a, b.unwrap(), "d={d} {method:?} {shift:?} {generator}");
                }
            }
        }
    }

    /// Two equal planted spikes (T = θ(x_1² − 1) + θ(x_2² − 1) + noise): the top two
    /// eigenvalues are only O(1/√n) apart. The block solver still gives the dense pairs, the
    /// span of near-degenerate ones, and the other ends (`Smallest`, `Abs` with both
    /// ends), for both shifts.
    #[test]
    fn iterative_matches_dense_near_degenerate_and_every_end() {
        let (n, d) = (4000, 120);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let x: Vec<f64> = (0..n * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let t: Vec<f64> = (0..n)
            .map(|i| {
                let (a, b, c) = (x[i * d], x[i * d + 1], x[i * d + 2]);
                let xi: f64 = StandardNormal.sample(&mut rng);
                (a * a - 1.0) + (b * b - 1.0) - 0.8 * (c * c - 1.0) + 0.3 * xi + 0.5
            })
            .collect();
        for shift in [Shift::None, Shift::Mean] {
            for (order, k) in [
                (Order::Largest, 2),
                (Order::Largest, 3),
                (Order::Smallest, 2),
                (Order::Abs, 3),
                (Order::Abs, 4),
            ] {
                let est = |method| {
                    spectral_estimate(Rows::Memory(&x), d, &t, k, order, shift, method).unwrap()
                };
                let (a, b) = (est(Method::Dense), est(Method::Iterative));
                let tag = format!("{shift:?} {order:?} k={k}");
                assert_eq!(b.method, Method::Iterative, "{tag}");
                assert!(b.converged && b.iterations > 0, "{tag}");
                assert_eq!(a.indices, b.indices, "{tag}");
                for j in 0..k {
                    assert!(
                        (a.eigenvalues[j] - b.eigenvalues[j]).abs() < 1e-8,
                        "{tag}: {:?} vs {:?}",
                        a.eigenvalues,
                        b.eigenvalues
                    );
                    // Each iterative vector lies in the dense span.
                    let proj: f64 = (0..k)
                        .map(|l| {
                            let dot: f64 = a
                                .eigenvector(l)
                                .iter()
                                .zip(b.eigenvector(j))
                                .map(|(p, q)| p * q)
                                .sum();
                            dot * dot
                        })
                        .sum();
                    assert!((proj - 1.0).abs() < 1e-9, "{tag} j={j}: {proj}");
                }
                let (ea, eb) = (a.bulk_edge.unwrap(), b.bulk_edge.unwrap());
                assert!((ea - eb).abs() < 1e-7, "{tag}: edge {ea} vs {eb}");
                assert!(b.max_residual < 1e-6, "{tag}: {}", b.max_residual);
            }
        }
        // The planted pair is near-degenerate at the top.
        let top = spectral_estimate(
            Rows::Memory(&x),
            d,
            &t,
            2,
            Order::Largest,
            Shift::Mean,
            Method::Dense,
        )
        .unwrap();
        let gap = top.eigenvalues[0] - top.eigenvalues[1];
        assert!(gap < 0.2 * top.eigenvalues[0], "{:?}", top.eigenvalues);
    }

    #[test]
    fn operator_matches_dense_matrix() {
        let (n, d) = (700, 20);
        let (x, t) = planted(n, d, 1.0, 0.0, 2);
        let mean_t = t.iter().sum::<f64>() / n as f64;
        let op = Operator {
            rows: Rows::Memory(&x),
            t: &t,
            n,
            d,
            mean_t,
            kind: Shift::Mean,
            shift: mean_t,
            passes: AtomicUsize::new(0),
            on_pass: &|_| {},
        };
        let s = op.dense();
        let v = Mat::<f64>::from_fn(d, 3, |i, j| ((i * 7 + j * 3) % 5) as f64 - 2.0);
        let a = op.apply(v.as_ref());
        let b = &s * &v;
        for j in 0..3 {
            for i in 0..d {
                assert!((a[(i, j)] - b[(i, j)]).abs() < 1e-10);
            }
        }
        // Direct definition for one entry.
        let direct: f64 = (0..n)
            .map(|r| t[r] * (x[r * d + 2] * x[r * d + 5]))
            .sum::<f64>()
            / n as f64;
        assert!((s[(2, 5)] - direct).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = vec![0.0; 6];
        let t = vec![1.0; 3];
        let est = |t: &[f64], k: usize| {
            spectral_estimate(
                Rows::Memory(&x),
                2,
                t,
                k,
                Order::Abs,
                Shift::None,
                Method::Dense,
            )
        };
        assert!(est(&t, 3).is_err());
        assert!(est(&t[..2], 1).is_err());
        assert!(est(&[f64::NAN; 3], 1).is_err());
        assert!(est(&t, 1).is_ok());
    }

    /// The shift moves every eigenvalue by mean(T) and keeps the eigenvectors, so `Largest`
    /// takes the same vector from both matrices; with mean(T) = 3, `Abs` does not. Planted:
    /// T = 3 + 0.5·(x_1² − 1) − (x_2² − 1) + noise, so (1/n) Σ T x xᵀ ≈ 3I + e1e1ᵀ − 2e2e2ᵀ:
    /// eigenvalues ≈ 4 (e1), 3 (bulk), 1 (e2) unshifted, ≈ 1, 0, −2 shifted. Unshifted `Abs`
    /// (what power iteration amplifies) takes e1, shifted `Abs` takes e2.
    #[test]
    fn shift_decides_which_end_abs_takes() {
        let (n, d) = (4000, 20);
        let (x, mut t) = planted(n, d, 0.5, 1.0, 4);
        t.iter_mut().for_each(|v| *v += 3.0);
        let est = |order, shift, method| {
            spectral_estimate(Rows::Memory(&x), d, &t, 1, order, shift, method).unwrap()
        };
        let unshifted = est(Order::Abs, Shift::None, Method::Dense);
        let shifted = est(Order::Abs, Shift::Mean, Method::Dense);
        assert_eq!((unshifted.shift, shifted.shift), (Shift::None, Shift::Mean));
        assert!(unshifted.eigenvector(0)[0].abs() > 0.95, "{unshifted:?}");
        assert!(shifted.eigenvector(0)[1].abs() > 0.95, "{shifted:?}");
        assert!(
            (unshifted.eigenvalues[0] - 4.0).abs() < 0.3,
            "{unshifted:?}"
        );
        assert!((shifted.eigenvalues[0] + 2.0).abs() < 0.3, "{shifted:?}");
        assert!((unshifted.mean_t - 3.0).abs() < 0.1 && unshifted.mean_t == shifted.mean_t);
        assert!(unshifted.max_residual < 1e-8 && shifted.max_residual < 1e-8);
        // Largest: the same vector, eigenvalues mean(T) apart.
        let (a, b) = (
            est(Order::Largest, Shift::None, Method::Dense),
            est(Order::Largest, Shift::Mean, Method::Dense),
        );
        let dot: f64 = a
            .eigenvector(0)
            .iter()
            .zip(b.eigenvector(0))
            .map(|(p, q)| p * q)
            .sum();
        assert!((dot - 1.0).abs() < 1e-9, "{dot}");
        assert!((a.eigenvalues[0] - b.eigenvalues[0] - a.mean_t).abs() < 1e-9);
        // The matrix-free solver applies the same unshifted operator.
        let it = est(Order::Abs, Shift::None, Method::Iterative);
        assert!(it.converged && (it.eigenvalues[0] - unshifted.eigenvalues[0]).abs() < 1e-8);
        assert_eq!(it.indices, unshifted.indices);
    }
}
