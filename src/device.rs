//! Choosing the Burn backend a network runs on.
//!
//! `cpu` is Burn's `flex` backend (the fast pure-Rust CPU backend), `ndarray` the older
//! CPU backend, `wgpu`/`vulkan` the GPU backends compiled in with the cargo features of
//! the same name. Training wraps the chosen device with `.autodiff()`.

use crate::error::{Error, Result};
use burn::tensor::Device;
use std::str::FromStr;

/// A backend the user can select with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// Burn's `flex` CPU backend (default).
    #[default]
    Cpu,
    /// Burn's `ndarray` CPU backend.
    Ndarray,
    /// The GPU through wgpu (Vulkan, Metal or DX12, chosen at run time); needs `--features wgpu`.
    Wgpu,
    /// The GPU through wgpu pinned to Vulkan (SPIR-V); needs `--features vulkan`.
    Vulkan,
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" | "flex" => Ok(DeviceChoice::Cpu),
            "ndarray" => Ok(DeviceChoice::Ndarray),
            "wgpu" | "gpu" => Ok(DeviceChoice::Wgpu),
            "vulkan" => Ok(DeviceChoice::Vulkan),
            other => Err(Error::invalid(format!("unknown device '{other}' (cpu, ndarray, wgpu, vulkan)"))),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Ndarray => "ndarray",
            DeviceChoice::Wgpu => "wgpu",
            DeviceChoice::Vulkan => "vulkan",
        })
    }
}

impl DeviceChoice {
    /// Whether the backend runs on the CPU (its memory is the machine's memory).
    pub fn is_cpu(self) -> bool {
        matches!(self, DeviceChoice::Cpu | DeviceChoice::Ndarray)
    }

    /// The Burn device, or an error when its backend was not compiled in.
    #[allow(deprecated)] // Burn marks ndarray deprecated; it stays selectable on purpose.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::flex()),
            DeviceChoice::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "vulkan")]
            DeviceChoice::Vulkan => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
            #[allow(unreachable_patterns)]
            other => Err(Error::invalid(format!(
                "device '{other}' is not compiled in: rebuild with `cargo build --release --features {other}`"
            ))),
        }
    }
}

/// One device of a `--devices` list: a backend and which of its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The backend.
    pub backend: DeviceChoice,
    /// Which device of a GPU backend (ignored by the CPU backends).
    pub kind: burn::tensor::DeviceKind,
}

impl FromStr for DeviceSpec {
    type Err = Error;
    /// `cpu`, `ndarray`, or `wgpu`/`vulkan` followed by `:N` (the N-th discrete GPU),
    /// `:integrated:N`, `:default` or `:cpu` (the adapter's CPU device).
    fn from_str(s: &str) -> Result<Self> {
        use burn::tensor::DeviceKind;
        let mut parts = s.splitn(2, ':');
        let backend: DeviceChoice = parts.next().unwrap_or_default().parse()?;
        let bad = || Error::invalid(format!("device '{s}': expected wgpu:N, wgpu:integrated:N, wgpu:default or wgpu:cpu (or the same with vulkan)"));
        let kind = match parts.next() {
            None | Some("default") => DeviceKind::DefaultDevice,
            Some("cpu") => DeviceKind::Cpu,
            Some(rest) => match rest.strip_prefix("integrated:") {
                Some(n) => DeviceKind::IntegratedGpu(n.parse().map_err(|_| bad())?),
                None => DeviceKind::DiscreteGpu(rest.parse().map_err(|_| bad())?),
            },
        };
        Ok(DeviceSpec { backend, kind })
    }
}

impl DeviceSpec {
    /// The Burn device, or an error when its backend was not compiled in.
    pub fn device(&self) -> Result<Device> {
        match self.backend {
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu => Ok(Device::wgpu(self.kind.clone())),
            #[cfg(feature = "vulkan")]
            DeviceChoice::Vulkan => Ok(Device::vulkan(self.kind.clone())),
            other => other.device(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tensor};

    #[test]
    fn cpu_backends_agree_on_a_conv3d() {
        let flex = DeviceChoice::Cpu.device().unwrap();
        let nd = DeviceChoice::Ndarray.device().unwrap();
        let x: Tensor<5> = Tensor::random([1, 2, 6, 5, 4], Distribution::Normal(0.0, 1.0), &flex);
        let w: Tensor<5> = Tensor::random([3, 2, 3, 3, 3], Distribution::Normal(0.0, 1.0), &flex);
        let opts = burn::tensor::ops::ConvOptions::new([1, 1, 1], [1, 1, 1], [1, 1, 1], 1);
        let a = burn::tensor::module::conv3d(x.clone(), w.clone(), None, opts.clone());
        let b = burn::tensor::module::conv3d(x.to_device(&nd), w.to_device(&nd), None, opts);
        let a: Vec<f32> = a.into_data().try_to_vec::<f32>().unwrap();
        let b: Vec<f32> = b.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a.len(), 3 * 6 * 5 * 4);
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-4, "{p} vs {q}");
        }
    }

    #[test]
    fn parses_device_lists() {
        use burn::tensor::DeviceKind;
        let spec = |s: &str| s.parse::<DeviceSpec>().unwrap();
        assert_eq!(spec("wgpu:1"), DeviceSpec { backend: DeviceChoice::Wgpu, kind: DeviceKind::DiscreteGpu(1) });
        assert_eq!(spec("vulkan:integrated:0").kind, DeviceKind::IntegratedGpu(0));
        assert_eq!(spec("wgpu:cpu").kind, DeviceKind::Cpu);
        assert_eq!(spec("wgpu").kind, DeviceKind::DefaultDevice);
        assert!("wgpu:x".parse::<DeviceSpec>().is_err());
        assert!("tpu:0".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn parses_names() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("ndarray".parse::<DeviceChoice>().unwrap(), DeviceChoice::Ndarray);
        assert!("tpu".parse::<DeviceChoice>().is_err());
    }
}
