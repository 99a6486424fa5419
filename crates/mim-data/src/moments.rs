//! Exact / quadrature moments of a link under `z ~ N(0, I_r)` — never Monte Carlo.
//!
//! # Flat links
//!
//! Write the link as `g(z) = Σ_t c_t Π_i F_{t,i}(z_i)`, where `F_{t,i}` is the product of the
//! factors of term `t` that read coordinate `i` (`F_{t,i} = 1` when there are none). Because the
//! coordinates of `z` are independent,
//!
//! ```text
//! E[g]  = Σ_t c_t Π_i E[F_{t,i}(z)]
//! E[g²] = Σ_{t,s} c_t c_s Π_i E[F_{t,i}(z) F_{s,i}(z)]        z ~ N(0, 1)
//! ```
//!
//! so everything reduces to univariate expectations `E[φ(z)]` of products of factors
//! ([`gaussian_expectation`]). Those are **exact** when `φ` is a polynomial (expanded into
//! monomials, `E[z^{2k}] = (2k−1)!!`, odd moments 0) and otherwise computed by deterministic
//! composite Gauss–Legendre quadrature on `[−L, 0]` and `[0, L]` (split at the kink of
//! `abs`/`sign`/`relu`), accurate to about `1e−13` relative for the functions of the grammar.
//!
//! # Nested links
//!
//! A nested link (see [`crate::link`]) is still a sum of top-level terms `g = Σ_t c_t T_t`, and
//! `E[g]`, `E[g²]` and the variance use the same covariance formulas with `E[T_t]`,
//! `E[T_t T_s]`. Each of these is the expectation of a product of factors, some univariate
//! (flat) and some nested (a function of a sub-expression). The factors are split into
//! independent clusters — a nested factor ties together every coordinate it reads — whose
//! expectations multiply, and each cluster is integrated deterministically:
//!
//! 1. only flat factors (one coordinate): [`gaussian_expectation`], exact for polynomials;
//! 2. one coordinate: composite Gauss–Legendre quadrature against the Gaussian weight
//!    (20 nodes per panel of width 0.25 on `[−L, L]`, `L = 12 + 2√p`, `p` a bound on the
//!    polynomial growth of the integrand);
//! 3. several coordinates, every nested factor a function of one **separable sum**
//!    `S = Σ_i h_i(z_i)` over distinct coordinates (each term of `S` reads one coordinate, as in
//!    `tanh(0.75*h2(z1) + … + 0.75*h2(z8))`, `abs(z1 + z2)`, `relu(z1 - 0.5)`,
//!    `(z1 + z2)^2`), the flat factors of the cluster acting as weights `u_i(z_i)`: the
//!    distribution of `S` is computed on a grid `x_k = k·h`. Each `h_i(z_i)` is discretised by
//!    composite Gauss–Legendre atoms (value `h_i(t_j)`, weight `w_j φ(t_j) u_i(t_j)`), each atom
//!    is spread onto the 6 nearest grid points with Lagrange weights (preserving the moments of
//!    degree ≤ 5, so smooth integrands converge like `h⁶`), the coordinates' grids are convolved
//!    and `E[F(S) Π_i u_i] = Σ_k m_k F(x_k)`. The spacing starts at `h = σ_S/32` and is halved
//!    until two resolutions agree to `1e−10` of `E|F(S) Π u_i|` (or a work budget is reached):
//!    about `1e−10` relative for smooth `F` such as `tanh`; kinks and jumps (`abs`, `relu`,
//!    `sign` of `S`) converge more slowly (about `1e−6`);
//! 4. otherwise, at most 3 coordinates: tensor-product composite Gauss–Legendre quadrature
//!    (2 coordinates: 16 nodes per panel of width 0.5 on `[−L, L]`, `L = 10 + 2√p`; 3
//!    coordinates: 12 nodes per panel of width 1, `L ≤ 16`), about `1e−10` for smooth
//!    integrands and `1e−5`-ish across kinks that are not on a panel boundary;
//! 5. otherwise (more than 3 coordinates coupled and not a function of one separable sum, e.g.
//!    `tanh(z1*z2 + z3*z4)`) the moments are unavailable: [`Link::try_moments`] returns
//!    [`LinkError::MomentsUnavailable`] naming the sub-expression, and [`Link::moments`] returns
//!    NaN moments.
//!
//! Cluster expectations and sum distributions are cached within one call, so `E[F(S)]` and
//! `E[F(S)²]` share one grid.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::error::LinkError;
use crate::hermite::{gaussian_moment, hermite_coefficients};
use crate::link::{Factor, Link};
use crate::nested::nested_moments;

/// Mean, second moment and variance of `g(z)` for `z ~ N(0, I_r)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkMoments {
    /// `E[g(z)]`.
    pub mean: f64,
    /// `E[g(z)²]`.
    pub second_moment: f64,
    /// `Var g(z) = E[g²] − E[g]²`, evaluated as `Σ_{t,s} c_t c_s (E[P_t P_s] − E[P_t] E[P_s])`
    /// (terms `c_t P_t`) so constant offsets cancel exactly; clamped at 0 against rounding.
    /// NaN if a moment overflows.
    pub variance: f64,
}

impl Link {
    /// `E[g(z)]`, `E[g(z)²]` and `Var g(z)` for `z ~ N(0, I_r)`.
    ///
    /// Exact for polynomial flat links, quadrature otherwise; never Monte Carlo. For a flat
    /// link `g = Σ_t c_t Π_i F_{t,i}(z_i)`:
    /// `E[g] = Σ_t c_t Π_i E[F_{t,i}]` and
    /// `E[g²] = Σ_{t,s} c_t c_s Π_i E[F_{t,i} F_{s,i}]` (independence of the coordinates);
    /// each univariate expectation comes from [`gaussian_expectation`]. Cost is
    /// `O(T² · r)` univariate expectations for `T` terms. Results are `±∞`/NaN only when the
    /// moments overflow `f64` (e.g. absurdly high powers).
    ///
    /// A nested link is integrated as described in the [module docs](self); when its moments
    /// are not available all three fields are NaN — use [`Link::try_moments`] for the reason.
    pub fn moments(&self) -> LinkMoments {
        match self.try_moments() {
            Ok(m) => m,
            Err(_) => LinkMoments {
                mean: f64::NAN,
                second_moment: f64::NAN,
                variance: f64::NAN,
            },
        }
    }

    /// Like [`Link::moments`], but a nested link whose moments cannot be computed
    /// deterministically (more than 3 coupled coordinates that are not a function of one
    /// separable sum `Σ_i h_i(z_i)`, see the [module docs](self)) is
    /// [`LinkError::MomentsUnavailable`], whose message names the sub-expression and suggests
    /// `data.normalize = false`. Always `Ok` for flat links (same numbers as
    /// [`Link::moments`], overflow included).
    pub fn try_moments(&self) -> Result<LinkMoments, LinkError> {
        match self.nested_expr() {
            None => Ok(self.flat_moments()),
            Some(expr) => nested_moments(expr).map(|n| n.moments).map_err(|reason| {
                LinkError::MomentsUnavailable {
                    link: self.to_string(),
                    reason,
                }
            }),
        }
    }

    fn flat_moments(&self) -> LinkMoments {
        let terms = grouped_terms(self);
        // Per term, `E[group]` for each of its coordinates in increasing index order: a pair of
        // terms on disjoint coordinates has `E[P_t P_s]` = the product of these in merged index
        // order, bit for bit what `term_cross` computes, in O(#factors) (hierarchical links
        // have up to 10 000 single-coordinate terms, i.e. 5·10⁷ such pairs).
        let groups: Vec<Vec<(usize, f64)>> = terms
            .iter()
            .map(|(_, g)| {
                g.iter()
                    .map(|(i, f)| (*i, gaussian_expectation(f)))
                    .collect()
            })
            .collect();
        let means: Vec<f64> = terms.iter().map(|(_, g)| term_mean(g)).collect();
        let mean: f64 = terms.iter().zip(&means).map(|((c, _), m)| c * m).sum();
        let mut second_moment = 0.0;
        let mut variance = 0.0;
        for t in 0..terms.len() {
            for s in t..terms.len() {
                let (ct, gt) = &terms[t];
                let (cs, gs) = &terms[s];
                let weight = if t == s { 1.0 } else { 2.0 };
                let cross = match disjoint_cross(&groups[t], &groups[s]) {
                    Some(c) if t != s => c,
                    _ => term_cross(gt, gs),
                };
                second_moment += weight * ct * cs * cross;
                // Covariance form Σ c_t c_s (E[P_t P_s] − E[P_t] E[P_s]): constant terms drop out
                // exactly, so a large constant offset does not swamp a small variance.
                variance += weight * ct * cs * (cross - means[t] * means[s]);
            }
        }
        let finite = mean.is_finite() && second_moment.is_finite() && variance.is_finite();
        LinkMoments {
            mean,
            second_moment,
            variance: if finite { variance.max(0.0) } else { f64::NAN },
        }
    }

    /// Scale against which a variance counts as zero: `(Σ_t |c_t| √E[P_t²])²` over the
    /// non-constant terms `c_t P_t` (an upper bound on `Var g`). `g` is treated as constant
    /// when `Var g ≤ 1e−12 ×` this.
    ///
    /// For a nested link the same formula is used over its top-level terms `c_t T_t` that read
    /// at least one coordinate, with `E[T_t²]` computed as in [`Link::moments`] (so a nested
    /// link without variables, e.g. `tanh(2)`, has reference 0 and variance 0 and counts as
    /// constant). NaN when the nested moments are unavailable.
    pub fn variance_reference(&self) -> f64 {
        if let Some(expr) = self.nested_expr() {
            return nested_moments(expr).map_or(f64::NAN, |n| n.reference);
        }
        let s: f64 = grouped_terms(self)
            .iter()
            .filter(|(_, g)| !g.is_empty())
            .map(|(c, g)| c.abs() * term_cross(g, g).sqrt())
            .sum();
        s * s
    }
}

/// Per term: its coefficient and its factors grouped by coordinate index.
type GroupedTerm = (f64, BTreeMap<usize, Vec<Factor>>);

fn grouped_terms(link: &Link) -> Vec<GroupedTerm> {
    link.terms()
        .iter()
        .map(|t| {
            let mut by_index: BTreeMap<usize, Vec<Factor>> = BTreeMap::new();
            for f in &t.factors {
                by_index.entry(f.index()).or_default().push(*f);
            }
            (t.coefficient, by_index)
        })
        .collect()
}

/// `Π E[group]` over the merged coordinates of two terms in increasing index order, or `None`
/// when they share a coordinate.
fn disjoint_cross(a: &[(usize, f64)], b: &[(usize, f64)]) -> Option<f64> {
    let (mut i, mut j) = (0, 0);
    let mut product = 1.0;
    while i < a.len() || j < b.len() {
        let take_a = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => return None,
            (Some(x), Some(y)) => x.0 < y.0,
            (Some(_), None) => true,
            _ => false,
        };
        if take_a {
            product *= a[i].1;
            i += 1;
        } else {
            product *= b[j].1;
            j += 1;
        }
    }
    Some(product)
}

/// `E[Π_i F_i(z_i)] = Π_i E[F_i]`.
fn term_mean(groups: &BTreeMap<usize, Vec<Factor>>) -> f64 {
    groups.values().map(|g| gaussian_expectation(g)).product()
}

/// `E[Π_i F_{t,i}(z_i) F_{s,i}(z_i)] = Π_i E[F_{t,i} F_{s,i}]`.
fn term_cross(gt: &BTreeMap<usize, Vec<Factor>>, gs: &BTreeMap<usize, Vec<Factor>>) -> f64 {
    let mut indices: Vec<usize> = gt.keys().chain(gs.keys()).copied().collect();
    indices.sort_unstable();
    indices.dedup();
    indices
        .iter()
        .map(|i| {
            let mut both = gt.get(i).cloned().unwrap_or_default();
            both.extend(gs.get(i).into_iter().flatten().copied());
            gaussian_expectation(&both)
        })
        .product()
}

/// `E[Π_j F_j(z)]` for a single `z ~ N(0, 1)`: every factor is applied to the same `z`
/// (their indices are ignored). The empty product gives 1.
///
/// Exact when all factors are polynomials (`hK`, `zI^K`): the product is expanded into
/// monomials `Σ_m a_m z^m` and `E[z^m] = (m−1)!!` for even `m`, 0 for odd `m`. Otherwise
/// deterministic composite Gauss–Legendre quadrature (20 nodes per panel, panels of width
/// ≤ 0.5) of `φ(z)·e^{−z²/2}/√(2π)` on `[−L, 0]` and `[0, L]`, `L = 12 + 2√p` where `p` is the
/// product's degree (`abs`, `relu` count 1): relative error ≤ 1e−10 (about 1e−13 in practice).
pub fn gaussian_expectation(factors: &[Factor]) -> f64 {
    if factors.iter().all(|f| f.polynomial_degree().is_some()) {
        let mut poly = vec![1.0];
        for f in factors {
            poly = poly_mul(&poly, &factor_polynomial(f));
        }
        return poly
            .iter()
            .enumerate()
            .filter(|(m, a)| m % 2 == 0 && **a != 0.0)
            .map(|(m, a)| a * gaussian_moment(m))
            .sum();
    }
    let degree: usize = factors
        .iter()
        .map(|f| match f {
            Factor::Abs { .. } | Factor::Relu { .. } => 1,
            other => other.polynomial_degree().unwrap_or(0),
        })
        .sum();
    gaussian_quadrature(|t| factors.iter().map(|f| f.eval(t)).product(), degree)
}

/// Monomial coefficients of a polynomial factor.
fn factor_polynomial(f: &Factor) -> Vec<f64> {
    match *f {
        Factor::Hermite { degree, .. } => hermite_coefficients(degree),
        Factor::Power { exponent, .. } => {
            let mut p = vec![0.0; exponent as usize + 1];
            p[exponent as usize] = 1.0;
            p
        }
        _ => vec![1.0],
    }
}

fn poly_mul(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, &x) in a.iter().enumerate() {
        if x == 0.0 {
            continue;
        }
        for (j, &y) in b.iter().enumerate() {
            out[i + j] += x * y;
        }
    }
    out
}

/// Number of Gauss–Legendre nodes per panel.
const GL_NODES: usize = 20;
/// Largest panel width.
const PANEL_WIDTH: f64 = 0.5;

/// The m-point Gauss–Legendre rule on [−1, 1]: nodes ascending and their weights (Newton's
/// method on the Legendre recurrence for P_m; exact for polynomials of degree ≤ 2m − 1).
pub fn gauss_legendre(m: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; m];
    let mut w = vec![0.0; m];
    for i in 0..m.div_ceil(2) {
        let mut t = (std::f64::consts::PI * (i as f64 + 0.75) / (m as f64 + 0.5)).cos();
        let mut dp = 0.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, t);
            for j in 2..=m {
                let p2 = ((2 * j - 1) as f64 * t * p1 - (j - 1) as f64 * p0) / j as f64;
                p0 = p1;
                p1 = p2;
            }
            dp = m as f64 * (t * p1 - p0) / (t * t - 1.0);
            let dt = p1 / dp;
            t -= dt;
            if dt.abs() < 1e-15 {
                break;
            }
        }
        x[i] = -t;
        x[m - 1 - i] = t;
        w[i] = 2.0 / ((1.0 - t * t) * dp * dp);
        w[m - 1 - i] = w[i];
    }
    (x, w)
}

/// The [`GL_NODES`]-point rule as (node, weight) pairs, computed once.
fn rule() -> &'static [(f64, f64)] {
    static RULE: OnceLock<Vec<(f64, f64)>> = OnceLock::new();
    RULE.get_or_init(|| {
        let (x, w) = gauss_legendre(GL_NODES);
        x.into_iter().zip(w).collect()
    })
}

/// `∫ φ(t) e^{−t²/2}/√(2π) dt` over `[−L, 0] ∪ [0, L]`, `L = 12 + 2√degree`.
fn gaussian_quadrature(phi: impl Fn(f64) -> f64, degree: usize) -> f64 {
    let l = 12.0 + 2.0 * (degree as f64).sqrt();
    let panels = (l / PANEL_WIDTH).ceil() as usize;
    let h = l / panels as f64;
    let norm = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
    let rule = rule();
    let mut sum = 0.0;
    for side in [-1.0, 1.0] {
        for p in 0..panels {
            let mid = (p as f64 + 0.5) * h;
            for &(x, w) in rule {
                let t = side * (mid + 0.5 * h * x);
                sum += w * phi(t) * (-0.5 * t * t).exp();
            }
        }
    }
    sum * 0.5 * h * norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials() {
        let rule = rule();
        let total: f64 = rule.iter().map(|&(_, w)| w).sum();
        assert!((total - 2.0).abs() < 1e-14);
        // ∫_{-1}^{1} x^38 dx = 2/39
        let m: f64 = rule.iter().map(|&(x, w)| w * x.powi(38)).sum();
        assert!((m - 2.0 / 39.0).abs() < 1e-14);
    }

    #[test]
    fn quadrature_matches_exact_polynomial_moments() {
        for k in 0..=8 {
            let f = [
                Factor::Hermite {
                    degree: k,
                    index: 1,
                },
                Factor::Hermite {
                    degree: k,
                    index: 1,
                },
            ];
            let exact = gaussian_expectation(&f);
            let quad = gaussian_quadrature(|t| f[0].eval(t) * f[1].eval(t), 2 * k);
            assert!((quad - exact).abs() <= 1e-10 * exact.abs(), "k={k}");
        }
        for e in [2u32, 8, 16, 32] {
            let exact = gaussian_moment(e as usize);
            let quad = gaussian_quadrature(|t| t.powi(e as i32), e as usize);
            assert!(
                (quad - exact).abs() <= 1e-10 * exact,
                "e={e}: {quad} vs {exact}"
            );
        }
    }
}
