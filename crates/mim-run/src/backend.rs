//! Backend selection at run time: one binary, `--backend flex|ndarray|wgpu`.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A compute backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (default, multi-threaded).
    #[default]
    Flex,
    /// Burn's ndarray CPU backend.
    Ndarray,
    /// GPU through wgpu (Vulkan/Metal/DX12; a software Vulkan driver works too). f32 only.
    Wgpu,
}

impl Backend {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flex" => Ok(Backend::Flex),
            "ndarray" => Ok(Backend::Ndarray),
            "wgpu" => Ok(Backend::Wgpu),
            _ => Err(format!(
                "unknown backend `{s}` (expected flex, ndarray or wgpu)"
            )),
        }
    }
}

/// Sets the size of the global thread pool used by the CPU backends (0 = all cores). Only the
/// first call in a process has an effect.
pub fn set_threads(threads: usize) {
    if threads > 0 {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
    }
}

/// Opens the backend's device with autodiff enabled. A device that cannot be opened (no GPU
/// adapter) is an error with one line saying why.
pub fn open_device(backend: Backend) -> Result<Device, String> {
    let device = match backend {
        Backend::Flex => Device::flex(),
        #[allow(deprecated)]
        Backend::Ndarray => Device::ndarray(),
        Backend::Wgpu => open_wgpu()?,
    };
    Ok(device.autodiff())
}

fn open_wgpu() -> Result<Device, String> {
    use burn::tensor::{DeviceKind, Tensor};
    // wgpu panics when no adapter exists; probe with a tiny read-back and turn that into an error.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let t = Tensor::<1>::from_floats([1.0, 2.0], &device);
        let v = mim_model::to_host(t.sum());
        (device, v)
    });
    std::panic::set_hook(hook);
    match probe {
        Ok((device, v)) if v == [3.0] => Ok(device),
        Ok((_, v)) => Err(format!(
            "backend wgpu: the device computed 1 + 2 = {v:?}; refusing to use it"
        )),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
            Err(format!(
                "backend wgpu: no usable GPU/Vulkan adapter ({}); on a machine without a GPU install the software driver (apt-get install mesa-vulkan-drivers libvulkan1) or use --backend flex",
                msg.chars().take(200).collect::<String>()
            ))
        }
    }
}
