//! The layer-wise schedule engine: an ordered list of stages over named parameter groups of any
//! [`Network`], each trained by its own rule. The paper's algorithm is the two-stage schedule
//! (GD on `w`, then ridge on `a`, `c`); deeper networks add stages.
//!
//! One loop per kind of stage, shared by every network and every preset:
//! - [`gd_stage`]: full-batch GD with weight decay on the trained group,
//!   θ ← θ − η(∇_θ L̂ + βθ), optionally followed by the `normalized` row projection of every
//!   trained matrix (rows to norm ε0 after each step, to norm 1 after the last). The gradient
//!   comes from Burn autodiff, or — for a [`TwoLayer`] training `w` alone — from the closed form
//!   or the fused CPU kernel (the engine's specialisations, [`Gradient`]).
//! - [`optimizer_stage`]: Burn's SGD or Adam on minibatches from a [`BatchSource`].
//! - [`ridge_stage`]: the convex readout fit on Φ = [`Network::representation`] (exact ridge,
//!   λ fixed or chosen on a held-out 20 %), written back into the readout parameters.
//!
//! Freezing always goes through Burn: [`mim_model::train_only`] sets `require_grad` on exactly
//! the stage's group with `set_require_grad_group`.

use crate::config::{Gradient, Mode, Stage2Config};
use crate::error::TrainError;
use crate::fused::HostStage1;
use crate::joint::{BatchSource, JointOptimizer};
use crate::loss::{Loss, TensorLoss};
use crate::observer::{Observer, Stage1State};
use crate::stage2::{fit_readout, Stage2Report};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, SgdConfig};
use burn::tensor::Tensor;
use mim_model::{set_values, to_host, train_only, Network, Precision, TwoLayer};
use std::any::Any;
use std::collections::BTreeMap;

/// A full-batch GD stage, resolved (numbers, no "auto").
#[derive(Clone, Debug, PartialEq)]
pub struct GdStage {
    /// Stage name, as reported in `metrics.jsonl` and errors (`stage1` for the paper's).
    pub name: String,
    /// Parameter paths trained (everything else frozen).
    pub train: Vec<String>,
    /// Number of steps.
    pub steps: usize,
    /// η.
    pub lr: f64,
    /// β (weight decay).
    pub weight_decay: f64,
    /// ℓ.
    pub loss: Loss,
    /// `literal`, or `normalized`: rows of every trained matrix to norm `row_norm` after each
    /// step and to norm 1 after the last.
    pub mode: Mode,
    /// ε0 of `normalized` mode.
    pub row_norm: f64,
    /// The row norm of every trained matrix after the last step: `Some(1)` in `normalized`
    /// mode (the paper's), `None` (left as is) in `literal` mode unless asked for.
    pub final_row_norm: Option<f64>,
    /// Gradient path (`fused` and `closed_form` only for a two-layer network training `w`).
    pub gradient: Gradient,
    /// Which prediction the loss sees: 0 = the network's output; l ≥ 1 = the fixed paired
    /// readout of hidden layer l (see [`predict`]).
    pub head: usize,
}

/// The prediction a stage's loss sees. `head = 0`: f(X) = [`Network::forward`]. `head = l ≥ 1`:
/// the fixed symmetric readout of hidden layer l, f_l(X) = Σ_{j<m/2} h_{l,j}(X) − Σ_{j≥m/2} h_{l,j}(X)
/// (a = +1 on the first half of the units, −1 on the second, as the paper's symmetric init),
/// which trains the layers up to l as the paper trains a two-layer network's first layer.
pub fn predict<M: Network>(model: &M, x: Tensor<2>, head: usize) -> Tensor<1> {
    if head == 0 {
        return model.forward(x);
    }
    let h = model.hidden(x).swap_remove(head - 1);
    let [_, m] = h.dims();
    let half = m / 2;
    let plus = h.clone().narrow(1, 0, half).sum_dim(1);
    let minus = h.narrow(1, half, m - half).sum_dim(1);
    (plus - minus).squeeze_dim::<1>(1)
}

pub use mim_model::normalize_rows;

fn scalar(t: Tensor<1>) -> f64 {
    to_host(t)[0]
}

/// θ ← θ − η(g + βθ) for every parameter with a gradient, then (matrices only) the row
/// projection to `row_norm`.
struct GdUpdate<'a> {
    grads: &'a GradientsParams,
    lr: f64,
    weight_decay: f64,
    row_norm: Option<f64>,
    orthonormal: bool,
}

/// Gram–Schmidt (twice, for stability) on the rows of each half of a row-major m×d matrix,
/// every row then scaled to `norm`. A row dependent on the earlier ones of its half (‖r‖ ≤
/// 1e-12 of its norm before) is left at zero.
pub fn orthonormalize_halves(w: &mut [f64], m: usize, d: usize, norm: f64) {
    let half = m / 2;
    for (lo, hi) in [(0, half), (half, m)] {
        for j in lo..hi {
            let (done, rest) = w.split_at_mut(j * d);
            let row = &mut rest[..d];
            let before = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            for _ in 0..2 {
                for q in done[lo * d..].chunks_exact(d) {
                    let c: f64 =
                        q.iter().zip(row.iter()).map(|(a, b)| a * b).sum::<f64>() / (norm * norm);
                    row.iter_mut().zip(q).for_each(|(r, q)| *r -= c * q);
                }
            }
            let after = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            if after <= 1e-12 * before || after == 0.0 {
                row.iter_mut().for_each(|v| *v = 0.0);
            } else {
                row.iter_mut().for_each(|v| *v *= norm / after);
            }
        }
    }
}

fn orthonormal_rows<const D: usize>(t: Tensor<D>, norm: f64) -> Tensor<D> {
    if D != 2 {
        return t;
    }
    let dims = t.dims();
    let (m, d) = (dims[0], dims[1]);
    let (device, dtype) = (t.device(), t.dtype());
    let mut w = to_host(t);
    orthonormalize_halves(&mut w, m, d, norm);
    let data = burn::tensor::TensorData::new(w, [m, d]);
    Tensor::<2>::from_data(data, (&device, dtype)).reshape(dims)
}

fn rows_to_norm<const D: usize>(t: Tensor<D>, norm: f64) -> Tensor<D> {
    if D != 2 {
        return t;
    }
    let dims = t.dims();
    let t2: Tensor<2> = t.reshape([dims[0], dims[1]]);
    normalize_rows(t2, norm).reshape(dims)
}

impl ModuleMapper for GdUpdate<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(g) = self.grads.get::<D>(param.id) else {
            return param;
        };
        let (eta, beta, row_norm) = (self.lr, self.weight_decay, self.row_norm);
        param.map(|w| {
            let w = w.detach();
            let mut next = w.clone() - (g + w.mul_scalar(beta)).mul_scalar(eta);
            if let Some(norm) = row_norm {
                next = if self.orthonormal {
                    orthonormal_rows(next, norm)
                } else {
                    rows_to_norm(next, norm)
                };
            }
            next.detach().require_grad()
        })
    }
}

/// Rows of every trained matrix (a parameter in `paths` of rank 2) to norm `norm`.
struct RowProjection<'a> {
    path: Vec<String>,
    paths: &'a [String],
    norm: f64,
}

impl ModuleMapper for RowProjection<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D != 2 || !self.paths.contains(&self.path.join(".")) {
            return param;
        }
        let norm = self.norm;
        param.map(|w| {
            let tracked = w.is_require_grad();
            let next = rows_to_norm(w.detach(), norm).detach();
            if tracked {
                next.require_grad()
            } else {
                next
            }
        })
    }
}

/// ‖g‖ over the gradients in `grads` and max|θ| over the parameters that have one (the
/// trained group), in one visit.
#[derive(Default)]
struct StepStats {
    sq_norm: f64,
    max_abs: f64,
}

struct StepStatsVisitor<'a> {
    grads: &'a GradientsParams,
    stats: StepStats,
}

impl ModuleVisitor for StepStatsVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.stats.sq_norm += to_host(g.square().sum())[0];
            let max = to_host(param.val().abs().max())[0];
            self.stats.max_abs = self.stats.max_abs.max(max);
        }
    }
}

fn step_stats<M: Module>(model: &M, grads: &GradientsParams) -> StepStats {
    let mut v = StepStatsVisitor {
        grads,
        stats: StepStats::default(),
    };
    model.visit(&mut v);
    v.stats
}

/// Hands the first layer after `step` of `total` to the observer.
fn observe<M: Network>(
    observer: &mut dyn Observer,
    model: &M,
    (name, step, total): (&str, usize, usize),
    loss: f64,
    grad_norm: f64,
) -> Result<(), TrainError> {
    let w = model.first_layer().detach();
    observer.stage1_step(&Stage1State {
        stage: name,
        step,
        total,
        w: &w,
        loss,
        grad_norm,
    })
}

/// A source of ∇_W L̂ for the first layer `w` of the two-layer network, from outside the
/// engine: e.g. the fused kernel over D1 regenerated chunk by chunk (`mim-run`'s streaming),
/// which holds no dataset the engine could read. Returns (∇_W L̂ on W's device, L̂).
pub trait FirstLayerGradient {
    /// The gradient and the loss at the model's current `w` (its a, b, c are frozen).
    fn gradient(&mut self, model: &TwoLayer) -> Result<(Tensor<2>, f64), TrainError>;
}

/// Where a GD stage's gradient comes from.
enum Provider<'a> {
    Autodiff,
    ClosedForm,
    Fused(Box<HostStage1>),
    External(&'a mut dyn FirstLayerGradient),
}

fn two_layer<M: Network>(model: &M) -> Option<&TwoLayer> {
    (model as &dyn Any).downcast_ref::<TwoLayer>()
}

/// Whether the closed-form and fused gradient paths apply: a [`TwoLayer`] training `w` alone.
pub fn has_two_layer_fast_path<M: Network>(model: &M, train: &[String]) -> bool {
    two_layer(model).is_some() && train == ["w"]
}

/// Runs a GD stage on (x, y) (labels already prepared), reporting each step to `observer`
/// (step 0 only when `start_step = 0`). Resumed after `start_step` steps, the model holds the
/// parameters after that step; each step depends only on them, so the result is the
/// uninterrupted one. Returns the model with only the trained group changed.
pub fn gd_stage<M: Network>(
    model: M,
    x: &Tensor<2>,
    y: &Tensor<1>,
    p: &GdStage,
    observer: &mut dyn Observer,
    start_step: usize,
) -> Result<M, TrainError> {
    gd_stage_with(model, Some((x, y)), p, observer, start_step, None)
}

/// [`gd_stage`] with the data optional and the gradient possibly from an external
/// [`FirstLayerGradient`] (then the stage must be the two-layer network training `w`, and
/// `data` may be `None`: the provider holds it).
pub fn gd_stage_with<M: Network>(
    model: M,
    data: Option<(&Tensor<2>, &Tensor<1>)>,
    p: &GdStage,
    observer: &mut dyn Observer,
    start_step: usize,
    external: Option<&mut dyn FirstLayerGradient>,
) -> Result<M, TrainError> {
    let fast = p.head == 0 && has_two_layer_fast_path(&model, &p.train);
    let needs = |what: &str| TrainError::Numerical {
        stage: p.name.clone(),
        message: format!("{what} (a caller bug)"),
    };
    let mut provider = match (external, data) {
        (Some(_), _) if !fast => {
            return Err(needs(
                "an external gradient needs the two-layer network training w",
            ))
        }
        (Some(ext), _) => Provider::External(ext),
        (None, None) => return Err(needs("a GD stage without data needs an external gradient")),
        (None, Some((x, y))) => match p.gradient {
            Gradient::Autodiff => Provider::Autodiff,
            Gradient::ClosedForm | Gradient::Fused | Gradient::Auto if !fast => {
                if p.gradient == Gradient::Auto {
                    Provider::Autodiff
                } else {
                    return Err(TrainError::Numerical {
                        stage: p.name.clone(),
                        message: format!(
                            "gradient = \"{}\" is a two-layer specialisation (train = [\"w\"] on the two-layer network); use \"autodiff\"",
                            if p.gradient == Gradient::Fused { "fused" } else { "closed_form" }
                        ),
                    });
                }
            }
            Gradient::ClosedForm => Provider::ClosedForm,
            // `auto` is resolved by the caller to fused/closed form per backend; here it means
            // the fused kernel.
            Gradient::Fused | Gradient::Auto => {
                let two = two_layer(&model).expect("fast path checked");
                Provider::Fused(Box::new(HostStage1::new(x, y, two, p.loss)))
            }
        },
    };
    let mut model = train_only(model, &p.train);
    if start_step == 0 {
        observe(observer, &model, (&p.name, 0, p.steps), f64::NAN, f64::NAN)?;
    }
    let row_norm = p.mode.projects().then_some(p.row_norm);
    for step in start_step + 1..=p.steps {
        let (grads, loss) = match (&mut provider, two_layer(&model)) {
            (Provider::External(ext), Some(two)) => {
                let (g, l) = ext.gradient(two)?;
                let mut grads = GradientsParams::new();
                grads.register(two.w.id, g);
                (grads, l)
            }
            (Provider::Fused(host), Some(two)) => {
                let (g, l) = host.gradient(&two.w.val().detach());
                let mut grads = GradientsParams::new();
                grads.register(two.w.id, g);
                (grads, l)
            }
            (Provider::ClosedForm, Some(two)) => {
                let (x, y) = data.expect("closed form has data");
                let (g, l) = crate::stage1::closed_form_gradient(two, x, y, &p.loss);
                let mut grads = GradientsParams::new();
                grads.register(two.w.id, g);
                (grads, scalar(l))
            }
            _ => {
                let (x, y) = data.expect("autodiff has data");
                let l = p.loss.mean(predict(&model, x.clone(), p.head), y.clone());
                let grads = GradientsParams::from_grads(l.backward(), &model);
                (grads, scalar(l.detach()))
            }
        };
        model = model.map(&mut GdUpdate {
            grads: &grads,
            lr: p.lr,
            weight_decay: p.weight_decay,
            row_norm,
            orthonormal: p.mode == Mode::Orthonormal,
        });
        // ‖∇‖ of the step just taken and max|θ| after it; the two-layer paths name them by W.
        let stats = step_stats(&model, &grads);
        let grad_norm = stats.sq_norm.sqrt();
        let (grad_name, param_name) = if fast {
            ("‖∇W‖", "max|W|")
        } else {
            ("‖∇θ‖", "max|θ|")
        };
        let checks = [
            ("loss", loss, loss.is_finite()),
            (grad_name, grad_norm, grad_norm.is_finite()),
            (
                param_name,
                stats.max_abs,
                stats.max_abs.is_finite() && stats.max_abs <= 1e12,
            ),
        ];
        if let Some(&(quantity, value, _)) = checks.iter().find(|c| !c.2) {
            return Err(TrainError::Diverged {
                stage: p.name.clone(),
                step,
                quantity: quantity.into(),
                value,
            });
        }
        observe(observer, &model, (&p.name, step, p.steps), loss, grad_norm)?;
    }
    if let Some(norm) = p.final_row_norm {
        model = model.map(&mut RowProjection {
            path: Vec::new(),
            paths: &p.train,
            norm,
        });
    }
    Ok(model)
}

/// A Burn-optimizer stage (SGD or Adam on minibatches), resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerStage {
    /// Stage name (`joint` for the joint-training preset).
    pub name: String,
    /// Parameter paths trained.
    pub train: Vec<String>,
    /// Optimizer.
    pub optimizer: JointOptimizer,
    /// Learning rate.
    pub lr: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// Report to the observer every this many steps (and at the last).
    pub eval_every: usize,
    /// ℓ.
    pub loss: Loss,
    /// Which prediction the loss sees ([`predict`]).
    pub head: usize,
}

/// Trains the group with Burn's optimizer on the batches of `source`, reporting the first
/// layer at step 0, every `eval_every` steps and at the end.
pub fn optimizer_stage<M: Network>(
    model: M,
    source: &mut dyn BatchSource,
    p: &OptimizerStage,
    observer: &mut dyn Observer,
) -> Result<M, TrainError> {
    let mut model = train_only(model, &p.train);
    let mut optim = match p.optimizer {
        JointOptimizer::Sgd => SgdConfig::new().init(),
        JointOptimizer::Adam => AdamConfig::new().init(),
    };
    observe(observer, &model, (&p.name, 0, p.steps), f64::NAN, f64::NAN)?;
    for step in 1..=p.steps {
        let (x, y) = source.batch(step);
        let l = p.loss.mean(predict(&model, x, p.head), y);
        let report = step % p.eval_every.max(1) == 0 || step == p.steps;
        let loss_value = if report {
            scalar(l.clone().detach())
        } else {
            0.0
        };
        if !loss_value.is_finite() {
            return Err(TrainError::Diverged {
                stage: p.name.clone(),
                step,
                quantity: "loss".into(),
                value: loss_value,
            });
        }
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = optim.step(p.lr, model, grads);
        if report {
            let w_max = scalar(model.first_layer().detach().abs().max());
            if !w_max.is_finite() {
                return Err(TrainError::Diverged {
                    stage: p.name.clone(),
                    step,
                    quantity: "max|W|".into(),
                    value: w_max,
                });
            }
            observe(
                observer,
                &model,
                (&p.name, step, p.steps),
                loss_value,
                f64::NAN,
            )?;
        }
    }
    Ok(model)
}

/// Fits the network's final linear readout on (x, y) by the convex problem of `cfg` (ridge
/// with λ fixed or `"auto"`, or GD on the same objective) over Φ = representation(x), and
/// writes (a, c) into the readout parameters. Errors if the network has no linear readout.
pub fn ridge_stage<M: Network>(
    model: M,
    x: &Tensor<2>,
    y: &Tensor<1>,
    cfg: &Stage2Config,
    precision: Precision,
    name: &str,
) -> Result<(M, Stage2Report), TrainError> {
    let readout = model.readout().ok_or_else(|| TrainError::Numerical {
        stage: name.into(),
        message: "solver = \"ridge\" needs a network with a final linear readout".into(),
    })?;
    let model = model.set_require_grad_group(burn::module::ParamGroup::all(), false);
    let phi = model.representation(x.clone()).detach();
    let y = y.clone().detach();
    let (a, c, report) = fit_readout(&phi, &y, cfg, name)?;
    // f = Φ a + c (the readout's contract, [`Network::forward`]), from the Φ already at hand
    // instead of a second forward pass (its n·d·m GEMM and σ).
    let m = a.len();
    let a_col = mim_model::from_host_2d(&a, m, 1, &phi.device(), precision);
    let offset = if readout.bias.is_some() { c } else { 0.0 };
    let f = to_host(phi.matmul(a_col).squeeze_dim::<1>(1).add_scalar(offset));
    let train_mse = crate::stage2::normalized_mse(&f, &to_host(y));
    let mut values = BTreeMap::new();
    values.insert(readout.weight.clone(), a);
    if let Some(bias) = &readout.bias {
        values.insert(bias.clone(), vec![c]);
    }
    let model = set_values(model, &values, precision);
    Ok((
        model,
        Stage2Report {
            train_mse,
            ..report
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::orthonormalize_halves;

    /// Each half becomes orthonormal rows of norm ε0 spanning what it spanned; the halves are
    /// independent (the twin rows of the symmetric init survive), and a dependent row is zeroed.
    #[test]
    fn halves_are_orthonormalised_separately() {
        let (m, d, norm) = (4, 3, 0.5);
        // Half 1: (1, 1, 0), (1, 0, 0); half 2: the same two rows (twins).
        let mut w = vec![1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0];
        orthonormalize_halves(&mut w, m, d, norm);
        let s = norm / 2f64.sqrt();
        let want = [s, s, 0.0, s, -s, 0.0];
        for half in 0..2 {
            for (a, b) in w[half * 6..half * 6 + 6].iter().zip(want) {
                assert!((a - b).abs() < 1e-15, "{w:?}");
            }
        }
        // A dependent row: (2, 2, 0) after (1, 1, 0) in the same half.
        let mut w = vec![1.0, 1.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        orthonormalize_halves(&mut w, m, d, 1.0);
        assert!(w[3..6].iter().all(|v| *v == 0.0), "{w:?}");
        assert!((w[6..9].iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-15);
    }
}
