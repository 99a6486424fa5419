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

/// Runs `work` with `threads` CPU threads (0 = rayon's global pool, one thread per core): in a
/// pool of its own, so that everything parallel inside it (the backends, faer, the fused
/// kernel, the host passes) sees that thread count, whatever ran in the process before (rayon's
/// global pool keeps the size of its first use). Results are bit-for-bit repeatable per thread
/// count, so this is what makes `threads = N` hold. A pool that cannot be started is an error
/// naming `threads`.
pub fn with_threads<R: Send>(threads: usize, work: impl FnOnce() -> R + Send) -> Result<R, String> {
    if threads == 0 {
        return Ok(work());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| format!("threads = {threads}: cannot start the thread pool ({e})"))?;
    Ok(pool.install(work))
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

#[cfg(test)]
mod tests {
    use super::with_threads;
    use rayon::prelude::*;

    /// The thread count holds inside the work even after the global pool was started at
    /// another size (the first parallel call of a process sizes it for good).
    #[test]
    fn with_threads_holds_after_the_global_pool_started() {
        let _ = (0..64).into_par_iter().sum::<usize>();
        let global = rayon::current_num_threads();
        for t in [1, 3] {
            let seen = with_threads(t, || {
                let inner = (0..4)
                    .into_par_iter()
                    .map(|_| rayon::current_num_threads())
                    .max();
                (rayon::current_num_threads(), inner)
            })
            .unwrap();
            assert_eq!(seen, (t, Some(t)), "global pool has {global}");
        }
        assert_eq!(with_threads(0, rayon::current_num_threads).unwrap(), global);
    }
}
