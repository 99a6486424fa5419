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

/// What the per-neuron metrics read of W: M = W Uᵀ (m×r, row-major) and ‖w_j‖², from one
/// pass over the rows (r + 1 dot products of length d per row). [`alignment`](mod@crate::alignment)
/// and [`overlaps`] both derive from it, so a step's metrics read W once for them.
#[derive(Clone, Debug)]
pub struct Projections {
    /// M_jk = w_j · u_k.
    pub m: Vec<f64>,
    /// ‖w_j‖².
    pub norm2: Vec<f64>,
    /// r.
    pub r: usize,
}

impl Projections {
    /// M and the squared row norms of W (m×d) against U (r×d).
    pub fn new(w: RowMajor<'_>, u: RowMajor<'_>) -> Self {
        let r = u.rows;
        let mut m = Vec::with_capacity(w.rows * r);
        let norm2 = (0..w.rows)
            .map(|j| {
                let wj = w.row(j);
                m.extend((0..r).map(|k| dot(wj, u.row(k))));
                dot(wj, wj)
            })
            .collect();
        Self { m, norm2, r }
    }

    /// Row j of M.
    pub fn row(&self, j: usize) -> &[f64] {
        &self.m[j * self.r..(j + 1) * self.r]
    }

    /// [`Overlaps`] given the top min(r + 2, m, d) singular values of W.
    pub fn overlaps(&self, singular_values: &[f64]) -> Overlaps {
        let (m, r) = (self.norm2.len(), self.r);
        let m_gram = (0..r * r)
            .map(|kl| {
                (0..m)
                    .map(|j| self.m[j * r + kl / r] * self.m[j * r + kl % r])
                    .sum::<f64>()
                    / m as f64
            })
            .collect();
        let total: f64 = self.norm2.iter().sum();
        let inside: f64 = self.m.iter().map(|v| v * v).sum();
        Overlaps {
            m_gram,
            energy_fraction: if total > 0.0 { inside / total } else { 0.0 },
            q_spectrum: singular_values.iter().map(|s| s * s / m as f64).collect(),
        }
    }
}

/// Computes [`Overlaps`] for W (m×d) and U (r×d), given the top min(r + 2, m, d) singular
/// values of W (from [`crate::lowrank::w_spectra`] or [`crate::top_singular_values`]).
pub fn overlaps(w: RowMajor<'_>, u: RowMajor<'_>, singular_values: &[f64]) -> Overlaps {
    Projections::new(w, u).overlaps(singular_values)
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
