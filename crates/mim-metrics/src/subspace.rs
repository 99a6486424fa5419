//! Subspace recovery: principal angles between span(Uᵀ) (r-dimensional, U has orthonormal
//! rows) and the span of the top-r right singular vectors V_r of row-normalised W. The cosines
//! are the singular values of U V_r (r×r), in descending order; the last one is
//! `subspace_cos_min`, which detects collapse onto fewer than r directions.

use crate::RowMajor;

/// Row-normalised copy of W (zero rows stay zero).
fn row_normalised(w: RowMajor<'_>) -> faer::Mat<f64> {
    // One norm per row (not per element: that would cost m·d² at large d).
    let inv: Vec<f64> = (0..w.rows)
        .map(|i| {
            let n = w.row(i).iter().map(|v| v * v).sum::<f64>().sqrt();
            if n > 0.0 {
                1.0 / n
            } else {
                0.0
            }
        })
        .collect();
    faer::Mat::from_fn(w.rows, w.cols, |i, j| w.row(i)[j] * inv[i])
}

/// Top-k right singular vectors of a (rows×d) as the columns of a d×k matrix. When
/// rows < d they come from the rows×rows Gram matrix A Aᵀ = Û Λ Ûᵀ (v_k = Aᵀ û_k / √λ_k),
/// which is much cheaper than an SVD of a wide matrix; otherwise from a thin SVD.
pub fn top_right_singular_vectors(a: &faer::Mat<f64>, k: usize) -> Result<faer::Mat<f64>, String> {
    let (rows, d) = (a.nrows(), a.ncols());
    if rows < d {
        let gram = a * a.transpose();
        let evd = gram
            .self_adjoint_eigen(faer::Side::Lower)
            .map_err(|e| format!("eigendecomposition failed: {e:?}"))?;
        let (u, s) = (evd.U(), evd.S().column_vector());
        let k = k.min(rows);
        // Eigenvalues ascending: the top k are the last k columns.
        let mut v = faer::Mat::<f64>::zeros(d, k);
        for c in 0..k {
            let col = rows - 1 - c;
            let sigma = s[col].max(0.0).sqrt();
            if sigma > 0.0 {
                let vk = a.transpose() * u.col(col);
                for i in 0..d {
                    v[(i, c)] = vk[i] / sigma;
                }
            }
        }
        return Ok(v);
    }
    let svd = a.thin_svd().map_err(|e| format!("SVD failed: {e:?}"))?;
    let v = svd.V();
    let k = k.min(v.ncols());
    Ok(v.subcols(0, k).to_owned())
}

/// Principal-angle cosines (descending, length r) between span(Uᵀ) and the top-r right
/// singular subspace of the row-normalised W. W: m×d, U: r×d.
pub fn subspace_cosines(w: RowMajor<'_>, u: RowMajor<'_>) -> Result<Vec<f64>, String> {
    principal_cosines(u, &learned_span(w, u.rows)?)
}

/// The learned span of W (m×d): its top-p right singular vectors after row normalisation, as
/// the orthonormal columns of a d×min(p, m, d) matrix (a column is zero where W has rank < p).
pub fn learned_span(w: RowMajor<'_>, p: usize) -> Result<faer::Mat<f64>, String> {
    top_right_singular_vectors(&row_normalised(w), p)
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

    /// The Gram route (rows < d) and the SVD route span the same top subspace.
    #[test]
    fn gram_and_svd_routes_agree() {
        let (rows, d) = (6, 15);
        let a = faer::Mat::from_fn(rows, d, |i, j| {
            ((i * 31 + j * 17) % 23) as f64 / 7.0 - 1.5 + if i == j { 3.0 } else { 0.0 }
        });
        let wide = top_right_singular_vectors(&a, 3).unwrap();
        let tall_svd = a.thin_svd().unwrap();
        let reference = tall_svd.V().subcols(0, 3).to_owned();
        // Same subspace: all principal cosines 1.
        let overlap = (wide.transpose() * &reference).singular_values().unwrap();
        for c in overlap {
            assert!((c - 1.0).abs() < 1e-9, "{c}");
        }
    }

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
