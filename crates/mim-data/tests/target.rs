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

/// Seed 004's sparse θ*: exactly k non-zeros of magnitude k^{−1/2} (so unit norm), both signs,
/// a support that moves with the seed and is reproduced by it; k = 0 and k > d are refused.
#[test]
fn sparse_theta_has_k_entries_of_size_k_to_minus_half() {
    for (d, k) in [(64, 1), (64, 8), (200, 32), (16, 16)] {
        let t = Target::new_sparse(d, k, link("h3(z1)"), 0.0, true, 7).unwrap();
        assert_eq!(t.r, 1);
        let nz: Vec<f64> = t.u.iter().copied().filter(|v| *v != 0.0).collect();
        assert_eq!(nz.len(), k, "d = {d}, k = {k}");
        let level = 1.0 / (k as f64).sqrt();
        assert!(nz.iter().all(|v| (v.abs() - level).abs() < 1e-15), "{nz:?}");
        let norm: f64 = t.u.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-12);
        assert_eq!(t.support().len(), k);
        assert_eq!(
            t,
            Target::new_sparse(d, k, link("h3(z1)"), 0.0, true, 7).unwrap()
        );
        if k >= 8 {
            assert!(nz.iter().any(|v| *v > 0.0) && nz.iter().any(|v| *v < 0.0));
        }
    }
    let a = Target::new_sparse(200, 8, link("z1"), 0.0, true, 1).unwrap();
    let b = Target::new_sparse(200, 8, link("z1"), 0.0, true, 2).unwrap();
    assert_ne!(a.support(), b.support());
    // Supports are uniform: over 400 seeds each of d = 10 coordinates is picked ≈ 400·3/10 times.
    let mut counts = [0usize; 10];
    for seed in 0..400 {
        for i in Target::new_sparse(10, 3, link("z1"), 0.0, true, seed)
            .unwrap()
            .support()
        {
            counts[i] += 1;
        }
    }
    assert!(
        counts.iter().all(|&c| (80..=160).contains(&c)),
        "{counts:?}"
    );
    for (d, k) in [(5, 0), (5, 6)] {
        let e = Target::new_sparse(d, k, link("z1"), 0.0, true, 1).unwrap_err();
        assert!(matches!(e, DataError::Sparsity { .. }));
        assert!(e.to_string().starts_with("data.sparsity = "), "{e}");
    }
}
