//! What this machine has: CPU, memory, NVIDIA GPUs, VA-API devices, and which encode backends can
//! run here (and why not, when one cannot).
//!
//! Never panics and never needs the hardware: every library is opened at run time, a missing one
//! is a reason in the report. cudarc is only called after libcuda was found, and inside a guard
//! that turns a panic (a driver missing a symbol) into a reason.

use std::fmt;
use std::path::Path;

use super::profile::{self, Profile};
use super::report::*;

/// Resident memory of process `pid` (`/proc/PID/status`, VmRSS), when Linux reports it.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Probes this machine against the built-in hw-profiles.
pub fn probe() -> ProbeReport {
    probe_with(&profile::builtin())
}

/// Probes this machine against `profiles` (e.g. loaded from a custom folder).
pub fn probe_with(profiles: &[Profile]) -> ProbeReport {
    let mut report = ProbeReport {
        cpu: probe_cpu(),
        memory: probe_memory(),
        nvidia: probe_nvidia(profiles),
        vaapi: probe_vaapi(Path::new("/dev/dri"), Path::new("/sys/class/drm")),
        backends: Vec::new(),
        profile: None,
    };
    report.backends = vec![
        nvenc_status(&report.nvidia),
        vaapi_status(&report.vaapi),
        software_status(),
    ];
    report.profile = profile::select(profiles, &report.machine()).map(|p| p.name.clone());
    report
}

fn probe_cpu() -> Cpu {
    use sysinfo::{CpuRefreshKind, RefreshKind, System};
    let sys =
        System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()));
    let model = sys
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_string())
        .filter(|b| !b.is_empty());
    Cpu {
        model: model.unwrap_or_else(|| "unknown".into()),
        logical_cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(sys.cpus().len()),
        physical_cores: sys.physical_core_count(),
    }
}

fn probe_memory() -> Memory {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    let sys = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    Memory {
        total_bytes: sys.total_memory(),
        available_bytes: sys.available_memory(),
    }
}

/// Whether a shared library can be opened (and is closed again).
fn loadable(name: &str) -> bool {
    // SAFETY: opening a system library runs its initialisers; these are the vendors' driver
    // libraries, which are made to be opened by any process.
    unsafe { libloading::Library::new(name) }.is_ok()
}

fn probe_nvidia(profiles: &[Profile]) -> Nvidia {
    if !loadable("libcuda.so.1") || !crate::scale::cuda::driver_present() {
        return Nvidia {
            reason: Some("libcuda.so.1 not found (no NVIDIA driver)".into()),
            ..Nvidia::default()
        };
    }
    let mut out = Nvidia {
        driver_library: true,
        ..Nvidia::default()
    };
    let listed = crate::scale::cuda::guarded("listing CUDA devices", || {
        use cudarc::driver::{result, sys};
        let err = |e: result::DriverError| crate::scale::Error::Cuda(e.to_string());
        result::init().map_err(err)?;
        let mut version = 0;
        // SAFETY: writes one integer.
        let version = match unsafe { sys::cuDriverGetVersion(&mut version) } {
            sys::CUresult::CUDA_SUCCESS => {
                Some(format!("{}.{}", version / 1000, version % 1000 / 10))
            }
            _ => None,
        };
        let count = result::device::get_count().map_err(err)?;
        let mut devices = Vec::new();
        for index in 0..count.max(0) {
            let dev = result::device::get(index).map_err(err)?;
            let name = result::device::get_name(dev).map_err(err)?;
            let attr = |a| {
                // SAFETY: reads one attribute of a valid device handle.
                unsafe { result::device::get_attribute(dev, a) }.unwrap_or(0)
            };
            use sys::CUdevice_attribute::*;
            let cc = format!(
                "{}.{}",
                attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
            );
            // SAFETY: reads the memory size of a valid device handle.
            let memory = unsafe { result::device::total_mem(dev) }.unwrap_or(0) as u64;
            devices.push((index as usize, name, cc, memory));
        }
        Ok((version, devices))
    });
    match listed {
        Ok((version, devices)) => {
            out.driver_version = version;
            if devices.is_empty() {
                out.reason = Some("the NVIDIA driver reports no device".into());
            }
            out.devices = devices
                .into_iter()
                .map(|(index, name, compute_capability, memory_bytes)| {
                    let p = profiles.iter().find(|p| p.matches_nvidia(&name));
                    NvidiaDevice {
                        index,
                        name,
                        compute_capability,
                        memory_bytes,
                        nvenc: p.map(|p| p.engines.nvenc),
                        nvdec: p.map(|p| p.engines.nvdec),
                        encode_sessions: p.map(|p| p.sessions.encode),
                        profile: p.map(|p| p.name.clone()),
                    }
                })
                .collect();
        }
        Err(e) => out.reason = Some(e.to_string()),
    }
    out
}

fn nvenc_status(nvidia: &Nvidia) -> BackendStatus {
    let status = |usable: bool, reason: Option<String>| BackendStatus {
        name: "nvenc".into(),
        usable,
        reason,
    };
    if nvidia.devices.is_empty() {
        return status(
            false,
            nvidia
                .reason
                .clone()
                .or_else(|| Some("no NVIDIA device".into())),
        );
    }
    if !loadable("libnvidia-encode.so.1") {
        return status(
            false,
            Some("libnvidia-encode.so.1 not found (driver installed without NVENC)".into()),
        );
    }
    if nvidia
        .devices
        .iter()
        .any(|d| d.nvenc.is_some_and(|n| n > 0))
    {
        return status(true, None);
    }
    if let Some(d) = nvidia.devices.iter().find(|d| d.nvenc.is_none()) {
        return status(
            true,
            Some(format!(
                "no hw-profile for {}: NVENC assumed present",
                d.name
            )),
        );
    }
    let names: Vec<_> = nvidia.devices.iter().map(|d| d.name.as_str()).collect();
    status(
        false,
        Some(format!(
            "no NVENC engine on {} (decode and scale only)",
            names.join(", ")
        )),
    )
}

/// VA-API render nodes under `dev` (normally /dev/dri), described from `sys` (/sys/class/drm).
fn probe_vaapi(dev: &Path, sys: &Path) -> Vaapi {
    let library = loadable("libva.so.2");
    let mut nodes: Vec<String> = std::fs::read_dir(dev)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.starts_with("renderD"))
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let devices: Vec<VaapiDevice> = nodes
        .iter()
        .map(|n| {
            let node = dev.join(n).display().to_string();
            let pci = sys.join(n).join("device");
            let mut d = VaapiDevice {
                node: node.clone(),
                pci_vendor: read(pci.join("vendor")),
                pci_device: read(pci.join("device")),
                kernel_driver: std::fs::read_link(pci.join("driver"))
                    .ok()
                    .and_then(|l| l.file_name().and_then(|f| f.to_str()).map(str::to_string)),
                ..VaapiDevice::default()
            };
            if library {
                if let Some(text) = run_vainfo(&node) {
                    let (driver, profiles) = parse_vainfo(&text);
                    d.va_driver = driver;
                    d.encode_profiles = Some(profiles);
                }
            }
            d
        })
        .collect();
    let reason = if devices.is_empty() {
        Some(format!("no {}/renderD* render node", dev.display()))
    } else if !library {
        Some("libva.so.2 not found (install libva2 and a VA driver)".into())
    } else {
        None
    };
    Vaapi {
        library,
        devices,
        reason,
    }
}

/// vainfo's output for one node, if vainfo is installed and succeeds.
fn run_vainfo(node: &str) -> Option<String> {
    let out = std::process::Command::new("vainfo")
        .args(["--display", "drm", "--device", node])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The VA driver name and the profiles with an encode entrypoint, from vainfo's output.
fn parse_vainfo(text: &str) -> (Option<String>, Vec<String>) {
    let driver = text
        .lines()
        .find_map(|l| l.split_once("Driver version:"))
        .map(|(_, v)| {
            let v = v.trim();
            ["iHD", "i965", "radeonsi", "nouveau"]
                .iter()
                .find(|k| v.contains(*k))
                .map_or_else(|| v.to_string(), |k| k.to_string())
        });
    let mut profiles: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(_, entry)| entry.trim().starts_with("VAEntrypointEncSlice"))
        .map(|(p, _)| p.trim().to_string())
        .collect();
    profiles.dedup();
    (driver, profiles)
}

fn vaapi_status(vaapi: &Vaapi) -> BackendStatus {
    let status = |usable: bool, reason: Option<String>| BackendStatus {
        name: "vaapi".into(),
        usable,
        reason,
    };
    if let Some(reason) = &vaapi.reason {
        return status(false, Some(reason.clone()));
    }
    let encodes = |d: &VaapiDevice| {
        d.encode_profiles.as_ref().is_some_and(|p| {
            p.iter()
                .any(|p| p.starts_with("VAProfileH264") || p.starts_with("VAProfileHEVC"))
        })
    };
    if vaapi.devices.iter().any(encodes) {
        return status(true, None);
    }
    if vaapi.devices.iter().all(|d| d.encode_profiles.is_some()) {
        return status(
            false,
            Some("the VA driver offers no H.264 or HEVC encode entrypoint".into()),
        );
    }
    status(
        true,
        Some("encode profiles unknown (vainfo not installed); assumed usable".into()),
    )
}

fn software_status() -> BackendStatus {
    let found = ffmpeg_next::encoder::find_by_name("libx264").is_some();
    BackendStatus {
        name: "software".into(),
        usable: found,
        reason: (!found).then(|| "FFmpeg was built without libx264".to_string()),
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let cores = match self.cpu.physical_cores {
            Some(p) => format!("{} threads, {p} cores", self.cpu.logical_cores),
            None => format!("{} threads", self.cpu.logical_cores),
        };
        writeln!(f, "CPU:     {} ({cores})", self.cpu.model)?;
        writeln!(
            f,
            "Memory:  {:.1} GiB ({:.1} GiB available)",
            gib(self.memory.total_bytes),
            gib(self.memory.available_bytes)
        )?;
        match (&self.nvidia.driver_version, self.nvidia.devices.is_empty()) {
            (_, true) => writeln!(
                f,
                "NVIDIA:  none ({})",
                self.nvidia.reason.as_deref().unwrap_or("no device")
            )?,
            (v, false) => writeln!(f, "NVIDIA:  driver (CUDA {})", v.as_deref().unwrap_or("?"))?,
        }
        for d in &self.nvidia.devices {
            let n = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
            writeln!(
                f,
                "  [{}] {} (compute {}, {:.0} GiB): NVENC {}, NVDEC {}, encode sessions {}",
                d.index,
                d.name,
                d.compute_capability,
                gib(d.memory_bytes),
                n(d.nvenc),
                n(d.nvdec),
                d.encode_sessions.map_or("?".to_string(), |s| s.to_string())
            )?;
        }
        if self.vaapi.devices.is_empty() {
            writeln!(
                f,
                "VA-API:  none ({})",
                self.vaapi.reason.as_deref().unwrap_or("no device")
            )?;
        } else {
            writeln!(
                f,
                "VA-API:  libva.so.2 {}",
                if self.vaapi.library {
                    "found"
                } else {
                    "not found"
                }
            )?;
        }
        for d in &self.vaapi.devices {
            let q = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
            let enc = d
                .encode_profiles
                .as_ref()
                .map_or("unknown".to_string(), |p| p.join(" "));
            writeln!(
                f,
                "  {} (PCI {}:{}, {} / VA {}): encode {enc}",
                d.node,
                q(&d.pci_vendor),
                q(&d.pci_device),
                q(&d.kernel_driver),
                q(&d.va_driver)
            )?;
        }
        writeln!(f, "Backends:")?;
        for b in &self.backends {
            let state = if b.usable { "usable" } else { "not usable" };
            match &b.reason {
                Some(r) => writeln!(f, "  {:<9} {state}: {r}", b.name)?,
                None => writeln!(f, "  {:<9} {state}", b.name)?,
            }
        }
        write!(f, "Profile: {}", self.profile.as_deref().unwrap_or("none"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vainfo() {
        let text = "libva info: VA-API version 1.17.0\n\
            vainfo: Driver version: Intel iHD driver for Intel(R) Gen Graphics - 23.1.1 ()\n\
            vainfo: Supported profile and entrypoints\n\
                  VAProfileH264Main               :\tVAEntrypointVLD\n\
                  VAProfileH264Main               :\tVAEntrypointEncSlice\n\
                  VAProfileH264Main               :\tVAEntrypointEncSliceLP\n\
                  VAProfileHEVCMain               :\tVAEntrypointEncSliceLP\n\
                  VAProfileVP9Profile0            :\tVAEntrypointVLD\n";
        let (driver, profiles) = parse_vainfo(text);
        assert_eq!(driver.as_deref(), Some("iHD"));
        assert_eq!(profiles, ["VAProfileH264Main", "VAProfileHEVCMain"]);
    }

    #[test]
    fn fake_render_node_is_described_from_sysfs() {
        let root = tempfile::tempdir().unwrap();
        let (dev, sys) = (root.path().join("dri"), root.path().join("drm"));
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("renderD128"), "").unwrap();
        std::fs::write(dev.join("card0"), "").unwrap();
        std::fs::create_dir_all(sys.join("renderD128/device")).unwrap();
        std::fs::write(sys.join("renderD128/device/vendor"), "0x8086\n").unwrap();
        std::fs::write(sys.join("renderD128/device/device"), "0x56a5\n").unwrap();
        let v = probe_vaapi(&dev, &sys);
        assert_eq!(v.devices.len(), 1);
        assert_eq!(v.devices[0].pci_vendor.as_deref(), Some("0x8086"));
        let mut report = probe_with(&[]);
        report.nvidia = Nvidia::default();
        report.vaapi = v;
        let profiles = profile::builtin();
        assert_eq!(
            profile::select(&profiles, &report.machine()).map(|p| p.name.as_str()),
            Some("intel-arc-a380")
        );
    }
}
