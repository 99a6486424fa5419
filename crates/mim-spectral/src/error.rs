//! Errors of the spectral estimators and the theory.

/// What can go wrong when estimating a spectrum or evaluating the theory.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpectralError {
    /// Inconsistent or unusable input (sizes, `k`, non-finite values). The message names the
    /// argument.
    #[error("{0}")]
    Input(String),
    /// The eigen-solver failed (faer reported an error, or the iteration produced NaN).
    #[error("eigen-solver failed: {0}")]
    Solver(String),
}
