//! What the theory measures (paper §6), computed from the first-layer weights W (m×d, rows
//! w_j) and the hidden directions U (r×d, orthonormal rows), both row-major `f64` on the host.
//!
//! - [`mod@alignment`]: per-neuron ρ_j = ‖U w_j‖/‖w_j‖ and its summaries.
//! - [`subspace`]: principal-angle cosines between span(Uᵀ) and the top-r right singular
//!   subspace of row-normalised W.
//! - [`directions`]: per-direction projections π_k on the learned span, the weighted
//!   subspace error and the quadratic oracle readout (seed 003).
//! - [`lowrank`]: the top singular triplets, exact or by randomized subspace iteration.
//! - [`mod@overlaps`]: M = W Uᵀ and Q = W Wᵀ in r×r and spectrum form.
//! - [`power_iteration`]: explicit power iterates of Σ̂_T to check the stage-1 mechanism.
#![warn(missing_docs)]

pub mod alignment;
pub mod directions;
pub mod lowrank;
pub mod overlaps;
pub mod power_iteration;
pub mod subspace;

pub use alignment::{alignment, alignment_of, AlignmentSummary};
pub use directions::{direction_recovery, quadratic_oracle_error, DirectionRecovery};
pub use lowrank::{
    top_singular, top_singular_values, w_spectra, w_spectra_with_norms, SvdMethod, TopSingular,
    WSpectra,
};
pub use overlaps::{overlaps, Overlaps, Projections};
pub use power_iteration::PowerIteration;
pub use subspace::{learned_span, principal_cosines, subspace_cosines};

/// A row-major matrix view: `rows×cols` values.
#[derive(Clone, Copy, Debug)]
pub struct RowMajor<'a> {
    /// Row-major values, length rows·cols.
    pub data: &'a [f64],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
}

impl<'a> RowMajor<'a> {
    /// Wraps `data` as `rows×cols`; panics if the length does not match.
    pub fn new(data: &'a [f64], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "RowMajor: length ≠ rows·cols");
        Self { data, rows, cols }
    }
    /// Row i.
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
    /// As a faer matrix.
    pub fn to_faer(&self) -> faer::Mat<f64> {
        faer::Mat::from_fn(self.rows, self.cols, |i, j| self.data[i * self.cols + j])
    }
}

pub(crate) use mim_data::dot;
