//! Nested link formulas: backward compatibility of flat formulas, parsing, canonical printing,
//! evaluation, deterministic moments (checked against independent quadratures), errors, fuzz.

use mim_data::{gauss_legendre, hermite, DataError, Link, LinkError, Split, Target};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn link(s: &str) -> Link {
    Link::parse(s).unwrap_or_else(|e| panic!("`{s}`: {e}"))
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

// ----------------------------------------------------------------------------------------------
// Backward compatibility

/// Canonical strings printed by the parser before nested formulas existed (captured by running
/// the previous code on these inputs).
const OLD_CANONICAL: &[(&str, &str)] = &[
    ("h4(z1)+h4(z2)", "h4(z1) + h4(z2)"),
    ("h2(z1)+h2(z2)", "h2(z1) + h2(z2)"),
    ("z1^2", "z1^2"),
    ("h3(z1)*z2", "h3(z1)*z2"),
    ("z1*z2", "z1*z2"),
    ("h2(z1)+0.5*h4(z2)", "h2(z1) + 0.5*h4(z2)"),
    ("-z1 + 2*z2^3", "-z1 + 2*z2^3"),
    ("tanh(z1)*relu(z2)", "tanh(z1)*relu(z2)"),
    ("h3(z1)*h3(z1)", "h3(z1)*h3(z1)"),
    (
        "abs(z1) - sign(z2) + 1e-3*z3^16 + .5 - 7",
        "abs(z1) - sign(z2) + 0.001*z3^16 + 0.5 - 7",
    ),
    ("+ h0(z1) * 2 * h8(z2) * 3", "6*h0(z1)*h8(z2)"),
    ("1.5E+2*z1^0", "150*z1^0"),
    (
        "- 2*3*z1*0.1 + 1e-300*z2 - 2.5e200",
        "-0.6000000000000001*z1 + 1e-300*z2 - 2.5e200",
    ),
    ("0*z1 - 0.1*3*z3", "0*z1 - 0.30000000000000004*z3"),
    (
        "z1^1*z2^0 + 1e15*z1 + 123456.789*h1(z4)",
        "z1*z2^0 + 1e15*z1 + 123456.789*h1(z4)",
    ),
    ("3.5", "3.5"),
    ("z1 - z1", "z1 - z1"),
    ("1000 + 1e-7*z1", "1000 + 1e-7*z1"),
    (
        "sign(z1)*abs(z2)*relu(z3)*tanh(z4)*h5(z5) - .25",
        "sign(z1)*abs(z2)*relu(z3)*tanh(z4)*h5(z5) - 0.25",
    ),
];

#[test]
fn old_formulas_print_and_parse_exactly_as_before() {
    for (input, canonical) in OLD_CANONICAL {
        let l = link(input);
        assert!(!l.is_nested(), "{input}");
        assert!(!l.terms().is_empty(), "{input}");
        assert_eq!(l.to_string(), *canonical, "{input}");
        assert_eq!(link(canonical), l, "{input}");
    }
    // Debug output of flat links is unchanged too (captured from the previous code).
    assert_eq!(
        format!("{:?}", link("h3(z1)*z2")),
        "Link { terms: [Term { coefficient: 1.0, factors: [Hermite { degree: 3, index: 1 }, \
         Power { index: 2, exponent: 1 }] }] }"
    );
    assert_eq!(
        format!("{:?}", link("- 2*3*z1*0.1 + 1e-300*z2 - 2.5e200")),
        "Link { terms: [Term { coefficient: -0.6000000000000001, factors: [Power { index: 1, \
         exponent: 1 }] }, Term { coefficient: 1e-300, factors: [Power { index: 2, exponent: 1 }] \
         }, Term { coefficient: -2.5e200, factors: [] }] }"
    );
}

#[test]
fn flat_moments_are_bit_identical_to_before() {
    // (formula, mean, E[g²], Var g, variance_reference) printed by the previous code.
    let cases: &[(&str, f64, f64, f64, f64)] = &[
        ("h4(z1)+h4(z2)", 0.0, 48.0, 48.0, 9.599999999999999e1),
        ("h2(z1)+0.5*h4(z2)", 0.0, 8.0, 8.0, 1.4928203230275507e1),
        (
            "tanh(z1)*relu(z2)",
            2.0837316539982754e-17,
            1.9714724519891988e-1,
            1.9714724519891988e-1,
            1.971472451989199e-1,
        ),
        (
            "abs(z1) - sign(z2) + 1e-3*z3^16 + .5 - 7",
            2.021322884560803e3,
            1.9189876087972702e11,
            1.9189467513352338e11,
            1.9190053621664783e11,
        ),
        (
            "sign(z1)*abs(z2)*relu(z3)*tanh(z4)*h5(z5) - .25",
            -2.5e-1,
            2.3720169423870278e1,
            2.3657669423870278e1,
            2.3657669423870278e1,
        ),
        (
            "1000 + 1e-7*z1",
            1e3,
            1e6,
            9.999999999999998e-15,
            9.999999999999998e-15,
        ),
    ];
    for &(s, mean, second, var, reference) in cases {
        let l = link(s);
        let m = l.moments();
        assert_eq!(
            (m.mean, m.second_moment, m.variance),
            (mean, second, var),
            "{s}"
        );
        assert_eq!(l.try_moments().unwrap(), m, "{s}");
        assert_eq!(l.variance_reference(), reference, "{s}");
    }
}

// ----------------------------------------------------------------------------------------------
// Parsing and canonical printing

const TARGET8: &str = "tanh(3*(h2(z1)+h2(z2)+h2(z3)+h2(z4)+h2(z5)+h2(z6)+h2(z7)+h2(z8))/4)";

/// (input, canonical string, nested?)
const NESTED_EXAMPLES: &[(&str, &str, bool)] = &[
    (
        TARGET8,
        "tanh(0.75*h2(z1) + 0.75*h2(z2) + 0.75*h2(z3) + 0.75*h2(z4) + 0.75*h2(z5) + \
         0.75*h2(z6) + 0.75*h2(z7) + 0.75*h2(z8))",
        true,
    ),
    ("(h2(z1)+h2(z2))/4", "0.25*h2(z1) + 0.25*h2(z2)", false),
    ("abs(z1+z2)", "abs(z1 + z2)", true),
    ("h3((z1+z2)/2)", "h3(0.5*z1 + 0.5*z2)", true),
    ("relu(z1 - 0.5)", "relu(z1 - 0.5)", true),
    ("-(z1*z2)", "-z1*z2", false),
    ("(z1+z2)^2", "(z1 + z2)^2", true),
    ("2*tanh(z1)*z2", "2*tanh(z1)*z2", false),
    ("2*(h2(z1))", "2*h2(z1)", false),
    ("h2(z1)/4", "0.25*h2(z1)", false),
    ("2*(z1 + z2)", "2*z1 + 2*z2", false),
    ("z1/(2+2)", "0.25*z1", false),
    ("tanh((z1))", "tanh(z1)", false),
    ("h2(z1)^2", "h2(z1)*h2(z1)", false),
    ("(2*z1)^2", "4*z1*z1", false),
    ("(z1^2)^3", "z1^6", false),
    ("(z1^8)^3", "z1^8*z1^8*z1^8", false),
    ("z1 + +z2 - -z3", "z1 + z2 + z3", false),
    ("-z1^2", "-z1^2", false),
    ("abs(h2(z1))", "abs(h2(z1))", true),
    ("z3*(z1+z2)*2", "z3*(2*z1 + 2*z2)", true),
    ("2*z3*(z1 - 1)", "z3*(2*z1 - 2)", true),
    ("-(z1+z2)*z3", "(-z1 - z2)*z3", true),
    ("z4 - (z1+z2)*z3", "z4 + (-z1 - z2)*z3", true),
    ("(z1+z2)*(z1-z2)", "(z1 + z2)*(z1 - z2)", true),
    ("tanh(z1+z2)^2", "tanh(z1 + z2)^2", true),
    ("(2*tanh(z1+z2))^2", "(2*tanh(z1 + z2))^2", true),
    ("((z1+z2)^2)^3", "((z1 + z2)^2)^3", true),
    ("(z1+z2)^0", "(z1 + z2)^0", true),
    ("(z1+z2)^1", "z1 + z2", false),
    ("tanh(2)", "tanh(2)", true),
    ("sign(tanh(z1) - 0.1*z2)", "sign(tanh(z1) - 0.1*z2)", true),
    ("relu(h2(z1)/3)", "relu(0.3333333333333333*h2(z1))", true),
    (
        "tanh(z1*z2 + z3) * abs(z1 - z2) / 2 + 0.5*h4(z4)",
        "0.5*tanh(z1*z2 + z3)*abs(z1 - z2) + 0.5*h4(z4)",
        true,
    ),
    ("1e-3*(z1+z2)^2", "0.001*(z1 + z2)^2", true),
];

#[test]
fn examples_parse_print_and_round_trip() {
    for (input, canonical, nested) in NESTED_EXAMPLES {
        let l = link(input);
        assert_eq!(l.is_nested(), *nested, "{input}");
        assert_eq!(l.to_string(), *canonical, "{input}");
        let again = link(canonical);
        assert_eq!(again, l, "{input} -> {canonical}");
        assert_eq!(again.to_string(), *canonical);
        if *nested {
            assert!(l.terms().is_empty(), "{input}");
        }
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<Link>(&json).unwrap(), l);
    }
    // Flat after simplification: exactly the link of the flat spelling.
    assert_eq!(link("(h2(z1)+h2(z2))/4"), link("0.25*h2(z1) + 0.25*h2(z2)"));
    assert_eq!(link("-(z1*z2)"), link("-z1*z2"));
    assert_eq!(link("2*(h2(z1))").terms()[0].coefficient, 2.0);
    // Structural, not algebraic, equality.
    assert_ne!(link("abs(z1+z2)"), link("abs(z2+z1)"));
}

#[test]
fn structure_of_nested_links() {
    let l = link(TARGET8);
    assert_eq!(l.max_index(), 8);
    assert!(l.check_indices(8).is_ok());
    assert_eq!(
        l.check_indices(7).unwrap_err(),
        LinkError::IndexAboveRank { index: 8, r: 7 }
    );
    assert!(!l.is_polynomial());
    assert!(link("(z1+z2)^2").is_polynomial());
    assert!(link("h3((z1+z2)/2)*z3").is_polynomial());
    assert!(!link("abs(z1+z2)").is_polynomial());
    assert!(!link("h2(tanh(z1) + z2)").is_polynomial());
    assert_eq!(link("tanh(2)").max_index(), 0);
    assert_eq!(link("z9*(z1+z2)").max_index(), 9);
    let dbg = format!("{:?}", link("abs(z1+z2)"));
    assert!(dbg.starts_with("Link { expr: "), "{dbg}");
    let c = link("tanh(z1+z2)");
    assert_eq!(c.clone(), c);
}

#[test]
fn nested_eval_matches_closures() {
    type F = fn(&[f64]) -> f64;
    let cases: &[(&str, F)] = &[
        (TARGET8, |z| {
            (3.0 * z.iter().map(|x| x * x - 1.0).sum::<f64>() / 4.0).tanh()
        }),
        ("(h2(z1)+h2(z2))/4", |z| {
            (z[0] * z[0] - 1.0 + z[1] * z[1] - 1.0) / 4.0
        }),
        ("abs(z1+z2)", |z| (z[0] + z[1]).abs()),
        ("h3((z1+z2)/2)", |z| {
            let s = (z[0] + z[1]) / 2.0;
            s * s * s - 3.0 * s
        }),
        ("relu(z1 - 0.5)", |z| (z[0] - 0.5).max(0.0)),
        ("-(z1*z2)", |z| -(z[0] * z[1])),
        ("(z1+z2)^2", |z| (z[0] + z[1]).powi(2)),
        ("2*tanh(z1)*z2", |z| 2.0 * z[0].tanh() * z[1]),
        ("z3*(z1+z2)*2", |z| z[2] * (z[0] + z[1]) * 2.0),
        ("(z1+z2)*(z1-z2)", |z| (z[0] + z[1]) * (z[0] - z[1])),
        ("tanh(z1*z2 + z3) * abs(z1 - z2) / 2 + 0.5*h4(z4)", |z| {
            (z[0] * z[1] + z[2]).tanh() * (z[0] - z[1]).abs() / 2.0 + 0.5 * hermite(4, z[3])
        }),
        ("sign(tanh(z1) - 0.1*z2)", |z| {
            let t = z[0].tanh() - 0.1 * z[1];
            f64::from(u8::from(t > 0.0)) - f64::from(u8::from(t < 0.0))
        }),
        ("h8(abs(z1) - relu(z2))^2", |z| {
            hermite(8, z[0].abs() - z[1].max(0.0)).powi(2)
        }),
        ("((z1+z2)^2)^3", |z| (z[0] + z[1]).powi(6)),
        ("(z1+z2)^0 + tanh(2)", |_| 1.0 + 2f64.tanh()),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    for (formula, f) in cases {
        let l = link(formula);
        for _ in 0..200 {
            let z: Vec<f64> = (0..8).map(|_| rng.random_range(-3.0..3.0)).collect();
            let (a, b) = (l.eval(&z), f(&z));
            assert!(
                (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                "{formula} at {z:?}: {a} vs {b}"
            );
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Moments

/// `∫_a^b f` by composite 20-point Gauss–Legendre with `n` panels.
fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    let (x, w) = gauss_legendre(20);
    let h = (b - a) / n as f64;
    let mut s = 0.0;
    for k in 0..n {
        let mid = a + (k as f64 + 0.5) * h;
        for (xi, wi) in x.iter().zip(&w) {
            s += wi * f(mid + 0.5 * h * xi);
        }
    }
    s * 0.5 * h
}

fn phi(t: f64) -> f64 {
    (-0.5 * t * t).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// `E[f(z1, z2)]` by the trapezoidal rule with step 0.01 on `[−10, 10]²` (spectrally accurate
/// for smooth integrands against the Gaussian weight).
fn brute_2d(f: impl Fn(f64, f64) -> f64) -> f64 {
    let h = 0.01;
    let n = 1000i32;
    let mut s = 0.0;
    for i in -n..=n {
        let a = i as f64 * h;
        let wa = phi(a);
        for j in -n..=n {
            let b = j as f64 * h;
            s += wa * phi(b) * f(a, b);
        }
    }
    s * h * h
}

#[test]
fn chi_square_target_matches_one_dimensional_integral() {
    // 4·S = Σ_k z_k² − 8 with Σ z_k² ~ χ²_8, density x³ e^{−x/2} / 96.
    let chi8 = |p: i32| {
        integrate(
            |x| (0.75 * (x - 8.0)).tanh().powi(p) * x.powi(3) * (-x / 2.0).exp() / 96.0,
            0.0,
            250.0,
            5000,
        )
    };
    let (m1, m2) = (chi8(1), chi8(2));
    let var = m2 - m1 * m1;
    let l = link(TARGET8);
    let m = l.try_moments().unwrap();
    assert!(rel(m.variance, var) < 1e-6, "{m:?} vs var {var}");
    assert!(rel(m.mean, m1) < 1e-6, "{m:?} vs mean {m1}");
    assert!(rel(m.second_moment, m2) < 1e-6, "{m:?} vs E[g²] {m2}");
    // In practice the grid convolution is far better than the target.
    assert!(rel(m.variance, var) < 1e-9, "{m:?} vs var {var}");
    assert_eq!(l.moments(), m);
    assert!(rel(l.variance_reference(), m.second_moment) < 1e-12);

    // Normalising by it gives unit-variance labels (Monte Carlo cross-check, 5 standard errors).
    let t = Target::new(8, 8, l, 0.0, true, 5).unwrap();
    assert!(rel(t.scale, 1.0 / var.sqrt()) < 1e-6);
    let data = t.sample(Split::Test, 200_000, 3);
    let n = data.y.len() as f64;
    let mean = data.y.iter().sum::<f64>() / n;
    let var_hat = data.y.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n;
    let m4 = data.y.iter().map(|y| (y - mean).powi(4)).sum::<f64>() / n;
    let se = ((m4 - var_hat * var_hat) / n).sqrt();
    assert!((var_hat - 1.0).abs() < 5.0 * se, "{var_hat} ± {se}");
}

#[test]
fn separable_and_tensor_quadrature_agree_with_brute_force() {
    let tanh2 = brute_2d(|a, b| (a + b).tanh().powi(2));
    // tanh(z1+z2): a function of the separable sum z1 + z2 (grid convolution) ...
    let m = link("tanh(z1+z2)").moments();
    assert!(m.mean.abs() < 1e-12, "{m:?}");
    assert!(rel(m.second_moment, tanh2) < 1e-9, "{m:?} vs {tanh2}");
    assert!(rel(m.variance, tanh2) < 1e-9, "{m:?} vs {tanh2}");
    // ... and the same function written non-separably (2-D tensor quadrature).
    let m = link("tanh(z1 + z2 + 0*z1*z2)").moments();
    assert!(m.mean.abs() < 1e-12, "{m:?}");
    assert!(rel(m.second_moment, tanh2) < 1e-9, "{m:?} vs {tanh2}");

    // (z1+z2)^2: E = 2, E[g²] = E[(√2 u)⁴] = 12.
    for s in ["(z1+z2)^2", "(z1 + z2 + 0*z1*z2)^2"] {
        let m = link(s).moments();
        assert!((m.mean - 2.0).abs() < 1e-10, "{s}: {m:?}");
        assert!((m.second_moment - 12.0).abs() < 1e-9, "{s}: {m:?}");
        assert!((m.variance - 8.0).abs() < 1e-9, "{s}: {m:?}");
    }
    // h3((z1+z2)/2) with S ~ N(0, 1/2): E[He_3(S)²] = 15/8 − 6·3/4 + 9/2 = 15/8.
    let m = link("h3((z1+z2)/2)").moments();
    assert!(m.mean.abs() < 1e-12 && (m.second_moment - 1.875).abs() < 1e-10);
    // abs(z1+z2): E = 2/√π, E[g²] = 2 (a kink of F(S) at 0: grid values extrapolated).
    let m = link("abs(z1+z2)").moments();
    assert!(
        rel(m.mean, 2.0 / std::f64::consts::PI.sqrt()) < 1e-9,
        "{m:?}"
    );
    assert!(rel(m.second_moment, 2.0) < 1e-10, "{m:?}");
    // sign(z1+z2)² = 1 almost surely.
    let m = link("sign(z1+z2)").moments();
    assert!(
        m.mean.abs() < 1e-12 && rel(m.second_moment, 1.0) < 1e-10,
        "{m:?}"
    );
    // A tilted sum: Stein's identity E[z1 tanh(z1+z2)] = E[tanh'(S)] = 1 − E[tanh²(S)].
    let m = link("tanh(z1+z2)*z1").moments();
    assert!(rel(m.mean, 1.0 - tanh2) < 1e-9, "{m:?} vs {}", 1.0 - tanh2);
    // A separable sum with a constant and more than 3 coordinates.
    let m = link("relu(z1+z2+z3+z4 - 1)").moments();
    let want = integrate(|t| (t - 1.0) * phi(t / 2.0) / 2.0, 1.0, 30.0, 400);
    assert!(rel(m.mean, want) < 1e-9, "{m:?} vs {want}");
    let m = link("abs(z1+z2+z3+z4)").moments();
    let want = 2.0 * (2.0 / std::f64::consts::PI).sqrt();
    assert!(rel(m.mean, want) < 1e-9, "{m:?} vs {want}");
    assert!(rel(m.second_moment, 4.0) < 1e-10, "{m:?}");

    // One coordinate: adaptive quadrature, kink anywhere.
    for a in [0.5, 0.3, -1.234] {
        let m = link(&format!("relu(z1 - {a})")).moments();
        let want1 = integrate(|t| (t - a) * phi(t), a, 14.0, 400);
        let want2 = integrate(|t| (t - a).powi(2) * phi(t), a, 14.0, 400);
        assert!(rel(m.mean, want1) < 1e-10, "{a}: {m:?} vs {want1}");
        assert!(rel(m.second_moment, want2) < 1e-10, "{a}: {m:?} vs {want2}");
    }

    // Two coordinates, not separable: tensor quadrature.
    let want = brute_2d(|a, b| (a * b).tanh().powi(2));
    let m = link("tanh(z1*z2)").moments();
    assert!(m.mean.abs() < 1e-12 && rel(m.second_moment, want) < 1e-9);
    // Independent clusters multiply: two 2-D clusters make a 4-coordinate link available.
    let m2 = link("tanh(z1*z2) + tanh(z3*z4)").moments();
    assert!(
        rel(m2.second_moment, 2.0 * m.second_moment) < 1e-12,
        "{m2:?}"
    );
}

#[test]
fn three_coordinate_tensor_quadrature() {
    // E[tanh(z1 z2 + z3)²] by the trapezoidal rule (step 0.04 on [−8, 8]³); E = 0 by symmetry.
    let h = 0.04;
    let n = 200i32;
    let w: Vec<f64> = (-n..=n).map(|i| phi(i as f64 * h) * h).collect();
    let t: Vec<f64> = (-n..=n).map(|i| i as f64 * h).collect();
    let mut want = 0.0;
    for (a, wa) in t.iter().zip(&w) {
        for (b, wb) in t.iter().zip(&w) {
            let ab = a * b;
            let inner: f64 = t
                .iter()
                .zip(&w)
                .map(|(c, wc)| wc * (ab + c).tanh().powi(2))
                .sum();
            want += wa * wb * inner;
        }
    }
    let m = link("tanh(z1*z2 + z3)").moments();
    assert!(m.mean.abs() < 1e-12, "{m:?}");
    assert!(rel(m.second_moment, want) < 1e-7, "{m:?} vs {want}");
}

#[test]
fn unavailable_moments_are_explained() {
    let l = link("tanh(z1*z2 + z3*z4)");
    let e = l.try_moments().unwrap_err();
    assert!(matches!(e, LinkError::MomentsUnavailable { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("tanh(z1*z2 + z3*z4)")
            && msg.contains("4 coordinates")
            && msg.contains("separable sum")
            && msg.contains("data.normalize = false")
            && !msg.contains('\n'),
        "{msg}"
    );
    let m = l.moments();
    assert!(m.mean.is_nan() && m.second_moment.is_nan() && m.variance.is_nan());
    assert!(l.variance_reference().is_nan());
    // Target: an error with normalisation, fine without.
    let e = Target::new(6, 4, l.clone(), 0.0, true, 1).unwrap_err();
    assert!(
        matches!(e, DataError::Link(LinkError::MomentsUnavailable { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("data.normalize = false"), "{e}");
    let t = Target::new(6, 4, l, 0.0, false, 1).unwrap();
    assert!(t.signal(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]).is_finite());
}

#[test]
fn constant_nested_links_are_detected() {
    for s in [
        "tanh(2)",
        "tanh(z1+z2) - tanh(z1+z2)",
        "(z1+z2)^0",
        "abs(z1*z2) - abs(z1*z2) + 1",
    ] {
        let l = link(s);
        assert!(l.is_nested(), "{s}");
        let m = l.moments();
        assert!(m.variance <= 1e-12 * l.variance_reference(), "{s}: {m:?}");
        let e = Target::new(3, 2, l.clone(), 0.1, true, 1).unwrap_err();
        assert!(matches!(e, DataError::ConstantLink { .. }), "{s}: {e}");
        assert_eq!(Target::new(3, 2, l, 0.1, false, 1).unwrap().scale, 1.0);
    }
    let m = link("tanh(2)").moments();
    assert_eq!((m.mean, m.variance), (2f64.tanh(), 0.0));
}

// ----------------------------------------------------------------------------------------------
// Errors

fn err(s: &str) -> LinkError {
    match Link::parse(s) {
        Ok(l) => panic!("`{s}` parsed as {l}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line message: {msg}");
            e
        }
    }
}

#[test]
fn nested_errors_name_piece_and_position() {
    // Unbalanced parentheses.
    for (formula, paren, at) in [
        ("(z1+z2", ')', 7),
        ("((z1)", ')', 6),
        ("tanh(z1+z2", ')', 11),
    ] {
        let e = err(formula);
        assert!(
            matches!(e, LinkError::MissingParen { expected, pos, .. } if expected == paren && pos == at),
            "{formula}: {e:?}"
        );
    }
    assert!(matches!(
        err("z1+z2)"),
        LinkError::TrailingGarbage { pos: 6, .. }
    ));
    assert!(matches!(err("()"), LinkError::Unexpected { pos: 2, .. }));
    assert!(matches!(
        err("tanh()"),
        LinkError::Unexpected { pos: 6, .. }
    ));
    // Unknown functions.
    let e = err("cos(z1+z2)");
    assert!(matches!(e, LinkError::UnknownFunction { ref name, pos: 1 } if name == "cos"));
    assert!(e.to_string().contains("tanh(z1 + z2)"), "{e}");
    assert!(matches!(
        err("z1 + exp((z1))"),
        LinkError::UnknownFunction { pos: 6, .. }
    ));
    // Division by a non-constant / by zero.
    let e = err("z1/z2");
    assert_eq!(
        e,
        LinkError::DivisionByNonConstant {
            divisor: "z2".into(),
            pos: 3
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("division by a non-constant") && msg.contains("position 3"),
        "{msg}"
    );
    assert_eq!(
        err("h2(z1) / (z2 + 1)"),
        LinkError::DivisionByNonConstant {
            divisor: "(z2 + 1)".into(),
            pos: 8
        }
    );
    assert!(matches!(
        err("z1/0"),
        LinkError::DivisionByZero { pos: 3, .. }
    ));
    assert!(matches!(
        err("tanh(z1/(1-1))"),
        LinkError::DivisionByZero { pos: 8, .. }
    ));
    // Hermite degree above 8, also on a sub-expression.
    assert_eq!(
        err("h9((z1+z2)/2)"),
        LinkError::HermiteDegree {
            text: "h9".into(),
            pos: 1
        }
    );
    assert!(matches!(
        err("z1 + h12(z1+z2)"),
        LinkError::HermiteDegree { pos: 6, .. }
    ));
    // Powers.
    assert!(matches!(
        err("z1^2^3"),
        LinkError::Unexpected { pos: 5, .. }
    ));
    assert!(matches!(
        err("(z1+z2)^17"),
        LinkError::ExponentTooLarge { pos: 9, .. }
    ));
    assert!(matches!(
        err("(z1+z2)^z1"),
        LinkError::BadExponent { pos: 9, .. }
    ));
    // Overflow while simplifying.
    assert!(matches!(
        err("(1e200*z1)^2"),
        LinkError::NumberOutOfRange { pos: 1, .. }
    ));
    assert!(matches!(
        err("z1*(1e200*z2+z3)*1e200"),
        LinkError::NumberOutOfRange { pos: 18, .. }
    ));
    assert!(matches!(
        err("z1/1e-320"),
        LinkError::NumberOutOfRange { pos: 4, .. }
    ));
    // Dangling operators inside parentheses.
    assert_eq!(
        err("tanh(z1 *)"),
        LinkError::DanglingOperator { op: '*', pos: 9 }
    );
    assert_eq!(
        err("z1 / * z2"),
        LinkError::DanglingOperator { op: '/', pos: 4 }
    );
    assert_eq!(err("(-)"), LinkError::DanglingOperator { op: '-', pos: 2 });
    // Nesting depth.
    let deep = format!("{}z1{}", "(".repeat(40), ")".repeat(40));
    let e = err(&deep);
    assert_eq!(e, LinkError::TooDeep { max: 32, pos: 33 });
    assert!(e.to_string().contains("position 33"));
    let ok = format!("{}z1{}", "tanh(".repeat(32), ")".repeat(32));
    assert!(link(&ok).is_nested());
}

// ----------------------------------------------------------------------------------------------
// Random formulas

/// A random formula and an independent closure computing it.
type Gen = (String, Box<dyn Fn(&[f64]) -> f64>);

fn gen(rng: &mut ChaCha8Rng, depth: u32) -> Gen {
    let leaf = depth == 0 || rng.random_range(0..4) == 0;
    if leaf {
        if rng.random_range(0..3) == 0 {
            let c = [0.5, 2.0, 3.0, 0.25, 1.5][rng.random_range(0..5)];
            return (format!("{c}"), Box::new(move |_| c));
        }
        let i = rng.random_range(0..4);
        return (format!("z{}", i + 1), Box::new(move |z| z[i]));
    }
    match rng.random_range(0..9) {
        0 => {
            let ((a, fa), (b, fb)) = (gen(rng, depth - 1), gen(rng, depth - 1));
            (format!("({a}) + ({b})"), Box::new(move |z| fa(z) + fb(z)))
        }
        1 => {
            let ((a, fa), (b, fb)) = (gen(rng, depth - 1), gen(rng, depth - 1));
            (format!("({a})-({b})"), Box::new(move |z| fa(z) - fb(z)))
        }
        2 | 3 => {
            let ((a, fa), (b, fb)) = (gen(rng, depth - 1), gen(rng, depth - 1));
            (format!("({a})*({b})"), Box::new(move |z| fa(z) * fb(z)))
        }
        4 => {
            let (a, fa) = gen(rng, depth - 1);
            let d = [2.0, 4.0, 3.0, 0.5][rng.random_range(0..4)];
            (format!("({a})/{d}"), Box::new(move |z| fa(z) / d))
        }
        5 => {
            let (a, fa) = gen(rng, depth - 1);
            let k = rng.random_range(0..4);
            (format!("({a})^{k}"), Box::new(move |z| fa(z).powi(k)))
        }
        6 => {
            let (a, fa) = gen(rng, depth - 1);
            (format!("-({a})"), Box::new(move |z| -fa(z)))
        }
        _ => {
            let (a, fa) = gen(rng, depth - 1);
            match rng.random_range(0..4) {
                0 => (format!("tanh({a})"), Box::new(move |z| fa(z).tanh())),
                1 => (format!("abs({a})"), Box::new(move |z| fa(z).abs())),
                2 => (format!("relu({a})"), Box::new(move |z| fa(z).max(0.0))),
                _ => {
                    let k = rng.random_range(0..5);
                    (format!("h{k}({a})"), Box::new(move |z| hermite(k, fa(z))))
                }
            }
        }
    }
}

#[test]
fn random_formulas_round_trip_and_evaluate() {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let mut nested = 0;
    let mut with_moments = 0;
    for _ in 0..3000 {
        let (s, f) = gen(&mut rng, 3);
        let l = link(&s);
        nested += l.is_nested() as usize;
        let printed = l.to_string();
        let again = link(&printed);
        assert_eq!(again, l, "`{s}` -> `{printed}`");
        assert_eq!(again.to_string(), printed);
        for _ in 0..5 {
            let z: Vec<f64> = (0..4).map(|_| rng.random_range(-1.5..1.5)).collect();
            let (a, b) = (l.eval(&z), f(&z));
            assert!(
                (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
                "`{s}` -> `{printed}` at {z:?}: {a} vs {b}"
            );
        }
        // Moments never panic (a sample of the cheap ones, at most 2 coordinates).
        if l.max_index() <= 2 && with_moments < 150 {
            with_moments += 1;
            let m = l.try_moments().unwrap();
            assert!(m.variance.is_nan() || m.variance >= 0.0, "`{s}`: {m:?}");
        }
    }
    assert!(
        nested > 1000 && with_moments == 150,
        "{nested} {with_moments}"
    );
}

#[test]
fn random_strings_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let alphabet: Vec<char> = "z12()+-*/^.5 h3abstanhrelusign0e".chars().collect();
    let mut ok = 0;
    for _ in 0..30_000 {
        let len = rng.random_range(0..30);
        let s: String = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        match Link::parse(&s) {
            Ok(l) => {
                ok += 1;
                assert_eq!(link(&l.to_string()), l, "{s:?}");
                if l.max_index() <= 16 {
                    let _ = l.eval(&[0.3; 16]);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.is_empty() && !msg.contains('\n'), "{s:?}: {msg}");
            }
        }
    }
    assert!(ok > 100, "{ok}");
}
