//! hw-profiles: one TOML file per hardware kind (`hw-profiles/*.toml`), describing its engines,
//! session caps, capacity for the scheduler, preset names and expected ladder density.
//!
//! Profiles are data: every file in `hw-profiles/` is embedded in the binary ([`builtin`]) and
//! parsed by a test, so a typo fails CI instead of a deployment. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::media::VideoCodec;

/// The preset names Encore accepts, fastest first; every profile maps each of them.
pub const PRESETS: [&str; 7] = [
    "fastest", "faster", "fast", "medium", "slow", "slower", "slowest",
];

/// A problem with a profile file, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read hw-profiles from {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("hw-profile {path}: {message}")]
    Invalid { path: String, message: String },
}

/// Which encode backend a profile's machines use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Nvenc,
    Vaapi,
    Software,
}

/// One hardware kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The file's stem, e.g. `nvidia-l4`.
    pub name: String,
    pub description: String,
    pub backend: Backend,
    #[serde(rename = "match")]
    pub matcher: Match,
    #[serde(default)]
    pub engines: Engines,
    #[serde(default)]
    pub sessions: Sessions,
    pub capacity: Capacity,
    /// Encore preset name → the backend's own preset (NVENC `p1`..`p7`, x264 names, VA-API levels).
    pub presets: BTreeMap<String, String>,
    pub density: Density,
}

/// How a machine is recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// NVIDIA device names as the driver reports them. A name matches when it equals an entry or
    /// continues it after a space ("NVIDIA H100" matches "NVIDIA H100 80GB HBM3", "NVIDIA L4" does
    /// not match "NVIDIA L40S").
    #[serde(default)]
    pub nvidia: Vec<String>,
    /// PCI vendor of a VA-API render node's GPU, e.g. "0x8086".
    #[serde(default)]
    pub pci_vendor: Option<String>,
    /// PCI device ids; empty matches any device of the vendor.
    #[serde(default)]
    pub pci_devices: Vec<String>,
    /// Matches any machine; used only when no other profile matches.
    #[serde(default)]
    pub fallback: bool,
}

/// Video engines per device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Engines {
    #[serde(default)]
    pub nvenc: u32,
    #[serde(default)]
    pub nvdec: u32,
    #[serde(default)]
    pub vaapi: Option<VaapiEngine>,
}

/// What a VA-API profile expects of the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaapiEngine {
    /// The VA driver name (`LIBVA_DRIVER_NAME`): iHD, radeonsi.
    pub driver: String,
    /// Codecs Encore encodes on it.
    pub encode: Vec<VideoCodec>,
}

/// Concurrent encode sessions the driver allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sessions {
    #[serde(default)]
    pub encode: SessionCap,
    /// What the cap counts over.
    #[serde(default)]
    pub scope: Scope,
}

/// A session cap: a number, or "unlimited" in files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionCap {
    Limit(u32),
    #[default]
    Unlimited,
}

impl Serialize for SessionCap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SessionCap::Limit(n) => s.serialize_u32(*n),
            SessionCap::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for SessionCap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(SessionCap::Limit(n)),
            Raw::Word(w) if w == "unlimited" => Ok(SessionCap::Unlimited),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "expected a number or \"unlimited\", found {w:?}"
            ))),
        }
    }
}

impl std::fmt::Display for SessionCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionCap::Limit(n) => write!(f, "{n}"),
            SessionCap::Unlimited => f.write_str("unlimited"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Device,
    System,
}

/// What the scheduler hands out: one unit is one reference ladder (see [`Density::ladder`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    pub units: f64,
    /// Units per device, per CPU core, or for the whole system.
    pub per: Per,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    Device,
    Core,
    System,
}

/// Ladder density: how many reference ladders run in real time, expected and measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Density {
    /// The reference ladder, e.g. "1080p30 -> 1080/720/480/360, H.264, preset fast (NVENC P3)".
    pub ladder: String,
    /// Expected (from published figures or goals), in [`Capacity::per`] units.
    #[serde(default)]
    pub expected: Option<f64>,
    /// What the engines alone could carry, from their rated fps, ignoring other limits.
    #[serde(default)]
    pub engine_ceiling: Option<f64>,
    /// Measured by Encore's benchmark on this hardware; absent until someone has.
    #[serde(default)]
    pub measured: Option<f64>,
    /// Live channels of the reference ladder that held real time on the machine measured
    /// (`encore bench --live`), with its cores.
    #[serde(default)]
    pub live_channels: Option<u32>,
    /// The command and machine that measured `measured` and `live_channels`.
    #[serde(default)]
    pub measured_by: Option<String>,
    /// Where `expected` comes from.
    pub source: String,
}

impl Profile {
    /// Parses one profile; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Profile, Error> {
        let invalid = |message: String| Error::Invalid {
            path: path.to_string(),
            message,
        };
        let profile: Profile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        profile.check().map_err(invalid)?;
        Ok(profile)
    }

    /// Rules serde cannot express.
    fn check(&self) -> Result<(), String> {
        for preset in PRESETS {
            if !self.presets.contains_key(preset) {
                return Err(format!("preset {preset:?} is not mapped"));
            }
        }
        if let Some(extra) = self.presets.keys().find(|k| !PRESETS.contains(&k.as_str())) {
            return Err(format!(
                "unknown preset {extra:?} (Encore's presets: {})",
                PRESETS.join(", ")
            ));
        }
        if self.capacity.units.is_nan() || self.capacity.units <= 0.0 {
            return Err("capacity.units must be above zero".into());
        }
        if self.backend == Backend::Nvenc && self.engines.nvenc == 0 {
            return Err("backend nvenc needs engines.nvenc > 0".into());
        }
        if self.backend == Backend::Vaapi && self.engines.vaapi.is_none() {
            return Err("backend vaapi needs [engines.vaapi]".into());
        }
        let matchers = usize::from(!self.matcher.nvidia.is_empty())
            + usize::from(self.matcher.pci_vendor.is_some())
            + usize::from(self.matcher.fallback);
        if matchers != 1 {
            return Err("[match] needs exactly one of nvidia, pci_vendor, fallback".into());
        }
        Ok(())
    }

    /// Whether this machine is of this kind (a fallback profile matches every machine).
    pub fn matches(&self, machine: &Machine) -> bool {
        let m = &self.matcher;
        if m.fallback {
            return true;
        }
        if machine.nvidia.iter().any(|name| self.matches_nvidia(name)) {
            return true;
        }
        let Some(vendor) = &m.pci_vendor else {
            return false;
        };
        machine.pci.iter().any(|d| {
            d.pci_vendor
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case(vendor))
                && (m.pci_devices.is_empty()
                    || d.pci_device
                        .as_deref()
                        .is_some_and(|id| m.pci_devices.iter().any(|p| p.eq_ignore_ascii_case(id))))
        })
    }

    /// Whether an NVIDIA device name is of this kind.
    pub fn matches_nvidia(&self, device_name: &str) -> bool {
        self.matcher.nvidia.iter().any(|p| {
            device_name == p
                || device_name
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.starts_with(' '))
        })
    }
}

/// Loads every `*.toml` in `dir`, sorted by name; any bad file is an error naming it.
pub fn load_all(dir: &Path) -> Result<Vec<Profile>, Error> {
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })?;
            let profile = Profile::parse(&text, &p.display().to_string())?;
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if profile.name != stem {
                return Err(Error::Invalid {
                    path: p.display().to_string(),
                    message: format!("name {:?} differs from the file name", profile.name),
                });
            }
            Ok(profile)
        })
        .collect()
}

/// The profiles shipped in `hw-profiles/`, embedded at build time.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "amd-vaapi",
        include_str!("../../hw-profiles/amd-vaapi.toml"),
    ),
    (
        "cpu-generic",
        include_str!("../../hw-profiles/cpu-generic.toml"),
    ),
    (
        "intel-arc-a380",
        include_str!("../../hw-profiles/intel-arc-a380.toml"),
    ),
    (
        "nvidia-a10",
        include_str!("../../hw-profiles/nvidia-a10.toml"),
    ),
    (
        "nvidia-h100",
        include_str!("../../hw-profiles/nvidia-h100.toml"),
    ),
    (
        "nvidia-l4",
        include_str!("../../hw-profiles/nvidia-l4.toml"),
    ),
    (
        "nvidia-l40s",
        include_str!("../../hw-profiles/nvidia-l40s.toml"),
    ),
    (
        "nvidia-rtx4090",
        include_str!("../../hw-profiles/nvidia-rtx4090.toml"),
    ),
    (
        "nvidia-t4",
        include_str!("../../hw-profiles/nvidia-t4.toml"),
    ),
];

/// The embedded profiles, parsed (a test proves they all parse).
pub fn builtin() -> Vec<Profile> {
    BUILTIN
        .iter()
        .filter_map(|(name, text)| Profile::parse(text, name).ok())
        .collect()
}

/// What a profile is matched against: the devices a probe found, by name and PCI id.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// NVIDIA device names, e.g. "NVIDIA L4".
    pub nvidia: Vec<String>,
    /// VA-API render nodes' PCI ids.
    pub pci: Vec<PciId>,
}

#[derive(Debug, Clone, Default)]
pub struct PciId {
    /// e.g. "0x8086".
    pub pci_vendor: Option<String>,
    pub pci_device: Option<String>,
}

/// The profile for this machine: an NVIDIA profile that matches, else a VA-API one, else the fallback.
pub fn select<'a>(profiles: &'a [Profile], machine: &Machine) -> Option<&'a Profile> {
    let find = |kind: fn(&Match) -> bool| {
        profiles
            .iter()
            .find(|p| kind(&p.matcher) && p.matches(machine))
    };
    find(|m| !m.nvidia.is_empty())
        .or_else(|| find(|m| m.pci_vendor.is_some()))
        .or_else(|| find(|m| m.fallback))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("hw-profiles")
    }

    #[test]
    fn every_file_in_hw_profiles_loads_and_is_embedded() {
        let profiles = load_all(&dir()).unwrap();
        assert!(profiles.len() >= 9, "{} profiles", profiles.len());
        let names: Vec<_> = profiles.iter().map(|p| p.name.as_str()).collect();
        let embedded: Vec<_> = BUILTIN.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, embedded, "hw-profiles/ and profile::BUILTIN differ");
        assert_eq!(builtin(), profiles);
        assert_eq!(
            profiles.iter().filter(|p| p.matcher.fallback).count(),
            1,
            "exactly one fallback profile"
        );
    }

    #[test]
    fn figures_follow_the_performance_notes() {
        let all = builtin();
        let get = |n: &str| all.iter().find(|p| p.name == n).unwrap();
        for (name, nvenc, nvdec) in [
            ("nvidia-t4", 1, 2),
            ("nvidia-a10", 1, 2),
            ("nvidia-l4", 2, 4),
            ("nvidia-l40s", 3, 3),
            ("nvidia-rtx4090", 2, 1),
            ("nvidia-h100", 0, 7),
        ] {
            assert_eq!(
                (get(name).engines.nvenc, get(name).engines.nvdec),
                (nvenc, nvdec),
                "{name}"
            );
        }
        assert_eq!(get("nvidia-rtx4090").sessions.encode, SessionCap::Limit(8));
        assert_eq!(get("nvidia-rtx4090").sessions.scope, Scope::System);
        assert_eq!(get("nvidia-l4").sessions.encode, SessionCap::Unlimited);
        assert_eq!(get("nvidia-l4").presets["fast"], "p3");
        assert_eq!(get("nvidia-h100").backend, Backend::Software);
        // The CPU profile's live density was measured, and says how.
        let cpu = &get("cpu-generic").density;
        assert!(cpu.measured.is_some() && cpu.live_channels.is_some());
        assert!(cpu
            .measured_by
            .as_deref()
            .is_some_and(|m| m.contains("encore bench --live")));
        for (name, goal) in [
            ("nvidia-l4", 19.0),
            ("nvidia-l40s", 30.0),
            ("nvidia-t4", 9.0),
            ("nvidia-a10", 9.0),
        ] {
            assert!(get(name).density.expected.unwrap() >= goal, "{name}");
            assert!(
                get(name).density.measured.is_none(),
                "{name}: nothing measured yet"
            );
        }
    }

    #[test]
    fn nvidia_names_match_on_word_boundaries() {
        let all = builtin();
        let get = |n: &str| all.iter().find(|p| p.name == n).unwrap();
        assert!(get("nvidia-l4").matches_nvidia("NVIDIA L4"));
        assert!(!get("nvidia-l4").matches_nvidia("NVIDIA L40S"));
        assert!(get("nvidia-l40s").matches_nvidia("NVIDIA L40S"));
        assert!(get("nvidia-h100").matches_nvidia("NVIDIA H100 80GB HBM3"));
        assert!(get("nvidia-a10").matches_nvidia("NVIDIA A10"));
        assert!(!get("nvidia-a10").matches_nvidia("NVIDIA A100-SXM4-80GB"));
        assert!(get("nvidia-t4").matches_nvidia("Tesla T4"));
    }

    #[test]
    fn bad_files_are_refused_with_their_name() {
        let good = BUILTIN.iter().find(|(n, _)| *n == "nvidia-l4").unwrap().1;
        let typo = good.replace("nvdec = 4", "nvdek = 4");
        let err = Profile::parse(&typo, "typo.toml").unwrap_err().to_string();
        assert!(err.contains("typo.toml") && err.contains("nvdek"), "{err}");
        let missing = good.replace("slowest = \"p7\"", "");
        assert!(Profile::parse(&missing, "m.toml")
            .unwrap_err()
            .to_string()
            .contains("slowest"));
        let cap = good.replace("encode = \"unlimited\"", "encode = \"lots\"");
        assert!(Profile::parse(&cap, "c.toml").is_err());
    }
}
