//! Theory for spectral estimators (paper §8), by deterministic quadrature.
//!
//! Notation: α = n/d, z ~ N(0, I_r), y = s·g(z) + σε (ε ~ N(0, 1)), G(y) = E[zzᵀ − I | y].
//!
//! **Fixed-T overlap (single index, Lu–Li 2017 / Mondelli–Montanari 2018).** Let
//! D = (1/n) Σ_i Z_i x_i x_iᵀ with Z = T(y), τ = sup Z > 0, and
//!
//! ```text
//! ψ_α(λ) = λ (1/α + E[Z/(λ − Z)]),      φ(λ) = λ E[Z z²/(λ − Z)],      λ > τ,
//! λ̄ = argmin_{λ>τ} ψ_α (ψ_α is convex there),  ζ_α(λ) = ψ_α(max(λ, λ̄)),
//! λ* = the solution of ζ_α(λ) = φ(λ) (λ > τ).
//! ```
//!
//! The G of φ is the projection z = ⟨u, x⟩ itself (φ weights Z by z², not by
//! E[z² − 1 | y]): this reproduces paper §8's Monte-Carlo values for T = 1 − 1/y on z²
//! (overlap² 0.23 at α = 1, 0.64 at α = 2; tested). Then, as n, d → ∞ with n/d = α,
//! (u·v₁)² → ψ'_α(λ*)/(ψ'_α(λ*) − φ'(λ*)) when ψ'_α(λ*) > 0 and → 0 otherwise; the top
//! eigenvalue of D → ζ_α(λ*) and the bulk edge → ψ_α(λ̄). Here
//! ψ'_α(λ) = 1/α − E[Z²/(λ − Z)²] and φ'(λ) = −E[Z² z²/(λ − Z)²]. D is the unshifted Σ̂_T
//! ([`Shift::None`]); the classical Σ̂_T = D − mean(Z)·I ([`Shift::Mean`]) has its eigenvalues
//! shifted by −E(Z). The bottom end is the same formula for −Z; `abs` takes the end whose
//! limit eigenvalue of the chosen matrix is larger in |·|.
//!
//! **Optimal weak-recovery threshold.** α_c⁻¹ = sup_{M ⪰ 0, ‖M‖_F = 1} ‖E_y[G(y) M G(y)]‖_F
//! (Troiani et al.; for r = 1: α_c = 1/E_y[(E[z² − 1 | y])²], Mondelli–Montanari). The map
//! M ↦ E[G M G] is self-adjoint and maps the PSD cone into itself, so the supremum is its
//! spectral radius, the largest |eigenvalue| of the r²×r² matrix E_y[G(y) ⊗ G(y)]. If
//! E[z | y] ≠ 0 the model has trivial (first-order) directions, learnable at any α > 0: then
//! α_c is reported as 0 ([`AlphaC::trivial`]).
//!
//! **Quadrature.** z on a composite Gauss–Legendre grid over [−9, 9]^r (Gaussian weights).
//! Noiseless: the grid atoms carry y = s·g(z); conditional expectations given y are taken on
//! bins of the atoms sorted by y (equal mass, never splitting equal y values), so α_c is a
//! slight underestimate that converges as the bins shrink; the reported error is the change
//! from 4× coarser bins. Noisy (σ > 0): ε is integrated analytically — on a y grid (panels
//! ≤ σ/4, split at T's breakpoints), p(y) = E_z[φ_σ(y − s·g(z))] and E[h(z) | y] are exact
//! Gaussian-kernel sums over the z grid; the reported error is the change from a 2× coarser
//! grid. Available: overlap for r = 1; α_c for r + (σ > 0) ≤ 3.

use crate::eigen::{Order, Shift};
use crate::error::SpectralError;
use mim_data::{gauss_legendre, Link, Loss};
use rayon::prelude::*;

/// Half-width of the z (and ε) integration range.
const Z_MAX: f64 = 9.0;
/// Gauss–Legendre nodes per panel.
const GL_POINTS: usize = 8;

/// Composite Gauss–Legendre nodes and weights over the panels between consecutive `edges`.
fn composite(edges: &[f64], points: usize) -> (Vec<f64>, Vec<f64>) {
    let (gx, gw) = gauss_legendre(points);
    let mut nodes = Vec::with_capacity(edges.len() * points);
    let mut weights = Vec::with_capacity(edges.len() * points);
    for e in edges.windows(2) {
        let (a, b) = (e[0], e[1]);
        if b <= a {
            continue;
        }
        let (mid, half) = (0.5 * (a + b), 0.5 * (b - a));
        for (x, w) in gx.iter().zip(&gw) {
            nodes.push(mid + half * x);
            weights.push(half * w);
        }
    }
    (nodes, weights)
}

/// 1-D standard-normal quadrature: `panels` equal panels over [−Z_MAX, Z_MAX].
fn normal_grid(panels: usize) -> (Vec<f64>, Vec<f64>) {
    let edges: Vec<f64> = (0..=panels)
        .map(|i| -Z_MAX + 2.0 * Z_MAX * i as f64 / panels as f64)
        .collect();
    let (z, w) = composite(&edges, GL_POINTS);
    let c = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
    let w: Vec<f64> = z
        .iter()
        .zip(&w)
        .map(|(z, w)| w * c * (-0.5 * z * z).exp())
        .collect();
    let total: f64 = w.iter().sum();
    (z, w.into_iter().map(|v| v / total).collect())
}

/// A discrete law of (y, E[z | y], E[zzᵀ | y]) atoms with weights summing to 1. Noiseless
/// laws hold the z-grid atoms themselves (E[· | atom] = the atom's own z), noisy laws hold a
/// y grid with exact conditional moments.
#[derive(Clone, Debug)]
pub struct Law {
    r: usize,
    w: Vec<f64>,
    y: Vec<f64>,
    /// n×r.
    m1: Vec<f64>,
    /// n×r×r.
    m2: Vec<f64>,
    conditional: bool,
}

/// Resolution of a law (the coarse one gives error estimates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    Fine,
    Coarse,
}

/// Panels per z dimension: (noiseless, noisy) by the number of z dimensions.
fn z_panels(r: usize, noisy: bool, res: Resolution) -> Option<usize> {
    let p = match (r, noisy) {
        (1, false) => 4096,
        (1, true) => 1024,
        (2, false) => 128,
        (2, true) => 32,
        (3, false) => 16,
        _ => return None,
    };
    Some(match res {
        Resolution::Fine => p,
        Resolution::Coarse => p / 2,
    })
}

impl Law {
    /// The law of a single-index target y = scale·g(z1) + noise·ε (`link` may only use z1).
    /// `breakpoints` (in y) are where the preprocessing to be integrated is discontinuous; the
    /// y grid of a noisy law is split there.
    pub fn single_index(
        link: &Link,
        scale: f64,
        noise: f64,
        breakpoints: &[f64],
    ) -> Result<Law, SpectralError> {
        link.check_indices(1)
            .map_err(|e| SpectralError::Input(format!("single-index theory needs r = 1: {e}")))?;
        Law::build(link, 1, scale, noise, breakpoints, Resolution::Fine)
    }

    fn build(
        link: &Link,
        r: usize,
        scale: f64,
        noise: f64,
        breakpoints: &[f64],
        res: Resolution,
    ) -> Result<Law, SpectralError> {
        let noisy = noise > 0.0;
        let panels = z_panels(r, noisy, res).ok_or_else(|| {
            SpectralError::Input(format!(
                "quadrature over {} dimensions (r = {r}{}) is not available",
                r + noisy as usize,
                if noisy { " plus the noise" } else { "" }
            ))
        })?;
        let (z1, w1) = normal_grid(panels);
        let m = z1.len();
        let count = m.pow(r as u32);
        // The z-grid atoms.
        let mut zs = vec![0.0; count * r];
        let mut ws = vec![0.0; count];
        let mut ys = vec![0.0; count];
        zs.par_chunks_mut(r)
            .zip(ws.par_iter_mut())
            .zip(ys.par_iter_mut())
            .enumerate()
            .for_each(|(idx, ((z, w), y))| {
                let mut rest = idx;
                *w = 1.0;
                for zk in z.iter_mut() {
                    let j = rest % m;
                    rest /= m;
                    *zk = z1[j];
                    *w *= w1[j];
                }
                *y = scale * link.eval(z);
            });
        if ys.iter().any(|v| !v.is_finite()) {
            return Err(SpectralError::Input(
                "the link is not finite on the quadrature grid".into(),
            ));
        }
        if !noisy {
            let m2 = zs
                .chunks_exact(r)
                .flat_map(|z| {
                    let z = z.to_vec();
                    (0..r * r).map(move |ij| z[ij / r] * z[ij % r])
                })
                .collect();
            return Ok(Law {
                r,
                w: ws,
                y: ys,
                m1: zs,
                m2,
                conditional: false,
            });
        }
        // Noisy: a y grid with exact Gaussian-kernel conditional moments.
        let mut order: Vec<usize> = (0..count).filter(|&i| ws[i] > 1e-300).collect();
        order.sort_by(|&a, &b| ys[a].total_cmp(&ys[b]));
        let gy: Vec<f64> = order.iter().map(|&i| ys[i]).collect();
        let (lo, hi) = (gy[0] - Z_MAX * noise, gy[gy.len() - 1] + Z_MAX * noise);
        let max_panels = match res {
            Resolution::Fine => 40_000,
            Resolution::Coarse => 20_000,
        };
        let step = match res {
            Resolution::Fine => noise / 4.0,
            Resolution::Coarse => noise / 2.0,
        };
        let panels_y = (((hi - lo) / step).ceil() as usize).clamp(8, max_panels);
        let mut edges: Vec<f64> = (0..=panels_y)
            .map(|i| lo + (hi - lo) * i as f64 / panels_y as f64)
            .collect();
        edges.extend(breakpoints.iter().copied().filter(|b| *b > lo && *b < hi));
        edges.sort_by(f64::total_cmp);
        edges.dedup();
        let (yn, yw) = composite(&edges, 4);
        let inv = 1.0 / (noise * (2.0 * std::f64::consts::PI).sqrt());
        let rows: Vec<(f64, f64, Vec<f64>, Vec<f64>)> = yn
            .par_iter()
            .zip(yw.par_iter())
            .filter_map(|(&y, &wy)| {
                let a = gy.partition_point(|&v| v < y - Z_MAX * noise);
                let b = gy.partition_point(|&v| v <= y + Z_MAX * noise);
                let mut p = 0.0;
                let mut s1 = vec![0.0; r];
                let mut s2 = vec![0.0; r * r];
                for &i in &order[a..b] {
                    let e = (y - ys[i]) / noise;
                    let k = ws[i] * inv * (-0.5 * e * e).exp();
                    p += k;
                    let z = &zs[i * r..(i + 1) * r];
                    for (s, zv) in s1.iter_mut().zip(z) {
                        *s += k * zv;
                    }
                    for (ij, s) in s2.iter_mut().enumerate() {
                        *s += k * z[ij / r] * z[ij % r];
                    }
                }
                (p > 1e-300).then(|| {
                    (
                        wy * p,
                        y,
                        s1.iter().map(|v| v / p).collect(),
                        s2.iter().map(|v| v / p).collect(),
                    )
                })
            })
            .collect();
        let total: f64 = rows.iter().map(|r| r.0).sum();
        let mut law = Law {
            r,
            w: Vec::with_capacity(rows.len()),
            y: Vec::with_capacity(rows.len()),
            m1: Vec::with_capacity(rows.len() * r),
            m2: Vec::with_capacity(rows.len() * r * r),
            conditional: true,
        };
        for (w, y, m1, m2) in rows {
            law.w.push(w / total);
            law.y.push(y);
            law.m1.extend(m1);
            law.m2.extend(m2);
        }
        Ok(law)
    }

    /// The mean label E(y).
    pub fn mean_y(&self) -> f64 {
        self.w.iter().zip(&self.y).map(|(w, y)| w * y).sum()
    }

    /// The population location of `loss`: the c with E[T(y − c)] = 0 ([`Loss::location`] on
    /// this law's atoms).
    pub fn location(&self, loss: &Loss) -> f64 {
        loss.location(&self.y, Some(&self.w))
    }

    /// The conditional law on `bins` bins of equal mass (atoms sorted by y; equal y values
    /// never split). Noisy laws are already conditional and returned as they are.
    fn binned(&self, bins: usize) -> Law {
        if self.conditional {
            return self.clone();
        }
        let r = self.r;
        let mut idx: Vec<usize> = (0..self.w.len()).filter(|&i| self.w[i] > 0.0).collect();
        idx.sort_by(|&a, &b| self.y[a].total_cmp(&self.y[b]));
        let target = 1.0 / bins as f64;
        let mut out = Law {
            r,
            w: vec![],
            y: vec![],
            m1: vec![],
            m2: vec![],
            conditional: true,
        };
        let (mut mass, mut sy) = (0.0, 0.0);
        let mut s1 = vec![0.0; r];
        let mut s2 = vec![0.0; r * r];
        for (pos, &i) in idx.iter().enumerate() {
            let w = self.w[i];
            mass += w;
            sy += w * self.y[i];
            for (s, v) in s1.iter_mut().zip(&self.m1[i * r..(i + 1) * r]) {
                *s += w * v;
            }
            for (s, v) in s2.iter_mut().zip(&self.m2[i * r * r..(i + 1) * r * r]) {
                *s += w * v;
            }
            let tie = idx
                .get(pos + 1)
                .is_some_and(|&j| (self.y[j] - self.y[i]).abs() <= 1e-12 * (1.0 + self.y[i].abs()));
            if (mass >= target && !tie) || pos + 1 == idx.len() {
                out.w.push(mass);
                out.y.push(sy / mass);
                out.m1.extend(s1.iter().map(|v| v / mass));
                out.m2.extend(s2.iter().map(|v| v / mass));
                (mass, sy) = (0.0, 0.0);
                s1.iter_mut().for_each(|v| *v = 0.0);
                s2.iter_mut().for_each(|v| *v = 0.0);
            }
        }
        out
    }

    /// (ρ, E‖E[z|y]‖²) of a conditional law: ρ = spectral radius of E[G ⊗ G].
    fn radius(&self) -> (f64, f64) {
        let r = self.r;
        let rr = r * r;
        let mut l = faer::Mat::<f64>::zeros(rr, rr);
        let mut first = 0.0;
        for (i, &w) in self.w.iter().enumerate() {
            let m1 = &self.m1[i * r..(i + 1) * r];
            first += w * m1.iter().map(|v| v * v).sum::<f64>();
            let g: Vec<f64> = (0..rr)
                .map(|ij| self.m2[i * rr + ij] - if ij / r == ij % r { 1.0 } else { 0.0 })
                .collect();
            // (G ⊗ G)[(a,b),(c,d)] = G[a,c] G[b,d]
            for a in 0..r {
                for b in 0..r {
                    for c in 0..r {
                        for dd in 0..r {
                            l[(a * r + b, c * r + dd)] += w * g[a * r + c] * g[b * r + dd];
                        }
                    }
                }
            }
        }
        let ev = l
            .self_adjoint_eigenvalues(faer::Side::Lower)
            .unwrap_or_default();
        (ev.iter().fold(0.0f64, |m, v| m.max(v.abs())), first)
    }

    /// Fixed-T spectral theory at sample ratio α for the `order` end of the `shift` matrix
    /// (single-index laws; the shift moves the eigenvalues, and so decides `abs`). `t` is
    /// applied to the raw label y (fold any centring into it).
    pub fn overlap(
        &self,
        t: &(dyn Fn(f64) -> f64 + Sync),
        alpha: f64,
        order: Order,
        shift: Shift,
    ) -> TheoryPoint {
        let atoms: Vec<(f64, f64, f64)> = self
            .w
            .iter()
            .zip(&self.y)
            .enumerate()
            .filter(|(_, (w, _))| **w > 0.0)
            .map(|(i, (w, y))| (*w, t(*y), self.m2[i * self.r * self.r]))
            .collect();
        let mean_z: f64 = match shift {
            Shift::None => 0.0,
            Shift::Mean => atoms.iter().map(|a| a.0 * a.1).sum(),
        };
        let top = end_theory(&atoms, alpha);
        let neg: Vec<(f64, f64, f64)> = atoms.iter().map(|&(w, z, g)| (w, -z, g)).collect();
        let bottom = end_theory(&neg, alpha);
        let top_point = TheoryPoint {
            alpha,
            overlap_sq: top.0,
            eigenvalue: top.1 - mean_z,
            bulk_edge: top.2 - mean_z,
            end: Order::Largest,
        };
        let bottom_point = TheoryPoint {
            alpha,
            overlap_sq: bottom.0,
            eigenvalue: -bottom.1 - mean_z,
            bulk_edge: -bottom.2 - mean_z,
            end: Order::Smallest,
        };
        match order {
            Order::Largest => top_point,
            Order::Smallest => bottom_point,
            Order::Abs => {
                // NaN (no eigenvalue at an end) loses the comparison.
                if bottom_point.eigenvalue.abs() > top_point.eigenvalue.abs()
                    || top_point.eigenvalue.is_nan()
                {
                    bottom_point
                } else {
                    top_point
                }
            }
        }
    }

    /// The fixed-T spectral weak-recovery threshold: the smallest α with overlap² > 0 at the
    /// `order` end of the `shift` matrix (bisection on a log scale over [10⁻³, 10⁴]); `None` if
    /// not reached.
    pub fn spectral_threshold(
        &self,
        t: &(dyn Fn(f64) -> f64 + Sync),
        order: Order,
        shift: Shift,
    ) -> Option<f64> {
        let ok = |a: f64| self.overlap(t, a, order, shift).overlap_sq > 1e-9;
        let (mut lo, mut hi) = (1e-3f64, 1e4f64);
        if ok(lo) {
            return Some(lo);
        }
        if !ok(hi) {
            return None;
        }
        for _ in 0..60 {
            let mid = (lo * hi).sqrt();
            if ok(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
            if hi / lo < 1.0 + 1e-6 {
                break;
            }
        }
        Some(hi)
    }
}

/// One end of the spectrum: (overlap², limit of the extreme eigenvalue of D, bulk edge of D)
/// for atoms (weight, Z, z²). `NaN` eigenvalues when sup Z ≤ 0.
fn end_theory(atoms: &[(f64, f64, f64)], alpha: f64) -> (f64, f64, f64) {
    let tau = atoms
        .iter()
        .filter(|a| a.0 > 1e-280)
        .map(|a| a.1)
        .fold(f64::NEG_INFINITY, f64::max);
    if tau.is_nan() || tau <= 0.0 {
        return (0.0, f64::NAN, f64::NAN);
    }
    let scale = atoms.iter().map(|a| a.1.abs()).fold(0.0, f64::max).max(tau);
    let sum =
        |f: &dyn Fn(f64, f64) -> f64| -> f64 { atoms.iter().map(|&(w, z, g)| w * f(z, g)).sum() };
    let psi = |l: f64| l * (1.0 / alpha + sum(&|z, _| z / (l - z)));
    let dpsi = |l: f64| 1.0 / alpha - sum(&|z, _| (z / (l - z)).powi(2));
    let phi = |l: f64| l * sum(&|z, g| z * g / (l - z));
    let dphi = |l: f64| -sum(&|z, g| (z / (l - z)).powi(2) * g);
    // λ̄: ψ' is increasing on (τ, ∞) and → 1/α > 0.
    let at = |e: f64| tau + scale * e;
    let mut e_lo = 1e-12;
    let lambda_bar = if dpsi(at(e_lo)) >= 0.0 {
        at(e_lo)
    } else {
        let mut e_hi = 1.0;
        while dpsi(at(e_hi)) < 0.0 && e_hi < 1e12 {
            e_lo = e_hi;
            e_hi *= 4.0;
        }
        for _ in 0..200 {
            let mid = (e_lo * e_hi).sqrt();
            if dpsi(at(mid)) < 0.0 {
                e_lo = mid;
            } else {
                e_hi = mid;
            }
            if e_hi / e_lo < 1.0 + 1e-13 {
                break;
            }
        }
        at(e_hi)
    };
    let edge = psi(lambda_bar);
    let zeta = |l: f64| psi(l.max(lambda_bar));
    let f = |l: f64| zeta(l) - phi(l);
    // The largest root of ζ − φ: scan a geometric grid from the top down.
    let grid: Vec<f64> = (-96..=96).map(|j| 10f64.powf(j as f64 / 8.0)).collect();
    let mut root = None;
    for pair in grid.windows(2).rev() {
        let (a, b) = (at(pair[0]), at(pair[1]));
        if f(a) <= 0.0 && f(b) > 0.0 {
            let (mut lo, mut hi) = (a, b);
            for _ in 0..200 {
                let mid = 0.5 * (lo + hi);
                if f(mid) <= 0.0 {
                    lo = mid;
                } else {
                    hi = mid;
                }
                if hi - lo <= 1e-14 * hi.abs() {
                    break;
                }
            }
            root = Some(0.5 * (lo + hi));
            break;
        }
    }
    match root {
        Some(l) if l > lambda_bar && dpsi(l) > 0.0 => {
            let (dp, df) = (dpsi(l), dphi(l));
            let q = dp / (dp - df);
            (q.clamp(0.0, 1.0), psi(l), edge)
        }
        _ => (0.0, edge, edge),
    }
}

/// One point of the fixed-T theory curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TheoryPoint {
    /// α = n/d.
    pub alpha: f64,
    /// Limit of (u·v)² for the top eigenvector at `end`.
    pub overlap_sq: f64,
    /// Limit of the extreme eigenvalue of Σ̂_T (shifted or not, as asked) at `end` (the
    /// outlier, or the bulk edge when there is none).
    pub eigenvalue: f64,
    /// Limit of the bulk edge of Σ̂_T at `end`.
    pub bulk_edge: f64,
    /// Which end: `Largest` or `Smallest` (for `Abs`, the end with the larger |eigenvalue|).
    pub end: Order,
}

/// The optimal weak-recovery threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlphaC {
    /// α_c (0 when trivial directions exist; +∞ when E[G ⊗ G] = 0).
    pub value: f64,
    /// Estimated quadrature error of `value` (change from a coarser resolution).
    pub error: f64,
    /// E[z | y] ≠ 0: some directions are learnable at any α > 0 (first-order signal).
    pub trivial: bool,
}

/// α_c of y = scale·g(z) + noise·ε, z ~ N(0, I_r), from paper §8's variational formula
/// (spectral radius of E_y[G(y) ⊗ G(y)]). Available for r ≤ 3 without noise and r ≤ 2 with;
/// otherwise [`SpectralError::Input`] says it is not available.
pub fn alpha_c(link: &Link, r: usize, scale: f64, noise: f64) -> Result<AlphaC, SpectralError> {
    link.check_indices(r)
        .map_err(|e| SpectralError::Input(e.to_string()))?;
    let noisy = noise > 0.0;
    let bins = match r {
        1 => 4000,
        2 => 2000,
        _ => 1000,
    };
    let fine = Law::build(link, r, scale, noise, &[], Resolution::Fine)?;
    let (rho, first) = fine.binned(bins).radius();
    let (rho_coarse, _) = if noisy {
        Law::build(link, r, scale, noise, &[], Resolution::Coarse)?.radius()
    } else {
        fine.binned(bins / 4).radius()
    };
    let value = if rho > 0.0 { 1.0 / rho } else { f64::INFINITY };
    let coarse = if rho_coarse > 0.0 {
        1.0 / rho_coarse
    } else {
        f64::INFINITY
    };
    let trivial = first > 1e-6;
    Ok(AlphaC {
        value: if trivial { 0.0 } else { value },
        error: if trivial { 0.0 } else { (value - coarse).abs() },
        trivial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::Preprocessing;

    fn link(s: &str) -> Link {
        Link::parse(s).unwrap()
    }

    #[test]
    fn alpha_c_of_phase_retrieval_is_one_half() {
        let a = alpha_c(&link("z1^2"), 1, 1.0, 0.0).unwrap();
        assert!((a.value - 0.5).abs() < 1e-3 && !a.trivial, "{a:?}");
        let a = alpha_c(&link("abs(z1)"), 1, 1.0, 0.0).unwrap();
        assert!((a.value - 0.5).abs() < 1e-3, "{a:?}");
        // Noise: paper §8 (Monte Carlo) 0.54 at σ = 0.5, 0.65 at σ = 1 (on y = z² + σε).
        let a = alpha_c(&link("z1^2"), 1, 1.0, 0.5).unwrap();
        assert!((a.value - 0.54).abs() < 0.02, "{a:?}");
        let a = alpha_c(&link("z1^2"), 1, 1.0, 1.0).unwrap();
        assert!((a.value - 0.65).abs() < 0.02, "{a:?}");
        // First-order signal: trivial.
        assert!(alpha_c(&link("h3(z1)"), 1, 1.0, 0.0).unwrap().trivial);
    }

    #[test]
    fn alpha_c_of_h4_and_multi_index_links() {
        let a = alpha_c(&link("h4(z1)"), 1, 1.0, 0.0).unwrap();
        assert!((a.value - 0.645).abs() < 0.02, "{a:?}");
        let a = alpha_c(&link("h2(z1)+h2(z2)"), 2, 1.0, 0.0).unwrap();
        assert!((a.value - 1.0).abs() < 0.03, "{a:?}");
        let a = alpha_c(&link("z1*z2"), 2, 1.0, 0.0).unwrap();
        assert!((a.value - 0.59).abs() < 0.03, "{a:?}");
        let a = alpha_c(&link("h4(z1)+h4(z2)"), 2, 1.0, 0.0).unwrap();
        assert!((a.value - 1.45).abs() < 0.06, "{a:?}");
        assert!(alpha_c(&link("z1*z2*z3*z4"), 4, 1.0, 0.0).is_err());
    }

    #[test]
    fn lal_overlap_matches_paper_values() {
        let law = Law::single_index(&link("z1^2"), 1.0, 0.0, &[]).unwrap();
        let t = |y: f64| Preprocessing::Lal.apply(y);
        let q1 = law.overlap(&t, 1.0, Order::Largest, Shift::Mean).overlap_sq;
        let q2 = law.overlap(&t, 2.0, Order::Largest, Shift::Mean).overlap_sq;
        let q0 = law
            .overlap(&t, 0.25, Order::Largest, Shift::Mean)
            .overlap_sq;
        assert!((q1 - 0.23).abs() < 0.03, "α=1: {q1}");
        assert!((q2 - 0.64).abs() < 0.03, "α=2: {q2}");
        assert_eq!(q0, 0.0);
        // The unshifted matrix: same overlap, every eigenvalue E[T] higher.
        let mean_t = law.overlap(&t, 2.0, Order::Largest, Shift::None).eigenvalue
            - law.overlap(&t, 2.0, Order::Largest, Shift::Mean).eigenvalue;
        for end in [Order::Largest, Order::Smallest] {
            let (a, b) = (
                law.overlap(&t, 2.0, end, Shift::None),
                law.overlap(&t, 2.0, end, Shift::Mean),
            );
            assert_eq!(a.overlap_sq, b.overlap_sq, "{end:?}");
            assert!(
                (a.eigenvalue - b.eigenvalue - mean_t).abs() < 1e-12,
                "{end:?}"
            );
            assert!(
                (a.bulk_edge - b.bulk_edge - mean_t).abs() < 1e-12,
                "{end:?}"
            );
        }
        assert!(mean_t < -1.0, "E[lal(z²)] = {mean_t}");
        let th = law
            .spectral_threshold(&t, Order::Largest, Shift::Mean)
            .unwrap();
        // Paper §8: the optimal threshold of phase retrieval is α = 1/2 (computed: 0.5003).
        assert!((th - 0.5).abs() < 0.005, "threshold {th}");
    }

    /// A trivially checkable case: Z independent of z carries no signal.
    #[test]
    fn constant_t_has_no_outlier_and_marchenko_pastur_edges() {
        let law = Law::single_index(&link("z1^2"), 1.0, 0.0, &[]).unwrap();
        let p = law.overlap(&|_| 1.0, 4.0, Order::Largest, Shift::Mean);
        assert_eq!(p.overlap_sq, 0.0);
        // Σ̂ = XᵀX/n − I: top edge (1 + 1/√α)² − 1 = 1.25 at α = 4.
        assert!((p.bulk_edge - 1.25).abs() < 1e-6, "{p:?}");
        // Unshifted, XᵀX/n: (1 + 1/√α)² = 2.25.
        let q = law.overlap(&|_| 1.0, 4.0, Order::Largest, Shift::None);
        assert!((q.bulk_edge - 2.25).abs() < 1e-6, "{q:?}");
    }

    /// Paper §8's fixed-T thresholds on y = h4(z) (not normalised; signal at the bottom end,
    /// ±10% grid): T = clip(y, ±3) ≈ 1.9, T = sign(y) ≈ 2.6.
    #[test]
    fn h4_fixed_t_thresholds_match_paper() {
        let law = Law::single_index(&link("h4(z1)"), 1.0, 0.0, &[0.0, -3.0, 3.0]).unwrap();
        let clip3 = |y: f64| y.clamp(-3.0, 3.0);
        let a = law
            .spectral_threshold(&clip3, Order::Smallest, Shift::Mean)
            .unwrap();
        assert!((a - 1.9).abs() < 0.2, "clip 3: {a}");
        let a = law
            .spectral_threshold(&|y: f64| y.signum(), Order::Smallest, Shift::Mean)
            .unwrap();
        assert!((a - 2.6).abs() < 0.26, "sign: {a}");
        // The top end never separates (paper: "top eigenvalue never separates").
        assert_eq!(
            law.overlap(&clip3, 16.0, Order::Largest, Shift::Mean)
                .overlap_sq,
            0.0
        );
    }
}
