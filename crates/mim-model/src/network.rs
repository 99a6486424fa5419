//! What mim needs of a network to train it layer-wise: the [`Network`] trait.
//!
//! Any Burn [`Module`] that implements it can be trained by a schedule (`[[schedule]]` in a run
//! config): a stage names the parameter groups it trains by their Burn module paths (`w`,
//! `layers.1.weight`, or a prefix such as `layers.1`), everything else is frozen through Burn's
//! own `set_require_grad_group`; a convex `solver = "ridge"` stage fits the final linear readout
//! on [`Network::representation`]; the metrics compare [`Network::first_layer`] with U and each
//! of [`Network::hidden`] with the target's declared intermediate features.

use crate::two_layer::TwoLayer;
use burn::module::Module;
use burn::tensor::Tensor;

/// The final linear readout f = Φ a + c of a network, by parameter path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readout {
    /// Path of the readout weights a (a 1-D parameter of length m_L), e.g. `"a"`.
    pub weight: String,
    /// Path of the scalar offset c (a 1-D parameter of length 1), if the readout has one.
    pub bias: Option<String>,
}

/// A network trainable by mim's schedule engine.
///
/// Shapes: X is n×d; `hidden` returns h_1(X), …, h_L(X) with h_l of shape n×m_l (input side
/// first); `forward` is f(X) = h_L(X) a + c of shape n when the network has a [`Readout`].
pub trait Network: Module + Clone + core::fmt::Debug + Send + 'static {
    /// f(X), X: n×d → n.
    fn forward(&self, x: Tensor<2>) -> Tensor<1>;

    /// The hidden representations h_1(X), …, h_L(X) (n×m_l each), input side first, as they
    /// enter the next layer (after any per-unit standardisation).
    fn hidden(&self, x: Tensor<2>) -> Vec<Tensor<2>>;

    /// Φ(X) = h_L(X) (n×m_L): what the final linear readout sees. Defaults to the last of
    /// [`Network::hidden`].
    fn representation(&self, x: Tensor<2>) -> Tensor<2> {
        self.hidden(x)
            .pop()
            .expect("a network has at least one hidden layer")
    }

    /// The final linear readout, if the network ends in one (needed by a `ridge` stage).
    fn readout(&self) -> Option<Readout>;

    /// The first-layer weights W1 (m1×d), whose rows the metrics compare with U.
    fn first_layer(&self) -> Tensor<2>;

    /// Burn module path of the first-layer weight parameter (e.g. `"w"`).
    fn first_layer_path(&self) -> String;

    /// Freezes a per-unit standardisation of hidden layer `layer` (1-based): afterwards that
    /// layer outputs (h_l − μ)/s with μ, s the per-unit mean and standard deviation of h_l on
    /// `x`. The default refuses: the network has no such layer.
    fn standardize(self, layer: usize, x: Tensor<2>) -> Result<Self, String> {
        let _ = x;
        Err(format!(
            "standardize = {layer}: this network has no per-unit standardisation"
        ))
    }
}

impl Network for TwoLayer {
    fn forward(&self, x: Tensor<2>) -> Tensor<1> {
        TwoLayer::forward(self, x)
    }

    fn hidden(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        vec![self.features(x)]
    }

    fn representation(&self, x: Tensor<2>) -> Tensor<2> {
        self.features(x)
    }

    fn readout(&self) -> Option<Readout> {
        Some(Readout {
            weight: "a".into(),
            bias: Some("c".into()),
        })
    }

    fn first_layer(&self) -> Tensor<2> {
        self.w.val()
    }

    fn first_layer_path(&self) -> String {
        "w".into()
    }
}
