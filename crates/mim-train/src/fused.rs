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

use crate::loss::Loss;
use burn::tensor::{DType, Tensor, TensorData};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
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

/// A float type the kernel runs in (f32 or f64).
pub trait Real: faer::traits::RealField + Copy + Send + Sync + 'static {
    /// From f64.
    fn of(v: f64) -> Self;
    /// To f64.
    fn to(self) -> f64;
    /// (σ(u), σ'(u)) for σ = log cosh, evaluated together (one exponential).
    fn logcosh_pair(u: Self) -> (Self, Self);
    /// [`col_pass`] with σ = log cosh; f32 overrides it with an AVX2 version where available.
    #[inline(always)]
    fn col_pass_logcosh(zcol: &mut [Self], bj: Self, aj: Self, f: &mut [Self]) {
        col_pass(zcol, bj, aj, f, Self::logcosh_pair)
    }
    /// (σ(u), σ'(u)) for any activation, through the scalar f64 forms.
    #[inline(always)]
    fn pair(act: Activation, u: Self) -> (Self, Self) {
        let u = u.to();
        (Self::of(act.scalar(u)), Self::of(act.scalar_derivative(u)))
    }
}

/// e^x for x ≤ 0 in f32, by range reduction x = k·ln 2 + r, |r| ≤ ln2/2, and a degree-6
/// polynomial (relative error < 5e-7, a few f32 ulp); written branch-free so the compiler vectorises it.
#[inline(always)]
pub fn exp_neg_f32(x: f32) -> f32 {
    // No `round()`/`mul_add()`: without FMA/SSE4.1 at compile time they become libm calls.
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer in plain arithmetic.
    // The integer k is read from the bits of x·log2 e + 1.5·2^23 (integer ops only, no
    // saturating float→int cast), so 2^k is assembled without a libm call either.
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let kr = x * std::f32::consts::LOG2_E + ROUND;
    let k = kr - ROUND;
    let r = x - k * 0.693_145_75;
    let r = r - k * 1.428_606_8e-6;
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let ki = kr.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(ki.wrapping_add(127) << 23)
}

/// ln(1 + t) for t ∈ [0, 1] in f32: with s = t/(2 + t), ln(1+t) = 2 atanh(s) =
/// 2(s + s³/3 + s⁵/5 + …), s ≤ 1/3; terms to s¹³ give relative error < 5e-7 (a few f32 ulp).
#[inline(always)]
pub fn ln_1p_unit_f32(t: f32) -> f32 {
    let s = t / (2.0 + t);
    let s2 = s * s;
    let p = 1.0 / 13.0;
    let p = p * s2 + 1.0 / 11.0;
    let p = p * s2 + 1.0 / 9.0;
    let p = p * s2 + 1.0 / 7.0;
    let p = p * s2 + 1.0 / 5.0;
    let p = p * s2 + 1.0 / 3.0;
    let p = p * s2 + 1.0;
    2.0 * s * p
}

impl Real for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn to(self) -> f64 {
        self as f64
    }
    fn col_pass_logcosh(zcol: &mut [f32], bj: f32, aj: f32, f: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, which the function is compiled for.
            return unsafe { avx2::col_pass_logcosh(zcol, bj, aj, f) };
        }
        col_pass(zcol, bj, aj, f, Self::logcosh_pair)
    }
    #[inline(always)]
    fn logcosh_pair(u: f32) -> (f32, f32) {
        let au = u.abs();
        let t = exp_neg_f32(-2.0 * au);
        let th = (1.0 - t) / (1.0 + t);
        (
            au + ln_1p_unit_f32(t) - std::f32::consts::LN_2,
            th.copysign(u),
        )
    }
}

impl Real for f64 {
    fn of(v: f64) -> Self {
        v
    }
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

/// Work of one thread: rows `rows`, accumulating into `g` (m×d); returns Σ ℓ(f_i − y_i).
/// `col` is the column pass (σ chosen once, outside the loops).
///
/// Per block: Z_b = X_b Wᵀ into a column-major tile (so the backward GEMM reads Sᵀ with unit
/// stride: on 2 cores at d = m = 1000 the two GEMMs alone ran at 0.95 of SGEMM, against 0.84
/// with a row-major tile), the column pass, ℓ' per row, then G += S_bᵀ X_b with the ℓ' row
/// scaling applied to whichever of Z_b (block × m) and X_b (block × d) is smaller.
fn range_body<T: Real>(
    p: &FusedProblem<'_, T>,
    w: &[T],
    m: usize,
    rows: std::ops::Range<usize>,
    g: &mut [T],
    col: impl Fn(&mut [T], T, T, &mut [T]),
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
        matmul(
            MatMut::from_column_major_slice_mut(zb, bsz, m),
            Accum::Replace,
            xb,
            wt,
            T::of(1.0),
            Par::Seq,
        );
        let f = &mut f[..bsz];
        f.fill(p.c);
        for ((zcol, &bj), &aj) in zb.chunks_exact_mut(bsz).zip(p.b).zip(p.a) {
            col(zcol, bj, aj, f);
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
        matmul(
            MatMut::from_row_major_slice_mut(g, m, d),
            Accum::Add,
            sb.transpose(),
            rhs,
            T::of(1.0),
            Par::Seq,
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
) -> f64 {
    match p.activation {
        Activation::Logcosh => range_body(p, w, m, rows, g, T::col_pass_logcosh),
        act => range_body(p, w, m, rows, g, |z, bj, aj, f| {
            col_pass(z, bj, aj, f, |u| T::pair(act, u))
        }),
    }
}

/// The log cosh column pass in AVX2, lane for lane the same arithmetic as the scalar
/// [`col_pass`] with [`exp_neg_f32`] and [`ln_1p_unit_f32`] (no FMA contraction), so both give
/// bit-identical results.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn exp_neg(x: __m256) -> __m256 {
        let set = |v: f32| _mm256_set1_ps(v);
        let round = set(12_582_912.0);
        let x = _mm256_max_ps(x, set(-87.0));
        let kr = _mm256_add_ps(_mm256_mul_ps(x, set(std::f32::consts::LOG2_E)), round);
        let k = _mm256_sub_ps(kr, round);
        let r = _mm256_sub_ps(x, _mm256_mul_ps(k, set(0.693_145_75)));
        let r = _mm256_sub_ps(r, _mm256_mul_ps(k, set(1.428_606_8e-6)));
        let mut p = set(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_add_ps(_mm256_mul_ps(p, r), set(c));
        }
        let ki = _mm256_sub_epi32(_mm256_castps_si256(kr), _mm256_castps_si256(round));
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            ki,
            _mm256_set1_epi32(127),
        )));
        _mm256_mul_ps(p, scale)
    }

    #[inline(always)]
    unsafe fn ln_1p_unit(t: __m256) -> __m256 {
        let set = |v: f32| _mm256_set1_ps(v);
        let s = _mm256_div_ps(t, _mm256_add_ps(set(2.0), t));
        let s2 = _mm256_mul_ps(s, s);
        let mut p = set(1.0 / 13.0);
        for c in [1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
            p = _mm256_add_ps(_mm256_mul_ps(p, s2), set(c));
        }
        _mm256_mul_ps(_mm256_mul_ps(set(2.0), s), p)
    }

    /// See [`super::col_pass`]; σ = log cosh, 8 rows at a time.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn col_pass_logcosh(zcol: &mut [f32], bj: f32, aj: f32, f: &mut [f32]) {
        const LANES: usize = 8;
        let set = |v: f32| _mm256_set1_ps(v);
        let sign = set(-0.0);
        let (bv, av) = (set(bj), set(aj));
        let len = zcol.len().min(f.len());
        let chunks = len / LANES;
        for k in 0..chunks {
            let o = k * LANES;
            let u = _mm256_add_ps(_mm256_loadu_ps(zcol.as_ptr().add(o)), bv);
            let au = _mm256_andnot_ps(sign, u);
            let t = exp_neg(_mm256_mul_ps(set(-2.0), au));
            let th = _mm256_div_ps(_mm256_sub_ps(set(1.0), t), _mm256_add_ps(set(1.0), t));
            let ds = _mm256_or_ps(th, _mm256_and_ps(u, sign));
            let s = _mm256_sub_ps(
                _mm256_add_ps(au, ln_1p_unit(t)),
                set(std::f32::consts::LN_2),
            );
            let fo = f.as_mut_ptr().add(o);
            _mm256_storeu_ps(fo, _mm256_add_ps(_mm256_loadu_ps(fo), _mm256_mul_ps(av, s)));
            _mm256_storeu_ps(zcol.as_mut_ptr().add(o), _mm256_mul_ps(ds, av));
        }
        let o = chunks * LANES;
        super::col_pass(
            &mut zcol[o..len],
            bj,
            aj,
            &mut f[o..len],
            <f32 as super::Real>::logcosh_pair,
        );
    }
}

/// ∇_W L̂ (m×d, row-major) and L̂ for first-layer weights `w` (m×d).
pub fn fused_gradient<T: Real>(p: &FusedProblem<'_, T>, w: &[T]) -> (Vec<T>, f64) {
    let mut sums = GradientSums::new(w.len() / p.d.max(1), p.d);
    sums.add(p, w);
    sums.mean()
}

/// Sums of the per-sample gradients Σ_i ∇_W ℓ_i (m×d) and losses Σ_i ℓ_i over any number of
/// row chunks (the streamed full batch), in one accumulator per thread that lives across
/// chunks: a chunk costs its two GEMMs and tile pass only, no allocation or reduction.
/// [`GradientSums::mean`] adds the accumulators in a fixed order and divides by n, so for a
/// given thread count and chunking the result is bit-for-bit repeatable.
pub struct GradientSums<T> {
    m: usize,
    d: usize,
    parts: Vec<Vec<T>>,
    loss: Vec<f64>,
    n: usize,
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
        }
    }

    /// Adds the rows of `p` at weights `w` (m×d): blocks of rows split into one contiguous
    /// range per thread, each accumulated into that thread's sums.
    pub fn add(&mut self, p: &FusedProblem<'_, T>, w: &[T]) {
        let (n, d, m) = (p.n, p.d, self.m);
        let block = block_rows(d);
        let blocks = n.div_ceil(block);
        let parts = rayon::current_num_threads().clamp(1, blocks.max(1));
        while self.parts.len() < parts {
            self.parts.push(vec![T::of(0.0); m * d]);
            self.loss.push(0.0);
        }
        let per = blocks.div_ceil(parts);
        self.parts[..parts]
            .par_iter_mut()
            .zip(self.loss[..parts].par_iter_mut())
            .enumerate()
            .for_each(|(k, (g, loss))| {
                let rows = (k * per * block).min(n)..((k + 1) * per * block).min(n);
                *loss += range_gradient(p, w, m, rows, g);
            });
        self.n += n;
    }

    /// (1/n) Σ_i ∇_W ℓ_i and (1/n) Σ_i ℓ_i over all rows added (zeros when none were).
    pub fn mean(self) -> (Vec<T>, f64) {
        let n = self.n.max(1) as f64;
        let mut it = self.parts.into_iter();
        let mut g = it
            .next()
            .unwrap_or_else(|| vec![T::of(0.0); self.m * self.d]);
        // Element by element, so the parallel sums are the same as serial ones.
        for gk in it {
            g.par_iter_mut()
                .zip(gk.par_iter())
                .for_each(|(a, &b)| *a += b);
        }
        let inv_n = T::of(1.0 / n);
        g.par_iter_mut().for_each(|v| *v *= inv_n);
        let loss = self.loss.iter().sum::<f64>();
        (g, loss / n)
    }
}

/// Host copies of X, y, b, a, c for [`fused_gradient`], in the tensors' precision.
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
}

fn host_vec<T: burn::tensor::Element, const D: usize>(t: &Tensor<D>) -> Vec<T> {
    t.to_data()
        .try_into_vec_as::<T>()
        .expect("float tensor converts")
}

impl<T: Real + burn::tensor::Element> HostData<T> {
    fn new(x: &Tensor<2>, y: &Tensor<1>, model: &TwoLayer, loss: Loss) -> Self {
        let [n, d] = x.dims();
        Self {
            x: host_vec(x),
            y: host_vec(y),
            b: host_vec(&model.b.val()),
            a: host_vec(&model.a.val()),
            c: host_vec::<T, 1>(&model.c.val())[0],
            n,
            d,
            activation: model.activation,
            loss,
        }
    }

    fn gradient(&self, w: &Tensor<2>) -> (Tensor<2>, f64) {
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
        let (g, l) = fused_gradient(&p, &host_vec::<T, 2>(w));
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
    pub fn gradient(&self, w: &Tensor<2>) -> (Tensor<2>, f64) {
        match self {
            HostStage1::F32(h) => h.gradient(w),
            HostStage1::F64(h) => h.gradient(w),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_and_log1p_are_accurate() {
        for i in 0..=100_000 {
            let x = -(i as f32) * 1e-3;
            let (got, want) = (exp_neg_f32(x), (x as f64).exp());
            assert!(
                ((got as f64 - want) / want).abs() < 5e-7 || want < 1e-37,
                "exp({x}) = {got} vs {want}"
            );
        }
        for i in 0..=100_000 {
            let t = i as f32 * 1e-5;
            let (got, want) = (ln_1p_unit_f32(t), (t as f64).ln_1p());
            assert!(
                (got as f64 - want).abs() <= 5e-7 * want.max(1e-30) + 1e-12,
                "ln1p({t}) = {got} vs {want}"
            );
        }
    }

    /// The AVX2 log cosh column pass (when the CPU has AVX2) is bit-identical to the scalar one.
    #[test]
    fn vector_col_pass_equals_scalar() {
        let n = 203; // not a multiple of the lane count
        let z: Vec<f32> = (0..n).map(|i| (i as f32 - 100.0) * 0.07).collect();
        let f: Vec<f32> = (0..n).map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6).collect();
        let (mut z1, mut z2, mut f1, mut f2) = (z.clone(), z, f.clone(), f);
        <f32 as Real>::col_pass_logcosh(&mut z1, 0.3, -0.5, &mut f1);
        col_pass(&mut z2, 0.3, -0.5, &mut f2, <f32 as Real>::logcosh_pair);
        assert!(z1.iter().zip(&z2).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(f1.iter().zip(&f2).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}
