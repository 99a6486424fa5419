//! Generator `v2` of the datasets: Philox4x32-10 counters and an f32 Box–Muller transform,
//! vectorised with [`pulp`] (AVX-512, AVX2, NEON or scalar, chosen at run time).
//!
//! **Definition.** A split has a 64-bit key `k = (k0, k1)` ([`split_key`]). Row `i` of the
//! split holds `d + 1` values, `x_i ∈ R^d` followed by the label noise `ε_i`, laid out in
//! chunks of 64: value `j` has chunk `c = ⌊j/64⌋`, quarter `h = ⌊(j mod 64)/16⌋`, lane
//! `l = j mod 16`. With `o = Philox4x32-10(counter = (16c + l, i mod 2³², ⌊i/2³²⌋, 0), key = k)`
//! the pair `(o₀, o₁)` gives the values of quarters 0 and 1 and `(o₂, o₃)` those of quarters
//! 2 and 3 by [`box_muller_f32`] (cosine for even `h`, sine for odd `h`). So every value is a
//! pure function of (key, row, column): rows are generated independently, in any order, by
//! any number of threads, and a vector of 16, 8, 4 or 1 lanes fills the same values.
//!
//! **Distribution.** Philox4x32-10 (Salmon, Moraes, Dror & Shaw, SC'11, "Parallel random
//! numbers: as easy as 1, 2, 3") passes TestU01's BigCrush; it is the counter-based generator
//! of cuRAND, TensorFlow and PyTorch on GPUs. The Box–Muller radius uses a 32-bit uniform, so
//! `|z| ≤ √(2·33·ln 2) ≈ 6.77` (a pair exceeds this radius with probability 2⁻³³); the angle
//! has 2²⁵ steps. Values are f32 (widened exactly to f64 where rows are f64), so the f32 rows a
//! kernel reads are the f64 rows' values, not roundings of them.
//!
//! **Determinism.** The transform uses only IEEE add, mul, sqrt, integer and bit operations,
//! with no fused multiply-add, in the same order on every instruction set: each lane equals
//! the scalar [`box_muller_f32`] bit for bit (tested on every path the CPU has).

use rand::RngCore;

use crate::dataset::block_rng;

/// Philox4x32 multipliers (Random123).
const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
/// Philox4x32 key increments (Weyl sequence: golden ratio, √3 − 1).
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;
/// Rounds of Philox4x32-10.
const ROUNDS: u32 = 10;

/// Values per chunk of a row (4 Philox outputs × 16 lanes).
pub const CHUNK: usize = 64;
/// Lanes of a chunk (the widest vector, AVX-512 f32, fills one chunk quarter at once).
const LANES: usize = 16;
/// `0, 1, …, 15`: the lane offsets of a chunk quarter.
const IOTA: [u32; LANES] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// The ChaCha8 stream of a split's v1 key that the v2 key is drawn from (its first `u64`);
/// v1 block streams count up from 0 and never reach it.
const KEY_STREAM: u64 = u64::MAX;

/// The Philox key of split `tag` under `seed`: the first `u64` of the v1 generator's ChaCha8
/// stream `2⁶⁴ − 1` for `(seed, tag)` (the same domain-separated ChaCha key as v1, so splits
/// and the `U` stream stay independent), as `(low, high)` 32-bit words.
pub fn split_key(seed: u64, tag: u64) -> [u32; 2] {
    let k = block_rng(seed, tag, KEY_STREAM).next_u64();
    [k as u32, (k >> 32) as u32]
}

/// Length of the row buffer [`gaussian_row`] fills for `d` inputs: `d + 1` values (x, then ε)
/// rounded up to whole chunks.
pub fn row_len(d: usize) -> usize {
    (d + 1).div_ceil(CHUNK) * CHUNK
}

/// The Philox4x32-10 block function: 10 rounds of
/// `(c₀, c₁, c₂, c₃) ← (hi(M₁c₂) ⊕ c₁ ⊕ k₀, lo(M₁c₂), hi(M₀c₀) ⊕ c₃ ⊕ k₁, lo(M₀c₀))`, the key
/// bumped by `(W₀, W₁)` between rounds.
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = ctr;
    let [mut k0, mut k1] = key;
    for _ in 0..ROUNDS {
        let p0 = u64::from(M0) * u64::from(c0);
        let p1 = u64::from(M1) * u64::from(c2);
        (c0, c1, c2, c3) = (
            (p1 >> 32) as u32 ^ c1 ^ k0,
            p1 as u32,
            (p0 >> 32) as u32 ^ c3 ^ k1,
            p0 as u32,
        );
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    [c0, c1, c2, c3]
}

/// `2²³` as f32: `f32::from_bits(0x4B00_0000 | k) − 2²³ = k` exactly for `k < 2²³`.
const MAGIC: f32 = 8_388_608.0;
const MAGIC_BITS: u32 = 0x4B00_0000;
/// Mantissa bits of the smallest `1.m ≥ √2` (from there the log halves its argument).
const SQRT2_MANTISSA: u32 = 0x35_04F3;

/// `a` as f32, correctly rounded: the two 16-bit halves are exact, their sum rounds once.
#[inline(always)]
fn u32_to_f32(a: u32) -> f32 {
    let hi = f32::from_bits(MAGIC_BITS | (a >> 16)) - MAGIC;
    let lo = f32::from_bits(MAGIC_BITS | (a & 0xFFFF)) - MAGIC;
    hi * 65_536.0 + lo
}

/// Cephes `logf` coefficients: `ln(1 + t) ≈ t − t²/2 + t³·P(t)` on `[√½ − 1, √2 − 1]`.
const LN_P: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_5e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];
/// ln 2 split as `LN2_HI + LN2_LO` (`LN2_HI` has few mantissa bits, so `e·LN2_HI` is exact).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `ln x` for a positive normal f32 (Cephes `logf`: `x = 2^e·m`, `m ∈ [√½, √2)`, then the
/// polynomial in `t = m − 1`). Absolute error ≤ 1e-7 for `x ∈ [2⁻³³, 1]` (tested against f64).
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let bits = x.to_bits();
    let mantissa = bits & 0x7F_FFFF;
    let big = u32::from(mantissa >= SQRT2_MANTISSA);
    // m = 1.mantissa, halved (exponent 127 → 126) when it is ≥ √2; e counts the halving.
    let m = f32::from_bits((mantissa | 0x3F80_0000) - (big << 23));
    let e = (f32::from_bits(MAGIC_BITS | ((bits >> 23) + big)) - MAGIC) - 127.0;
    let t = m - 1.0;
    let z = t * t;
    let mut p = LN_P[0];
    for &c in &LN_P[1..] {
        p = p * t + c;
    }
    let y = p * t * z + LN2_LO * e + -0.5 * z;
    (t + y) + LN2_HI * e
}

/// Cephes `sinf` / `cosf` coefficients on `[−π/4, π/4]`.
const SIN_P: [f32; 3] = [-1.951_529_6e-4, 8.332_161e-3, -1.666_665_5e-1];
const COS_P: [f32; 3] = [2.443_315_7e-5, -1.388_731_6e-3, 4.166_664_6e-2];

/// `(sin φ, cos φ)` for `|φ| ≤ π/4` (Cephes polynomials; error ≤ 1e-7, tested against f64).
#[inline(always)]
pub fn sin_cos_quarter(phi: f32) -> (f32, f32) {
    let z = phi * phi;
    let s = ((SIN_P[0] * z + SIN_P[1]) * z + SIN_P[2]) * z * phi + phi;
    let c = ((COS_P[0] * z + COS_P[1]) * z + COS_P[2]) * z * z + -0.5 * z + 1.0;
    (s, c)
}

/// Two independent N(0, 1) values from two uniform words (Box–Muller):
/// `r = √(−2 ln u₁)` with `u₁ = (a + ½)·2⁻³² ∈ (0, 1]`, and the angle
/// `θ = q·π/2 + φ` with quadrant `q = b >> 30` and `φ = (f − ½)·π/2`, `f` the low 23 bits of `b`
/// as a fraction; returns `(r cos θ, r sin θ)`. θ is uniform on the circle (a quarter turn of
/// φ per quadrant), so the pair is a standard Gaussian pair.
#[inline(always)]
pub fn box_muller_f32(a: u32, b: u32) -> (f32, f32) {
    let u1 = (u32_to_f32(a) + 0.5) * TWO_POW_M32;
    let r = (-2.0 * ln_f32(u1)).sqrt();
    let f = f32::from_bits(0x3F80_0000 | (b & 0x7F_FFFF)) - 1.0;
    let (s, c) = sin_cos_quarter((f - 0.5) * std::f32::consts::FRAC_PI_2);
    let (odd, half) = ((b >> 30) & 1, b >> 31);
    let (x, y) = if odd == 1 { (s, c) } else { (c, s) };
    let cos = f32::from_bits(x.to_bits() ^ ((odd ^ half) << 31));
    let sin = f32::from_bits(y.to_bits() ^ (half << 31));
    (r * cos, r * sin)
}

/// `2⁻³²` (biased exponent 127 − 32).
const TWO_POW_M32: f32 = f32::from_bits(95 << 23);

/// Value `j` of row `row` under `key`, straight from the definition (module doc): the reference
/// the vectorised [`gaussian_row`] is tested against.
pub fn normal_at(key: [u32; 2], row: u64, j: usize) -> f32 {
    let (c, h, l) = (j / CHUNK, (j % CHUNK) / LANES, j % LANES);
    let q = (LANES * c + l) as u32;
    let o = philox4x32_10([q, row as u32, (row >> 32) as u32, 0], key);
    let (cos, sin) = if h < 2 {
        box_muller_f32(o[0], o[1])
    } else {
        box_muller_f32(o[2], o[3])
    };
    if h % 2 == 0 {
        cos
    } else {
        sin
    }
}

/// Fill `out` (a multiple of [`CHUNK`] values, e.g. [`row_len`]) with values `0..out.len()` of
/// row `row` under `key`, on the widest instruction set of this CPU.
///
/// # Panics
/// If `out.len()` is not a multiple of [`CHUNK`], or the row has more than 2³⁶ values.
pub fn gaussian_row(key: [u32; 2], row: u64, out: &mut [f32]) {
    pulp::Arch::new().dispatch(GaussianRow { key, row, out });
}

/// [`gaussian_row`] as a [`pulp::WithSimd`] operation (the tests run it on every instruction
/// set). A vector of `N` lanes (`N` divides 16) fills lanes `sN..(s+1)N` of a chunk quarter.
#[derive(Debug)]
pub struct GaussianRow<'a> {
    /// Philox key of the split.
    pub key: [u32; 2],
    /// Row index within the split.
    pub row: u64,
    /// Output values, a multiple of [`CHUNK`].
    pub out: &'a mut [f32],
}

impl pulp::WithSimd for GaussianRow<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Self { key, row, out } = self;
        assert!(
            out.len().is_multiple_of(CHUNK),
            "gaussian_row: length not a multiple of 64"
        );
        assert!(
            out.len() / CHUNK * LANES <= u32::MAX as usize,
            "gaussian_row: row too long"
        );
        let lanes = std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>();
        assert!(
            LANES.is_multiple_of(lanes),
            "gaussian_row: {lanes} lanes do not divide 16"
        );
        let iota = S::as_simd_u32s(&IOTA).0[0];
        let (row_lo, row_hi) = (
            simd.splat_u32s(row as u32),
            simd.splat_u32s((row >> 32) as u32),
        );
        let (vectors, _) = S::as_mut_simd_f32s(out);
        let per_quarter = LANES / lanes;
        for (c, chunk) in vectors.chunks_exact_mut(4 * per_quarter).enumerate() {
            for s in 0..per_quarter {
                let q = simd.add_u32s(iota, simd.splat_u32s((LANES * c + lanes * s) as u32));
                let o = philox_simd(simd, [q, row_lo, row_hi, simd.splat_u32s(0)], key);
                let (z0, z1) = box_muller_simd(simd, o[0], o[1]);
                let (z2, z3) = box_muller_simd(simd, o[2], o[3]);
                chunk[s] = z0;
                chunk[per_quarter + s] = z1;
                chunk[2 * per_quarter + s] = z2;
                chunk[3 * per_quarter + s] = z3;
            }
        }
    }
}

/// [`philox4x32_10`] lane-wise.
#[inline(always)]
fn philox_simd<S: pulp::Simd>(simd: S, ctr: [S::u32s; 4], key: [u32; 2]) -> [S::u32s; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = ctr;
    let (m0, m1) = (simd.splat_u32s(M0), simd.splat_u32s(M1));
    let [mut k0, mut k1] = key;
    for _ in 0..ROUNDS {
        let (lo0, hi0) = simd.widening_mul_u32s(m0, c0);
        let (lo1, hi1) = simd.widening_mul_u32s(m1, c2);
        (c0, c1, c2, c3) = (
            simd.xor_u32s(simd.xor_u32s(hi1, c1), simd.splat_u32s(k0)),
            lo1,
            simd.xor_u32s(simd.xor_u32s(hi0, c3), simd.splat_u32s(k1)),
            lo0,
        );
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    [c0, c1, c2, c3]
}

/// `x >> n` lane-wise.
#[inline(always)]
fn shr<S: pulp::Simd>(simd: S, x: S::u32s, n: u32) -> S::u32s {
    simd.wrapping_dyn_shr_u32s(x, simd.splat_u32s(n))
}

/// `x << n` lane-wise.
#[inline(always)]
fn shl<S: pulp::Simd>(simd: S, x: S::u32s, n: u32) -> S::u32s {
    simd.wrapping_dyn_shl_u32s(x, simd.splat_u32s(n))
}

/// `f32::from_bits(MAGIC_BITS | k) − 2²³` lane-wise (`k < 2²³`).
#[inline(always)]
fn small_int_f32<S: pulp::Simd>(simd: S, k: S::u32s) -> S::f32s {
    let bits = simd.or_u32s(k, simd.splat_u32s(MAGIC_BITS));
    simd.sub_f32s(simd.transmute_f32s_u32s(bits), simd.splat_f32s(MAGIC))
}

/// [`ln_f32`] lane-wise, bit-identical to it.
#[inline(always)]
fn ln_simd<S: pulp::Simd>(simd: S, x: S::f32s) -> S::f32s {
    let bits = simd.transmute_u32s_f32s(x);
    let mantissa = simd.and_u32s(bits, simd.splat_u32s(0x7F_FFFF));
    let big = simd.select_u32s(
        simd.greater_than_or_equal_u32s(mantissa, simd.splat_u32s(SQRT2_MANTISSA)),
        simd.splat_u32s(1),
        simd.splat_u32s(0),
    );
    let m = simd.transmute_f32s_u32s(simd.sub_u32s(
        simd.or_u32s(mantissa, simd.splat_u32s(0x3F80_0000)),
        shl(simd, big, 23),
    ));
    let e = simd.sub_f32s(
        small_int_f32(simd, simd.add_u32s(shr(simd, bits, 23), big)),
        simd.splat_f32s(127.0),
    );
    let t = simd.sub_f32s(m, simd.splat_f32s(1.0));
    let z = simd.mul_f32s(t, t);
    let mut p = simd.splat_f32s(LN_P[0]);
    for &c in &LN_P[1..] {
        p = simd.add_f32s(simd.mul_f32s(p, t), simd.splat_f32s(c));
    }
    let y = simd.add_f32s(
        simd.add_f32s(
            simd.mul_f32s(simd.mul_f32s(p, t), z),
            simd.mul_f32s(simd.splat_f32s(LN2_LO), e),
        ),
        simd.mul_f32s(simd.splat_f32s(-0.5), z),
    );
    simd.add_f32s(
        simd.add_f32s(t, y),
        simd.mul_f32s(simd.splat_f32s(LN2_HI), e),
    )
}

/// [`box_muller_f32`] lane-wise, bit-identical to it.
#[inline(always)]
fn box_muller_simd<S: pulp::Simd>(simd: S, a: S::u32s, b: S::u32s) -> (S::f32s, S::f32s) {
    let hi = small_int_f32(simd, shr(simd, a, 16));
    let lo = small_int_f32(simd, simd.and_u32s(a, simd.splat_u32s(0xFFFF)));
    let af = simd.add_f32s(simd.mul_f32s(hi, simd.splat_f32s(65_536.0)), lo);
    let u1 = simd.mul_f32s(
        simd.add_f32s(af, simd.splat_f32s(0.5)),
        simd.splat_f32s(TWO_POW_M32),
    );
    let r = simd.sqrt_f32s(simd.mul_f32s(simd.splat_f32s(-2.0), ln_simd(simd, u1)));
    let f = simd.sub_f32s(
        simd.transmute_f32s_u32s(simd.or_u32s(
            simd.and_u32s(b, simd.splat_u32s(0x7F_FFFF)),
            simd.splat_u32s(0x3F80_0000),
        )),
        simd.splat_f32s(1.0),
    );
    let phi = simd.mul_f32s(
        simd.sub_f32s(f, simd.splat_f32s(0.5)),
        simd.splat_f32s(std::f32::consts::FRAC_PI_2),
    );
    let zz = simd.mul_f32s(phi, phi);
    let s = simd.add_f32s(
        simd.mul_f32s(simd.mul_f32s(poly3(simd, SIN_P, zz), zz), phi),
        phi,
    );
    let c = simd.add_f32s(
        simd.add_f32s(
            simd.mul_f32s(simd.mul_f32s(poly3(simd, COS_P, zz), zz), zz),
            simd.mul_f32s(simd.splat_f32s(-0.5), zz),
        ),
        simd.splat_f32s(1.0),
    );
    let odd = simd.and_u32s(shr(simd, b, 30), simd.splat_u32s(1));
    let half = shr(simd, b, 31);
    let swap = simd.equal_u32s(odd, simd.splat_u32s(1));
    let x = simd.select_f32s(swap, s, c);
    let y = simd.select_f32s(swap, c, s);
    let flip = |v: S::f32s, bit: S::u32s| {
        simd.transmute_f32s_u32s(simd.xor_u32s(simd.transmute_u32s_f32s(v), shl(simd, bit, 31)))
    };
    let cos = flip(x, simd.xor_u32s(odd, half));
    let sin = flip(y, half);
    (simd.mul_f32s(r, cos), simd.mul_f32s(r, sin))
}

/// `(p₀z + p₁)z + p₂` lane-wise, in the scalar order.
#[inline(always)]
fn poly3<S: pulp::Simd>(simd: S, p: [f32; 3], z: S::f32s) -> S::f32s {
    let t = simd.add_f32s(
        simd.mul_f32s(simd.splat_f32s(p[0]), z),
        simd.splat_f32s(p[1]),
    );
    simd.add_f32s(simd.mul_f32s(t, z), simd.splat_f32s(p[2]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{has_x86_v3, on_every_simd};

    /// Known-answer vectors of Random123's `kat_vectors` for philox4x32_10.
    #[test]
    fn philox_matches_random123_known_answers() {
        let cases = [
            (
                [0; 4],
                [0; 2],
                [0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8],
            ),
            (
                [u32::MAX; 4],
                [u32::MAX; 2],
                [0x408F_276D, 0x41C8_3B0E, 0xA20B_C7C6, 0x6D54_51FD],
            ),
            (
                [0x243F_6A88, 0x85A3_08D3, 0x1319_8A2E, 0x0370_7344],
                [0xA409_3822, 0x299F_31D0],
                [0xD16C_FE09, 0x94FD_CCEB, 0x5001_E420, 0x2412_6EA1],
            ),
        ];
        for (ctr, key, want) in cases {
            assert_eq!(philox4x32_10(ctr, key), want, "ctr {ctr:x?} key {key:x?}");
        }
    }

    /// The magic-number conversion is Rust's correctly rounded `as f32`.
    #[test]
    fn u32_conversion_rounds_correctly() {
        let mut a = 1u32;
        for i in 0..200_000u32 {
            a = a.wrapping_mul(0x9E37_79B9).wrapping_add(i);
            for v in [a, a >> 7, a >> 20, u32::MAX - (i & 0xFF), i] {
                assert_eq!(u32_to_f32(v).to_bits(), (v as f32).to_bits(), "{v}");
            }
        }
    }

    /// ln over the whole range the radius uses, [2⁻³³, 1], against f64: absolute error
    /// ≤ 1e-7 (relative ≤ 2e-7 near 1, where ln x → 0).
    #[test]
    fn ln_f32_is_accurate() {
        let mut worst: f64 = 0.0;
        for i in 0..=400_000u32 {
            let x = (2f64.powf(-33.0 * f64::from(i) / 400_000.0)) as f32;
            for x in [
                x,
                f32::from_bits(x.to_bits().saturating_sub(i % 7)).min(1.0),
            ] {
                let want = f64::from(x).ln();
                let err = (f64::from(ln_f32(x)) - want).abs();
                worst = worst.max(err / want.abs().max(1.0));
                assert!(
                    err <= 1e-7 + 2e-7 * want.abs(),
                    "ln({x}) = {} vs {want}",
                    ln_f32(x)
                );
            }
        }
        assert_eq!(ln_f32(1.0), 0.0);
        assert!(worst > 0.0);
    }

    /// sin and cos on [−π/4, π/4] against f64: error ≤ 1.5e-7.
    #[test]
    fn sin_cos_quarter_is_accurate() {
        for i in 0..=200_000 {
            let phi = (f64::from(i) / 200_000.0 - 0.5) * std::f64::consts::FRAC_PI_2;
            let p = phi as f32;
            let (s, c) = sin_cos_quarter(p);
            let (ws, wc) = f64::from(p).sin_cos();
            assert!(
                (f64::from(s) - ws).abs() <= 1.5e-7,
                "sin({p}) = {s} vs {ws}"
            );
            assert!(
                (f64::from(c) - wc).abs() <= 1.5e-7,
                "cos({p}) = {c} vs {wc}"
            );
        }
    }

    /// The extremes of the uniform words stay finite: a = u32::MAX gives r = 0 (u₁ = 1), a = 0
    /// the largest radius √(2·33·ln 2) ≈ 6.77; each quadrant gives the signs of its quarter turn.
    #[test]
    fn box_muller_extremes_and_quadrants() {
        let (x, y) = box_muller_f32(u32::MAX, 12345);
        assert_eq!((x, y), (0.0, 0.0));
        let (x, y) = box_muller_f32(0, 0x40_0000);
        let r = f64::from(x.hypot(y));
        assert!(
            (r - (66.0 * std::f64::consts::LN_2).sqrt()).abs() < 1e-5,
            "r = {r}"
        );
        // φ = 0 (f = ½): θ = q·π/2 exactly.
        let a = 0x8000_0000; // u₁ ≈ ½
        let r = (-2.0 * 0.5f64.ln()).sqrt();
        for (q, (cx, sy)) in [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)]
            .iter()
            .enumerate()
        {
            let (x, y) = box_muller_f32(a, ((q as u32) << 30) | 0x40_0000);
            assert!((f64::from(x) - r * cx).abs() < 1e-6 && (f64::from(y) - r * sy).abs() < 1e-6);
        }
    }

    /// One row by an owned op, for [`on_every_simd`].
    #[derive(Clone)]
    struct RowOp {
        key: [u32; 2],
        row: u64,
        len: usize,
    }

    impl pulp::WithSimd for RowOp {
        type Output = Vec<f32>;
        fn with_simd<S: pulp::Simd>(self, simd: S) -> Vec<f32> {
            let mut out = vec![f32::NAN; self.len];
            GaussianRow {
                key: self.key,
                row: self.row,
                out: &mut out,
            }
            .with_simd(simd);
            out
        }
    }

    /// Every SIMD path (and the dispatched `gaussian_row`) fills each value bit for bit as the
    /// definition `normal_at` does, for rows with low and high words and several chunks.
    #[test]
    fn vector_rows_equal_the_definition() {
        let mut paths = 0;
        for (key, row, len) in [
            ([1, 2], 0u64, 64),
            ([0xDEAD_BEEF, 7], 5, 192),
            (split_key(42, 1), (3u64 << 32) + 17, 320),
        ] {
            let want: Vec<u32> = (0..len).map(|j| normal_at(key, row, j).to_bits()).collect();
            let mut results = on_every_simd(RowOp { key, row, len });
            let mut direct = vec![0.0; len];
            gaussian_row(key, row, &mut direct);
            results.push(("gaussian_row".into(), direct));
            paths = results.len();
            for (name, got) in results {
                let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "{name}, row {row}");
            }
        }
        if has_x86_v3() {
            assert!(paths >= 4, "no x86 SIMD path was tested");
        }
    }

    /// The values are N(0, 1) and uncorrelated: over 2²¹ values (32 768 rows of 64) the mean,
    /// variance, third and fourth moments, the CDF at a few points and the correlation of each
    /// value with its Box–Muller partner, its neighbour and the same column of the next row
    /// are within 6 standard errors of the Gaussian values.
    #[test]
    fn values_are_standard_gaussian() {
        let key = split_key(7, 1);
        let (rows, len) = (32_768usize, 64usize);
        let mut v = vec![0.0f32; rows * len];
        for (i, row) in v.chunks_exact_mut(len).enumerate() {
            gaussian_row(key, i as u64, row);
        }
        let n = v.len() as f64;
        let mean = |f: &dyn Fn(f64) -> f64| v.iter().map(|&x| f(f64::from(x))).sum::<f64>() / n;
        let within = |got: f64, want: f64, var: f64, what: &str| {
            let se = (var / n).sqrt();
            assert!(
                (got - want).abs() <= 6.0 * se,
                "{what}: {got} vs {want} (se {se})"
            );
        };
        within(mean(&|x| x), 0.0, 1.0, "E z");
        within(mean(&|x| x * x), 1.0, 2.0, "E z²");
        within(mean(&|x| x.powi(3)), 0.0, 15.0, "E z³");
        within(mean(&|x| x.powi(4)), 3.0, 96.0, "E z⁴");
        for (t, phi) in [
            (-2.0, 0.022_750_1),
            (-0.5, 0.308_537_5),
            (0.0, 0.5),
            (1.0, 0.841_344_7),
        ] {
            within(
                mean(&|x| f64::from(u8::from(x <= t))),
                phi,
                phi * (1.0 - phi),
                "P(z ≤ t)",
            );
        }
        let corr = |lag: usize| {
            let pairs = v.iter().zip(&v[lag..]);
            pairs
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum::<f64>()
                / (n - lag as f64)
        };
        within(corr(16), 0.0, 1.0, "partner (quarter h, h+1)");
        within(corr(1), 0.0, 1.0, "neighbour");
        within(corr(64), 0.0, 1.0, "next row");
        let partner: f64 = (0..rows * len)
            .filter(|i| (i % 64) / 16 % 2 == 0)
            .map(|i| f64::from(v[i]).powi(2) * f64::from(v[i + 16]).powi(2))
            .sum::<f64>()
            / (n / 2.0);
        let se = (8.0f64 / (n / 2.0)).sqrt();
        assert!((partner - 1.0).abs() <= 6.0 * se, "E z²z'² = {partner}");
    }

    /// Different keys and rows give different values; the key depends on seed and split.
    #[test]
    fn keys_and_rows_separate_streams() {
        assert_ne!(split_key(1, 1), split_key(1, 2));
        assert_ne!(split_key(1, 1), split_key(2, 1));
        assert_eq!(split_key(9, 3), split_key(9, 3));
        let (mut a, mut b) = (vec![0.0; 64], vec![0.0; 64]);
        gaussian_row(split_key(1, 1), 3, &mut a);
        gaussian_row(split_key(1, 2), 3, &mut b);
        assert!(a.iter().zip(&b).all(|(x, y)| x != y));
        gaussian_row(split_key(1, 1), 4, &mut b);
        assert!(a.iter().zip(&b).all(|(x, y)| x != y));
        assert_eq!(row_len(63), 64);
        assert_eq!(row_len(64), 128);
    }
}
