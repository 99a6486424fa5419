//! Errors raised while training.

/// A failure during training (exit code 1 at the CLI).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    /// A quantity became NaN/Inf or exploded.
    #[error("{stage} diverged at step {step}: {quantity} is {value}")]
    Diverged {
        /// `stage1` or `stage2`.
        stage: String,
        /// The step (0 = before the first update).
        step: usize,
        /// What diverged (e.g. `W`, `loss`).
        quantity: String,
        /// Its offending value.
        value: f64,
    },
    /// A linear-algebra step failed (e.g. the ridge system is not positive definite).
    #[error("{stage}: {message}")]
    Numerical {
        /// Where it happened.
        stage: String,
        /// What went wrong.
        message: String,
    },
    /// An observer (file writer, …) failed.
    #[error("observer failed: {0}")]
    Observer(String),
}

impl TrainError {
    /// The same error reported under stage name `stage` (for the shared solvers, which do not
    /// know the name of the schedule stage that called them).
    pub fn in_stage(self, stage: &str) -> Self {
        match self {
            TrainError::Diverged {
                step,
                quantity,
                value,
                ..
            } => TrainError::Diverged {
                stage: stage.into(),
                step,
                quantity,
                value,
            },
            TrainError::Numerical { message, .. } => TrainError::Numerical {
                stage: stage.into(),
                message,
            },
            other => other,
        }
    }
}
