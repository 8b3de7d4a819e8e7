//! Choosing a meter: the `--power` value ([`PowerChoice`]), where each backend looks
//! ([`PowerEnv`], overridable so tests run on fake sysfs trees), and [`detect`], which opens the
//! chosen meter or, for `auto`, the best one available.
//!
//! `auto` opens every backend that applies to this platform and keeps the best: first one whose
//! widest domain includes the CPU (edgespec runs on the CPU today, so a GPU-only meter measures
//! the wrong thing), then a counter over sampled power, then measured over vendor-modelled, then
//! this order: RAPL, hwmon, Pi 5 PMIC, battery, powermetrics, NVML. A battery counts only while
//! the machine runs on it. With nothing usable, it returns the null meter carrying every
//! backend's reason. An explicit choice that cannot be opened is an error with that reason.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::null::{EstimateMeter, NullMeter};
use super::{CsvMeter, PowerMeter, Provenance};
use crate::error::{Error, Result};

/// What `--power` asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum PowerChoice {
    /// No measurement ("energy: unavailable (disabled)").
    None,
    /// The best meter available.
    Auto,
    /// Linux RAPL through powercap.
    Rapl,
    /// Linux hwmon; `Some(name)` keeps one driver's sensors, whatever their scope.
    Hwmon(Option<String>),
    /// Battery discharge (laptop, Android).
    Battery,
    /// Raspberry Pi 5 PMIC rails.
    Pi5,
    /// NVIDIA GPUs through NVML.
    Nvml,
    /// macOS powermetrics (root).
    Powermetrics,
    /// An external meter's CSV log, read after the run.
    Csv(PathBuf),
    /// A constant power the user asserts, reported as ESTIMATE.
    Estimate(f64),
}

impl FromStr for PowerChoice {
    type Err = Error;

    /// `none|auto|rapl|hwmon[:NAME]|battery|pi5|nvml|powermetrics|csv:PATH|estimate:WATTS`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let (head, arg) = match s.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (s, None),
        };
        let no_arg = |c: PowerChoice| match arg {
            None => Ok(c),
            Some(_) => Err(Error::invalid(format!("--power {head} takes no `:` argument"))),
        };
        match head.to_ascii_lowercase().as_str() {
            "none" | "off" => no_arg(PowerChoice::None),
            "auto" => no_arg(PowerChoice::Auto),
            "rapl" => no_arg(PowerChoice::Rapl),
            "battery" => no_arg(PowerChoice::Battery),
            "pi5" => no_arg(PowerChoice::Pi5),
            "nvml" => no_arg(PowerChoice::Nvml),
            "powermetrics" => no_arg(PowerChoice::Powermetrics),
            "hwmon" => match arg {
                None => Ok(PowerChoice::Hwmon(None)),
                Some(name) if !name.is_empty() => Ok(PowerChoice::Hwmon(Some(name.to_string()))),
                Some(_) => Err(Error::invalid("--power hwmon:NAME needs a driver name")),
            },
            "csv" => match arg {
                Some(path) if !path.is_empty() => Ok(PowerChoice::Csv(PathBuf::from(path))),
                _ => Err(Error::invalid("--power csv:PATH needs the path of the meter's log")),
            },
            "estimate" => {
                let text = arg.unwrap_or("").trim();
                let number = text.strip_suffix(['W', 'w']).unwrap_or(text).trim();
                match number.parse::<f64>() {
                    Ok(w) if w.is_finite() && w > 0.0 => Ok(PowerChoice::Estimate(w)),
                    _ => Err(Error::invalid(format!(
                        "--power estimate:WATTS needs a positive number of watts, not `{text}`"
                    ))),
                }
            }
            _ => Err(Error::invalid(format!(
                "unknown --power `{s}`: expected none, auto, rapl, hwmon[:NAME], battery, pi5, nvml, \
                 powermetrics, csv:PATH or estimate:WATTS"
            ))),
        }
    }
}

impl fmt::Display for PowerChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerChoice::None => f.write_str("none"),
            PowerChoice::Auto => f.write_str("auto"),
            PowerChoice::Rapl => f.write_str("rapl"),
            PowerChoice::Hwmon(None) => f.write_str("hwmon"),
            PowerChoice::Hwmon(Some(n)) => write!(f, "hwmon:{n}"),
            PowerChoice::Battery => f.write_str("battery"),
            PowerChoice::Pi5 => f.write_str("pi5"),
            PowerChoice::Nvml => f.write_str("nvml"),
            PowerChoice::Powermetrics => f.write_str("powermetrics"),
            PowerChoice::Csv(p) => write!(f, "csv:{}", p.display()),
            PowerChoice::Estimate(w) => write!(f, "estimate:{w}W"),
        }
    }
}

/// Where the backends look. [`PowerEnv::from_env`] reads the overrides below from the process
/// environment; tests build one pointing at fake trees.
#[derive(Clone, Debug, PartialEq)]
pub struct PowerEnv {
    /// `EDGESPEC_POWERCAP_ROOT`, default `/sys/class/powercap`.
    pub powercap_root: PathBuf,
    /// `EDGESPEC_HWMON_ROOT`, default `/sys/class/hwmon`.
    pub hwmon_root: PathBuf,
    /// `EDGESPEC_POWER_SUPPLY_ROOT`, default `/sys/class/power_supply`.
    pub power_supply_root: PathBuf,
    /// `EDGESPEC_VCGENCMD`, default `vcgencmd` (found on `PATH`).
    pub vcgencmd: PathBuf,
    /// `EDGESPEC_PMIC_ADC_FILE`: a file holding captured `vcgencmd pmic_read_adc` output, read on
    /// every poll instead of running vcgencmd.
    pub pmic_adc_file: Option<PathBuf>,
    /// `EDGESPEC_NVML_LIB`: the NVML library to load instead of `libnvidia-ml.so.1`.
    pub nvml_library: Option<PathBuf>,
    /// `EDGESPEC_POWERMETRICS`, default `/usr/bin/powermetrics`.
    pub powermetrics: PathBuf,
}

impl Default for PowerEnv {
    fn default() -> Self {
        PowerEnv {
            powercap_root: "/sys/class/powercap".into(),
            hwmon_root: "/sys/class/hwmon".into(),
            power_supply_root: "/sys/class/power_supply".into(),
            vcgencmd: "vcgencmd".into(),
            pmic_adc_file: None,
            nvml_library: None,
            powermetrics: "/usr/bin/powermetrics".into(),
        }
    }
}

impl PowerEnv {
    /// The defaults, with the `EDGESPEC_*` overrides from the environment applied.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let d = PowerEnv::default();
        PowerEnv {
            powercap_root: var("EDGESPEC_POWERCAP_ROOT").unwrap_or(d.powercap_root),
            hwmon_root: var("EDGESPEC_HWMON_ROOT").unwrap_or(d.hwmon_root),
            power_supply_root: var("EDGESPEC_POWER_SUPPLY_ROOT").unwrap_or(d.power_supply_root),
            vcgencmd: var("EDGESPEC_VCGENCMD").unwrap_or(d.vcgencmd),
            pmic_adc_file: var("EDGESPEC_PMIC_ADC_FILE"),
            nvml_library: var("EDGESPEC_NVML_LIB"),
            powermetrics: var("EDGESPEC_POWERMETRICS").unwrap_or(d.powermetrics),
        }
    }
}

/// Open the meter `choice` names, looking where the environment says ([`PowerEnv::from_env`]).
pub fn detect(choice: &PowerChoice) -> Result<Box<dyn PowerMeter>> {
    detect_in(choice, &PowerEnv::from_env())
}

/// Open the meter `choice` names, looking where `env` says. `None` and an `Auto` that finds
/// nothing give the null meter (with the reasons); an explicit backend that cannot be opened is an
/// error saying why.
pub fn detect_in(choice: &PowerChoice, env: &PowerEnv) -> Result<Box<dyn PowerMeter>> {
    let explicit = |r: Result<Box<dyn PowerMeter>>| r.map_err(|e| e.context(format!("--power {choice}")));
    match choice {
        PowerChoice::None => Ok(Box::new(NullMeter::new("disabled by --power none"))),
        PowerChoice::Auto => Ok(auto(env)),
        PowerChoice::Csv(path) => Ok(Box::new(CsvMeter::new(path))),
        PowerChoice::Estimate(w) => Ok(Box::new(EstimateMeter::new(*w)?)),
        PowerChoice::Rapl => explicit(open_backend(Backend::Rapl, env, true)),
        PowerChoice::Hwmon(name) => explicit(open_hwmon(env, name.as_deref())),
        PowerChoice::Battery => explicit(open_backend(Backend::Battery, env, true)),
        PowerChoice::Pi5 => explicit(open_backend(Backend::Pi5, env, true)),
        PowerChoice::Nvml => explicit(open_backend(Backend::Nvml, env, true)),
        PowerChoice::Powermetrics => explicit(open_backend(Backend::Powermetrics, env, true)),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Rapl,
    Hwmon,
    Pi5,
    Battery,
    Powermetrics,
    Nvml,
}

impl Backend {
    /// The order `auto` tries them in, which also breaks ties.
    const AUTO_ORDER: [Backend; 6] =
        [Backend::Rapl, Backend::Hwmon, Backend::Pi5, Backend::Battery, Backend::Powermetrics, Backend::Nvml];

    /// Whether the backend is compiled for this platform.
    fn applies(self) -> bool {
        match self {
            Backend::Rapl | Backend::Pi5 | Backend::Nvml => cfg!(target_os = "linux"),
            Backend::Hwmon | Backend::Battery => cfg!(any(target_os = "linux", target_os = "android")),
            Backend::Powermetrics => cfg!(target_os = "macos"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Rapl => "rapl",
            Backend::Hwmon => "hwmon",
            Backend::Pi5 => "pi5",
            Backend::Battery => "battery",
            Backend::Powermetrics => "powermetrics",
            Backend::Nvml => "nvml",
        }
    }
}

fn not_here(what: &str) -> Error {
    Error::unsupported(format!("{what} is not available on this platform"))
}

#[allow(unused_variables)]
fn open_hwmon(env: &PowerEnv, name: Option<&str>) -> Result<Box<dyn PowerMeter>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        Ok(Box::new(super::HwmonMeter::open(&env.hwmon_root, name, true)?))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    Err(not_here("hwmon"))
}

/// Open one backend. `explicit` is false under `auto`, which is stricter: hwmon sensors of unknown
/// scope are left out and a battery must be discharging now.
#[allow(unused_variables)]
fn open_backend(b: Backend, env: &PowerEnv, explicit: bool) -> Result<Box<dyn PowerMeter>> {
    match b {
        #[cfg(target_os = "linux")]
        Backend::Rapl => Ok(Box::new(super::RaplMeter::open(&env.powercap_root)?)),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Backend::Hwmon => Ok(Box::new(super::HwmonMeter::open(&env.hwmon_root, None, explicit)?)),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Backend::Battery => {
            let m = super::BatteryMeter::open(&env.power_supply_root)?;
            if !explicit && !m.all_discharging() {
                return Err(Error::unsupported(
                    "on external power (a battery only measures the load while discharging; unplug, or \
                     pass --power battery to record anyway)",
                ));
            }
            Ok(Box::new(m))
        }
        #[cfg(target_os = "linux")]
        Backend::Pi5 => {
            let source = match &env.pmic_adc_file {
                Some(f) => super::PmicSource::File(f.clone()),
                None => super::PmicSource::Command(env.vcgencmd.clone()),
            };
            Ok(Box::new(super::Pi5Meter::open(source)?))
        }
        #[cfg(target_os = "linux")]
        Backend::Nvml => Ok(Box::new(super::NvmlMeter::open(env.nvml_library.as_deref())?)),
        #[cfg(target_os = "macos")]
        Backend::Powermetrics => Ok(Box::new(super::PowermetricsMeter::spawn(
            &env.powermetrics,
            std::time::Duration::from_millis(200),
        )?)),
        #[allow(unreachable_patterns)]
        other => Err(not_here(other.name())),
    }
}

/// How good a meter is for `auto`: larger is better.
fn rank(m: &dyn PowerMeter) -> (bool, u8) {
    let domains = m.domains();
    let covers_cpu = domains.iter().any(|d| d.within.is_none() && d.scope.includes_cpu());
    let best = domains
        .iter()
        .map(|d| match d.provenance {
            Provenance::MeasuredCounter => 3,
            Provenance::MeasuredSampled => 2,
            Provenance::VendorModelled => 1,
            Provenance::Estimated => 0,
        })
        .max()
        .unwrap_or(0);
    (covers_cpu, best)
}

fn auto(env: &PowerEnv) -> Box<dyn PowerMeter> {
    let mut best: Option<((bool, u8), Box<dyn PowerMeter>)> = None;
    let mut reasons = Vec::new();
    for b in Backend::AUTO_ORDER.into_iter().filter(|b| b.applies()) {
        match open_backend(b, env, false) {
            Ok(m) => {
                let r = rank(m.as_ref());
                // Strictly better only: earlier backends win ties.
                if best.as_ref().is_none_or(|(br, _)| r > *br) {
                    best = Some((r, m));
                }
            }
            Err(e) => reasons.push(format!("{}: {}", b.name(), e.message())),
        }
    }
    match best {
        Some((_, m)) => m,
        None => Box::new(NullMeter::new(format!("no meter found; {}", reasons.join("; ")))),
    }
}
