//! What a probe of the machine found (`encore probe --json` prints it as is).

use serde::Serialize;

use super::profile::{self, SessionCap};

/// Everything [`super::probe`] found.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub cpu: Cpu,
    pub memory: Memory,
    pub nvidia: Nvidia,
    pub vaapi: Vaapi,
    /// nvenc, vaapi, software: in the order `Auto` tries them.
    pub backends: Vec<BackendStatus>,
    /// The hw-profile that matches this machine.
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub model: String,
    pub logical_cores: usize,
    pub physical_cores: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Nvidia {
    /// libcuda.so.1 could be opened.
    pub driver_library: bool,
    /// e.g. "12.8" (the CUDA version the driver supports).
    pub driver_version: Option<String>,
    pub devices: Vec<NvidiaDevice>,
    /// Why there are no devices, when there are none.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NvidiaDevice {
    pub index: usize,
    pub name: String,
    /// "major.minor", e.g. "8.9".
    pub compute_capability: String,
    pub memory_bytes: u64,
    /// Engines and session cap from the matching hw-profile; `None` when no profile knows the device.
    pub nvenc: Option<u32>,
    pub nvdec: Option<u32>,
    pub encode_sessions: Option<SessionCap>,
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Vaapi {
    /// libva.so.2 could be opened.
    pub library: bool,
    pub devices: Vec<VaapiDevice>,
    /// Why there are no usable devices, when there are none.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VaapiDevice {
    /// e.g. "/dev/dri/renderD128".
    pub node: String,
    /// From sysfs, e.g. "0x8086".
    pub pci_vendor: Option<String>,
    pub pci_device: Option<String>,
    /// Kernel driver, e.g. "i915", "xe", "amdgpu".
    pub kernel_driver: Option<String>,
    /// VA driver as vainfo reports it, e.g. "iHD".
    pub va_driver: Option<String>,
    /// VA profiles with an encode entrypoint (vainfo); `None` when unknown (vainfo not installed).
    pub encode_profiles: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendStatus {
    pub name: String,
    pub usable: bool,
    /// Why not, when not usable; a caveat otherwise.
    pub reason: Option<String>,
}

impl ProbeReport {
    /// The devices found, as hw-profiles match them.
    pub fn machine(&self) -> profile::Machine {
        profile::Machine {
            nvidia: self.nvidia.devices.iter().map(|d| d.name.clone()).collect(),
            pci: self
                .vaapi
                .devices
                .iter()
                .map(|d| profile::PciId {
                    pci_vendor: d.pci_vendor.clone(),
                    pci_device: d.pci_device.clone(),
                })
                .collect(),
        }
    }

    /// The status of one backend by name.
    pub fn backend(&self, name: &str) -> Option<&BackendStatus> {
        self.backends.iter().find(|b| b.name == name)
    }
}
