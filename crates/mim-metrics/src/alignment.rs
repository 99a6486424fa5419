//! Per-neuron alignment ρ_j = ‖U w_j‖ / ‖w_j‖ ∈ [0, 1] (paper §6.1). A random direction has
//! E ρ ≈ √(r/d).

use crate::{Projections, RowMajor};
use serde::Serialize;

/// Summary of the ρ_j.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlignmentSummary {
    /// mean_j ρ_j.
    pub alignment_mean: f64,
    /// median_j ρ_j.
    pub alignment_median: f64,
    /// Fraction of neurons with ρ_j > 0.9.
    pub frac_aligned_0_9: f64,
}

/// ρ_j for every row of W (m×d) against U (r×d, orthonormal rows). Zero rows give ρ = 0.
pub fn per_neuron_alignment(w: RowMajor<'_>, u: RowMajor<'_>) -> Vec<f64> {
    rho(&Projections::new(w, u))
}

/// ρ_j = √(Σ_k M_jk² / ‖w_j‖²) from M = W Uᵀ and the row norms.
fn rho(p: &Projections) -> Vec<f64> {
    (0..p.norm2.len())
        .map(|j| {
            let norm2 = p.norm2[j];
            if norm2 == 0.0 {
                return 0.0;
            }
            let proj2: f64 = p.row(j).iter().map(|v| v * v).sum();
            (proj2 / norm2).sqrt().min(1.0)
        })
        .collect()
}

/// Mean, median and fraction above 0.9 of the ρ_j.
pub fn alignment(w: RowMajor<'_>, u: RowMajor<'_>) -> AlignmentSummary {
    alignment_of(&Projections::new(w, u))
}

/// [`alignment`] from projections already computed.
pub fn alignment_of(p: &Projections) -> AlignmentSummary {
    let mut rho = rho(p);
    let m = rho.len();
    rho.sort_by(|a, b| a.total_cmp(b));
    let median = if m % 2 == 1 {
        rho[m / 2]
    } else {
        0.5 * (rho[m / 2 - 1] + rho[m / 2])
    };
    AlignmentSummary {
        alignment_mean: rho.iter().sum::<f64>() / m as f64,
        alignment_median: median,
        frac_aligned_0_9: rho.iter().filter(|&&v| v > 0.9).count() as f64 / m as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_orthogonal_and_mixed_rows() {
        // U = e1, e2 in R^3; rows: e1 (ρ=1), e3 (ρ=0), (1,0,1)/√2 (ρ=1/√2), 3·e2 (ρ=1).
        let u = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let w = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 3.0, 0.0];
        let rho = per_neuron_alignment(RowMajor::new(&w, 4, 3), RowMajor::new(&u, 2, 3));
        let want = [1.0, 0.0, 0.5f64.sqrt(), 1.0];
        for (a, b) in rho.iter().zip(want) {
            assert!((a - b).abs() < 1e-12);
        }
        let s = alignment(RowMajor::new(&w, 4, 3), RowMajor::new(&u, 2, 3));
        assert!((s.alignment_median - (1.0 + 0.5f64.sqrt()) / 2.0).abs() < 1e-12);
        assert!((s.frac_aligned_0_9 - 0.5).abs() < 1e-12);
    }
}
