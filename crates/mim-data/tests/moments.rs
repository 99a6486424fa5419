//! Exact / quadrature link moments, plus Monte Carlo cross-checks with seeded samples.

use mim_data::{gaussian_expectation, hermite, Factor, Link, LinkMoments};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn moments(s: &str) -> LinkMoments {
    Link::parse(s).unwrap().moments()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-300) || (a - b).abs() <= 1e-15
}

fn factorial(k: usize) -> f64 {
    (1..=k).map(|j| j as f64).product()
}

#[test]
fn hermite_orthogonality_exact() {
    for j in 0..=8 {
        for k in 0..=8 {
            let m = moments(&format!("h{j}(z1)*h{k}(z1)"));
            let want = if j == k { factorial(k) } else { 0.0 };
            assert_eq!(m.mean, want, "E[He_{j} He_{k}]");
        }
        // Different coordinates: independent, so E[He_j(z1) He_j(z2)] = δ_{j0}.
        let m = moments(&format!("h{j}(z1)*h{j}(z2)"));
        assert_eq!(m.mean, if j == 0 { 1.0 } else { 0.0 });
        assert_eq!(m.second_moment, factorial(j) * factorial(j));
    }
}

#[test]
fn polynomial_link_moments() {
    let m = moments("h4(z1)+h4(z2)");
    assert_eq!((m.mean, m.second_moment, m.variance), (0.0, 48.0, 48.0));
    let m = moments("h2(z1)+h2(z2)");
    assert_eq!((m.mean, m.second_moment), (0.0, 4.0));
    let m = moments("z1^2");
    assert_eq!((m.mean, m.second_moment, m.variance), (1.0, 3.0, 2.0));
    let m = moments("h3(z1)*z2");
    assert_eq!((m.mean, m.variance), (0.0, 6.0));
    let m = moments("z1*z2");
    assert_eq!((m.mean, m.variance), (0.0, 1.0));
    let m = moments("h2(z1)+0.5*h4(z2)");
    assert_eq!((m.mean, m.variance), (0.0, 8.0));
    let m = moments("-z1 + 2*z2^3");
    assert_eq!((m.mean, m.variance), (0.0, 1.0 + 4.0 * 15.0));
    let m = moments("z1^2 + z1^2*z2");
    // E = 1, E[g²] = E z⁴ + 2E[z1⁴]E[z2] + E[z1⁴]E[z2²] = 3 + 0 + 3
    assert_eq!((m.mean, m.second_moment, m.variance), (1.0, 6.0, 5.0));
    let m = moments("3 - 1");
    assert_eq!((m.mean, m.second_moment, m.variance), (2.0, 4.0, 0.0));
    // A large constant offset does not swamp a small variance.
    let m = moments("1000 + 1e-7*z1");
    assert!(close(m.variance, 1e-14, 1e-12), "{m:?}");
    let m = moments("z1 - z1");
    assert_eq!(m.variance, 0.0);
}

#[test]
fn non_polynomial_moments_by_quadrature() {
    let sqrt_2_pi = (2.0 / std::f64::consts::PI).sqrt();
    let tanh2 = 0.394_294_490_397_841_17; // mpmath, 30 digits: 0.394294490397841174416…
    let cases: &[(&str, f64)] = &[
        ("abs(z1)", sqrt_2_pi),
        ("relu(z1)*relu(z1)", 0.5),
        ("relu(z1)", 1.0 / (2.0 * std::f64::consts::PI).sqrt()),
        ("tanh(z1)*tanh(z1)", tanh2),
        ("sign(z1)*z1", sqrt_2_pi),
        ("abs(z1)*z1^2", 2.0 * sqrt_2_pi),
        ("sign(z1)*sign(z1)", 1.0),
        ("abs(z1)*h8(z1)*h8(z1)", {
            // E|z| He_8² via exact half-moments E|z|^{m} = 2^{m/2} Γ((m+1)/2)/√π
            let c = mim_data::hermite_coefficients(8);
            let mut sq = [0.0; 17];
            for (i, a) in c.iter().enumerate() {
                for (j, b) in c.iter().enumerate() {
                    sq[i + j] += a * b;
                }
            }
            sq.iter()
                .enumerate()
                .map(|(m, a)| {
                    // E|z|^{m+1} for odd m+1 = 2k+1: 2^k k! √(2/π)
                    let p = m + 1;
                    if p % 2 == 1 {
                        let k = (p - 1) / 2;
                        a * 2f64.powi(k as i32) * factorial(k) * sqrt_2_pi
                    } else {
                        a * mim_data::gaussian_moment(p)
                    }
                })
                .sum()
        }),
    ];
    for (s, want) in cases {
        let m = moments(s);
        assert!(close(m.mean, *want, 1e-10), "{s}: {} vs {want}", m.mean);
    }
    let m = moments("tanh(z1)");
    assert!(m.mean.abs() < 1e-15 && close(m.variance, tanh2, 1e-10));
    let m = moments("tanh(z1)*relu(z2)");
    assert!(m.mean.abs() < 1e-15 && close(m.second_moment, 0.5 * tanh2, 1e-10));
    let m = moments("abs(z1) + relu(z2)");
    assert!(close(
        m.mean,
        sqrt_2_pi + 1.0 / (2.0 * std::f64::consts::PI).sqrt(),
        1e-12
    ));
    assert_eq!(gaussian_expectation(&[]), 1.0);
    assert_eq!(
        gaussian_expectation(&[Factor::Power {
            index: 1,
            exponent: 4
        }]),
        3.0
    );
}

/// Mean and standard error of a sample.
fn mean_se(sum: f64, sum_sq: f64, n: f64) -> (f64, f64) {
    let mean = sum / n;
    let var = (sum_sq / n - mean * mean).max(0.0);
    (mean, (var / n).sqrt())
}

#[test]
fn hermite_orthogonality_monte_carlo() {
    const N: usize = 1_000_000;
    const K: usize = 9;
    let mut rng = ChaCha8Rng::seed_from_u64(0x4865_726d);
    let mut sum = [[0.0f64; K]; K];
    let mut sum_sq = [[0.0f64; K]; K];
    let mut he = [0.0f64; K];
    for _ in 0..N {
        let z: f64 = StandardNormal.sample(&mut rng);
        for (k, h) in he.iter_mut().enumerate() {
            *h = hermite(k, z);
        }
        for j in 0..K {
            for k in j..K {
                let p = he[j] * he[k];
                sum[j][k] += p;
                sum_sq[j][k] += p * p;
            }
        }
    }
    // The sample standard error badly underestimates the spread of heavy-tailed products such
    // as He_8² (most of E[He_8²] comes from rare |z| > 4), so the tolerance uses the exact
    // standard error √(Var(He_j He_k)/N), with E[(He_j He_k)²] from `Link::moments`.
    // For j + k ≥ 14 that exact error is comparable to the mean, so those pairs are weak checks;
    // the low-degree pairs are tight.
    for j in 0..K {
        for k in j..K {
            let mean = sum[j][k] / N as f64;
            let exact = moments(&format!("h{j}(z1)*h{k}(z1)"));
            let se = (exact.variance / N as f64).sqrt();
            let want = if j == k { factorial(k) } else { 0.0 };
            assert_eq!(exact.mean, want);
            assert!(
                (mean - want).abs() <= 5.0 * se + 1e-12,
                "E[He_{j} He_{k}] = {mean}, want {want} ± 5·{se}"
            );
            if j + k <= 8 {
                // Light enough tails that the sample standard error is also trustworthy.
                let (_, sample_se) = mean_se(sum[j][k], sum_sq[j][k], N as f64);
                assert!(
                    (mean - want).abs() <= 5.0 * sample_se + 1e-12,
                    "E[He_{j} He_{k}] = {mean} ± {sample_se} (sample SE), want {want}"
                );
            }
        }
    }
}

#[test]
fn link_moments_agree_with_monte_carlo() {
    const N: usize = 400_000;
    for s in [
        "tanh(z1)*relu(z2) + abs(z1)",
        "h3(z1)*z2 - 0.5*sign(z2) + 1",
    ] {
        let link = Link::parse(s).unwrap();
        let m = link.moments();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (mut s1, mut s1q, mut s2, mut s2q) = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..N {
            let z: [f64; 2] = [
                StandardNormal.sample(&mut rng),
                StandardNormal.sample(&mut rng),
            ];
            let g = link.eval(&z);
            s1 += g;
            s1q += g * g;
            s2 += g * g;
            s2q += g.powi(4);
        }
        let (mean, se) = mean_se(s1, s1q, N as f64);
        assert!(
            (mean - m.mean).abs() <= 5.0 * se,
            "{s}: mean {mean} ± {se} vs {}",
            m.mean
        );
        let (sec, se) = mean_se(s2, s2q, N as f64);
        assert!(
            (sec - m.second_moment).abs() <= 5.0 * se,
            "{s}: E[g²] {sec} ± {se} vs {}",
            m.second_moment
        );
    }
}
