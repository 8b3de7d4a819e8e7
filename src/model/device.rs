//! Where a model's forward passes run: the CPU backend, the GPU backend, or the GPU when a
//! real one is there and the model fits it.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A backend choice (`--device`, `EdgespecModelParams::device`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The quantized CPU kernels.
    #[default]
    Cpu,
    /// The GPU (Vulkan or Metal through wgpu); a software adapter such as lavapipe is accepted
    /// when it is the only one. Fails when there is none or the model does not fit.
    Gpu,
    /// A hardware GPU adapter when there is one and the model fits it, else the CPU.
    Auto,
}

impl Device {
    /// Every choice, in C id order (0 cpu, 1 gpu, 2 auto).
    pub const ALL: [Device; 3] = [Device::Cpu, Device::Gpu, Device::Auto];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
            Device::Auto => "auto",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Device {
    type Err = Error;

    fn from_str(s: &str) -> Result<Device> {
        Device::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| Error::invalid(format!("unknown device {s:?}: cpu, gpu or auto")))
    }
}
