//! Observers (argmin-style): the training loop hands each step's state to them instead of
//! printing or measuring from inside the math.

use crate::error::TrainError;
use burn::tensor::Tensor;

/// The state of the first layer after step `step` of a stage (step 0 = before its first step).
pub struct Stage1State<'a> {
    /// The stage's name: `"stage1"` (layer-wise), `"joint"`, or a `[[schedule]]` stage's name.
    pub stage: &'a str,
    /// Steps done so far.
    pub step: usize,
    /// T1.
    pub total: usize,
    /// W after this step (m×d), before the final rescale of `normalized` mode.
    pub w: &'a Tensor<2>,
    /// L̂ on D1 at the W this step started from (NaN at step 0).
    pub loss: f64,
    /// Frobenius norm of ∇_W L̂ used by this step (NaN at step 0).
    pub grad_norm: f64,
}

/// Receives training progress. Every method has a no-op default.
pub trait Observer {
    /// Called at step 0 and after each stage-1 step (for `joint`, every `eval_every` steps).
    fn stage1_step(&mut self, _state: &Stage1State<'_>) -> Result<(), TrainError> {
        Ok(())
    }
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {}
