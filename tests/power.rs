//! Energy measurement: every backend on fake sysfs trees and captured tool output, the sampler's
//! integration and phase attribution on synthetic traces (checked against hand-computed numbers),
//! the report's above-idle and noise rules, and the null meter.
//!
//! The captured outputs in tests/data/power/ were written for these tests in the documented
//! formats of `vcgencmd pmic_read_adc` (Raspberry Pi 5) and `powermetrics` (macOS); no such device
//! was available to capture from.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use edgespec::power::report::{self, Flag, ReportOptions};

#[path = "common/power_env.rs"]
mod power_env;
use edgespec::power::{
    detect_in, parse_powermetrics, Domain, DomainKind, EstimateMeter, NullMeter, Phase, PowerChoice,
    PowerEnv, PowerLog, PowerMeter, PowermetricsMeter, Provenance, Reading, Replay, Sampler, Scope,
};
use power_env::env_in;

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("edgespec-power-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Write `contents` to `rel` (creating parent directories), with a trailing newline as sysfs has.
    fn put(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("{contents}\n")).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/power").join(name)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

fn read_all(m: &mut dyn PowerMeter) -> Vec<Reading> {
    let mut out = vec![Reading::Skip { reason: "unset" }; m.domains().len()];
    m.read(&mut out).unwrap();
    out
}

fn labels(m: &dyn PowerMeter) -> Vec<(String, Scope)> {
    m.domains().iter().map(|d| (d.label.clone(), d.scope)).collect()
}

// ---------------------------------------------------------------------------------------------
// The choice

#[test]
fn power_choices_parse_and_print() {
    let cases = [
        ("none", PowerChoice::None),
        ("auto", PowerChoice::Auto),
        ("rapl", PowerChoice::Rapl),
        ("hwmon", PowerChoice::Hwmon(None)),
        ("hwmon:ina3221", PowerChoice::Hwmon(Some("ina3221".into()))),
        ("battery", PowerChoice::Battery),
        ("pi5", PowerChoice::Pi5),
        ("nvml", PowerChoice::Nvml),
        ("powermetrics", PowerChoice::Powermetrics),
        ("csv:/tmp/fnb58 log.csv", PowerChoice::Csv("/tmp/fnb58 log.csv".into())),
        ("estimate:4.5W", PowerChoice::Estimate(4.5)),
    ];
    for (text, want) in cases {
        let got: PowerChoice = text.parse().unwrap();
        assert_eq!(got, want, "{text}");
        assert_eq!(got.to_string().parse::<PowerChoice>().unwrap(), want, "round trip of {text}");
    }
    for bad in ["", "rapl:0", "csv:", "csv", "estimate:", "estimate:-3", "estimate:nan", "hwmon:", "solar"] {
        assert!(bad.parse::<PowerChoice>().is_err(), "`{bad}` should be rejected");
    }
}

// ---------------------------------------------------------------------------------------------
// RAPL through powercap

/// A two-socket machine: packages with nested core zones and a dram zone, plus psys, plus an
/// mmio duplicate of package 0.
fn rapl_tree(t: &TempDir, wrap: u64) {
    for (zone, name, energy) in [
        ("intel-rapl:0", "package-0", 900_000u64),
        ("intel-rapl:0:0", "core", 500_000),
        ("intel-rapl:0:1", "dram", 100_000),
        ("intel-rapl:1", "package-1", 10_000),
        ("intel-rapl:1:0", "core", 5_000),
        ("intel-rapl:2", "psys", 2_000_000),
        ("intel-rapl-mmio:0", "package-0", 900_000),
    ] {
        t.put(&format!("powercap/{zone}/name"), name);
        t.put(&format!("powercap/{zone}/energy_uj"), &energy.to_string());
        t.put(&format!("powercap/{zone}/max_energy_range_uj"), &wrap.to_string());
    }
}

#[cfg(target_os = "linux")]
#[test]
fn rapl_zones_are_labelled_and_never_nested_into_a_sum() {
    let t = TempDir::new("rapl");
    rapl_tree(&t, 1_000_000);
    let m = detect_in(&PowerChoice::Rapl, &env_in(&t.0)).unwrap();
    assert_eq!(m.name(), "rapl");
    assert_eq!(
        labels(m.as_ref()),
        vec![
            ("package-0".to_string(), Scope::CpuPackage),
            ("package-0/core".to_string(), Scope::CpuCores),
            ("package-0/dram".to_string(), Scope::Dram),
            ("package-1".to_string(), Scope::CpuPackage),
            ("package-1/core".to_string(), Scope::CpuCores),
            ("psys".to_string(), Scope::Platform),
        ]
    );
    let d = m.domains();
    assert_eq!(d[1].within.as_deref(), Some("package-0"), "core sits inside its package");
    assert_eq!(d[2].within, None, "DRAM energy is not part of the package's");
    assert!(d.iter().all(|d| d.provenance == Provenance::MeasuredCounter && d.kind == DomainKind::Counter));
    assert!(m.notes().iter().any(|n| n.contains("intel-rapl-mmio")));

    // The sums the sampler forms: the two packages, never a core or the DRAM.
    let mut r = Replay::for_meter(m.as_ref(), Phase::Idle);
    let mut m = m;
    r.push(0.0, &read_all(m.as_mut()));
    t.put("powercap/intel-rapl:0/energy_uj", "950000");
    t.put("powercap/intel-rapl:1/energy_uj", "30000");
    r.push(1.0, &read_all(m.as_mut()));
    let out = r.finish(SystemTime::now());
    let total = out.domains.iter().position(|d| d.label.starts_with("total")).unwrap();
    assert_eq!(out.domains[total].label, "total cpu package (package-0 + package-1)");
    assert_eq!(out.domains.iter().filter(|d| d.label.starts_with("total")).count(), 1);
    let idle = out.phase(Phase::Idle).unwrap();
    assert!(close(idle.domains[total].energy_j, 0.07, 1e-12), "{:?}", idle.domains[total]);
    assert_eq!(out.headline_domain(), Some(5), "psys is the widest scope");
}

#[cfg(target_os = "linux")]
#[test]
fn rapl_counter_wraps_are_corrected() {
    let t = TempDir::new("rapl-wrap");
    rapl_tree(&t, 1_000_000);
    let mut m = detect_in(&PowerChoice::Rapl, &env_in(&t.0)).unwrap();
    let readings = read_all(m.as_mut());
    assert_eq!(readings[0], Reading::Counter { microjoules: 900_000, wraps_at: Some(1_000_000) });
    let mut r = Replay::for_meter(m.as_ref(), Phase::Idle);
    // package-0 runs at 1 W from 0.9 J: its counter passes the 1 J wrap limit three times in 2.5 s.
    let mut energy = 900_000u64;
    for step in 0..=25u32 {
        t.put("powercap/intel-rapl:0/energy_uj", &(energy % 1_000_000).to_string());
        if step == 10 {
            r.mark(1.0, Phase::Decode);
        }
        r.push(f64::from(step) * 0.1, &read_all(m.as_mut()));
        energy += 100_000;
    }
    let out = r.finish(SystemTime::now());
    let (idle, decode) = (out.phase(Phase::Idle).unwrap(), out.phase(Phase::Decode).unwrap());
    assert!(close(idle.domains[0].energy_j, 1.0, 1e-12), "{:?}", idle.domains[0]);
    assert!(close(decode.domains[0].energy_j, 1.5, 1e-12), "{:?}", decode.domains[0]);
    assert_eq!((idle.domains[0].wraps, decode.domains[0].wraps), (1, 2));
    assert!(close(decode.domains[0].mean_w, 1.0, 1e-9) && decode.domains[0].std_w < 1e-9);
}

#[cfg(target_os = "linux")]
#[test]
fn rapl_without_energy_files_says_why() {
    let t = TempDir::new("rapl-missing");
    t.put("powercap/intel-rapl:0/name", "package-0");
    t.put("powercap/intel-rapl:0/max_energy_range_uj", "262143328850");
    let err = detect_in(&PowerChoice::Rapl, &env_in(&t.0)).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("--power rapl") && msg.contains("no energy_uj"), "{msg}");

    let empty = TempDir::new("rapl-none");
    let msg = detect_in(&PowerChoice::Rapl, &env_in(&empty.0)).err().unwrap().to_string();
    assert!(msg.contains("no powercap driver"), "{msg}");
}

/// Opened by [`rapl_permission_denied_is_explained`] as an unprivileged user, with the fake tree
/// in `EDGESPEC_TEST_RAPL_DIR`; ignored in a normal run.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run by rapl_permission_denied_is_explained"]
fn rapl_permission_child() {
    let Some(dir) = std::env::var_os("EDGESPEC_TEST_RAPL_DIR") else { return };
    let err = detect_in(&PowerChoice::Rapl, &env_in(Path::new(&dir)))
        .err()
        .expect("an unreadable counter must fail");
    let msg = err.to_string();
    assert!(msg.contains("permission denied (root needed since Linux 5.10)"), "{msg}");
}

#[cfg(target_os = "linux")]
#[test]
fn rapl_permission_denied_is_explained() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new("rapl-perm");
    rapl_tree(&t, 262_143_328_850);
    for zone in
        ["intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:1", "intel-rapl:1:0", "intel-rapl:2"]
    {
        let p = t.0.join(format!("powercap/{zone}/energy_uj"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
    if !is_root {
        // Root-owned 0400 files are what Linux ≥ 5.10 has; a file we own with mode 000 reads the
        // same way for us.
        for zone in [
            "intel-rapl:0",
            "intel-rapl:0:0",
            "intel-rapl:0:1",
            "intel-rapl:1",
            "intel-rapl:1:0",
            "intel-rapl:2",
        ] {
            let p = t.0.join(format!("powercap/{zone}/energy_uj"));
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        }
        let msg = detect_in(&PowerChoice::Rapl, &env_in(&t.0)).err().unwrap().to_string();
        assert!(msg.contains("permission denied (root needed since Linux 5.10)"), "{msg}");
        return;
    }
    // As root every file is readable, exactly as on a real machine.
    assert!(detect_in(&PowerChoice::Rapl, &env_in(&t.0)).is_ok());
    // And as an unprivileged user (nobody) the same tree is refused with the reason.
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rapl_permission_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("EDGESPEC_TEST_RAPL_DIR", &t.0)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// hwmon

fn hwmon_tree(t: &TempDir) {
    // Jetson INA3221: channel 1 is the board input, 2 and 3 rails; 3 is marked not connected.
    t.put("hwmon/hwmon3/name", "ina3221");
    for (k, label, mv, ma) in [(1, "VDD_IN", 5008, 1198), (2, "VDD_CPU_GPU_CV", 4992, 401), (3, "NC", 0, 0)] {
        t.put(&format!("hwmon/hwmon3/in{k}_label"), label);
        t.put(&format!("hwmon/hwmon3/in{k}_input"), &mv.to_string());
        t.put(&format!("hwmon/hwmon3/curr{k}_input"), &ma.to_string());
    }
    t.put("hwmon/hwmon3/in4_input", "12"); // a shunt voltage: no current partner
                                           // AMD energy counters: a socket and a core inside it.
    t.put("hwmon/hwmon10/name", "amd_energy");
    t.put("hwmon/hwmon10/energy1_label", "Ecore000");
    t.put("hwmon/hwmon10/energy1_input", "123456");
    t.put("hwmon/hwmon10/energy17_label", "Esocket0");
    t.put("hwmon/hwmon10/energy17_input", "999999");
    // A GPU with only an average power file.
    t.put("hwmon/hwmon2/name", "amdgpu");
    t.put("hwmon/hwmon2/power1_average", "25000000");
    // Temperatures only.
    t.put("hwmon/hwmon0/name", "k10temp");
    t.put("hwmon/hwmon0/temp1_input", "45000");
    // A driver that does not say what its power covers.
    t.put("hwmon/hwmon11/name", "mystery");
    t.put("hwmon/hwmon11/power1_input", "1500000");
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn hwmon_sensors_found_by_name_with_scopes() {
    let t = TempDir::new("hwmon");
    hwmon_tree(&t);
    let mut m = detect_in(&PowerChoice::Hwmon(None), &env_in(&t.0)).unwrap();
    assert_eq!(
        labels(m.as_ref()),
        vec![
            ("amdgpu power1".to_string(), Scope::Gpu),
            ("ina3221 VDD_IN".to_string(), Scope::BoardInput),
            ("ina3221 VDD_CPU_GPU_CV".to_string(), Scope::BoardRails),
            ("amd_energy Ecore000".to_string(), Scope::CpuCores),
            ("amd_energy Esocket0".to_string(), Scope::CpuPackage),
            ("mystery power1".to_string(), Scope::Unknown),
        ]
    );
    let r = read_all(m.as_mut());
    let watts = |i: usize| match r[i] {
        Reading::Power { watts } => watts,
        other => panic!("domain {i}: {other:?}"),
    };
    assert!(close(watts(0), 25.0, 1e-12));
    assert!(close(watts(1), 5.008 * 1.198, 1e-12), "mV × mA");
    assert!(close(watts(2), 4.992 * 0.401, 1e-12));
    assert_eq!(r[3], Reading::Counter { microjoules: 123_456, wraps_at: None });
    assert_eq!(r[4], Reading::Counter { microjoules: 999_999, wraps_at: None });
    assert!(close(watts(5), 1.5, 1e-12));
    assert!(m.domains()[3].within.is_some(), "a core is inside its socket");

    // One driver by name, even of unknown scope.
    let only = detect_in(&PowerChoice::Hwmon(Some("mystery".into())), &env_in(&t.0)).unwrap();
    assert_eq!(only.name(), "hwmon:mystery");
    assert_eq!(labels(only.as_ref()), vec![("mystery power1".to_string(), Scope::Unknown)]);
    let err = detect_in(&PowerChoice::Hwmon(Some("ina226".into())), &env_in(&t.0)).err().unwrap();
    assert!(err.to_string().contains("named `ina226`"), "{err}");

    // Auto leaves the unknown sensor out (with a note) and prefers the counters: hwmon has the
    // AMD socket counter, which includes the CPU.
    let auto = detect_in(&PowerChoice::Auto, &env_in(&t.0)).unwrap();
    assert!(auto.name().starts_with("hwmon:"), "{}", auto.name());
    assert!(!auto.domains().iter().any(|d| d.scope == Scope::Unknown));
    assert!(auto.notes().iter().any(|n| n.contains("mystery power1")), "{:?}", auto.notes());
}

// ---------------------------------------------------------------------------------------------
// Battery

fn battery_tree(t: &TempDir, status: &str) {
    t.put("power_supply/AC/type", "Mains");
    t.put("power_supply/AC/online", "0");
    t.put("power_supply/BAT0/type", "Battery");
    t.put("power_supply/BAT0/status", status);
    t.put("power_supply/BAT0/power_now", "12500000");
    t.put("power_supply/BAT1/type", "Battery");
    t.put("power_supply/BAT1/status", status);
    t.put("power_supply/BAT1/current_now", "-1000000"); // some drivers sign the discharge
    t.put("power_supply/BAT1/voltage_now", "11000000");
    t.put("power_supply/hidpp_battery_0/type", "Battery"); // a mouse: no power figures
    t.put("power_supply/hidpp_battery_0/status", status);
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn battery_counts_only_while_discharging() {
    let t = TempDir::new("battery");
    battery_tree(&t, "Discharging");
    let mut m = detect_in(&PowerChoice::Battery, &env_in(&t.0)).unwrap();
    assert_eq!(
        labels(m.as_ref()),
        vec![("BAT0".to_string(), Scope::Battery), ("BAT1".to_string(), Scope::Battery)]
    );
    assert_eq!(read_all(m.as_mut()), vec![Reading::Power { watts: 12.5 }, Reading::Power { watts: 11.0 }]);
    assert_eq!(detect_in(&PowerChoice::Auto, &env_in(&t.0)).unwrap().name(), "battery");

    // Two seconds on battery, then the charger is plugged in for two more.
    let mut r = Replay::for_meter(m.as_ref(), Phase::Decode);
    for step in 0..=40u32 {
        if step == 21 {
            battery_tree(&t, "Charging");
        }
        r.push(f64::from(step) * 0.1, &read_all(m.as_mut()));
    }
    r.stop(4.0);
    let out = r.finish(SystemTime::now());
    let total = out.headline_domain().unwrap();
    assert_eq!(out.domains[total].label, "total battery (BAT0 + BAT1)");
    let d = &out.phase(Phase::Decode).unwrap().domains[total];
    assert!(close(d.energy_j, 23.5 * 2.0, 1e-9) && close(d.covered_s, 2.0, 1e-9), "{d:?}");
    assert_eq!(d.skipped, 20);
    assert!(d.skip_reason.unwrap().contains("not discharging"));
    // Per-token figures are withheld at 50 % coverage.
    let fig = report::headline(&out, Phase::Decode, 100, ReportOptions::default()).unwrap();
    assert_eq!(fig.joules_per_token, None);
    assert!(fig.flags.iter().any(|f| matches!(f, Flag::PartialCoverage(c) if close(*c, 0.5, 1e-9))));
    assert!(close(fig.average_w, 23.5, 1e-9));

    // On a charger, auto will not pick the battery, and says why.
    let auto = detect_in(&PowerChoice::Auto, &env_in(&t.0)).unwrap();
    let why = auto.unavailable().unwrap();
    assert!(why.contains("battery: on external power"), "{why}");
}

// ---------------------------------------------------------------------------------------------
// Raspberry Pi 5 PMIC

#[cfg(target_os = "linux")]
#[test]
fn pmic_rails_pair_by_name_and_skip_nan_and_unpaired() {
    use edgespec::power::{parse_pmic_adc, Pi5Meter, PmicSource};
    let text = std::fs::read_to_string(data("pmic_read_adc.txt")).unwrap();
    let r = parse_pmic_adc(&text).unwrap();
    // (rail, volts, amps) as in the file; currents and voltages sit on different channel numbers.
    let expected = [
        ("0V8_SYS", 0.80219520, 0.30890280),
        ("1V1_SYS", 1.10622600, 0.18642100),
        ("1V8_SYS", 1.79824800, 0.16787600),
        ("3V3_ADC", 3.31099200, 0.00048840),
        ("3V3_SYS", 3.30327600, 0.05172429),
        ("3V7_WL_SW", 3.71216800, 0.00390372),
        ("DDR_VDD2", 1.11355200, 0.02147526),
        ("DDR_VDDQ", 0.60546000, 0.0),
        ("VDD_CORE", 0.72, 0.75),
    ];
    let got: Vec<(&str, f64, f64)> = r.rails.iter().map(|x| (x.name.as_str(), x.volts, x.amps)).collect();
    assert_eq!(got, expected.to_vec());
    assert_eq!(r.nan, vec!["3V3_DAC".to_string(), "HDMI".to_string()]);
    assert_eq!(r.unpaired, ["0V8_AON", "1V8_AON", "BATT", "EXT5V"].map(String::from).to_vec());
    let want: f64 = expected.iter().map(|(_, v, a)| v * a).sum();
    assert!(close(r.total_watts(), want, 1e-12));
    assert!(close(r.total_watts(), 1.506_788_559, 1e-9), "{}", r.total_watts());

    // The order of lines does not matter, only the names.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.reverse();
    assert_eq!(parse_pmic_adc(&lines.join("\n")).unwrap(), r);
    assert!(parse_pmic_adc("throttled=0x0\n").is_err());

    // As a meter on the captured output, through the environment override.
    let env =
        PowerEnv { pmic_adc_file: Some(data("pmic_read_adc.txt")), ..env_in(Path::new("/nonexistent")) };
    let mut m = detect_in(&PowerChoice::Pi5, &env).unwrap();
    assert_eq!(labels(m.as_ref()), vec![("PMIC rails (sum of V·I)".to_string(), Scope::BoardRails)]);
    assert_eq!(m.domains()[0].provenance, Provenance::MeasuredSampled);
    assert_eq!(read_all(m.as_mut()), vec![Reading::Power { watts: r.total_watts() }]);
    let notes = m.notes().join("\n");
    assert!(notes.contains("9 paired rails") && notes.contains("EXT5V") && notes.contains("HDMI"), "{notes}");

    // A source that fails mid-run gives skipped readings, not numbers.
    let mut calls = 0;
    let mut flaky = Pi5Meter::open(PmicSource::Func(Box::new(move || {
        calls += 1;
        if calls == 1 {
            Ok("VDD_CORE_A current(7)=1.0A\nVDD_CORE_V volt(15)=0.8V\n".into())
        } else {
            Err(edgespec::Error::unsupported("vcgencmd went away"))
        }
    })))
    .unwrap();
    assert!(matches!(read_all(&mut flaky)[0], Reading::Skip { .. }));
}

// ---------------------------------------------------------------------------------------------
// NVML (a stand-in library built from tests/data/power/fake_nvml.c with the C compiler rustc
// links with; the real libnvidia-ml needs an NVIDIA driver)

#[cfg(target_os = "linux")]
#[test]
fn nvml_counters_through_dlopen() {
    use edgespec::power::NvmlMeter;
    let t = TempDir::new("nvml");
    let lib = t.0.join("libnvidia-ml-fake.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = std::process::Command::new(&cc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(data("fake_nvml.c"))
        .status()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    assert!(status.success());
    let env = PowerEnv { nvml_library: Some(lib.clone()), ..env_in(&t.0) };
    let mut m = detect_in(&PowerChoice::Nvml, &env).unwrap();
    assert_eq!(m.name(), "nvml");
    assert_eq!(labels(m.as_ref()), vec![("gpu0 Fake GPU Zero".to_string(), Scope::Gpu)]);
    assert_eq!(m.domains()[0].provenance, Provenance::MeasuredCounter);
    assert!(
        m.notes().iter().any(|n| n.contains("gpu1 Fake GPU One") && n.contains("Volta")),
        "{:?}",
        m.notes()
    );
    // open() read the counter once (100 500 mJ); this is the second call: 101 000 mJ, in µJ.
    assert_eq!(read_all(m.as_mut()), vec![Reading::Counter { microjoules: 101_000_000, wraps_at: None }]);
    assert_eq!(read_all(m.as_mut()), vec![Reading::Counter { microjoules: 101_500_000, wraps_at: None }]);
    drop(m);
    // Auto takes a GPU-only meter when it is all there is, but any meter that sees the CPU (here a
    // sampled battery) comes first, counter or not: the CPU is where edgespec runs.
    let auto = detect_in(&PowerChoice::Auto, &env).unwrap();
    assert_eq!(auto.name(), "nvml");
    drop(auto);
    battery_tree(&t, "Discharging");
    assert_eq!(detect_in(&PowerChoice::Auto, &env).unwrap().name(), "battery");
    // A library without the NVML symbols is refused with the reason.
    let other_c = t.put("other.c", "int unrelated(void) { return 0; }");
    let other = t.0.join("libother.so");
    let status =
        std::process::Command::new(&cc).args(["-shared", "-fPIC", "-o"]).arg(&other).arg(&other_c).status();
    assert!(status.unwrap().success());
    let err = NvmlMeter::open(Some(&other)).err().unwrap();
    assert!(err.to_string().contains("has no nvmlInit_v2"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// macOS powermetrics (captured output)

#[test]
fn powermetrics_blocks_become_modelled_energy() {
    let text = std::fs::read_to_string(data("powermetrics_apple.txt")).unwrap();
    let blocks = parse_powermetrics(&text);
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[0].elapsed_s, Some(0.20041));
    assert_eq!(blocks[0].cpu_w, Some(5.123));
    assert_eq!(blocks[0].gpu_w, Some(0.041));
    assert_eq!(blocks[0].ane_w, Some(0.0));
    assert_eq!(blocks[1].combined_w, Some(5.338));
    assert_eq!(blocks[2].combined_w, Some(0.624));
    assert_eq!(blocks[2].package_w, None);

    let file = std::fs::File::open(data("powermetrics_apple.txt")).unwrap();
    let mut m =
        PowermetricsMeter::from_reader(std::io::BufReader::new(file), Duration::from_millis(200)).unwrap();
    assert_eq!(
        labels(&m),
        vec![
            ("combined CPU+GPU+ANE".to_string(), Scope::Soc),
            ("CPU".to_string(), Scope::CpuPackage),
            ("GPU".to_string(), Scope::Gpu),
            ("ANE".to_string(), Scope::Accelerator),
        ]
    );
    assert!(m.domains().iter().all(|d| d.provenance == Provenance::VendorModelled));
    // The reader thread has the whole file; wait until every block is in.
    let want_uj = (5.164 * 0.20041 + 5.338 * 0.20107 + 0.624 * 0.19962) * 1e6;
    let counter = |r: Reading| match r {
        Reading::Counter { microjoules, wraps_at: None } => microjoules as f64,
        other => panic!("{other:?}"),
    };
    let mut got = counter(read_all(&mut m)[0]);
    for _ in 0..200 {
        if (got - want_uj).abs() <= 1.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        got = counter(read_all(&mut m)[0]);
    }
    assert!((got - want_uj).abs() <= 1.0, "{got} µJ, want {want_uj}");

    let intel = parse_powermetrics(&std::fs::read_to_string(data("powermetrics_intel.txt")).unwrap());
    assert_eq!(intel.len(), 2);
    assert_eq!(intel[0].package_w, Some(1.63));
    assert_eq!(intel[1].package_w, Some(14.2));
    assert_eq!(intel[1].elapsed_s, Some(1.00188));
    assert!(PowermetricsMeter::from_reader(
        std::io::Cursor::new("no power here\n"),
        Duration::from_millis(200)
    )
    .is_err());
}

// ---------------------------------------------------------------------------------------------
// External meter log (CSV)

#[test]
fn csv_log_integrates_a_wall_clock_window() {
    let log = PowerLog::parse(
        "# exported from a USB meter\n\
         timestamp,power_w\n\
         1700000000.0,2.0\n1700000001.0,4.0\n1700000002.0,4.0\n1700000003.0,2.0\n",
    )
    .unwrap();
    let at = |s: f64| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s);
    // [0.5, 1]: 3→4 W; [1, 2]: 4 W; [2, 2.5]: 4→3 W.
    let w = log.integrate(at(1_700_000_000.5), at(1_700_000_002.5));
    assert!(close(w.energy_j, 0.5 * 3.5 + 4.0 + 0.5 * 3.5, 1e-9), "{w:?}");
    assert!(close(w.covered_s, 2.0, 1e-9) && w.samples == 2);
    // A window running past the log's end is only partly covered.
    let w = log.integrate(at(1_700_000_002.0), at(1_700_000_005.0));
    assert!(close(w.energy_j, 3.0, 1e-9) && close(w.covered_s, 1.0, 1e-9), "{w:?}");

    // Voltage and current in RFC 3339 rows, semicolon-separated, mA.
    let vi = PowerLog::parse(
        "Time;Voltage(V);Current(mA)\n\
         2024-05-01T12:00:00Z;5.0;400\n\
         2024-05-01 14:00:01.000+02:00;5.0;600\n",
    )
    .unwrap();
    assert_eq!(vi.samples().len(), 2);
    assert!(close(vi.samples()[0].watts, 2.0, 1e-12) && close(vi.samples()[1].watts, 3.0, 1e-12));
    let t0 = at(1_714_564_800.0); // 2024-05-01T12:00:00Z
    assert_eq!(vi.samples()[0].at, t0);
    assert!(close(vi.integrate(t0, at(1_714_564_801.0)).energy_j, 2.5, 1e-9));

    // Relative times cannot be aligned with the run.
    let err = PowerLog::parse("time,power\n0.0,2.0\n0.1,2.0\n").unwrap_err();
    assert!(err.to_string().contains("relative"), "{err}");
    assert!(PowerLog::parse("when,power\n1700000000,1\n").is_err());
    assert!(PowerLog::parse("time,volts\n1700000000,5\n").is_err());
    assert!(PowerLog::parse("time,power\n1700000000,abc\n").is_err());
}

#[test]
fn csv_meter_splits_the_log_across_marked_phases() {
    let t = TempDir::new("csv");
    let path = t.0.join("meter.csv");
    let m = detect_in(&PowerChoice::Csv(path.clone()), &env_in(&t.0)).unwrap();
    assert!(m.is_offline());
    let started = SystemTime::now();
    let s = Sampler::start(m, Phase::Idle).unwrap();
    std::thread::sleep(Duration::from_millis(120));
    s.mark(Phase::Decode);
    std::thread::sleep(Duration::from_millis(120));
    // The meter's export: 5 W every 10 ms from a second before the run to a second after.
    let from = started.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64() - 1.0;
    let mut csv = String::from("unix,watts\n");
    for i in 0..=250 {
        csv.push_str(&format!("{:.3},5.0\n", from + f64::from(i) * 0.01));
    }
    std::fs::write(&path, csv).unwrap();
    let out = s.stop().unwrap();
    assert!(out.unavailable.is_none(), "{:?}", out.unavailable);
    for phase in [Phase::Idle, Phase::Decode] {
        let p = out.phase(phase).unwrap();
        let e = &p.domains[0];
        assert!(p.duration_s > 0.1, "{p:?}");
        assert!(close(e.covered_s, p.duration_s, 1e-9), "{phase}: {e:?} vs {}", p.duration_s);
        assert!(close(e.energy_j, 5.0 * p.duration_s, 1e-9), "{phase}: {e:?}");
        assert!(close(out.period.as_secs_f64(), 0.01, 1e-4), "the log's sample spacing: {:?}", out.period);
    }
    // Without the file at the end of the run the measurement says why.
    let s = Sampler::start(Box::new(edgespec::power::CsvMeter::new(&t.0.join("absent.csv"))), Phase::Decode)
        .unwrap();
    let out = s.stop().unwrap();
    assert!(out.to_string().starts_with("energy: unavailable (csv:"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Integration and phase attribution on synthetic traces

fn power_domain(label: &str) -> Domain {
    Domain {
        label: label.into(),
        scope: Scope::BoardRails,
        provenance: Provenance::MeasuredSampled,
        kind: DomainKind::Power,
        within: None,
    }
}

/// ∫ of the piecewise-linear interpolant of `samples` over [a, b], computed by fine midpoint
/// sums on each piece (an independent check of the trapezoid-and-split code).
fn reference_integral(samples: &[(f64, f64)], a: f64, b: f64) -> f64 {
    let mut total = 0.0;
    for w in samples.windows(2) {
        let ((t0, p0), (t1, p1)) = (w[0], w[1]);
        let (lo, hi) = (t0.max(a), t1.min(b));
        if hi <= lo {
            continue;
        }
        let n = 1000;
        let h = (hi - lo) / n as f64;
        for i in 0..n {
            let t = lo + (i as f64 + 0.5) * h;
            total += (p0 + (p1 - p0) * (t - t0) / (t1 - t0)) * h;
        }
    }
    total
}

#[test]
fn power_trace_is_integrated_and_split_at_the_marks() {
    // 10 Hz samples: idle alternates 1.9/2.1 W for 10 s, prefill 8 W, decode 5 W.
    let mut samples = Vec::new();
    for i in 0..=250u32 {
        let t = f64::from(i) * 0.1;
        let p = if t < 10.0 - 1e-9 {
            if i % 2 == 0 {
                1.9
            } else {
                2.1
            }
        } else if t < 12.0 - 1e-9 {
            8.0
        } else {
            5.0
        };
        samples.push((t, p));
    }
    let mut r = Replay::new("synthetic", &[power_domain("rail")], Duration::from_millis(100), Phase::Idle);
    let marks = [(10.03, Phase::Prefill), (12.07, Phase::Decode)];
    let mut next_mark = 0;
    for &(t, p) in &samples {
        while let Some(&(tm, phase)) = marks.get(next_mark).filter(|m| m.0 <= t) {
            r.mark(tm, phase);
            next_mark += 1;
        }
        r.push(t, &[Reading::Power { watts: p }]);
    }
    r.stop(25.0);
    let out = r.finish(SystemTime::now());
    let bounds = [(Phase::Idle, 0.0, 10.03), (Phase::Prefill, 10.03, 12.07), (Phase::Decode, 12.07, 25.0)];
    let mut sum = 0.0;
    for (phase, a, b) in bounds {
        let p = out.phase(phase).unwrap();
        let e = &p.domains[0];
        assert!(close(p.duration_s, b - a, 1e-12), "{phase} duration {}", p.duration_s);
        assert!(close(e.covered_s, b - a, 1e-12));
        let want = reference_integral(&samples, a, b);
        assert!(close(e.energy_j, want, 1e-9), "{phase}: {} vs {want}", e.energy_j);
        sum += e.energy_j;
    }
    // Hand check. Idle: 99 intervals alternating 1.9/2.1 W (2 W on average), the 9.9–10.0 s
    // ramp from 2.1 to 8 W, then 8 W to the mark. Prefill: 8 W to 11.9 s, the ramp to 5 W, 5 W
    // to the mark. Decode: 5 W.
    let energy = |phase| out.phase(phase).unwrap().domains[0].energy_j;
    assert!(close(energy(Phase::Idle), 9.9 * 2.0 + 0.1 * (2.1 + 8.0) / 2.0 + 0.03 * 8.0, 1e-9));
    assert!(close(energy(Phase::Prefill), 8.0 * (11.9 - 10.03) + 0.1 * (8.0 + 5.0) / 2.0 + 0.07 * 5.0, 1e-9));
    assert!(close(energy(Phase::Decode), 5.0 * (25.0 - 12.07), 1e-9));
    assert!(close(sum, reference_integral(&samples, 0.0, 25.0), 1e-9));
    // Idle noise statistics: the samples taken inside the idle phase (t = 0 … 10.0 s).
    let idle = &out.phase(Phase::Idle).unwrap().domains[0];
    assert_eq!(idle.samples, 101);
    assert!(close(idle.mean_w, (50.0 * 1.9 + 50.0 * 2.1 + 8.0) / 101.0, 1e-12), "{}", idle.mean_w);
    assert_eq!(
        out.timeline.iter().map(|s| (s.phase, s.start_s, s.end_s)).collect::<Vec<_>>(),
        bounds.to_vec()
    );
}

#[test]
fn counter_trace_with_a_gap_and_a_late_mark() {
    let d =
        Domain { kind: DomainKind::Counter, provenance: Provenance::MeasuredCounter, ..power_domain("c") };
    let mut r = Replay::new("synthetic", &[d], Duration::from_millis(100), Phase::Load);
    // 3 W; wraps at 10 J; one failed read at 0.5 s is bridged by the next delta.
    for i in 0..=20u32 {
        let t = f64::from(i) * 0.1;
        if i == 12 {
            r.mark(1.13, Phase::Idle);
        }
        let reading = if i == 5 {
            Reading::Skip { reason: "EIO" }
        } else {
            Reading::Counter {
                microjoules: (9_000_000 + (3e6 * t).round() as u64) % 10_000_000,
                wraps_at: Some(9_999_999),
            }
        };
        r.push(t, &[reading]);
    }
    let out = r.finish(SystemTime::now());
    let (load, idle) =
        (&out.phase(Phase::Load).unwrap().domains[0], &out.phase(Phase::Idle).unwrap().domains[0]);
    // The mark at 1.13 s comes after the 1.1 s reading and before the 1.2 s one: it splits that
    // interval exactly. The wrap costs one µJ (the limit is 9 999 999, the modulus 10 000 000).
    assert!(close(load.energy_j, 3.0 * 1.13, 1e-6), "{load:?}");
    assert!(close(idle.energy_j, 3.0 * 0.87, 1e-6), "{idle:?}");
    assert_eq!(load.skipped, 1);
    assert_eq!(load.wraps + idle.wraps, 1);
    assert!(close(load.covered_s, 1.13, 1e-12), "a counter loses nothing over a missed read");
    assert_eq!(load.resets, 0);
}

// ---------------------------------------------------------------------------------------------
// Report

/// A measurement with an idle phase (2 W ± 0.1) and a decode phase at `decode_w`, 10 s each.
fn idle_then_decode(decode_w: f64) -> edgespec::power::Measurement {
    let mut r = Replay::new("synthetic", &[power_domain("rail")], Duration::from_millis(100), Phase::Idle);
    for i in 0..=200u32 {
        let t = f64::from(i) * 0.1;
        if i == 100 {
            r.mark(10.0, Phase::Decode);
        }
        let p = if i < 100 {
            if i % 2 == 0 {
                1.9
            } else {
                2.1
            }
        } else {
            decode_w
        };
        r.push(t, &[Reading::Power { watts: p }]);
    }
    r.finish(SystemTime::now())
}

#[test]
fn report_gives_per_token_and_above_idle_figures() {
    let m = idle_then_decode(5.0);
    let f = report::headline(&m, Phase::Decode, 100, ReportOptions::default()).unwrap();
    // Decode: 10 s at 5 W (the ramp from the last idle sample ends at the mark).
    let energy = 50.0;
    assert!(close(f.energy_j, energy, 1e-12), "{}", f.energy_j);
    assert!(close(f.duration_s, 10.0, 1e-12) && close(f.average_w, energy / 10.0, 1e-12));
    assert!(close(f.joules_per_token.unwrap(), energy / 100.0, 1e-12));
    assert!(close(f.tokens_per_joule.unwrap(), 100.0 / energy, 1e-12));
    let a = f.above_idle.as_ref().unwrap();
    let idle = m.phase(Phase::Idle).unwrap();
    let idle_w = idle.domains[0].energy_j / 10.0;
    assert!(close(a.idle_w, idle_w, 1e-12) && close(idle_w, 2.0, 1e-2));
    assert!(close(a.energy_j, energy - idle_w * 10.0, 1e-12));
    assert!(close(a.joules_per_token.unwrap(), a.energy_j / 100.0, 1e-12));
    // σ of 50 samples at 1.9 W and 50 at 2.1 W: 0.1 × √(100/99).
    let sigma = idle.domains[0].std_w;
    assert!(close(sigma, 0.1 * (100.0f64 / 99.0).sqrt(), 1e-9), "{sigma}");
    assert!(close(a.noise_j.unwrap(), 2.0 * sigma * 10.0, 1e-12));
    assert!(!f.flags.contains(&Flag::WithinIdleNoise), "{:?}", f.flags);
    let line = f.to_string();
    assert!(
        line.starts_with("decode: ") && line.contains("J/token") && line.contains("above idle"),
        "{line}"
    );
    assert!(!line.contains("ESTIMATE"));

    // Decode at 2.05 W is within the idle noise: 2 × σ × T ≈ 2 J > (2.05 − 2.0) × 10 J.
    let m = idle_then_decode(2.05);
    let f = report::headline(&m, Phase::Decode, 100, ReportOptions::default()).unwrap();
    assert!(f.flags.contains(&Flag::WithinIdleNoise), "{:?}", f.flags);
    assert!(f.to_string().contains("within idle noise"));

    // No idle phase: figures without the above-idle part, flagged.
    let f = report::token_energy(&m, Phase::Decode, 0, 0, None, ReportOptions::default()).unwrap();
    assert!(f.above_idle.is_none() && f.joules_per_token.is_none());
    assert!(f.flags.contains(&Flag::NoIdleBaseline) && f.flags.contains(&Flag::NoTokens));
    // A phase the run never entered.
    assert!(report::headline(&m, Phase::Prefill, 10, ReportOptions::default()).is_err());
}

#[test]
fn estimates_only_on_request_and_always_labelled() {
    let mut meter = EstimateMeter::new(6.0).unwrap();
    assert!(EstimateMeter::new(0.0).is_err() && EstimateMeter::new(f64::NAN).is_err());
    let mut r = Replay::for_meter(&meter, Phase::Decode);
    for i in 0..=100u32 {
        r.push(f64::from(i) * 0.1, &read_all(&mut meter));
    }
    let m = r.finish(SystemTime::now());
    let refused = report::headline(&m, Phase::Decode, 50, ReportOptions::default()).unwrap_err();
    assert!(refused.to_string().contains("estimates were not requested"), "{refused}");
    let f = report::headline(&m, Phase::Decode, 50, ReportOptions { allow_estimates: true }).unwrap();
    assert!(f.flags.contains(&Flag::Estimate));
    assert!(close(f.energy_j, 60.0, 1e-12));
    assert!(f.to_string().starts_with("ESTIMATE decode: "), "{f}");
}

// ---------------------------------------------------------------------------------------------
// The null meter, auto on nothing, and the live sampler

#[test]
fn null_meter_says_unavailable_and_never_a_number() {
    let t = TempDir::new("null");
    let m = detect_in(&PowerChoice::None, &env_in(&t.0)).unwrap();
    assert_eq!(m.unavailable(), Some("disabled by --power none"));
    assert!(m.domains().is_empty());
    let s = Sampler::start(m, Phase::Idle).unwrap();
    s.mark(Phase::Decode);
    let out = s.stop().unwrap();
    assert_eq!(out.to_string(), "energy: unavailable (disabled by --power none)");
    assert_eq!(out.polls, 0);
    let e = report::headline(&out, Phase::Decode, 100, ReportOptions { allow_estimates: true }).unwrap_err();
    assert_eq!(e.to_string(), "energy: unavailable (disabled by --power none)");
    assert_eq!(NullMeter::new("x").reason(), "x");

    // Auto over empty trees: the null meter, with every backend's reason.
    let auto = detect_in(&PowerChoice::Auto, &env_in(&t.0)).unwrap();
    let why = auto.unavailable().unwrap().to_string();
    #[cfg(target_os = "linux")]
    for backend in ["rapl:", "hwmon:", "pi5:", "battery:", "nvml:"] {
        assert!(why.contains(backend), "{backend} missing from: {why}");
    }
    assert!(why.starts_with("no meter found"), "{why}");
}

#[test]
fn live_sampler_attributes_constant_power_exactly() {
    let meter = Box::new(EstimateMeter::new(10.0).unwrap());
    let s = Sampler::start(meter, Phase::Load).unwrap();
    for phase in [Phase::Idle, Phase::Prefill, Phase::Decode, Phase::Label("custom")] {
        std::thread::sleep(Duration::from_millis(60));
        s.mark(phase);
    }
    std::thread::sleep(Duration::from_millis(60));
    let out = s.stop().unwrap();
    assert_eq!(out.dropped_marks, 0);
    assert_eq!(out.phases.iter().map(|p| p.phase).collect::<Vec<_>>().len(), 5);
    let mut covered = 0.0;
    for p in &out.phases {
        let e = &p.domains[0];
        // Constant power: energy is exactly W × covered time, whatever the sampling times.
        assert!(close(e.energy_j, 10.0 * e.covered_s, 1e-9), "{p:?}");
        assert!(p.duration_s >= 0.05, "{p:?}");
        covered += e.covered_s;
    }
    let total: f64 = out.phases.iter().map(|p| p.duration_s).sum();
    let end = out.timeline.last().unwrap().end_s;
    assert!(close(total, end, 1e-12));
    // Only the instant before the first reading (thread start-up) is uncovered.
    assert!(total - covered < 0.02, "{total} vs {covered}");
    assert!(out.polls >= 5, "boundary readings at each mark: {}", out.polls);
}

/// Counts the allocations made by one watched thread (the test's), to hold `Sampler::mark` to
/// its promise of none.
#[cfg(target_os = "linux")]
mod alloc_watch {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

    pub static WATCHED: AtomicI64 = AtomicI64::new(-1);
    pub static COUNT: AtomicU64 = AtomicU64::new(0);

    pub struct Counting;

    // SAFETY: defers to the system allocator; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: gettid has no preconditions.
            if WATCHED.load(Ordering::Relaxed) == i64::from(unsafe { libc::gettid() }) {
                COUNT.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;
}

#[cfg(target_os = "linux")]
#[test]
fn marking_a_phase_does_not_allocate() {
    use std::sync::atomic::Ordering;
    let s = Sampler::start(Box::new(EstimateMeter::new(3.0).unwrap()), Phase::Idle).unwrap();
    s.mark(Phase::Prefill); // the first send, outside the watch
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: gettid has no preconditions.
    alloc_watch::WATCHED.store(i64::from(unsafe { libc::gettid() }), Ordering::SeqCst);
    // The watch sees this thread's allocations…
    drop(std::hint::black_box(Vec::<u8>::with_capacity(16)));
    assert_eq!(alloc_watch::COUNT.swap(0, Ordering::SeqCst), 1);
    // …and none while marking.
    for i in 0..2000 {
        s.mark(if i % 2 == 0 { Phase::Decode } else { Phase::Label("verify") });
    }
    alloc_watch::WATCHED.store(-1, Ordering::SeqCst);
    let allocations = alloc_watch::COUNT.load(Ordering::SeqCst);
    let out = s.stop().unwrap();
    assert_eq!(allocations, 0, "Sampler::mark allocated");
    assert_eq!(out.dropped_marks, 0);
    assert_eq!(out.timeline.len(), 2002);
}

#[test]
fn detect_auto_on_this_machine() {
    let m = edgespec::power::detect(&PowerChoice::Auto).unwrap();
    println!("detect(auto): meter `{}`", m.name());
    match m.unavailable() {
        Some(why) => {
            println!("  energy: unavailable ({why})");
            assert!(m.domains().is_empty());
            assert!(why.starts_with("no meter found"));
        }
        None => {
            assert!(!m.domains().is_empty());
            for d in m.domains() {
                println!("  {} [{}, {}]", d.label, d.scope, d.provenance);
            }
        }
    }
    if let Ok(Some(p)) = edgespec::platform::current_profile() {
        println!("platform profile: {} ({}), threads {}", p.name, p.description, p.thread_count());
    }
}
