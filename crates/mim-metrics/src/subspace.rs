//! Subspace recovery: principal angles between span(Uᵀ) (r-dimensional, U has orthonormal
//! rows) and the span of the top-r right singular vectors V_r of row-normalised W. The cosines
//! are the singular values of U V_r (r×r), in descending order; the last one is
//! `subspace_cos_min`, which detects collapse onto fewer than r directions.

use crate::RowMajor;

/// Row-normalised copy of W (zero rows stay zero).
fn row_normalised(w: RowMajor<'_>) -> faer::Mat<f64> {
    faer::Mat::from_fn(w.rows, w.cols, |i, j| {
        let row = w.row(i);
        let n = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if n > 0.0 {
            row[j] / n
        } else {
            0.0
        }
    })
}

/// Top-k right singular vectors of a (rows×d) as the columns of a d×k matrix.
pub fn top_right_singular_vectors(a: &faer::Mat<f64>, k: usize) -> Result<faer::Mat<f64>, String> {
    let svd = a.thin_svd().map_err(|e| format!("SVD failed: {e:?}"))?;
    let v = svd.V();
    let k = k.min(v.ncols());
    Ok(v.subcols(0, k).to_owned())
}

/// Principal-angle cosines (descending, length r) between span(Uᵀ) and the top-r right
/// singular subspace of the row-normalised W. W: m×d, U: r×d.
pub fn subspace_cosines(w: RowMajor<'_>, u: RowMajor<'_>) -> Result<Vec<f64>, String> {
    let r = u.rows;
    let vr = top_right_singular_vectors(&row_normalised(w), r)?;
    principal_cosines(u, &vr)
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
