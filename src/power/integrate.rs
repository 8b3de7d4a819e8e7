//! Turning a stream of readings and phase marks into energy per phase: counter deltas with wrap
//! correction, trapezoid integration of power samples, and an exact split of every interval
//! across the phase boundaries inside it.
//!
//! Kept free of threads and clocks (times are seconds since an arbitrary origin) so the same code
//! serves the live sampler and an external meter's log imported after the run, and so tests can
//! drive it with synthetic traces and check the numbers exactly.

use super::Phase;
use super::{DomainKind, Reading};

/// Energy attributed to one phase for one domain.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DomainEnergy {
    /// Joules attributed to the phase.
    pub energy_j: f64,
    /// Seconds of the phase for which valid data existed (equal to the phase's duration when
    /// nothing was missed).
    pub covered_s: f64,
    /// Power values (W) in the phase's noise statistics: each power sample taken inside the
    /// phase, or for a counter the average power of each polling interval wholly inside it.
    pub samples: u64,
    /// Mean of those values (W).
    pub mean_w: f64,
    /// Sample standard deviation of those values (W); 0 with fewer than two.
    pub std_w: f64,
    /// Readings that gave no value inside the phase (failed reads, a charging battery…).
    pub skipped: u64,
    /// Why the first skipped reading was skipped.
    pub skip_reason: Option<&'static str>,
    /// Counter wraps corrected inside the phase.
    pub wraps: u32,
    /// Counter decreases that could not be a wrap (no wrap limit known, or a reset): the interval
    /// is dropped from the energy and the coverage.
    pub resets: u32,
    m2: f64,
}

impl DomainEnergy {
    /// Average power over the covered time (W), if any time was covered.
    pub fn average_w(&self) -> Option<f64> {
        (self.covered_s > 0.0).then(|| self.energy_j / self.covered_s)
    }

    fn push_sample(&mut self, watts: f64) {
        // Welford's running mean and sum of squared deviations.
        self.samples += 1;
        let delta = watts - self.mean_w;
        self.mean_w += delta / self.samples as f64;
        self.m2 += delta * (watts - self.mean_w);
        self.std_w = if self.samples > 1 { (self.m2 / (self.samples - 1) as f64).sqrt() } else { 0.0 };
    }
}

/// The last valid value a channel saw.
#[derive(Clone, Copy, Debug)]
enum Last {
    Counter(u64),
    Power(f64),
}

/// One integrated series: a meter domain, or the sum of several disjoint ones.
#[derive(Clone, Debug)]
struct Channel {
    /// Time and value of the last valid reading.
    last: Option<(f64, Last)>,
    /// The counter with its wraps undone (µJ since the first reading), used to sum counters.
    unwrapped: u64,
    /// Whether the reading at the current poll was valid (for building sums).
    valid_now: bool,
}

/// The energy of one interval, before it is split across phases.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Joules over the interval, spread at constant power (a counter delta).
    Energy(f64),
    /// Power at both ends, linear in between (trapezoid).
    Trapezoid(f64, f64),
}

/// Energy of one polling interval of the traced domain: its average power is
/// `energy_j / (end_s - start_s)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceInterval {
    /// Seconds since the run started.
    pub start_s: f64,
    pub end_s: f64,
    /// Joules over the interval (the part before the run's end).
    pub energy_j: f64,
}

/// The sum of several domains of one scope, integrated as its own series.
#[derive(Clone, Debug)]
pub(crate) struct TotalDef {
    pub members: Vec<usize>,
    pub kind: DomainKind,
}

/// Readings and marks in, energy per phase and channel out.
#[derive(Debug)]
pub(crate) struct Integrator {
    /// Phase timeline: (start time, index into `phases`), in time order; the last segment runs to
    /// `end` (or on, while the run goes on).
    segments: Vec<(f64, usize)>,
    end: Option<f64>,
    /// Distinct phases in order of first use.
    phases: Vec<Phase>,
    /// Domains first, then totals.
    channels: Vec<Channel>,
    n_domains: usize,
    totals: Vec<TotalDef>,
    /// Accumulators, `[phase][channel]` flattened: (phases.len() × channels.len()).
    acc: Vec<DomainEnergy>,
    /// Time of the latest reading; marks are never placed before it, since the interval up to it
    /// has already been attributed.
    last_reading: f64,
    /// Power intervals longer than this are not interpolated (a stall or a hole in a log).
    max_gap_s: f64,
    /// The channel whose intervals are kept in `trace`.
    traced: Option<usize>,
    trace: Vec<TraceInterval>,
}

impl Integrator {
    /// An integrator for `kinds` (one per meter domain) plus `totals`, starting in `first` at time 0.
    pub(crate) fn new(kinds: &[DomainKind], totals: Vec<TotalDef>, first: Phase, max_gap_s: f64) -> Self {
        let n_channels = kinds.len() + totals.len();
        let fresh = Channel { last: None, unwrapped: 0, valid_now: false };
        Integrator {
            segments: vec![(0.0, 0)],
            end: None,
            phases: vec![first],
            channels: vec![fresh; n_channels],
            n_domains: kinds.len(),
            totals,
            acc: vec![DomainEnergy::default(); n_channels],
            last_reading: f64::NEG_INFINITY,
            max_gap_s,
            traced: None,
            trace: Vec::new(),
        }
    }

    /// Keep every interval of channel `ch` (a domain or a total) for a power trace.
    pub(crate) fn trace_channel(&mut self, ch: Option<usize>) {
        self.traced = ch;
    }

    /// The traced intervals so far, taken out.
    pub(crate) fn take_trace(&mut self) -> Vec<TraceInterval> {
        std::mem::take(&mut self.trace)
    }

    /// Change the longest power interval that is still interpolated (s).
    pub(crate) fn set_max_gap(&mut self, max_gap_s: f64) {
        self.max_gap_s = max_gap_s;
    }

    /// The run enters `phase` at time `t` (seconds). A mark earlier than the latest reading or the
    /// latest mark is moved up to it.
    pub(crate) fn mark(&mut self, t: f64, phase: Phase) {
        let idx = match self.phases.iter().position(|p| *p == phase) {
            Some(i) => i,
            None => {
                self.phases.push(phase);
                let n = self.channels.len();
                self.acc.extend(std::iter::repeat_n(DomainEnergy::default(), n));
                self.phases.len() - 1
            }
        };
        let last_start = self.segments.last().map_or(0.0, |s| s.0);
        let t = t.max(last_start).max(self.last_reading);
        match self.segments.last_mut() {
            // A mark at the very instant the current segment began replaces it.
            Some(last) if last.0 == t => last.1 = idx,
            _ => self.segments.push((t, idx)),
        }
    }

    /// The run ends at `t`: nothing after it is attributed.
    pub(crate) fn end(&mut self, t: f64) {
        let last_start = self.segments.last().map_or(0.0, |s| s.0);
        self.end = Some(t.max(last_start));
    }

    /// One poll at time `t`: a reading per meter domain (`readings.len()` must equal the number
    /// of domains given to [`new`](Integrator::new); extra or missing entries are ignored).
    pub(crate) fn push(&mut self, t: f64, readings: &[Reading]) {
        for (ch, reading) in readings.iter().enumerate().take(self.n_domains) {
            self.feed(ch, t, *reading);
        }
        for k in 0..self.totals.len() {
            let reading = self.total_reading(k, readings);
            self.feed(self.n_domains + k, t, reading);
        }
        self.last_reading = self.last_reading.max(t);
    }

    /// The synthetic reading of total `k`: the sum of its members when all were valid this poll.
    fn total_reading(&self, k: usize, readings: &[Reading]) -> Reading {
        let Some(def) = self.totals.get(k) else { return Reading::Skip { reason: "no such total" } };
        let all_valid = def.members.iter().all(|&m| self.channels.get(m).is_some_and(|c| c.valid_now));
        if !all_valid {
            // Pass on why a member had no value (a charging battery, a failed read).
            let reason = def.members.iter().find_map(|&m| match readings.get(m) {
                Some(Reading::Skip { reason }) => Some(*reason),
                _ => None,
            });
            return Reading::Skip { reason: reason.unwrap_or("a member domain had no valid reading") };
        }
        match def.kind {
            DomainKind::Counter => {
                let sum = def
                    .members
                    .iter()
                    .filter_map(|&m| self.channels.get(m))
                    .fold(0u64, |s, c| s.wrapping_add(c.unwrapped));
                Reading::Counter { microjoules: sum, wraps_at: None }
            }
            DomainKind::Power => {
                let watts = def
                    .members
                    .iter()
                    .map(|&m| match readings.get(m) {
                        Some(Reading::Power { watts }) => *watts,
                        _ => 0.0,
                    })
                    .sum();
                Reading::Power { watts }
            }
        }
    }

    fn feed(&mut self, ch: usize, t1: f64, reading: Reading) {
        let Some(channel) = self.channels.get_mut(ch) else { return };
        channel.valid_now = false;
        let prev = channel.last;
        let step = match reading {
            Reading::Skip { reason } => {
                // A counter stays exact across a missed read (the next delta covers both
                // intervals); a power series cannot be interpolated across one.
                if matches!(prev, Some((_, Last::Power(_)))) {
                    channel.last = None;
                }
                if let Some(a) = self.acc_at(t1, ch) {
                    a.skipped += 1;
                    a.skip_reason.get_or_insert(reason);
                }
                return;
            }
            Reading::Counter { microjoules: c1, wraps_at } => {
                channel.valid_now = true;
                channel.last = Some((t1, Last::Counter(c1)));
                let Some((t0, Last::Counter(c0))) = prev else { return };
                let (delta, wrapped) = if c1 >= c0 {
                    (c1 - c0, false)
                } else {
                    match wraps_at {
                        // The counter ran up to its limit and started again from zero (exact to
                        // within one counter unit).
                        Some(w) if c0 <= w => ((w - c0).saturating_add(c1), true),
                        _ => {
                            if let Some(a) = self.acc_at(t1, ch) {
                                a.resets += 1;
                            }
                            return;
                        }
                    }
                };
                if let Some(c) = self.channels.get_mut(ch) {
                    c.unwrapped = c.unwrapped.wrapping_add(delta);
                }
                if wrapped {
                    if let Some(a) = self.acc_at(t1, ch) {
                        a.wraps += 1;
                    }
                }
                (t0, Step::Energy(delta as f64 * 1e-6))
            }
            Reading::Power { watts } => {
                channel.valid_now = true;
                channel.last = Some((t1, Last::Power(watts)));
                if let Some(a) = self.acc_at(t1, ch) {
                    a.push_sample(watts);
                }
                match prev {
                    Some((t0, Last::Power(p0))) if t1 - t0 <= self.max_gap_s => {
                        (t0, Step::Trapezoid(p0, watts))
                    }
                    _ => return,
                }
            }
        };
        let (t0, step) = step;
        if t1 > t0 {
            if self.traced == Some(ch) {
                self.record(t0, t1, step);
            }
            self.attribute(ch, t0, t1, step);
        }
    }

    /// Keep `[t0, t1]` in the trace, cut at the run's end.
    fn record(&mut self, t0: f64, t1: f64, step: Step) {
        let end = self.end.unwrap_or(f64::INFINITY).min(t1);
        if end <= t0 {
            return;
        }
        let energy_j = match step {
            Step::Energy(e) => e * (end - t0) / (t1 - t0),
            Step::Trapezoid(p0, p1) => {
                let p_end = p0 + (p1 - p0) * (end - t0) / (t1 - t0);
                (end - t0) * (p0 + p_end) * 0.5
            }
        };
        self.trace.push(TraceInterval { start_s: t0, end_s: end, energy_j });
    }

    /// Split the energy of `[t0, t1]` across the phase segments it overlaps.
    fn attribute(&mut self, ch: usize, t0: f64, t1: f64, step: Step) {
        let span = t1 - t0;
        let n_channels = self.channels.len();
        // The first segment that ends after t0.
        let first = self.segments.partition_point(|s| s.0 <= t0).saturating_sub(1);
        let mut whole_in_one = None;
        for k in first..self.segments.len() {
            let Some(&(start, phase)) = self.segments.get(k) else { break };
            let stop = self.segments.get(k + 1).map(|s| s.0).or(self.end).unwrap_or(f64::INFINITY);
            let (a, b) = (t0.max(start), t1.min(stop));
            if start >= t1 {
                break;
            }
            if b <= a {
                continue;
            }
            if a == t0 && b == t1 {
                whole_in_one = Some(phase);
            }
            let energy = match step {
                Step::Energy(e) => e * (b - a) / span,
                Step::Trapezoid(p0, p1) => {
                    let at = |t: f64| p0 + (p1 - p0) * (t - t0) / span;
                    (b - a) * (at(a) + at(b)) * 0.5
                }
            };
            if let Some(acc) = self.acc.get_mut(phase * n_channels + ch) {
                acc.energy_j += energy;
                acc.covered_s += b - a;
            }
        }
        // A counter interval wholly inside one phase is one power value for its noise statistics.
        if let (Step::Energy(e), Some(phase)) = (step, whole_in_one) {
            if let Some(acc) = self.acc.get_mut(phase * n_channels + ch) {
                acc.push_sample(e / span);
            }
        }
    }

    /// The accumulator of the phase running at `t` for channel `ch` (none before the start or after
    /// the end).
    fn acc_at(&mut self, t: f64, ch: usize) -> Option<&mut DomainEnergy> {
        if t < self.segments.first().map_or(0.0, |s| s.0) || self.end.is_some_and(|e| t > e) {
            return None;
        }
        let k = self.segments.partition_point(|s| s.0 <= t).checked_sub(1)?;
        let phase = self.segments.get(k)?.1;
        let n = self.channels.len();
        self.acc.get_mut(phase * n + ch)
    }

    /// The phases in order of first use, with their total duration (s), number of segments and
    /// per-channel energy (domains first, then totals).
    pub(crate) fn results(&self) -> Vec<(Phase, f64, usize, Vec<DomainEnergy>)> {
        let n = self.channels.len();
        let end = self.end.unwrap_or(self.last_reading.max(self.segments.last().map_or(0.0, |s| s.0)));
        let mut out: Vec<(Phase, f64, usize, Vec<DomainEnergy>)> = self
            .phases
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, 0.0, 0, self.acc.get(i * n..(i + 1) * n).unwrap_or_default().to_vec()))
            .collect();
        for (k, &(start, phase)) in self.segments.iter().enumerate() {
            let stop = self.segments.get(k + 1).map_or(end, |s| s.0);
            if let Some(o) = out.get_mut(phase) {
                o.1 += (stop - start).max(0.0);
                o.2 += 1;
            }
        }
        out
    }

    /// The timeline: (phase, start, end) per segment.
    pub(crate) fn timeline(&self) -> Vec<(Phase, f64, f64)> {
        let end = self.end.unwrap_or(self.last_reading.max(self.segments.last().map_or(0.0, |s| s.0)));
        self.segments
            .iter()
            .enumerate()
            .filter_map(|(k, &(start, phase))| {
                let stop = self.segments.get(k + 1).map_or(end, |s| s.0);
                Some((*self.phases.get(phase)?, start, stop))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn counter_interval_split_at_a_mark() {
        let mut it = Integrator::new(&[DomainKind::Counter], vec![], Phase::Idle, 1.0);
        it.push(0.0, &[Reading::Counter { microjoules: 1_000_000, wraps_at: None }]);
        it.mark(0.25, Phase::Decode);
        // 4 J over one second, constant power: a quarter to idle, three quarters to decode.
        it.push(1.0, &[Reading::Counter { microjoules: 5_000_000, wraps_at: None }]);
        it.end(1.0);
        let r = it.results();
        assert_eq!(r.len(), 2);
        assert!(close(r[0].3[0].energy_j, 1.0) && close(r[1].3[0].energy_j, 3.0), "{r:?}");
        assert!(close(r[0].1, 0.25) && close(r[1].1, 0.75));
    }

    #[test]
    fn late_mark_is_moved_to_the_latest_reading() {
        let mut it = Integrator::new(&[DomainKind::Power], vec![], Phase::Idle, 10.0);
        it.push(0.0, &[Reading::Power { watts: 1.0 }]);
        it.push(2.0, &[Reading::Power { watts: 1.0 }]);
        it.mark(1.0, Phase::Decode);
        it.push(3.0, &[Reading::Power { watts: 1.0 }]);
        it.end(3.0);
        let tl = it.timeline();
        assert_eq!(tl, vec![(Phase::Idle, 0.0, 2.0), (Phase::Decode, 2.0, 3.0)]);
        let r = it.results();
        assert!(close(r[0].3[0].energy_j, 2.0) && close(r[1].3[0].energy_j, 1.0));
    }
}
