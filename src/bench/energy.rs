//! The energy half of `edgespec bench`: with a power meter, an idle baseline with the model
//! loaded, then per repetition and strategy one workload window (the suite's prompts, repeated
//! until the window is long enough for the meter), each run's prefill and decode marked on the
//! sampler; per strategy and phase the medians over repetitions of tokens/s, J/token, tokens/J,
//! average W, total and above idle, each with the scope and provenance it was measured with.
//! Without a meter nothing here runs, and the report says why energy is unavailable.
//!
//! Token counts: prefill counts the prompt tokens fed; decode counts the generated tokens after
//! the first (the first comes from the prefill's logits), as the tokens/s figures do. The decode
//! phase starts when the first piece of text is emitted (so a first token without text moves
//! the boundary by one token).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{median, one_run, BenchPrompt, Marks};
use crate::decode::Strategy;
use crate::error::{Error, Result};
use crate::power::report::{self, Flag, ReportOptions};
use crate::power::{Measurement, Phase, PowerMeter, Provenance, Sampler};
use crate::session::Session;

/// The name of the prefill phase of a window.
pub(crate) const PREFILL: &str = "prefill";
/// The name of the decode phase of a window.
pub(crate) const DECODE: &str = "decode";
/// Between one run's end and the next run's prefill (collecting tokens, resetting the cache).
pub(crate) const BETWEEN: Phase = Phase::Label("between runs");
/// Most points of the power trace kept in the report.
const TRACE_POINTS: usize = 1500;

/// The idle baseline.
#[derive(Clone, Debug, Serialize)]
pub struct IdleFigures {
    /// Seconds measured idle, model loaded.
    pub duration_s: f64,
    /// Average power (W).
    pub average_w: Option<f64>,
    /// Standard deviation of the idle power values (W), with two or more.
    pub std_w: Option<f64>,
    /// Power values behind the standard deviation.
    pub samples: u64,
}

/// One phase of one workload window (one strategy, one repetition).
#[derive(Clone, Debug, Serialize)]
pub struct WindowFigures {
    /// Repetition, from 1.
    pub rep: usize,
    /// Generations run in the window.
    pub runs: usize,
    /// Tokens of this phase (prompt tokens for prefill, generated after the first for decode).
    pub tokens: u64,
    /// Seconds in the phase.
    pub duration_s: f64,
    /// Seconds of it with valid readings.
    pub covered_s: f64,
    /// `tokens / duration_s`.
    pub tokens_per_s: f64,
    /// Energy over the covered time (J).
    pub energy_j: Option<f64>,
    pub average_w: Option<f64>,
    pub joules_per_token: Option<f64>,
    pub tokens_per_joule: Option<f64>,
    /// Energy above the idle baseline (J); may be negative.
    pub above_idle_energy_j: Option<f64>,
    /// Average power above idle (W).
    pub above_idle_w: Option<f64>,
    pub above_idle_joules_per_token: Option<f64>,
    pub above_idle_tokens_per_joule: Option<f64>,
    /// `2 × σ_idle × T` (J): above-idle energy below it is within the idle noise.
    pub idle_noise_j: Option<f64>,
    pub within_idle_noise: bool,
    /// Caveats (short phase, partial coverage, ESTIMATE…).
    pub flags: Vec<String>,
    /// Why there are no energy figures for this window, if so.
    pub unavailable: Option<String>,
}

/// Medians over the repetitions of one strategy's phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseEnergy {
    /// `prefill` or `decode`.
    pub phase: &'static str,
    pub tokens_per_s: f64,
    pub joules_per_token: Option<f64>,
    pub tokens_per_joule: Option<f64>,
    pub average_w: Option<f64>,
    pub above_idle_w: Option<f64>,
    pub above_idle_joules_per_token: Option<f64>,
    pub above_idle_tokens_per_joule: Option<f64>,
    /// Repetitions whose above-idle energy is within the idle noise.
    pub within_idle_noise: usize,
    /// Every distinct caveat of the repetitions.
    pub flags: Vec<String>,
    /// Every repetition's figures.
    pub reps: Vec<WindowFigures>,
}

/// One strategy's energy.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyEnergy {
    pub strategy: &'static str,
    /// Prefill, then decode.
    pub phases: Vec<PhaseEnergy>,
}

/// A stretch of the run for the plot: the idle baseline or one workload window.
#[derive(Clone, Debug, Serialize)]
pub struct WindowSpan {
    /// `idle`, or the strategy's name.
    pub label: String,
    /// Repetition, from 1 (none for idle).
    pub rep: Option<usize>,
    pub start_s: f64,
    pub end_s: f64,
    /// The prefill stretches inside the window, merged where closer than 1/1000 of the run.
    pub prefill: Vec<(f64, f64)>,
}

/// Average power over a stretch of the run (the headline domain).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TracePoint {
    pub start_s: f64,
    pub end_s: f64,
    pub watts: f64,
}

/// The energy section of a bench report.
#[derive(Clone, Debug, Serialize)]
pub struct EnergyReport {
    /// Whether energy was measured.
    pub available: bool,
    /// Why not, when not.
    pub unavailable_reason: Option<String>,
    /// The `--power` choice.
    pub choice: String,
    /// The meter backend (`rapl`, `hwmon:…`).
    pub meter: Option<String>,
    /// The domain every figure is for.
    pub power_source: Option<String>,
    /// What the domain covers (`cpu package`, `board input`…).
    pub scope: Option<String>,
    /// How it is obtained (`measured counter`, `measured by sampling`, `vendor-modelled`, `ESTIMATE`).
    pub power_provenance: Option<String>,
    /// Whether the figures are an estimate from an asserted power, not a measurement.
    pub estimate: bool,
    /// The meter's polling period (s).
    pub period_s: Option<f64>,
    /// Minimum length of the idle baseline and of each workload window (s).
    pub window_s: Option<f64>,
    pub idle: Option<IdleFigures>,
    pub strategies: Vec<StrategyEnergy>,
    /// Caveats from the meter and the sampler.
    pub notes: Vec<String>,
    pub windows: Vec<WindowSpan>,
    /// The headline domain's power over time.
    pub trace: Vec<TracePoint>,
}

impl EnergyReport {
    /// No measurement, and why.
    pub fn unavailable(choice: &str, reason: impl Into<String>) -> EnergyReport {
        EnergyReport {
            available: false,
            unavailable_reason: Some(reason.into()),
            choice: choice.to_string(),
            meter: None,
            power_source: None,
            scope: None,
            power_provenance: None,
            estimate: false,
            period_s: None,
            window_s: None,
            idle: None,
            strategies: Vec::new(),
            notes: Vec::new(),
            windows: Vec::new(),
            trace: Vec::new(),
        }
    }
}

/// What the energy protocol runs.
pub(crate) struct EnergyPlan<'a> {
    pub strategies: &'a [Strategy],
    pub prompts: &'a [&'a BenchPrompt],
    pub max_tokens: Option<usize>,
    pub reps: usize,
    /// Overrides the protocol's minimum window, max(10 s, 100 × period).
    pub window: Option<Duration>,
    /// The `--power` choice, as printed.
    pub choice: String,
}

#[derive(Default)]
struct Tally {
    runs: usize,
    prefill_tokens: u64,
    decode_tokens: u64,
}

/// The protocol's minimum window for a meter polled every `period`.
pub fn protocol_window(period: Duration) -> Duration {
    Duration::from_secs_f64(report::MIN_WORKLOAD_S.max(100.0 * period.as_secs_f64()))
}

/// Run the energy protocol with `meter` (a meter that measures nothing gives the unavailable
/// report at once, running nothing).
pub(crate) fn measure(
    session: &mut Session,
    meter: Box<dyn PowerMeter>,
    plan: &EnergyPlan<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<EnergyReport> {
    if let Some(why) = meter.unavailable() {
        return Ok(EnergyReport::unavailable(&plan.choice, why));
    }
    if plan.prompts.is_empty() || plan.strategies.is_empty() {
        return Err(Error::invalid("the energy protocol needs a prompt and a strategy"));
    }
    let window = plan.window.unwrap_or_else(|| protocol_window(meter.period()));
    let win_s = window.as_secs_f64();
    progress(&format!(
        "energy: {} (period {:.0} ms); idle baseline {:.1} s with the model loaded, then windows of ≥ {:.1} s",
        meter.name(),
        meter.period().as_secs_f64() * 1e3,
        win_s,
        win_s
    ));
    let sampler = Sampler::start(meter, Phase::Idle)?;
    std::thread::sleep(window);
    let n_strat = plan.strategies.len();
    let mut tallies: Vec<Tally> = Vec::new();
    for rep in 0..plan.reps {
        for (si, &strategy) in plan.strategies.iter().enumerate() {
            let w =
                u32::try_from(rep * n_strat + si).map_err(|_| Error::invalid("too many energy windows"))?;
            let mut t = Tally::default();
            let start = Instant::now();
            let mut decode_s = 0.0;
            for p in plan.prompts.iter().cycle() {
                let n = plan.max_tokens.unwrap_or(p.max_tokens);
                let (_, stats) =
                    one_run(session, p, strategy, n, Some(Marks { sampler: &sampler, window: w }))?;
                t.runs += 1;
                t.prefill_tokens += stats.prompt_tokens as u64;
                t.decode_tokens += stats.generated_tokens.saturating_sub(1) as u64;
                decode_s += stats.decode_s;
                let elapsed = start.elapsed().as_secs_f64();
                // Long enough when decoding alone fills the window; a suite whose runs barely
                // decode stops at three windows (its short phases are flagged).
                if (decode_s >= win_s && elapsed >= win_s) || elapsed >= 3.0 * win_s {
                    break;
                }
            }
            progress(&format!(
                "energy window {}/{}: {} rep {}, {} runs in {:.1} s",
                w + 1,
                plan.reps * n_strat,
                strategy.name(),
                rep + 1,
                t.runs,
                start.elapsed().as_secs_f64()
            ));
            tallies.push(t);
        }
    }
    let m = sampler.stop()?;
    Ok(summarize(&m, plan, &tallies, window))
}

fn flag_texts(flags: &[Flag]) -> Vec<String> {
    flags.iter().map(|f| f.to_string()).collect()
}

/// Which window: its number on the sampler, its repetition (from 1) and how many runs it held.
#[derive(Clone, Copy)]
struct Slot {
    window: u32,
    rep: usize,
    runs: usize,
}

/// One phase (`name`, with `tokens`) of a window.
fn window_figures(
    m: &Measurement,
    domain: usize,
    name: &'static str,
    slot: Slot,
    tokens: u64,
    opts: ReportOptions,
) -> WindowFigures {
    let Slot { window, rep, runs } = slot;
    let phase = Phase::Numbered(name, window);
    let duration_s = m.phase(phase).map_or(0.0, |p| p.duration_s);
    let tokens_per_s = if duration_s > 0.0 { tokens as f64 / duration_s } else { 0.0 };
    let mut f = WindowFigures {
        rep,
        runs,
        tokens,
        duration_s,
        covered_s: 0.0,
        tokens_per_s,
        energy_j: None,
        average_w: None,
        joules_per_token: None,
        tokens_per_joule: None,
        above_idle_energy_j: None,
        above_idle_w: None,
        above_idle_joules_per_token: None,
        above_idle_tokens_per_joule: None,
        idle_noise_j: None,
        within_idle_noise: false,
        flags: Vec::new(),
        unavailable: None,
    };
    match report::token_energy(m, phase, domain, tokens, Some(Phase::Idle), opts) {
        Ok(e) => {
            f.covered_s = e.covered_s;
            f.energy_j = Some(e.energy_j);
            f.average_w = Some(e.average_w);
            f.joules_per_token = e.joules_per_token;
            f.tokens_per_joule = e.tokens_per_joule;
            // An asserted constant power has no idle difference to measure.
            let above_idle = if e.provenance == Provenance::Estimated { None } else { e.above_idle.as_ref() };
            if let Some(a) = above_idle {
                f.above_idle_energy_j = Some(a.energy_j);
                f.above_idle_w = Some(e.average_w - a.idle_w);
                f.above_idle_joules_per_token = a.joules_per_token;
                f.above_idle_tokens_per_joule = a.tokens_per_joule;
                f.idle_noise_j = a.noise_j;
            }
            f.within_idle_noise = above_idle.is_some() && e.flags.contains(&Flag::WithinIdleNoise);
            let kept: Vec<Flag> = e
                .flags
                .into_iter()
                .filter(|fl| {
                    above_idle.is_some() || !matches!(fl, Flag::WithinIdleNoise | Flag::IdleNoiseUnknown)
                })
                .collect();
            f.flags = flag_texts(&kept);
        }
        Err(why) => f.unavailable = Some(why.0),
    }
    f
}

fn median_of(reps: &[WindowFigures], get: impl Fn(&WindowFigures) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = reps.iter().filter_map(get).collect();
    (!v.is_empty()).then(|| median(&v))
}

fn phase_energy(name: &'static str, reps: Vec<WindowFigures>) -> PhaseEnergy {
    let mut flags: Vec<String> = Vec::new();
    for r in &reps {
        for f in r.flags.iter().chain(r.unavailable.iter()) {
            if !flags.contains(f) {
                flags.push(f.clone());
            }
        }
    }
    PhaseEnergy {
        phase: name,
        tokens_per_s: median(&reps.iter().map(|r| r.tokens_per_s).collect::<Vec<_>>()),
        joules_per_token: median_of(&reps, |r| r.joules_per_token),
        tokens_per_joule: median_of(&reps, |r| r.tokens_per_joule),
        average_w: median_of(&reps, |r| r.average_w),
        above_idle_w: median_of(&reps, |r| r.above_idle_w),
        above_idle_joules_per_token: median_of(&reps, |r| r.above_idle_joules_per_token),
        above_idle_tokens_per_joule: median_of(&reps, |r| r.above_idle_tokens_per_joule),
        within_idle_noise: reps.iter().filter(|r| r.within_idle_noise).count(),
        flags,
        reps,
    }
}

fn summarize(m: &Measurement, plan: &EnergyPlan<'_>, tallies: &[Tally], window: Duration) -> EnergyReport {
    let Some(h) = m.headline_domain() else {
        let why = m.unavailable.clone().unwrap_or_else(|| format!("{} measures nothing", m.meter));
        return EnergyReport::unavailable(&plan.choice, why);
    };
    if let Some(why) = &m.unavailable {
        return EnergyReport::unavailable(&plan.choice, why.clone());
    }
    let d = &m.domains[h.min(m.domains.len().saturating_sub(1))];
    let estimate = d.provenance == Provenance::Estimated;
    let opts = ReportOptions { allow_estimates: estimate };
    let n_strat = plan.strategies.len();
    let mut strategies = Vec::new();
    for (si, &s) in plan.strategies.iter().enumerate() {
        let mut pre = Vec::new();
        let mut dec = Vec::new();
        for rep in 0..plan.reps {
            let w = rep * n_strat + si;
            let Some(t) = tallies.get(w) else { continue };
            let slot = Slot { window: w as u32, rep: rep + 1, runs: t.runs };
            pre.push(window_figures(m, h, PREFILL, slot, t.prefill_tokens, opts));
            dec.push(window_figures(m, h, DECODE, slot, t.decode_tokens, opts));
        }
        strategies.push(StrategyEnergy {
            strategy: s.name(),
            phases: vec![phase_energy(PREFILL, pre), phase_energy(DECODE, dec)],
        });
    }
    let idle = m.phase(Phase::Idle).and_then(|p| Some((p, p.domains.get(h)?))).map(|(p, e)| IdleFigures {
        duration_s: p.duration_s,
        average_w: e.average_w(),
        std_w: (e.samples >= 2).then_some(e.std_w),
        samples: e.samples,
    });
    let mut notes = m.notes.clone();
    if plan.reps < 3 {
        notes.push(format!("{} repetition(s): the protocol asks for 3 to 5", plan.reps));
    }
    EnergyReport {
        available: true,
        unavailable_reason: None,
        choice: plan.choice.clone(),
        meter: Some(m.meter.clone()),
        power_source: Some(d.label.clone()),
        scope: Some(d.scope.describe().to_string()),
        power_provenance: Some(d.provenance.describe().to_string()),
        estimate,
        period_s: Some(m.period.as_secs_f64()),
        window_s: Some(window.as_secs_f64()),
        idle,
        strategies,
        notes,
        windows: spans(m, plan),
        trace: trace(m),
    }
}

/// The idle baseline and each window, from the measurement's timeline.
fn spans(m: &Measurement, plan: &EnergyPlan<'_>) -> Vec<WindowSpan> {
    let total = m.timeline.last().map_or(0.0, |s| s.end_s);
    let merge_gap = total / 1000.0;
    let n_strat = plan.strategies.len().max(1);
    let mut out: Vec<(Option<u32>, WindowSpan)> = Vec::new();
    for seg in &m.timeline {
        let (key, label, rep) = match seg.phase {
            Phase::Idle => (None, "idle".to_string(), None),
            Phase::Numbered(_, w) => {
                let si = w as usize % n_strat;
                let name = plan.strategies.get(si).map_or("?", |s| s.name());
                (Some(w), name.to_string(), Some(w as usize / n_strat + 1))
            }
            _ => continue,
        };
        let span = match out.iter_mut().find(|(k, s)| *k == key && s.label == label) {
            Some((_, s)) => s,
            None => {
                out.push((
                    key,
                    WindowSpan { label, rep, start_s: seg.start_s, end_s: seg.end_s, prefill: Vec::new() },
                ));
                match out.last_mut() {
                    Some((_, s)) => s,
                    None => continue,
                }
            }
        };
        span.start_s = span.start_s.min(seg.start_s);
        span.end_s = span.end_s.max(seg.end_s);
        if matches!(seg.phase, Phase::Numbered(PREFILL, _)) {
            match span.prefill.last_mut() {
                Some(last) if seg.start_s - last.1 <= merge_gap => last.1 = seg.end_s,
                _ => span.prefill.push((seg.start_s, seg.end_s)),
            }
        }
    }
    out.into_iter().map(|(_, s)| s).collect()
}

/// The headline domain's power, in at most [`TRACE_POINTS`] bins no shorter than the meter's
/// period (energy spread over each bin by overlap).
fn trace(m: &Measurement) -> Vec<TracePoint> {
    let Some(end) = m.trace.last().map(|t| t.end_s) else { return Vec::new() };
    let start = m.trace.first().map_or(0.0, |t| t.start_s);
    let span = end - start;
    if span <= 0.0 {
        return Vec::new();
    }
    let bin = (span / TRACE_POINTS as f64).max(m.period.as_secs_f64());
    let n = ((span / bin).ceil() as usize).clamp(1, TRACE_POINTS);
    let bin = span / n as f64;
    // Per bin: joules and covered seconds.
    let mut acc = vec![(0.0f64, 0.0f64); n];
    for t in &m.trace {
        let len = t.end_s - t.start_s;
        if len <= 0.0 {
            continue;
        }
        let first = (((t.start_s - start) / bin).floor().max(0.0) as usize).min(n - 1);
        for (k, slot) in acc.iter_mut().enumerate().skip(first) {
            let (a, b) = (start + k as f64 * bin, start + (k + 1) as f64 * bin);
            if a >= t.end_s {
                break;
            }
            let overlap = t.end_s.min(b) - t.start_s.max(a);
            if overlap > 0.0 {
                slot.0 += t.energy_j * overlap / len;
                slot.1 += overlap;
            }
        }
    }
    acc.iter()
        .enumerate()
        .filter(|(_, (_, c))| *c > 0.0)
        .map(|(k, (e, c))| TracePoint {
            start_s: start + k as f64 * bin,
            end_s: start + (k + 1) as f64 * bin,
            watts: e / c,
        })
        .collect()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

impl EnergyReport {
    /// The energy section as Markdown (or the one `energy: unavailable (reason)` line).
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        if !self.available {
            let why = self.unavailable_reason.as_deref().unwrap_or("not measured");
            let _ = writeln!(s, "\nenergy: unavailable ({why})");
            return s;
        }
        let source = self.power_source.as_deref().unwrap_or("?");
        let scope = self.scope.as_deref().unwrap_or("?");
        let prov = self.power_provenance.as_deref().unwrap_or("?");
        let tag = format!("{scope}, {prov}");
        let _ = writeln!(
            s,
            "\nenergy{}: {} `{}` [{}], polled every {:.0} ms; windows ≥ {:.1} s",
            if self.estimate { " (ESTIMATE: an asserted constant power, not a measurement)" } else { "" },
            self.meter.as_deref().unwrap_or("?"),
            source,
            tag,
            self.period_s.unwrap_or(0.0) * 1e3,
            self.window_s.unwrap_or(0.0)
        );
        if let Some(i) = &self.idle {
            let _ = writeln!(
                s,
                "idle baseline (model loaded): {} W ± {} over {:.1} s [{tag}]",
                opt(i.average_w, 3),
                opt(i.std_w, 3),
                i.duration_s
            );
        }
        let _ = writeln!(
            s,
            "\n| strategy | phase | tokens/s | avg W | J/token | tokens/J | above idle W | J/token above idle | tokens/J above idle | scope, provenance | flags |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|");
        for st in &self.strategies {
            for p in &st.phases {
                let mut flags = p.flags.clone();
                if p.within_idle_noise > 0 {
                    flags.retain(|f| f != &Flag::WithinIdleNoise.to_string());
                    flags.insert(
                        0,
                        format!("WITHIN IDLE NOISE in {} of {} reps", p.within_idle_noise, p.reps.len()),
                    );
                }
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    st.strategy,
                    p.phase,
                    p.tokens_per_s,
                    opt(p.average_w, 3),
                    opt(p.joules_per_token, 5),
                    opt(p.tokens_per_joule, 2),
                    opt(p.above_idle_w, 3),
                    opt(p.above_idle_joules_per_token, 5),
                    opt(p.above_idle_tokens_per_joule, 2),
                    tag,
                    if flags.is_empty() { "-".to_string() } else { flags.join("; ") }
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::power::{Domain, DomainKind, Reading, Replay, Scope};

    #[test]
    fn trace_bins_keep_the_energy_and_spans_follow_the_windows() {
        let d = Domain {
            label: "rail".into(),
            scope: Scope::BoardInput,
            provenance: Provenance::MeasuredSampled,
            kind: DomainKind::Power,
            within: None,
        };
        let mut r = Replay::new("synthetic", &[d], Duration::from_millis(100), Phase::Idle);
        // 0–2 s idle at 2 W, then window 0 (prefill 2–2.5 s, decode to 4 s) at 6 W.
        for i in 0..=40u32 {
            let t = f64::from(i) * 0.1;
            if i == 20 {
                r.mark(2.0, Phase::Numbered(PREFILL, 0));
            }
            if i == 25 {
                r.mark(2.5, Phase::Numbered(DECODE, 0));
            }
            r.push(t, &[Reading::Power { watts: if i < 20 { 2.0 } else { 6.0 } }]);
        }
        r.stop(4.0);
        let m = r.finish(SystemTime::now());
        let total: f64 = m.phases.iter().map(|p| p.domains[0].energy_j).sum();
        let tr = trace(&m);
        let traced: f64 = tr.iter().map(|p| p.watts * (p.end_s - p.start_s)).sum();
        assert!((traced - total).abs() < 1e-9, "{traced} vs {total}");
        assert!(tr.iter().all(|p| p.end_s - p.start_s >= 0.1 - 1e-12));
        let plan = EnergyPlan {
            strategies: &[Strategy::Plain],
            prompts: &[],
            max_tokens: None,
            reps: 1,
            window: None,
            choice: "test".into(),
        };
        let s = spans(&m, &plan);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].label.as_str(), s[0].start_s, s[0].end_s), ("idle", 0.0, 2.0));
        assert_eq!((s[1].label.as_str(), s[1].rep, s[1].start_s, s[1].end_s), ("plain", Some(1), 2.0, 4.0));
        assert_eq!(s[1].prefill, vec![(2.0, 2.5)]);
        let f =
            window_figures(&m, 0, DECODE, Slot { window: 0, rep: 1, runs: 1 }, 30, ReportOptions::default());
        // Decode: 1.5 s at 6 W over 30 tokens; idle 2 W.
        assert!((f.energy_j.unwrap() - 9.0).abs() < 1e-9, "{f:?}");
        assert!((f.joules_per_token.unwrap() - 0.3).abs() < 1e-9);
        // Idle averages 2.1 W: its last interval ramps from 2 W to the 6 W sample at 2 s.
        assert!((f.above_idle_energy_j.unwrap() - (9.0 - 2.1 * 1.5)).abs() < 1e-9, "{f:?}");
        assert!((f.tokens_per_s - 20.0).abs() < 1e-9);
    }
}
