//! Energy measurement, so the benchmark can report tokens per joule and say exactly what it measured.
//!
//! Every platform exposes energy differently, and the figures are not comparable unless they say
//! *what* they cover and *how* they were obtained. So a [`PowerMeter`] reports one or more
//! [`Domain`]s, each labelled with a [`Scope`] (cpu package, DRAM, board rails, battery, wall…) and a
//! [`Provenance`] (a measured counter, measured by sampling, modelled by the vendor, or estimated),
//! and each reading is either a cumulative energy counter (with its wrap limit) or an instantaneous
//! power sample ([`Reading`]). Backends, each compiled where it applies:
//!
//! | backend | file | reading | provenance |
//! |---|---|---|---|
//! | Linux RAPL (powercap) | `rapl.rs` | counter, µJ, wraps | measured counter |
//! | Linux hwmon (incl. Jetson INA3221) | `hwmon.rs` | counter µJ or power µW / mV×mA | measured |
//! | battery (laptop, Android) | `battery.rs` | power | measured by sampling (discharging only) |
//! | Raspberry Pi 5 PMIC | `pi5.rs` | power, Σ V·I over rails | measured by sampling |
//! | NVIDIA NVML | `nvml.rs` | counter, mJ | measured counter |
//! | macOS `powermetrics` | `powermetrics.rs` | modelled energy | vendor-modelled |
//! | external meter log (CSV) | `csv.rs` | power samples after the run | measured by sampling |
//! | none / explicit estimate | `null.rs` | — / constant power | — / estimated |
//!
//! [`detect`] opens the meter a [`PowerChoice`] names (`--power auto` picks the best one available)
//! and otherwise returns a meter that says why energy is unavailable: no number is ever invented.
//! [`Sampler`] polls a meter on its own thread, integrates, corrects counter wraps and attributes
//! energy to the phases the runtime marks (load, idle, prefill, decode…); [`report`] turns a phase's
//! energy and a token count into J/token, tokens/J and above-idle figures with a noise flag.

mod choice;
mod csv;
mod integrate;
mod null;
mod powermetrics;
pub mod report;
mod sampler;
mod sysfs;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod battery;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod hwmon;
#[cfg(target_os = "linux")]
mod nvml;
#[cfg(target_os = "linux")]
mod pi5;
#[cfg(target_os = "linux")]
mod rapl;

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::error::Result;

pub use choice::{detect, detect_in, PowerChoice, PowerEnv};
pub use csv::{CsvMeter, PowerLog, WindowEnergy};
pub use integrate::{DomainEnergy, TraceInterval};
pub use null::{EstimateMeter, NullMeter};
pub use powermetrics::{parse_powermetrics, PowermetricsMeter, PowermetricsSample};
pub use sampler::{Measurement, PhaseResult, Replay, Sampler, Segment};

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use battery::BatteryMeter;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use hwmon::HwmonMeter;
#[cfg(target_os = "linux")]
pub use nvml::NvmlMeter;
#[cfg(target_os = "linux")]
pub use pi5::{parse_pmic_adc, Pi5Meter, PmicReading, PmicSource};
#[cfg(target_os = "linux")]
pub use rapl::RaplMeter;

/// What the run is doing, for attributing energy. Marking a phase costs no allocation, so labels
/// are `&'static str`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Loading or mapping the model.
    Load,
    /// Model loaded, nothing running: the baseline that above-idle figures subtract.
    Idle,
    /// Processing the prompt.
    Prefill,
    /// Generating tokens.
    Decode,
    /// Anything else, by name.
    Label(&'static str),
    /// A named phase of one numbered workload (the benchmark's `prefill`/`decode` of each
    /// strategy and repetition), so one sampler keeps many workloads apart without allocating.
    Numbered(&'static str, u32),
}

impl Phase {
    /// The phase's name as printed.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Load => "load",
            Phase::Idle => "idle",
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
            Phase::Label(s) | Phase::Numbered(s, _) => s,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Numbered(s, n) => write!(f, "{s} #{n}"),
            _ => f.write_str(self.name()),
        }
    }
}

/// What part of the machine a domain's energy covers. Domains of the same scope reported by one
/// meter are disjoint (two sockets, two batteries, two rails), so they may be added; domains of
/// different scopes may nest (cores inside a package) and are never added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// A whole CPU package (socket or die): cores, caches, uncore.
    CpuPackage,
    /// CPU cores only (inside a package).
    CpuCores,
    /// DRAM, as the memory controller accounts it.
    Dram,
    /// A GPU, discrete or integrated.
    Gpu,
    /// An NPU / neural engine.
    Accelerator,
    /// A system-on-chip (or the vendor's "combined" figure for it).
    Soc,
    /// RAPL `psys`: the platform as the CPU sees it (SoC plus parts of the board).
    Platform,
    /// One or more on-board supply rails after their regulators (Pi 5 PMIC, INA sensors).
    BoardRails,
    /// Everything the board draws at its power input (Jetson `VDD_IN`, a USB-C inline meter).
    BoardInput,
    /// A battery's discharge: the whole device, valid only while it runs on battery.
    Battery,
    /// At the wall socket, power-supply losses included.
    Wall,
    /// A sensor whose driver does not say what it covers.
    Unknown,
}

impl Scope {
    /// Lowercase words for reports ("cpu package").
    pub fn describe(self) -> &'static str {
        match self {
            Scope::CpuPackage => "cpu package",
            Scope::CpuCores => "cpu cores",
            Scope::Dram => "dram",
            Scope::Gpu => "gpu",
            Scope::Accelerator => "accelerator",
            Scope::Soc => "soc",
            Scope::Platform => "platform (psys)",
            Scope::BoardRails => "board rails",
            Scope::BoardInput => "board input",
            Scope::Battery => "battery",
            Scope::Wall => "wall",
            Scope::Unknown => "unknown scope",
        }
    }

    /// How much of the machine the scope covers, widest first (used to pick the headline domain).
    pub(crate) fn breadth(self) -> u8 {
        match self {
            Scope::Wall => 10,
            Scope::BoardInput => 9,
            Scope::Battery => 8,
            Scope::Platform => 7,
            Scope::Soc => 6,
            Scope::BoardRails => 5,
            Scope::CpuPackage => 4,
            Scope::Gpu => 3,
            Scope::Accelerator => 2,
            Scope::CpuCores => 2,
            Scope::Dram => 1,
            Scope::Unknown => 0,
        }
    }

    /// Whether work on the CPU shows up in this scope (what `--power auto` looks for first, since
    /// the CPU is where edgespec runs today).
    pub(crate) fn includes_cpu(self) -> bool {
        !matches!(self, Scope::Dram | Scope::Gpu | Scope::Accelerator | Scope::Unknown)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// How a domain's figures were obtained, most trustworthy first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provenance {
    /// A hardware energy counter read at the phase boundaries (RAPL, NVML, hwmon `energy*`).
    MeasuredCounter,
    /// Measured power sampled at intervals and integrated (trapezoid).
    MeasuredSampled,
    /// The vendor's power model, not a sensor (macOS `powermetrics`).
    VendorModelled,
    /// Not measured at all; only on explicit request, and printed as ESTIMATE.
    Estimated,
}

impl Provenance {
    /// Lowercase words for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Provenance::MeasuredCounter => "measured counter",
            Provenance::MeasuredSampled => "measured by sampling",
            Provenance::VendorModelled => "vendor-modelled",
            Provenance::Estimated => "ESTIMATE",
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Whether a domain is read as an energy counter or as instantaneous power.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainKind {
    /// A cumulative energy counter in microjoules.
    Counter,
    /// Instantaneous (or short-window average) power in watts.
    Power,
}

/// One thing a meter measures, and what its numbers mean.
#[derive(Clone, Debug, PartialEq)]
pub struct Domain {
    /// Short label, e.g. `package-0`, `VDD_IN`, `BAT0`, `gpu0 NVIDIA H100`.
    pub label: String,
    /// What the energy covers.
    pub scope: Scope,
    /// How it is obtained.
    pub provenance: Provenance,
    /// Counter or power samples.
    pub kind: DomainKind,
    /// The label of another domain of this meter that contains this one (a RAPL `core` zone inside
    /// its package), so a reader never adds the two.
    pub within: Option<String>,
}

/// One reading of one domain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    /// A cumulative counter in microjoules. `wraps_at` is the largest value it reaches before it
    /// starts again from zero (RAPL's `max_energy_range_uj`); `None` when it does not wrap in
    /// practice (64-bit counters).
    Counter { microjoules: u64, wraps_at: Option<u64> },
    /// Power at this instant, in watts.
    Power { watts: f64 },
    /// No valid value this time (a failed read, or a battery that is charging); says why.
    Skip { reason: &'static str },
}

/// One sample of an external meter's log or of another after-the-run trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceSample {
    /// When the sample was taken, wall clock.
    pub at: SystemTime,
    /// Power in watts.
    pub watts: f64,
}

/// A source of energy readings.
///
/// Contract: [`domains`](PowerMeter::domains) is fixed for the meter's life; [`read`] fills one
/// [`Reading`] per domain, in the same order; domains of one scope are disjoint (see [`Scope`]).
/// Meters are polled from the [`Sampler`]'s thread, never from the inference hot path.
///
/// [`read`]: PowerMeter::read
pub trait PowerMeter: Send {
    /// Backend name and device, e.g. `rapl`, `hwmon:ina3221`, `pi5-pmic`.
    fn name(&self) -> &str;
    /// What this meter measures.
    fn domains(&self) -> &[Domain];
    /// The useful polling period: often enough to catch counter wraps and follow power changes,
    /// no more often than the hardware updates or than the read's own cost allows.
    fn period(&self) -> Duration;
    /// Take one reading per domain into `out` (`out.len() == domains().len()`).
    fn read(&mut self, out: &mut [Reading]) -> Result<()>;
    /// Caveats learned while reading (ignored rails, unknown wrap limits…), for the report.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// `Some(reason)` for a meter that cannot measure anything (the null meter).
    fn unavailable(&self) -> Option<&str> {
        None
    }
    /// Whether the samples arrive only after the run (an external meter's exported log) instead
    /// of by polling; such a meter is asked for [`offline_trace`](PowerMeter::offline_trace) once,
    /// when the sampler stops, and its samples are aligned with the phases by wall-clock time.
    fn is_offline(&self) -> bool {
        false
    }
    /// The after-the-run samples of an offline meter (one power domain), in time order.
    fn offline_trace(&mut self) -> Result<Vec<TraceSample>> {
        Ok(Vec::new())
    }
}
