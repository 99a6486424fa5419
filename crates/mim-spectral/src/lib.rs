//! `mim-spectral`: spectral estimators of the hidden subspace of a multi-index model and the
//! fixed-preprocessing spectral theory, in host-side `f64` (no tensors, no Burn: the stage-1
//! loss and labels that `loss:*` mirrors come from [`mim_data::loss`], which `mim-train` shares).
//!
//! Given D1 = {(x_i, y_i)} (x_i ~ N(0, I_d)) and a label preprocessing T, the estimator is the
//! top-k eigenvectors, at the chosen end of the spectrum ([`Order`]), of one of
//!
//! ```text
//! Σ̂_T = (1/n) Σ_i T(y_i) x_i x_iᵀ              (Shift::None: what stage 1 and power iteration iterate)
//! Σ̂_T = (1/n) Σ_i T(y_i) (x_i x_iᵀ − I_d)      (Shift::Mean: the classical estimator)
//! ```
//!
//! ([`Shift`]; they differ by mean(T)·I, which only matters for `order = abs`). At the
//! population level E[T(y)(xxᵀ − I)] = Uᵀ E[T(y)(zzᵀ − I)] U has rank ≤ r, so its non-zero
//! eigenvalues belong to span(Uᵀ); the finite-sample bulk has edges of order √(d/n) (around
//! E\[T\] for the unshifted matrix).
//!
//! - [`preprocess`]: the preprocessings T (`loss:*`, `identity`, `lal`, `filtered`,
//!   `clip:<c>`, `sign`) and which labels they see ([`LabelPrep`]).
//! - [`eigen`]: [`spectral_estimate`] — dense (faer self-adjoint eigendecomposition of the
//!   d×d matrix) or matrix-free: block thick-restart Lanczos (`krylov.rs`) on an operator
//!   that only applies Σ̂_T V = Xᵀ(T ⊙ XV)/n (− mean(T)·V when shifted) to blocks of 8
//!   vectors, one pass over the rows per block (streamed rows are regenerated per pass).
//! - [`config`]: the `[spectral]` config section ([`SpectralConfig`]).
//! - [`exponents`]: the information exponent k* and the generative exponent s* of a
//!   single-index link (seed 004), by quadrature in z and cross-fitted grouping in y.
//! - [`theory`]: Lu–Li / Mondelli–Montanari fixed-T overlap² for single-index targets and the
//!   optimal weak-recovery threshold α_c (single- and, where computable, multi-index), by
//!   deterministic quadrature.
#![warn(missing_docs)]

pub mod config;
pub mod eigen;
pub mod error;
pub mod exponents;
mod krylov;
pub mod preprocess;
pub mod theory;

pub use config::{OrderChoice, ResolvedSpectral, ShiftChoice, SpectralConfig};
pub use eigen::{
    iterative_bytes, spectral_estimate, spectral_estimate_observed, IterativeOptions, Method,
    Order, Rows, Shift, Spectrum,
};
pub use error::SpectralError;
pub use preprocess::{spectral_labels, LabelPrep, Preprocessing};
pub use theory::{AlphaC, Law, TheoryPoint};
