//! Baseline `joint`: both layers (W, b, a, c) trained together by a Burn optimizer (SGD or
//! Adam) on minibatches — either reused from D1 (epochs over a seeded shuffle) or fresh
//! (new samples each step, online SGD). No stage 2: the trained network is the predictor.

use crate::error::TrainError;
use crate::loss::Loss;
use crate::observer::Observer;
use crate::schedule::{optimizer_stage, OptimizerStage};
use burn::tensor::Tensor;
use mim_model::TwoLayer;
use serde::{Deserialize, Serialize};

/// The optimizer of `joint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JointOptimizer {
    /// Plain SGD.
    Sgd,
    /// Adam (β = 0.9, 0.999).
    Adam,
}

/// Where minibatches come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Batches {
    /// Minibatches of D1, reshuffled every epoch.
    Reused,
    /// A fresh sample every step.
    Fresh,
}

/// `[joint]`: the joint-training baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JointConfig {
    /// Optimizer.
    pub optimizer: JointOptimizer,
    /// Learning rate.
    pub lr: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Reused or fresh batches.
    pub batches: Batches,
    /// Report W metrics every this many steps (and at the end).
    pub eval_every: usize,
}

impl Default for JointConfig {
    fn default() -> Self {
        Self {
            optimizer: JointOptimizer::Adam,
            lr: 1e-3,
            steps: 2000,
            batch_size: 256,
            batches: Batches::Reused,
            eval_every: 200,
        }
    }
}

impl JointConfig {
    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!(
                "joint.lr = {}: must be positive and finite",
                self.lr
            ));
        }
        if self.batch_size == 0 {
            return Err("joint.batch_size = 0: must be at least 1".into());
        }
        if self.eval_every == 0 {
            return Err("joint.eval_every = 0: must be at least 1".into());
        }
        Ok(())
    }
}

/// Supplies the minibatch of each step (x: b×d, y: b).
pub trait BatchSource {
    /// The batch for optimizer step `step` (1-based).
    fn batch(&mut self, step: usize) -> (Tensor<2>, Tensor<1>);
}

/// Trains all parameters with the configured optimizer on `loss`, reporting W to the observer
/// at step 0, every `eval_every` steps and at the end: the schedule engine's
/// [`optimizer_stage`] on every group (`w`, `b`, `a`, `c`), named `joint`.
pub fn run_joint(
    model: TwoLayer,
    source: &mut dyn BatchSource,
    cfg: &JointConfig,
    loss: &Loss,
    observer: &mut dyn Observer,
) -> Result<TwoLayer, TrainError> {
    let stage = OptimizerStage {
        name: "joint".into(),
        train: ["w", "b", "a", "c"].map(String::from).to_vec(),
        optimizer: cfg.optimizer,
        lr: cfg.lr,
        steps: cfg.steps,
        eval_every: cfg.eval_every,
        loss: *loss,
        head: 0,
    };
    optimizer_stage(model, source, &stage, observer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::TensorLoss;
    use crate::observer::NoObserver;
    use burn::tensor::Device;
    use mim_model::{
        from_host_1d, from_host_2d, standard_normals, to_host, Activation, Precision,
        TwoLayerConfig,
    };

    struct Fixed {
        x: Tensor<2>,
        y: Tensor<1>,
    }
    impl BatchSource for Fixed {
        fn batch(&mut self, _: usize) -> (Tensor<2>, Tensor<1>) {
            (self.x.clone(), self.y.clone())
        }
    }

    /// Joint training with Adam decreases the loss on a learnable target and moves every layer.
    #[test]
    fn joint_training_fits_and_moves_both_layers() {
        let (n, d, m) = (256, 4, 16);
        let dev = Device::flex().autodiff();
        let p = Precision::F32;
        let xs = standard_normals(n * d, 1);
        let ys: Vec<f64> = (0..n).map(|i| xs[i * d] * xs[i * d] - 1.0).collect();
        let x = from_host_2d(&xs, n, d, &dev, p);
        let y = from_host_1d(&ys, &dev, p);
        let model = TwoLayerConfig {
            width: m,
            activation: Activation::Logcosh,
            init_scale: 0.5,
        }
        .symmetric_init(d, 0, &dev, p)
        .unwrap();
        let (a0, w0, b0) = (
            to_host(model.a.val()),
            to_host(model.w.val()),
            to_host(model.b.val()),
        );
        let loss = Loss::Square;
        let before = to_host(loss.mean(model.forward(x.clone()), y.clone()))[0];
        let cfg = JointConfig {
            lr: 0.02,
            steps: 300,
            ..Default::default()
        };
        let model = run_joint(
            model,
            &mut Fixed {
                x: x.clone(),
                y: y.clone(),
            },
            &cfg,
            &loss,
            &mut NoObserver,
        )
        .unwrap();
        let after = to_host(loss.mean(model.forward(x), y))[0];
        assert!(after < 0.2 * before, "loss {before} -> {after}");
        // Both layers move (and the biases): joint training trains every group.
        assert_ne!(to_host(model.a.val()), a0, "a did not move");
        assert_ne!(to_host(model.w.val()), w0, "W did not move");
        assert_ne!(to_host(model.b.val()), b0, "b did not move");
    }
}
