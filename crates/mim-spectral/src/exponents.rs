//! Information and generative exponents of a single-index link (seed 004 §1.2–1.5).
//!
//! For `y = s·g(z) + σ ξ`, `z, ξ ~ N(0, 1)`, with `h_k = He_k/√k!`:
//!
//! - information exponent `k* = min{k : c_k ≠ 0}`, `c_k = E[y h_k(z)]` (CSQ methods);
//! - generative exponent `s* = min{k : λ_k² > 0}`, `λ_k² = E_y[ζ_k(y)²]`, `ζ_k(y) = E[h_k(z) | y]`
//!   (SQ methods; `s* ≤ k*`, and `ζ_{s*}` is the optimal label transformation).
//!
//! Computed without Monte Carlo in z: a fine Riemann grid of z on [−L, L] with Gaussian weights
//! (times Gauss–Hermite nodes in ξ when σ > 0). `c_k` is a weighted sum. `λ_k²` groups the
//! atoms by label — exactly by value when the labels take at most [`MAX_LEVELS`] values
//! (binary links), else in `B` equal-weight quantile bins of y — and is **cross-fitted**:
//! `λ̂_k² = Σ_b p_b m_b^A m_b^B` with `m_b^A`, `m_b^B` the bin means of `h_k` over two
//! interleaved halves of the z grid. Nothing here is random, so its standard error is a
//! discretisation error: half the gap between the two within-half estimates `Σ_b p_b (m_b^A)²`
//! and `Σ_b p_b (m_b^B)²`, plus the change when the bins are made 4× coarser (binning
//! resolution). For `c_k` it is the change between the full z grid and every other point. A
//! coefficient counts as non-zero above `max(5·SE, 1e-4)`.

use mim_data::{hermite, Link};
use serde::Serialize;

/// Degrees examined: k = 1..=MAX_DEGREE.
pub const MAX_DEGREE: usize = 8;
/// Labels with at most this many distinct values are grouped exactly.
pub const MAX_LEVELS: usize = 16;
/// z grid half-width and points.
const Z_MAX: f64 = 9.0;
const Z_POINTS: usize = 200_001;
/// Quantile bins of y for continuous labels.
const BINS: usize = 2000;
/// Absolute floor below which a coefficient counts as zero (quadrature/binning resolution).
const TOL: f64 = 1e-4;

/// One estimated coefficient with its standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Coefficient {
    /// Degree k.
    pub k: usize,
    /// The estimate.
    pub value: f64,
    /// Its standard error.
    pub se: f64,
}

impl Coefficient {
    /// Non-zero: |value| above max(5·SE, tol).
    pub fn nonzero(&self) -> bool {
        self.value.abs() > (5.0 * self.se).max(TOL)
    }
}

/// The exponents and the coefficients they were read from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Exponents {
    /// k* (None: none up to [`MAX_DEGREE`]).
    pub information_exponent: Option<usize>,
    /// s* (None: none up to [`MAX_DEGREE`]).
    pub generative_exponent: Option<usize>,
    /// c_k = E[y h_k(z)], k = 1..=8.
    pub hermite_coefficients: Vec<Coefficient>,
    /// λ_k² = E[E[h_k(z) | y]²], k = 1..=8.
    pub generative_coefficients: Vec<Coefficient>,
    /// `"exact grouping"` (few label values) or `"quantile bins"`.
    pub label_grouping: String,
}

/// Atoms (z, y, weight) of the joint law on the grid.
fn atoms(link: &Link, scale: f64, noise: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let dz = 2.0 * Z_MAX / (Z_POINTS - 1) as f64;
    let (xi, wxi): (Vec<f64>, Vec<f64>) = if noise > 0.0 {
        gauss_hermite_probabilists(24)
    } else {
        (vec![0.0], vec![1.0])
    };
    let mut z = Vec::with_capacity(Z_POINTS * xi.len());
    let mut y = Vec::with_capacity(z.capacity());
    let mut w = Vec::with_capacity(z.capacity());
    for i in 0..Z_POINTS {
        let zi = -Z_MAX + i as f64 * dz;
        let gi = scale * link.eval(&[zi]);
        let wz = (-0.5 * zi * zi).exp();
        for (x, wx) in xi.iter().zip(&wxi) {
            z.push(zi);
            y.push(gi + noise * x);
            w.push(wz * wx);
        }
    }
    let total: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= total);
    (z, y, w)
}

/// Nodes and weights (summing to 1) of the n-point Gauss–Hermite rule for N(0, 1), by the
/// Golub–Welsch eigenproblem of the probabilists' Jacobi matrix.
fn gauss_hermite_probabilists(n: usize) -> (Vec<f64>, Vec<f64>) {
    let jac = faer::Mat::<f64>::from_fn(n, n, |i, j| {
        if i.abs_diff(j) == 1 {
            (i.max(j) as f64).sqrt()
        } else {
            0.0
        }
    });
    let evd = jac
        .self_adjoint_eigen(faer::Side::Lower)
        .expect("symmetric tridiagonal eigenproblem");
    let (u, s) = (evd.U(), evd.S().column_vector());
    let nodes: Vec<f64> = (0..n).map(|i| s[i]).collect();
    let weights: Vec<f64> = (0..n).map(|i| u[(0, i)] * u[(0, i)]).collect();
    (nodes, weights)
}

/// h_k(z) = He_k(z)/√k!.
fn h(k: usize, z: f64) -> f64 {
    let fact: f64 = (1..=k).map(|v| v as f64).product();
    hermite(k, z) / fact.sqrt()
}

/// λ̂² and its SE from a grouping of the atoms into `groups` (label → group index).
/// `hk[i]` = h_k(z_i) for every atom; `step` atoms per z-grid point.
fn cross_fitted(hk: &[f64], step: usize, w: &[f64], group: &[usize], groups: usize) -> (f64, f64) {
    // Per group and half: Σ w, Σ w h_k.
    let mut acc = vec![[0.0f64; 4]; groups];
    for (i, (&hi, &wi)) in hk.iter().zip(w).enumerate() {
        // Halves: alternate z-grid points (all noise nodes of a point stay together).
        let half = (i / step) % 2;
        let a = &mut acc[group[i]];
        a[2 * half] += wi;
        a[2 * half + 1] += wi * hi;
    }
    // Cross-fitted estimate, and the two within-half estimates whose gap measures the
    // quadrature error.
    let (mut est, mut only_a, mut only_b) = (0.0, 0.0, 0.0);
    for a in acc.iter().filter(|a| a[0] > 0.0 && a[2] > 0.0) {
        let (ma, mb, p) = (a[1] / a[0], a[3] / a[2], a[0] + a[2]);
        est += p * ma * mb;
        only_a += p * ma * ma;
        only_b += p * mb * mb;
    }
    (est, 0.5 * (only_a - only_b).abs())
}

/// Atoms per z-grid point (1, or the Gauss–Hermite nodes of the noise).
fn atoms_per_point(z: &[f64]) -> usize {
    z.len() / Z_POINTS
}

/// Groups the atoms: exactly by value (≤ [`MAX_LEVELS`] distinct labels), else into `bins`
/// equal-weight quantile bins of y. Returns (group per atom, number of groups, exact?).
fn grouping(y: &[f64], w: &[f64], bins: usize) -> (Vec<usize>, usize, bool) {
    let mut levels: Vec<f64> = Vec::new();
    for &v in y {
        if !levels.contains(&v) {
            levels.push(v);
            if levels.len() > MAX_LEVELS {
                break;
            }
        }
    }
    if levels.len() <= MAX_LEVELS {
        let g = y
            .iter()
            .map(|v| levels.iter().position(|l| l == v).expect("level"))
            .collect();
        return (g, levels.len(), true);
    }
    let mut order: Vec<usize> = (0..y.len()).collect();
    order.sort_by(|&a, &b| y[a].total_cmp(&y[b]));
    let mut g = vec![0; y.len()];
    let mut cum = 0.0;
    for &i in &order {
        g[i] = ((cum * bins as f64) as usize).min(bins - 1);
        cum += w[i];
    }
    (g, bins, false)
}

/// k*, s* and their coefficients for `y = scale·g(z1) + noise·ξ` (r = 1 links). Errors (one
/// line) for a link of more than one index or constant labels.
pub fn exponents(link: &Link, scale: f64, noise: f64) -> Result<Exponents, String> {
    link.check_indices(1)
        .map_err(|e| format!("exponents need a single-index link (r = 1): {e}"))?;
    let (z, y, w) = atoms(link, scale, noise);
    let mean: f64 = y.iter().zip(&w).map(|(y, w)| y * w).sum();
    let var: f64 = y.iter().zip(&w).map(|(y, w)| w * (y - mean).powi(2)).sum();
    if var.is_nan() || var <= 1e-12 {
        return Err(format!(
            "data.link = {link}: the labels are constant (Var y = {var:.1e}), so no exponent can be estimated"
        ));
    }
    let sd = var.sqrt();
    // c_k, with the change between the full grid and every other z point as its error.
    let step = atoms_per_point(&z);
    let hermite_coefficients = (1..=MAX_DEGREE)
        .map(|k| {
            let full: f64 = z
                .iter()
                .zip(&y)
                .zip(&w)
                .map(|((z, y), w)| w * y * h(k, *z))
                .sum();
            let (mut half, mut wsum) = (0.0, 0.0);
            for (i, ((z, y), w)) in z.iter().zip(&y).zip(&w).enumerate() {
                if (i / step).is_multiple_of(2) {
                    half += w * y * h(k, *z);
                    wsum += w;
                }
            }
            Coefficient {
                k,
                value: full / sd,
                se: (full - half / wsum).abs() / sd,
            }
        })
        .collect::<Vec<_>>();
    let (fine, groups, exact) = grouping(&y, &w, BINS);
    let coarse = (!exact).then(|| grouping(&y, &w, BINS / 4));
    let generative_coefficients = (1..=MAX_DEGREE)
        .map(|k| {
            // h_k at every atom once, for the fine and the coarse grouping.
            let hk: Vec<f64> = z.iter().map(|&zi| h(k, zi)).collect();
            let (value, se) = cross_fitted(&hk, step, &w, &fine, groups);
            let resolution = coarse
                .as_ref()
                .map(|(g, n, _)| (cross_fitted(&hk, step, &w, g, *n).0 - value).abs())
                .unwrap_or(0.0);
            Coefficient {
                k,
                value,
                se: se + resolution,
            }
        })
        .collect::<Vec<_>>();
    let first = |c: &[Coefficient]| c.iter().find(|c| c.nonzero()).map(|c| c.k);
    Ok(Exponents {
        information_exponent: first(&hermite_coefficients),
        generative_exponent: first(&generative_coefficients),
        hermite_coefficients,
        generative_coefficients,
        label_grouping: if exact {
            "exact grouping".into()
        } else {
            "quantile bins".into()
        },
    })
}

/// The optimal label transformation of degree `k` (seed 004 §1.2): ζ_k(y) = E[h_k(z) | y]
/// for `y = scale·g(z1) + noise·ξ`, by quadrature over the same z grid as [`exponents`], as
/// a step function of y: `(edges, values, λ_k²)` with `values[i]` the mean of h_k(z) over
/// the atoms of the i-th label group (exact levels for ≤ [`MAX_LEVELS`] label values, else
/// `BINS` equal-weight quantile bins) and `edges` the ascending midpoints between
/// consecutive groups (`values.len() = edges.len() + 1`), and λ_k² cross-fitted as in
/// [`exponents`]. Errors (one line) for r > 1, constant labels, or a λ_k² that [`exponents`]
/// would call zero (ζ_k ≡ 0: degree k carries no signal for this link).
pub fn optimal_transform(
    link: &Link,
    scale: f64,
    noise: f64,
    k: usize,
) -> Result<(Vec<f64>, Vec<f64>, f64), String> {
    link.check_indices(1).map_err(|e| {
        format!("the optimal transformation needs a single-index link (r = 1): {e}")
    })?;
    let (z, y, w) = atoms(link, scale, noise);
    let (group, groups, _) = grouping(&y, &w, BINS);
    // h_k at every atom once: for the bin means and for the cross-fitted λ_k² below.
    let hk: Vec<f64> = z.iter().map(|&zi| h(k, zi)).collect();
    // Per group: Σ w, Σ w h_k, and the range of y.
    let mut acc = vec![(0.0f64, 0.0f64, f64::INFINITY, f64::NEG_INFINITY); groups];
    for (((&hi, &yi), &wi), &g) in hk.iter().zip(&y).zip(&w).zip(&group) {
        let a = &mut acc[g];
        a.0 += wi;
        a.1 += wi * hi;
        a.2 = a.2.min(yi);
        a.3 = a.3.max(yi);
    }
    let mut used: Vec<_> = acc.into_iter().filter(|a| a.0 > 0.0).collect();
    used.sort_by(|a, b| a.2.total_cmp(&b.2));
    if used.len() < 2 {
        return Err(format!(
            "data.link = {link}: the labels are constant, so no label transformation can be built"
        ));
    }
    let values: Vec<f64> = used.iter().map(|a| a.1 / a.0).collect();
    let edges: Vec<f64> = used.windows(2).map(|p| 0.5 * (p[0].3 + p[1].2)).collect();
    // Whether degree k carries signal: the cross-fitted λ_k² and the rule of [`exponents`]
    // (the in-sample Σ p m² is biased up by the bins that split tied labels).
    let (lambda2, se) = cross_fitted(&hk, atoms_per_point(&z), &w, &group, groups);
    if lambda2.is_nan()
        || !(Coefficient {
            k,
            value: lambda2,
            se,
        })
        .nonzero()
    {
        return Err(format!(
            "data.link = {link}: E[h_{k}(z) | y] = 0 (λ_{k}² = {lambda2:.1e}), so `auto` has nothing to \
             amplify at degree {k}: set the stage's `hermite` to the generative exponent s* (`mim theory`)"
        ));
    }
    Ok((edges, values, lambda2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(formula: &str, noise: f64) -> Exponents {
        exponents(&Link::parse(formula).unwrap(), 1.0, noise).unwrap()
    }

    fn lam(e: &Exponents, k: usize) -> f64 {
        e.generative_coefficients[k - 1].value
    }

    /// ζ_2 of the He4 link: its λ_2² matches [`exponents`]' cross-fitted value, it is even in z
    /// through y (the same value for the labels of z and −z), and its correlation with the
    /// label's own h_2 beats tanh(y)'s (it is the optimal transformation); degree 1 (E[h_1 | y]
    /// = 0 for an even link) is an error naming the fix, and so are constant labels.
    #[test]
    fn optimal_transform_of_he4_is_zeta_2() {
        let link = Link::parse("h4(z1)").unwrap();
        let (edges, values, l2) = optimal_transform(&link, 1.0, 0.0, 2).unwrap();
        assert_eq!(values.len(), edges.len() + 1);
        assert!(edges.windows(2).all(|p| p[0] <= p[1]));
        let e = exponents(&link, 1.0, 0.0).unwrap();
        assert!((l2 - lam(&e, 2)).abs() < 5e-3, "{l2} vs {}", lam(&e, 2));
        // E[ζ(y) h_2(z)] = λ_2² and E[ζ(y)²] = λ_2² on a midpoint rule in z; tanh(y)'s
        // normalised correlation with h_2 is smaller.
        let at = |y: f64| values[edges.partition_point(|&v| v < y).min(values.len() - 1)];
        let (mut zh, mut zz, mut th, mut tt, mut tm, mut wsum) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        let n = 40_000;
        for i in 0..n {
            let z = -8.0 + 16.0 * (i as f64 + 0.5) / n as f64;
            let w = (-0.5 * z * z).exp();
            let y = link.eval(&[z]);
            let (zeta, t) = (at(y), y.tanh());
            zh += w * zeta * h(2, z);
            zz += w * zeta * zeta;
            th += w * t * h(2, z);
            tt += w * t * t;
            tm += w * t;
            wsum += w;
        }
        let (zh, zz, th) = (zh / wsum, zz / wsum, th / wsum);
        let tvar = tt / wsum - (tm / wsum).powi(2);
        assert!(
            (zh - l2).abs() < 5e-3 && (zz - l2).abs() < 5e-3,
            "{zh} {zz} {l2}"
        );
        assert!(
            zh / zz.sqrt() > (th / tvar.sqrt()).abs() + 0.05,
            "{zh} {zz} vs {th} {tvar}"
        );
        let err = optimal_transform(&link, 1.0, 0.0, 1).unwrap_err();
        assert!(err.contains("hermite") && err.contains("λ_1²"), "{err}");
        let err = optimal_transform(&Link::parse("0*z1").unwrap(), 1.0, 0.0, 2).unwrap_err();
        assert!(err.contains("constant"), "{err}");
    }

    /// seed004.md §1.4: (k*, s*) and λ_k² for the table's links, to about 1e-2.
    #[test]
    fn exponents_of_the_spec_table() {
        let he3 = ex("h3(z1)", 0.0);
        assert_eq!(
            (he3.information_exponent, he3.generative_exponent),
            (Some(3), Some(1))
        );
        let he4 = ex("h4(z1)", 0.0);
        assert_eq!(
            (he4.information_exponent, he4.generative_exponent),
            (Some(4), Some(2))
        );
        assert!(
            (lam(&he4, 2) - 0.77).abs() < 0.02,
            "{:?}",
            he4.generative_coefficients
        );
        let sign = ex("sign(z1)", 0.0);
        assert_eq!(
            (sign.information_exponent, sign.generative_exponent),
            (Some(1), Some(1))
        );
        assert!((lam(&sign, 1) - 2.0 / std::f64::consts::PI).abs() < 1e-3);
        assert!((lam(&sign, 3) - 0.11).abs() < 0.01);
        assert_eq!(sign.label_grouping, "exact grouping");
        let abs = ex("abs(z1)", 0.0);
        assert_eq!(
            (abs.information_exponent, abs.generative_exponent),
            (Some(2), Some(2))
        );
        assert!((lam(&abs, 2) - 1.0).abs() < 0.02 && lam(&abs, 1).abs() < 2e-3);
        let cube = ex("z1^3", 0.0);
        assert_eq!(
            (cube.information_exponent, cube.generative_exponent),
            (Some(1), Some(1))
        );
    }

    /// The binary links of §1.4 with s* = k* = 3 and 4.
    #[test]
    fn binary_links_have_equal_exponents() {
        let bin3 = ex("sign(z1*(z1^2-1.3862943611198906))", 0.0);
        assert_eq!(
            (bin3.information_exponent, bin3.generative_exponent),
            (Some(3), Some(3))
        );
        assert!(
            (lam(&bin3, 3) - 0.204).abs() < 0.01,
            "{:?}",
            bin3.generative_coefficients
        );
        assert!((bin3.hermite_coefficients[2].value.abs() - 0.452).abs() < 0.01);
        let bin4 = ex("-sign((abs(z1)-0.5)*(abs(z1)-1.608311))", 0.0);
        assert_eq!(
            (bin4.information_exponent, bin4.generative_exponent),
            (Some(4), Some(4))
        );
        assert!(
            (lam(&bin4, 4) - 0.113).abs() < 0.01,
            "{:?}",
            bin4.generative_coefficients
        );
    }

    /// Additive noise shrinks λ_k² but keeps both exponents (He3 with σ = 0.5).
    #[test]
    fn noise_keeps_the_exponents() {
        let clean = ex("h3(z1)", 0.0);
        let noisy = exponents(&Link::parse("h3(z1)").unwrap(), 1.0 / 6f64.sqrt(), 0.5).unwrap();
        assert_eq!(
            (noisy.information_exponent, noisy.generative_exponent),
            (Some(3), Some(1))
        );
        assert!(lam(&noisy, 1) < lam(&clean, 1) && lam(&noisy, 1) > 0.05);
    }

    #[test]
    fn constant_labels_are_an_error() {
        let e = exponents(&Link::parse("0*z1").unwrap(), 1.0, 0.0).unwrap_err();
        assert!(e.contains("constant"), "{e}");
    }
}
