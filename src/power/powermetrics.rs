//! macOS `powermetrics` (run as root): Apple's modelled CPU, GPU, ANE and combined power.
//!
//! `powermetrics --samplers cpu_power,gpu_power -i MS` prints a block per interval, headed
//! `*** Sampled system activity (DATE) (1004.09ms elapsed) ***`, with lines such as
//! `CPU Power: 823 mW`, `GPU Power: 26 mW`, `ANE Power: 0 mW`,
//! `Combined Power (CPU + GPU + ANE): 849 mW` (Apple silicon) or
//! `Intel energy model derived package power (CPUs+GT+SA): 1.63W` (Intel Macs). Each figure is the
//! average over the block's elapsed time, so the meter turns blocks into energy (W × elapsed) and
//! reports cumulative counters; energy is credited when a block is printed, which blurs phase
//! boundaries by up to one interval. The figures come from Apple's power model, not a sensor:
//! provenance is vendor-modelled. The parser is plain text and compiled everywhere (tested on
//! captured output); only starting the process is macOS-only.

use std::io::BufRead;
use std::process::Child;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use super::{Domain, DomainKind, PowerMeter, Provenance, Reading, Scope};
use crate::error::{Error, Result};

/// One `powermetrics` sample block (watts; `None` where the block has no such line).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PowermetricsSample {
    /// The block's interval, from its header, in seconds.
    pub elapsed_s: Option<f64>,
    pub cpu_w: Option<f64>,
    pub gpu_w: Option<f64>,
    pub ane_w: Option<f64>,
    pub dram_w: Option<f64>,
    /// `Combined Power (CPU + GPU + ANE)`.
    pub combined_w: Option<f64>,
    /// Intel Macs: `Intel energy model derived package power (CPUs+GT+SA)`.
    pub package_w: Option<f64>,
}

impl PowermetricsSample {
    fn has_power(&self) -> bool {
        Field::ALL.iter().any(|f| f.get(self).is_some())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Combined,
    Package,
    Cpu,
    Gpu,
    Ane,
    Dram,
}

impl Field {
    const ALL: [Field; 6] =
        [Field::Combined, Field::Package, Field::Cpu, Field::Gpu, Field::Ane, Field::Dram];

    fn get(self, s: &PowermetricsSample) -> Option<f64> {
        match self {
            Field::Combined => s.combined_w,
            Field::Package => s.package_w,
            Field::Cpu => s.cpu_w,
            Field::Gpu => s.gpu_w,
            Field::Ane => s.ane_w,
            Field::Dram => s.dram_w,
        }
    }

    fn domain(self, has_combined: bool) -> Domain {
        let within = |inside: bool| (inside && has_combined).then(|| "combined CPU+GPU+ANE".to_string());
        let (label, scope, within) = match self {
            Field::Combined => ("combined CPU+GPU+ANE", Scope::Soc, None),
            Field::Package => ("package (CPUs+GT+SA)", Scope::CpuPackage, None),
            Field::Cpu => ("CPU", Scope::CpuPackage, within(true)),
            Field::Gpu => ("GPU", Scope::Gpu, within(true)),
            Field::Ane => ("ANE", Scope::Accelerator, within(true)),
            Field::Dram => ("DRAM", Scope::Dram, None),
        };
        Domain {
            label: label.into(),
            scope,
            provenance: Provenance::VendorModelled,
            kind: DomainKind::Counter,
            within,
        }
    }
}

/// `823 mW`, `823mW`, `1.63W`, `1.63 W` → watts.
fn parse_power(value: &str) -> Option<f64> {
    let v = value.trim();
    // Divided, not multiplied by 1e-3, so "823 mW" gives exactly the double nearest 0.823.
    let (number, divisor) = if let Some(n) = v.strip_suffix("mW") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('W') {
        (n, 1.0)
    } else {
        return None;
    };
    number.trim().parse::<f64>().ok().filter(|w| w.is_finite()).map(|w| w / divisor)
}

/// `... (1004.09ms elapsed) ***` → 1.00409.
fn parse_elapsed(header: &str) -> Option<f64> {
    let end = header.find("ms elapsed)")?;
    let start = header.get(..end)?.rfind('(')? + 1;
    header.get(start..end)?.trim().parse::<f64>().ok().map(|ms| ms / 1e3)
}

/// Apply one output line to the block being built. Returns true for a block header.
fn apply_line(line: &str, block: &mut PowermetricsSample) -> bool {
    let line = line.trim();
    if line.starts_with("*** Sampled system activity") {
        return true;
    }
    let Some((key, value)) = line.split_once(':') else { return false };
    let slot = match key.trim() {
        "CPU Power" => &mut block.cpu_w,
        "GPU Power" => &mut block.gpu_w,
        "ANE Power" => &mut block.ane_w,
        "DRAM Power" => &mut block.dram_w,
        "Combined Power (CPU + GPU + ANE)" => &mut block.combined_w,
        "Intel energy model derived package power (CPUs+GT+SA)" => &mut block.package_w,
        _ => return false,
    };
    // `GPU Power` can appear in both the CPU and the GPU sampler's section: keep the first.
    if slot.is_none() {
        *slot = parse_power(value);
    }
    false
}

/// Parse captured `powermetrics` text into its sample blocks (blocks without any power line are
/// dropped; power lines before the first header form a block of unknown length).
pub fn parse_powermetrics(text: &str) -> Vec<PowermetricsSample> {
    let mut out = Vec::new();
    let mut block = PowermetricsSample::default();
    for line in text.lines() {
        if apply_line(line, &mut block) {
            let next = PowermetricsSample { elapsed_s: parse_elapsed(line), ..Default::default() };
            let done = std::mem::replace(&mut block, next);
            if done.has_power() {
                out.push(done);
            }
        }
    }
    if block.has_power() {
        out.push(block);
    }
    out
}

/// `powermetrics` output turned into vendor-modelled energy counters.
pub struct PowermetricsMeter {
    rx: Receiver<PowermetricsSample>,
    fields: Vec<Field>,
    domains: Vec<Domain>,
    /// Cumulative energy per field, µJ.
    energy_uj: Vec<f64>,
    interval_s: f64,
    ended: bool,
    child: Option<Child>,
    blocks: u64,
}

impl std::fmt::Debug for PowermetricsMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowermetricsMeter")
            .field("domains", &self.domains)
            .field("blocks", &self.blocks)
            .finish()
    }
}

impl PowermetricsMeter {
    /// A meter over any stream of `powermetrics` text (a running process's stdout, or captured
    /// output), whose blocks are nominally `interval` apart. Waits for the first block to learn
    /// which figures the stream has.
    pub fn from_reader(reader: impl BufRead + Send + 'static, interval: Duration) -> Result<Self> {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("edgespec-powermetrics".into())
            .spawn(move || {
                let mut block = PowermetricsSample::default();
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    if apply_line(&line, &mut block) {
                        let next =
                            PowermetricsSample { elapsed_s: parse_elapsed(&line), ..Default::default() };
                        let done = std::mem::replace(&mut block, next);
                        if done.has_power() && tx.send(done).is_err() {
                            return;
                        }
                    }
                }
                if block.has_power() {
                    let _ = tx.send(block);
                }
            })
            .map_err(|e| Error::io("starting the powermetrics reader thread", e))?;
        let wait = Duration::from_secs(5) + interval * 3;
        let first = match rx.recv_timeout(wait) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => {
                return Err(Error::unsupported(format!(
                    "powermetrics printed no power figure within {wait:?}"
                )))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::unsupported("powermetrics output has no power figure"))
            }
        };
        let fields: Vec<Field> = Field::ALL.into_iter().filter(|f| f.get(&first).is_some()).collect();
        let has_combined = fields.contains(&Field::Combined);
        let domains = fields.iter().map(|f| f.domain(has_combined)).collect();
        let mut m = PowermetricsMeter {
            rx,
            energy_uj: vec![0.0; fields.len()],
            fields,
            domains,
            interval_s: interval.as_secs_f64(),
            ended: false,
            child: None,
            blocks: 0,
        };
        m.add(&first);
        Ok(m)
    }

    /// Start `powermetrics` (needs root) and read it. macOS only.
    #[cfg(target_os = "macos")]
    pub fn spawn(binary: &std::path::Path, interval: Duration) -> Result<Self> {
        use std::process::{Command, Stdio};
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Error::unsupported("powermetrics needs root: run the benchmark with sudo"));
        }
        let ms = interval.as_millis().max(10).to_string();
        let mut child = Command::new(binary)
            .args(["--samplers", "cpu_power,gpu_power", "-i", &ms])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", binary.display()), e))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(Error::internal("powermetrics started without a stdout pipe"));
        };
        match Self::from_reader(std::io::BufReader::new(stdout), interval) {
            Ok(mut m) => {
                m.child = Some(child);
                Ok(m)
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    fn add(&mut self, block: &PowermetricsSample) {
        let dt = block.elapsed_s.unwrap_or(self.interval_s);
        for (f, e) in self.fields.iter().zip(self.energy_uj.iter_mut()) {
            if let Some(w) = f.get(block) {
                *e += w * dt * 1e6;
            }
        }
        self.blocks += 1;
    }
}

impl PowerMeter for PowermetricsMeter {
    fn name(&self) -> &str {
        "powermetrics"
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn period(&self) -> Duration {
        Duration::from_secs_f64(self.interval_s.max(0.01))
    }
    fn read(&mut self, out: &mut [Reading]) -> Result<()> {
        loop {
            match self.rx.try_recv() {
                Ok(block) => self.add(&block),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.ended = true;
                    break;
                }
            }
        }
        // A process that died stops measuring; a captured stream simply ended.
        let dead = self.ended && self.child.is_some();
        for (e, slot) in self.energy_uj.iter().zip(out.iter_mut()) {
            *slot = if dead {
                Reading::Skip { reason: "powermetrics exited" }
            } else {
                Reading::Counter { microjoules: *e as u64, wraps_at: None }
            };
        }
        Ok(())
    }
    fn notes(&self) -> Vec<String> {
        vec![format!(
            "Apple's power model (powermetrics), not a sensor; {} samples; energy is credited when a sample \
             is printed, so phase boundaries are blurred by up to {:.0} ms",
            self.blocks,
            self.interval_s * 1e3
        )]
    }
}

impl Drop for PowermetricsMeter {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_values_and_elapsed() {
        assert_eq!(parse_power(" 823 mW"), Some(0.823));
        assert_eq!(parse_power("823mW"), Some(0.823));
        assert_eq!(parse_power("1.63W"), Some(1.63));
        assert_eq!(parse_power("12 %"), None);
        let h = "*** Sampled system activity (Fri Sep 11 13:41:47 2026 -0700) (1010.09ms elapsed) ***";
        assert!((parse_elapsed(h).unwrap() - 1.01009).abs() < 1e-12);
    }
}
