//! Per-device profiles (`platforms/profiles/*.toml`, compiled in): which machine this is, how many
//! threads to run, which kernels to prefer and which power meter to read, so `bench` can print
//! the profile it ran under and devices are compared like for like.
//!
//! A profile matches on the target OS and architecture and, for specific boards, on a substring of
//! `/proc/device-tree/model` (or the `Model` line of `/proc/cpuinfo`); a board profile wins over
//! the generic one for its OS and architecture. Profiles hold only what is known: figures that
//! must be measured on the device (such as the batch size where a verify pass stops being nearly
//! free) are absent until a benchmark has measured them.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::power::PowerChoice;

/// The profiles compiled in, in matching order (boards before generic ones).
const EMBEDDED: [(&str, &str); 7] = [
    ("raspberry-pi-5.toml", include_str!("../platforms/profiles/raspberry-pi-5.toml")),
    ("raspberry-pi-4.toml", include_str!("../platforms/profiles/raspberry-pi-4.toml")),
    ("jetson.toml", include_str!("../platforms/profiles/jetson.toml")),
    ("apple-m.toml", include_str!("../platforms/profiles/apple-m.toml")),
    ("android.toml", include_str!("../platforms/profiles/android.toml")),
    ("linux-x86_64.toml", include_str!("../platforms/profiles/linux-x86_64.toml")),
    ("linux-arm64.toml", include_str!("../platforms/profiles/linux-arm64.toml")),
];

/// The kernel names a profile may prefer.
pub const KERNEL_NAMES: [&str; 4] = ["avx2", "neon", "neon-dotprod", "scalar"];

/// How many threads to run: a number, or a rule resolved on the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// Exactly this many.
    Count(usize),
    /// Every logical CPU.
    AllCores,
    /// One per physical core (SMT siblings not counted).
    PhysicalCores,
    /// The fastest cores only (big cores of big.LITTLE, Apple's P-cores).
    PerformanceCores,
}

/// One device profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Short name `bench` prints, e.g. `raspberry-pi-5`.
    pub name: String,
    pub description: String,
    /// `std::env::consts::OS` value it applies to.
    pub os: String,
    /// `std::env::consts::ARCH` values it applies to.
    pub arch: Vec<String>,
    /// Device-model substrings; empty for a generic profile.
    pub model: Vec<String>,
    pub threads: Threads,
    /// Kernel names in order of preference ([`KERNEL_NAMES`]).
    pub kernels: Vec<String>,
    /// Compute backend (`cpu`).
    pub backend: String,
    /// The power meter to use.
    pub power: PowerChoice,
    /// Caveats to print with results.
    pub notes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    description: String,
    #[serde(rename = "match")]
    matcher: RawMatch,
    run: RawRun,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    os: String,
    arch: Vec<String>,
    #[serde(default)]
    model: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawThreads {
    Count(usize),
    Rule(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    threads: RawThreads,
    kernels: Vec<String>,
    backend: String,
    power: String,
    #[serde(default)]
    notes: Vec<String>,
}

impl Profile {
    /// Parse and validate one profile's TOML.
    pub fn from_toml(text: &str) -> Result<Profile> {
        let raw: RawProfile =
            toml::from_str(text).map_err(|e| Error::format(format!("profile is not valid: {e}")))?;
        let threads = match raw.run.threads {
            RawThreads::Count(0) => return Err(Error::format("profile threads must be at least 1")),
            RawThreads::Count(n) => Threads::Count(n),
            RawThreads::Rule(r) => match r.as_str() {
                "all-cores" => Threads::AllCores,
                "physical-cores" => Threads::PhysicalCores,
                "performance-cores" => Threads::PerformanceCores,
                _ => {
                    return Err(Error::format(format!(
                        "profile threads `{r}`: expected a number, all-cores, physical-cores or performance-cores"
                    )))
                }
            },
        };
        if raw.run.kernels.is_empty() {
            return Err(Error::format("profile lists no kernels"));
        }
        if let Some(k) = raw.run.kernels.iter().find(|k| !KERNEL_NAMES.contains(&k.as_str())) {
            return Err(Error::format(format!(
                "profile kernel `{k}`: expected one of {}",
                KERNEL_NAMES.join(", ")
            )));
        }
        if raw.run.backend != "cpu" {
            return Err(Error::format(format!("profile backend `{}`: only `cpu` exists", raw.run.backend)));
        }
        if raw.matcher.arch.is_empty() {
            return Err(Error::format("profile matches no architecture"));
        }
        let power = raw.run.power.parse::<PowerChoice>().map_err(|e| e.context("profile power"))?;
        Ok(Profile {
            name: raw.name,
            description: raw.description,
            os: raw.matcher.os,
            arch: raw.matcher.arch,
            model: raw.matcher.model,
            threads,
            kernels: raw.run.kernels,
            backend: raw.run.backend,
            power,
            notes: raw.run.notes,
        })
    }

    /// Whether this profile applies to `facts`.
    pub fn matches(&self, facts: &MachineFacts) -> bool {
        if self.os != facts.os || !self.arch.contains(&facts.arch) {
            return false;
        }
        if self.model.is_empty() {
            return true;
        }
        let in_text = |t: &Option<String>| {
            t.as_deref().is_some_and(|t| self.model.iter().any(|m| t.contains(m.as_str())))
        };
        in_text(&facts.model) || in_text(&facts.cpuinfo_model)
    }

    /// The thread count on this machine.
    pub fn thread_count(&self) -> usize {
        resolve_threads(
            self.threads,
            Path::new("/sys/devices/system/cpu"),
            read_text("/proc/cpuinfo").as_deref(),
        )
    }
}

/// Every embedded profile, in matching order.
pub fn profiles() -> Result<Vec<Profile>> {
    EMBEDDED
        .iter()
        .map(|(file, text)| {
            Profile::from_toml(text).map_err(|e| e.context(format!("platforms/profiles/{file}")))
        })
        .collect()
}

/// What the profiles match on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineFacts {
    /// `std::env::consts::OS`.
    pub os: String,
    /// `std::env::consts::ARCH`.
    pub arch: String,
    /// `/proc/device-tree/model`, without its trailing NUL.
    pub model: Option<String>,
    /// The `Model` (or `Hardware`) line of `/proc/cpuinfo`.
    pub cpuinfo_model: Option<String>,
}

fn read_text(path: &str) -> Option<String> {
    std::fs::read(path).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The value of the first `key : value` line of `/proc/cpuinfo` text whose key is one of `keys`.
fn cpuinfo_field(cpuinfo: &str, keys: &[&str]) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        keys.contains(&k.trim()).then(|| v.trim().to_string())
    })
}

impl MachineFacts {
    /// This machine.
    pub fn current() -> MachineFacts {
        let model = read_text("/proc/device-tree/model").map(|m| m.trim_end_matches('\0').trim().to_string());
        let cpuinfo_model =
            read_text("/proc/cpuinfo").and_then(|c| cpuinfo_field(&c, &["Model", "Hardware"]));
        MachineFacts {
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            model: model.filter(|m| !m.is_empty()),
            cpuinfo_model,
        }
    }
}

/// The profile for `facts`: the first board profile that matches, else the generic one.
pub fn match_profile<'a>(profiles: &'a [Profile], facts: &MachineFacts) -> Option<&'a Profile> {
    let matching = || profiles.iter().filter(|p| p.matches(facts));
    matching().find(|p| !p.model.is_empty()).or_else(|| matching().next())
}

/// The profile for this machine, if any applies.
pub fn current_profile() -> Result<Option<Profile>> {
    let all = profiles()?;
    Ok(match_profile(&all, &MachineFacts::current()).cloned())
}

/// Resolve a thread rule against a CPU sysfs directory and `/proc/cpuinfo` text; every rule falls
/// back to all logical CPUs when the information is missing.
pub fn resolve_threads(rule: Threads, cpu_root: &Path, cpuinfo: Option<&str>) -> usize {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    match rule {
        Threads::Count(n) => n,
        Threads::AllCores => all,
        Threads::PhysicalCores => cpuinfo.and_then(physical_cores).unwrap_or(all),
        Threads::PerformanceCores => performance_cores(cpu_root).unwrap_or(all),
    }
}

/// Distinct (physical id, core id) pairs in `/proc/cpuinfo`.
fn physical_cores(cpuinfo: &str) -> Option<usize> {
    let mut cores = std::collections::BTreeSet::new();
    for block in cpuinfo.split("\n\n") {
        let field = |k: &str| cpuinfo_field(block, &[k]);
        if let Some(core) = field("core id") {
            cores.insert((field("physical id").unwrap_or_default(), core));
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// CPUs with the largest `cpu_capacity` (or, without it, the largest `cpufreq/cpuinfo_max_freq`).
fn performance_cores(cpu_root: &Path) -> Option<usize> {
    #[cfg(target_os = "macos")]
    {
        let _ = cpu_root;
        let out =
            std::process::Command::new("sysctl").args(["-n", "hw.perflevel0.logicalcpu"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse::<usize>().ok().filter(|n| *n > 0)
    }
    #[cfg(not(target_os = "macos"))]
    {
        let mut per_cpu: Vec<(u64, u64)> = Vec::new();
        for entry in std::fs::read_dir(cpu_root).ok()?.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name
                .strip_prefix("cpu")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                continue;
            }
            let num = |rel: &str| {
                std::fs::read_to_string(entry.path().join(rel))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
            };
            per_cpu.push((num("cpu_capacity").unwrap_or(0), num("cpufreq/cpuinfo_max_freq").unwrap_or(0)));
        }
        let pick = |key: fn(&(u64, u64)) -> u64| {
            let best = per_cpu.iter().map(key).max().filter(|m| *m > 0)?;
            Some(per_cpu.iter().filter(|c| key(c) == best).count())
        };
        pick(|c| c.0).or_else(|| pick(|c| c.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(os: &str, arch: &str, model: Option<&str>) -> MachineFacts {
        MachineFacts {
            os: os.into(),
            arch: arch.into(),
            model: model.map(str::to_string),
            cpuinfo_model: None,
        }
    }

    fn name_for(f: &MachineFacts) -> Option<String> {
        let all = profiles().unwrap();
        match_profile(&all, f).map(|p| p.name.clone())
    }

    #[test]
    fn embedded_profiles_parse_and_are_consistent() {
        let all = profiles().unwrap();
        assert_eq!(all.len(), EMBEDDED.len());
        for p in &all {
            for k in &p.kernels {
                let ok = match k.as_str() {
                    "avx2" => p.arch.iter().all(|a| a == "x86_64"),
                    "neon" | "neon-dotprod" => p.arch.iter().all(|a| a == "aarch64"),
                    _ => true,
                };
                assert!(ok, "{}: kernel {k} does not fit {:?}", p.name, p.arch);
            }
            assert_eq!(
                p.kernels.last().map(String::as_str),
                Some("scalar"),
                "{}: scalar is the fallback",
                p.name
            );
        }
        let mut names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len(), "profile names are unique");
    }

    #[test]
    fn boards_match_before_generic_profiles() {
        let pi5 = facts("linux", "aarch64", Some("Raspberry Pi 5 Model B Rev 1.0"));
        assert_eq!(name_for(&pi5).as_deref(), Some("raspberry-pi-5"));
        let pi4 = facts("linux", "aarch64", Some("Raspberry Pi 4 Model B Rev 1.4"));
        assert_eq!(name_for(&pi4).as_deref(), Some("raspberry-pi-4"));
        let jetson = facts("linux", "aarch64", Some("NVIDIA Jetson Orin Nano Developer Kit"));
        assert_eq!(name_for(&jetson).as_deref(), Some("jetson"));
        let board = facts("linux", "aarch64", Some("Radxa ROCK 5B"));
        assert_eq!(name_for(&board).as_deref(), Some("linux-arm64"));
        assert_eq!(name_for(&facts("linux", "x86_64", None)).as_deref(), Some("linux-x86_64"));
        assert_eq!(name_for(&facts("macos", "aarch64", None)).as_deref(), Some("apple-m"));
        assert_eq!(name_for(&facts("android", "aarch64", None)).as_deref(), Some("android"));
        assert_eq!(name_for(&facts("windows", "x86_64", None)), None);
        // A 32-bit Pi OS is not served by the aarch64 kernels.
        assert_eq!(name_for(&facts("linux", "arm", Some("Raspberry Pi 5 Model B Rev 1.0"))), None);
        // The cpuinfo Model line identifies a Pi when the device tree is not readable.
        let mut via_cpuinfo = facts("linux", "aarch64", None);
        via_cpuinfo.cpuinfo_model = Some("Raspberry Pi 5 Model B Rev 1.1".into());
        assert_eq!(name_for(&via_cpuinfo).as_deref(), Some("raspberry-pi-5"));
    }

    #[test]
    fn invalid_profiles_are_rejected() {
        let good = Profile::from_toml(EMBEDDED[0].1).unwrap();
        assert_eq!(good.power, PowerChoice::Pi5);
        for (from, to) in [
            ("\"all-cores\"", "\"most-cores\""),
            ("\"all-cores\"", "0"),
            ("\"neon-dotprod\"", "\"sve2\""),
            ("\"pi5\"", "\"solar\""),
            ("backend = \"cpu\"", "backend = \"vulkan\""),
            ("[run]", "knee = 8\n[run]"),
        ] {
            let text = EMBEDDED[0].1.replacen(from, to, 1);
            assert_ne!(text, EMBEDDED[0].1);
            assert!(Profile::from_toml(&text).is_err(), "{from} -> {to} should be rejected");
        }
    }

    #[test]
    fn thread_rules() {
        let cpuinfo = "processor\t: 0\nphysical id\t: 0\ncore id\t: 0\n\nprocessor\t: 1\nphysical id\t: 0\ncore id\t: 0\n\n\
                       processor\t: 2\nphysical id\t: 0\ncore id\t: 1\n\nprocessor\t: 3\nphysical id\t: 0\ncore id\t: 1\n";
        assert_eq!(physical_cores(cpuinfo), Some(2));
        assert_eq!(resolve_threads(Threads::Count(3), Path::new("/nonexistent"), None), 3);
        let dir = std::env::temp_dir().join(format!("edgespec-platform-{}", std::process::id()));
        for (cpu, cap) in [(0, 446), (1, 446), (2, 1024), (3, 1024), (4, 1024)] {
            let d = dir.join(format!("cpu{cpu}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cpu_capacity"), format!("{cap}\n")).unwrap();
        }
        std::fs::create_dir_all(dir.join("cpufreq")).unwrap();
        #[cfg(not(target_os = "macos"))]
        assert_eq!(performance_cores(&dir), Some(3));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_machine_has_a_profile_name() {
        let f = MachineFacts::current();
        let p = current_profile().unwrap();
        if f.os == "linux" && f.arch == "x86_64" {
            assert_eq!(p.map(|p| p.name).as_deref(), Some("linux-x86_64"));
        }
    }
}
