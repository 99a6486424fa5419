//! The two-layer network of the layer-wise theory as a Burn [`Module`](burn::module::Module).
//!
//! f(x) = Σ_j a_j σ(w_j·x + b_j) + c, with W ∈ R^{m×d}, b, a ∈ R^m and a scalar readout
//! offset c (zero at initialisation and in stage 1; fitted with a in stage 2).
//!
//! - [`activation`]: the σ's the theory admits (σ'(0) = 0, σ''(0) = 1) and two it does not.
//! - [`two_layer`]: the module, its forward pass and [`TwoLayerConfig::symmetric_init`].
//! - [`mlp`]: the deep fully-connected [`Mlp`], its config and symmetric init (f ≡ 0 at any depth).
//! - [`network`]: the [`Network`] trait any Burn module implements to be trained by a schedule.
//! - [`params`]: parameter groups by module path (resolve, freeze, overwrite).
//! - [`logcosh`]: σ = log cosh in f32 on the host, scalar and SIMD (bit-identical).
//! - [`host`]: moving row-major `f64` matrices between the host and a Burn device.
#![warn(missing_docs)]

pub mod activation;
pub mod host;
pub mod logcosh;
pub mod mlp;
pub mod network;
pub mod params;
pub mod two_layer;

pub use activation::{Activation, ActivationError};
pub use host::{
    from_host_1d, from_host_2d, normalize_rows, set_norm, standard_normals, to_host, to_host_as,
    to_host_into, Precision,
};
pub use mlp::{Dense, Mlp, MlpConfig, MlpInit, Standardize};
pub use network::{Network, Readout};
pub use params::{
    param_infos, resolve_paths, set_values, train_only, values_of, ParamInfo, Reinit,
};
pub use two_layer::{ModelError, TwoLayer, TwoLayerConfig};
