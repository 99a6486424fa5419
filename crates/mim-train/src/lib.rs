//! Layer-wise gradient descent for the two-layer network (paper §3).
//!
//! - [`stage1`]: T1 full-batch GD steps on W only (a, b, c frozen through
//!   `Param::set_require_grad(false)`), W ← W − η1 (∇_W L̂ + β1 W), in `literal` or
//!   `normalized` mode; each step is reported to an [`Observer`].
//! - [`stage2`]: biases re-drawn, W and b frozen, readout (a, c) fitted by exact ridge
//!   regression (λ fixed or chosen on a held-out 20 % of D2) or by GD.
//! - [`joint`]: the joint-training baseline (both layers by SGD/Adam).
//! - [`schedule`]: the schedule engine: one GD loop, one optimizer loop and one convex readout
//!   fit over named parameter groups of any [`mim_model::Network`]; the stages above are presets.
//! - [`online`]: online spherical SGD on the first layer with a label transformation and the
//!   exact landscape smoothing (seed 004): a tight host loop, one fresh sample per step.
//! - [`one_step`]: DLS22's one-step algorithm as the authors run it (paired Gaussian init,
//!   the labels' linear part removed, the rms-rescaled gradient step, raw ridge with λ on a
//!   validation set).
//! - [`loss`]: the stage-1 losses ℓ(t, y) ([`Loss`], defined with its label transform
//!   T(y) = −ℓ'(0, y) in [`mim_data::loss`]) and their tensor forms ([`TensorLoss`]).
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod fused;
pub mod joint;
pub mod loss;
pub mod observer;
pub mod one_step;
pub mod online;
pub mod schedule;
pub mod stage1;
pub mod stage2;
pub mod stage_config;

pub use config::{
    Auto, BiasInit, CenterBy, Gradient, LossName, Mode, Stage1Config, Stage1Labels, Stage2Config,
    Stage2Solver, Steps, WeightDecay,
};
pub use error::TrainError;
pub use joint::{run_joint, BatchSource, Batches, JointConfig, JointOptimizer};
pub use loss::{Loss, TensorLoss};
pub use observer::{NoObserver, Observer, Stage1State};
pub use schedule::{
    gd_stage, gd_stage_with, optimizer_stage, ridge_stage, FirstLayerGradient, GdStage,
    OptimizerStage,
};
pub use stage1::{label_shift, run_stage1, run_stage1_from, stage1_labels, Stage1Params};
pub use stage2::{fit_readout, run_stage2, Stage2Report};
pub use stage_config::{StageConfig, StageOptimizer};
