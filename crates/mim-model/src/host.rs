//! Host ↔ device transfers. All random draws in mim happen on the host from the config's seed,
//! so every backend sees bit-identical inputs; these helpers upload them in the run's precision.

use burn::tensor::{DType, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Floating-point precision of the tensors of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (the default; the only one on wgpu).
    #[default]
    F32,
    /// 64-bit floats (CPU backends only).
    F64,
}

impl Precision {
    /// The Burn dtype.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }
    /// The config name (`f32`, `f64`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
}

/// Whether `device` is a CPU backend's (flex, ndarray: its tensors live in host memory, so a
/// host pass over them costs a copy, not a transfer), with or without autodiff.
#[allow(deprecated)] // Device::ndarray: still a backend of mim
pub fn is_host_device(device: &Device) -> bool {
    *device == Device::flex() || *device == Device::ndarray()
}

fn data(values: &[f64], shape: Vec<usize>, precision: Precision) -> TensorData {
    match precision {
        Precision::F32 => {
            TensorData::new(values.iter().map(|&v| v as f32).collect::<Vec<_>>(), shape)
        }
        Precision::F64 => TensorData::new(values.to_vec(), shape),
    }
}

/// Uploads a row-major `rows×cols` matrix. `values.len()` must be `rows·cols`.
pub fn from_host_2d(
    values: &[f64],
    rows: usize,
    cols: usize,
    device: &Device,
    precision: Precision,
) -> Tensor<2> {
    assert_eq!(
        values.len(),
        rows * cols,
        "from_host_2d: length ≠ rows·cols"
    );
    Tensor::from_data(
        data(values, vec![rows, cols], precision),
        (device, precision.dtype()),
    )
}

/// Uploads a vector.
pub fn from_host_1d(values: &[f64], device: &Device, precision: Precision) -> Tensor<1> {
    Tensor::from_data(
        data(values, vec![values.len()], precision),
        (device, precision.dtype()),
    )
}

/// Downloads any float tensor as row-major `f64` values.
pub fn to_host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    download(t)
}

/// Downloads any float tensor as row-major values of element type `T` (`f32` or `f64`),
/// leaving the tensor in place (the host kernels' copy of x, y and the parameters).
pub fn to_host_as<T: burn::tensor::Element, const D: usize>(t: &Tensor<D>) -> Vec<T> {
    download(t.clone())
}

/// Downloads any float tensor as row-major `f64` values into `out`, reusing its allocation
/// (an observer that reads W after every step: no fresh 8 MB buffer, and no page faults, per
/// step at m = d = 1000).
pub fn to_host_into<const D: usize>(t: &Tensor<D>, out: &mut Vec<f64>) {
    let data = t.clone().into_data();
    out.clear();
    if !widen_into(&data, out) {
        out.extend(
            data.try_into_vec_as::<f64>()
                .expect("a float tensor converts to f64"),
        );
    }
}

/// Appends f32 or f64 `data` to `out` converted to `T` in one typed pass (Burn's generic
/// conversion costs ≈ 5 ns an element); false for other dtypes.
fn widen_into<T: burn::tensor::Element>(data: &TensorData, out: &mut Vec<T>) -> bool {
    use burn::tensor::ElementConversion;
    match data.dtype() {
        DType::F32 => data
            .as_slice::<f32>()
            .map(|s| out.extend(s.iter().map(|&v| v.elem::<T>())))
            .is_ok(),
        DType::F64 => data
            .as_slice::<f64>()
            .map(|s| out.extend(s.iter().map(|&v| v.elem::<T>())))
            .is_ok(),
        _ => false,
    }
}

/// The one device → host copy behind [`to_host`] and [`to_host_as`]: the bytes themselves
/// when the dtype is already `T`, else one typed pass ([`widen_into`]) where it can.
fn download<T: burn::tensor::Element, const D: usize>(t: Tensor<D>) -> Vec<T> {
    let data = t.into_data();
    let mut out = Vec::new();
    if data.dtype() != T::dtype() && widen_into(&data, &mut out) {
        return out;
    }
    data.try_into_vec_as::<T>()
        .expect("a float tensor converts to any float element type")
}

/// Rows of a matrix tensor rescaled to norm `norm`: w_j ← norm · w_j/‖w_j‖ (a zero row stays
/// zero). The one row normaliser of the device tensors (stage-1 projection, power iterates).
pub fn normalize_rows(w: Tensor<2>, norm: f64) -> Tensor<2> {
    let norms = w.clone().square().sum_dim(1).sqrt().clamp_min(1e-300);
    (w / norms).mul_scalar(norm)
}

/// Rescales `row` in place to Euclidean norm `scale` (a zero row stays zero).
pub fn set_norm(row: &mut [f64], scale: f64) {
    let norm = row
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    row.iter_mut().for_each(|v| *v *= scale / norm);
}

/// `n` independent N(0, 1) draws from a ChaCha8 stream seeded with `seed`.
pub fn standard_normals(n: usize, seed: u64) -> Vec<f64> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| rand_distr::StandardNormal.sample(&mut rng))
        .collect()
}
