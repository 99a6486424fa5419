//! Probabilists' Hermite polynomials `He_k` and Gaussian monomial moments.
//!
//! The probabilists' Hermite polynomials are orthogonal under the standard normal law:
//! `E[He_j(z) He_k(z)] = k! δ_jk` for `z ~ N(0, 1)`. The first few are
//! `He_0 = 1`, `He_1 = z`, `He_2 = z² − 1`, `He_3 = z³ − 3z`, `He_4 = z⁴ − 6z² + 3`.

/// Probabilists' Hermite polynomial `He_k(z)`.
///
/// Evaluated with the three-term recurrence
/// `He_0 = 1`, `He_1 = z`, `He_{k+1}(z) = z·He_k(z) − k·He_{k−1}(z)`,
/// which is numerically stable for moderate `k` and `|z|`. Any `k` is accepted; the link
/// grammar ([`crate::Link`]) only produces `k ≤ 8`.
pub fn hermite(k: usize, z: f64) -> f64 {
    let mut prev = 1.0; // He_0
    if k == 0 {
        return prev;
    }
    let mut cur = z; // He_1
    for j in 1..k {
        let next = z * cur - j as f64 * prev;
        prev = cur;
        cur = next;
    }
    cur
}

/// Monomial coefficients `[a_0, …, a_k]` of `He_k(z) = Σ_m a_m z^m`.
///
/// Built from the same recurrence applied to coefficient vectors:
/// `a^{(k+1)}_m = a^{(k)}_{m−1} − k·a^{(k−1)}_m`. All coefficients are integers, exact in `f64`
/// for `k ≤ 20` or so (`|a_m| < 2^53`).
pub fn hermite_coefficients(k: usize) -> Vec<f64> {
    let mut prev = vec![1.0];
    if k == 0 {
        return prev;
    }
    let mut cur = vec![0.0, 1.0];
    for j in 1..k {
        let mut next = vec![0.0; j + 2];
        for (m, &c) in cur.iter().enumerate() {
            next[m + 1] += c;
        }
        for (m, &c) in prev.iter().enumerate() {
            next[m] -= j as f64 * c;
        }
        prev = cur;
        cur = next;
    }
    cur
}

/// Gaussian monomial moment `E[z^k]` for `z ~ N(0, 1)`.
///
/// `E[z^k] = 0` for odd `k` and `E[z^k] = (k − 1)!! = 1·3·5·…·(k − 1)` for even `k`
/// (`E[z^0] = 1`). Overflows to `+∞` only for `k > 300` or so.
pub fn gaussian_moment(k: usize) -> f64 {
    if k % 2 == 1 {
        return 0.0;
    }
    (1..k).step_by(2).map(|j| j as f64).product()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_degrees_match_closed_forms() {
        for &z in &[-2.5, -1.0, 0.0, 0.3, 1.7, 4.0] {
            let z2 = z * z;
            assert_eq!(hermite(0, z), 1.0);
            assert_eq!(hermite(1, z), z);
            assert!((hermite(2, z) - (z2 - 1.0)).abs() < 1e-12);
            assert!((hermite(3, z) - (z2 * z - 3.0 * z)).abs() < 1e-12);
            assert!((hermite(4, z) - (z2 * z2 - 6.0 * z2 + 3.0)).abs() < 1e-12);
        }
    }

    #[test]
    fn coefficients_agree_with_recurrence() {
        for k in 0..=12 {
            let c = hermite_coefficients(k);
            assert_eq!(c.len(), k + 1);
            for &z in &[-3.0, -0.7, 0.0, 0.4, 2.2] {
                let poly: f64 = c.iter().rev().fold(0.0, |acc, &a| acc * z + a);
                let h = hermite(k, z);
                assert!((poly - h).abs() <= 1e-9 * (1.0 + h.abs()), "k={k} z={z}");
            }
        }
        assert_eq!(hermite_coefficients(4), vec![3.0, 0.0, -6.0, 0.0, 1.0]);
    }

    #[test]
    fn gaussian_moments_are_double_factorials() {
        assert_eq!(gaussian_moment(0), 1.0);
        assert_eq!(gaussian_moment(1), 0.0);
        assert_eq!(gaussian_moment(2), 1.0);
        assert_eq!(gaussian_moment(4), 3.0);
        assert_eq!(gaussian_moment(6), 15.0);
        assert_eq!(gaussian_moment(8), 105.0);
        assert_eq!(gaussian_moment(7), 0.0);
    }
}
