//! A fused CPU kernel for the stage-1 gradient, on host storage (paper §3 closed form):
//!
//!   Z = X Wᵀ + 1bᵀ,  f = σ(Z) a + c,  R = ℓ'(f − y),  S = σ'(Z) ⊙ R 1ᵀ ⊙ 1 aᵀ,  G = Sᵀ X / n.
//!
//! Rows are processed in blocks of [`block_rows`]: one GEMM tile Z_b = X_b Wᵀ (column-major),
//! then σ and σ' in a single pass over the tile while it is in cache (σ and σ' share one
//! exponential), ℓ' per row, then G += S_bᵀ X_b. The n×m matrix never exists in memory. Blocks
//! are split into one contiguous range per thread, each with its own G accumulator, summed in a
//! fixed order: results are bit-for-bit repeatable for a given thread count. For streamed data
//! the accumulators live across chunks ([`GradientSums`]), so a chunk costs only its GEMMs and
//! its pass over the tile.
//!
//! **Paired units.** At symmetric initialisation unit j + m/2 repeats unit j with the opposite
//! readout (w_{j+m/2} = w_j, b_{j+m/2} = b_j, a_{j+m/2} = −a_j; [`units_are_paired`]), so
//! f ≡ c and the gradient rows of the second half are the first half's negated:
//! G_{j+m/2} = −G_j. The kernel then runs both GEMMs over the first m/2 units only and mirrors
//! the result: the first stage-1 step on the fused path (in memory or streamed) costs half the
//! flops. Negation is exact in floating point, so G is the full computation's to the bit except
//! that f is exactly c, where summing a_j σ and −a_j σ in unit order leaves rounding residue.
//!
//! **GEMMs in slabs.** Each thread's GEMMs are single-threaded faer calls, which faer's x86
//! backend cuts into 128-row chunks (on a 512 KiB L2) of five 24-row tiles and one 8-row tile
//! that runs at about half speed; `gemm_slabs` hands it slabs that are whole tiles instead.

use crate::loss::Loss;
use burn::tensor::{DType, Tensor, TensorData};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use mim_model::logcosh::{logcosh_pair_f32, logcosh_pair_simd};
use mim_model::{Activation, TwoLayer};
use rayon::prelude::*;

/// Rows per GEMM tile: 256 for d < 512, 1024 above (measured by `mim bench` on 2 cores:
/// smaller tiles keep the n×m tile in cache at small d, larger ones feed the GEMM at large d).
pub fn block_rows(d: usize) -> usize {
    if d < 512 {
        256
    } else {
        1024
    }
}

/// Destination rows per faer call in [`gemm_slabs`]: 384 bytes (96 f32, 48 f64) on x86-64,
/// a multiple of every microkernel height there (f32: 24 for AVX2, 48 for AVX-512; f64: 12,
/// 24) and within the row chunk faer's x86 backend blocks a single-threaded call into (half its
/// L2 share: 128 f32 or 64 f64 rows on a 512 KiB L2, more on larger ones). Left whole, a
/// 128-row chunk is five 24-row tiles and an 8-row tile whose 4 accumulators cannot cover the
/// FMA latency, so ~6 % of the flops ran at half speed (`perf` of a d = 16 384 run: 6.4 % of
/// cycles in that tile). Measured on 2 cores (AMD EPYC Zen 3, AVX2) at the kernel's shapes,
/// median of 15 paired runs: Z = X_b Wᵀ +8 % (d = 1000) and +2–12 % (d = 16 384),
/// G += Sᵀ X_b +5 % and +8–13 %. Other targets take the call whole.
const SLAB_BYTES: usize = if cfg!(target_arch = "x86_64") {
    384
} else {
    usize::MAX
};

/// dst = lhs·rhs (`Accum::Replace`) or dst += lhs·rhs (`Accum::Add`), single-threaded, as
/// faer calls of at most [`SLAB_BYTES`] destination rows in the orientation faer computes in
/// (it transposes a row-major destination: then the slabs are column slabs). Each entry is the
/// same sum over k in the same order as one call's: the result is bit-identical.
fn gemm_slabs<T: Real>(
    mut dst: MatMut<'_, T>,
    accum: Accum,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
) {
    if dst.row_stride().unsigned_abs() > dst.col_stride().unsigned_abs() {
        // Row-major: faer computes dstᵀ = rhsᵀ lhsᵀ, whose rows are dst's columns.
        return gemm_slabs(dst.transpose_mut(), accum, rhs.transpose(), lhs.transpose());
    }
    let slab = (SLAB_BYTES / std::mem::size_of::<T>()).max(1);
    let rows = dst.nrows();
    let mut r = 0;
    while r < rows {
        let h = (rows - r).min(slab);
        let part = dst.as_mut().subrows_mut(r, h);
        matmul(part, accum, lhs.subrows(r, h), rhs, T::of(1.0), Par::Seq);
        r += h;
    }
}

/// A float type the kernel runs in (f32 or f64).
pub trait Real: faer::traits::RealField + Copy + Send + Sync + 'static {
    /// From f64.
    fn of(v: f64) -> Self;
    /// To f64.
    fn to(self) -> f64;
    /// (σ(u), σ'(u)) for σ = log cosh, evaluated together (one exponential).
    fn logcosh_pair(u: Self) -> (Self, Self);
    /// `tile_pass` with σ = log cosh; f32 overrides it with a SIMD version (`LogcoshTile`).
    #[inline(always)]
    fn tile_pass_logcosh(z: &mut [Self], b: &[Self], a: &[Self], f: &mut [Self]) {
        tile_pass(z, b, a, f, Self::logcosh_pair)
    }
    /// z ← log cosh(z + b) on rows of `b.len()` values, on all threads: each value
    /// `logcosh_pair(z + b).0`; f32 overrides it with the SIMD pass
    /// ([`mim_model::logcosh::logcosh_in_place`]), bit-identical.
    fn logcosh_rows(z: &mut [Self], b: &[Self]) {
        let m = b.len().max(1);
        z.par_chunks_mut(m).for_each(|row| {
            for (v, &bj) in row.iter_mut().zip(b) {
                *v = Self::logcosh_pair(*v + bj).0;
            }
        });
    }
    /// (σ(u), σ'(u)) for any activation, through the scalar f64 forms.
    #[inline(always)]
    fn pair(act: Activation, u: Self) -> (Self, Self) {
        let u = u.to();
        (Self::of(act.scalar(u)), Self::of(act.scalar_derivative(u)))
    }
}

impl Real for f32 {
    #[inline(always)]
    fn of(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to(self) -> f64 {
        self as f64
    }
    /// Through [`pulp::Arch`]: the widest instruction set the CPU has, detected at run time
    /// (x86-64: AVX-512 `V4`, else AVX2+FMA `V3`; aarch64: NEON; otherwise scalar). Every one of
    /// them gives the same bits as the scalar `tile_pass`, so the choice never shows in results.
    fn tile_pass_logcosh(z: &mut [f32], b: &[f32], a: &[f32], f: &mut [f32]) {
        pulp::Arch::new().dispatch(LogcoshTile { z, b, a, f })
    }
    #[inline(always)]
    fn logcosh_pair(u: f32) -> (f32, f32) {
        logcosh_pair_f32(u)
    }
    fn logcosh_rows(z: &mut [f32], b: &[f32]) {
        mim_model::logcosh::logcosh_in_place(z, Some(b));
    }
}

impl Real for f64 {
    #[inline(always)]
    fn of(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to(self) -> f64 {
        self
    }
    #[inline(always)]
    fn logcosh_pair(u: f64) -> (f64, f64) {
        let au = u.abs();
        let t = (-2.0 * au).exp();
        (
            au + t.ln_1p() - std::f64::consts::LN_2,
            ((1.0 - t) / (1.0 + t)).copysign(u),
        )
    }
}

/// The frozen parts of the network and the data, on the host.
#[derive(Clone, Copy)]
pub struct FusedProblem<'a, T> {
    /// X, n×d row-major.
    pub x: &'a [T],
    /// Labels, n.
    pub y: &'a [T],
    /// n.
    pub n: usize,
    /// d.
    pub d: usize,
    /// Biases b, m.
    pub b: &'a [T],
    /// Second layer a, m.
    pub a: &'a [T],
    /// Readout offset c.
    pub c: T,
    /// σ.
    pub activation: Activation,
    /// ℓ.
    pub loss: Loss,
}

/// One column (neuron j) of a column-major tile, over its rows i:
/// f_i += a_j σ(z_ij + b_j) and z_ij ← a_j σ'(z_ij + b_j). Each f_i is summed over j in order
/// 0..m, the same for every path, so the result does not depend on how rows are vectorised.
#[inline(always)]
fn col_pass<T: Real>(zcol: &mut [T], bj: T, aj: T, f: &mut [T], pair: impl Fn(T) -> (T, T)) {
    for (zv, fi) in zcol.iter_mut().zip(f.iter_mut()) {
        let (s, ds) = pair(*zv + bj);
        *fi += aj * s;
        *zv = ds * aj;
    }
}

/// [`col_pass`] for every column j of a column-major tile `z` (rows = `f.len()`, m = `b.len()`).
#[inline(always)]
fn tile_pass<T: Real>(z: &mut [T], b: &[T], a: &[T], f: &mut [T], pair: impl Fn(T) -> (T, T)) {
    if f.is_empty() {
        return;
    }
    for ((zcol, &bj), &aj) in z.chunks_exact_mut(f.len()).zip(b).zip(a) {
        col_pass(zcol, bj, aj, f, &pair);
    }
}

/// Work of one thread: rows `rows`, accumulating into `g` (m×d); returns Σ ℓ(f_i − y_i).
/// `tile` is the column pass over a whole tile (σ chosen once, outside the loops).
///
/// Per block: Z_b = X_b Wᵀ into a column-major tile (so the backward GEMM reads Sᵀ with unit
/// stride: on 2 cores at d = m = 1000 the two GEMMs alone ran at 0.95 of SGEMM, against 0.84
/// with a row-major tile), the column pass, ℓ' per row, then G += S_bᵀ X_b with the ℓ' row
/// scaling applied to whichever of Z_b (block × m) and X_b (block × d) is smaller. With
/// `paired`, `p` and `w` hold the first half of paired units and f is c (the halves cancel).
fn range_body<T: Real>(
    p: &FusedProblem<'_, T>,
    w: &[T],
    m: usize,
    rows: std::ops::Range<usize>,
    g: &mut [T],
    paired: bool,
    tile: impl Fn(&mut [T], &[T], &[T], &mut [T]),
) -> f64 {
    let d = p.d;
    let wt = MatRef::from_row_major_slice(w, m, d).transpose();
    let block = block_rows(d);
    let scale_x = d < m;
    // Scratch reused for every block: Z_b then S_b (block × m, column-major); f_i then
    // ℓ'(f_i − y_i); diag(ℓ') X_b (block × d, row-major) when d < m.
    let mut z = vec![T::of(0.0); block * m];
    let mut f = vec![T::of(0.0); block];
    let mut xs = vec![T::of(0.0); if scale_x { block * d } else { 0 }];
    let mut loss_sum = 0.0;
    let mut start = rows.start;
    while start < rows.end {
        let bsz = (rows.end - start).min(block);
        let xrows = &p.x[start * d..(start + bsz) * d];
        let xb = MatRef::from_row_major_slice(xrows, bsz, d);
        let zb = &mut z[..bsz * m];
        gemm_slabs(
            MatMut::from_column_major_slice_mut(zb, bsz, m),
            Accum::Replace,
            xb,
            wt,
        );
        let f = &mut f[..bsz];
        f.fill(p.c);
        tile(zb, p.b, p.a, f);
        if paired {
            // a_j σ(z_j) + (−a_j) σ(z_j) = 0 exactly: f is the offset alone.
            f.fill(p.c);
        }
        for (fi, &yi) in f.iter_mut().zip(&p.y[start..start + bsz]) {
            let resid = (*fi - yi).to();
            loss_sum += p.loss.scalar_value(resid);
            *fi = T::of(p.loss.scalar_derivative(resid, 0.0));
        }
        let rhs = if scale_x {
            let xs = &mut xs[..bsz * d];
            for ((xs_row, x_row), &dl) in xs
                .chunks_exact_mut(d)
                .zip(xrows.chunks_exact(d))
                .zip(f.iter())
            {
                xs_row.iter_mut().zip(x_row).for_each(|(o, &v)| *o = v * dl);
            }
            MatRef::from_row_major_slice(&*xs, bsz, d)
        } else {
            for zcol in zb.chunks_exact_mut(bsz) {
                zcol.iter_mut()
                    .zip(f.iter())
                    .for_each(|(zv, &dl)| *zv *= dl);
            }
            xb
        };
        let sb = MatRef::from_column_major_slice(zb, bsz, m);
        gemm_slabs(
            MatMut::from_row_major_slice_mut(g, m, d),
            Accum::Add,
            sb.transpose(),
            rhs,
        );
        start += bsz;
    }
    loss_sum
}

fn range_gradient<T: Real>(
    p: &FusedProblem<'_, T>,
    w: &[T],
    m: usize,
    rows: std::ops::Range<usize>,
    g: &mut [T],
    paired: bool,
) -> f64 {
    match p.activation {
        Activation::Logcosh => range_body(p, w, m, rows, g, paired, T::tile_pass_logcosh),
        act => range_body(p, w, m, rows, g, paired, |z, b, a, f| {
            tile_pass(z, b, a, f, |u| T::pair(act, u))
        }),
    }
}

/// Whether units j and j + m/2 are mirror pairs for every j < m/2 (m even, m > 0):
/// w_{j+m/2} = w_j (m×d row-major `w`), b_{j+m/2} = b_j and a_{j+m/2} = −a_j, compared exactly.
/// This is what symmetric initialisation draws (f ≡ c); one GD step breaks it.
pub fn units_are_paired<T: Real>(w: &[T], b: &[T], a: &[T]) -> bool {
    let m = b.len();
    if m == 0 || m % 2 == 1 || a.len() != m || !w.len().is_multiple_of(m) {
        return false;
    }
    let h = m / 2;
    let d = w.len() / m;
    let (w0, w1) = w.split_at(h * d);
    b[..h] == b[h..] && a[..h].iter().zip(&a[h..]).all(|(&x, &y)| y == -x) && w0 == w1
}

/// One vector of rows of [`col_pass`] with σ = log cosh: returns (new z, new f).
#[inline(always)]
fn logcosh_step<S: pulp::Simd>(
    simd: S,
    z: S::f32s,
    f: S::f32s,
    bj: S::f32s,
    aj: S::f32s,
) -> (S::f32s, S::f32s) {
    let (s, ds) = logcosh_pair_simd(simd, simd.add_f32s(z, bj));
    (
        simd.mul_f32s(ds, aj),
        simd.add_f32s(f, simd.mul_f32s(aj, s)),
    )
}

/// The log cosh [`tile_pass`] in f32 as a [`pulp::WithSimd`] operation: run it with
/// `pulp::Arch::new().dispatch(..)` (the best instruction set of this CPU) or with any one
/// `pulp::Simd` through `Simd::vectorize` (the tests pin each one). Rows are done a full vector
/// at a time, the last partial vector with masked loads and stores, lane for lane the same
/// arithmetic as the scalar [`col_pass`] with [`logcosh_pair_f32`], so all
/// instruction sets give bit-identical results.
struct LogcoshTile<'a> {
    /// Z_b, column-major, `f.len()` rows × `b.len()` columns; overwritten with S_b.
    z: &'a mut [f32],
    /// b (m).
    b: &'a [f32],
    /// a (m).
    a: &'a [f32],
    /// f (rows), accumulated into.
    f: &'a mut [f32],
}

impl pulp::WithSimd for LogcoshTile<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Self { z, b, a, f } = self;
        let rows = f.len();
        if rows == 0 {
            return;
        }
        let (fh, ft) = S::as_mut_simd_f32s(f);
        for ((zcol, &bj), &aj) in z.chunks_exact_mut(rows).zip(b).zip(a) {
            let (bv, av) = (simd.splat_f32s(bj), simd.splat_f32s(aj));
            let (zh, zt) = S::as_mut_simd_f32s(zcol);
            for (zv, fv) in zh.iter_mut().zip(fh.iter_mut()) {
                (*zv, *fv) = logcosh_step(simd, *zv, *fv, bv, av);
            }
            if !zt.is_empty() {
                let zv = simd.partial_load_f32s(zt);
                let fv = simd.partial_load_f32s(ft);
                let (zv, fv) = logcosh_step(simd, zv, fv, bv, av);
                simd.partial_store_f32s(zt, zv);
                simd.partial_store_f32s(ft, fv);
            }
        }
    }
}

/// Sums of the per-sample gradients Σ_i ∇_W ℓ_i (m×d) and losses Σ_i ℓ_i over any number of
/// row chunks (the streamed full batch), in one accumulator per thread that lives across
/// chunks: a chunk costs its two GEMMs and tile pass only, no allocation or reduction.
/// [`GradientSums::mean`] adds the accumulators in a fixed order and divides by n, so for a
/// given thread count and chunking the result is bit-for-bit repeatable. Every chunk must be
/// added at the same weights (the sums are one gradient); whether the units are paired
/// ([`units_are_paired`]: then only the first m/2 are computed) is decided at the first chunk.
/// `mean` leaves the sums empty with their memory kept, so one `GradientSums` serves every step
/// of a stage.
pub struct GradientSums<T> {
    m: usize,
    d: usize,
    parts: Vec<Vec<T>>,
    loss: Vec<f64>,
    n: usize,
    /// Whether paired units may take the half computation ([`GradientSums::unpaired`]: no).
    pairing: bool,
    /// Paired units, decided at the first [`GradientSums::add`] of a gradient.
    paired: Option<bool>,
}

impl<T: Real> GradientSums<T> {
    /// Empty sums for an m×d first layer.
    pub fn new(m: usize, d: usize) -> Self {
        Self {
            m,
            d,
            parts: Vec::new(),
            loss: Vec::new(),
            n: 0,
            pairing: true,
            paired: None,
        }
    }

    /// Empty sums that always compute every unit, paired or not (the reference the paired
    /// path is tested against).
    pub fn unpaired(m: usize, d: usize) -> Self {
        Self {
            pairing: false,
            ..Self::new(m, d)
        }
    }

    /// Units computed: m/2 when paired, else m.
    fn units(&self) -> usize {
        if self.paired == Some(true) {
            self.m / 2
        } else {
            self.m
        }
    }

    /// Adds the rows of `p` at weights `w` (m×d): blocks of rows split into one contiguous
    /// range per thread, each accumulated into that thread's sums.
    pub fn add(&mut self, p: &FusedProblem<'_, T>, w: &[T]) {
        let (n, d) = (p.n, p.d);
        if self.paired.is_none() {
            self.paired = Some(self.pairing && units_are_paired(w, p.b, p.a));
        }
        let paired = self.paired == Some(true);
        // Paired: the first half of the units stands for all of them.
        let m = self.units();
        let (w, p) = (
            &w[..m * d],
            &FusedProblem {
                b: &p.b[..m],
                a: &p.a[..m],
                ..*p
            },
        );
        let block = block_rows(d);
        let blocks = n.div_ceil(block);
        let parts = rayon::current_num_threads().clamp(1, blocks.max(1));
        let full = self.m * d;
        while self.parts.len() < parts {
            self.parts.push(Vec::new());
            self.loss.push(0.0);
        }
        let per = blocks.div_ceil(parts);
        self.parts[..parts]
            .par_iter_mut()
            .zip(self.loss[..parts].par_iter_mut())
            .enumerate()
            .for_each(|(k, (g, loss))| {
                if g.is_empty() {
                    // Zeros written, not `vec![0; ..]`: calloc'd pages that the GEMM first
                    // reads map the shared zero page, and its first store then takes a
                    // copy-on-write fault with a TLB flush of every core, per 4 KiB page
                    // (≈ 3 % of a d = 16 384 step in `perf`). Written by the thread that uses it.
                    g.resize(full, T::of(0.0));
                }
                let rows = (k * per * block).min(n)..((k + 1) * per * block).min(n);
                *loss += range_gradient(p, w, m, rows, &mut g[..m * d], paired);
            });
        self.n += n;
    }

    /// (1/n) Σ_i ∇_W ℓ_i and (1/n) Σ_i ℓ_i over all rows added (zeros when none were). The
    /// sums are then empty again, their accumulators kept (zeroed) for the next gradient.
    pub fn mean(&mut self) -> (Vec<T>, f64) {
        let n = self.n.max(1) as f64;
        let len = self.units() * self.d;
        let inv_n = T::of(1.0 / n);
        let parts = &self.parts;
        // Element by element, in part order: the same bits as serial sums.
        let mut g: Vec<T> = if parts.is_empty() {
            vec![T::of(0.0); self.m * self.d]
        } else {
            (0..len)
                .into_par_iter()
                .map(|i| {
                    let mut s = parts[0][i];
                    for part in &parts[1..] {
                        s += part[i];
                    }
                    s * inv_n
                })
                .collect()
        };
        if g.len() < self.m * self.d {
            // Paired: G_{j+m/2} = −G_j (exact).
            let mirrored: Vec<T> = g.par_iter().map(|&v| -v).collect();
            g.extend_from_slice(&mirrored);
        }
        let loss = self.loss.iter().sum::<f64>() / n;
        self.parts
            .par_iter_mut()
            .filter(|part| !part.is_empty())
            .for_each(|part| part[..len].fill(T::of(0.0)));
        self.loss.fill(0.0);
        self.n = 0;
        self.paired = None;
        (g, loss)
    }
}

/// Host copies of X, y, b, a, c and the kernel's [`GradientSums`], in the tensors' precision:
/// ∇_W L̂ (m×d) and L̂ at any W, step after step.
pub enum HostStage1 {
    /// f32 tensors.
    F32(HostData<f32>),
    /// f64 tensors.
    F64(HostData<f64>),
}

/// Host data of one precision.
pub struct HostData<T> {
    x: Vec<T>,
    y: Vec<T>,
    b: Vec<T>,
    a: Vec<T>,
    c: T,
    n: usize,
    d: usize,
    activation: Activation,
    loss: Loss,
    /// The accumulators, kept from step to step.
    sums: GradientSums<T>,
}

impl<T: Real + burn::tensor::Element> HostData<T> {
    fn new(x: &Tensor<2>, y: &Tensor<1>, model: &TwoLayer, loss: Loss) -> Self {
        let [n, d] = x.dims();
        Self {
            sums: GradientSums::new(model.width(), d),
            x: mim_model::to_host_as(x),
            y: mim_model::to_host_as(y),
            b: mim_model::to_host_as(&model.b.val()),
            a: mim_model::to_host_as(&model.a.val()),
            c: mim_model::to_host_as::<T, 1>(&model.c.val())[0],
            n,
            d,
            activation: model.activation,
            loss,
        }
    }

    fn gradient(&mut self, w: &Tensor<2>) -> (Tensor<2>, f64) {
        let p = FusedProblem {
            x: &self.x,
            y: &self.y,
            n: self.n,
            d: self.d,
            b: &self.b,
            a: &self.a,
            c: self.c,
            activation: self.activation,
            loss: self.loss,
        };
        self.sums.add(&p, &mim_model::to_host_as::<T, 2>(w));
        let (g, l) = self.sums.mean();
        let m = g.len() / self.d;
        let g = Tensor::from_data(TensorData::new(g, [m, self.d]), (&w.device(), w.dtype()));
        (g, l)
    }
}

impl HostStage1 {
    /// Copies D1 and the frozen parameters to the host once per stage 1.
    pub fn new(x: &Tensor<2>, y: &Tensor<1>, model: &TwoLayer, loss: Loss) -> Self {
        match x.dtype() {
            DType::F64 => HostStage1::F64(HostData::new(x, y, model, loss)),
            _ => HostStage1::F32(HostData::new(x, y, model, loss)),
        }
    }

    /// (∇_W L̂ as a tensor on W's device, L̂) at first-layer weights `w`.
    pub fn gradient(&mut self, w: &Tensor<2>) -> (Tensor<2>, f64) {
        match self {
            HostStage1::F32(h) => h.gradient(w),
            HostStage1::F64(h) => h.gradient(w),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mim_data::simd::{arch_name, has_x86_v3, max_ulps, on_every_simd};

    /// The kernel's two GEMMs (Z = X Wᵀ into a column-major Z; G += Sᵀ X into a row-major G)
    /// in slabs equal one faer call each, bit for bit, with partial slabs at both ends of the
    /// sizes tried (slab = 96 f32 / 48 f64 rows on x86-64).
    #[test]
    fn gemm_slabs_equal_one_call() {
        fn check<T: Real>() {
            let fill = |len: usize, seed: usize| -> Vec<T> {
                (0..len)
                    .map(|i| T::of(((i * 7919 + seed * 104_729) % 2003) as f64 / 1001.0 - 1.0))
                    .collect()
            };
            let same_bits = |p: &[T], q: &[T]| {
                p.len() == q.len()
                    && p.iter()
                        .zip(q)
                        .all(|(a, b)| a.to().to_bits() == b.to().to_bits())
            };
            for (rows, d, m) in [(250, 203, 130), (1, 97, 5), (389, 50, 300)] {
                let (x, w) = (fill(rows * d, 1), fill(m * d, 2));
                let xb = MatRef::from_row_major_slice(&x, rows, d);
                let wt = MatRef::from_row_major_slice(&w, m, d).transpose();
                let (mut z1, mut z2) = (fill(rows * m, 3), fill(rows * m, 4));
                let one = T::of(1.0);
                let zm1 = MatMut::from_column_major_slice_mut(&mut z1, rows, m);
                matmul(zm1, Accum::Replace, xb, wt, one, Par::Seq);
                let zm2 = MatMut::from_column_major_slice_mut(&mut z2, rows, m);
                gemm_slabs(zm2, Accum::Replace, xb, wt);
                assert!(same_bits(&z1, &z2), "Z = X Wᵀ in slabs, {rows}×{d}×{m}");
                let st = MatRef::from_column_major_slice(&z1, rows, m).transpose();
                let (mut g1, mut g2) = (fill(m * d, 5), fill(m * d, 5));
                let gm1 = MatMut::from_row_major_slice_mut(&mut g1, m, d);
                matmul(gm1, Accum::Add, st, xb, one, Par::Seq);
                let gm2 = MatMut::from_row_major_slice_mut(&mut g2, m, d);
                gemm_slabs(gm2, Accum::Add, st, xb);
                assert!(same_bits(&g1, &g2), "G += Sᵀ X in slabs, {rows}×{d}×{m}");
            }
        }
        check::<f32>();
        check::<f64>();
    }

    /// A log cosh tile as owned data, for [`on_every_simd`]: returns (S_b, f).
    #[derive(Clone)]
    struct TileOp {
        z: Vec<f32>,
        b: Vec<f32>,
        a: Vec<f32>,
        f: Vec<f32>,
    }

    impl pulp::WithSimd for TileOp {
        type Output = (Vec<f32>, Vec<f32>);
        fn with_simd<S: pulp::Simd>(self, simd: S) -> Self::Output {
            let Self { mut z, b, a, mut f } = self;
            let tile = LogcoshTile {
                z: &mut z,
                b: &b,
                a: &a,
                f: &mut f,
            };
            tile.with_simd(simd);
            (z, f)
        }
    }

    /// The f32 log cosh tile pass, by every SIMD path (the production dispatch
    /// `Real::tile_pass_logcosh`, pulp's `Scalar`, and each instruction set the CPU has), against
    /// the plain scalar loop `tile_pass` with `logcosh_pair`; row counts cover empty, partial and
    /// several full vectors of every lane width (1, 4, 8, 16).
    #[test]
    fn vector_col_pass_equals_scalar() {
        let special = [0.0, -0.0, 1e-30, -1e-7, 44.0, -44.0, 90.0, -1e30, 1e30];
        let b = [0.3, -1.1, 0.0, 2.5, -0.05];
        let a = [-0.5, 0.25, 1.5, -2.0, 0.7];
        let m = b.len();
        let mut paths = 0;
        for rows in [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 203, 256] {
            let z: Vec<f32> = (0..rows * m)
                .map(|i| match i % 11 {
                    k @ 0..=8 if i % 5 == 0 => special[k],
                    _ => ((i * 37) % 401) as f32 * 0.05 - 10.0,
                })
                .collect();
            let f: Vec<f32> = (0..rows)
                .map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6)
                .collect();
            let (mut z_ref, mut f_ref) = (z.clone(), f.clone());
            tile_pass(&mut z_ref, &b, &a, &mut f_ref, <f32 as Real>::logcosh_pair);
            assert!(f_ref.iter().all(|v| v.is_finite()) || rows == 0);
            let (mut z_dis, mut f_dis) = (z.clone(), f.clone());
            <f32 as Real>::tile_pass_logcosh(&mut z_dis, &b, &a, &mut f_dis);
            let op = TileOp {
                z,
                b: b.to_vec(),
                a: a.to_vec(),
                f,
            };
            let mut results = on_every_simd(op);
            results.push(("Real::tile_pass_logcosh".to_string(), (z_dis, f_dis)));
            paths = results.len();
            for (name, (zv, fv)) in &results {
                let (uz, uf) = (max_ulps(zv, &z_ref), max_ulps(fv, &f_ref));
                assert_eq!(uz, 0, "{name}, {rows} rows: σ' off by {uz} ulp");
                assert_eq!(uf, 0, "{name}, {rows} rows: f off by {uf} ulp");
            }
        }
        eprintln!(
            "pulp dispatch on this CPU: {}; {paths} paths checked",
            arch_name(pulp::Arch::new())
        );
        // On an x86-64 CPU with pulp's V3 set, V3 at least must have been among them, and the
        // dispatch must not be scalar.
        if has_x86_v3() {
            assert!(paths >= 4, "no x86 SIMD path was tested");
            assert!(!matches!(pulp::Arch::new(), pulp::Arch::Scalar));
        }
    }

    /// A mirror-paired problem (symmetric initialisation with random biases, readouts and an
    /// offset): returns (x, y, w, b, a) for n rows, d inputs and m units.
    #[allow(clippy::type_complexity)]
    fn paired_problem<T: Real>(
        n: usize,
        d: usize,
        m: usize,
    ) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
        let h = m / 2;
        let v =
            |i: usize, s: usize| T::of((((i * 2654435761 + s * 97) % 1009) as f64) / 504.5 - 1.0);
        let x: Vec<T> = (0..n * d).map(|i| v(i, 1)).collect();
        let y: Vec<T> = (0..n).map(|i| v(i, 2)).collect();
        let half: Vec<T> = (0..h * d).map(|i| v(i, 3)).collect();
        let w = [half.clone(), half].concat();
        let b: Vec<T> = (0..m).map(|j| v(j % h, 4)).collect();
        let a: Vec<T> = (0..m)
            .map(|j| if j < h { v(j, 5) } else { -v(j - h, 5) })
            .collect();
        (x, y, w, b, a)
    }

    /// At symmetric initialisation the kernel computes the first half of the units only and
    /// mirrors it; the gradient and loss equal the full computation's (f64: to rounding of f,
    /// which is exactly c on the paired path), in f64 and f32 (pulp tile pass), for σ = log
    /// cosh and ReLU, over several blocks and two chunks. A perturbed unit breaks the pairing.
    #[test]
    fn paired_units_equal_the_full_computation() {
        fn check<T: Real>(tol: f64) {
            let (n, d, m) = (700, 9, 12);
            let (x, y, mut w, b, a) = paired_problem::<T>(n, d, m);
            assert!(units_are_paired(&w, &b, &a));
            for activation in [Activation::Logcosh, Activation::Relu] {
                let problem = |rows: std::ops::Range<usize>| FusedProblem {
                    x: &x[rows.start * d..rows.end * d],
                    y: &y[rows.clone()],
                    n: rows.len(),
                    d,
                    b: &b,
                    a: &a,
                    c: T::of(0.3),
                    activation,
                    loss: Loss::Huber { delta: 1.0 },
                };
                let (mut paired, mut full) =
                    (GradientSums::new(m, d), GradientSums::unpaired(m, d));
                for rows in [0..300, 300..n] {
                    paired.add(&problem(rows.clone()), &w);
                    full.add(&problem(rows), &w);
                }
                assert_eq!(paired.paired, Some(true));
                assert_eq!(paired.units(), m / 2, "half the units computed");
                let ((gp, lp), (gf, lf)) = (paired.mean(), full.mean());
                assert_eq!(gp.len(), m * d);
                let scale = gf.iter().map(|v| v.to().abs()).fold(0.0, f64::max);
                assert!(
                    scale > 1e-3,
                    "{activation:?}: a zero gradient tests nothing"
                );
                for (k, (p, f)) in gp.iter().zip(&gf).enumerate() {
                    let err = (p.to() - f.to()).abs();
                    assert!(
                        err <= tol * scale,
                        "{activation:?} G[{k}]: {} vs {}",
                        p.to(),
                        f.to()
                    );
                }
                assert!(
                    (lp - lf).abs() <= tol * lf.abs(),
                    "{activation:?} loss {lp} vs {lf}"
                );
                // The emptied sums serve the next gradient (unpaired weights now) exactly as
                // fresh ones do.
                let mut moved = w.clone();
                moved[3] += T::of(0.25);
                let mut fresh = GradientSums::new(m, d);
                for rows in [0..300, 300..n] {
                    paired.add(&problem(rows.clone()), &moved);
                    fresh.add(&problem(rows), &moved);
                }
                assert_eq!(paired.units(), m);
                let ((g1, l1), (g2, l2)) = (paired.mean(), fresh.mean());
                assert!(
                    g1 == g2 && l1 == l2,
                    "{activation:?}: reused sums differ from fresh ones"
                );
            }
            w[5 * d + 2] += T::of(1e-3);
            assert!(!units_are_paired(&w, &b, &a));
            let mut neg = a.clone();
            neg[m - 1] = -neg[m - 1];
            assert!(!units_are_paired(&w[..], &b, &neg));
        }
        check::<f64>(1e-12);
        check::<f32>(1e-5);
    }
}
