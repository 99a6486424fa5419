//! `mim-data`: Gaussian multi-index targets `y = scale·g(Ux) + noise·ε`, `x ~ N(0, I_d)`.
//!
//! Pure host-side `f64` math, no tensors:
//! - [`hermite()`]: probabilists' Hermite polynomials `He_k`.
//! - [`Link`]: the link formula `g: R^r → R` (parser, evaluation, canonical printing).
//! - [`Link::moments`]: exact / quadrature `E[g]`, `E[g²]` under `z ~ N(0, I_r)` (flat and
//!   nested links; [`Link::try_moments`] explains when a nested link's moments are unavailable).
//! - [`Target`]: a random `U` with orthonormal rows, the link, noise level and scale.
//! - [`Bbp`]: BBP thresholds α_k and the theory curves of a hierarchical target (seed 003).
//! - [`Dataset`]: counter-based, chunking-invariant seeded samples for each [`Split`].
//! - [`Loss`]: the stage-1 losses, their label transform T(y) = −ℓ'(0, y) and the stage-1
//!   labels ([`label_shift`], [`stage1_labels`], [`Stage1Labels`]), shared by the trainer and
//!   the spectral estimators.
//!
//! Everything is deterministic given the seeds, independent of thread count.

#![warn(missing_docs)]

pub mod bbp;
pub mod dataset;
pub mod error;
mod expr;
pub mod hermite;
mod hierarchical;
pub mod link;
pub mod loss;
pub mod moments;
mod nested;
pub mod philox;
pub mod simd;
pub mod target;
pub mod vector;

pub use bbp::Bbp;
pub use dataset::{Dataset, Generator, Split, BLOCK_ROWS};
pub use error::{DataError, LinkError};
pub use hermite::{gaussian_moment, hermite, hermite_coefficients};
pub use link::{
    sign, Factor, Hierarchical, HierarchicalG, HierarchicalSigns, Link, Term, MAX_DEPTH,
    MAX_EXPONENT, MAX_HERMITE_DEGREE, MAX_HIERARCHICAL_K,
};
pub use loss::{label_shift, stage1_labels, CenterBy, Loss, LossName, Stage1Labels};
pub use moments::{gauss_legendre, gaussian_expectation, LinkMoments};
pub use target::Target;
pub use vector::dot;
