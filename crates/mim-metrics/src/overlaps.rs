//! Overlap matrices of the teacher–student literature: M = W Uᵀ (m×r) and Q = W Wᵀ (m×m),
//! summarised as the r×r matrix MᵀM/m, the energy fraction ‖WUᵀ‖²_F/‖W‖²_F, and the top
//! eigenvalues of Q/m (= squared singular values of W over m).

use crate::{dot, RowMajor};
use serde::Serialize;

/// Summaries of M and Q.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overlaps {
    /// MᵀM/m, r×r row-major: (MᵀM)_{kl}/m = mean_j (u_k·w_j)(u_l·w_j).
    pub m_gram: Vec<f64>,
    /// ‖W Uᵀ‖²_F / ‖W‖²_F: fraction of W's energy inside span(Uᵀ).
    pub energy_fraction: f64,
    /// The largest min(r + 2, m, d) eigenvalues of Q/m, descending.
    pub q_spectrum: Vec<f64>,
}

/// Computes [`Overlaps`] for W (m×d) and U (r×d), given the top min(r + 2, m, d) singular
/// values of W (from [`crate::lowrank::w_spectra`] or [`crate::top_singular_values`]).
pub fn overlaps(w: RowMajor<'_>, u: RowMajor<'_>, singular_values: &[f64]) -> Overlaps {
    let (m, r) = (w.rows, u.rows);
    let proj: Vec<f64> = (0..m)
        .flat_map(|j| (0..r).map(move |k| (j, k)))
        .map(|(j, k)| dot(w.row(j), u.row(k)))
        .collect();
    let m_gram = (0..r * r)
        .map(|kl| {
            (0..m)
                .map(|j| proj[j * r + kl / r] * proj[j * r + kl % r])
                .sum::<f64>()
                / m as f64
        })
        .collect();
    let total: f64 = w.data.iter().map(|v| v * v).sum();
    let inside: f64 = proj.iter().map(|v| v * v).sum();
    Overlaps {
        m_gram,
        energy_fraction: if total > 0.0 { inside / total } else { 0.0 },
        q_spectrum: singular_values.iter().map(|s| s * s / m as f64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_of_a_simple_case() {
        let u = [1.0, 0.0, 0.0];
        let w = [2.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let (w, u) = (RowMajor::new(&w, 2, 3), RowMajor::new(&u, 1, 3));
        let sv =
            crate::top_singular_values(w.to_faer().as_ref(), 3, crate::SvdMethod::Exact).unwrap();
        let o = overlaps(w, u, &sv);
        assert!((o.m_gram[0] - 2.0).abs() < 1e-12);
        assert!((o.energy_fraction - 0.8).abs() < 1e-12);
        assert!((o.q_spectrum[0] - 2.0).abs() < 1e-12 && (o.q_spectrum[1] - 0.5).abs() < 1e-12);
    }
}
