//! Statistics over seeds: mean ± standard error, threshold localisation with a bootstrap CI,
//! power-law fits and the flatness check of α* vs d.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Mean, standard error of the mean and count of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MeanSe {
    /// Sample mean (NaN for an empty sample).
    pub mean: f64,
    /// Standard error s/√n with the unbiased s (0 for n ≤ 1).
    pub se: f64,
    /// Number of values.
    pub n: usize,
}

/// Mean, standard error and count of `values` (non-finite values are skipped).
pub fn mean_se(values: &[f64]) -> MeanSe {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return MeanSe {
            mean: f64::NAN,
            se: 0.0,
            n: 0,
        };
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let se = if n > 1 {
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (var / n as f64).sqrt()
    } else {
        0.0
    };
    MeanSe { mean, se, n }
}

/// The two-sided 95 % quantile t_{0.975, dof} of Student's t distribution.
pub fn t975(dof: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match dof {
        0 => f64::INFINITY,
        1..=30 => T[dof - 1],
        // Cornish–Fisher expansion around the normal quantile; < 1e-3 off for dof > 30.
        _ => {
            let z: f64 = 1.959_964;
            let g = dof as f64;
            z + (z.powi(3) + z) / (4.0 * g)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * g * g)
        }
    }
}

/// Which way a metric crosses a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The metric rises through the level (alignment ≥ 0.5): α* is the first x where y ≥ level.
    #[default]
    Up,
    /// The metric falls through the level (test error ≤ 0.5): α* is the first x where y ≤ level.
    Down,
}

/// Where a curve (x ascending) first reaches a level.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", content = "x", rename_all = "snake_case")]
pub enum Crossing {
    /// Crosses between two grid points, at this x (interpolated linearly in log x).
    At(f64),
    /// Already past the level at the smallest x (α* ≤ that x).
    BelowRange(f64),
    /// Never reaches the level on the grid (α* > the largest x).
    AboveRange(f64),
}

impl Crossing {
    /// The crossing x when it lies inside the grid.
    pub fn value(&self) -> Option<f64> {
        match self {
            Crossing::At(x) => Some(*x),
            _ => None,
        }
    }

    /// The crossing as a relation: `= 4.37`, `≤ 1`, `> 64`.
    pub fn relation(&self) -> String {
        match self {
            Crossing::At(x) => format!("= {}", fmt_num(*x)),
            _ => self.describe(),
        }
    }

    /// A short human-readable form: `4.37`, `≤ 1`, `> 64`.
    pub fn describe(&self) -> String {
        match self {
            Crossing::At(x) => fmt_num(*x),
            Crossing::BelowRange(x) => format!("≤ {}", fmt_num(*x)),
            Crossing::AboveRange(x) => format!("> {}", fmt_num(*x)),
        }
    }
}

/// Formats a number with 3 significant digits (no trailing zeros).
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    let s = if (1e-3..1e5).contains(&a) {
        let digits = (2 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.digits$}")
    } else {
        format!("{x:.2e}")
    };
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `, 95% CI [lo, hi]` for a confidence interval, empty without one.
pub fn ci_text(ci: Option<(f64, f64)>) -> String {
    ci.map(|(a, b)| format!(", 95% CI [{}, {}]", fmt_num(a), fmt_num(b)))
        .unwrap_or_default()
}

/// The first crossing of `level` by the curve (xs ascending and > 0, ys the metric), linear in
/// log x between the two grid points that bracket it. `None` for an empty curve.
pub fn threshold_crossing(xs: &[f64], ys: &[f64], level: f64, dir: Direction) -> Option<Crossing> {
    assert_eq!(xs.len(), ys.len(), "xs and ys must have equal lengths");
    let pts: Vec<(f64, f64)> = xs
        .iter()
        .zip(ys)
        .filter(|(x, y)| x.is_finite() && **x > 0.0 && y.is_finite())
        .map(|(x, y)| (*x, *y))
        .collect();
    if pts.is_empty() {
        return None;
    }
    let s = match dir {
        Direction::Up => 1.0,
        Direction::Down => -1.0,
    };
    let reached = |y: f64| s * (y - level) >= 0.0;
    if reached(pts[0].1) {
        return Some(Crossing::BelowRange(pts[0].0));
    }
    for w in pts.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if reached(y1) {
            let t = (level - y0) / (y1 - y0);
            let lx = x0.ln() + t * (x1.ln() - x0.ln());
            return Some(Crossing::At(lx.exp()));
        }
    }
    Some(Crossing::AboveRange(pts[pts.len() - 1].0))
}

/// α* with a bootstrap confidence interval over seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Threshold {
    /// The level crossed.
    pub level: f64,
    /// The crossing of the seed-averaged curve.
    pub estimate: Crossing,
    /// 2.5 % and 97.5 % percentiles of the bootstrap crossings (a resample that never crosses
    /// counts as +∞, one already past the level as the grid's smallest x); `None` without seeds
    /// to resample.
    pub ci95: Option<(f64, f64)>,
    /// Number of bootstrap resamples.
    pub resamples: usize,
    /// Fraction of resamples whose curve crosses inside the grid.
    pub frac_inside: f64,
    /// The bootstrap crossings, in resample order (+∞ for no crossing); resample k of every
    /// curve drawn with the same seed, so flatness fits can pair them.
    #[serde(skip)]
    pub samples: Vec<f64>,
}

/// One grid point of a curve with its per-seed values: `(seed label, value)`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedPoint {
    /// x (e.g. α).
    pub x: f64,
    /// Per-seed values; the seed label pairs resamples across x.
    pub values: Vec<(i64, f64)>,
}

fn crossing_as_number(c: Crossing) -> f64 {
    match c {
        Crossing::At(x) | Crossing::BelowRange(x) => x,
        Crossing::AboveRange(_) => f64::INFINITY,
    }
}

/// Percentile (linear interpolation between order statistics) of sorted data.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 >= sorted.len() {
        return sorted[sorted.len() - 1];
    }
    let (a, b) = (sorted[i], sorted[i + 1]);
    if f == 0.0 {
        a
    } else if a.is_infinite() || b.is_infinite() {
        if f < 0.5 {
            a
        } else {
            b
        }
    } else {
        a + f * (b - a)
    }
}

/// Localises α* where the seed-averaged metric crosses `level` (linear in log x) and a
/// percentile bootstrap CI over seeds: each resample draws seeds with replacement (the same
/// draw of seed labels at every x when all x share their seeds, otherwise independently per x),
/// averages, and finds the crossing. Deterministic for a given `rng_seed`.
pub fn threshold_bootstrap(
    points: &[SeedPoint],
    level: f64,
    dir: Direction,
    resamples: usize,
    rng_seed: u64,
) -> Option<Threshold> {
    let mut pts: Vec<&SeedPoint> = points.iter().filter(|p| !p.values.is_empty()).collect();
    pts.sort_by(|a, b| a.x.total_cmp(&b.x));
    let xs: Vec<f64> = pts.iter().map(|p| p.x).collect();
    let means: Vec<f64> = pts
        .iter()
        .map(|p| mean_se(&p.values.iter().map(|v| v.1).collect::<Vec<_>>()).mean)
        .collect();
    let estimate = threshold_crossing(&xs, &means, level, dir)?;

    // Paired resampling needs the same seed labels at every x.
    let mut labels: Vec<i64> = pts[0].values.iter().map(|v| v.0).collect();
    labels.sort_unstable();
    labels.dedup();
    let paired = pts.iter().all(|p| {
        let mut l: Vec<i64> = p.values.iter().map(|v| v.0).collect();
        l.sort_unstable();
        l.dedup();
        l == labels
    });
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let mut samples = Vec::with_capacity(resamples);
    let max_n = pts.iter().map(|p| p.values.len()).max().unwrap_or(0);
    if max_n >= 2 {
        for _ in 0..resamples {
            let ys: Vec<f64> = if paired {
                let draw: Vec<i64> = (0..labels.len())
                    .map(|_| labels[rng.random_range(0..labels.len())])
                    .collect();
                pts.iter()
                    .map(|p| {
                        let vals: Vec<f64> = draw
                            .iter()
                            .flat_map(|s| p.values.iter().filter(move |v| v.0 == *s).map(|v| v.1))
                            .collect();
                        vals.iter().sum::<f64>() / vals.len() as f64
                    })
                    .collect()
            } else {
                pts.iter()
                    .map(|p| {
                        let k = p.values.len();
                        (0..k)
                            .map(|_| p.values[rng.random_range(0..k)].1)
                            .sum::<f64>()
                            / k as f64
                    })
                    .collect()
            };
            let c = threshold_crossing(&xs, &ys, level, dir).expect("non-empty curve");
            samples.push(crossing_as_number(c));
        }
    }
    let (ci95, frac_inside) = if samples.is_empty() {
        (None, if estimate.value().is_some() { 1.0 } else { 0.0 })
    } else {
        let mut s = samples.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        let inside = samples
            .iter()
            .filter(|v| v.is_finite() && **v > xs[0])
            .count();
        (
            Some((percentile(&s, 0.025), percentile(&s, 0.975))),
            inside as f64 / samples.len() as f64,
        )
    };
    Some(Threshold {
        level,
        estimate,
        ci95,
        resamples: samples.len(),
        frac_inside,
        samples,
    })
}

/// A least-squares fit y = C·x^p on logs.
#[derive(Clone, Debug, Serialize)]
pub struct PowerLaw {
    /// The prefactor C.
    pub c: f64,
    /// The exponent p.
    pub p: f64,
    /// Standard error of p (NaN with fewer than 3 points).
    pub p_se: f64,
    /// 95 % CI of p (t distribution with n − 2 degrees of freedom); `None` with fewer than 3
    /// points.
    pub p_ci95: Option<(f64, f64)>,
    /// R² of the log-log fit.
    pub r2: f64,
    /// Number of points used (x > 0 and y > 0, finite).
    pub n: usize,
}

/// Fits y = C·x^p by ordinary least squares of ln y on ln x (points with x ≤ 0 or y ≤ 0 are
/// dropped). `None` with fewer than 2 usable points or all x equal.
pub fn power_law_fit(xs: &[f64], ys: &[f64]) -> Option<PowerLaw> {
    let pts: Vec<(f64, f64)> = xs
        .iter()
        .zip(ys)
        .filter(|(x, y)| x.is_finite() && y.is_finite() && **x > 0.0 && **y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    let n = pts.len();
    if n < 2 {
        return None;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let p = sxy / sxx;
    let a = my - p * mx;
    let ssr: f64 = pts.iter().map(|q| (q.1 - a - p * q.0).powi(2)).sum();
    let r2 = if syy > 0.0 { 1.0 - ssr / syy } else { 1.0 };
    let (p_se, p_ci95) = if n >= 3 {
        let se = (ssr / (n - 2) as f64 / sxx).sqrt();
        let t = t975(n - 2);
        (se, Some((p - t * se, p + t * se)))
    } else {
        (f64::NAN, None)
    };
    Some(PowerLaw {
        c: a.exp(),
        p,
        p_se,
        p_ci95,
        r2,
        n,
    })
}

/// Is α* flat in d? The slope of ln α* vs ln d.
#[derive(Clone, Debug, Serialize)]
pub struct Flatness {
    /// Slope of ln α* on ln d (0 = linear sample complexity n ∝ d).
    pub slope: f64,
    /// 95 % CI of the slope: from the bootstrap draws of α* (draw k of every d fitted together),
    /// or, without draws, from the t-based OLS interval (≥ 3 values of d).
    pub ci95: Option<(f64, f64)>,
    /// How the CI was obtained: `"bootstrap"`, `"ols"` or `"none"`.
    pub ci_method: String,
    /// The values of d used.
    pub d: Vec<f64>,
    /// The α* estimates used.
    pub alpha_star: Vec<f64>,
}

/// The slope of ln α* vs ln d with a CI. `alpha_star[i]` is the estimate at `d[i]`; when
/// `draws` is given, `draws[i]` holds bootstrap draws of α* at `d[i]` (equal lengths; +∞ for
/// a draw without crossing, such draws are left out of the slope distribution). `None` with
/// fewer than 2 finite estimates.
pub fn flatness(d: &[f64], alpha_star: &[f64], draws: Option<&[Vec<f64>]>) -> Option<Flatness> {
    let fit = power_law_fit(d, alpha_star)?;
    let mut ci95 = None;
    let mut method = "none";
    if let Some(draws) = draws {
        let k = draws.iter().map(|v| v.len()).min().unwrap_or(0);
        let mut slopes = Vec::new();
        for j in 0..k {
            let a: Vec<f64> = draws.iter().map(|v| v[j]).collect();
            if a.iter().all(|x| x.is_finite() && *x > 0.0) {
                if let Some(f) = power_law_fit(d, &a) {
                    slopes.push(f.p);
                }
            }
        }
        if slopes.len() >= 20 {
            slopes.sort_by(|a, b| a.total_cmp(b));
            ci95 = Some((percentile(&slopes, 0.025), percentile(&slopes, 0.975)));
            method = "bootstrap";
        }
    }
    if ci95.is_none() {
        if let Some(c) = fit.p_ci95 {
            ci95 = Some(c);
            method = "ols";
        }
    }
    Some(Flatness {
        slope: fit.p,
        ci95,
        ci_method: method.into(),
        d: d.to_vec(),
        alpha_star: alpha_star.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn mean_se_known() {
        let m = mean_se(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.n, 4);
        assert!((m.mean - 2.5).abs() < 1e-12);
        // s² = 5/3, se = sqrt(5/12)
        assert!((m.se - (5.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_se(&[7.0]).se, 0.0);
        assert!(mean_se(&[]).mean.is_nan());
    }

    #[test]
    fn crossing_interpolates_in_log_x() {
        // y = log2(x)/4 on x = 1, 2, 4, …, 64: y reaches 0.5 exactly at x = 4 and 0.625 at x = 2^2.5.
        let xs: Vec<f64> = (0..7).map(|k| 2f64.powi(k)).collect();
        let ys: Vec<f64> = xs.iter().map(|x| x.log2() / 4.0).collect();
        let c = threshold_crossing(&xs, &ys, 0.625, Direction::Up).unwrap();
        assert!((c.value().unwrap() - 2f64.powf(2.5)).abs() < 1e-9, "{c:?}");
        assert_eq!(
            threshold_crossing(&xs, &ys, -1.0, Direction::Up),
            Some(Crossing::BelowRange(1.0))
        );
        assert_eq!(
            threshold_crossing(&xs, &ys, 5.0, Direction::Up),
            Some(Crossing::AboveRange(64.0))
        );
        let down: Vec<f64> = ys.iter().map(|y| 1.0 - y).collect();
        let c = threshold_crossing(&xs, &down, 0.375, Direction::Down).unwrap();
        assert!((c.value().unwrap() - 2f64.powf(2.5)).abs() < 1e-9);
    }

    /// Seeds with a known mean curve y = log2(x)/6 + noise: α* for level 0.5 is 8.
    fn synthetic(seeds: usize, noise: f64, shift: f64, rng_seed: u64) -> Vec<SeedPoint> {
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        let normal = Normal::new(0.0, noise).unwrap();
        (0..8)
            .map(|k| {
                let x = 2f64.powi(k) * shift;
                SeedPoint {
                    x,
                    values: (0..seeds as i64)
                        .map(|s| (s, k as f64 / 6.0 + normal.sample(&mut rng)))
                        .collect(),
                }
            })
            .collect()
    }

    #[test]
    fn bootstrap_ci_covers_the_known_threshold_and_is_deterministic() {
        let pts = synthetic(20, 0.05, 1.0, 1);
        let t = threshold_bootstrap(&pts, 0.5, Direction::Up, 1000, 7).unwrap();
        let est = t.estimate.value().unwrap();
        assert!((est / 8.0).ln().abs() < 0.15, "estimate {est}");
        let (lo, hi) = t.ci95.unwrap();
        assert!(lo <= 8.0 && 8.0 <= hi, "CI [{lo}, {hi}]");
        assert!(hi / lo < 2.0, "CI too wide: [{lo}, {hi}]");
        assert_eq!(t.resamples, 1000);
        let again = threshold_bootstrap(&pts, 0.5, Direction::Up, 1000, 7).unwrap();
        assert_eq!(t.samples, again.samples);
        // Without noise the CI collapses to the point.
        let exact = synthetic(3, 0.0, 1.0, 1);
        let t = threshold_bootstrap(&exact, 0.5, Direction::Up, 200, 1).unwrap();
        let (lo, hi) = t.ci95.unwrap();
        assert!((lo - 8.0).abs() < 1e-9 && (hi - 8.0).abs() < 1e-9);
    }

    #[test]
    fn bootstrap_coverage_is_near_nominal() {
        // Over many synthetic experiments, the 95 % CI should contain α* = 8 most of the time.
        let mut covered = 0;
        let trials = 60;
        for trial in 0..trials {
            let pts = synthetic(10, 0.1, 1.0, 100 + trial);
            let t = threshold_bootstrap(&pts, 0.5, Direction::Up, 400, trial).unwrap();
            let (lo, hi) = t.ci95.unwrap();
            if lo <= 8.0 && 8.0 <= hi {
                covered += 1;
            }
        }
        assert!(covered >= trials * 8 / 10, "coverage {covered}/{trials}");
    }

    #[test]
    fn power_law_recovers_exponent() {
        let xs = [16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        let ys: Vec<f64> = xs.iter().map(|x: &f64| 0.3 * x.powf(1.5)).collect();
        let f = power_law_fit(&xs, &ys).unwrap();
        assert!((f.p - 1.5).abs() < 1e-12 && (f.c - 0.3).abs() < 1e-10);
        assert!(f.p_se < 1e-10 && (f.r2 - 1.0).abs() < 1e-12);

        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let normal = Normal::<f64>::new(0.0, 0.05).unwrap();
        let mut covered = 0;
        for _ in 0..200 {
            let ys: Vec<f64> = xs
                .iter()
                .map(|x: &f64| 2.0 * x.powf(0.8) * normal.sample(&mut rng).exp())
                .collect();
            let f = power_law_fit(&xs, &ys).unwrap();
            let (lo, hi) = f.p_ci95.unwrap();
            if lo <= 0.8 && 0.8 <= hi {
                covered += 1;
            }
            assert!(f.p_se > 0.0);
        }
        // Nominal 95 %; allow Monte Carlo slack.
        assert!((180..=200).contains(&covered), "coverage {covered}/200");
        assert!(power_law_fit(&[1.0], &[1.0]).is_none());
        assert!(power_law_fit(&[2.0, 2.0], &[1.0, 3.0]).is_none());
    }

    #[test]
    fn flatness_detects_flat_and_linear_growth() {
        // α* independent of d: slope 0 and a CI containing 0.
        let d = [100.0, 200.0, 400.0];
        let draws_flat: Vec<Vec<f64>> = d
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let pts = synthetic(8, 0.08, 1.0, 10 + i as u64);
                threshold_bootstrap(&pts, 0.5, Direction::Up, 1000, 5)
                    .unwrap()
                    .samples
            })
            .collect();
        let est: Vec<f64> = draws_flat
            .iter()
            .map(|s| {
                let mut v = s.clone();
                v.sort_by(|a, b| a.total_cmp(b));
                percentile(&v, 0.5)
            })
            .collect();
        let f = flatness(&d, &est, Some(&draws_flat)).unwrap();
        assert_eq!(f.ci_method, "bootstrap");
        let (lo, hi) = f.ci95.unwrap();
        assert!(
            lo <= 0.0 && 0.0 <= hi,
            "flat: slope {} CI [{lo}, {hi}]",
            f.slope
        );
        // α* ∝ d: the curve shifts right by the factor d/100.
        let draws_lin: Vec<Vec<f64>> = d
            .iter()
            .enumerate()
            .map(|(i, dd)| {
                let pts = synthetic(8, 0.08, dd / 100.0, 20 + i as u64);
                threshold_bootstrap(&pts, 0.5, Direction::Up, 1000, 5)
                    .unwrap()
                    .samples
            })
            .collect();
        let est: Vec<f64> = d.iter().map(|dd| 8.0 * dd / 100.0).collect();
        let f = flatness(&d, &est, Some(&draws_lin)).unwrap();
        assert!((f.slope - 1.0).abs() < 1e-12);
        let (lo, hi) = f.ci95.unwrap();
        assert!(
            lo > 0.5 && lo <= 1.0 && hi >= 1.0,
            "linear: CI [{lo}, {hi}]"
        );
        // Without draws, with 3 d values: the OLS interval.
        let f = flatness(&d, &[8.0, 8.5, 7.9], None).unwrap();
        assert_eq!(f.ci_method, "ols");
        // Two d values without draws: slope only.
        let f = flatness(&d[..2], &[8.0, 8.0], None).unwrap();
        assert!(f.ci95.is_none() && f.slope.abs() < 1e-12);
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_num(4.0), "4");
        assert_eq!(fmt_num(0.7234), "0.723");
        assert_eq!(fmt_num(123.456), "123");
        assert_eq!(fmt_num(1e-6), "1.00e-6");
        assert_eq!(Crossing::AboveRange(64.0).describe(), "> 64");
    }

    #[test]
    fn t_quantiles() {
        assert!((t975(1) - 12.706).abs() < 1e-3);
        assert!((t975(31) - 2.040).abs() < 2e-3);
        assert!((t975(1000) - 1.962).abs() < 2e-3);
    }
}
