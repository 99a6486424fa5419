//! The SIMD paths [`pulp`] has on this CPU, for tests that pin vectorised code to its scalar
//! definition (the fused stage-1 kernel, the v2 Gaussian rows).

/// Runs `op` through every SIMD path pulp has on this CPU: the dispatched `Arch::new()`,
/// pulp's one-lane `Scalar`, and each instruction set the CPU supports (x86-64: V3 = AVX2+FMA,
/// V4 = AVX-512; aarch64: NEON). Returns (name, output) per path.
pub fn on_every_simd<Op: pulp::WithSimd + Clone>(op: Op) -> Vec<(String, Op::Output)> {
    use pulp::Simd;
    let arch = pulp::Arch::new();
    let mut out = vec![
        (
            format!("Arch::new() = {}", arch_name(arch)),
            arch.dispatch(op.clone()),
        ),
        (
            "Scalar".to_string(),
            Simd::vectorize(pulp::Scalar::new(), op.clone()),
        ),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(simd) = pulp::x86::V3::try_new() {
            out.push(("V3".to_string(), Simd::vectorize(simd, op.clone())));
        }
        if let Some(simd) = pulp::x86::V4::try_new() {
            out.push(("V4".to_string(), Simd::vectorize(simd, op.clone())));
        }
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(simd) = pulp::aarch64::Neon::try_new() {
        out.push(("Neon".to_string(), Simd::vectorize(simd, op.clone())));
    }
    out
}

/// The variant of a `pulp::Arch` ("V4", "V3", "Neon", "Scalar"), without its feature list.
pub fn arch_name(arch: pulp::Arch) -> String {
    let name = format!("{arch:?}");
    name.split('(').next().unwrap_or_default().to_string()
}

/// Whether this x86-64 CPU has pulp's V3 set (AVX2, FMA, BMI1/2, LZCNT; SSE4.2 and below go
/// with them), so a test can require that a vector path, not only `Scalar`, was checked.
/// `false` on other architectures.
pub fn has_x86_v3() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx2") && has!("fma") && has!("bmi1") && has!("bmi2") && has!("lzcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Largest distance in ulps between two f32 slices (bit patterns mapped to ordered integers,
/// −0 one below +0, so a zero-ulp tolerance means bit-identical). Panics on different lengths.
pub fn max_ulps(x: &[f32], y: &[f32]) -> u32 {
    assert_eq!(x.len(), y.len());
    let ord = |v: f32| {
        let b = v.to_bits() as i32;
        if b < 0 {
            i32::MIN - b - 1
        } else {
            b
        }
    };
    x.iter()
        .zip(y)
        .map(|(&a, &b)| ord(a).abs_diff(ord(b)))
        .max()
        .unwrap_or(0)
}
