//! Intel/AMD RAPL energy counters through Linux powercap (`/sys/class/powercap/intel-rapl:N[:M]`).
//!
//! Each zone has `name`, `energy_uj` (a µJ counter, updated about every millisecond) and
//! `max_energy_range_uj` (where it wraps to zero). Zones nest: `intel-rapl:0` is a package and
//! `intel-rapl:0:0` its cores, already counted in the package, so zones are never added across
//! levels; top-level `package-N` zones are the CPU domains, `psys` (platform) and `dram` are reported
//! beside them as separate domains (DRAM energy is not part of the package's, even when the
//! driver files its zone under the package). `intel-rapl-mmio` zones repeat the package through
//! another interface and are ignored. Since Linux 5.10 `energy_uj` is readable by root only (a
//! side-channel fix), and most virtual machines have no RAPL at all.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::sysfs::{read_trimmed, read_u64, sorted_entries};
use super::{Domain, DomainKind, PowerMeter, Provenance, Reading, Scope};
use crate::error::{Error, ErrorKind, Result};

/// What the permission failure means, as printed.
pub(crate) const PERMISSION_REASON: &str = "permission denied (root needed since Linux 5.10)";

#[derive(Clone, Debug)]
struct Zone {
    energy: PathBuf,
    wraps_at: Option<u64>,
}

/// RAPL zones read through powercap.
#[derive(Debug)]
pub struct RaplMeter {
    zones: Vec<Zone>,
    domains: Vec<Domain>,
    period: Duration,
    notes: Vec<String>,
}

/// `intel-rapl:0` → [0], `intel-rapl:0:1` → [0, 1]; anything else → None.
fn zone_path(dir_name: &str) -> Option<Vec<u32>> {
    let rest = dir_name.strip_prefix("intel-rapl:")?;
    rest.split(':').map(|p| p.parse::<u32>().ok()).collect()
}

impl RaplMeter {
    /// Open the RAPL zones under `root` (normally `/sys/class/powercap`). Fails with the reason
    /// when there are none, or none readable.
    pub fn open(root: &Path) -> Result<RaplMeter> {
        let entries = sorted_entries(root).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::not_found(format!(
                "no {} (no powercap driver; RAPL is absent in most virtual machines)",
                root.display()
            )),
            _ => Error::io(format!("listing {}", root.display()), e),
        })?;
        let mut notes = Vec::new();
        let mut zones = Vec::new();
        let mut domains = Vec::new();
        let mut denied: Option<PathBuf> = None;
        if entries.iter().any(|(n, _)| n.starts_with("intel-rapl-mmio:")) {
            notes.push("intel-rapl-mmio zones repeat the package zone and are ignored".to_string());
        }
        for (dir_name, dir) in &entries {
            let Some(path) = zone_path(dir_name) else { continue };
            let Ok(name) = read_trimmed(&dir.join("name")) else {
                notes.push(format!("{dir_name}: no readable name, ignored"));
                continue;
            };
            let (label, scope, within) = match (path.as_slice(), name.as_str()) {
                ([_], n) if n.starts_with("package") => (name.clone(), Scope::CpuPackage, None),
                ([_], "psys") => (name.clone(), Scope::Platform, None),
                ([_], "dram") => (name.clone(), Scope::Dram, None),
                ([p, _], child) => {
                    let parent_dir = root.join(format!("intel-rapl:{p}"));
                    let parent =
                        read_trimmed(&parent_dir.join("name")).unwrap_or_else(|_| format!("zone {p}"));
                    let label = format!("{parent}/{child}");
                    match child {
                        "core" => (label, Scope::CpuCores, Some(parent)),
                        // On client chips `uncore` is mostly the integrated GPU.
                        "uncore" => (label, Scope::Gpu, Some(parent)),
                        "dram" => (label, Scope::Dram, None),
                        _ => {
                            notes.push(format!("{dir_name} ({label}): unknown zone, ignored"));
                            continue;
                        }
                    }
                }
                _ => {
                    notes.push(format!("{dir_name} ({name}): unknown zone, ignored"));
                    continue;
                }
            };
            let energy = dir.join("energy_uj");
            match read_u64(&energy) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    denied.get_or_insert(energy);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    notes.push(format!("{dir_name} ({label}): no energy_uj, ignored"));
                    continue;
                }
                Err(e) => {
                    notes.push(format!("{dir_name} ({label}): energy_uj unreadable ({e}), ignored"));
                    continue;
                }
            }
            let wraps_at = match read_u64(&dir.join("max_energy_range_uj")) {
                Ok(w) if w > 0 => Some(w),
                _ => {
                    notes.push(format!(
                        "{label}: max_energy_range_uj unreadable, so a counter wrap would be dropped, not corrected"
                    ));
                    None
                }
            };
            zones.push(Zone { energy, wraps_at });
            domains.push(Domain {
                label,
                scope,
                provenance: Provenance::MeasuredCounter,
                kind: DomainKind::Counter,
                within,
            });
        }
        if domains.is_empty() {
            if let Some(path) = denied {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "{PERMISSION_REASON}: cannot read {}; run as root or have an administrator grant \
                         read access to the energy_uj files",
                        path.display()
                    ),
                ));
            }
            let detail = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
            return Err(Error::not_found(format!(
                "no readable intel-rapl zone under {}{detail}",
                root.display()
            )));
        }
        if let Some(path) = denied {
            notes.push(format!("{}: {PERMISSION_REASON}, zone ignored", path.display()));
        }
        // Often enough to catch every wrap even at 1 kW (1e9 µJ/s) with a 4× margin; RAPL
        // updates about every millisecond, so 10 Hz costs nothing and gives interval powers for
        // the noise statistics.
        let fastest_wrap = zones.iter().filter_map(|z| z.wraps_at).min().map(|w| w as f64 / 1e9 / 4.0);
        let period =
            Duration::from_millis(100).min(Duration::from_secs_f64(fastest_wrap.unwrap_or(1.0).max(0.001)));
        Ok(RaplMeter { zones, domains, period, notes })
    }
}

impl PowerMeter for RaplMeter {
    fn name(&self) -> &str {
        "rapl"
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn period(&self) -> Duration {
        self.period
    }
    fn read(&mut self, out: &mut [Reading]) -> Result<()> {
        for (zone, slot) in self.zones.iter().zip(out.iter_mut()) {
            *slot = match read_u64(&zone.energy) {
                Ok(microjoules) => Reading::Counter { microjoules, wraps_at: zone.wraps_at },
                Err(_) => Reading::Skip { reason: "energy_uj unreadable" },
            };
        }
        Ok(())
    }
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_paths() {
        assert_eq!(zone_path("intel-rapl:0"), Some(vec![0]));
        assert_eq!(zone_path("intel-rapl:1:2"), Some(vec![1, 2]));
        assert_eq!(zone_path("intel-rapl-mmio:0"), None);
        assert_eq!(zone_path("intel-rapl"), None);
        assert_eq!(zone_path("intel-rapl:x"), None);
    }
}
