//! Target construction: validation errors, orthonormal U, normalisation scale.

use mim_data::{DataError, Link, LinkError, Target};

fn link(s: &str) -> Link {
    Link::parse(s).unwrap()
}

fn new(d: usize, r: usize, s: &str, noise: f64, normalize: bool) -> Result<Target, DataError> {
    Target::new(d, r, link(s), noise, normalize, 1)
}

#[test]
fn invalid_configurations_are_errors() {
    let e = new(0, 1, "z1", 0.0, true).unwrap_err();
    assert_eq!(e, DataError::ZeroDim);
    assert!(e.to_string().contains("data.d"));
    let e = new(4, 0, "3", 0.0, false).unwrap_err();
    assert_eq!(e, DataError::ZeroRank);
    assert!(e.to_string().contains("data.r"));
    let e = new(2, 3, "z1", 0.0, true).unwrap_err();
    assert_eq!(e.to_string(), "data.r = 3 exceeds data.d = 2");
    let e = new(5, 2, "h4(z1)+h4(z3)", 0.0, true).unwrap_err();
    assert_eq!(
        e,
        DataError::Link(LinkError::IndexAboveRank { index: 3, r: 2 })
    );
    assert!(e.to_string().starts_with("data.link: ") && e.to_string().contains("z3"));
    for noise in [-0.1, f64::NAN, f64::INFINITY] {
        let e = new(5, 2, "z1", noise, true).unwrap_err();
        assert!(matches!(e, DataError::Noise(_)));
        assert!(e.to_string().starts_with("data.noise"));
    }
    for constant in ["3", "z1 - z1", "sign(z1)*sign(z1)", "h0(z1)*z2^0", "0*z1"] {
        let e = new(5, 2, constant, 0.1, true).unwrap_err();
        assert!(
            matches!(e, DataError::ConstantLink { .. }),
            "{constant}: {e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("constant") && msg.contains("variance 0"),
            "{msg}"
        );
        // Without normalisation a constant link is allowed.
        assert_eq!(new(5, 2, constant, 0.1, false).unwrap().scale, 1.0);
    }
    let e = new(5, 2, "1e200*z1", 0.0, true).unwrap_err();
    assert!(matches!(e, DataError::NonFiniteVariance { .. }), "{e}");
    let e = new(usize::MAX, usize::MAX, "z1", 0.0, false).unwrap_err();
    assert!(matches!(e, DataError::TooLarge { .. }));
    for e in [DataError::ZeroDim, DataError::Noise(-1.0)] {
        assert!(!e.to_string().contains('\n'));
    }
}

fn assert_orthonormal(t: &Target) {
    for i in 0..t.r {
        for j in 0..t.r {
            let dot: f64 = t.u_row(i).iter().zip(t.u_row(j)).map(|(a, b)| a * b).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-12, "(UUᵀ)[{i}][{j}] = {dot}");
        }
    }
}

#[test]
fn u_has_orthonormal_rows() {
    for (d, r) in [(1, 1), (2, 2), (50, 10), (20, 20), (1000, 3), (64, 63)] {
        let t = new(d, r, "z1", 0.0, true).unwrap();
        assert_eq!(t.u.len(), r * d);
        assert_orthonormal(&t);
    }
}

#[test]
fn u_is_seeded() {
    let a = Target::new(30, 4, link("z1*z2"), 0.0, true, 5).unwrap();
    let b = Target::new(30, 4, link("z1*z2"), 0.0, true, 5).unwrap();
    let c = Target::new(30, 4, link("z1*z2"), 0.0, true, 6).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.u, c.u);
}

#[test]
fn scale_is_inverse_standard_deviation() {
    let cases = [
        ("h4(z1)+h4(z2)", 48.0),
        ("z1^2", 2.0),
        ("h3(z1)*z2", 6.0),
        ("h2(z1)+0.5*h4(z2)", 8.0),
    ];
    for (s, var) in cases {
        let t = new(10, 2, s, 0.0, true).unwrap();
        assert!((t.scale - 1.0 / f64::sqrt(var)).abs() < 1e-15, "{s}");
        assert_eq!(new(10, 2, s, 0.0, false).unwrap().scale, 1.0);
    }
}

#[test]
fn signal_is_scaled_link_of_projection() {
    let t = new(6, 2, "h3(z1)*z2", 0.0, true).unwrap();
    let x = [0.3, -1.2, 0.7, 2.0, -0.4, 0.1];
    let mut z = [0.0; 2];
    t.project(&x, &mut z);
    for (k, zk) in z.iter().enumerate() {
        let dot: f64 = t.u_row(k).iter().zip(&x).map(|(a, b)| a * b).sum();
        assert_eq!(*zk, dot);
    }
    assert_eq!(t.signal(&x), t.scale * t.link.eval(&z));
}
