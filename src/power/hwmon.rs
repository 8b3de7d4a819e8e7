//! Linux hwmon power and energy sensors (`/sys/class/hwmon/hwmonN`), found by their driver `name`
//! (the `hwmonN` numbers change across boots).
//!
//! The hwmon ABI gives `energyK_input` (µJ, cumulative), `powerK_input` or `powerK_average` (µW),
//! and on current-sense chips without a power register `inK_input` (mV) and `currK_input` (mA) for
//! the same channel K, multiplied here. That last form is how a Jetson's INA3221 reports its rails
//! (`in1_label` = `VDD_IN`, the board's whole input, then `VDD_CPU_GPU_CV`, `VDD_SOC`…). The scope
//! comes from the driver: INA current monitors measure board rails (`VDD_IN` is the board input),
//! GPU drivers their GPU, `amd_energy`/`zenergy` the sockets and cores; any other driver's sensors
//! are of unknown scope, kept only when `--power hwmon` asks for them explicitly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::sysfs::{read_i64, read_trimmed, read_u64, sorted_entries};
use super::{Domain, DomainKind, PowerMeter, Provenance, Reading, Scope};
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
enum Source {
    /// `energyK_input`, µJ.
    Energy(PathBuf),
    /// `powerK_input` or `powerK_average`, µW.
    Power(PathBuf),
    /// `inK_input` (mV) and `currK_input` (mA).
    VoltCurrent(PathBuf, PathBuf),
}

/// hwmon sensors of one or more devices.
#[derive(Debug)]
pub struct HwmonMeter {
    name: String,
    sources: Vec<Source>,
    domains: Vec<Domain>,
    notes: Vec<String>,
}

/// The scope of a sensor from its driver name and channel label, and the domain it sits in.
fn scope_for(driver: &str, label: &str) -> (Scope, Option<String>) {
    match driver {
        "ina3221" | "ina219" | "ina226" | "ina209" | "ina230" | "ina231" | "ina233" | "ina238" | "ina260"
        | "ina2xx" => {
            if label.eq_ignore_ascii_case("VDD_IN") {
                (Scope::BoardInput, None)
            } else {
                (Scope::BoardRails, None)
            }
        }
        "amdgpu" | "radeon" | "nouveau" | "i915" | "xe" => (Scope::Gpu, None),
        "amd_energy" | "zenergy" => {
            if label.starts_with("Esocket") {
                (Scope::CpuPackage, None)
            } else if label.starts_with("Ecore") {
                (Scope::CpuCores, Some("its socket (Esocket*)".to_string()))
            } else {
                (Scope::Unknown, None)
            }
        }
        _ => (Scope::Unknown, None),
    }
}

/// `prefix` + digits + `suffix` → the digits.
fn channel(file: &str, prefix: &str, suffix: &str) -> Option<u32> {
    file.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

impl HwmonMeter {
    /// Open the power and energy sensors under `root` (normally `/sys/class/hwmon`): only those of
    /// driver `only` when given, and sensors of unknown scope only when `include_unknown`.
    pub fn open(root: &Path, only: Option<&str>, include_unknown: bool) -> Result<HwmonMeter> {
        let devices = sorted_entries(root)
            .map_err(|e| Error::not_found(format!("no hwmon devices ({}: {e})", root.display())))?;
        let mut sources = Vec::new();
        let mut domains = Vec::new();
        let mut notes = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut seen_unknown = Vec::new();
        for (_, dev) in &devices {
            // Old kernels keep the attributes in the `device/` subdirectory.
            let dir = if dev.join("name").exists() { dev.clone() } else { dev.join("device") };
            let Ok(driver) = read_trimmed(&dir.join("name")) else { continue };
            if only.is_some_and(|o| o != driver) {
                continue;
            }
            let Ok(files) = sorted_entries(&dir) else { continue };
            let has = |f: &str| files.iter().any(|(n, _)| n == f);
            let label_of = |stem: &str, k: u32| read_trimmed(&dir.join(format!("{stem}{k}_label"))).ok();
            let mut found = Vec::new();
            for (file, path) in &files {
                if let Some(k) = channel(file, "energy", "_input") {
                    let label = label_of("energy", k).unwrap_or_else(|| format!("energy{k}"));
                    found.push((label, DomainKind::Counter, Source::Energy(path.clone())));
                } else if let Some(k) = channel(file, "power", "_input") {
                    let label = label_of("power", k).unwrap_or_else(|| format!("power{k}"));
                    found.push((label, DomainKind::Power, Source::Power(path.clone())));
                } else if let Some(k) = channel(file, "power", "_average") {
                    if !has(&format!("power{k}_input")) {
                        let label = label_of("power", k).unwrap_or_else(|| format!("power{k}"));
                        found.push((label, DomainKind::Power, Source::Power(path.clone())));
                    }
                } else if let Some(k) = channel(file, "curr", "_input") {
                    let volts = dir.join(format!("in{k}_input"));
                    let has_power = has(&format!("power{k}_input")) || has(&format!("power{k}_average"));
                    let disabled = read_trimmed(&dir.join(format!("in{k}_enable"))).is_ok_and(|s| s == "0");
                    if has_power || disabled || !volts.exists() {
                        continue;
                    }
                    let label =
                        label_of("in", k).or_else(|| label_of("curr", k)).unwrap_or_else(|| format!("in{k}"));
                    if label.eq_ignore_ascii_case("NC") {
                        continue; // a channel marked not connected
                    }
                    found.push((label, DomainKind::Power, Source::VoltCurrent(volts, path.clone())));
                }
            }
            let mut used = false;
            for (label, kind, source) in found {
                let (scope, within) = scope_for(&driver, &label);
                if scope == Scope::Unknown && !include_unknown {
                    seen_unknown.push(format!("{driver} {label}"));
                    continue;
                }
                let provenance = match kind {
                    DomainKind::Counter => Provenance::MeasuredCounter,
                    DomainKind::Power => Provenance::MeasuredSampled,
                };
                domains.push(Domain { label: format!("{driver} {label}"), scope, provenance, kind, within });
                sources.push(source);
                used = true;
            }
            if used && !names.contains(&driver) {
                names.push(driver.clone());
            }
        }
        if !seen_unknown.is_empty() {
            notes.push(format!(
                "sensors of unknown scope ignored (use --power hwmon:NAME to read them): {}",
                seen_unknown.join(", ")
            ));
        }
        if domains.is_empty() {
            let what = only.map_or(String::new(), |o| format!(" named `{o}`"));
            let extra = if notes.is_empty() { String::new() } else { format!("; {}", notes.join("; ")) };
            return Err(Error::not_found(format!(
                "no hwmon power or energy sensor{what} under {}{extra}",
                root.display()
            )));
        }
        if domains.iter().any(|d| d.scope == Scope::BoardInput)
            && domains.iter().any(|d| d.scope == Scope::BoardRails)
        {
            notes.push(
                "VDD_IN is the board's whole input; the other rails are parts of it, never added to it"
                    .into(),
            );
        }
        Ok(HwmonMeter { name: format!("hwmon:{}", names.join("+")), sources, domains, notes })
    }
}

impl PowerMeter for HwmonMeter {
    fn name(&self) -> &str {
        &self.name
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn period(&self) -> Duration {
        // 10 Hz: power registers are averaged over a few ms to tens of ms by the chips.
        Duration::from_millis(100)
    }
    fn read(&mut self, out: &mut [Reading]) -> Result<()> {
        for (source, slot) in self.sources.iter().zip(out.iter_mut()) {
            *slot = match source {
                Source::Energy(p) => match read_u64(p) {
                    Ok(microjoules) => Reading::Counter { microjoules, wraps_at: None },
                    Err(_) => Reading::Skip { reason: "hwmon energy unreadable" },
                },
                Source::Power(p) => match read_i64(p) {
                    Ok(uw) => Reading::Power { watts: uw as f64 * 1e-6 },
                    Err(_) => Reading::Skip { reason: "hwmon power unreadable" },
                },
                Source::VoltCurrent(v, c) => match (read_i64(v), read_i64(c)) {
                    (Ok(mv), Ok(ma)) => Reading::Power { watts: mv as f64 * ma as f64 * 1e-6 },
                    _ => Reading::Skip { reason: "hwmon voltage or current unreadable" },
                },
            };
        }
        Ok(())
    }
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}
