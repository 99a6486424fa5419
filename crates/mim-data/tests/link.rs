//! Link-formula parser: examples, evaluation, round-trip, errors, and a no-panic fuzz test.

use mim_data::{hermite, Factor, Link, LinkError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EXAMPLES: &[&str] = &[
    "h4(z1)+h4(z2)",
    "h2(z1)+h2(z2)",
    "z1^2",
    "h3(z1)*z2",
    "z1*z2",
    "h2(z1)+0.5*h4(z2)",
    "-z1 + 2*z2^3",
    "tanh(z1)*relu(z2)",
    "h3(z1)*h3(z1)",
    "abs(z1) - sign(z2) + 1e-3*z3^16 + .5 - 7",
    "+ h0(z1) * 2 * h8(z2) * 3",
    "1.5E+2*z1^0",
];

fn he(k: usize, z: f64) -> f64 {
    hermite(k, z)
}

#[test]
fn examples_evaluate_correctly() {
    type F = fn(&[f64]) -> f64;
    let cases: &[(&str, F)] = &[
        ("h4(z1)+h4(z2)", |z| he(4, z[0]) + he(4, z[1])),
        ("h2(z1)+h2(z2)", |z| z[0] * z[0] - 1.0 + z[1] * z[1] - 1.0),
        ("z1^2", |z| z[0] * z[0]),
        ("h3(z1)*z2", |z| (z[0].powi(3) - 3.0 * z[0]) * z[1]),
        ("z1*z2", |z| z[0] * z[1]),
        ("h2(z1)+0.5*h4(z2)", |z| {
            z[0] * z[0] - 1.0 + 0.5 * (z[1].powi(4) - 6.0 * z[1] * z[1] + 3.0)
        }),
        ("-z1 + 2*z2^3", |z| -z[0] + 2.0 * z[1].powi(3)),
        ("tanh(z1)*relu(z2)", |z| z[0].tanh() * z[1].max(0.0)),
        ("abs(z1)*sign(z2) - 3", |z| z[0].abs() * z[1].signum() - 3.0),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (formula, f) in cases {
        let link: Link = formula.parse().unwrap();
        for _ in 0..50 {
            let z: Vec<f64> = (0..3).map(|_| rng.random_range(-3.0..3.0)).collect();
            let (a, b) = (link.eval(&z), f(&z));
            assert!(
                (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                "{formula}: {a} vs {b}"
            );
        }
    }
    let sign = Link::parse("sign(z1)").unwrap();
    assert_eq!(sign.eval(&[0.0]), 0.0);
}

#[test]
fn structure_and_max_index() {
    let link = Link::parse("h3(z1)*h3(z1)").unwrap();
    assert_eq!(link.terms().len(), 1);
    assert_eq!(
        link.terms()[0].factors,
        vec![
            Factor::Hermite {
                degree: 3,
                index: 1
            };
            2
        ]
    );
    assert_eq!(Link::parse("-z1 + 2*z2^3").unwrap().max_index(), 2);
    assert_eq!(Link::parse("z7 * tanh(z3)").unwrap().max_index(), 7);
    assert_eq!(Link::parse("3.5").unwrap().max_index(), 0);
    let c = Link::parse("2*z2^3*0.5").unwrap();
    assert_eq!(c.terms()[0].coefficient, 1.0);
    assert!(Link::parse("h2(z1) + z2^3").unwrap().is_polynomial());
    assert!(!Link::parse("h2(z1) + abs(z2)").unwrap().is_polynomial());
}

#[test]
fn display_round_trips() {
    for s in EXAMPLES {
        let link = Link::parse(s).unwrap();
        let printed = link.to_string();
        let again = Link::parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_eq!(link, again, "{s} -> {printed}");
        assert_eq!(printed, again.to_string());
    }
    assert_eq!(
        Link::parse("-z1 + 2*z2^3").unwrap().to_string(),
        "-z1 + 2*z2^3"
    );
    assert_eq!(
        Link::parse("h2(z1)+0.5*h4(z2)").unwrap().to_string(),
        "h2(z1) + 0.5*h4(z2)"
    );
    for c in [1e-300, 3.7e-5, 0.1 * 3.0, 123456.789, 9.9e14, 1e15, 2.5e200] {
        let link = Link::parse(&format!("{c:e}*z1 - {c:e}")).unwrap();
        assert_eq!(Link::parse(&link.to_string()).unwrap(), link, "{link}");
    }
}

#[test]
fn check_indices_against_rank() {
    let link = Link::parse("h4(z1)+h4(z3)").unwrap();
    assert!(link.check_indices(3).is_ok());
    let err = link.check_indices(2).unwrap_err();
    assert_eq!(err, LinkError::IndexAboveRank { index: 3, r: 2 });
    let msg = err.to_string();
    assert!(msg.contains("z3") && msg.contains("r = 2"), "{msg}");
}

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
fn errors_name_piece_and_position() {
    assert_eq!(err(""), LinkError::Empty);
    assert_eq!(err("   "), LinkError::Empty);

    let e = err("cos(z1)");
    assert!(matches!(e, LinkError::UnknownFunction { ref name, pos: 1 } if name == "cos"));
    let msg = e.to_string();
    assert!(
        msg.contains("`cos`") && msg.contains("relu") && msg.contains("hK(zI)"),
        "{msg}"
    );

    let e = err("z1 + h9(z2)");
    assert_eq!(
        e,
        LinkError::HermiteDegree {
            text: "h9".into(),
            pos: 6
        }
    );
    assert!(e.to_string().contains("`h9`") && e.to_string().contains("position 6"));

    assert!(matches!(
        err("z1^17"),
        LinkError::ExponentTooLarge { pos: 4, .. }
    ));
    assert!(matches!(
        err("z1^99999999999999999999"),
        LinkError::ExponentTooLarge { .. }
    ));
    assert!(matches!(err("z1^2.5"), LinkError::BadExponent { .. }));
    assert!(matches!(err("z1^-1"), LinkError::BadExponent { .. }));
    assert!(matches!(err("z0"), LinkError::IndexZero { pos: 1, .. }));
    assert!(matches!(err("h2(z0)"), LinkError::IndexZero { pos: 4, .. }));
    assert!(matches!(
        err("z99999999999999999999"),
        LinkError::IndexTooLarge { .. }
    ));

    for bad in ["1.2.3*z1", "1e*z1", "1e+*z1", ".*z1", "2.5e-"] {
        assert!(
            matches!(err(bad), LinkError::MalformedNumber { pos: 1, .. }),
            "{bad}"
        );
    }
    assert!(matches!(
        err("1e400*z1"),
        LinkError::NumberOutOfRange { .. }
    ));
    assert!(matches!(
        err("1e200*1e200*z1"),
        LinkError::NumberOutOfRange { pos: 7, .. }
    ));

    for (formula, paren, at) in [("h2(z1", ')', 6), ("abs z1", '(', 5)] {
        let e = err(formula);
        assert!(
            matches!(e, LinkError::MissingParen { expected, pos, .. } if expected == paren && pos == at),
            "{formula}: {e:?}"
        );
    }
    assert!(matches!(
        err("h2"),
        LinkError::MissingParen { expected: '(', .. }
    ));

    assert!(matches!(
        err("z1 z2"),
        LinkError::TrailingGarbage { pos: 4, .. }
    ));
    assert!(matches!(
        err("z1)"),
        LinkError::TrailingGarbage { pos: 3, .. }
    ));
    assert!(matches!(
        err("2z1"),
        LinkError::TrailingGarbage { pos: 2, .. }
    ));
    let msg = err("z1 z2").to_string();
    assert!(msg.contains("`z2`") && msg.contains("position 4"), "{msg}");

    assert_eq!(err("z1 +"), LinkError::DanglingOperator { op: '+', pos: 4 });
    assert_eq!(err("z1 *"), LinkError::DanglingOperator { op: '*', pos: 4 });
    assert_eq!(err("-"), LinkError::DanglingOperator { op: '-', pos: 1 });
    assert_eq!(
        err("z1 + * z2"),
        LinkError::DanglingOperator { op: '+', pos: 4 }
    );
    assert_eq!(err("z1^"), LinkError::DanglingOperator { op: '^', pos: 3 });

    assert!(matches!(
        err("z1 # z2"),
        LinkError::UnexpectedChar { ch: '#', pos: 4 }
    ));
    assert!(matches!(
        err("zé"),
        LinkError::UnexpectedChar { ch: 'é', pos: 2 }
    ));
    assert!(matches!(err("*z1"), LinkError::Unexpected { pos: 1, .. }));
    // `abs(h2(z1))` and `h2(z1)^2` were errors before nested formulas; now they parse
    // (see tests/nested.rs), and their malformed neighbours are errors.
    assert!(Link::parse("abs(h2(z1))").unwrap().is_nested());
    assert_eq!(
        Link::parse("h2(z1)^2").unwrap(),
        Link::parse("h2(z1)*h2(z1)").unwrap()
    );
    assert!(matches!(
        err("abs(h2(z1)"),
        LinkError::MissingParen {
            expected: ')',
            pos: 11,
            ..
        }
    ));
    assert!(matches!(
        err("h2(z1)^2^2"),
        LinkError::Unexpected { pos: 9, .. }
    ));
}

/// Check a successfully parsed link is self-consistent (round-trip, eval, moments).
fn check_ok(link: &Link) {
    let printed = link.to_string();
    let again = Link::parse(&printed).unwrap_or_else(|e| panic!("`{printed}` fails: {e}"));
    assert_eq!(&again, link, "`{printed}`");
    if link.max_index() <= 64 {
        let _ = link.eval(&[0.3; 64]);
        if link.terms().len() <= 32 {
            let _ = link.moments();
        }
    }
}

#[test]
fn parser_never_panics() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let alphabet: Vec<char> = "zh0123456789.eE+-*^() absigntanhrelu_,é∑😀\u{0}\t\n/"
        .chars()
        .collect();
    let mut inputs: Vec<String> = vec![
        "z99999999999999999999".into(),
        "h99999999999999999999(z1)".into(),
        "z1^99999999999999999999999".into(),
        "1e99999999999999999999*z1".into(),
        "1e-99999999999999999999*z1".into(),
        "9".repeat(5000),
        "(".repeat(10_000),
        ")".repeat(10_000),
        "-".repeat(10_000),
        "z1*".repeat(5000) + "z1",
        "h8(z1)*".repeat(200) + "h8(z1)",
        "z1+".repeat(3000),
        "abs(abs(abs(abs(z1))))".into(),
        "😀(z1)".into(),
        "h٣(z1)".into(),
        "z１".into(),
        "\u{200b}z1".into(),
        "z18446744073709551615".into(),
        "z18446744073709551616".into(),
        String::new(),
    ];
    // Random strings over the grammar's alphabet plus junk.
    for _ in 0..20_000 {
        let len = rng.random_range(0..24);
        inputs.push(
            (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect(),
        );
    }
    // Mutations of valid examples: insert / delete / replace / duplicate.
    for _ in 0..20_000 {
        let mut s: Vec<char> = EXAMPLES[rng.random_range(0..EXAMPLES.len())]
            .chars()
            .collect();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..=s.len());
            match rng.random_range(0..4) {
                0 => s.insert(at, alphabet[rng.random_range(0..alphabet.len())]),
                1 if at < s.len() => {
                    s.remove(at);
                }
                2 if at < s.len() => s[at] = alphabet[rng.random_range(0..alphabet.len())],
                _ => {
                    let tail: Vec<char> = s[at..].to_vec();
                    s.extend(tail);
                }
            }
        }
        inputs.push(s.into_iter().collect());
    }
    let mut ok = 0;
    for s in &inputs {
        match Link::parse(s) {
            Ok(link) => {
                ok += 1;
                check_ok(&link);
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.is_empty() && !msg.contains('\n'), "{s:?}: {msg:?}");
            }
        }
    }
    assert!(
        ok > 1000,
        "too few valid mutants ({ok}) to exercise round-trip"
    );
}

#[test]
fn serde_uses_the_formula_string() {
    let link = Link::parse("h2(z1)+0.5*h4(z2)").unwrap();
    let json = serde_json::to_string(&link).unwrap();
    assert_eq!(json, "\"h2(z1) + 0.5*h4(z2)\"");
    assert_eq!(serde_json::from_str::<Link>(&json).unwrap(), link);
    let e = serde_json::from_str::<Link>("\"cos(z1)\"").unwrap_err();
    assert!(e.to_string().contains("unknown function `cos`"));
}
