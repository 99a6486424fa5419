//! Per-direction recovery (seed 003): how much of each target direction `u_k` (row k of U,
//! K×d, orthonormal) lies in a learned span with orthonormal basis V (d×p, columns):
//!
//! - `π_k = ‖Vᵀ u_k‖²` (`direction_projection`; chance level p/d for a random span);
//! - `directions_recovered = #{k : π_k > 1/2}`;
//! - `weighted_subspace_error = Σ_k w_k (1 − π_k) / Σ_k w_k` with `w_k = a_k²` for a
//!   hierarchical target (uniform weights otherwise);
//! - [`quadratic_oracle_error`]: the excess risk of the best quadratic readout on the span for a
//!   target `Σ_k c_k He₂(u_k·x)/√2`, in closed form.

use crate::RowMajor;
use serde::{Deserialize, Serialize};

/// [`direction_recovery`]'s result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectionRecovery {
    /// `π_k`, k = 1..K (index 0 is k = 1).
    pub direction_projection: Vec<f64>,
    /// `#{k : π_k > 1/2}`.
    pub directions_recovered: usize,
    /// `Σ_k w_k (1 − π_k) / Σ_k w_k`.
    pub weighted_subspace_error: f64,
}

/// `π_k`, the recovered count and the weighted error for the span of V's columns (V: d×p with
/// orthonormal columns; zero columns allowed). `weights`: one per row of U (`w_k ≥ 0`), or
/// empty for uniform weights.
pub fn direction_recovery(
    u: RowMajor<'_>,
    v: &faer::Mat<f64>,
    weights: &[f64],
) -> DirectionRecovery {
    let uv = &u.to_faer() * v; // K×p: entries ⟨u_k, v_j⟩.
    let direction_projection: Vec<f64> = (0..u.rows)
        .map(|k| {
            (0..uv.ncols())
                .map(|j| uv[(k, j)] * uv[(k, j)])
                .sum::<f64>()
                .min(1.0)
        })
        .collect();
    let uniform = vec![1.0; u.rows];
    let w = if weights.is_empty() {
        &uniform
    } else {
        weights
    };
    let total: f64 = w.iter().sum();
    let weighted_subspace_error = direction_projection
        .iter()
        .zip(w)
        .map(|(p, w)| w * (1.0 - p))
        .sum::<f64>()
        / total;
    DirectionRecovery {
        directions_recovered: direction_projection.iter().filter(|&&p| p > 0.5).count(),
        direction_projection,
        weighted_subspace_error,
    }
}

/// For the target `f(x) = Σ_k c_k He₂(u_k·x)/√2 = (xᵀAx − tr A)/√2`, `A = Σ_k c_k u_k u_kᵀ`, the
/// best readout that is any quadratic function of `Vᵀx` leaves the excess risk
/// `E(f − f̂)² = ‖A‖²_F − ‖VᵀAV‖²_F` (Gaussian identity `E[(xᵀBx − tr B)²] = 2‖B‖²_F`); returned
/// relative to `Var f = ‖A‖²_F = Σ c_k²`. V: d×p orthonormal columns, U: K×d, `c`: K values.
pub fn quadratic_oracle_error(u: RowMajor<'_>, v: &faer::Mat<f64>, c: &[f64]) -> f64 {
    let uv = &u.to_faer() * v; // K×p
    let p = uv.ncols();
    // VᵀAV = Σ_k c_k (Vᵀu_k)(Vᵀu_k)ᵀ = (UV)ᵀ diag(c) (UV), p×p.
    let scaled = faer::Mat::from_fn(u.rows, p, |k, j| c[k] * uv[(k, j)]);
    let vav = uv.transpose() * &scaled;
    let inside: f64 = (0..p)
        .flat_map(|i| (0..p).map(move |j| (i, j)))
        .map(|(i, j)| vav[(i, j)] * vav[(i, j)])
        .sum();
    let total: f64 = c.iter().map(|v| v * v).sum();
    ((total - inside) / total).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basis(d: usize, cols: &[Vec<f64>]) -> faer::Mat<f64> {
        faer::Mat::from_fn(d, cols.len(), |i, j| cols[j][i])
    }

    /// U = e1, e2, e3 in R^5; V spans e1 and √0.4·e2 + √0.6·e4: π = (1, 0.4, 0).
    #[test]
    fn projections_recovered_and_weighted_error() {
        let d = 5;
        let mut u = vec![0.0; 3 * d];
        (0..3).for_each(|k| u[k * d + k] = 1.0);
        let (s, t) = (0.4f64.sqrt(), 0.6f64.sqrt());
        let v = basis(
            d,
            &[vec![1.0, 0.0, 0.0, 0.0, 0.0], vec![0.0, s, 0.0, t, 0.0]],
        );
        let r = direction_recovery(RowMajor::new(&u, 3, d), &v, &[]);
        let want = [1.0, 0.4, 0.0];
        for (p, w) in r.direction_projection.iter().zip(want) {
            assert!((p - w).abs() < 1e-12, "{:?}", r.direction_projection);
        }
        assert_eq!(r.directions_recovered, 1);
        assert!((r.weighted_subspace_error - 1.6 / 3.0).abs() < 1e-12);
        // Weights a_k² = (0.6, 0.3, 0.1): error = 0.3·0.6 + 0.1.
        let r = direction_recovery(RowMajor::new(&u, 3, d), &v, &[0.6, 0.3, 0.1]);
        assert!((r.weighted_subspace_error - 0.28).abs() < 1e-12);
    }

    /// The oracle error against a Monte Carlo-free check: for V ⊇ span(U) it is 0; for V = e1
    /// only it is the mass of the other directions; a tilted basis vector loses the cross term.
    #[test]
    fn quadratic_oracle_closed_form() {
        let d = 4;
        let mut u = vec![0.0; 2 * d];
        u[0] = 1.0;
        u[d + 1] = 1.0;
        let c = [0.8, 0.6];
        let u = RowMajor::new(&u, 2, d);
        let full = basis(
            d,
            &[
                vec![0.0, 1.0, 0.0, 0.0],
                vec![1.0, 0.0, 0.0, 0.0],
                vec![0.0, 0.0, 1.0, 0.0],
            ],
        );
        assert!(quadratic_oracle_error(u, &full, &c).abs() < 1e-12);
        let e1 = basis(d, &[vec![1.0, 0.0, 0.0, 0.0]]);
        assert!((quadratic_oracle_error(u, &e1, &c) - 0.36).abs() < 1e-12);
        // v = (e1 + e3)/√2: VᵀAV = 0.8·½, so the error is 1 − 0.16.
        let s = 0.5f64.sqrt();
        let tilt = basis(d, &[vec![s, 0.0, s, 0.0]]);
        assert!((quadratic_oracle_error(u, &tilt, &c) - 0.84).abs() < 1e-12);
    }
}
