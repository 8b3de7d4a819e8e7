//! An external power meter's log (CSV of timestamped watts, e.g. a USB-C inline meter's export),
//! aligned with the run by wall-clock time.
//!
//! Boards with no meter of their own (a Raspberry Pi 4) are measured by a meter between the
//! supply and the board, whose log is exported after the run. The log needs a header row naming a
//! time column and either a power column or voltage and current columns:
//!
//! - time: `time`, `timestamp`, `unix`, `unix_time`, `epoch` or `t`, holding Unix seconds (or
//!   milliseconds when the header says `_ms` / `(ms)`), or RFC 3339 date-times with a zone
//!   (`2025-01-31T12:00:00.250Z`, `2025-01-31 13:00:00+01:00`);
//! - power: `power`, `watts`, `w`, `power_w`, `power(w)`; or `voltage`/`volts`/`v` and
//!   `current`/`amps`/`a` (with optional `(v)`/`(a)`/`_v`/`_a` unit marks), multiplied.
//!
//! Commas, semicolons or tabs separate fields; blank lines and lines starting with `#` are
//! skipped. Times must be absolute: a log of seconds since the meter started cannot be aligned
//! and is rejected. [`PowerLog::integrate`] integrates the samples inside a wall-clock window
//! (trapezoid, the window's edges interpolated); as a [`PowerMeter`] the log is read when the
//! sampler stops and split across the run's phases.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::integrate::Integrator;
use super::sampler::offline_max_gap;
use super::Phase;
use super::{Domain, DomainKind, PowerMeter, Provenance, Reading, Scope, TraceSample};
use crate::error::{Error, Result};

/// A parsed external meter log: samples in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct PowerLog {
    samples: Vec<TraceSample>,
}

/// The energy inside one wall-clock window of a log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowEnergy {
    /// Joules inside the window.
    pub energy_j: f64,
    /// The window's length (s).
    pub duration_s: f64,
    /// Seconds of the window the log covers (less than `duration_s` where the log starts late,
    /// ends early or has holes).
    pub covered_s: f64,
    /// Samples taken inside the window.
    pub samples: u64,
    /// Average power over the covered time (W), 0 when nothing is covered.
    pub average_w: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum TimeUnit {
    Seconds,
    Millis,
}

/// Lowercase, without quotes and spaces; the unit mark split off (`time(ms)` → (`time`, `ms`)).
fn header_key(raw: &str) -> (String, String) {
    let h: String = raw.trim().trim_matches('"').chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let h = h.to_ascii_lowercase();
    if let Some(open) = h.find('(') {
        let unit = h.get(open + 1..).unwrap_or("").trim_end_matches(')').to_string();
        return (h.get(..open).unwrap_or("").to_string(), unit);
    }
    for unit in ["_ms", "_s", "_w", "_v", "_a", "_mw", "_ma", "_mv"] {
        if let Some(base) = h.strip_suffix(unit) {
            if !base.is_empty() {
                return (base.to_string(), unit.trim_start_matches('_').to_string());
            }
        }
    }
    (h, String::new())
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Shift the year to start in March so the leap day is the year's last.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 date-time with a zone (`T` or a space between date and time) → Unix seconds.
fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || b.get(13) != Some(&b':') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?);
    let rest = s.get(16..)?;
    let rest = rest.strip_prefix(':')?;
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let secs: f64 = rest.get(..zone_at)?.parse().ok()?;
    let zone = rest.get(zone_at..)?;
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let zh: i64 = zone.get(1..3)?.parse().ok()?;
            let zm: i64 = zone.get(4..6)?.parse().ok()?;
            if zone.get(3..4) != Some(":") || zone.len() != 6 {
                return None;
            }
            sign * (zh * 3600 + zm * 60)
        }
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || !(0.0..61.0).contains(&secs)
    {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 - offset) as f64 + secs)
}

fn to_system_time(unix_s: f64) -> Option<SystemTime> {
    if !unix_s.is_finite() || unix_s < 0.0 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs_f64(unix_s))
}

fn unix_secs(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

impl PowerLog {
    /// Parse a log (see the module docs for the accepted layout).
    pub fn parse(text: &str) -> Result<PowerLog> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let (_, header) = lines.next().ok_or_else(|| Error::format("power log is empty"))?;
        let sep = [',', ';', '\t'].into_iter().max_by_key(|c| header.matches(*c).count()).unwrap_or(',');
        let keys: Vec<(String, String)> = header.split(sep).map(header_key).collect();
        let find = |names: &[&str]| keys.iter().position(|(k, _)| names.contains(&k.as_str()));
        let time_col = find(&["time", "timestamp", "unix", "unix_time", "epoch", "t"]).ok_or_else(|| {
            Error::format(format!(
                "power log header `{header}` has no time column (time, timestamp, unix, epoch)"
            ))
        })?;
        let unit = match keys.get(time_col).map(|k| k.1.as_str()) {
            Some("ms") => TimeUnit::Millis,
            _ => TimeUnit::Seconds,
        };
        let power_col = find(&["power", "watts", "w"]);
        let volt_col = find(&["voltage", "volts", "v", "vbus"]);
        let amp_col = find(&["current", "amps", "a", "ibus"]);
        let scale = |col: Option<usize>, milli: &str| {
            col.and_then(|c| keys.get(c)).map_or(1.0, |k| if k.1 == milli { 1e-3 } else { 1.0 })
        };
        let (p_scale, v_scale, a_scale) =
            (scale(power_col, "mw"), scale(volt_col, "mv"), scale(amp_col, "ma"));
        if power_col.is_none() && (volt_col.is_none() || amp_col.is_none()) {
            return Err(Error::format(format!(
                "power log header `{header}` has neither a power column nor voltage and current columns"
            )));
        }
        let mut samples = Vec::new();
        for (line_no, line) in lines {
            let fields: Vec<&str> = line.split(sep).map(|f| f.trim().trim_matches('"')).collect();
            let field = |c: usize| fields.get(c).copied().unwrap_or("");
            let bad = |what: &str| Error::format(format!("power log line {line_no}: {what} in `{line}`"));
            let raw_time = field(time_col);
            let unix = match raw_time.parse::<f64>() {
                Ok(v) if unit == TimeUnit::Millis => v / 1e3,
                Ok(v) => v,
                Err(_) => parse_rfc3339(raw_time)
                    .ok_or_else(|| bad("time is neither a number nor an RFC 3339 date-time with a zone"))?,
            };
            let number = |c: usize, what: &str| {
                field(c).parse::<f64>().map_err(|_| bad(&format!("{what} is not a number")))
            };
            let watts = match power_col {
                Some(c) => number(c, "power")? * p_scale,
                None => {
                    let (v, a) = (volt_col.unwrap_or(0), amp_col.unwrap_or(0));
                    number(v, "voltage")? * v_scale * number(a, "current")? * a_scale
                }
            };
            if !watts.is_finite() {
                return Err(bad("power is not finite"));
            }
            // 1e8 s is March 1973: a smaller time is seconds since the meter started.
            if unix < 1e8 {
                return Err(bad(
                    "time looks relative (seconds since the meter started); the log needs absolute times \
                     (Unix seconds or RFC 3339) to be aligned with the run",
                ));
            }
            let at = to_system_time(unix).ok_or_else(|| bad("time out of range"))?;
            samples.push(TraceSample { at, watts });
        }
        if samples.is_empty() {
            return Err(Error::format("power log has a header but no samples"));
        }
        samples.sort_by_key(|a| a.at);
        Ok(PowerLog { samples })
    }

    /// Read and parse a log file.
    pub fn load(path: &Path) -> Result<PowerLog> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading power log {}", path.display()), e))?;
        PowerLog::parse(&text).map_err(|e| e.context(path.display()))
    }

    /// The samples, in time order.
    pub fn samples(&self) -> &[TraceSample] {
        &self.samples
    }

    /// The energy between two wall-clock instants: samples inside the window integrated by
    /// trapezoid, the window's edges interpolated between their neighbours; holes longer than
    /// five typical sample spacings (at least 1 s) are not bridged.
    pub fn integrate(&self, start: SystemTime, end: SystemTime) -> WindowEnergy {
        let mut it = Integrator::new(
            &[DomainKind::Power],
            Vec::new(),
            Phase::Label("window"),
            offline_max_gap(&self.samples),
        );
        let origin = unix_secs(start);
        let duration = (unix_secs(end) - origin).max(0.0);
        it.end(duration);
        for s in &self.samples {
            it.push(unix_secs(s.at) - origin, &[Reading::Power { watts: s.watts }]);
        }
        let e = it.results().into_iter().next().and_then(|r| r.3.into_iter().next()).unwrap_or_default();
        WindowEnergy {
            energy_j: e.energy_j,
            duration_s: duration,
            covered_s: e.covered_s,
            samples: e.samples,
            average_w: e.average_w().unwrap_or(0.0),
        }
    }
}

/// An external meter's log as an offline [`PowerMeter`]: the file is read when the sampler stops.
#[derive(Debug)]
pub struct CsvMeter {
    path: PathBuf,
    name: String,
    domains: Vec<Domain>,
}

impl CsvMeter {
    /// A meter for the log that will be at `path` when the run ends. It measures the board's
    /// input (where an inline meter sits).
    pub fn new(path: &Path) -> CsvMeter {
        CsvMeter {
            path: path.to_path_buf(),
            name: format!("csv:{}", path.display()),
            domains: vec![Domain {
                label: "external meter".into(),
                scope: Scope::BoardInput,
                provenance: Provenance::MeasuredSampled,
                kind: DomainKind::Power,
                within: None,
            }],
        }
    }
}

impl PowerMeter for CsvMeter {
    fn name(&self) -> &str {
        &self.name
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn read(&mut self, out: &mut [Reading]) -> Result<()> {
        for r in out.iter_mut() {
            *r = Reading::Skip { reason: "external log is read after the run" };
        }
        Ok(())
    }
    fn is_offline(&self) -> bool {
        true
    }
    fn offline_trace(&mut self) -> Result<Vec<TraceSample>> {
        Ok(PowerLog::load(&self.path)?.samples)
    }
    fn notes(&self) -> Vec<String> {
        vec![format!(
            "external meter log {} aligned by wall clock: the meter's clock and this machine's must agree",
            self.path.display()
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(parse_rfc3339("2024-02-29 12:00:00.5+01:00"), Some(1_709_204_400.5));
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00"), None, "a time without a zone is ambiguous");
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn header_keys() {
        assert_eq!(header_key(" \"Time (ms)\" "), ("time".into(), "ms".into()));
        assert_eq!(header_key("power_w"), ("power".into(), "w".into()));
        assert_eq!(header_key("Voltage(V)"), ("voltage".into(), "v".into()));
        assert_eq!(header_key("t"), ("t".into(), "".into()));
    }
}
