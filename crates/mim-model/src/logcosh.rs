//! σ = log cosh in f32 on the host, scalar and vectorised, bit-identical to each other: the
//! one implementation behind the fused stage-1 kernel's tile pass, the streamed stage-2
//! features and [`crate::Activation::apply`] on a CPU backend.
//!
//!   log cosh u = |u| + ln(1 + t) − ln 2,  tanh u = sign(u)·(1 − t)/(1 + t),  t = e^{−2|u|} ∈ (0, 1],
//!
//! with e^x (x ≤ 0) by [`exp_neg_f32`] and ln(1 + t) (t ∈ [0, 1]) by [`ln_1p_unit_f32`], both
//! branch-free polynomials (relative error < 5e-7, a few f32 ulp). The vector forms take any
//! [`pulp::Simd`] (AVX-512, AVX2+FMA, NEON or pulp's one-lane `Scalar`, chosen at run time by
//! `pulp::Arch`) and do the same IEEE operations in the same order with no fused multiply-add,
//! so every lane equals the scalar function and results never depend on the CPU.

use rayon::prelude::*;

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

/// (log cosh u, tanh u) in f32, sharing one exponential.
#[inline(always)]
pub fn logcosh_pair_f32(u: f32) -> (f32, f32) {
    let au = u.abs();
    let t = exp_neg_f32(-2.0 * au);
    let th = (1.0 - t) / (1.0 + t);
    (
        au + ln_1p_unit_f32(t) - std::f32::consts::LN_2,
        th.copysign(u),
    )
}

/// [`exp_neg_f32`] lane-wise in any [`pulp::Simd`]: the same operations in the same order, with
/// no FMA contraction, so every lane is bit-identical to the scalar function.
#[inline(always)]
pub fn exp_neg_simd<S: pulp::Simd>(simd: S, x: S::f32s) -> S::f32s {
    const ROUND: f32 = 12_582_912.0;
    let round = simd.splat_f32s(ROUND);
    let x = simd.max_f32s(x, simd.splat_f32s(-87.0));
    let kr = simd.add_f32s(
        simd.mul_f32s(x, simd.splat_f32s(std::f32::consts::LOG2_E)),
        round,
    );
    let k = simd.sub_f32s(kr, round);
    let r = simd.sub_f32s(x, simd.mul_f32s(k, simd.splat_f32s(0.693_145_75)));
    let r = simd.sub_f32s(r, simd.mul_f32s(k, simd.splat_f32s(1.428_606_8e-6)));
    let mut p = simd.splat_f32s(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = simd.add_f32s(simd.mul_f32s(p, r), simd.splat_f32s(c));
    }
    let ki = simd.sub_u32s(
        simd.transmute_u32s_f32s(kr),
        simd.splat_u32s(ROUND.to_bits()),
    );
    let bits =
        simd.wrapping_dyn_shl_u32s(simd.add_u32s(ki, simd.splat_u32s(127)), simd.splat_u32s(23));
    simd.mul_f32s(p, simd.transmute_f32s_u32s(bits))
}

/// [`ln_1p_unit_f32`] lane-wise, bit-identical to it (see [`exp_neg_simd`]).
#[inline(always)]
pub fn ln_1p_unit_simd<S: pulp::Simd>(simd: S, t: S::f32s) -> S::f32s {
    let s = simd.div_f32s(t, simd.add_f32s(simd.splat_f32s(2.0), t));
    let s2 = simd.mul_f32s(s, s);
    let mut p = simd.splat_f32s(1.0 / 13.0);
    for c in [1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
        p = simd.add_f32s(simd.mul_f32s(p, s2), simd.splat_f32s(c));
    }
    simd.mul_f32s(simd.mul_f32s(simd.splat_f32s(2.0), s), p)
}

/// [`logcosh_pair_f32`] lane-wise, bit-identical to it. tanh |u| = (1 − t)/(1 + t) ≥ 0
/// (t ≤ 1), so OR-ing in the sign bit of u is `copysign`.
#[inline(always)]
pub fn logcosh_pair_simd<S: pulp::Simd>(simd: S, u: S::f32s) -> (S::f32s, S::f32s) {
    let one = simd.splat_f32s(1.0);
    let au = simd.abs_f32s(u);
    let t = exp_neg_simd(simd, simd.mul_f32s(simd.splat_f32s(-2.0), au));
    let th = simd.div_f32s(simd.sub_f32s(one, t), simd.add_f32s(one, t));
    let ds = simd.or_f32s(th, simd.and_f32s(u, simd.splat_f32s(-0.0)));
    let s = simd.sub_f32s(
        simd.add_f32s(au, ln_1p_unit_simd(simd, t)),
        simd.splat_f32s(std::f32::consts::LN_2),
    );
    (s, ds)
}

/// log cosh lane-wise ([`logcosh_pair_simd`] without the tanh, which the compiler drops).
#[inline(always)]
fn logcosh_simd<S: pulp::Simd>(simd: S, u: S::f32s) -> S::f32s {
    logcosh_pair_simd(simd, u).0
}

/// z ← log cosh(z + b) elementwise as a [`pulp::WithSimd`] operation, on rows of `b.len()`
/// values (b = a per-column bias of a row-major matrix), or z ← log cosh z with no bias. Run it
/// with `pulp::Arch::new().dispatch(..)` or any one `pulp::Simd` (the tests pin each one); the
/// last partial vector of a row goes through masked loads and stores.
#[derive(Debug)]
pub struct LogcoshMap<'a> {
    /// The values, overwritten.
    pub z: &'a mut [f32],
    /// The bias of each column (rows of `b.len()` values, `z.len()` a multiple of it), or none.
    pub b: Option<&'a [f32]>,
}

impl pulp::WithSimd for LogcoshMap<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Self { z, b } = self;
        match b {
            None => {
                let (head, tail) = S::as_mut_simd_f32s(z);
                for v in head {
                    *v = logcosh_simd(simd, *v);
                }
                let v = logcosh_simd(simd, simd.partial_load_f32s(tail));
                simd.partial_store_f32s(tail, v);
            }
            Some(b) if !b.is_empty() => {
                let (bh, bt) = S::as_simd_f32s(b);
                for row in z.chunks_exact_mut(b.len()) {
                    let (head, tail) = S::as_mut_simd_f32s(row);
                    for (v, &bv) in head.iter_mut().zip(bh) {
                        *v = logcosh_simd(simd, simd.add_f32s(*v, bv));
                    }
                    let u = simd.add_f32s(simd.partial_load_f32s(tail), simd.partial_load_f32s(bt));
                    simd.partial_store_f32s(tail, logcosh_simd(simd, u));
                }
            }
            Some(_) => {}
        }
    }
}

/// (z, ds) ← (log cosh z, tanh z) elementwise as a [`pulp::WithSimd`] operation (one shared
/// exponential, [`logcosh_pair_simd`]); `ds` as long as `z`.
#[derive(Debug)]
pub struct LogcoshPairMap<'a> {
    /// The values, overwritten with log cosh.
    pub z: &'a mut [f32],
    /// Written with tanh of the values.
    pub ds: &'a mut [f32],
}

impl pulp::WithSimd for LogcoshPairMap<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Self { z, ds } = self;
        let (zh, zt) = S::as_mut_simd_f32s(z);
        let (dh, dt) = S::as_mut_simd_f32s(ds);
        for (v, d) in zh.iter_mut().zip(dh) {
            (*v, *d) = logcosh_pair_simd(simd, *v);
        }
        let (v, d) = logcosh_pair_simd(simd, simd.partial_load_f32s(zt));
        simd.partial_store_f32s(zt, v);
        simd.partial_store_f32s(dt, d);
    }
}

/// Values per parallel task of [`logcosh_in_place`] (about 64 KiB of f32).
const TASK_VALUES: usize = 1 << 14;

/// z ← log cosh(z + b) (b per column of rows of `b.len()`; `None`: no bias) on all threads,
/// each task through the widest SIMD path of the CPU ([`LogcoshMap`]). The result does not
/// depend on the thread count or the CPU: each value is [`logcosh_pair_f32`]`(z + b).0`.
pub fn logcosh_in_place(z: &mut [f32], b: Option<&[f32]>) {
    let row = b.map_or(1, |b| b.len().max(1));
    assert!(
        z.len().is_multiple_of(row),
        "logcosh_in_place: {} values are not rows of {row}",
        z.len()
    );
    let per_task = (TASK_VALUES / row).max(1) * row;
    z.par_chunks_mut(per_task).for_each(|part| {
        pulp::Arch::new().dispatch(LogcoshMap { z: part, b });
    });
}

/// (z, ds) ← (log cosh z, tanh z) on all threads ([`LogcoshPairMap`]): each pair is
/// [`logcosh_pair_f32`]`(z)`. Panics unless `ds` is as long as `z`.
pub fn logcosh_pair_in_place(z: &mut [f32], ds: &mut [f32]) {
    assert_eq!(z.len(), ds.len(), "logcosh_pair_in_place: z and ds lengths");
    z.par_chunks_mut(TASK_VALUES)
        .zip(ds.par_chunks_mut(TASK_VALUES))
        .for_each(|(z, ds)| pulp::Arch::new().dispatch(LogcoshPairMap { z, ds }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use mim_data::simd::{max_ulps, on_every_simd};

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

    /// `exp_neg_simd` (`log = false`) or `ln_1p_unit_simd` applied to every element.
    #[derive(Clone)]
    struct MapOp {
        x: Vec<f32>,
        log: bool,
    }

    impl pulp::WithSimd for MapOp {
        type Output = Vec<f32>;
        fn with_simd<S: pulp::Simd>(self, simd: S) -> Vec<f32> {
            let Self { mut x, log } = self;
            let apply = |v| {
                if log {
                    ln_1p_unit_simd(simd, v)
                } else {
                    exp_neg_simd(simd, v)
                }
            };
            let (head, tail) = S::as_mut_simd_f32s(&mut x);
            for v in head {
                *v = apply(*v);
            }
            let v = apply(simd.partial_load_f32s(tail));
            simd.partial_store_f32s(tail, v);
            x
        }
    }

    /// The lane-wise exp and log1p of every SIMD path match `exp_neg_f32` and `ln_1p_unit_f32`.
    #[test]
    fn simd_exp_and_log1p_equal_scalar() {
        let xs: Vec<f32> = (0..=100_003).map(|i| -(i as f32) * 1e-3).collect();
        let ts: Vec<f32> = (0..=100_003).map(|i| (i as f32 * 1e-5).min(1.0)).collect();
        let want_exp: Vec<f32> = xs.iter().map(|&x| exp_neg_f32(x)).collect();
        let want_log: Vec<f32> = ts.iter().map(|&t| ln_1p_unit_f32(t)).collect();
        let exp = on_every_simd(MapOp { x: xs, log: false });
        let log = on_every_simd(MapOp { x: ts, log: true });
        for ((name, e), (_, l)) in exp.iter().zip(&log) {
            let (ue, ul) = (max_ulps(e, &want_exp), max_ulps(l, &want_log));
            assert_eq!(ue, 0, "{name}: exp_neg off by {ue} ulp");
            assert_eq!(ul, 0, "{name}: ln_1p_unit off by {ul} ulp");
        }
    }

    /// [`LogcoshMap`] as owned data, for [`on_every_simd`].
    #[derive(Clone)]
    struct MapBias {
        z: Vec<f32>,
        b: Option<Vec<f32>>,
    }

    impl pulp::WithSimd for MapBias {
        type Output = Vec<f32>;
        fn with_simd<S: pulp::Simd>(self, simd: S) -> Vec<f32> {
            let Self { mut z, b } = self;
            LogcoshMap {
                z: &mut z,
                b: b.as_deref(),
            }
            .with_simd(simd);
            z
        }
    }

    /// Every SIMD path and the threaded [`logcosh_in_place`] equal the scalar
    /// `logcosh_pair_f32(z + b).0` bit for bit, with and without a bias, for row lengths that
    /// leave partial vectors of every lane width; and the values are log cosh to 1e-6.
    #[test]
    fn logcosh_map_equals_scalar_on_every_path() {
        let special = [0.0, -0.0, 1e-30, -1e-7, 44.0, -44.0, 90.0, -1e30, 1e30];
        for (rows, m) in [(0, 5), (3, 1), (7, 5), (4, 16), (33, 17), (2000, 19)] {
            let z: Vec<f32> = (0..rows * m)
                .map(|i| match i % 11 {
                    k @ 0..=8 if i % 5 == 0 => special[k],
                    _ => ((i * 37) % 401) as f32 * 0.05 - 10.0,
                })
                .collect();
            let b: Vec<f32> = (0..m).map(|j| (j as f32 * 0.7).sin() * 2.0).collect();
            for bias in [None, Some(b.clone())] {
                let want: Vec<f32> = z
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| logcosh_pair_f32(v + bias.as_ref().map_or(0.0, |b| b[i % m])).0)
                    .collect();
                for (i, (&v, &w)) in z.iter().zip(&want).enumerate() {
                    let u = (v + bias.as_ref().map_or(0.0, |b| b[i % m])) as f64;
                    let exact = if u.abs() > 20.0 {
                        u.abs() - std::f64::consts::LN_2
                    } else {
                        u.cosh().ln()
                    };
                    assert!(
                        (w as f64 - exact).abs() <= 1e-6 * (1.0 + exact.abs()),
                        "log cosh({u}) = {w} vs {exact}"
                    );
                }
                let mut results = on_every_simd(MapBias {
                    z: z.clone(),
                    b: bias.clone(),
                });
                let mut threaded = z.clone();
                logcosh_in_place(&mut threaded, bias.as_deref());
                results.push(("logcosh_in_place".into(), threaded));
                if bias.is_none() {
                    let (mut s, mut ds) = (z.clone(), vec![0.0; z.len()]);
                    logcosh_pair_in_place(&mut s, &mut ds);
                    let want_ds: Vec<f32> = z.iter().map(|&v| logcosh_pair_f32(v).1).collect();
                    let u = max_ulps(&ds, &want_ds);
                    assert_eq!(
                        u, 0,
                        "logcosh_pair_in_place, {rows}×{m}: tanh off by {u} ulp"
                    );
                    results.push(("logcosh_pair_in_place".into(), s));
                }
                for (name, got) in &results {
                    let u = max_ulps(got, &want);
                    assert_eq!(
                        u,
                        0,
                        "{name}, {rows}×{m}, bias {}: off by {u} ulp",
                        bias.is_some()
                    );
                }
            }
        }
    }
}
