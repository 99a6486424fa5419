//! Deterministic moments of nested links (see the module docs of [`crate::moments`]).
//!
//! `g = Σ_t c_t T_t` with `T_t` the product of the factors of top-level term `t`. Every
//! expectation `E[T_t]`, `E[T_t T_s]` is an expectation of a product of factors, computed by
//! [`Ctx::expectation`]: the factors are split into independent clusters of coordinates (a
//! nested factor ties together all coordinates it reads), and each cluster is integrated on its
//! own — exactly for flat polynomial factors, by 1-D Gauss–Legendre quadrature for one
//! coordinate, by the distribution of a separable sum (grid convolution) when every nested
//! factor is a function of one sum `S = Σ_i h_i(z_i)`, and by tensor-product quadrature for at
//! most three coordinates. Anything else is reported as unavailable.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use crate::expr::{EFactor, ETerm, Expr};
use crate::link::Factor;
use crate::moments::{gauss_legendre, gaussian_expectation, LinkMoments};

/// Result of [`nested_moments`]: the moments and the scale for the constant-link test.
#[derive(Clone, Copy)]
pub(crate) struct NestedMoments {
    pub(crate) moments: LinkMoments,
    /// `(Σ_t |c_t| √E[T_t²])²` over the terms that read at least one coordinate.
    pub(crate) reference: f64,
}

/// Moments of a nested expression, or why they cannot be computed.
///
/// Deterministic, so results are memoised by canonical formula (at most [`MEMO_SIZE`] of
/// them): [`crate::Link::moments`] followed by [`crate::Link::variance_reference`] integrates
/// once.
pub(crate) fn nested_moments(expr: &Expr) -> Result<NestedMoments, String> {
    type Memo = Mutex<HashMap<String, Result<NestedMoments, String>>>;
    static MEMO: OnceLock<Memo> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    let key = expr.to_string();
    if let Some(hit) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return hit.clone();
    }
    let result = compute_moments(expr);
    let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
    if memo.len() >= MEMO_SIZE {
        memo.clear();
    }
    memo.insert(key, result.clone());
    result
}

/// Largest number of memoised nested-link moments.
const MEMO_SIZE: usize = 256;

fn compute_moments(expr: &Expr) -> Result<NestedMoments, String> {
    let mut ctx = Ctx {
        cache: HashMap::new(),
        sums: HashMap::new(),
        len: expr.max_index(),
    };
    let terms = &expr.terms;
    let factors: Vec<Vec<&EFactor>> = terms.iter().map(|t| t.factors.iter().collect()).collect();
    let means = factors
        .iter()
        .map(|f| ctx.expectation(f))
        .collect::<Result<Vec<f64>, String>>()?;
    let mean: f64 = terms
        .iter()
        .zip(&means)
        .map(|(t, m)| t.coefficient * m)
        .sum();
    let mut second_moment = 0.0;
    let mut variance = 0.0;
    let mut reference = 0.0;
    for t in 0..terms.len() {
        for s in t..terms.len() {
            let (ct, cs) = (terms[t].coefficient, terms[s].coefficient);
            let both: Vec<&EFactor> = factors[t].iter().chain(&factors[s]).copied().collect();
            let cross = ctx.expectation(&both)?;
            let weight = if t == s { 1.0 } else { 2.0 };
            second_moment += weight * ct * cs * cross;
            // Covariance form, as for flat links: constant terms drop out exactly.
            variance += weight * ct * cs * (cross - means[t] * means[s]);
            if t == s && reads_coordinates(&terms[t]) {
                reference += ct.abs() * cross.max(0.0).sqrt();
            }
        }
    }
    let finite = mean.is_finite() && second_moment.is_finite() && variance.is_finite();
    Ok(NestedMoments {
        moments: LinkMoments {
            mean,
            second_moment,
            variance: if finite { variance.max(0.0) } else { f64::NAN },
        },
        reference: reference * reference,
    })
}

fn reads_coordinates(t: &ETerm) -> bool {
    let mut idx = Vec::new();
    for f in &t.factors {
        f.indices(&mut idx);
    }
    !idx.is_empty()
}

fn coordinates(f: &EFactor) -> Vec<usize> {
    let mut idx = Vec::new();
    f.indices(&mut idx);
    idx.sort_unstable();
    idx.dedup();
    idx
}

fn coordinate_list(coords: &[usize]) -> String {
    let shown: Vec<String> = coords.iter().take(6).map(|i| format!("z{i}")).collect();
    let more = if coords.len() > 6 { ", …" } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// Caches shared by the expectations of one link.
struct Ctx {
    /// Cluster expectations by canonical key (sorted factor strings).
    cache: HashMap<String, f64>,
    /// Grid distributions of separable sums by (sum, tilt, resolution).
    sums: HashMap<String, Option<Grid>>,
    /// Length of the `z` vectors to evaluate factors on.
    len: usize,
}

/// One cluster of factors over coordinates `coords` (sorted).
struct Cluster<'a> {
    coords: Vec<usize>,
    factors: Vec<&'a EFactor>,
}

impl<'a> Cluster<'a> {
    /// The factors that are not flat.
    fn nested(&self) -> Vec<&'a EFactor> {
        self.factors
            .iter()
            .copied()
            .filter(|f| !matches!(f, EFactor::Flat(_)))
            .collect()
    }
}

impl Ctx {
    /// `E[Π_j f_j(z)]`, `z ~ N(0, I)`.
    fn expectation(&mut self, factors: &[&EFactor]) -> Result<f64, String> {
        let mut constant = 1.0;
        let mut clusters: Vec<Cluster> = Vec::new();
        for &f in factors {
            let coords = coordinates(f);
            if coords.is_empty() {
                // A nested factor without variables, e.g. `tanh(2)`.
                constant *= f.eval(&[]);
                continue;
            }
            let mut merged = Cluster {
                coords,
                factors: vec![f],
            };
            let mut k = 0;
            while k < clusters.len() {
                if clusters[k]
                    .coords
                    .iter()
                    .any(|c| merged.coords.binary_search(c).is_ok())
                {
                    let other = clusters.swap_remove(k);
                    merged.coords.extend(other.coords);
                    merged.coords.sort_unstable();
                    merged.coords.dedup();
                    merged.factors.extend(other.factors);
                } else {
                    k += 1;
                }
            }
            clusters.push(merged);
        }
        let mut value = constant;
        for cluster in &clusters {
            value *= self.cluster_expectation(cluster)?;
        }
        Ok(value)
    }

    fn cluster_expectation(&mut self, cluster: &Cluster) -> Result<f64, String> {
        let flat: Option<Vec<Factor>> = cluster
            .factors
            .iter()
            .map(|f| match f {
                EFactor::Flat(x) => Some(*x),
                _ => None,
            })
            .collect();
        if let Some(flat) = flat {
            // Only univariate factors: a single coordinate (exact for polynomials).
            return Ok(gaussian_expectation(&flat));
        }
        let mut key: Vec<String> = cluster.factors.iter().map(|f| f.to_string()).collect();
        key.sort_unstable();
        let key = key.join(" ; ");
        if let Some(&v) = self.cache.get(&key) {
            return Ok(v);
        }
        let v = self.compute_cluster(cluster)?;
        self.cache.insert(key, v);
        Ok(v)
    }

    fn compute_cluster(&mut self, cluster: &Cluster) -> Result<f64, String> {
        let growth = cluster
            .factors
            .iter()
            .fold(0usize, |d, f| d.saturating_add(f.growth()));
        if cluster.coords.len() == 1 {
            return Ok(self.tensor(cluster, growth));
        }
        let mut too_large = false;
        if let Some(s) = separable_sum(cluster) {
            match self.separable(cluster, s) {
                Some(v) => return Ok(v),
                None => too_large = true,
            }
        }
        if cluster.coords.len() <= 3 {
            return Ok(self.tensor(cluster, growth));
        }
        let nested = cluster
            .factors
            .iter()
            .find(|f| !matches!(f, EFactor::Flat(_)))
            .map(|f| f.to_string())
            .unwrap_or_default();
        let shown = if nested.chars().count() > 60 {
            format!("{}…", nested.chars().take(59).collect::<String>())
        } else {
            nested
        };
        let n = cluster.coords.len();
        let coords = coordinate_list(&cluster.coords);
        Err(if too_large {
            format!(
                "`{shown}` couples {n} coordinates ({coords}): more than the 3 that tensor \
                 quadrature handles, and its separable sum is too heavy-tailed for the grid \
                 convolution"
            )
        } else {
            format!(
                "`{shown}` couples {n} coordinates ({coords}): more than the 3 that tensor \
                 quadrature handles, and it is not a function of a single separable sum \
                 Σ_i h_i(z_i) over distinct coordinates"
            )
        })
    }

    /// Quadrature over the cluster's coordinates: adaptive for one coordinate, a fixed
    /// tensor-product composite Gauss–Legendre rule (restricted to the ball `|z| ≤ L`) for two
    /// or three.
    fn tensor(&self, cluster: &Cluster, growth: usize) -> f64 {
        let p = (growth.min(256) as f64).sqrt();
        let dims = &cluster.coords;
        let factors = &cluster.factors;
        let mut z = vec![0.0; self.len];
        if let [c] = dims.as_slice() {
            let f = |t: f64| {
                let mut z = vec![0.0; self.len];
                z[c - 1] = t;
                factors.iter().map(|f| f.eval(&z)).product::<f64>()
            };
            return adaptive_expectation(&f, 12.0 + 2.0 * p);
        }
        let (l, width, nodes) = match dims.len() {
            2 => (10.0 + 2.0 * p, 0.5, 16),
            _ => ((9.0 + 2.0 * p).min(16.0), 1.0, 8),
        };
        // Each coordinate's panels are shifted by a different irrational fraction of a panel, so
        // that sums of nodes of different coordinates do not coincide (a symmetric lattice puts
        // positive mass on exact zeros of, e.g., `z1 + z2 - 1` inside `sign(…)`).
        let grids: Vec<Vec<(f64, f64)>> = (0..dims.len())
            .map(|d| {
                let shift = ((d + 1) as f64 * 0.618_033_988_749_894_9).fract() * width;
                let n = (2.0 * l / width).ceil() as usize + 1;
                (0..n)
                    .flat_map(|p| {
                        let a = -l - shift + p as f64 * width;
                        gl_panel_n(a, a + width, nodes)
                    })
                    .collect()
            })
            .collect();
        let mut sum = 0.0;
        // Iterative odometer over the node indices of each coordinate.
        let mut idx = vec![0usize; dims.len()];
        'outer: loop {
            let mut w = 1.0;
            let mut r2 = 0.0;
            for (d, &i) in idx.iter().enumerate() {
                let (t, wi) = grids[d][i];
                z[dims[d] - 1] = t;
                w *= wi;
                r2 += t * t;
            }
            if r2 <= l * l {
                sum += w * factors.iter().map(|f| f.eval(&z)).product::<f64>();
            }
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < grids[d].len() {
                    continue 'outer;
                }
                idx[d] = 0;
            }
            break;
        }
        sum
    }

    /// `E[Π F_f(S) · Π_i u_i(z_i)]` from the grid distribution of the separable sum `S`
    /// (tilted by the flat factors `u_i`), refined until two resolutions agree. `None` when the
    /// grid would be too large.
    fn separable(&mut self, cluster: &Cluster, s: &Expr) -> Option<f64> {
        let nested = cluster.nested();
        let mut tilts: BTreeMap<usize, Vec<Factor>> = BTreeMap::new();
        for f in &cluster.factors {
            if let EFactor::Flat(x) = f {
                tilts.entry(x.index()).or_default().push(*x);
            }
        }
        let q = nested
            .iter()
            .fold(0usize, |d, f| d.saturating_add(s_growth(f, s)))
            .min(64);
        let tilt_key: Vec<String> = tilts
            .values()
            .flat_map(|v| v.iter().map(|f| f.to_string()))
            .collect();
        let base = format!("{s} | {} | {q}", tilt_key.join("*"));
        let integrand = |x: f64| {
            nested
                .iter()
                .map(|f| eval_factor_of(f, s, x))
                .product::<f64>()
        };
        let mut values: Vec<f64> = Vec::new();
        let mut extrapolated: Option<f64> = None;
        for level in 0..GRID_LEVELS {
            let key = format!("{base} | {level}");
            if !self.sums.contains_key(&key) {
                let grid = Grid::build(s, &tilts, q, GRID_POINTS_PER_SD << level);
                self.sums.insert(key.clone(), grid);
            }
            let Some(grid) = self.sums.get(&key).and_then(Option::as_ref) else {
                return extrapolated.or(values.last().copied());
            };
            let (value, scale) = grid.integrate(&integrand);
            let tol = GRID_TOLERANCE * scale;
            // Smooth integrands: two resolutions agree.
            if values.last().is_some_and(|p| (value - p).abs() <= tol) {
                return Some(value);
            }
            values.push(value);
            // Kinks and jumps converge like h² or h: Aitken-extrapolate the last three values.
            let aitken = match values.as_slice() {
                [.., a, b, c] => aitken(*a, *b, *c),
                _ => None,
            };
            if let (Some(x), Some(y)) = (aitken, extrapolated) {
                if (x - y).abs() <= tol {
                    return Some(x);
                }
            }
            extrapolated = aitken;
            if grid.is_last {
                break;
            }
        }
        extrapolated.or(values.last().copied())
    }
}

/// Aitken's extrapolation of `a, b, c` converging geometrically (successive differences
/// shrinking by a factor 1.5 to 64, same sign), else `None`.
fn aitken(a: f64, b: f64, c: f64) -> Option<f64> {
    let (d1, d2) = (b - a, c - b);
    if d2 == 0.0 {
        return Some(c);
    }
    let r = d1 / d2;
    (1.5..=64.0).contains(&r).then(|| c + d2 / (r - 1.0))
}

/// Resolutions tried: `σ_S / h = 32, 64, …` grid points per standard deviation of `S`.
const GRID_POINTS_PER_SD: usize = 32;
/// Number of resolutions tried.
const GRID_LEVELS: usize = 6;
/// Two successive resolutions agreeing to this fraction of `E|integrand|` are accepted.
const GRID_TOLERANCE: f64 = 1e-10;
/// Largest number of grid points of one coordinate's distribution.
const MAX_BINS: i64 = 1 << 20;
/// Multiply-adds above which a finer resolution is not attempted.
const WORK_BUDGET: f64 = 4e8;
/// Relative weight below which quadrature atoms and grid points are dropped.
const NEGLIGIBLE: f64 = 1e-26;

/// The distribution of a (tilted) separable sum on the grid `x_k = k·h`: signed masses.
struct Grid {
    h: f64,
    offset: i64,
    mass: Vec<f64>,
    /// True when a finer grid would exceed the work budget.
    is_last: bool,
}

impl Grid {
    /// Discretise each `h_i(z_i)` by composite Gauss–Legendre atoms (tilted by the flat
    /// factors of `z_i`), spread each atom on the 6 nearest grid points with Lagrange weights
    /// (which preserves the moments of degree ≤ 5, so smooth integrands converge like `h⁶`),
    /// and convolve the coordinates' grids. `None` when a grid would exceed [`MAX_BINS`].
    fn build(
        s: &Expr,
        tilts: &BTreeMap<usize, Vec<Factor>>,
        q: usize,
        points_per_sd: usize,
    ) -> Option<Grid> {
        // h_i: the terms of S reading coordinate i; c0: its constant terms.
        let mut parts: BTreeMap<usize, Vec<&ETerm>> = BTreeMap::new();
        let mut c0 = 0.0;
        for t in &s.terms {
            match t.factors.first() {
                None => c0 += t.coefficient,
                Some(EFactor::Flat(f)) => parts.entry(f.index()).or_default().push(t),
                Some(_) => return None,
            }
        }
        let degree = s.growth().min(64) as f64;
        let l = 11.0 + 2.0 * ((q as f64) * degree).sqrt().min(8.0);
        let value = |terms: &[&ETerm], t: f64| -> f64 {
            terms
                .iter()
                .map(|term| {
                    term.coefficient
                        * term
                            .factors
                            .iter()
                            .map(|f| match f {
                                EFactor::Flat(f) => f.eval(t),
                                _ => f64::NAN,
                            })
                            .product::<f64>()
                })
                .sum::<f64>()
        };
        // The untilted spread of S fixes the grid spacing h.
        let coarse = gaussian_nodes(l, 0.5, 20);
        let mut var = 0.0;
        let mut means = Vec::new();
        for terms in parts.values() {
            let (mut m0, mut m1, mut m2) = (0.0, 0.0, 0.0);
            for &(t, w) in &coarse {
                let v = value(terms, t);
                m0 += w;
                m1 += w * v;
                m2 += w * v * v;
            }
            let mean = m1 / m0;
            var += (m2 / m0 - mean * mean).max(0.0);
            means.push(mean);
        }
        let sd = var.sqrt();
        if !sd.is_finite() {
            return None;
        }
        let sd = if sd > 0.0 { sd } else { 1.0 };
        let h = sd / points_per_sd as f64;
        // The grid represents S + h/2, so that S = 0 (where abs/sign/relu of S break) lies
        // midway between grid points: x_k = k·h − h/2.
        if let Some(m) = means.first_mut() {
            *m += c0;
        }
        // Atoms (value, tilted weight) per coordinate: composite Gauss–Legendre panels refined
        // until the value varies by at most 8h across a panel (so the atoms are denser than the
        // grid and kinked integrands of S stay accurate).
        let mut atoms: Vec<Vec<(f64, f64)>> = Vec::new();
        for (n, (&i, terms)) in parts.iter().enumerate() {
            let tilt = tilts.get(&i);
            let shift = if n == 0 { c0 + 0.5 * h } else { 0.0 };
            let mut a = Vec::new();
            for (lo, hi) in panels(l, 0.5) {
                let (mut vmin, mut vmax) = (f64::INFINITY, f64::NEG_INFINITY);
                for k in 0..=8 {
                    let v = value(terms, lo + (hi - lo) * k as f64 / 8.0);
                    vmin = vmin.min(v);
                    vmax = vmax.max(v);
                }
                let pieces = ((vmax - vmin) / (8.0 * h)).ceil();
                if pieces.is_nan() || pieces * 20.0 + a.len() as f64 > MAX_BINS as f64 {
                    return None;
                }
                let pieces = pieces.max(1.0) as usize;
                let width = (hi - lo) / pieces as f64;
                for p in 0..pieces {
                    let a0 = lo + p as f64 * width;
                    for (t, w) in gl_panel(a0, a0 + width) {
                        let v = shift + value(terms, t);
                        let u = tilt.map_or(1.0, |fs| fs.iter().map(|f| f.eval(t)).product());
                        a.push((v, w * u));
                    }
                }
            }
            if a.iter().any(|(v, w)| !v.is_finite() || !w.is_finite()) {
                return None;
            }
            atoms.push(a);
        }
        // log of the weight an atom or grid point at x gets for an integrand growing like |S|^q.
        let log_importance = |x: f64, mean: f64| q as f64 * ((x - mean).abs() / sd).ln_1p();
        // Bin each coordinate.
        let mut binned: Vec<(i64, Vec<f64>)> = Vec::new();
        for (a, &mean) in atoms.iter().zip(&means) {
            let r = |v: f64, w: f64| w.abs().ln() + log_importance(v, mean);
            let rmax = a
                .iter()
                .map(|&(v, w)| r(v, w))
                .fold(f64::NEG_INFINITY, f64::max);
            let kept: Vec<(f64, f64)> = a
                .iter()
                .copied()
                .filter(|&(v, w)| w != 0.0 && r(v, w) > NEGLIGIBLE.ln() + rmax)
                .collect();
            if kept.is_empty() {
                return Some(Grid {
                    h,
                    offset: 0,
                    mass: Vec::new(),
                    is_last: true,
                });
            }
            let lo = kept.iter().map(|&(v, _)| v).fold(f64::INFINITY, f64::min);
            let hi = kept
                .iter()
                .map(|&(v, _)| v)
                .fold(f64::NEG_INFINITY, f64::max);
            let (klo, khi) = ((lo / h).floor() - 2.0, (hi / h).floor() + 3.0);
            if !(khi - klo < MAX_BINS as f64 && klo.abs().max(khi.abs()) < 1e15) {
                return None;
            }
            let (klo, khi) = (klo as i64, khi as i64);
            let mut m = vec![0.0; (khi - klo + 1) as usize];
            for &(v, w) in &kept {
                let u = v / h;
                let k0 = u.floor();
                let x = u - k0;
                let base = (k0 as i64 - 2 - klo) as usize;
                for (j, l) in lagrange6(x).iter().enumerate() {
                    m[base + j] += w * l;
                }
            }
            binned.push((klo, m));
        }
        // Convolve, trimming negligible tails of the running distribution.
        let work: f64 = {
            let total: f64 = binned.iter().map(|(_, m)| m.len() as f64).sum();
            binned.iter().map(|(_, m)| m.len() as f64 * total).sum()
        };
        let mut iter = binned.into_iter();
        let (mut offset, mut mass) = iter.next().unwrap_or((0, vec![1.0]));
        let mut mean = 0.0;
        let mut means_iter = means.iter();
        mean += means_iter.next().copied().unwrap_or(0.0);
        for ((klo, m), &mu) in iter.zip(means_iter) {
            mass = convolve(&mass, &m);
            offset += klo;
            mean += mu;
            if offset.abs() > 1 << 52 {
                return None;
            }
            let (o, t) = trim(&mass, offset, h, mean, &log_importance);
            offset = o;
            mass = t;
        }
        Some(Grid {
            h,
            offset,
            mass,
            is_last: 4.0 * work > WORK_BUDGET,
        })
    }

    /// `(Σ_k m_k F(x_k), Σ_k |m_k F(x_k)|)`.
    fn integrate(&self, f: &dyn Fn(f64) -> f64) -> (f64, f64) {
        let mut sum = 0.0;
        let mut scale = 0.0;
        for (k, &m) in self.mass.iter().enumerate() {
            if m == 0.0 {
                continue;
            }
            let x = (self.offset + k as i64) as f64 * self.h - 0.5 * self.h;
            let v = m * f(x);
            sum += v;
            scale += v.abs();
        }
        (sum, scale)
    }
}

/// Drop leading / trailing grid points whose weighted mass is negligible.
fn trim(
    mass: &[f64],
    offset: i64,
    h: f64,
    mean: f64,
    log_importance: &dyn Fn(f64, f64) -> f64,
) -> (i64, Vec<f64>) {
    let r = |k: usize| mass[k].abs().ln() + log_importance((offset + k as i64) as f64 * h, mean);
    let rmax = (0..mass.len()).map(r).fold(f64::NEG_INFINITY, f64::max);
    let keep = |k: &usize| r(*k) > NEGLIGIBLE.ln() + rmax;
    let first = (0..mass.len()).find(keep);
    let last = (0..mass.len()).rev().find(keep);
    match (first, last) {
        (Some(a), Some(b)) => (offset + a as i64, mass[a..=b].to_vec()),
        _ => (offset, mass.to_vec()),
    }
}

fn convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, &x) in a.iter().enumerate() {
        if x == 0.0 {
            continue;
        }
        for (o, &y) in out[i..].iter_mut().zip(b) {
            *o += x * y;
        }
    }
    out
}

/// Lagrange weights at `x ∈ [0, 1)` for the nodes `−2, −1, 0, 1, 2, 3`.
fn lagrange6(x: f64) -> [f64; 6] {
    const NODES: [f64; 6] = [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0];
    let mut out = [0.0; 6];
    for (j, o) in out.iter_mut().enumerate() {
        let mut num = 1.0;
        let mut den = 1.0;
        for (m, &xm) in NODES.iter().enumerate() {
            if m != j {
                num *= x - xm;
                den *= NODES[j] - xm;
            }
        }
        *o = num / den;
    }
    out
}

/// The `n`-point Gauss–Legendre rule on `[−1, 1]` as (node, weight) pairs, computed once per `n`.
fn rule(n: usize) -> &'static [(f64, f64)] {
    static RULES: OnceLock<[Vec<(f64, f64)>; 3]> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        [8, 16, 20].map(|m| {
            let (x, w) = gauss_legendre(m);
            x.into_iter().zip(w).collect()
        })
    });
    match n {
        8 => &rules[0],
        16 => &rules[1],
        _ => &rules[2],
    }
}

/// Panels of width ≤ `width` covering `[−L, 0]` and `[0, L]`.
fn panels(l: f64, width: f64) -> impl Iterator<Item = (f64, f64)> {
    let n = (l / width).ceil().max(1.0) as usize;
    let h = l / n as f64;
    (0..n)
        .rev()
        .map(move |p| (-(p as f64 + 1.0) * h, -(p as f64) * h))
        .chain((0..n).map(move |p| (p as f64 * h, (p as f64 + 1.0) * h)))
}

/// The 20-point Gauss–Legendre nodes of `[a, b]` with weights `w·e^{−t²/2}/√(2π)`.
fn gl_panel(a: f64, b: f64) -> impl Iterator<Item = (f64, f64)> {
    gl_panel_n(a, b, 20)
}

fn gl_panel_n(a: f64, b: f64, n: usize) -> impl Iterator<Item = (f64, f64)> {
    let (mid, half) = (0.5 * (a + b), 0.5 * (b - a));
    let norm = half / (2.0 * std::f64::consts::PI).sqrt();
    rule(n).iter().map(move |&(x, w)| {
        let t = mid + half * x;
        (t, w * norm * (-0.5 * t * t).exp())
    })
}

/// Composite Gauss–Legendre nodes on `[−L, 0] ∪ [0, L]` (panels of width ≤ `width`, `n` nodes
/// each, `n` ∈ {8, 16, 20}) with weights `w·e^{−t²/2}/√(2π)`: `E[φ(t)] ≈ Σ_j w_j φ(t_j)`.
fn gaussian_nodes(l: f64, width: f64, n: usize) -> Vec<(f64, f64)> {
    panels(l, width)
        .flat_map(|(a, b)| gl_panel_n(a, b, n))
        .collect()
}

/// `E[f(t)]`, `t ~ N(0, 1)`, by adaptive composite Gauss–Legendre quadrature on `[−L, L]`:
/// panels of width 0.5, each halved (at most 30 times) until the 20-point rule on the panel and
/// on its two halves agree to `1e−14 · E|f| / (number of panels)`; handles kinks and jumps
/// anywhere (only the panels containing them are refined).
fn adaptive_expectation(f: &dyn Fn(f64) -> f64, l: f64) -> f64 {
    fn panel(f: &dyn Fn(f64) -> f64, a: f64, b: f64) -> (f64, f64) {
        gl_panel(a, b).fold((0.0, 0.0), |(s, m), (t, w)| {
            let v = w * f(t);
            (s + v, m + v.abs())
        })
    }
    fn refine(f: &dyn Fn(f64) -> f64, a: f64, b: f64, whole: f64, tol: f64, depth: u32) -> f64 {
        let mid = 0.5 * (a + b);
        let (left, _) = panel(f, a, mid);
        let (right, _) = panel(f, mid, b);
        let halves = left + right;
        if depth == 0 || (halves - whole).abs() <= tol || !halves.is_finite() {
            return halves;
        }
        refine(f, a, mid, left, tol, depth - 1) + refine(f, mid, b, right, tol, depth - 1)
    }
    let coarse: Vec<(f64, f64, f64, f64)> = panels(l, 0.5)
        .map(|(a, b)| {
            let (s, m) = panel(f, a, b);
            (a, b, s, m)
        })
        .collect();
    let scale: f64 = coarse.iter().map(|c| c.3).sum();
    let tol = 1e-14 * scale / coarse.len() as f64;
    coarse
        .iter()
        .map(|&(a, b, s, _)| refine(f, a, b, s, tol, 30))
        .sum()
}

// ----------------------------------------------------------------------------------------------
// Separable sums

/// A sum over ≥ 2 distinct coordinates whose every term reads one coordinate (or none).
fn is_separable(x: &Expr) -> bool {
    let mut coords = Vec::new();
    for t in &x.terms {
        let mut index = None;
        for f in &t.factors {
            match f {
                EFactor::Flat(f) if index.is_none() || index == Some(f.index()) => {
                    index = Some(f.index())
                }
                _ => return false,
            }
        }
        coords.extend(index);
    }
    coords.sort_unstable();
    coords.dedup();
    coords.len() >= 2
}

/// Separable sub-expressions of `f`, outermost first.
fn candidates<'a>(f: &'a EFactor, out: &mut Vec<&'a Expr>) {
    if let Some(x) = f.argument() {
        if is_separable(x) {
            out.push(x);
        } else {
            for t in &x.terms {
                for g in &t.factors {
                    candidates(g, out);
                }
            }
        }
    }
}

/// True when `x` reads the coordinates only through occurrences of `s`.
fn function_of(x: &Expr, s: &Expr) -> bool {
    std::ptr::eq(x, s)
        || x == s
        || x.terms.iter().all(|t| {
            t.factors
                .iter()
                .all(|f| f.argument().is_some_and(|a| function_of(a, s)))
        })
}

/// The separable sum `S` every nested factor of the cluster is a function of, if any.
fn separable_sum<'a>(cluster: &Cluster<'a>) -> Option<&'a Expr> {
    let nested = cluster.nested();
    let mut cands = Vec::new();
    candidates(nested.first()?, &mut cands);
    cands.into_iter().find(|s| {
        nested
            .iter()
            .all(|f| f.argument().is_some_and(|a| function_of(a, s)))
    })
}

/// Value of the nested factor `f` when its argument's occurrences of `s` equal `x`.
fn eval_factor_of(f: &EFactor, s: &Expr, x: f64) -> f64 {
    match f {
        EFactor::Flat(_) => f64::NAN,
        EFactor::Apply(func, a) => func.apply(eval_expr_of(a, s, x)),
        EFactor::Group(a) => eval_expr_of(a, s, x),
        EFactor::Pow(a, k) => eval_expr_of(a, s, x).powi(*k as i32),
    }
}

fn eval_expr_of(a: &Expr, s: &Expr, x: f64) -> f64 {
    if std::ptr::eq(a, s) || a == s {
        return x;
    }
    a.terms
        .iter()
        .map(|t| {
            t.coefficient
                * t.factors
                    .iter()
                    .map(|f| eval_factor_of(f, s, x))
                    .product::<f64>()
        })
        .sum()
}

/// Growth degree of the nested factor `f` as a function of `S` (`S` itself counts 1).
fn s_growth(f: &EFactor, s: &Expr) -> usize {
    fn expr_growth(a: &Expr, s: &Expr) -> usize {
        if std::ptr::eq(a, s) || a == s {
            return 1;
        }
        a.terms
            .iter()
            .map(|t| {
                t.factors
                    .iter()
                    .fold(0usize, |d, f| d.saturating_add(s_growth(f, s)))
            })
            .max()
            .unwrap_or(0)
    }
    match f {
        EFactor::Flat(_) => 0,
        EFactor::Apply(func, a) => func.growth(expr_growth(a, s)),
        EFactor::Group(a) => expr_growth(a, s),
        EFactor::Pow(a, k) => expr_growth(a, s).saturating_mul(*k as usize),
    }
}
