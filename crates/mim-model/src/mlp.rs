//! A deep fully-connected network as a Burn [`Module`]: [`Mlp`].
//!
//! f(x) = a·h_L + c, with h_0 = x and, for l = 1..L,
//! h_l = N_l(σ_l(W_l h_{l−1} + b_l)),
//! where N_l is an optional frozen per-unit standardisation (h − μ_l)/s_l (see
//! [`Mlp::standardize`]).
//!
//! Shapes (m_0 = d): W_l is m_l×m_{l−1} (row j holds unit j's incoming weights), b_l, μ_l and
//! s_l have m_l entries, a has m_L and c has 1. On a batch X (n×d) every h_l is n×m_l and f is n.
//!
//! Burn parameter paths (what a schedule names): `layers.{l−1}.weight`, `layers.{l−1}.bias`
//! (absent when the layer has no bias), `layers.{l−1}.norm.mean`, `layers.{l−1}.norm.scale`
//! (present once layer l is standardised), `a`, `c`. A prefix such as `layers.1` selects the
//! weight and bias of hidden layer 2, never its `norm` (see [`crate::params`]).
//!
//! The symmetric initialisation ([`MlpConfig::symmetric_init`]) pairs the units of the last
//! hidden layer with opposite readout signs, so f ≡ 0 at init for any depth; with one hidden
//! layer it is exactly [`TwoLayerConfig::symmetric_init`](crate::TwoLayerConfig::symmetric_init).

use crate::activation::Activation;
use crate::host::{from_host_1d, from_host_2d, set_norm, to_host, Precision};
use crate::network::{Network, Readout};
use crate::two_layer::ModelError;
use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Standard deviations below this are treated as a constant unit: its scale is set to 1 (the
/// unit is only centred).
pub const MIN_SCALE: f64 = 1e-12;

/// A frozen per-unit standardisation: output = (h − mean) / scale, per column.
#[derive(Module, Debug)]
pub struct Standardize {
    /// Per-unit mean μ (m_l).
    pub mean: Param<Tensor<1>>,
    /// Per-unit scale s (m_l), positive.
    pub scale: Param<Tensor<1>>,
}

impl Standardize {
    /// A standardisation with the given mean and scale, both frozen (no gradient).
    pub fn new(mean: &[f64], scale: &[f64], device: &Device, precision: Precision) -> Self {
        assert_eq!(
            mean.len(),
            scale.len(),
            "Standardize: mean and scale lengths"
        );
        Self {
            mean: Param::from_tensor(from_host_1d(mean, device, precision)).set_require_grad(false),
            scale: Param::from_tensor(from_host_1d(scale, device, precision))
                .set_require_grad(false),
        }
    }

    /// The identity (mean 0, scale 1) on `width` units, frozen.
    pub fn identity(width: usize, device: &Device, precision: Precision) -> Self {
        Self::new(&vec![0.0; width], &vec![1.0; width], device, precision)
    }

    /// (H − 1 μᵀ) / (1 sᵀ). H: n×m → n×m.
    pub fn forward(&self, h: Tensor<2>) -> Tensor<2> {
        (h - self.mean.val().unsqueeze_dim::<2>(0)) / self.scale.val().unsqueeze_dim::<2>(0)
    }
}

/// One hidden layer: h = N(σ(W x + b)).
#[derive(Module, Debug)]
pub struct Dense {
    /// Weights W_l (m_l×m_{l−1}); row j is unit j's incoming weights.
    pub weight: Param<Tensor<2>>,
    /// Biases b_l (m_l), if the layer has them.
    pub bias: Option<Param<Tensor<1>>>,
    /// The frozen per-unit standardisation N_l, once [`Mlp::standardize`] has set it.
    pub norm: Option<Standardize>,
    /// The activation σ_l (not a parameter).
    #[module(skip)]
    pub activation: Activation,
}

impl Dense {
    /// Width m_l (number of units).
    pub fn width(&self) -> usize {
        self.weight.val().dims()[0]
    }

    /// Input width m_{l−1}.
    pub fn input_dim(&self) -> usize {
        self.weight.val().dims()[1]
    }

    /// Pre-activations Z = H Wᵀ + 1 bᵀ. H: n×m_{l−1} → n×m_l.
    pub fn pre_activation(&self, h: Tensor<2>) -> Tensor<2> {
        let z = h.matmul(self.weight.val().transpose());
        match &self.bias {
            Some(b) => z + b.val().unsqueeze_dim::<2>(0),
            None => z,
        }
    }

    /// σ(Z), before any standardisation. H: n×m_{l−1} → n×m_l.
    pub fn activations(&self, h: Tensor<2>) -> Tensor<2> {
        self.activation.apply(self.pre_activation(h))
    }

    /// The layer's output N(σ(Z)). H: n×m_{l−1} → n×m_l.
    pub fn forward(&self, h: Tensor<2>) -> Tensor<2> {
        let out = self.activations(h);
        match &self.norm {
            Some(norm) => norm.forward(out),
            None => out,
        }
    }
}

/// The deep network f(x) = a·h_L + c (see the [module docs](self)).
#[derive(Module, Debug)]
pub struct Mlp {
    /// Hidden layers 1..L, input side first (`layers.0` is hidden layer 1).
    pub layers: Vec<Dense>,
    /// Readout weights a (m_L).
    pub a: Param<Tensor<1>>,
    /// Readout offset c (1 element); 0 at init.
    pub c: Param<Tensor<1>>,
}

/// How [`MlpConfig::initialize`] draws the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MlpInit {
    /// [`MlpConfig::symmetric_init`]: paired last layer, f ≡ 0 at init. The default.
    #[default]
    Symmetric,
    /// [`MlpConfig::gaussian_init`]: no pairing, readout N(0, 1/m_L); f ≢ 0 at init.
    Gaussian,
}

/// Hyper-parameters of [`Mlp`] (`[model]` of a run config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    /// Hidden widths m_1..m_L (L ≥ 1, each ≥ 1; m_L even under the symmetric init).
    /// Default `[256, 256]`.
    pub widths: Vec<usize>,
    /// σ_l per hidden layer, or a single entry for all. Default `[logcosh]`.
    pub activations: Vec<Activation>,
    /// Whether hidden layer l has a bias, per layer or a single entry for all. Default `[true]`.
    pub bias: Vec<bool>,
    /// ε0: the norm of each row of W_1 at init. Default 1e-3.
    pub init_scale: f64,
    /// How to initialise. Default `symmetric`.
    pub init: MlpInit,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            widths: vec![256, 256],
            activations: vec![Activation::Logcosh],
            bias: vec![true],
            init_scale: 1e-3,
            init: MlpInit::Symmetric,
        }
    }
}

/// `values` broadcast to `depth` entries: as is when it has `depth`, repeated when it has one.
fn per_layer<T: Copy>(
    values: &[T],
    depth: usize,
    field: &'static str,
) -> Result<Vec<T>, ModelError> {
    match values.len() {
        n if n == depth => Ok(values.to_vec()),
        1 => Ok(vec![values[0]; depth]),
        len => Err(ModelError::PerLayerLength { field, len, depth }),
    }
}

/// Row-major `rows×cols` standard normals, in order, times `scale`.
fn normals(rng: &mut ChaCha8Rng, rows: usize, cols: usize, scale: f64) -> Vec<f64> {
    (0..rows * cols)
        .map(|_| scale * Distribution::<f64>::sample(&StandardNormal, rng))
        .collect::<Vec<f64>>()
}

/// Doubles a row-major matrix of `rows` rows: row j + rows repeats row j.
fn paired(top: Vec<f64>) -> Vec<f64> {
    let mut w = top.clone();
    w.extend_from_slice(&top);
    w
}

fn precision_of<const D: usize>(t: &Tensor<D>) -> Precision {
    if t.dtype() == DType::F64 {
        Precision::F64
    } else {
        Precision::F32
    }
}

impl MlpConfig {
    /// Checks the hyper-parameters for the init `self.init`.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.check(self.init)
    }

    fn check(&self, init: MlpInit) -> Result<(), ModelError> {
        let depth = self.widths.len();
        if depth == 0 {
            return Err(ModelError::NoHiddenLayer);
        }
        if let Some(index) = self.widths.iter().position(|&w| w == 0) {
            return Err(ModelError::ZeroWidth { index });
        }
        for index in [0, depth - 1] {
            let width = self.widths[index];
            if init == MlpInit::Symmetric && width % 2 == 1 {
                return Err(ModelError::OddPairedWidth { index, width });
            }
        }
        per_layer(&self.activations, depth, "activations")?;
        per_layer(&self.bias, depth, "bias")?;
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) {
            return Err(ModelError::InitScale(self.init_scale));
        }
        Ok(())
    }

    /// The network on inputs of dimension `d`, initialised as `self.init` says
    /// ([`MlpConfig::symmetric_init`] or [`MlpConfig::gaussian_init`]).
    pub fn initialize(
        &self,
        d: usize,
        seed: u64,
        device: &Device,
        precision: Precision,
    ) -> Result<Mlp, ModelError> {
        self.draw(self.init, d, seed, device, precision)
    }

    /// Symmetric initialisation, whatever `self.init` says. All draws on the host from `seed`
    /// (ChaCha8, layer by layer, row by row), so every backend starts from the same network:
    /// - W_1: rows ε0·u_j, u_j uniform on S^{d−1}, paired like the paper's two-layer init
    ///   (only m_1/2 rows drawn, unit j + m_1/2 repeats unit j), so that the paired readout of
    ///   layer 1 (a schedule stage with `head = 1`) is ≡ 0 at init too and the paper's stage 1
    ///   runs on layer 1 exactly;
    /// - W_l, l ≥ 2: entries N(0, 1/m_{l−1});
    /// - biases 0;
    /// - the last hidden layer is paired: only its first m_L/2 rows are drawn, and unit
    ///   j + m_L/2 repeats unit j's weights and bias; a_j = +1 for j < m_L/2 and −1 after; c = 0.
    ///
    /// Hence f ≡ 0 at init for any depth (the pairs cancel term by term, up to the rounding of
    /// the readout sum). With one hidden layer this is bit for bit
    /// [`TwoLayerConfig::symmetric_init`](crate::TwoLayerConfig::symmetric_init) with the same
    /// seed.
    pub fn symmetric_init(
        &self,
        d: usize,
        seed: u64,
        device: &Device,
        precision: Precision,
    ) -> Result<Mlp, ModelError> {
        self.draw(MlpInit::Symmetric, d, seed, device, precision)
    }

    /// Gaussian initialisation, whatever `self.init` says: the same layer draws as
    /// [`MlpConfig::symmetric_init`] but no unit is paired (every row is drawn), biases 0, and
    /// then a_j ~ N(0, 1)/√m_L, c = 0. f ≢ 0 at init.
    pub fn gaussian_init(
        &self,
        d: usize,
        seed: u64,
        device: &Device,
        precision: Precision,
    ) -> Result<Mlp, ModelError> {
        self.draw(MlpInit::Gaussian, d, seed, device, precision)
    }

    fn draw(
        &self,
        init: MlpInit,
        d: usize,
        seed: u64,
        device: &Device,
        precision: Precision,
    ) -> Result<Mlp, ModelError> {
        self.check(init)?;
        let depth = self.widths.len();
        let activations = per_layer(&self.activations, depth, "activations")?;
        let bias = per_layer(&self.bias, depth, "bias")?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layers = Vec::with_capacity(depth);
        let mut fan_in = d;
        for (l, &m) in self.widths.iter().enumerate() {
            let pair = init == MlpInit::Symmetric && (l == 0 || l + 1 == depth);
            let rows = if pair { m / 2 } else { m };
            let w = if l == 0 {
                let mut w = normals(&mut rng, rows, fan_in, 1.0);
                for row in w.chunks_mut(fan_in) {
                    set_norm(row, self.init_scale);
                }
                w
            } else {
                normals(&mut rng, rows, fan_in, 1.0 / (fan_in as f64).sqrt())
            };
            let w = if pair { paired(w) } else { w };
            layers.push(Dense {
                weight: Param::from_tensor(from_host_2d(&w, m, fan_in, device, precision)),
                bias: bias[l]
                    .then(|| Param::from_tensor(from_host_1d(&vec![0.0; m], device, precision))),
                norm: None,
                activation: activations[l],
            });
            fan_in = m;
        }
        let m = fan_in;
        let a: Vec<f64> = match init {
            MlpInit::Symmetric => (0..m).map(|j| if j < m / 2 { 1.0 } else { -1.0 }).collect(),
            MlpInit::Gaussian => normals(&mut rng, 1, m, 1.0 / (m as f64).sqrt()),
        };
        Ok(Mlp {
            layers,
            a: Param::from_tensor(from_host_1d(&a, device, precision)),
            c: Param::from_tensor(from_host_1d(&[0.0], device, precision)),
        })
    }
}

impl Mlp {
    /// Number of hidden layers L.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Hidden widths m_1..m_L.
    pub fn widths(&self) -> Vec<usize> {
        self.layers.iter().map(Dense::width).collect()
    }

    /// Input dimension d.
    pub fn input_dim(&self) -> usize {
        self.layers[0].input_dim()
    }

    fn check_layer(&self, what: &'static str, layer: usize) -> Result<(), ModelError> {
        if (1..=self.depth()).contains(&layer) {
            Ok(())
        } else {
            Err(ModelError::Layer {
                what,
                layer,
                depth: self.depth(),
            })
        }
    }

    /// h_{l−1}(X) for 1-based `layer` = l (h_0 = X).
    fn input_of(&self, layer: usize, x: Tensor<2>) -> Tensor<2> {
        self.layers[..layer - 1]
            .iter()
            .fold(x, |h, dense| dense.forward(h))
    }

    /// The hidden representations h_1(X), …, h_L(X) (n×m_l each), each after its
    /// standardisation if it has one. X: n×d.
    pub fn hidden(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        let mut out = Vec::with_capacity(self.depth());
        let mut h = x;
        for dense in &self.layers {
            h = dense.forward(h);
            out.push(h.clone());
        }
        out
    }

    /// Φ(X) = h_L(X) (n×m_L).
    pub fn representation(&self, x: Tensor<2>) -> Tensor<2> {
        self.layers.iter().fold(x, |h, dense| dense.forward(h))
    }

    /// Pre-activations W_l h_{l−1}(X) + b_l (n×m_l) of 1-based hidden layer `layer` = l;
    /// an error naming `layer` outside 1..=L.
    pub fn pre_activation(&self, layer: usize, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        self.check_layer("layer", layer)?;
        let h = self.input_of(layer, x);
        Ok(self.layers[layer - 1].pre_activation(h))
    }

    /// f(X) = h_L(X) a + c. X: n×d → n.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<1> {
        self.representation(x)
            .matmul(self.a.val().unsqueeze_dim::<2>(1))
            .squeeze_dim::<1>(1)
            + self.c.val()
    }

    /// Freezes a per-unit standardisation of 1-based hidden layer `layer` = l: μ_j and s_j are
    /// the mean and population standard deviation of unit j of σ_l(W_l h_{l−1} + b_l) on `x`,
    /// with the layers below as they are now (any earlier standardisation of layer l itself is
    /// replaced, not composed). A unit with s_j < [`MIN_SCALE`] (constant on `x`) gets scale 1:
    /// it is only centred. μ and s are stored as parameters `layers.{l−1}.norm.mean` and
    /// `layers.{l−1}.norm.scale` that require no gradient, so they are saved with the model.
    /// Every other parameter, and its gradient requirement, is left as it was. An error naming
    /// `standardize` for `layer` outside 1..=L.
    pub fn standardize(mut self, layer: usize, x: Tensor<2>) -> Result<Self, ModelError> {
        self.check_layer("standardize", layer)?;
        let dense = &self.layers[layer - 1];
        let device = dense.weight.val().device();
        let precision = precision_of(&dense.weight.val());
        let h = dense.activations(self.input_of(layer, x.detach())).detach();
        let mean = h.clone().mean_dim(0);
        let var = (h - mean.clone()).square().mean_dim(0);
        let mean = to_host(mean);
        let scale: Vec<f64> = to_host(var)
            .into_iter()
            .map(|v| {
                let s = v.max(0.0).sqrt();
                if s < MIN_SCALE {
                    1.0
                } else {
                    s
                }
            })
            .collect();
        self.layers[layer - 1].norm = Some(Standardize::new(&mean, &scale, &device, precision));
        Ok(self)
    }

    /// `self` with an identity standardisation (frozen) on every layer that has none but whose
    /// `layers.{l−1}.norm.*` appears in `keys`: the template to load a saved model into, e.g.
    /// with `keys` = `BurnpackStore::keys()`. A layer without `norm` does not visit one, so a
    /// load would otherwise leave the saved statistics unused (reported in `ApplyResult::unused`,
    /// not as an error).
    pub fn with_norms_for_keys(mut self, keys: &[String]) -> Self {
        for (i, dense) in self.layers.iter_mut().enumerate() {
            let mean = format!("layers.{i}.norm.mean");
            let scale = format!("layers.{i}.norm.scale");
            if dense.norm.is_none() && keys.iter().any(|k| *k == mean || *k == scale) {
                let w = dense.weight.val();
                dense.norm = Some(Standardize::identity(
                    dense.width(),
                    &w.device(),
                    precision_of(&w),
                ));
            }
        }
        self
    }
}

impl Network for Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<1> {
        Mlp::forward(self, x)
    }

    fn hidden(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        Mlp::hidden(self, x)
    }

    fn representation(&self, x: Tensor<2>) -> Tensor<2> {
        Mlp::representation(self, x)
    }

    fn readout(&self) -> Option<Readout> {
        Some(Readout {
            weight: "a".into(),
            bias: Some("c".into()),
        })
    }

    fn first_layer(&self) -> Tensor<2> {
        self.layers[0].weight.val()
    }

    fn first_layer_path(&self) -> String {
        "layers.0.weight".into()
    }

    fn standardize(self, layer: usize, x: Tensor<2>) -> Result<Self, String> {
        Mlp::standardize(self, layer, x).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::standard_normals;
    use crate::params::{param_infos, resolve_paths, set_values, train_only, values_of};
    use crate::TwoLayerConfig;
    use burn::module::ModuleVisitor;
    use std::collections::BTreeMap;

    fn cfg(widths: &[usize], act: Activation, init_scale: f64) -> MlpConfig {
        MlpConfig {
            widths: widths.to_vec(),
            activations: vec![act],
            init_scale,
            ..Default::default()
        }
    }

    fn input(n: usize, d: usize, seed: u64, dev: &Device, p: Precision) -> Tensor<2> {
        from_host_2d(&standard_normals(n * d, seed), n, d, dev, p)
    }

    fn max_abs(v: &[f64]) -> f64 {
        v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
    }

    fn paths(m: &Mlp) -> Vec<String> {
        param_infos(m).into_iter().map(|p| p.path).collect()
    }

    /// (path, requires grad) of every float parameter.
    fn grad_flags(m: &Mlp) -> Vec<(String, bool)> {
        #[derive(Default)]
        struct V {
            path: Vec<String>,
            out: Vec<(String, bool)>,
        }
        impl ModuleVisitor for V {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.path.push(name.into());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                self.out
                    .push((self.path.join("."), p.val().is_require_grad()));
            }
        }
        let mut v = V::default();
        m.visit(&mut v);
        v.out
    }

    /// Every parameter's values by path.
    fn all_values(m: &Mlp) -> BTreeMap<String, Vec<f64>> {
        paths(m)
            .into_iter()
            .map(|p| {
                let v = values_of(m, &p).unwrap();
                (p, v)
            })
            .collect()
    }

    #[test]
    fn symmetric_init_is_identically_zero_at_every_depth() {
        let (n, d) = (64, 7);
        let acts = [
            Activation::Logcosh,
            Activation::Tanh,
            Activation::Relu,
            Activation::Quadratic,
            Activation::OneMinusCos,
        ];
        for precision in [Precision::F64, Precision::F32] {
            let tol = match precision {
                Precision::F64 => 1e-12,
                Precision::F32 => 1e-6,
            };
            for widths in [&[10][..], &[10, 8], &[6, 12, 4]] {
                for act in acts {
                    let dev = Device::flex();
                    let c = cfg(widths, act, 0.7);
                    let model = c.symmetric_init(d, 5, &dev, precision).unwrap();
                    let x = input(n, d, 9, &dev, precision);
                    let f = to_host(model.forward(x.clone()));
                    let worst = max_abs(&f);
                    assert!(
                        worst <= tol,
                        "{widths:?} {act} {precision:?}: max|f| = {worst}"
                    );
                    // Not vacuous: break the cancellation of every pair.
                    let mut a = to_host(model.a.val());
                    let half = a.len() / 2;
                    a[..half].iter_mut().for_each(|v| *v += 0.5);
                    let mut v = BTreeMap::new();
                    v.insert("a".to_string(), a);
                    let broken = set_values(model, &v, precision);
                    let worst = max_abs(&to_host(broken.forward(x)));
                    assert!(
                        worst > 1e-3,
                        "{widths:?} {act} {precision:?}: perturbed max|f| = {worst}"
                    );
                }
            }
        }
    }

    #[test]
    fn init_structure() {
        let dev = Device::flex();
        let (d, eps) = (5, 0.3);
        let model = cfg(&[6, 8, 4], Activation::Logcosh, eps)
            .symmetric_init(d, 1, &dev, Precision::F64)
            .unwrap();
        assert_eq!(model.widths(), vec![6, 8, 4]);
        assert_eq!((model.depth(), model.input_dim()), (3, 5));
        let w1 = to_host(model.layers[0].weight.val());
        for row in w1.chunks(d) {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((norm - eps).abs() < 1e-15, "{norm}");
        }
        // W_1 is paired as in the paper's two-layer init (for a `head = 1` stage).
        assert_eq!(&w1[..3 * d], &w1[3 * d..]);
        // The last layer is paired, the middle one is not.
        let w3 = to_host(model.layers[2].weight.val());
        assert_eq!(&w3[..2 * 8], &w3[2 * 8..]);
        let w2 = to_host(model.layers[1].weight.val());
        assert_ne!(&w2[..4 * 6], &w2[4 * 6..]);
        // Entries of W_2 have variance ≈ 1/m_1 (48 draws: loose bound).
        let var = w2.iter().map(|v| v * v).sum::<f64>() / w2.len() as f64;
        assert!((var * 6.0 - 1.0).abs() < 0.5, "{var}");
        assert_eq!(to_host(model.a.val()), vec![1.0, 1.0, -1.0, -1.0]);
        assert_eq!(to_host(model.c.val()), vec![0.0]);
        for dense in &model.layers {
            assert!(max_abs(&to_host(dense.bias.as_ref().unwrap().val())) == 0.0);
        }
        // Same seed, same network; another seed, another one.
        let again = cfg(&[6, 8, 4], Activation::Logcosh, eps)
            .symmetric_init(d, 1, &dev, Precision::F64)
            .unwrap();
        assert_eq!(all_values(&model), all_values(&again));
        let other = cfg(&[6, 8, 4], Activation::Logcosh, eps)
            .symmetric_init(d, 2, &dev, Precision::F64)
            .unwrap();
        assert_ne!(all_values(&model), all_values(&other));
        // Gaussian init: not paired, f ≠ 0, odd last width allowed.
        let mut g = cfg(&[6, 5], Activation::Logcosh, eps);
        assert!(g.symmetric_init(d, 1, &dev, Precision::F64).is_err());
        g.init = MlpInit::Gaussian;
        let gm = g.initialize(d, 1, &dev, Precision::F64).unwrap();
        let f = to_host(gm.forward(input(16, d, 3, &dev, Precision::F64)));
        assert!(max_abs(&f) > 1e-6);
        let a = to_host(gm.a.val());
        assert!(a.iter().all(|v| v.abs() != 1.0));
    }

    /// L = 1: the same W as the two-layer network, and the same f with the same b, a, c.
    #[test]
    fn one_hidden_layer_is_the_two_layer_network() {
        let (n, d, m) = (32, 6, 10);
        let dev = Device::flex();
        let p = Precision::F64;
        for act in [Activation::Logcosh, Activation::ShiftedSoftplus] {
            let two = TwoLayerConfig {
                width: m,
                activation: act,
                init_scale: 0.8,
            }
            .symmetric_init(d, 11, &dev, p)
            .unwrap();
            let mlp = cfg(&[m], act, 0.8).symmetric_init(d, 11, &dev, p).unwrap();
            let (w2, w1) = (to_host(two.w.val()), to_host(mlp.layers[0].weight.val()));
            assert_eq!(
                w2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                w1.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            assert_eq!(to_host(two.a.val()), to_host(mlp.a.val()));
            let (b, a) = (standard_normals(m, 1), standard_normals(m, 2));
            let mut tv = BTreeMap::new();
            tv.insert("b".to_string(), b.clone());
            tv.insert("a".to_string(), a.clone());
            tv.insert("c".to_string(), vec![0.4]);
            let two = set_values(two, &tv, p);
            let mut mv = BTreeMap::new();
            mv.insert("layers.0.bias".to_string(), b);
            mv.insert("a".to_string(), a);
            mv.insert("c".to_string(), vec![0.4]);
            let mlp = set_values(mlp, &mv, p);
            let x = input(n, d, 4, &dev, p);
            let f2 = to_host(two.forward(x.clone()));
            let f1 = to_host(mlp.forward(x.clone()));
            let diff = f1
                .iter()
                .zip(&f2)
                .map(|(u, v)| (u - v).abs())
                .fold(0.0, f64::max);
            assert!(diff <= 1e-12, "{act}: {diff}");
            assert!(max_abs(&f1) > 1e-2);
            let h = to_host(Network::representation(&mlp, x.clone()));
            assert_eq!(h, to_host(two.features(x)));
        }
    }

    #[test]
    fn parameter_paths() {
        let dev = Device::flex();
        let mut c = cfg(&[4, 6, 2], Activation::Logcosh, 0.5);
        let m = c.symmetric_init(3, 0, &dev, Precision::F64).unwrap();
        assert_eq!(
            paths(&m),
            [
                "layers.0.weight",
                "layers.0.bias",
                "layers.1.weight",
                "layers.1.bias",
                "layers.2.weight",
                "layers.2.bias",
                "a",
                "c"
            ]
        );
        let shapes: Vec<Vec<usize>> = param_infos(&m).into_iter().map(|p| p.shape).collect();
        assert_eq!(
            shapes,
            [
                vec![4, 3],
                vec![4],
                vec![6, 4],
                vec![6],
                vec![2, 6],
                vec![2],
                vec![2],
                vec![1]
            ]
        );
        assert_eq!(Network::first_layer_path(&m), "layers.0.weight");
        assert_eq!(Network::first_layer(&m).dims(), [4, 3]);
        let r = Network::readout(&m).unwrap();
        assert_eq!((r.weight.as_str(), r.bias.as_deref()), ("a", Some("c")));
        let x = input(20, 3, 1, &dev, Precision::F64);
        let m = m.standardize(1, x).unwrap();
        assert_eq!(
            paths(&m)[..4],
            [
                "layers.0.weight",
                "layers.0.bias",
                "layers.0.norm.mean",
                "layers.0.norm.scale"
            ]
        );
        // No bias where the config says so.
        c.bias = vec![false, true, false];
        let m = c.symmetric_init(3, 0, &dev, Precision::F64).unwrap();
        assert_eq!(
            paths(&m),
            [
                "layers.0.weight",
                "layers.1.weight",
                "layers.1.bias",
                "layers.2.weight",
                "a",
                "c"
            ]
        );
        // Every path is an input of forward: f still ≡ 0 without biases.
        let f = to_host(m.forward(input(8, 3, 2, &dev, Precision::F64)));
        assert!(max_abs(&f) <= 1e-12);
    }

    #[test]
    fn config_validation() {
        let err = |c: MlpConfig| {
            let e = c.validate().unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
            e
        };
        let base = cfg(&[4, 6], Activation::Logcosh, 1e-3);
        assert!(base.validate().is_ok());
        let e = err(MlpConfig {
            widths: vec![],
            ..base.clone()
        });
        assert!(e.starts_with("model.widths = []:"), "{e}");
        let e = err(MlpConfig {
            widths: vec![4, 0, 2],
            ..base.clone()
        });
        assert!(e.starts_with("model.widths[1] = 0:"), "{e}");
        let e = err(MlpConfig {
            widths: vec![4, 6, 3],
            ..base.clone()
        });
        assert_eq!(
            e,
            "model.widths[2] = 3: the first and the last hidden layer must have even widths (symmetric init pairs their units)"
        );
        assert!(MlpConfig {
            widths: vec![4, 6, 3],
            init: MlpInit::Gaussian,
            ..base.clone()
        }
        .validate()
        .is_ok());
        let e = err(MlpConfig {
            activations: vec![Activation::Tanh; 3],
            ..base.clone()
        });
        assert!(
            e.contains("model.activations") && e.contains('3') && e.contains('2'),
            "{e}"
        );
        let e = err(MlpConfig {
            bias: vec![],
            ..base.clone()
        });
        assert!(e.contains("model.bias") && e.contains('0'), "{e}");
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = err(MlpConfig {
                init_scale: bad,
                ..base.clone()
            });
            assert!(e.starts_with("model.init_scale = "), "{e}");
        }
        // Broadcast: one entry per layer works too.
        let ok = MlpConfig {
            activations: vec![Activation::Tanh, Activation::Quadratic],
            bias: vec![true, false],
            ..base.clone()
        };
        let m = ok
            .symmetric_init(3, 0, &Device::flex(), Precision::F32)
            .unwrap();
        assert_eq!(m.layers[1].activation, Activation::Quadratic);
        assert!(m.layers[1].bias.is_none() && m.layers[0].bias.is_some());
    }

    #[test]
    fn config_deserializes_with_defaults_and_denies_unknown_fields() {
        use serde::de::value::{Error, MapDeserializer};
        let de = |pairs: Vec<(&'static str, &'static str)>| {
            MlpConfig::deserialize(MapDeserializer::<_, Error>::new(pairs.into_iter()))
        };
        let c = de(vec![("init", "gaussian")]).unwrap();
        assert_eq!(
            c,
            MlpConfig {
                init: MlpInit::Gaussian,
                ..Default::default()
            }
        );
        assert_eq!(de(vec![]).unwrap(), MlpConfig::default());
        let e = de(vec![("width", "8")]).unwrap_err().to_string();
        assert!(e.contains("width"), "{e}");
        let d = MlpConfig::default();
        assert_eq!(
            (d.widths, d.activations, d.bias, d.init_scale, d.init),
            (
                vec![256, 256],
                vec![Activation::Logcosh],
                vec![true],
                1e-3,
                MlpInit::Symmetric
            )
        );
    }

    #[test]
    fn standardize_freezes_unit_statistics() {
        let (n, d) = (200, 5);
        let dev = Device::flex().autodiff();
        let p = Precision::F64;
        let model = cfg(&[6, 4], Activation::Logcosh, 1.5)
            .symmetric_init(d, 3, &dev, p)
            .unwrap();
        let mut b = BTreeMap::new();
        b.insert("layers.0.bias".to_string(), standard_normals(6, 8));
        let model = set_values(model, &b, p);
        // Freeze something so the flags are non-trivial.
        let model = train_only(model, &["layers.0.weight".into(), "a".into()]);
        let before_values = all_values(&model);
        let before_flags = grad_flags(&model);
        let x = input(n, d, 1, &dev, p);
        let raw = to_host(model.hidden(x.clone()).remove(0));
        let model = model.standardize(1, x.clone()).unwrap();
        let h = to_host(model.hidden(x.clone()).remove(0));
        for j in 0..6 {
            let col: Vec<f64> = (0..n).map(|i| h[i * 6 + j]).collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            assert!(
                mean.abs() < 1e-9 && (var.sqrt() - 1.0).abs() < 1e-9,
                "{j}: {mean} {var}"
            );
            let raw_col: Vec<f64> = (0..n).map(|i| raw[i * 6 + j]).collect();
            let raw_mean = raw_col.iter().sum::<f64>() / n as f64;
            let raw_var = raw_col.iter().map(|v| (v - raw_mean).powi(2)).sum::<f64>() / n as f64;
            assert!(
                raw_mean.abs() > 1e-2 || (raw_var.sqrt() - 1.0).abs() > 1e-2,
                "{j}: raw already standard"
            );
        }
        let after_values = all_values(&model);
        let after_flags = grad_flags(&model);
        for (path, v) in &before_values {
            assert_eq!(&after_values[path], v, "{path}");
        }
        for flag in &before_flags {
            assert!(after_flags.contains(flag), "{flag:?}");
        }
        assert!(after_flags.contains(&("layers.0.norm.mean".into(), false)));
        assert!(after_flags.contains(&("layers.0.norm.scale".into(), false)));
        assert_eq!(after_flags.len(), before_flags.len() + 2);
        // Standardising again on the same data is idempotent (stats of the raw σ output).
        let again = model.clone().standardize(1, x.clone()).unwrap();
        let h2 = to_host(again.hidden(x.clone()).remove(0));
        assert!(max_abs(&h.iter().zip(&h2).map(|(u, v)| u - v).collect::<Vec<_>>()) < 1e-12);
        // Layer 2 with layer 1 standardised below it.
        let model = model.standardize(2, x.clone()).unwrap();
        let h = to_host(model.hidden(x.clone()).remove(1));
        let mean0 = (0..n).map(|i| h[i * 4]).sum::<f64>() / n as f64;
        assert!(mean0.abs() < 1e-9);
        // Out of range.
        for bad in [0, 3] {
            let e = model
                .clone()
                .standardize(bad, x.clone())
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                format!("standardize = {bad}: this network has hidden layers 1..=2")
            );
            let e = Network::standardize(model.clone(), bad, x.clone()).unwrap_err();
            assert!(e.starts_with(&format!("standardize = {bad}:")), "{e}");
        }
        assert!(model.pre_activation(3, x.clone()).is_err());
        assert_eq!(model.pre_activation(2, x).unwrap().dims(), [n, 4]);
    }

    #[test]
    fn constant_unit_gets_scale_one() {
        let dev = Device::flex();
        let p = Precision::F64;
        let model = cfg(&[4], Activation::Logcosh, 1.0)
            .symmetric_init(3, 0, &dev, p)
            .unwrap();
        let mut v = BTreeMap::new();
        let mut w = to_host(model.layers[0].weight.val());
        w[..3].fill(0.0);
        v.insert("layers.0.weight".to_string(), w);
        v.insert("layers.0.bias".to_string(), vec![0.5, 0.0, 0.0, 0.0]);
        let model = set_values(model, &v, p);
        let model = model.standardize(1, input(30, 3, 0, &dev, p)).unwrap();
        let norm = model.layers[0].norm.as_ref().unwrap();
        assert_eq!(to_host(norm.scale.val())[0], 1.0);
        assert!((to_host(norm.mean.val())[0] - Activation::Logcosh.scalar(0.5)).abs() < 1e-15);
    }

    #[test]
    fn train_only_a_layer_prefix_skips_its_norm() {
        let dev = Device::flex().autodiff();
        let p = Precision::F64;
        let x = input(20, 4, 0, &dev, p);
        let mlp = cfg(&[6, 6, 4], Activation::Logcosh, 1.0)
            .symmetric_init(4, 0, &dev, p)
            .unwrap()
            .standardize(2, x.clone())
            .unwrap()
            .standardize(1, x)
            .unwrap();
        let sel = resolve_paths(&mlp, &["layers.1".into()], "t").unwrap();
        assert_eq!(sel, ["layers.1.bias", "layers.1.weight"]);
        let mlp = train_only(mlp, &sel);
        let on: Vec<String> = grad_flags(&mlp)
            .into_iter()
            .filter(|(_, g)| *g)
            .map(|(p, _)| p)
            .collect();
        assert_eq!(on, ["layers.1.weight", "layers.1.bias"]);
        // The exact path still selects a norm parameter.
        let sel = resolve_paths(&mlp, &["layers.1.norm.mean".into()], "t").unwrap();
        assert_eq!(sel, ["layers.1.norm.mean"]);
    }

    /// Autodiff vs central finite differences for every parameter of a 3-layer network
    /// (2 hidden layers, layer 1 standardised, random unpaired parameters), MSE loss, f64.
    #[test]
    fn gradients_match_finite_differences() {
        let (n, d) = (20, 4);
        let dev = Device::flex().autodiff();
        let p = Precision::F64;
        let c = MlpConfig {
            widths: vec![5, 3],
            activations: vec![Activation::Logcosh, Activation::Tanh],
            init_scale: 1.0,
            ..Default::default()
        };
        let model = c.gaussian_init(d, 7, &dev, p).unwrap();
        let mut v = BTreeMap::new();
        v.insert("layers.0.bias".to_string(), standard_normals(5, 21));
        v.insert("layers.1.bias".to_string(), standard_normals(3, 22));
        v.insert("c".to_string(), vec![0.3]);
        let model = set_values(model, &v, p);
        let x = input(n, d, 30, &dev, p);
        let y = from_host_1d(&standard_normals(n, 31), &dev, p);
        let model = model.standardize(1, x.clone()).unwrap();
        // Perturb the norm away from the data's statistics and let it take gradients too.
        let mut v = BTreeMap::new();
        let mean: Vec<f64> = values_of(&model, "layers.0.norm.mean").unwrap();
        let scale: Vec<f64> = values_of(&model, "layers.0.norm.scale").unwrap();
        v.insert(
            "layers.0.norm.mean".to_string(),
            mean.iter()
                .zip(standard_normals(5, 40))
                .map(|(m, e)| m + 0.1 * e)
                .collect(),
        );
        v.insert(
            "layers.0.norm.scale".to_string(),
            scale.iter().map(|s| s * 1.3).collect(),
        );
        let model = set_values(model, &v, p).set_require_grad(true);
        let loss = |m: &Mlp| -> Tensor<1> { (m.forward(x.clone()) - y.clone()).square().mean() };
        let grads = loss(&model).backward();
        let mut ad: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        {
            #[derive(Default)]
            struct G<'a> {
                path: Vec<String>,
                grads: Option<&'a burn::tensor::Gradients>,
                out: BTreeMap<String, Vec<f64>>,
            }
            impl ModuleVisitor for G<'_> {
                fn enter_module(&mut self, name: &str, _: &str) {
                    self.path.push(name.into());
                }
                fn exit_module(&mut self, _: &str, _: &str) {
                    self.path.pop();
                }
                fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                    let g = p.val().grad(self.grads.unwrap()).expect("tracked");
                    self.out.insert(self.path.join("."), to_host(g));
                }
            }
            let mut g = G {
                grads: Some(&grads),
                ..Default::default()
            };
            model.visit(&mut g);
            ad.append(&mut g.out);
        }
        let infos = param_infos(&model);
        assert_eq!(infos.len(), 8, "{infos:?}");
        let scalar = |m: &Mlp| to_host(loss(m))[0];
        let h = 1e-5;
        let mut checked = 0;
        for info in infos {
            let base = values_of(&model, &info.path).unwrap();
            let g = &ad[&info.path];
            assert_eq!(g.len(), base.len());
            let gmax = max_abs(g);
            assert!(gmax > 1e-4, "{}: gradient ≈ 0", info.path);
            let step = base.len().div_ceil(10).max(1);
            for k in (0..base.len()).step_by(step) {
                let at = |delta: f64| {
                    let mut vals = base.clone();
                    vals[k] += delta;
                    let mut v = BTreeMap::new();
                    v.insert(info.path.clone(), vals);
                    scalar(&set_values(model.clone(), &v, p))
                };
                let fd = (at(h) - at(-h)) / (2.0 * h);
                let err = (fd - g[k]).abs() / fd.abs().max(g[k].abs()).max(1e-3 * gmax);
                assert!(
                    err <= 1e-6,
                    "{}[{k}]: ad {} fd {fd} rel {err}",
                    info.path,
                    g[k]
                );
                checked += 1;
            }
        }
        assert!(checked >= 40, "{checked}");
    }

    #[test]
    fn burnpack_round_trip() {
        use burn::store::{BurnpackStore, ModuleSnapshot, ModuleStore};
        let dev = Device::flex().autodiff();
        let p = Precision::F64;
        let c = cfg(&[6, 4], Activation::Logcosh, 0.9);
        let x = input(30, 3, 0, &dev, p);
        let model = c
            .symmetric_init(3, 1, &dev, p)
            .unwrap()
            .standardize(1, x.clone())
            .unwrap();
        let mut v = BTreeMap::new();
        v.insert("a".to_string(), standard_normals(4, 3));
        let model = set_values(model, &v, p);
        let path = std::env::temp_dir().join(format!("mim-mlp-{}.bpk", std::process::id()));
        let mut store = BurnpackStore::from_file(&path).overwrite(true);
        model.save_into(&mut store).unwrap();

        // A template without the norm leaves the saved statistics unused (no error).
        let mut plain = c.symmetric_init(3, 2, &dev, p).unwrap();
        let mut store = BurnpackStore::from_file(&path);
        let r = plain.load_from(&mut store).unwrap();
        assert!(r.missing.is_empty());
        assert_eq!(r.unused.len(), 2, "{:?}", r.unused);
        assert!(plain.layers[0].norm.is_none());

        // With the norm slots the file names, everything loads.
        let mut store = BurnpackStore::from_file(&path);
        let keys = store.keys().unwrap();
        let mut loaded = c
            .symmetric_init(3, 2, &dev, p)
            .unwrap()
            .with_norms_for_keys(&keys);
        let r = loaded.load_from(&mut store).unwrap();
        // Tensors loaded from a file are read from it lazily, on first access: compare before
        // the file goes away.
        assert!(
            r.missing.is_empty() && r.unused.is_empty() && r.errors.is_empty(),
            "{r:?}"
        );
        assert_eq!(all_values(&loaded), all_values(&model));
        assert_eq!(
            to_host(loaded.forward(x.clone())),
            to_host(model.forward(x.clone()))
        );
        assert_eq!(grad_flags(&loaded), grad_flags(&model));
        // Loading from the file's bytes (eager) gives the same model.
        let bytes = burn::tensor::Bytes::from_bytes_vec(std::fs::read(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
        let mut store = BurnpackStore::from_bytes(Some(bytes));
        let mut eager = c
            .symmetric_init(3, 2, &dev, p)
            .unwrap()
            .with_norms_for_keys(&keys);
        eager.load_from(&mut store).unwrap();
        assert_eq!(all_values(&eager), all_values(&model));
    }
}
