//! The `hierarchical(K=…, gamma=…, g=…)` link form (seed 003).

use mim_data::{
    gaussian_expectation, Factor, Hierarchical, HierarchicalG, HierarchicalSigns, Link, LinkError,
    Target,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

fn parse(s: &str) -> Link {
    Link::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> LinkError {
    match Link::parse(s) {
        Ok(l) => panic!("{s} parsed as {l}"),
        Err(e) => e,
    }
}

const GS: [&str; 3] = ["h2", "abs", "h4"];

#[test]
fn display_is_canonical_and_round_trips() {
    let cases = [
        (
            "hierarchical(K=20, gamma=1, g=h2)",
            "hierarchical(K=20, gamma=1, g=h2)",
        ),
        (
            "hierarchical(g=h2,K=20,gamma=1)",
            "hierarchical(K=20, gamma=1, g=h2)",
        ),
        (
            "  hierarchical ( gamma = 0.75 , g = abs , K = 7 )  ",
            "hierarchical(K=7, gamma=0.75, g=abs)",
        ),
        (
            "hierarchical(gamma=1.50, K=3, g=h4)",
            "hierarchical(K=3, gamma=1.5, g=h4)",
        ),
        (
            "hierarchical(K=5, gamma=0.5, g=h2, signs=positive)",
            "hierarchical(K=5, gamma=0.5, g=h2)",
        ),
        (
            "hierarchical(K=5, gamma=1e-5, g=h2)",
            "hierarchical(K=5, gamma=1e-5, g=h2)",
        ),
        (
            "hierarchical(seed=42, signs=random, g=h2, gamma=1, K=10)",
            "hierarchical(K=10, gamma=1, g=h2, signs=random, seed=42)",
        ),
    ];
    for (input, canonical) in cases {
        let link = parse(input);
        assert_eq!(link.to_string(), canonical, "{input}");
        let again = parse(&link.to_string());
        assert_eq!(again, link, "{input}");
        assert_eq!(again.to_string(), canonical);
        assert!(!link.is_nested());
        assert!(link.hierarchical().is_some());
    }
    let h = *parse("hierarchical(g=abs, gamma=0.75, K=7)")
        .hierarchical()
        .unwrap();
    assert_eq!(
        h,
        Hierarchical {
            k: 7,
            gamma: 0.75,
            g: HierarchicalG::Abs,
            signs: HierarchicalSigns::Positive
        }
    );
    // Serde goes through the canonical string.
    let link = parse("hierarchical(g=h2, K=4, gamma=1)");
    let json = serde_json::to_string(&link).unwrap();
    assert_eq!(json, "\"hierarchical(K=4, gamma=1, g=h2)\"");
    assert_eq!(serde_json::from_str::<Link>(&json).unwrap(), link);
    // Ordinary formulas are not hierarchical, and the flat equivalent is a different Link.
    assert!(parse("h2(z1)").hierarchical().is_none());
    let flat: Vec<String> = link
        .terms()
        .iter()
        .map(|t| format!("{:e}*{}", t.coefficient, t.factors[0]))
        .collect();
    let flat = parse(&flat.join(" + "));
    assert_eq!(flat.terms(), link.terms());
    assert_ne!(flat, link);
}

#[test]
fn coefficients_are_normalised_power_laws() {
    for gamma in [0.25, 0.75, 1.0, 1.5] {
        for k in [1, 20, 100] {
            let link = parse(&format!("hierarchical(K={k}, gamma={gamma}, g=h2)"));
            let a = link.hierarchical().unwrap().coefficients();
            assert_eq!(a.len(), k);
            let sum: f64 = a.iter().map(|x| x * x).sum();
            assert!((sum - 1.0).abs() < 1e-12, "γ={gamma} K={k}: Σa² = {sum}");
            for (i, &ak) in a.iter().enumerate() {
                let expected = a[0] * ((i + 1) as f64).powf(-gamma);
                assert!(ak > 0.0);
                assert!(
                    (ak - expected).abs() <= 1e-14 * a[0],
                    "γ={gamma} k={}",
                    i + 1
                );
            }
        }
    }
    // Random signs: deterministic from the seed, Rademacher, same |a_k|.
    let plain = parse("hierarchical(K=200, gamma=1, g=h2)");
    let signed = parse("hierarchical(K=200, gamma=1, g=h2, signs=random, seed=7)");
    let other = parse("hierarchical(K=200, gamma=1, g=h2, signs=random, seed=8)");
    let (a, b, c) = (
        plain.hierarchical().unwrap().coefficients(),
        signed.hierarchical().unwrap().coefficients(),
        other.hierarchical().unwrap().coefficients(),
    );
    assert_eq!(
        b,
        parse(&signed.to_string())
            .hierarchical()
            .unwrap()
            .coefficients()
    );
    let negatives = b.iter().filter(|x| **x < 0.0).count();
    assert!(
        (60..140).contains(&negatives),
        "{negatives} negative signs of 200"
    );
    assert_ne!(b, c);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.abs(), y.abs());
    }
    let m = signed.moments();
    assert!(m.mean.abs() < 1e-12 && (m.variance - 1.0).abs() < 1e-12);
}

#[test]
fn moments_are_exactly_zero_mean_unit_variance() {
    for g in GS {
        for k in [20, 100] {
            for gamma in [0.25, 1.0] {
                let link = parse(&format!("hierarchical(K={k}, gamma={gamma}, g={g})"));
                let m = link.moments();
                assert!(m.mean.abs() < 1e-12, "{link}: mean {}", m.mean);
                assert!(
                    (m.variance - 1.0).abs() < 1e-12,
                    "{link}: var {}",
                    m.variance
                );
                // E[g²] = Σ c_t c_s E[P_t P_s] cancels the abs constant term (≈ −Σ a_k·1.3)
                // against the rest, so it is only accurate to about 1e-12 · (Σ a_k)².
                assert!(
                    (m.second_moment - 1.0).abs() < 1e-10,
                    "{link}: E[g²] {}",
                    m.second_moment
                );
                assert_eq!(link.try_moments().unwrap(), m);
            }
        }
    }
}

#[test]
fn eval_matches_hand_written_closure() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let c = (2.0 / std::f64::consts::PI).sqrt();
    for g in GS {
        let k = 20;
        let gamma = 0.75;
        let link = parse(&format!("hierarchical(K={k}, gamma={gamma}, g={g})"));
        let z_gamma = 1.0
            / (1..=k)
                .map(|i| (i as f64).powf(-2.0 * gamma))
                .sum::<f64>()
                .sqrt();
        let phi = |t: f64| match g {
            "h2" => (t * t - 1.0) / 2f64.sqrt(),
            "abs" => (t.abs() - c) / (1.0 - c * c).sqrt(),
            _ => (t.powi(4) - 6.0 * t * t + 3.0) / 24f64.sqrt(),
        };
        for _ in 0..200 {
            let z: Vec<f64> = (0..k).map(|_| rng.sample(StandardNormal)).collect();
            let expected: f64 = (1..=k)
                .map(|i| z_gamma * (i as f64).powf(-gamma) * phi(z[i - 1]))
                .sum();
            let got = link.eval(&z);
            assert!(
                (got - expected).abs() < 1e-12 * (1.0 + expected.abs()),
                "{g}: {got} vs {expected}"
            );
        }
    }
}

#[test]
fn structure_and_max_index() {
    for (g, factor) in [
        (
            "h2",
            Factor::Hermite {
                degree: 2,
                index: 1,
            },
        ),
        ("abs", Factor::Abs { index: 1 }),
        (
            "h4",
            Factor::Hermite {
                degree: 4,
                index: 1,
            },
        ),
    ] {
        let link = parse(&format!("hierarchical(K=37, gamma=1, g={g})"));
        assert_eq!(link.max_index(), 37);
        assert_eq!(link.terms().len(), if g == "abs" { 38 } else { 37 });
        assert_eq!(link.terms()[0].factors, vec![factor]);
        assert_eq!(link.is_polynomial(), g != "abs");
        assert!(link.check_indices(37).is_ok());
        assert_eq!(
            link.check_indices(36),
            Err(LinkError::IndexAboveRank { index: 37, r: 36 })
        );
    }
    assert_eq!(
        parse("hierarchical(K=10000, gamma=1, g=h2)").max_index(),
        10_000
    );
}

#[test]
fn mu2_values() {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    assert_eq!(HierarchicalG::H2.mu2(), 2f64.sqrt());
    assert_eq!(HierarchicalG::H4.mu2(), 0.0);
    let abs = HierarchicalG::Abs.mu2();
    assert!((abs - c / (1.0 - c * c).sqrt()).abs() < 1e-15);
    // Against quadrature / exact expectations of φ·He₂ (the constant part of φ drops out).
    let he2 = Factor::Hermite {
        degree: 2,
        index: 1,
    };
    let quad = gaussian_expectation(&[Factor::Abs { index: 1 }, he2]) / (1.0 - c * c).sqrt();
    assert!((abs - quad).abs() < 1e-12, "{abs} vs {quad}");
    let h2 = gaussian_expectation(&[he2, he2]) / 2f64.sqrt();
    assert!((HierarchicalG::H2.mu2() - h2).abs() < 1e-15);
    let h4 = gaussian_expectation(&[
        Factor::Hermite {
            degree: 4,
            index: 1,
        },
        he2,
    ]);
    assert_eq!(h4, 0.0);
    let link = parse("hierarchical(K=3, gamma=1, g=abs)");
    assert_eq!(link.hierarchical().unwrap().mu2(), abs);
}

#[test]
fn error_cases() {
    use LinkError::*;
    let cases: Vec<(&str, LinkError)> = vec![
        (
            "hierarchical(K=20, gamma=1, g=h2, beta=2)",
            HierarchicalUnknownArgument {
                name: "beta".into(),
                pos: 35,
            },
        ),
        (
            "hierarchical(k=20, gamma=1, g=h2)",
            HierarchicalUnknownArgument {
                name: "k".into(),
                pos: 14,
            },
        ),
        (
            "hierarchical(gamma=1, g=h2)",
            HierarchicalMissingArgument { name: "K", pos: 27 },
        ),
        (
            "hierarchical(K=2, g=h2)",
            HierarchicalMissingArgument {
                name: "gamma",
                pos: 23,
            },
        ),
        (
            "hierarchical(K=2, gamma=1)",
            HierarchicalMissingArgument { name: "g", pos: 26 },
        ),
        (
            "hierarchical(K=2, gamma=1, g=h2, signs=random)",
            HierarchicalMissingArgument {
                name: "seed",
                pos: 46,
            },
        ),
        (
            "hierarchical(K=2, gamma=1, K=3, g=h2)",
            HierarchicalRepeatedArgument {
                name: "K".into(),
                pos: 28,
            },
        ),
        (
            "hierarchical(K=2.5, gamma=1, g=h2)",
            HierarchicalBadValue {
                name: "K",
                value: "2.5".into(),
                expected: "an integer 1..=10000",
                pos: 16,
            },
        ),
        (
            "hierarchical(K=0, gamma=1, g=h2)",
            HierarchicalBadValue {
                name: "K",
                value: "0".into(),
                expected: "an integer 1..=10000",
                pos: 16,
            },
        ),
        (
            "hierarchical(K=10001, gamma=1, g=h2)",
            HierarchicalBadValue {
                name: "K",
                value: "10001".into(),
                expected: "an integer 1..=10000",
                pos: 16,
            },
        ),
        (
            "hierarchical(K=+3, gamma=1, g=h2)",
            HierarchicalBadValue {
                name: "K",
                value: "+3".into(),
                expected: "an integer 1..=10000",
                pos: 16,
            },
        ),
        (
            "hierarchical(K=3, gamma=-1, g=h2)",
            HierarchicalBadValue {
                name: "gamma",
                value: "-1".into(),
                expected: "a finite number > 0",
                pos: 25,
            },
        ),
        (
            "hierarchical(K=3, gamma=0, g=h2)",
            HierarchicalBadValue {
                name: "gamma",
                value: "0".into(),
                expected: "a finite number > 0",
                pos: 25,
            },
        ),
        (
            "hierarchical(K=3, gamma=1e999, g=h2)",
            HierarchicalBadValue {
                name: "gamma",
                value: "1e999".into(),
                expected: "a finite number > 0",
                pos: 25,
            },
        ),
        (
            "hierarchical(K=3, gamma=inf, g=h2)",
            HierarchicalBadValue {
                name: "gamma",
                value: "inf".into(),
                expected: "a finite number > 0",
                pos: 25,
            },
        ),
        (
            "hierarchical(K=3, gamma=1, g=tanh)",
            HierarchicalBadValue {
                name: "g",
                value: "tanh".into(),
                expected: "one of h2, abs, h4",
                pos: 30,
            },
        ),
        (
            "hierarchical(K=3, gamma=1, g=h2, signs=maybe, seed=1)",
            HierarchicalBadValue {
                name: "signs",
                value: "maybe".into(),
                expected: "`positive` or `random`",
                pos: 40,
            },
        ),
        (
            "hierarchical(K=3, gamma=1, g=h2, signs=random, seed=-1)",
            HierarchicalBadValue {
                name: "seed",
                value: "-1".into(),
                expected: "an integer 0..=18446744073709551615",
                pos: 53,
            },
        ),
        (
            "hierarchical(K=3, gamma=1, g=h2, seed=1)",
            HierarchicalSeedWithoutRandomSigns { pos: 39 },
        ),
        (
            "hierarchical(K=3, gamma=1, g=h2) + z1",
            HierarchicalNotWhole { pos: 34 },
        ),
        (
            "tanh(hierarchical(K=3, gamma=1, g=h2))",
            HierarchicalNotWhole { pos: 6 },
        ),
        (
            "z1 + hierarchical(K=3, gamma=1, g=h2)",
            HierarchicalNotWhole { pos: 6 },
        ),
        (
            "-hierarchical(K=3, gamma=1, g=h2)",
            HierarchicalNotWhole { pos: 2 },
        ),
        (
            "hierarchical",
            MissingParen {
                expected: '(',
                found: "end of formula".into(),
                pos: 13,
            },
        ),
        (
            "hierarchical(K=3, gamma=1, g=h2",
            Unexpected {
                found: "end of formula".into(),
                expected: "`,` or `)` after an argument of hierarchical(...)",
                pos: 32,
            },
        ),
        (
            "hierarchical()",
            Unexpected {
                found: "`)`".into(),
                expected: "an argument `name=value` of hierarchical(K=…, gamma=…, g=h2|abs|h4)",
                pos: 14,
            },
        ),
        (
            "hierarchical(K 3)",
            Unexpected {
                found: "`3`".into(),
                expected: "`=` after the argument name",
                pos: 16,
            },
        ),
        (
            "hierarchical(K=, gamma=1, g=h2)",
            Unexpected {
                found: "`,`".into(),
                expected: "a value after `=`",
                pos: 16,
            },
        ),
    ];
    for (input, expected) in cases {
        let e = err(input);
        assert_eq!(e, expected, "{input}");
        let msg = e.to_string();
        assert!(!msg.contains('\n') && !msg.is_empty());
    }
    assert!(err("tanh(hierarchical(K=3, gamma=1, g=h2))")
        .to_string()
        .contains("must be the whole link"));
    // Names that merely start with the keyword are ordinary (unknown) functions.
    assert!(matches!(err("hierarchicalx(z1)"), UnknownFunction { .. }));
}

#[test]
fn k100_target_has_unit_scale() {
    for g in GS {
        let link = parse(&format!("hierarchical(K=100, gamma=1, g={g})"));
        let target = Target::new(500, 100, link.clone(), 0.0, true, 1).unwrap();
        assert!(
            (target.scale - 1.0).abs() < 1e-12,
            "{g}: scale {}",
            target.scale
        );
        assert_eq!(target.link, link);
        assert!(Target::new(500, 99, link, 0.0, true, 1).is_err());
    }
}

#[test]
fn k10000_moments_are_fast_and_exact() {
    for g in GS {
        let link = parse(&format!("hierarchical(K=10000, gamma=0.5, g={g})"));
        let start = std::time::Instant::now();
        let m = link.moments();
        assert!(
            m.mean.abs() < 1e-10 && (m.variance - 1.0).abs() < 1e-10,
            "{g}: {m:?}"
        );
        assert!(start.elapsed().as_secs() < 60);
    }
}
