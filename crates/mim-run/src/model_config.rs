//! `[model]`: the two-layer network of the paper (`width`, `activation`, `init_scale`), or a
//! deeper [`mim_model::Mlp`] when `widths` lists the hidden widths m_1, …, m_L:
//!
//! ```toml
//! [model]
//! widths = [512, 64]                     # hidden layers; the readout is linear on the last
//! activations = ["logcosh", "tanh"]      # one per layer, or one for all (default logcosh)
//! bias = [true, true]                    # one per layer, or one for all (default true)
//! init_scale = 1e-3                      # ε0, the row norm of W1 at init
//! ```
//!
//! A two-layer config serialises exactly as before (`width`, `activation`, `init_scale`), so
//! the keys of existing sweeps do not change.

use mim_model::{Activation, MlpConfig, TwoLayerConfig};
use serde::{Deserialize, Serialize};

/// `[model]` as written: every key optional, checked by [`ModelConfig`]'s conversion.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    activation: Option<Activation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    widths: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    activations: Option<Vec<Activation>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bias: Option<Vec<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    init_scale: Option<f64>,
}

/// The network of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawModel", into = "RawModel")]
pub struct ModelConfig {
    /// Width m of the two-layer network; for a deeper network, the last hidden width m_L
    /// (the readout's size).
    pub width: usize,
    /// σ of the two-layer network (of the last hidden layer for a deeper one).
    pub activation: Activation,
    /// ε0, the row norm of the first layer at init.
    pub init_scale: f64,
    /// The deeper network, when `widths` is given.
    pub mlp: Option<MlpConfig>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        let two = TwoLayerConfig::default();
        Self {
            width: two.width,
            activation: two.activation,
            init_scale: two.init_scale,
            mlp: None,
        }
    }
}

impl TryFrom<RawModel> for ModelConfig {
    type Error = String;

    fn try_from(raw: RawModel) -> Result<Self, String> {
        let two = TwoLayerConfig::default();
        let init_scale = raw.init_scale.unwrap_or(two.init_scale);
        let Some(widths) = raw.widths else {
            for (given, key) in [
                (raw.activations.is_some(), "activations"),
                (raw.bias.is_some(), "bias"),
            ] {
                if given {
                    return Err(format!(
                        "model.{key} is for a deeper network: give model.widths too (or model.activation for the two-layer network)"
                    ));
                }
            }
            return Ok(Self {
                width: raw.width.unwrap_or(two.width),
                activation: raw.activation.unwrap_or(two.activation),
                init_scale,
                mlp: None,
            });
        };
        if raw.width.is_some() {
            return Err("model.width and model.widths are both given: give widths (a deeper network) or width (the two-layer network)".into());
        }
        if raw.activation.is_some() {
            return Err("model.activation and model.widths are both given: a deeper network takes model.activations (one per layer, or one for all)".into());
        }
        let mlp = MlpConfig {
            widths,
            activations: raw.activations.unwrap_or_else(|| vec![two.activation]),
            bias: raw.bias.unwrap_or_else(|| vec![true]),
            init_scale,
            ..MlpConfig::default()
        };
        Ok(Self {
            width: mlp.widths.last().copied().unwrap_or(0),
            activation: mlp.activations.last().copied().unwrap_or(two.activation),
            init_scale,
            mlp: Some(mlp),
        })
    }
}

impl From<ModelConfig> for RawModel {
    fn from(m: ModelConfig) -> Self {
        match m.mlp {
            None => RawModel {
                width: Some(m.width),
                activation: Some(m.activation),
                init_scale: Some(m.init_scale),
                ..RawModel::default()
            },
            Some(mlp) => RawModel {
                widths: Some(mlp.widths),
                activations: Some(mlp.activations),
                bias: Some(mlp.bias),
                init_scale: Some(m.init_scale),
                ..RawModel::default()
            },
        }
    }
}

impl ModelConfig {
    /// The two-layer network's hyper-parameters.
    pub fn two_layer(&self) -> TwoLayerConfig {
        TwoLayerConfig {
            width: self.width,
            activation: self.activation,
            init_scale: self.init_scale,
        }
    }

    /// Checks the fields; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        match &self.mlp {
            None => self.two_layer().validate().map_err(|e| e.to_string()),
            Some(mlp) => mlp.validate().map_err(|e| e.to_string()),
        }
    }
}
