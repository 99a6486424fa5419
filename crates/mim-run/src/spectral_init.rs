//! `method = "spectral_init"`: the first layer taken from a spectral estimator instead of
//! stage-1 GD, then the usual stage 2. It asks how much of the network's result is the
//! subspace alone: with the same T (`spectral.T = "loss"`), the network's stage 1 is power
//! iteration on the same Σ̂_T (paper §4), so the two should agree once T1 is large enough.
//!
//! Given the k eigenvectors V (k×d) of Σ̂_T = (1/n1) Σ T(y_i)(x_i x_iᵀ − I) on D1, row j of W is
//!
//! ```text
//! w_j = v̂_j / ‖v̂_j‖,   v̂_j = Vᵀ c_j / ‖c_j‖ + ε g_j,   c_j ~ N(0, I_k),  g_j ~ N(0, I_d / d)
//! ```
//!
//! so every neuron points in a random direction inside span(V) (a readout on a k-dimensional
//! subspace needs many directions in it), perturbed by isotropic noise of relative size
//! ε = `spectral.init_noise`. The draws come from the run's `Init` seed stream.

use mim_model::set_norm;
use mim_spectral::Spectrum;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// The m×d first layer (row-major) built from `spectrum` as in the module docs.
pub fn spectral_rows(spectrum: &Spectrum, m: usize, noise: f64, seed: u64) -> Vec<f64> {
    let (d, k) = (spectrum.d, spectrum.k());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w = vec![0.0f64; m * d];
    let g_scale = 1.0 / (d as f64).sqrt();
    for row in w.chunks_exact_mut(d) {
        let mut c: Vec<f64> = (0..k).map(|_| StandardNormal.sample(&mut rng)).collect();
        set_norm(&mut c, 1.0);
        for (i, ci) in c.iter().enumerate() {
            for (wv, vv) in row.iter_mut().zip(spectrum.eigenvector(i)) {
                *wv += ci * vv;
            }
        }
        if noise > 0.0 {
            for wv in row.iter_mut() {
                let g: f64 = StandardNormal.sample(&mut rng);
                *wv += noise * g_scale * g;
            }
        }
        set_norm(row, 1.0);
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use mim_spectral::{Method, Order};

    fn spectrum(d: usize, vectors: Vec<f64>) -> Spectrum {
        let k = vectors.len() / d;
        Spectrum {
            d,
            eigenvalues: vec![1.0; k],
            eigenvectors: vectors,
            indices: (0..k).collect(),
            bulk_edge: None,
            order: Order::Largest,
            method: Method::Dense,
            iterations: 0,
            max_residual: 0.0,
            converged: true,
            mean_t: 0.0,
        }
    }

    #[test]
    fn rows_are_unit_and_inside_the_span_without_noise() {
        let d = 6;
        // span(e0, e1)
        let mut v = vec![0.0; 2 * d];
        v[0] = 1.0;
        v[d + 1] = 1.0;
        let w = spectral_rows(&spectrum(d, v), 8, 0.0, 3);
        for row in w.chunks_exact(d) {
            let norm2: f64 = row.iter().map(|x| x * x).sum();
            assert!((norm2 - 1.0).abs() < 1e-12);
            assert!(row[2..].iter().all(|&x| x == 0.0), "{row:?}");
        }
        // Different neurons point in different directions of the span.
        assert!((w[0] - w[d]).abs() > 1e-6);
    }

    #[test]
    fn noise_leaves_the_span_by_about_its_size() {
        let d = 400;
        let w = spectral_rows(&spectrum(d, v_e0(d)), 200, 0.5, 1);
        // ρ_j = |w_j0| = 1/√(1 + ε²) up to the noise's projection on e0 and its norm spread.
        let rho: f64 = w.chunks_exact(d).map(|r| r[0].abs()).sum::<f64>() / 200.0;
        assert!((rho - 1.0 / 1.25f64.sqrt()).abs() < 0.02, "{rho}");
        let again = spectral_rows(&spectrum(d, v_e0(d)), 200, 0.5, 1);
        assert_eq!(w, again, "same seed, same rows");
    }

    fn v_e0(d: usize) -> Vec<f64> {
        let mut v = vec![0.0; d];
        v[0] = 1.0;
        v
    }
}
