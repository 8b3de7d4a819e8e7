//! Battery discharge power through `/sys/class/power_supply/*` (laptops, Android phones).
//!
//! `power_now` (µW) where the driver has it, else `current_now` (µA) × `voltage_now` (µV). The
//! figure covers the whole device and means something only while it runs on the battery: on a
//! charger the battery current is charging current, not the load, so every reading taken while
//! `status` is not `Discharging` is skipped (and the report shows the lost coverage). Drivers
//! update these values slowly (about once a second, some every few seconds), and some report
//! discharge as a negative number, so the magnitude is used.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::sysfs::{read_i64, read_trimmed, sorted_entries};
use super::{Domain, DomainKind, PowerMeter, Provenance, Reading, Scope};
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
enum Source {
    /// `power_now`, µW.
    Power(PathBuf),
    /// `current_now` (µA), `voltage_now` (µV).
    CurrentVoltage(PathBuf, PathBuf),
}

#[derive(Clone, Debug)]
struct Battery {
    status: PathBuf,
    source: Source,
}

/// The batteries under a power_supply directory.
#[derive(Debug)]
pub struct BatteryMeter {
    batteries: Vec<Battery>,
    domains: Vec<Domain>,
}

/// Why a reading is skipped while not discharging.
pub(crate) const NOT_DISCHARGING: &str =
    "battery not discharging (charging, full or on external power): its current is not the load";

impl BatteryMeter {
    /// Open every battery (`type` = `Battery`, `present` ≠ 0) under `root` (normally
    /// `/sys/class/power_supply`) that reports power or current and voltage.
    pub fn open(root: &Path) -> Result<BatteryMeter> {
        let entries = sorted_entries(root)
            .map_err(|e| Error::not_found(format!("no power supplies ({}: {e})", root.display())))?;
        let mut batteries = Vec::new();
        let mut domains = Vec::new();
        for (name, dir) in &entries {
            if read_trimmed(&dir.join("type")).ok().as_deref() != Some("Battery") {
                continue;
            }
            if read_trimmed(&dir.join("present")).is_ok_and(|p| p == "0") {
                continue;
            }
            let power = dir.join("power_now");
            let (current, voltage) = (dir.join("current_now"), dir.join("voltage_now"));
            let source = if read_i64(&power).is_ok() {
                Source::Power(power)
            } else if read_i64(&current).is_ok() && read_i64(&voltage).is_ok() {
                Source::CurrentVoltage(current, voltage)
            } else {
                continue;
            };
            batteries.push(Battery { status: dir.join("status"), source });
            domains.push(Domain {
                label: name.clone(),
                scope: Scope::Battery,
                provenance: Provenance::MeasuredSampled,
                kind: DomainKind::Power,
                within: None,
            });
        }
        if batteries.is_empty() {
            return Err(Error::not_found(format!(
                "no battery reporting power_now or current_now and voltage_now under {}",
                root.display()
            )));
        }
        Ok(BatteryMeter { batteries, domains })
    }

    /// Whether every battery is discharging right now (what `--power auto` requires).
    pub fn all_discharging(&self) -> bool {
        self.batteries.iter().all(|b| read_trimmed(&b.status).is_ok_and(|s| s == "Discharging"))
    }
}

impl PowerMeter for BatteryMeter {
    fn name(&self) -> &str {
        "battery"
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn read(&mut self, out: &mut [Reading]) -> Result<()> {
        for (b, slot) in self.batteries.iter().zip(out.iter_mut()) {
            if !read_trimmed(&b.status).is_ok_and(|s| s == "Discharging") {
                *slot = Reading::Skip { reason: NOT_DISCHARGING };
                continue;
            }
            *slot = match &b.source {
                Source::Power(p) => match read_i64(p) {
                    Ok(uw) => Reading::Power { watts: (uw as f64 * 1e-6).abs() },
                    Err(_) => Reading::Skip { reason: "battery power_now unreadable" },
                },
                Source::CurrentVoltage(c, v) => match (read_i64(c), read_i64(v)) {
                    (Ok(ua), Ok(uv)) => Reading::Power { watts: (ua as f64 * uv as f64 * 1e-12).abs() },
                    _ => Reading::Skip { reason: "battery current_now or voltage_now unreadable" },
                },
            };
        }
        Ok(())
    }
    fn notes(&self) -> Vec<String> {
        vec!["battery figures cover the whole device and only readings taken while discharging count".into()]
    }
}
