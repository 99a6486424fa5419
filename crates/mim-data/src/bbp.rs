//! BBP bookkeeping for a [`Hierarchical`] target (seed 003 §1.3, §1.5; tagged \[I\] there: a
//! reconstruction, checked against simulation, not the paper's stated constants).
//!
//! For `y = s·Σ_k a_k φ(z_k) + σ ξ` (`Σ a_k² = 1`, unit-variance `φ` with `μ₂ = E[φ(z)He₂(z)]`)
//! the matrix `M = (1/n) Σ_i y_i (x_i x_iᵀ − I)` has population spikes `s·a_k μ₂` along `u_k` and a
//! Wigner-like bulk. Direction `k` separates from the bulk at `α = n/d` above
//!
//! ```text
//!   α_k = E[y²] / (μ₂² s² a_k²),   E[y²] = s² + σ²,
//! ```
//!
//! and then its squared projection on the learned span is `π_k ≈ 1 − α_k/α` (`0` below). The
//! weighted subspace error is `E_th(α) = Σ_k a_k² min(1, α_k/α) / Σ_k a_k²`, and
//! `k★(α) = #{k : α_k < α}`. With `γ > 1/2` and `1 ≪ k★ ≪ K`, `E_th ∝ α^{−(1 − 1/(2γ))}`.

use crate::Hierarchical;

/// Per-direction BBP thresholds and the weights `a_k² / Σ a²` of a hierarchical target.
#[derive(Clone, Debug, PartialEq)]
pub struct Bbp {
    /// `α_k`, k = 1..K (index 0 is k = 1); `+∞` when `μ₂ = 0` (nothing is detectable).
    pub alpha_k: Vec<f64>,
    /// `a_k² / Σ_j a_j²`, k = 1..K.
    pub weights: Vec<f64>,
}

impl Bbp {
    /// The thresholds of `h` for labels `y = scale·g + noise·ξ`.
    pub fn new(h: &Hierarchical, scale: f64, noise: f64) -> Bbp {
        let a = h.coefficients();
        let total: f64 = a.iter().map(|v| v * v).sum();
        let ey2 = scale * scale * total + noise * noise;
        let mu2 = h.mu2();
        let alpha_k = a
            .iter()
            .map(|ak| {
                let spike = (mu2 * scale * ak).powi(2);
                if spike > 0.0 {
                    ey2 / spike
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        let weights = a.iter().map(|v| v * v / total).collect();
        Bbp { alpha_k, weights }
    }

    /// `π_k(α) = max(0, 1 − α_k/α)` for every k.
    pub fn projection(&self, alpha: f64) -> Vec<f64> {
        self.alpha_k
            .iter()
            .map(|&ak| (1.0 - ak / alpha).max(0.0))
            .collect()
    }

    /// `E_th(α) = Σ_k w_k min(1, α_k/α)` (weights normalised to sum 1).
    pub fn subspace_error(&self, alpha: f64) -> f64 {
        self.alpha_k
            .iter()
            .zip(&self.weights)
            .map(|(&ak, w)| w * (ak / alpha).min(1.0))
            .sum()
    }

    /// `k★(α) = #{k : α_k < α}`.
    pub fn detectable(&self, alpha: f64) -> usize {
        self.alpha_k.iter().filter(|&&ak| ak < alpha).count()
    }

    /// `#{k : π_k(α) > 1/2} = #{k : α > 2α_k}`, the theory value of `directions_recovered`.
    pub fn recovered(&self, alpha: f64) -> usize {
        self.alpha_k.iter().filter(|&&ak| alpha > 2.0 * ak).count()
    }

    /// The asymptotic power-law exponent of `E_th` for `1 ≪ k★ ≪ K`: `−(1 − 1/(2γ))` for
    /// `γ > 1/2` (`None` otherwise: the tail mass dominates and there is no clean power law).
    pub fn predicted_slope(gamma: f64) -> Option<f64> {
        (gamma > 0.5).then(|| -(1.0 - 1.0 / (2.0 * gamma)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Link;

    fn hier(s: &str) -> Hierarchical {
        *s.parse::<Link>().unwrap().hierarchical().unwrap()
    }

    /// seed003.md §5.0: α_k ≈ 0.81 k² for K = 30, γ = 1, g = h2, no noise.
    #[test]
    fn thresholds_match_the_spec() {
        let b = Bbp::new(&hier("hierarchical(K=30, gamma=1, g=h2)"), 1.0, 0.0);
        let z2: f64 = 1.0 / (1..=30).map(|k| (k as f64).powi(-2)).sum::<f64>();
        for (i, ak) in b.alpha_k.iter().enumerate() {
            let k = (i + 1) as f64;
            // α_k = 1/(2 a_k²) = k²/(2 Z²).
            assert!((ak - k * k / (2.0 * z2)).abs() < 1e-9 * ak, "{k}: {ak}");
        }
        assert!((b.alpha_k[0] - 0.806).abs() < 1e-3, "{}", b.alpha_k[0]);
        // Noise adds to E[y²]: α_k scales by (1 + σ²).
        let noisy = Bbp::new(&hier("hierarchical(K=30, gamma=1, g=h2)"), 1.0, 0.5);
        assert!((noisy.alpha_k[4] / b.alpha_k[4] - 1.25).abs() < 1e-12);
    }

    /// §5.0's E_th column (d = 300, K = p = 30): 0.306 at α = 10, 0.089 at α = 100, 0.015 at
    /// α = 1000.
    #[test]
    fn subspace_error_matches_the_spec_table() {
        let b = Bbp::new(&hier("hierarchical(K=30, gamma=1, g=h2)"), 1.0, 0.0);
        for (alpha, want) in [(10.0, 0.306), (100.0, 0.089), (1000.0, 0.0150)] {
            let e = b.subspace_error(alpha);
            assert!((e - want).abs() < 0.0015, "α = {alpha}: {e} vs {want}");
        }
        // Below α_1 nothing is learned; far above α_K the error is Σ α_k/α · w_k ∝ 1/α.
        assert!((b.subspace_error(0.5) - 1.0).abs() < 1e-12);
        let (e1, e2) = (b.subspace_error(1e5), b.subspace_error(2e5));
        assert!((e1 / e2 - 2.0).abs() < 1e-9);
        assert_eq!(b.recovered(100.0), 7);
        assert_eq!(b.detectable(100.0), 11);
        let pi = b.projection(100.0);
        assert!((pi[0] - (1.0 - b.alpha_k[0] / 100.0)).abs() < 1e-15 && pi[29] == 0.0);
    }

    /// The local log-log slope of E_th approaches −(1 − 1/(2γ)) inside the window 1 ≪ k★ ≪ K.
    #[test]
    fn slope_approaches_the_power_law() {
        for gamma in [0.75, 1.0, 1.5] {
            let b = Bbp::new(
                &hier(&format!("hierarchical(K=10000, gamma={gamma}, g=h2)")),
                1.0,
                0.0,
            );
            // α with k★ ≈ 100: α ≈ α_100.
            let alpha = b.alpha_k[99];
            let slope =
                (b.subspace_error(2.0 * alpha).ln() - b.subspace_error(alpha).ln()) / 2f64.ln();
            let want = Bbp::predicted_slope(gamma).unwrap();
            assert!(
                (slope - want).abs() < 0.03,
                "γ = {gamma}: {slope} vs {want}"
            );
        }
        assert_eq!(Bbp::predicted_slope(0.5), None);
    }

    /// μ₂ = 0 (g = h4): no direction is ever detectable.
    #[test]
    fn negative_control_never_detects() {
        let b = Bbp::new(&hier("hierarchical(K=5, gamma=1, g=h4)"), 1.0, 0.0);
        assert!(b.alpha_k.iter().all(|a| a.is_infinite()));
        assert_eq!(b.subspace_error(1e9), 1.0);
        assert_eq!(b.recovered(1e9), 0);
    }
}
