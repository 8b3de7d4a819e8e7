//! A power-meter environment confined to a test directory, shared by the energy tests.

use std::path::Path;

use edgespec::power::PowerEnv;

/// An environment where every backend looks into `dir` (and finds nothing unless the test puts
/// something there).
pub fn env_in(dir: &Path) -> PowerEnv {
    PowerEnv {
        powercap_root: dir.join("powercap"),
        hwmon_root: dir.join("hwmon"),
        power_supply_root: dir.join("power_supply"),
        vcgencmd: dir.join("no-vcgencmd"),
        pmic_adc_file: None,
        nvml_library: Some(dir.join("no-libnvidia-ml.so.1")),
        powermetrics: dir.join("no-powermetrics"),
    }
}
