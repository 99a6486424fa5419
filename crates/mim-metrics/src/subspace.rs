//! Subspace recovery: principal angles between span(Uᵀ) (r-dimensional, U has orthonormal
//! rows) and the span of the top-r right singular vectors V_r of row-normalised W. The cosines
//! are the singular values of U V_r (r×r), in descending order; the last one is
//! `subspace_cos_min`, which detects collapse onto fewer than r directions.

use crate::lowrank::SvdMethod;
use crate::RowMajor;

/// Principal-angle cosines (descending, length r) between span(Uᵀ) and the top-r right
/// singular subspace of the row-normalised W. W: m×d, U: r×d.
pub fn subspace_cosines(w: RowMajor<'_>, u: RowMajor<'_>) -> Result<Vec<f64>, String> {
    principal_cosines(u, &learned_span(w, u.rows, SvdMethod::Exact)?)
}

/// The learned span of W (m×d): its top-p right singular vectors after row normalisation, as
/// the orthonormal columns of a d×min(p, m, d) matrix (a column is zero where W has rank < p),
/// computed by `method` ([`crate::lowrank`]).
pub fn learned_span(
    w: RowMajor<'_>,
    p: usize,
    method: SvdMethod,
) -> Result<faer::Mat<f64>, String> {
    Ok(crate::lowrank::w_spectra(w, p, 0, method)?.span)
}

/// Cosines of the principal angles between span(Uᵀ) and span(V) (V: d×k orthonormal
/// columns): singular values of U V, descending, padded with zeros to length r.
pub fn principal_cosines(u: RowMajor<'_>, v: &faer::Mat<f64>) -> Result<Vec<f64>, String> {
    let uv = &u.to_faer() * v;
    let mut s = uv
        .singular_values()
        .map_err(|e| format!("SVD failed: {e:?}"))?;
    s.iter_mut().for_each(|c| *c = c.min(1.0));
    s.resize(u.rows, 0.0);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_planted_subspace_and_detects_collapse() {
        // U spans e1, e2 of R^4.
        let u = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        // W rows spread over e1 and e2 (with different norms): both cosines 1.
        let w = [
            2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, -3.0, 0.0, 0.0,
        ];
        let c = subspace_cosines(RowMajor::new(&w, 4, 4), RowMajor::new(&u, 2, 4)).unwrap();
        assert!(
            (c[0] - 1.0).abs() < 1e-12 && (c[1] - 1.0).abs() < 1e-12,
            "{c:?}"
        );
        // Collapse: all rows on e1, plus a weak e3 row: the second direction is e3 ⟂ U.
        let w = [
            1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.0,
        ];
        let c = subspace_cosines(RowMajor::new(&w, 4, 4), RowMajor::new(&u, 2, 4)).unwrap();
        assert!((c[0] - 1.0).abs() < 1e-12 && c[1].abs() < 1e-12, "{c:?}");
        // A 45° tilt of the second direction into e3: cos = 1/√2.
        let w = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0];
        let c = subspace_cosines(RowMajor::new(&w, 2, 4), RowMajor::new(&u, 2, 4)).unwrap();
        assert!((c[1] - 0.5f64.sqrt()).abs() < 1e-12, "{c:?}");
    }
}
