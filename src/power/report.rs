//! From a phase's energy and its token count to the figures the benchmark prints: J/token,
//! tokens/J, average watts, and the same above the idle baseline, with flags where the numbers
//! cannot carry the weight put on them.
//!
//! **Above idle.** `above = E − P_idle × T`, where `P_idle` is the idle phase's average power and
//! `T` the phase's covered time: the energy the work added to a machine that was on anyway.
//!
//! **Noise rule.** The above-idle figure is flagged *within idle noise* when
//! `above < 2 × σ_idle × T`, where `σ_idle` is the standard deviation of the idle phase's power
//! values (individual samples for a sampled meter, per-poll-interval averages for a counter). This
//! is deliberately conservative: σ is the spread of single idle readings, not the (smaller)
//! uncertainty of their mean, so the rule asks the work to raise the average power by more than
//! twice the reading-to-reading idle fluctuation before its above-idle energy is trusted. With
//! fewer than two idle values σ is unknown and the figure is flagged so.
//!
//! **Coverage.** Per-token figures need the whole phase: below 95 % coverage (missed readings,
//! a battery that went on charge) they are withheld rather than extrapolated, and the average
//! power over the covered part is still given.
//!
//! **Estimates.** A domain whose provenance is [`Provenance::Estimated`] is reported only when
//! [`ReportOptions::allow_estimates`] is set, and then every line says ESTIMATE.

use std::fmt;

use super::sampler::Measurement;
use super::Phase;
use super::{Provenance, Scope};

/// Coverage below which per-token figures are withheld.
pub const MIN_COVERAGE: f64 = 0.95;
/// Multiple of the idle standard deviation that above-idle energy must exceed.
pub const NOISE_SIGMAS: f64 = 2.0;
/// The protocol's minimum workload length (s), also at least 100 meter periods.
pub const MIN_WORKLOAD_S: f64 = 10.0;

/// Report switches.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReportOptions {
    /// Report figures from an estimated domain (printed as ESTIMATE). Off by default.
    pub allow_estimates: bool,
}

/// Something that makes a figure weaker than it looks.
#[derive(Clone, Debug, PartialEq)]
pub enum Flag {
    /// Derived from an assumed power, not a measurement.
    Estimate,
    /// Above-idle energy smaller than the idle noise (see the module docs).
    WithinIdleNoise,
    /// The idle phase has fewer than two power values, so its noise is unknown.
    IdleNoiseUnknown,
    /// No idle phase was measured, so there is no above-idle figure.
    NoIdleBaseline,
    /// Only this fraction of the phase had valid data; per-token figures are withheld.
    PartialCoverage(f64),
    /// The phase is shorter than the protocol asks (≥ max(10 s, 100 meter periods)).
    ShortPhase { min_s: f64 },
    /// The idle baseline is shorter than 10 s.
    ShortIdle,
    /// No tokens, so no per-token figures.
    NoTokens,
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flag::Estimate => f.write_str("ESTIMATE"),
            Flag::WithinIdleNoise => f.write_str("above-idle energy within idle noise"),
            Flag::IdleNoiseUnknown => f.write_str("idle noise unknown (fewer than 2 idle readings)"),
            Flag::NoIdleBaseline => f.write_str("no idle baseline"),
            Flag::PartialCoverage(c) => write!(f, "only {:.0}% of the phase measured", c * 100.0),
            Flag::ShortPhase { min_s } => write!(f, "shorter than the {min_s:.0} s the protocol asks"),
            Flag::ShortIdle => write!(f, "idle baseline shorter than {MIN_WORKLOAD_S:.0} s"),
            Flag::NoTokens => f.write_str("no tokens"),
        }
    }
}

/// Figures above the idle baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct AboveIdle {
    /// The idle phase's average power (W).
    pub idle_w: f64,
    /// Standard deviation of the idle power values (W), when known.
    pub idle_std_w: Option<f64>,
    /// Energy above idle over the phase (J); may be negative.
    pub energy_j: f64,
    /// `NOISE_SIGMAS × σ_idle × T` (J), when σ is known.
    pub noise_j: Option<f64>,
    pub joules_per_token: Option<f64>,
    pub tokens_per_joule: Option<f64>,
}

/// A phase's energy per token, for one domain.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenEnergy {
    pub phase: Phase,
    /// The domain's label (`package-0`, `total cpu package (…)`, `PMIC rails…`).
    pub domain: String,
    pub scope: Scope,
    pub provenance: Provenance,
    pub tokens: u64,
    /// The phase's wall-clock duration (s).
    pub duration_s: f64,
    /// Seconds of it with valid data.
    pub covered_s: f64,
    /// Energy measured over the covered time (J).
    pub energy_j: f64,
    /// Average power over the covered time (W).
    pub average_w: f64,
    /// None without tokens or below [`MIN_COVERAGE`].
    pub joules_per_token: Option<f64>,
    pub tokens_per_joule: Option<f64>,
    /// None without an idle phase for the same domain.
    pub above_idle: Option<AboveIdle>,
    pub flags: Vec<Flag>,
}

/// Why there are no figures: printed as `energy: unavailable (reason)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "energy: unavailable ({})", self.0)
    }
}

/// Energy per token for `phase` on domain `domain` of `m`, with above-idle figures against `idle`.
pub fn token_energy(
    m: &Measurement,
    phase: Phase,
    domain: usize,
    tokens: u64,
    idle: Option<Phase>,
    opts: ReportOptions,
) -> Result<TokenEnergy, Unavailable> {
    if let Some(why) = &m.unavailable {
        return Err(Unavailable(why.clone()));
    }
    let d =
        m.domains.get(domain).ok_or_else(|| Unavailable(format!("{} has no domain {domain}", m.meter)))?;
    if d.provenance == Provenance::Estimated && !opts.allow_estimates {
        return Err(Unavailable(format!(
            "{} gives only an estimate, and estimates were not requested",
            m.meter
        )));
    }
    let p = m.phase(phase).ok_or_else(|| Unavailable(format!("the run has no {phase} phase")))?;
    let e = p.domains.get(domain).ok_or_else(|| Unavailable(format!("no {} energy for {phase}", d.label)))?;
    let average_w = e.average_w().ok_or_else(|| {
        Unavailable(format!("no valid {} reading during {phase}{}", d.label, skip_note(e.skip_reason)))
    })?;
    let mut flags = Vec::new();
    if d.provenance == Provenance::Estimated {
        flags.push(Flag::Estimate);
    }
    let coverage = if p.duration_s > 0.0 { e.covered_s / p.duration_s } else { 0.0 };
    let complete = coverage >= MIN_COVERAGE;
    if !complete {
        flags.push(Flag::PartialCoverage(coverage));
    }
    let min_s = MIN_WORKLOAD_S.max(100.0 * m.period.as_secs_f64());
    if p.duration_s < min_s {
        flags.push(Flag::ShortPhase { min_s });
    }
    if tokens == 0 {
        flags.push(Flag::NoTokens);
    }
    let per_token = |energy: f64| {
        if complete && tokens > 0 {
            (Some(energy / tokens as f64), (energy > 0.0).then(|| tokens as f64 / energy))
        } else {
            (None, None)
        }
    };
    let (joules_per_token, tokens_per_joule) = per_token(e.energy_j);
    let idle_result = idle
        .filter(|i| *i != phase)
        .and_then(|i| m.phase(i))
        .and_then(|ip| Some((ip, ip.domains.get(domain)?)));
    let above_idle = match idle_result {
        Some((ip, ie)) => match ie.average_w() {
            Some(idle_w) => {
                if ip.duration_s < MIN_WORKLOAD_S {
                    flags.push(Flag::ShortIdle);
                }
                let energy_j = e.energy_j - idle_w * e.covered_s;
                let idle_std_w = (ie.samples >= 2).then_some(ie.std_w);
                let noise_j = idle_std_w.map(|s| NOISE_SIGMAS * s * e.covered_s);
                match noise_j {
                    Some(n) if energy_j < n => flags.push(Flag::WithinIdleNoise),
                    Some(_) => {}
                    None => flags.push(Flag::IdleNoiseUnknown),
                }
                let (joules_per_token, tokens_per_joule) = per_token(energy_j);
                Some(AboveIdle { idle_w, idle_std_w, energy_j, noise_j, joules_per_token, tokens_per_joule })
            }
            None => {
                flags.push(Flag::NoIdleBaseline);
                None
            }
        },
        None => {
            flags.push(Flag::NoIdleBaseline);
            None
        }
    };
    Ok(TokenEnergy {
        phase,
        domain: d.label.clone(),
        scope: d.scope,
        provenance: d.provenance,
        tokens,
        duration_s: p.duration_s,
        covered_s: e.covered_s,
        energy_j: e.energy_j,
        average_w,
        joules_per_token,
        tokens_per_joule,
        above_idle,
        flags,
    })
}

/// [`token_energy`] on the measurement's headline domain, against its `idle` phase if any.
pub fn headline(
    m: &Measurement,
    phase: Phase,
    tokens: u64,
    opts: ReportOptions,
) -> Result<TokenEnergy, Unavailable> {
    if let Some(why) = &m.unavailable {
        return Err(Unavailable(why.clone()));
    }
    let domain = m.headline_domain().ok_or_else(|| Unavailable(format!("{} measures nothing", m.meter)))?;
    token_energy(m, phase, domain, tokens, Some(Phase::Idle), opts)
}

fn skip_note(reason: Option<&'static str>) -> String {
    reason.map_or(String::new(), |r| format!(": {r}"))
}

impl fmt::Display for TokenEnergy {
    /// One line, e.g. `decode: 12.400 J in 10.00 s, 1.240 W [cpu package, measured counter:
    /// package-0] = 0.0969 J/token, 10.3 tokens/J; above idle (0.800 W ± 0.050): …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.provenance == Provenance::Estimated {
            f.write_str("ESTIMATE ")?;
        }
        write!(
            f,
            "{}: {:.3} J in {:.2} s, {:.3} W [{}, {}: {}]",
            self.phase,
            self.energy_j,
            self.duration_s,
            self.average_w,
            self.scope,
            self.provenance,
            self.domain
        )?;
        if let (Some(jpt), Some(tpj)) = (self.joules_per_token, self.tokens_per_joule) {
            write!(f, " = {jpt:.4} J/token, {tpj:.2} tokens/J")?;
        }
        if let Some(a) = &self.above_idle {
            write!(f, "; above idle ({:.3} W", a.idle_w)?;
            if let Some(s) = a.idle_std_w {
                write!(f, " ± {s:.3}")?;
            }
            write!(f, "): {:.3} J", a.energy_j)?;
            if let (Some(jpt), Some(tpj)) = (a.joules_per_token, a.tokens_per_joule) {
                write!(f, " = {jpt:.4} J/token, {tpj:.2} tokens/J")?;
            }
        }
        let flags: Vec<String> =
            self.flags.iter().filter(|f| **f != Flag::Estimate).map(|f| f.to_string()).collect();
        if !flags.is_empty() {
            write!(f, " ({})", flags.join("; "))?;
        }
        Ok(())
    }
}
