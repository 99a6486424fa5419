//! `method = "spectral_init"`: the first layer taken from a spectral estimator instead of
//! stage-1 GD, then the usual stage 2. It asks how much of the network's result is the
//! subspace alone: with the same T (`spectral.T = "loss"`), the network's stage 1 is power
//! iteration on the same Σ̂_T (paper §4), so the two should agree once T1 is large enough.
//! For `loss:*` the estimator's matrix is by default the one stage 1 and the power-iteration
//! metric iterate, Σ̂_T = (1/n1) Σ T(y_i) x_i x_iᵀ with no identity shift
//! (`spectral.shift = "none"`), and `order = "abs"` takes its largest |λ|, the end power
//! iteration with β1 = 1/η1 converges to (test
//! `tests::twin_takes_the_vector_power_iteration_converges_to`).
//!
//! Given the k eigenvectors V (k×d) of Σ̂_T on D1, row j of W is
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
            shift: mim_spectral::Shift::None,
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

    /// Issue 16: the twin (`[spectral]` defaults: T = the stage-1 loss, order `auto`, shift
    /// `auto`) takes the vector that the power-iteration metric converges to (β1 = 1/η1, the
    /// paper's stage 1), also when mean(T) ≠ 0. Labels y = 3 + 0.5·He2(x_1) − He2(x_2) + noise,
    /// uncentred (`stage1.center_labels = false`), square loss: T = y, mean(T) ≈ 3, and
    /// (1/n) Σ T x xᵀ ≈ 3I + e1e1ᵀ − 2e2e2ᵀ has eigenvalues ≈ 4 (e1), 3 (bulk), 1 (e2). Power
    /// iteration amplifies the largest |λ|, e1. The classical shifted matrix (eigenvalues ≈ 1,
    /// 0 and −2) puts the largest |λ| at e2: before this fix the twin took e2 (|cos| ≈ 1e-16
    /// with the iterates); `spectral.shift = "mean"` still gives that classical estimator.
    #[test]
    fn twin_takes_the_vector_power_iteration_converges_to() {
        use burn::tensor::{Device, Tensor};
        use mim_metrics::PowerIteration;
        use mim_model::{from_host_1d, from_host_2d, Precision};
        use mim_spectral::{Shift, ShiftChoice, SpectralConfig};

        let (n, d, m) = (4000, 20, 6);
        let mut rng = ChaCha8Rng::seed_from_u64(16);
        let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
        let x: Vec<f64> = (0..n * d).map(|_| normal()).collect();
        let y: Vec<f64> = x
            .chunks_exact(d)
            .map(|r| 3.0 + 0.5 * (r[0] * r[0] - 1.0) - (r[1] * r[1] - 1.0) + 0.3 * normal())
            .collect();
        let stage1 = mim_train::Stage1Config {
            loss: mim_train::LossName::Square,
            center_labels: false,
            ..Default::default()
        };
        let estimate = |shift| {
            let section = SpectralConfig {
                shift,
                ..Default::default()
            };
            let rs = section.resolve(1, d, &stage1.labels()).unwrap();
            (rs.shift, rs.estimate(&x, &y, d).unwrap())
        };
        let (shift, twin) = estimate(ShiftChoice::Auto);
        assert_eq!((shift, twin.order), (Shift::None, Order::Abs));
        assert!((twin.mean_t - 3.0).abs() < 0.1, "mean(T) = {}", twin.mean_t);
        let (_, classical) = estimate(ShiftChoice::Mean);

        // The power-iteration metric exactly as `mim train` sets it up: T from the stage-1
        // labels, β1 = 1/η1, rows with a = ±1, many iterates.
        let loss = stage1.loss();
        let c = mim_train::label_shift(&y, stage1.centering(), &loss);
        let t: Vec<f64> = mim_train::stage1_labels(&x, &y, d, c, stage1.remove_linear)
            .iter()
            .map(|&v| loss.label_transform(v))
            .collect();
        let (device, p) = (Device::default(), Precision::F64);
        let a: Vec<f64> = (0..m).map(|j| if j < m / 2 { 1.0 } else { -1.0 }).collect();
        let w0: Vec<f64> = (0..m * d).map(|_| normal()).collect();
        let mut power = PowerIteration::new(
            from_host_2d(&x, n, d, &device, p),
            from_host_1d(&t, &device, p),
            from_host_1d(&a, &device, p),
            from_host_2d(&w0, m, d, &device, p),
            (1.0, 1.0),
            true,
            None,
        );
        (0..300).for_each(|_| power.step());
        // |cos| of every iterate with a spectrum's top vector.
        let cosines = |v: &[f64]| -> Vec<f64> {
            let rows: Vec<f64> = (0..m).flat_map(|_| v.iter().copied()).collect();
            let w: Tensor<2> = from_host_2d(&rows, m, d, &device, p);
            mim_model::to_host(power.cosines(&w))
                .iter()
                .map(|c| c.abs())
                .collect()
        };
        let with_twin = cosines(twin.eigenvector(0));
        assert!(with_twin.iter().all(|&c| c > 0.99), "twin: {with_twin:?}");
        let with_classical = cosines(classical.eigenvector(0));
        assert!(
            with_classical.iter().all(|&c| c < 0.2),
            "classical: {with_classical:?}"
        );
        // The twin's eigenvalue is the unshifted one (≈ 4), the classical one ≈ −2.
        assert!(
            (twin.eigenvalues[0] - 4.0).abs() < 0.3,
            "{:?}",
            twin.eigenvalues
        );
        assert!(
            (classical.eigenvalues[0] + 2.0).abs() < 0.3,
            "{:?}",
            classical.eigenvalues
        );
    }
}
