//! Host `f64` vector kernels shared by the crates above (tight loops, no tensors).

/// ⟨a, b⟩ = Σ_i a_i b_i over the common length, summed in 8 interleaved partial sums so the
/// compiler keeps them in vector registers (a sequential `sum` is one dependent add chain,
/// latency-bound at ~4 cycles per element). The summation order is fixed, so the result is
/// bit-for-bit reproducible; it differs from the sequential sum only by rounding. `b` may be
/// f32 (widened exactly, e.g. the f32 rows of the v2 generator against an f64 `U`).
#[inline(always)]
pub fn dot<B: Copy + Into<f64>>(a: &[f64], b: &[B]) -> f64 {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (pa, pb) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += pa[l] * pb[l].into();
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(&p, &q)| p * q.into()).sum();
    let (lo, hi) = acc.split_at(LANES / 2);
    let half: [f64; LANES / 2] = std::array::from_fn(|l| lo[l] + hi[l]);
    (half[0] + half[2]) + (half[1] + half[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::dot;

    /// Every length from 0 to 40 (all remainders of the 8 lanes) against the sequential sum,
    /// and the common length when the slices differ.
    #[test]
    fn dot_matches_the_sequential_sum_at_every_length() {
        for n in 0..=40 {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64 * 1.3).cos()).collect();
            let seq: f64 = a.iter().zip(&b).map(|(p, q)| p * q).sum();
            assert!(
                (dot(&a, &b) - seq).abs() <= 1e-13 * (1.0 + seq.abs()),
                "n = {n}"
            );
        }
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0]), 14.0);
    }
}
