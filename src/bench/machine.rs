//! What a bench report says about the machine it ran on, so numbers from different boards can be
//! told apart: CPU model, cores, threads used, the kernel table chosen, the frequency governor and
//! the platform profile that matched.

use serde::Serialize;

/// The machine a report was measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// `std::env::consts::OS`.
    pub os: &'static str,
    /// `std::env::consts::ARCH`.
    pub arch: &'static str,
    /// The CPU's model name, where the OS tells (`/proc/cpuinfo`).
    pub cpu_model: Option<String>,
    /// The board's model (`/proc/device-tree/model`), on boards that have one.
    pub board_model: Option<String>,
    /// Logical CPUs available to the process.
    pub logical_cpus: usize,
    /// Kernel threads the session runs.
    pub threads: usize,
    /// The kernel table chosen (`avx2`, `neon`, `scalar`…).
    pub kernels: &'static str,
    /// CPU frequency governors in use (distinct values of `scaling_governor`), where readable.
    pub governor: Option<String>,
    /// The platform profile that matched (`platforms/profiles/`), if any.
    pub profile: Option<String>,
    /// Why no profile could be read, if so.
    pub profile_error: Option<String>,
    /// Where the forward pass ran: `cpu`, or `gpu (ADAPTER, BACKEND)`.
    pub device: String,
}

impl Machine {
    /// This machine, for a session running `threads` threads.
    pub fn current(threads: usize) -> Machine {
        let facts = crate::platform::MachineFacts::current();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok();
        let cpu_model = cpuinfo
            .as_deref()
            .and_then(|c| cpuinfo_value(c, &["model name", "Model", "Hardware", "cpu model"]))
            .or(facts.cpuinfo_model.clone());
        let (profile, profile_error) = match crate::platform::current_profile() {
            Ok(p) => (p.map(|p| p.name), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Machine {
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            cpu_model,
            board_model: facts.model,
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threads,
            kernels: crate::kernels::Kernels::get().name(),
            governor: governors(std::path::Path::new("/sys/devices/system/cpu")),
            profile,
            profile_error,
            device: "cpu".to_string(),
        }
    }

    /// One line for the Markdown report.
    pub fn describe(&self) -> String {
        format!(
            "machine: {} ({}/{}), {} logical CPUs, {} threads, kernels {}, governor {}, platform profile {}, device {}",
            self.cpu_model.as_deref().or(self.board_model.as_deref()).unwrap_or("unknown CPU"),
            self.os,
            self.arch,
            self.logical_cpus,
            self.threads,
            self.kernels,
            self.governor.as_deref().unwrap_or("unreadable"),
            self.profile.as_deref().unwrap_or("none matched"),
            self.device
        )
    }
}

/// The value of the first `key : value` line whose key is one of `keys` (in the order given).
fn cpuinfo_value(cpuinfo: &str, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| {
        cpuinfo.lines().find_map(|l| {
            let (key, v) = l.split_once(':')?;
            (key.trim() == *k && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    })
}

/// Distinct `cpufreq/scaling_governor` values under `cpu_root` (`cpuN` directories), joined.
fn governors(cpu_root: &std::path::Path) -> Option<String> {
    let mut found: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(cpu_root).ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.strip_prefix("cpu").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        if let Ok(g) = std::fs::read_to_string(entry.path().join("cpufreq/scaling_governor")) {
            let g = g.trim().to_string();
            if !g.is_empty() && !found.contains(&g) {
                found.push(g);
            }
        }
    }
    found.sort();
    (!found.is_empty()).then(|| found.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_and_governor_are_read() {
        let c = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 85\nmodel name\t: Intel Xeon X\n";
        assert_eq!(cpuinfo_value(c, &["model name", "Model"]).as_deref(), Some("Intel Xeon X"));
        assert_eq!(
            cpuinfo_value("Model\t: Raspberry Pi 5\n", &["model name", "Model"]).as_deref(),
            Some("Raspberry Pi 5")
        );
        let dir = std::env::temp_dir().join(format!("edgespec-gov-{}", std::process::id()));
        for (cpu, g) in [("cpu0", "performance"), ("cpu1", "powersave"), ("cpu2", "performance")] {
            std::fs::create_dir_all(dir.join(cpu).join("cpufreq")).unwrap();
            std::fs::write(dir.join(cpu).join("cpufreq/scaling_governor"), format!("{g}\n")).unwrap();
        }
        std::fs::create_dir_all(dir.join("cpufreq")).unwrap();
        assert_eq!(governors(&dir).as_deref(), Some("performance, powersave"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(governors(std::path::Path::new("/nonexistent/cpu")), None);
    }
}
