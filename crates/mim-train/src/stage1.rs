//! Stage 1: T1 full-batch GD steps on the first layer (paper §3).
//!
//! W ← W − η1 (∇_W L̂ + β1 W), L̂ = (1/n1) Σ_i ℓ(f(x_i), y_i), with a, b and c frozen.
//! For small weights σ'(u) ≈ u, so with β1 = 1/η1 a step is w_j ← η1 a_j Σ̂_T w_j,
//! Σ̂_T = (1/n1) Σ_i T(y_i) x_i x_iᵀ: power iteration (paper §4).

use crate::config::{Gradient, Mode};
use crate::error::TrainError;
use crate::loss::{Loss, TensorLoss};
use crate::observer::Observer;
use crate::schedule::{gd_stage, GdStage};
use burn::tensor::Tensor;
use mim_model::TwoLayer;

/// Resolved stage-1 parameters (numbers, no "auto").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage1Params {
    /// T1.
    pub steps: usize,
    /// η1.
    pub lr: f64,
    /// β1.
    pub weight_decay: f64,
    /// ℓ.
    pub loss: Loss,
    /// Scale control.
    pub mode: Mode,
    /// Gradient path.
    pub gradient: Gradient,
    /// ε0, the row norm restored after each step in `normalized` mode.
    pub init_scale: f64,
}

pub use crate::schedule::normalize_rows;
pub use mim_data::loss::{label_shift, stage1_labels};

/// The closed-form gradient (paper §3) and L̂, X: n×d, y: n → (m×d, 1):
/// G = (1/n) [ℓ'(f(X), y) 1ᵀ ⊙ σ'(X Wᵀ + 1bᵀ) ⊙ 1 aᵀ]ᵀ X. Computed on detached tensors, so
/// no autodiff graph is recorded.
pub fn closed_form_gradient(
    model: &TwoLayer,
    x: &Tensor<2>,
    y: &Tensor<1>,
    loss: &Loss,
) -> (Tensor<2>, Tensor<1>) {
    let n = x.dims()[0] as f64;
    let (w, b) = (model.w.val().detach(), model.b.val().detach());
    let (a, c) = (model.a.val().detach(), model.c.val().detach());
    let z = x.clone().matmul(w.transpose()) + b.unsqueeze_dim::<2>(0);
    let phi = model.activation.apply(z.clone());
    let f = phi
        .matmul(a.clone().unsqueeze_dim::<2>(1))
        .squeeze_dim::<1>(1)
        + c;
    let r = f - y.clone();
    let l = loss.value(r.clone()).mean();
    let s = model.activation.derivative(z)
        * loss.derivative(r).unsqueeze_dim::<2>(1)
        * a.unsqueeze_dim::<2>(0);
    (s.transpose().matmul(x.clone()).div_scalar(n), l)
}

/// ∇_W L̂ by Burn autodiff, with a, b and c frozen (`Param::set_require_grad(false)`).
/// Returns (gradient, L̂).
pub fn autodiff_gradient(
    model: &TwoLayer,
    x: &Tensor<2>,
    y: &Tensor<1>,
    loss: &Loss,
) -> (Tensor<2>, Tensor<1>) {
    let l = loss.mean(model.forward(x.clone()), y.clone());
    let grads = l.backward();
    let g = model
        .w
        .val()
        .grad(&grads)
        .expect("W is tracked during stage 1")
        .detach();
    (g, l.detach())
}

impl Stage1Params {
    /// The paper's stage 1 as a schedule stage: GD on `w` alone, named `stage1`.
    pub fn gd_stage(&self) -> GdStage {
        GdStage {
            name: "stage1".into(),
            train: vec!["w".into()],
            steps: self.steps,
            lr: self.lr,
            weight_decay: self.weight_decay,
            loss: self.loss,
            mode: self.mode,
            row_norm: self.init_scale,
            final_row_norm: self.mode.projects().then_some(1.0),
            gradient: self.gradient,
            head: 0,
        }
    }
}

/// Runs stage 1 on (x, y) = D1 (labels already centred if asked), reporting each step.
/// Returns the model with the trained W; a, b and c are unchanged.
pub fn run_stage1(
    model: TwoLayer,
    x: &Tensor<2>,
    y: &Tensor<1>,
    params: &Stage1Params,
    observer: &mut dyn Observer,
) -> Result<TwoLayer, TrainError> {
    run_stage1_from(model, x, y, params, observer, 0)
}

/// [`run_stage1`] resumed after `start_step` steps: `model.w` holds W(start_step) (e.g. from a
/// checkpoint), steps `start_step + 1 ..= T` run and are reported (step 0 is reported only when
/// `start_step = 0`). The schedule engine's [`gd_stage`] on `w`, with the fused or closed-form
/// gradient where `params.gradient` asks for it.
pub fn run_stage1_from(
    model: TwoLayer,
    x: &Tensor<2>,
    y: &Tensor<1>,
    params: &Stage1Params,
    observer: &mut dyn Observer,
    start_step: usize,
) -> Result<TwoLayer, TrainError> {
    gd_stage(model, x, y, &params.gd_stage(), observer, start_step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::NoObserver;
    use burn::module::Param;
    use burn::tensor::Device;
    use mim_model::{
        from_host_1d, from_host_2d, standard_normals, to_host, Activation, Precision,
        TwoLayerConfig,
    };

    fn gaussian(n: usize, seed: u64, scale: f64) -> Vec<f64> {
        standard_normals(n, seed)
            .into_iter()
            .map(|v| scale * v)
            .collect()
    }

    /// A model with perturbed W and random b, a, c so that no term of the gradient vanishes.
    fn perturbed(act: Activation, d: usize, m: usize, dev: &Device, p: Precision) -> TwoLayer {
        let mut model = TwoLayerConfig {
            width: m,
            activation: act,
            init_scale: 0.5,
        }
        .symmetric_init(d, 1, dev, p)
        .unwrap();
        model.w = Param::from_tensor(from_host_2d(&gaussian(m * d, 2, 0.3), m, d, dev, p));
        model.b = Param::from_tensor(from_host_1d(&gaussian(m, 3, 0.5), dev, p));
        model.a = Param::from_tensor(from_host_1d(&gaussian(m, 4, 1.0), dev, p));
        model.c = Param::from_tensor(from_host_1d(&[0.2], dev, p));
        model
    }

    /// An f64 autodiff-flex problem: x (n×d, seed `seed`), y (n, seed `seed + 1`).
    fn problem(n: usize, d: usize, seed: u64) -> (Device, Tensor<2>, Tensor<1>) {
        let dev = Device::flex().autodiff();
        let p = Precision::F64;
        let x = from_host_2d(&gaussian(n * d, seed, 1.0), n, d, &dev, p);
        let y = from_host_1d(&gaussian(n, seed + 1, 1.0), &dev, p);
        (dev, x, y)
    }

    /// Checks that `other` gives the autodiff gradient and loss for every loss and activation,
    /// in f64 (to 1e-12) and f32 (to 1e-5 relative), on n rows, for d < m and d > m (the fused
    /// kernel scales X_b in the first case and Z_b in the second).
    fn assert_matches_autodiff(
        n: usize,
        other: impl Fn(&TwoLayer, &Tensor<2>, &Tensor<1>, Loss) -> (Tensor<2>, f64),
    ) {
        for (d, m, p) in [(7, 10), (12, 6)]
            .into_iter()
            .flat_map(|(d, m)| [(d, m, Precision::F64), (d, m, Precision::F32)])
        {
            let dev = Device::flex().autodiff();
            let x = from_host_2d(&gaussian(n * d, 5, 1.0), n, d, &dev, p);
            let y = from_host_1d(&gaussian(n, 6, 1.5), &dev, p);
            for act in Activation::ALL {
                for loss in [
                    Loss::Square,
                    Loss::Huber { delta: 0.7 },
                    Loss::L1 { smoothing: 0.2 },
                ] {
                    let mut model = perturbed(act, d, m, &dev, p);
                    model.a = model.a.set_require_grad(false);
                    model.b = model.b.set_require_grad(false);
                    model.c = model.c.set_require_grad(false);
                    let (ga, la) = autodiff_gradient(&model, &x, &y, &loss);
                    let (go, lo) = other(&model, &x, &y, loss);
                    let (ga, go, la) = (to_host(ga), to_host(go), to_host(la)[0]);
                    let scale = ga.iter().fold(0.0f64, |s, v| s.max(v.abs()));
                    let diff = ga
                        .iter()
                        .zip(&go)
                        .fold(0.0f64, |s, (a, b)| s.max((a - b).abs()));
                    let tol = if p == Precision::F64 { 1e-12 } else { 1e-5 } * scale.max(1e-3);
                    assert!(scale > 1e-3, "degenerate test: gradient ≈ 0");
                    assert!(
                        diff <= tol,
                        "{act} {loss:?} {p:?} d={d} m={m}: |Δ| = {diff}, max|G| = {scale}"
                    );
                    assert!(
                        (la - lo).abs() <= 1e-5 * la.abs().max(1.0),
                        "loss {la} vs {lo}"
                    );
                }
            }
        }
    }

    /// Autodiff ∇_W L̂ equals the closed form of paper §3 (device tensor ops).
    #[test]
    fn autodiff_gradient_equals_closed_form() {
        assert_matches_autodiff(64, |model, x, y, loss| {
            let (g, l) = closed_form_gradient(model, x, y, &loss);
            (g, to_host(l)[0])
        });
    }

    /// The fused host kernel gives the autodiff gradient, over more rows than one block.
    #[test]
    fn fused_gradient_equals_autodiff() {
        assert_matches_autodiff(600, |model, x, y, loss| {
            crate::fused::HostStage1::new(x, y, model, loss).gradient(&model.w.val())
        });
    }

    /// The frozen parameters get no gradient and are unchanged by stage 1.
    #[test]
    fn stage1_only_moves_w() {
        let (n, d, m) = (50, 6, 8);
        let p = Precision::F64;
        let (dev, x, y) = problem(n, d, 5);
        let model = perturbed(Activation::Logcosh, d, m, &dev, p);
        let (a0, b0, w0) = (
            to_host(model.a.val()),
            to_host(model.b.val()),
            to_host(model.w.val()),
        );
        let params = Stage1Params {
            steps: 3,
            lr: 0.5,
            weight_decay: 0.1,
            loss: Loss::Huber { delta: 1.0 },
            mode: Mode::Literal,
            gradient: Gradient::Autodiff,
            init_scale: 1e-3,
        };
        let model = run_stage1(model, &x, &y, &params, &mut NoObserver).unwrap();
        assert_eq!(to_host(model.a.val()), a0);
        assert_eq!(to_host(model.b.val()), b0);
        assert_ne!(to_host(model.w.val()), w0);
    }

    /// Literal mode performs exactly W − η(G + βW) (one step, checked against the closed form).
    #[test]
    fn literal_step_is_the_update_formula() {
        let (n, d, m) = (40, 5, 6);
        let p = Precision::F64;
        let (dev, x, y) = problem(n, d, 8);
        let loss = Loss::Square;
        let model = perturbed(Activation::OneMinusCos, d, m, &dev, p);
        let g = to_host(closed_form_gradient(&model, &x, &y, &loss).0);
        let w0 = to_host(model.w.val());
        let params = Stage1Params {
            steps: 1,
            lr: 0.3,
            weight_decay: 0.2,
            loss,
            mode: Mode::Literal,
            gradient: Gradient::Autodiff,
            init_scale: 1.0,
        };
        let w1 = to_host(
            run_stage1(model, &x, &y, &params, &mut NoObserver)
                .unwrap()
                .w
                .val(),
        );
        for k in 0..w0.len() {
            let want = w0[k] - 0.3 * (g[k] + 0.2 * w0[k]);
            assert!((w1[k] - want).abs() < 1e-12);
        }
    }

    /// Normalized mode ends with unit rows; NaN labels are reported as divergence at step 1.
    #[test]
    fn normalized_rows_and_divergence() {
        let (n, d, m) = (30, 4, 6);
        let p = Precision::F64;
        let (dev, x, y) = problem(n, d, 1);
        let init = || {
            TwoLayerConfig {
                width: m,
                activation: Activation::Logcosh,
                init_scale: 1e-3,
            }
            .symmetric_init(d, 0, &dev, p)
            .unwrap()
        };
        let model = init();
        let mut params = Stage1Params {
            steps: 2,
            lr: 1.0,
            weight_decay: 1.0,
            loss: Loss::Huber { delta: 1.0 },
            mode: Mode::Normalized,
            gradient: Gradient::ClosedForm,
            init_scale: 1e-3,
        };
        let w = to_host(
            run_stage1(model, &x, &y, &params, &mut NoObserver)
                .unwrap()
                .w
                .val(),
        );
        for j in 0..m {
            let norm = w[j * d..(j + 1) * d]
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt();
            assert!((norm - 1.0).abs() < 1e-12);
        }
        let mut bad = gaussian(n, 2, 1.0);
        bad[3] = f64::NAN;
        let y = from_host_1d(&bad, &dev, p);
        let model = init();
        params.gradient = Gradient::Autodiff;
        let err = run_stage1(model, &x, &y, &params, &mut NoObserver).unwrap_err();
        assert!(
            matches!(
                &err,
                TrainError::Diverged {
                    stage,
                    step: 1,
                    ..
                } if stage == "stage1"
            ),
            "{err}"
        );
    }
}
