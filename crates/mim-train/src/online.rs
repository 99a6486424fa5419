//! Online spherical SGD on the first layer (seed 004 §2.2): one fresh sample per step, every
//! neuron w_j ∈ S^{d−1} with a fixed readout sign a_j, a label transformation ỹ = T(y)
//! (standardised on a pilot split that counts toward n), σ = h_s = He_s/√s!, the correlation
//! loss ℓ(w) = −a ỹ σ(⟨w, x⟩) and the landscape smoothing of Damian et al. (2023):
//!
//! ```text
//!   L_λ(w) = E_v ℓ((w + λv)/√(1 + λ²)),   v uniform on the unit sphere of w^⊥,
//!   w ← (w − η ∇_sph L_λ) / ‖·‖,   ∇_sph L_λ = −a ỹ ψ(u, r) (x − u w),
//! ```
//!
//! with u = ⟨w, x⟩, r = ‖x − u w‖ and ψ = ∂_u S − (u/r) ∂_r S for the exact sphere moments
//! S(u, r) = E_t σ(c(u + λ r t)), c = (1 + λ²)^{−1/2}, t one coordinate of Unif(S^{d−2}):
//! S = (s!)^{−1/2} Σ_j C(s, 2j) He_{s−2j}(cu) (λcr)^{2j} μ_{2j}, μ_{2j} = Π_{i<j} (2i+1)/(d−1+2i)
//! (the Hermite addition formula; no Gaussian approximation of t — that would make smoothing
//! a no-op). O(m·d) per sample, host `f64`, no tensors.
//!
//! The sparse variant (§2.3, [`online_sphere_sparse`]) puts a support search between the pilot
//! and the chain: G_i = (1/n_A) Σ_t ỹ_t He_s(x_{t,i}) over n_A fresh samples (E G_i =
//! θ*_i^s·E[ỹ He_s(z)], by Mehler's formula), Ŝ = the k largest |G_i|, and the chain then runs
//! in span{e_i : i ∈ Ŝ}, i.e. the dense algorithm in dimension k.

use crate::config::positive;
use serde::{Deserialize, Serialize};

/// The label transformation T of an online stage.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelTransform {
    /// T(y) = y.
    Identity,
    /// T(y) = sign(y − median), the median from the pilot.
    Sign,
    /// T(y) = tanh(y).
    Tanh,
    /// T(y) = clamp(y, −c, c).
    Clip(f64),
    /// T(y) = He_k(y).
    Hermite(usize),
    /// T(y) = g(F̂(y)) with F̂ the empirical CDF of the pilot labels and g a bounded function
    /// on [0, 1] (seed004.md §2.2, the oracle-free default: its coefficient c_{s*} is non-zero
    /// for a generic g, and no θ* is needed to build it).
    Cdf(CdfMap),
    /// `auto`: the optimal transformation ζ_s(y) = E[h_s(z) | y] of σ = h_s, which needs the
    /// link; the caller resolves it to a [`LabelTransform::Table`] (mim-run does, by
    /// quadrature over the config's link) before a chain runs.
    Auto,
    /// A step function of y (what `auto` resolves to).
    Table(std::sync::Arc<StepMap>),
}

/// A step function of y: `values[i]` on the i-th interval cut by the ascending `edges`
/// (`values.len() = edges.len() + 1`; y on an edge belongs to the interval below it).
#[derive(Clone, Debug, PartialEq)]
pub struct StepMap {
    /// The interior cut points, ascending.
    pub edges: Vec<f64>,
    /// The value on each interval.
    pub values: Vec<f64>,
}

impl StepMap {
    /// The value at `y`.
    pub fn at(&self, y: f64) -> f64 {
        self.values[self
            .edges
            .partition_point(|&e| e < y)
            .min(self.values.len() - 1)]
    }
}

/// The bounded map g of [`LabelTransform::Cdf`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CdfMap {
    /// g(u) = cos(π j u).
    Cos(usize),
    /// g(u) = sin(π j u).
    Sin(usize),
    /// g(u) = 1{u ≤ τ}.
    Step(f64),
}

impl CdfMap {
    fn apply(&self, u: f64) -> f64 {
        match *self {
            Self::Cos(j) => (std::f64::consts::PI * j as f64 * u).cos(),
            Self::Sin(j) => (std::f64::consts::PI * j as f64 * u).sin(),
            Self::Step(tau) => f64::from(u <= tau),
        }
    }
}

impl LabelTransform {
    /// Parses `identity`, `sign`, `tanh`, `clip:c`, `hermite:k` (k = 1..8), `cdf:cos:j`,
    /// `cdf:sin:j` (j = 1..8), `cdf:step:τ` (0 < τ < 1) and `auto`; the error names `field`.
    pub fn parse(s: &str, field: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{field} = {s:?}: {why}");
        let (head, arg) = match s.split_once(':') {
            Some((h, a)) => (h.trim(), Some(a.trim())),
            None => (s.trim(), None),
        };
        let none = |t| match arg {
            None => Ok(t),
            Some(_) => Err(bad(&format!("`{head}` takes no argument"))),
        };
        match head {
            "identity" => none(Self::Identity),
            "sign" => none(Self::Sign),
            "tanh" => none(Self::Tanh),
            "auto" => none(Self::Auto),
            "clip" => {
                let c: f64 = arg
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| bad("expected clip:<c>, e.g. clip:2"))?;
                positive(field, c).map_err(|_| bad("the clip level must be positive"))?;
                Ok(Self::Clip(c))
            }
            "hermite" => match arg.and_then(|a| a.parse::<usize>().ok()) {
                Some(k) if (1..=8).contains(&k) => Ok(Self::Hermite(k)),
                _ => Err(bad("expected hermite:<k> with k = 1..8")),
            },
            "cdf" => {
                let expected = "expected cdf:cos:<j>, cdf:sin:<j> (j = 1..8) or cdf:step:<τ> (0 < τ < 1)";
                let (map, value) = arg
                    .and_then(|a| a.split_once(':'))
                    .map(|(m, v)| (m.trim(), v.trim()))
                    .ok_or_else(|| bad(expected))?;
                let j = value.parse::<usize>().ok().filter(|j| (1..=8).contains(j));
                let tau = value.parse::<f64>().ok().filter(|t| *t > 0.0 && *t < 1.0);
                match (map, j, tau) {
                    ("cos", Some(j), _) => Ok(Self::Cdf(CdfMap::Cos(j))),
                    ("sin", Some(j), _) => Ok(Self::Cdf(CdfMap::Sin(j))),
                    ("step", _, Some(t)) => Ok(Self::Cdf(CdfMap::Step(t))),
                    _ => Err(bad(expected)),
                }
            }
            _ => Err(bad(
                "unknown transform; expected identity, sign, tanh, clip:<c>, hermite:<k>, cdf:<g>:<arg> or auto",
            )),
        }
    }

    /// T(y), given the sorted pilot labels (for the median and the empirical CDF).
    fn apply(&self, y: f64, pilot: &[f64]) -> f64 {
        match self {
            Self::Identity => y,
            Self::Sign => {
                let median = pilot.get(pilot.len() / 2).copied().unwrap_or(0.0);
                mim_data::sign(y - median)
            }
            Self::Tanh => y.tanh(),
            Self::Clip(c) => y.clamp(-c, *c),
            Self::Hermite(k) => mim_data::hermite(*k, y),
            Self::Cdf(g) => {
                // F̂(y) = #{pilot ≤ y}/n0 (½ without a pilot).
                let below = pilot.partition_point(|&v| v <= y);
                let u = if pilot.is_empty() {
                    0.5
                } else {
                    below as f64 / pilot.len() as f64
                };
                g.apply(u)
            }
            Self::Table(map) => map.at(y),
            Self::Auto => unreachable!("`auto` is resolved to a table before a chain runs"),
        }
    }
}

/// Parameters of one online stage.
#[derive(Clone, Debug)]
pub struct OnlineSphere {
    /// s: σ = h_s.
    pub hermite: usize,
    /// λ of the smoothing (0 = none).
    pub lambda: f64,
    /// η.
    pub lr: f64,
    /// Samples in all (pilot included): the cap n_max.
    pub samples: usize,
    /// Pilot samples for the transform's median and standardisation (counted in `samples`).
    pub pilot: usize,
    /// T.
    pub transform: LabelTransform,
    /// Stop the chain once max_j |⟨w_j, θ*⟩| reaches this level (> 1: run all samples).
    pub stop_at: f64,
}

/// Samples between two exact renormalisations of a chain's rows (the steps keep ‖w_j‖ = 1
/// and ⟨w_j, θ*⟩ in closed form; this bounds their rounding drift).
const RENORM: usize = 256;

/// Alignment levels whose hitting times are recorded.
pub const THRESHOLDS: [f64; 2] = [0.5, 0.9];

/// What one chain did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnlineChain {
    /// Samples consumed (pilot included) when max_j |⟨w_j, θ*⟩| first reached 0.5 and 0.9;
    /// None = censored at `samples`.
    pub hitting_times: Vec<Option<usize>>,
    /// max_j |⟨w_j, θ*⟩| at the end.
    pub final_alignment: f64,
    /// Samples consumed.
    pub samples: usize,
    /// The support search of the sparse variant (None for the dense method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support: Option<SupportFound>,
}

/// Stage A of the sparse variant: `samples` (n_A) fresh samples, keep the `k` largest |G_i|.
#[derive(Clone, Debug, PartialEq)]
pub struct SupportSearch {
    /// n_A, counted in [`OnlineSphere::samples`] after the pilot.
    pub samples: usize,
    /// k, the size of Ŝ (the sparsity of θ*).
    pub k: usize,
}

/// What the support search of one chain found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SupportFound {
    /// Ŝ = supp θ* exactly.
    pub recovered: bool,
    /// |Ŝ ∩ supp θ*| / k.
    pub overlap: f64,
}

/// The support searches of a stage's chains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SupportSummary {
    /// k.
    pub k: usize,
    /// n_A, the samples of stage A per chain.
    pub samples: usize,
    /// Chains with Ŝ = supp θ* exactly.
    pub recovered: usize,
    /// `recovered` over the number of chains.
    pub recovered_fraction: f64,
    /// Mean of |Ŝ ∩ supp θ*| / k over the chains.
    pub mean_overlap: f64,
}

/// (u, r) ↦ ψ(u, r) for σ = h_s and smoothing λ in dimension d.
#[derive(Clone, Debug)]
pub struct Smoothed {
    s: usize,
    c: f64,
    lambda: f64,
    /// C(s, 2j)·μ_{2j}/√s!, j = 0..=s/2.
    coef: Vec<f64>,
}

impl Smoothed {
    /// The closed form for degree `s`, smoothing `lambda`, dimension `d` (d = 1: no smoothing).
    pub fn new(s: usize, lambda: f64, d: usize) -> Self {
        let m = (d - 1) as f64;
        let fact: f64 = (1..=s).map(|v| v as f64).product();
        let mut coef = Vec::new();
        let mut mu = 1.0;
        for j in 0..=s / 2 {
            if j > 0 {
                let i = (j - 1) as f64;
                // d = 1: w^⊥ = {0}, nothing to smooth over.
                mu *= if m > 0.0 {
                    (2.0 * i + 1.0) / (m + 2.0 * i)
                } else {
                    0.0
                };
            }
            coef.push(binomial(s, 2 * j) * mu / fact.sqrt());
        }
        Self {
            s,
            c: 1.0 / (1.0 + lambda * lambda).sqrt(),
            lambda,
            coef,
        }
    }

    /// S(u, r) = E_t h_s(c(u + λ r t)).
    pub fn value(&self, u: f64, r: f64) -> f64 {
        let lc = self.lambda * self.c * r;
        self.coef
            .iter()
            .enumerate()
            .map(|(j, k)| k * mim_data::hermite(self.s - 2 * j, self.c * u) * lc.powi(2 * j as i32))
            .sum()
    }

    /// ψ = ∂_u S − (u/r) ∂_r S: the ambient gradient of S(⟨w, x⟩, ‖x − ⟨w,x⟩w‖) is ψ·x.
    pub fn psi(&self, u: f64, r: f64) -> f64 {
        let lc = self.lambda * self.c;
        let mut su = 0.0;
        let mut sr_over_r = 0.0;
        for (j, k) in self.coef.iter().enumerate() {
            let deg = self.s - 2 * j;
            let p = (lc * r).powi(2 * j as i32);
            if deg > 0 {
                su += k * deg as f64 * mim_data::hermite(deg - 1, self.c * u) * p * self.c;
            }
            if j > 0 {
                // ∂_r (λ c r)^{2j} / r = 2j (λc)^{2j} r^{2j−2}.
                sr_over_r += k
                    * mim_data::hermite(deg, self.c * u)
                    * 2.0
                    * j as f64
                    * lc.powi(2 * j as i32)
                    * r.powi(2 * j as i32 - 2);
            }
        }
        su - u * sr_over_r
    }
}

fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// The pilot's statistics: its sorted labels (T's median and empirical CDF) and the mean and
/// sd of T(y).
struct Standardise {
    transform: LabelTransform,
    sorted: Vec<f64>,
    mean: f64,
    sd: f64,
}

impl Standardise {
    /// Draws `p.pilot` samples into `x` (scratch of length d) and measures them.
    fn pilot(p: &OnlineSphere, x: &mut [f64], next: &mut impl FnMut(&mut [f64]) -> f64) -> Self {
        let pilot: Vec<f64> = (0..p.pilot).map(|_| next(x)).collect();
        let mut sorted = pilot.clone();
        sorted.sort_by(f64::total_cmp);
        let t: Vec<f64> = pilot
            .iter()
            .map(|&y| p.transform.apply(y, &sorted))
            .collect();
        let (mean, sd) = if t.len() > 1 {
            let mean = t.iter().sum::<f64>() / t.len() as f64;
            let var = t.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (t.len() - 1) as f64;
            (mean, var.sqrt().max(1e-12))
        } else {
            (0.0, 1.0)
        };
        Self {
            transform: p.transform.clone(),
            sorted,
            mean,
            sd,
        }
    }

    /// ỹ = (T(y) − mean)/sd.
    fn apply(&self, y: f64) -> f64 {
        (self.transform.apply(y, &self.sorted) - self.mean) / self.sd
    }
}

/// Runs one chain: `w` (m×d, rows made unit), signs `a` (m), θ* (d), samples from `next`
/// (fills x (d) and returns y). Returns the hitting times and the final alignment.
pub fn online_sphere(
    w: &mut [f64],
    a: &[f64],
    theta: &[f64],
    p: &OnlineSphere,
    mut next: impl FnMut(&mut [f64]) -> f64,
) -> OnlineChain {
    let mut x = vec![0.0; theta.len()];
    let st = Standardise::pilot(p, &mut x, &mut next);
    chain(w, a, theta, p, &st, p.pilot, &mut x, next)
}

/// The SGD loop of one chain from `used` samples on, in the dimension of `theta`.
#[allow(clippy::too_many_arguments)]
fn chain(
    w: &mut [f64],
    a: &[f64],
    theta: &[f64],
    p: &OnlineSphere,
    st: &Standardise,
    mut used: usize,
    x: &mut [f64],
    mut next: impl FnMut(&mut [f64]) -> f64,
) -> OnlineChain {
    let d = theta.len();
    let m = a.len();
    let smooth = Smoothed::new(p.hermite, p.lambda, d);
    // ⟨w_j, θ*⟩ per row, carried through the steps in closed form and recomputed (with the
    // rows' norms) every RENORM samples, so rounding cannot drift.
    let mut at = vec![0.0; m];
    let renorm = |w: &mut [f64], at: &mut [f64]| {
        for (row, t) in w.chunks_exact_mut(d).zip(at.iter_mut()) {
            mim_model::set_norm(row, 1.0);
            *t = mim_data::dot(row, theta);
        }
        at.iter().fold(0.0f64, |b, v| b.max(v.abs()))
    };
    let mut hits = vec![None; THRESHOLDS.len()];
    let check = |used: usize, al: f64, hits: &mut Vec<Option<usize>>| {
        for (h, &level) in hits.iter_mut().zip(&THRESHOLDS) {
            if h.is_none() && al >= level {
                *h = Some(used);
            }
        }
    };
    let mut current = renorm(w, &mut at);
    check(used, current, &mut hits);
    let mut since = 0usize;
    while used < p.samples && current < p.stop_at {
        let y = next(x);
        used += 1;
        let yt = st.apply(y);
        let xx = mim_data::dot(x, x);
        let xt = mim_data::dot(x, theta);
        // max_j |⟨w_j, θ*⟩| after the step.
        let mut best = 0.0f64;
        for ((row, aj), t) in w.chunks_exact_mut(d).zip(a).zip(at.iter_mut()) {
            let u = mim_data::dot(row, x);
            let r2 = (xx - u * u).max(0.0);
            let g = p.lr * aj * yt * smooth.psi(u, r2.sqrt());
            // w + g (x − u w) has norm² 1 + g² r² (x − u w ⟂ w, ‖w‖ = 1): one pass per row.
            let keep = 1.0 - g * u;
            let inv = 1.0 / (1.0 + g * g * r2).sqrt();
            let (ka, ga) = (keep * inv, g * inv);
            for (wi, xi) in row.iter_mut().zip(x.iter()) {
                *wi = ka * *wi + ga * xi;
            }
            *t = ka * *t + ga * xt;
            best = best.max(t.abs());
        }
        since += 1;
        if since == RENORM {
            since = 0;
            best = renorm(w, &mut at);
        }
        if m > 0 {
            current = best;
            check(used, current, &mut hits);
        }
    }
    OnlineChain {
        hitting_times: hits,
        final_alignment: current,
        samples: used,
        support: None,
    }
}

/// Stage A's scores G_i = (1/n) Σ_t ỹ_t·He_s(x_{t,i}), i < d, over `n` samples from `next`
/// (fills x (d), returns y), with ỹ = `label(y)`. O(s·d) per sample.
pub fn support_scores(
    d: usize,
    s: usize,
    n: usize,
    mut label: impl FnMut(f64) -> f64,
    mut next: impl FnMut(&mut [f64]) -> f64,
) -> Vec<f64> {
    let mut x = vec![0.0; d];
    let mut g = vec![0.0; d];
    for _ in 0..n {
        let yt = label(next(&mut x));
        for (gi, &xi) in g.iter_mut().zip(&x) {
            // He_s(x_i) by the three-term recurrence.
            let (mut prev, mut cur) = (1.0, xi);
            for j in 1..s {
                let nx = xi * cur - j as f64 * prev;
                prev = cur;
                cur = nx;
            }
            *gi += yt * if s == 0 { 1.0 } else { cur };
        }
    }
    let inv = 1.0 / n.max(1) as f64;
    g.iter_mut().for_each(|v| *v *= inv);
    g
}

/// The indices of the `k` largest |g_i|, ascending (ties to the lower index).
pub fn top_k(g: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..g.len()).collect();
    idx.sort_by(|&i, &j| g[j].abs().total_cmp(&g[i].abs()).then(i.cmp(&j)));
    idx.truncate(k);
    idx.sort_unstable();
    idx
}

/// The sparse variant (seed 004 §2.3): the pilot (`p.pilot` samples), the support search of
/// `search` (n_A samples: [`support_scores`] with σ's degree `p.hermite` and the pilot's
/// ỹ, Ŝ = [`top_k`]), then [`online_sphere`]'s chain inside span{e_i : i ∈ Ŝ} on fresh
/// samples up to `p.samples` in all (`p.lr` and `p.lambda` are for dimension k). `w` (m×d)
/// starts the chain restricted to Ŝ and ends as the chain's rows embedded in R^d (zero off
/// Ŝ); the hitting times count every sample, pilot and stage A included.
pub fn online_sphere_sparse(
    w: &mut [f64],
    a: &[f64],
    theta: &[f64],
    p: &OnlineSphere,
    search: &SupportSearch,
    mut next: impl FnMut(&mut [f64]) -> f64,
) -> OnlineChain {
    let d = theta.len();
    let k = search.k.clamp(1, d);
    let mut x = vec![0.0; d];
    let st = Standardise::pilot(p, &mut x, &mut next);
    let g = support_scores(d, p.hermite, search.samples, |y| st.apply(y), &mut next);
    let chosen = top_k(&g, k);
    let truth: Vec<usize> = (0..d).filter(|&i| theta[i] != 0.0).collect();
    let hit = chosen
        .iter()
        .filter(|i| truth.binary_search(i).is_ok())
        .count();
    let found = SupportFound {
        recovered: chosen == truth,
        overlap: hit as f64 / k as f64,
    };
    let theta_s: Vec<f64> = chosen.iter().map(|&i| theta[i]).collect();
    let mut w_s: Vec<f64> = w
        .chunks_exact(d)
        .flat_map(|row| chosen.iter().map(move |&i| row[i]))
        .collect();
    let mut xs = vec![0.0; k];
    let mut chain = chain(
        &mut w_s,
        a,
        &theta_s,
        p,
        &st,
        p.pilot + search.samples,
        &mut xs,
        |xs: &mut [f64]| {
            let y = next(&mut x);
            for (o, &i) in xs.iter_mut().zip(&chosen) {
                *o = x[i];
            }
            y
        },
    );
    w.iter_mut().for_each(|v| *v = 0.0);
    for (row, row_s) in w.chunks_exact_mut(d).zip(w_s.chunks_exact(k)) {
        for (&i, &v) in chosen.iter().zip(row_s) {
            row[i] = v;
        }
    }
    chain.support = Some(found);
    chain
}

/// What an online stage's chains did, at matched reliability: `samples_to[l]` is the smallest
/// n at which at least 80 % of the chains had reached `THRESHOLDS[l]` (None when more than 20 %
/// are censored), `median_to[l]` the median hitting time (None when half are censored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnlineSummary {
    /// η used.
    pub lr: f64,
    /// λ used.
    pub lambda: f64,
    /// The 80 % quantile of the hitting times of 0.5 and 0.9 (censored = ∞).
    pub samples_to: Vec<Option<f64>>,
    /// Their medians.
    pub median_to: Vec<Option<f64>>,
    /// Chains censored at each level.
    pub censored: Vec<usize>,
    /// The support search of the sparse variant (None for the dense method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support: Option<SupportSummary>,
    /// Every chain.
    pub chains: Vec<OnlineChain>,
}

impl OnlineSummary {
    /// Summarises the chains of a stage run with step size `lr` and smoothing `lambda`.
    pub fn new(chains: Vec<OnlineChain>, lr: f64, lambda: f64) -> Self {
        let quantile = |level: usize, q: f64| -> Option<f64> {
            let mut t: Vec<f64> = chains
                .iter()
                .map(|c| c.hitting_times[level].map_or(f64::INFINITY, |v| v as f64))
                .collect();
            t.sort_by(f64::total_cmp);
            let k = ((q * t.len() as f64).ceil() as usize).clamp(1, t.len()) - 1;
            t.get(k).copied().filter(|v| v.is_finite())
        };
        let levels = 0..THRESHOLDS.len();
        Self {
            lr,
            lambda,
            samples_to: levels.clone().map(|l| quantile(l, 0.8)).collect(),
            median_to: levels.clone().map(|l| quantile(l, 0.5)).collect(),
            censored: levels
                .map(|l| {
                    chains
                        .iter()
                        .filter(|c| c.hitting_times[l].is_none())
                        .count()
                })
                .collect(),
            support: None,
            chains,
        }
    }

    /// Adds the summary of the chains' support searches (k, n_A per chain).
    pub fn with_support(mut self, k: usize, samples: usize) -> Self {
        let found: Vec<&SupportFound> = self
            .chains
            .iter()
            .filter_map(|c| c.support.as_ref())
            .collect();
        let n = found.len().max(1) as f64;
        let recovered = found.iter().filter(|f| f.recovered).count();
        self.support = Some(SupportSummary {
            k,
            samples,
            recovered,
            recovered_fraction: recovered as f64 / n,
            mean_overlap: found.iter().map(|f| f.overlap).sum::<f64>() / n,
        });
        self
    }
}

/// The step size of an online stage as a function of d only (seed004.md §2.2, §2.4):
/// η = c · d^{−max(s, 2)/2} · (1 + λ²)^{s−1} (c = the stage's `lr`).
pub fn online_lr(c: f64, s: usize, lambda: f64, d: usize) -> f64 {
    c * (d as f64).powf(-(s.max(2) as f64) / 2.0) * (1.0 + lambda * lambda).powi(s as i32 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    fn h(s: usize, z: f64) -> f64 {
        let fact: f64 = (1..=s).map(|v| v as f64).product();
        mim_data::hermite(s, z) / fact.sqrt()
    }

    /// S(u, r) against Monte Carlo over v uniform on the sphere of w^⊥ (d = 6, s = 3 and 4,
    /// λ = 1.5), and ψ·x against a finite difference of w ↦ S along the sphere.
    #[test]
    fn smoothed_closed_form_matches_monte_carlo_over_v() {
        let d = 6;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut w: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
        let n = w.iter().map(|v| v * v).sum::<f64>().sqrt();
        w.iter_mut().for_each(|v| *v /= n);
        let x: Vec<f64> = (0..d)
            .map(|_| rng.sample::<f64, _>(StandardNormal) * 1.3)
            .collect();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        let ur = |w: &[f64]| {
            let u = dot(w, &x);
            (u, (dot(&x, &x) - u * u).sqrt())
        };
        for s in [3, 4] {
            let lambda = 1.5;
            let sm = Smoothed::new(s, lambda, d);
            let (u, r) = ur(&w);
            let draws = 400_000;
            let mut acc = 0.0;
            let mut acc2 = 0.0;
            for _ in 0..draws {
                let mut v: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
                let p = dot(&v, &w);
                v.iter_mut().zip(&w).for_each(|(vi, wi)| *vi -= p * wi);
                let nv = dot(&v, &v).sqrt();
                let z: Vec<f64> = w
                    .iter()
                    .zip(&v)
                    .map(|(wi, vi)| (wi + lambda * vi / nv) / (1.0 + lambda * lambda).sqrt())
                    .collect();
                let val = h(s, dot(&z, &x));
                acc += val;
                acc2 += val * val;
            }
            let mc = acc / draws as f64;
            let se = ((acc2 / draws as f64 - mc * mc) / draws as f64).sqrt();
            let exact = sm.value(u, r);
            assert!(
                (mc - exact).abs() < 5.0 * se,
                "s = {s}: MC {mc} ± {se} vs {exact}"
            );
            // ψ x = ∇_w S(⟨w,x⟩, ‖x − ⟨w,x⟩w‖) (ambient), by central differences.
            let psi = sm.psi(u, r);
            for i in 0..d {
                let e = 1e-6;
                let (mut wp, mut wm) = (w.clone(), w.clone());
                wp[i] += e;
                wm[i] -= e;
                let (up, rp) = ur(&wp);
                let (um, rm) = ur(&wm);
                let fd = (sm.value(up, rp) - sm.value(um, rm)) / (2.0 * e);
                assert!(
                    (fd - psi * x[i]).abs() < 1e-5 * (1.0 + fd.abs()),
                    "s = {s}, i = {i}: {fd} vs {}",
                    psi * x[i]
                );
            }
        }
        // λ = 0: S = h_s(u) and ψ = h_s'(u).
        let sm = Smoothed::new(3, 0.0, d);
        assert!((sm.value(0.7, 2.0) - h(3, 0.7)).abs() < 1e-14);
        assert!((sm.psi(0.7, 2.0) - 3.0 * mim_data::hermite(2, 0.7) / 6f64.sqrt()).abs() < 1e-12);
    }

    /// A planted θ* = e1 and y = z (s* = k* = 1): a neuron with the right readout sign aligns
    /// within O(d) samples; the hitting times are ordered and counted from the pilot on.
    #[test]
    fn linear_link_is_learned_in_order_d_samples() {
        let d = 32;
        let mut theta = vec![0.0; d];
        theta[0] = 1.0;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut w: Vec<f64> = (0..2 * d).map(|_| rng.sample(StandardNormal)).collect();
        let p = OnlineSphere {
            hermite: 1,
            lambda: 0.0,
            lr: online_lr(0.5, 1, 0.0, d),
            samples: 50 * d,
            pilot: 100,
            transform: LabelTransform::Identity,
            stop_at: 0.9,
        };
        let chain = online_sphere(&mut w, &[1.0, -1.0], &theta, &p, |x| {
            x.iter_mut().for_each(|v| *v = rng.sample(StandardNormal));
            x[0]
        });
        let [h5, h9] = [chain.hitting_times[0], chain.hitting_times[1]];
        assert!(h5.is_some() && h9.is_some(), "{chain:?}");
        assert!(
            h5 <= h9 && h5.unwrap() >= 100 && h9.unwrap() < 50 * d,
            "{chain:?}"
        );
        assert!(chain.final_alignment >= 0.9);
    }

    /// Matched reliability: the 80 % quantile over chains, censored counting as ∞.
    #[test]
    fn summary_quantiles_treat_censoring_as_infinite() {
        let chain = |h: Option<usize>| OnlineChain {
            hitting_times: vec![h, None],
            final_alignment: 0.0,
            samples: 10,
            support: None,
        };
        let chains: Vec<_> = (1..=10)
            .map(|v| chain((v <= 8).then_some(v * 100)))
            .collect();
        let s = OnlineSummary::new(chains, 1.0, 0.0);
        assert_eq!(s.samples_to[0], Some(800.0));
        assert_eq!(s.median_to[0], Some(500.0));
        assert_eq!(s.censored, vec![2, 10]);
        assert_eq!(s.samples_to[1], None);
        let chains: Vec<_> = (1..=10).map(|v| chain((v <= 7).then_some(v))).collect();
        assert_eq!(OnlineSummary::new(chains, 1.0, 0.0).samples_to[0], None);
    }

    /// A k-sparse θ* in R^d (support = the first k coordinates, alternating signs).
    fn sparse_theta(d: usize, k: usize) -> Vec<f64> {
        let level = 1.0 / (k as f64).sqrt();
        (0..d)
            .map(|i| match i {
                i if i < k && i % 2 == 0 => level,
                i if i < k => -level,
                _ => 0.0,
            })
            .collect()
    }

    /// y = He3(⟨θ*, x⟩)/√6 with x ~ N(0, I_d) from `rng`.
    fn he3_sample<'a>(theta: &'a [f64], rng: &mut impl Rng) -> impl FnMut(&mut [f64]) -> f64 + 'a {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(rng.random());
        move |x: &mut [f64]| {
            x.iter_mut().for_each(|v| *v = rng.sample(StandardNormal));
            let z: f64 = x.iter().zip(theta).map(|(a, b)| a * b).sum();
            mim_data::hermite(3, z) / 6f64.sqrt()
        }
    }

    /// Stage A on He3 (T = identity, σ = He_3, k = 4, d = 256): G_i → E[y He3(z)]·θ*_i³ =
    /// √6·θ*_i³ (Mehler), so on the support |G_i| ≈ √6/8 with θ*_i's sign and off it G_i ≈ 0;
    /// 20000 samples recover the support every time, 30 never do (noise √(6/30) ≫ √6/8).
    #[test]
    fn support_scores_have_the_hermite_expectation() {
        let (d, k) = (256, 4);
        let theta = sparse_theta(d, k);
        let truth: Vec<usize> = (0..k).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let expect = 6f64.sqrt() / (k as f64).powf(1.5);
        // Var(y·He3(x_i)) is 6 off the support and ≈ 49 on it (measured by Monte Carlo).
        let n = 100_000;
        let g = support_scores(d, 3, n, |y| y, he3_sample(&theta, &mut rng));
        for (i, gi) in g.iter().enumerate() {
            if i < k {
                let want = expect * theta[i].signum();
                let se = (49.0 / n as f64).sqrt();
                assert!(
                    (gi - want).abs() < 4.0 * se,
                    "i = {i}: {gi} vs {want} (se {se})"
                );
            } else {
                let se = (6.0 / n as f64).sqrt();
                assert!(gi.abs() < 5.0 * se, "i = {i}: {gi} (se {se})");
            }
        }
        for _ in 0..3 {
            let g = support_scores(d, 3, 20_000, |y| y, he3_sample(&theta, &mut rng));
            assert_eq!(top_k(&g, k), truth);
        }
        for _ in 0..5 {
            let g = support_scores(d, 3, 30, |y| y, he3_sample(&theta, &mut rng));
            assert_ne!(top_k(&g, k), truth);
        }
        // A 1-sparse θ* = e_7: G_7 ≈ √6, found from 500 samples.
        let mut e7 = vec![0.0; d];
        e7[7] = 1.0;
        let g = support_scores(d, 3, 500, |y| y, he3_sample(&e7, &mut rng));
        assert_eq!(top_k(&g, 1), vec![7]);
        assert!((g[7] - 6f64.sqrt()).abs() < 0.6, "{}", g[7]);
    }

    #[test]
    fn top_k_takes_the_largest_magnitudes() {
        assert_eq!(top_k(&[0.1, -3.0, 2.0, 0.0, -2.5], 3), vec![1, 2, 4]);
        assert_eq!(top_k(&[1.0, 1.0, 1.0], 2), vec![0, 1]);
    }

    /// The sparse chain: stage A then the dense chain in dimension k; every sample counts
    /// (hitting times ≥ pilot + n_A), W ends zero off Ŝ, and with too few stage-A samples the
    /// support is missed and the chain cannot align.
    #[test]
    fn sparse_chain_counts_stage_a_and_stays_in_the_support() {
        let (d, k) = (128, 4);
        let theta = sparse_theta(d, k);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let m = 4;
        let p = OnlineSphere {
            hermite: 3,
            lambda: 0.0,
            lr: online_lr(1.0, 3, 0.0, k),
            samples: 60_000,
            pilot: 50,
            transform: LabelTransform::Identity,
            stop_at: 0.9,
        };
        let a = [1.0, 1.0, -1.0, -1.0];
        let search = SupportSearch { samples: 10_000, k };
        let mut w: Vec<f64> = (0..m * d).map(|_| rng.sample(StandardNormal)).collect();
        let c = online_sphere_sparse(
            &mut w,
            &a,
            &theta,
            &p,
            &search,
            he3_sample(&theta, &mut rng),
        );
        let found = c.support.clone().unwrap();
        assert!(found.recovered && found.overlap == 1.0, "{c:?}");
        let h9 = c.hitting_times[1].expect("reaches 0.9");
        assert!(h9 >= 10_050 && c.samples == h9, "{c:?}");
        assert!(w
            .chunks_exact(d)
            .all(|row| row[k..].iter().all(|v| *v == 0.0)));
        let best = w
            .chunks_exact(d)
            .map(|row| {
                row.iter()
                    .zip(&theta)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    .abs()
            })
            .fold(0.0, f64::max);
        assert!((best - c.final_alignment).abs() < 1e-12 && best >= 0.9);
        let few = SupportSearch { samples: 20, k };
        let p = OnlineSphere {
            samples: 5_000,
            ..p
        };
        let c = online_sphere_sparse(&mut w, &a, &theta, &p, &few, he3_sample(&theta, &mut rng));
        assert!(!c.support.clone().unwrap().recovered, "{c:?}");
        assert!(c.hitting_times[1].is_none() && c.samples == 5_000, "{c:?}");
        let s = OnlineSummary::new(vec![c], 1.0, 0.0).with_support(k, 20);
        let sup = s.support.unwrap();
        assert_eq!((sup.recovered, sup.samples, sup.k), (0, 20, k));
        assert!(sup.mean_overlap < 1.0);
    }

    #[test]
    fn cdf_transform_uses_the_pilot_cdf() {
        // Pilot labels 0..100: F̂(y) = #{≤ y}/100, so cos(π F̂) runs from cos(π/100) to −1.
        let pilot: Vec<f64> = (0..100).map(f64::from).collect();
        let t = LabelTransform::Cdf(CdfMap::Cos(1));
        assert!((t.apply(-1.0, &pilot) - 1.0).abs() < 1e-12);
        assert!((t.apply(49.5, &pilot) - 0.0).abs() < 1e-12);
        assert!((t.apply(1e9, &pilot) + 1.0).abs() < 1e-12);
        let step = LabelTransform::Cdf(CdfMap::Step(0.25));
        assert_eq!(
            (step.apply(10.0, &pilot), step.apply(30.0, &pilot)),
            (1.0, 0.0)
        );
        // A monotone relabelling of y leaves a CDF transform unchanged.
        let warped: Vec<f64> = pilot.iter().map(|v| v.powi(3)).collect();
        for y in [3.0, 17.5, 80.0] {
            assert_eq!(t.apply(y, &pilot), t.apply(f64::powi(y, 3), &warped));
        }
        // The sign transform still centres at the pilot median.
        assert_eq!(LabelTransform::Sign.apply(49.0, &pilot), -1.0);
        assert_eq!(LabelTransform::Sign.apply(51.0, &pilot), 1.0);
    }

    #[test]
    fn transforms_parse_and_refuse() {
        assert_eq!(
            LabelTransform::parse("clip:2", "t"),
            Ok(LabelTransform::Clip(2.0))
        );
        assert_eq!(
            LabelTransform::parse("hermite:3", "t"),
            Ok(LabelTransform::Hermite(3))
        );
        assert_eq!(
            LabelTransform::parse("cdf:cos:2", "t"),
            Ok(LabelTransform::Cdf(CdfMap::Cos(2)))
        );
        assert_eq!(
            LabelTransform::parse("cdf:step:0.3", "t"),
            Ok(LabelTransform::Cdf(CdfMap::Step(0.3)))
        );
        for bad in [
            "clip:-1",
            "hermite:9",
            "softmax",
            "sign:1",
            "cdf",
            "cdf:cos",
            "cdf:cos:0",
            "cdf:step:1.5",
            "cdf:tan:1",
        ] {
            let e = LabelTransform::parse(bad, "schedule.0.transform").unwrap_err();
            assert!(e.starts_with("schedule.0.transform"), "{e}");
        }
    }
}
