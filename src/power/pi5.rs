//! Raspberry Pi 5 board rails from the PMIC's ADC (`vcgencmd pmic_read_adc`).
//!
//! The command prints one line per channel, currents and voltages separately and with unrelated
//! channel numbers (`VDD_CORE_A current(7)=0.75A`, `VDD_CORE_V volt(15)=0.72V`), so current and
//! voltage are paired by rail name, never by position or channel number. Power is Σ V·I over the
//! paired rails: what the regulators deliver, without their conversion losses and without the 5 V
//! that goes straight to USB and HATs (`EXT5V_V` has a voltage but no current, so it is one of the
//! unpaired rails that are ignored, with a note; so are `nan` values). There is no counter: the
//! meter is sampled (10 Hz; each sample spawns a process, which costs a few milliseconds of CPU)
//! and integrated.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{Domain, DomainKind, PowerMeter, Provenance, Reading, Scope};
use crate::error::{Error, Result};

/// One rail with both its readings.
#[derive(Clone, Debug, PartialEq)]
pub struct PmicRail {
    /// Rail name without the `_A`/`_V` suffix, e.g. `VDD_CORE`.
    pub name: String,
    pub volts: f64,
    pub amps: f64,
}

/// One parsed `pmic_read_adc` output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PmicReading {
    /// Rails with a finite current and voltage, in name order.
    pub rails: Vec<PmicRail>,
    /// Rails with only a current or only a voltage (e.g. `EXT5V`, `BATT`).
    pub unpaired: Vec<String>,
    /// Rails whose current or voltage was `nan` (or unreadable).
    pub nan: Vec<String>,
}

impl PmicReading {
    /// Σ V·I over the paired rails, in watts.
    pub fn total_watts(&self) -> f64 {
        self.rails.iter().map(|r| r.volts * r.amps).sum()
    }
}

/// Parse `vcgencmd pmic_read_adc` output. Lines that are not `NAME current(N)=xA` or
/// `NAME volt(N)=xV` are ignored; it is an error only when no line is.
pub fn parse_pmic_adc(text: &str) -> Result<PmicReading> {
    // name → (amps, volts); NaN marks a value that was present but not a number.
    let mut rails: BTreeMap<String, (Option<f64>, Option<f64>)> = BTreeMap::new();
    let mut lines = 0usize;
    for line in text.lines() {
        let Some((lhs, rhs)) = line.trim().split_once('=') else { continue };
        let mut words = lhs.split_whitespace();
        let (Some(name), Some(kind), None) = (words.next(), words.next(), words.next()) else { continue };
        let (is_current, suffix, unit) = if kind.starts_with("current(") {
            (true, "_A", 'A')
        } else if kind.starts_with("volt(") {
            (false, "_V", 'V')
        } else {
            continue;
        };
        let rail = name.strip_suffix(suffix).unwrap_or(name).to_string();
        let value = rhs.trim().trim_end_matches(unit).trim().parse::<f64>().unwrap_or(f64::NAN);
        let entry = rails.entry(rail).or_default();
        if is_current {
            entry.0 = Some(value);
        } else {
            entry.1 = Some(value);
        }
        lines += 1;
    }
    if lines == 0 {
        return Err(Error::format(
            "no `NAME current(N)=xA` or `NAME volt(N)=xV` line in pmic_read_adc output",
        ));
    }
    let mut out = PmicReading::default();
    for (name, (amps, volts)) in rails {
        match (amps, volts) {
            (Some(a), Some(v)) if a.is_finite() && v.is_finite() => {
                out.rails.push(PmicRail { name, volts: v, amps: a })
            }
            (Some(_), Some(_)) => out.nan.push(name),
            _ => out.unpaired.push(name),
        }
    }
    Ok(out)
}

/// Where the `pmic_read_adc` text comes from.
pub enum PmicSource {
    /// Run this `vcgencmd` binary with `pmic_read_adc`.
    Command(PathBuf),
    /// Read this file on every poll (captured output, for tests and replays).
    File(PathBuf),
    /// Call this function on every poll.
    Func(Box<dyn FnMut() -> Result<String> + Send>),
}

impl std::fmt::Debug for PmicSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PmicSource::Command(p) => write!(f, "Command({})", p.display()),
            PmicSource::File(p) => write!(f, "File({})", p.display()),
            PmicSource::Func(_) => f.write_str("Func(..)"),
        }
    }
}

impl PmicSource {
    fn fetch(&mut self) -> Result<String> {
        match self {
            PmicSource::Command(bin) => {
                let out = Command::new(&*bin)
                    .arg("pmic_read_adc")
                    .output()
                    .map_err(|e| Error::io(format!("running {} pmic_read_adc", bin.display()), e))?;
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    return Err(Error::unsupported(format!(
                        "{} pmic_read_adc failed ({}): {} (a Raspberry Pi 5 is needed, and the user must be \
                         in the `video` group)",
                        bin.display(),
                        out.status,
                        err.trim()
                    )));
                }
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            PmicSource::File(path) => std::fs::read_to_string(&*path).map_err(|e| {
                Error::io(format!("reading captured pmic_read_adc output {}", path.display()), e)
            }),
            PmicSource::Func(f) => f(),
        }
    }
}

/// The Pi 5 PMIC as a sampled power meter: one domain, the sum over paired rails.
#[derive(Debug)]
pub struct Pi5Meter {
    source: PmicSource,
    domains: Vec<Domain>,
    unpaired: BTreeSet<String>,
    nan: BTreeSet<String>,
    paired: BTreeSet<String>,
}

impl Pi5Meter {
    /// Read the PMIC once through `source`; fails unless at least one rail pairs.
    pub fn open(mut source: PmicSource) -> Result<Pi5Meter> {
        let first = parse_pmic_adc(&source.fetch()?)?;
        if first.rails.is_empty() {
            return Err(Error::not_found(
                "pmic_read_adc output has no rail with both a current and a voltage",
            ));
        }
        let domains = vec![Domain {
            label: "PMIC rails (sum of V·I)".into(),
            scope: Scope::BoardRails,
            provenance: Provenance::MeasuredSampled,
            kind: DomainKind::Power,
            within: None,
        }];
        let mut m = Pi5Meter {
            source,
            domains,
            unpaired: BTreeSet::new(),
            nan: BTreeSet::new(),
            paired: BTreeSet::new(),
        };
        m.remember(&first);
        Ok(m)
    }

    fn remember(&mut self, r: &PmicReading) {
        self.unpaired.extend(r.unpaired.iter().cloned());
        self.nan.extend(r.nan.iter().cloned());
        self.paired.extend(r.rails.iter().map(|x| x.name.clone()));
    }
}

impl PowerMeter for Pi5Meter {
    fn name(&self) -> &str {
        "pi5-pmic"
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn period(&self) -> Duration {
        Duration::from_millis(100)
    }
    fn read(&mut self, out: &mut [Reading]) -> Result<()> {
        let reading = match self.source.fetch().and_then(|t| parse_pmic_adc(&t)) {
            Ok(r) if !r.rails.is_empty() => {
                self.remember(&r);
                Reading::Power { watts: r.total_watts() }
            }
            Ok(_) => Reading::Skip { reason: "no paired PMIC rail in this reading" },
            Err(_) => Reading::Skip { reason: "pmic_read_adc failed" },
        };
        if let Some(slot) = out.first_mut() {
            *slot = reading;
        }
        Ok(())
    }
    fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "sum of V·I over {} paired rails after the regulators: conversion losses and the 5 V \
             passed to USB and HATs are not included",
            self.paired.len()
        )];
        if !self.unpaired.is_empty() {
            let names: Vec<&str> = self.unpaired.iter().map(String::as_str).collect();
            notes.push(format!("rails with only a current or only a voltage, ignored: {}", names.join(", ")));
        }
        if !self.nan.is_empty() {
            let names: Vec<&str> = self.nan.iter().map(String::as_str).collect();
            notes.push(format!(
                "rails read as nan at least once, left out of those readings: {}",
                names.join(", ")
            ));
        }
        notes
    }
}
