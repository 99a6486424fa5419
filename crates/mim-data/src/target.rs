//! The target `y = scale·g(Ux) + noise·ε`: a seeded `U` with orthonormal rows, a link, a noise
//! level and a normalising scale.

use rand::Rng;
use rand_distr::StandardNormal;

use crate::dataset::{block_rng, Generator, U_STREAM_TAG};
use crate::error::DataError;
use crate::link::Link;

/// Relative threshold below which a link's variance counts as zero (see [`Target::new`]).
const CONSTANT_TOLERANCE: f64 = 1e-12;

/// A multi-index target `f*(x) = scale·g(Ux)` with labels `y = f*(x) + noise·ε`, `ε ~ N(0, 1)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// Input dimension `d` (`x ∈ R^d`).
    pub d: usize,
    /// Number of index directions `r ≤ d`.
    pub r: usize,
    /// `U ∈ R^{r×d}`, row-major, orthonormal rows (`U Uᵀ = I_r`).
    pub u: Vec<f64>,
    /// The link `g: R^r → R`.
    pub link: Link,
    /// Label-noise standard deviation (`≥ 0`).
    pub noise: f64,
    /// Multiplier on `g`: `1/√Var g` when normalised (unit-variance noiseless labels, not
    /// centred), else 1.
    pub scale: f64,
    /// The generator of the data rows (v1 unless set by [`Target::with_generator`]); `U` is
    /// drawn the same way under both.
    pub generator: Generator,
}

impl Target {
    /// Build a target.
    ///
    /// `U` is an `r×d` matrix of i.i.d. `N(0, 1)` entries drawn row-major from a ChaCha8 stream
    /// of `seed` reserved for `U` (independent of every data split), whose rows are then
    /// orthonormalised by modified Gram–Schmidt applied twice (`‖UUᵀ − I‖ ≈ 1e−16`). Rows of a
    /// Gaussian matrix are uniformly distributed on the Stiefel manifold after this step.
    ///
    /// `scale = 1/√Var g(z)`, `z ~ N(0, I_r)` when `normalize` (exact/quadrature variance from
    /// [`Link::moments`]), else `1`.
    ///
    /// Errors: `d = 0`, `r = 0`, `r > d`, `r·d` too large to allocate, a link index above `r`,
    /// `noise` negative or non-finite, and with `normalize` a constant link
    /// (`Var g ≤ 1e−12 ·` [`Link::variance_reference`]), a non-finite variance, or a nested link
    /// whose moments are unavailable ([`DataError::Link`] with
    /// [`LinkError::MomentsUnavailable`](crate::LinkError::MomentsUnavailable)).
    pub fn new(
        d: usize,
        r: usize,
        link: Link,
        noise: f64,
        normalize: bool,
        seed: u64,
    ) -> Result<Target, DataError> {
        if d == 0 {
            return Err(DataError::ZeroDim);
        }
        if r == 0 {
            return Err(DataError::ZeroRank);
        }
        if r > d {
            return Err(DataError::RankExceedsDim { r, d });
        }
        link.check_indices(r)?;
        if !(noise.is_finite() && noise >= 0.0) {
            return Err(DataError::Noise(noise));
        }
        let scale = if normalize {
            // `try_moments`: a nested link without computable moments is an explanatory error.
            let variance = link.try_moments()?.variance;
            if !variance.is_finite() {
                return Err(DataError::NonFiniteVariance {
                    link: link.to_string(),
                    variance,
                });
            }
            if variance <= CONSTANT_TOLERANCE * link.variance_reference() {
                return Err(DataError::ConstantLink {
                    link: link.to_string(),
                });
            }
            1.0 / variance.sqrt()
        } else {
            1.0
        };
        let len = r.checked_mul(d).ok_or(DataError::TooLarge { r, d })?;
        let mut u = Vec::new();
        u.try_reserve_exact(len)
            .map_err(|_| DataError::TooLarge { r, d })?;
        let mut rng = block_rng(seed, U_STREAM_TAG, 0);
        u.extend((0..len).map(|_| rng.sample::<f64, _>(StandardNormal)));
        orthonormalize_rows(&mut u, r, d);
        orthonormalize_rows(&mut u, r, d);
        Ok(Target {
            d,
            r,
            u,
            link,
            noise,
            scale,
            generator: Generator::V1,
        })
    }

    /// This target with its data rows drawn by `generator`.
    pub fn with_generator(mut self, generator: Generator) -> Target {
        self.generator = generator;
        self
    }

    /// A single-index target (`r = 1`) whose θ* (the one row of `U`) is `k`-sparse (seed 004
    /// §2.3): a support of `k` distinct coordinates drawn uniformly (a partial Fisher–Yates
    /// shuffle of `0..d`), entries `±k^{−1/2}` with independent fair signs, so `‖θ*‖ = 1`.
    /// Support and signs come from the same ChaCha8 stream of `seed` that [`Target::new`]
    /// draws a dense `U` from (independent of every data split); the same seed gives the
    /// same θ*. Everything else (`scale`, noise, validation) is as in [`Target::new`] with
    /// `r = 1`.
    ///
    /// Errors: those of [`Target::new`], and [`DataError::Sparsity`] for `k = 0` or `k > d`.
    pub fn new_sparse(
        d: usize,
        k: usize,
        link: Link,
        noise: f64,
        normalize: bool,
        seed: u64,
    ) -> Result<Target, DataError> {
        if k == 0 {
            return Err(DataError::Sparsity {
                k,
                why: "the support needs at least one coordinate".into(),
            });
        }
        if k > d {
            return Err(DataError::Sparsity {
                k,
                why: format!("the support cannot exceed data.d = {d} coordinates"),
            });
        }
        let mut target = Target::new(d, 1, link, noise, normalize, seed)?;
        let mut rng = block_rng(seed, U_STREAM_TAG, 0);
        let mut order: Vec<usize> = (0..d).collect();
        let level = 1.0 / (k as f64).sqrt();
        target.u.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..k {
            let j = rng.random_range(i..d);
            order.swap(i, j);
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            target.u[order[i]] = sign * level;
        }
        Ok(target)
    }

    /// The support of θ* (the indices of the non-zero entries of row 0 of `U`), ascending.
    pub fn support(&self) -> Vec<usize> {
        (0..self.d).filter(|&i| self.u[i] != 0.0).collect()
    }

    /// Row `k` of `U` (the `k+1`-th index direction, paired with `z_{k+1}`), length `d`.
    ///
    /// # Panics
    /// If `k ≥ r`.
    pub fn u_row(&self, k: usize) -> &[f64] {
        &self.u[k * self.d..(k + 1) * self.d]
    }

    /// `z = U x` into `z[..r]`, for an f64 row or an f32 row (widened exactly), summed as the
    /// target's generator labels its rows: sequentially for v1 (so earlier results regenerate
    /// bit for bit), by the vectorised [`crate::vector::dot`] for v2.
    ///
    /// # Panics
    /// If `x.len() < d` or `z.len() < r`.
    #[inline(always)]
    pub fn project<X: Copy + Into<f64>>(&self, x: &[X], z: &mut [f64]) {
        for (k, zk) in z[..self.r].iter_mut().enumerate() {
            let (u, x) = (self.u_row(k), &x[..self.d]);
            *zk = match self.generator {
                Generator::V1 => dot(u, x),
                Generator::V2 => crate::vector::dot(u, x),
            };
        }
    }

    /// Noiseless target `f*(x) = scale·g(Ux)` for one input row `x ∈ R^d`.
    ///
    /// # Panics
    /// If `x.len() < d`.
    pub fn signal(&self, x: &[f64]) -> f64 {
        let mut z = vec![0.0; self.r];
        self.project(x, &mut z);
        self.scale * self.link.eval(&z)
    }
}

/// The sequential sum of `U`'s Gram–Schmidt and of v1's labels, kept so that earlier results
/// regenerate bit for bit.
#[inline(always)]
fn dot<B: Copy + Into<f64>>(a: &[f64], b: &[B]) -> f64 {
    a.iter().zip(b).map(|(&p, &q)| p * q.into()).sum()
}

/// One pass of modified Gram–Schmidt over the `r` rows (length `d`) of `u`.
fn orthonormalize_rows(u: &mut [f64], r: usize, d: usize) {
    for k in 0..r {
        let (done, rest) = u.split_at_mut(k * d);
        let row = &mut rest[..d];
        for prev in done.chunks_exact(d) {
            let c = dot(prev, row);
            for (v, p) in row.iter_mut().zip(prev) {
                *v -= c * p;
            }
        }
        let norm = dot(row, row).sqrt();
        for v in row.iter_mut() {
            *v /= norm;
        }
    }
}
