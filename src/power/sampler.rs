//! The sampler: a thread that polls a [`PowerMeter`] at its useful period and attributes the
//! energy to the phases the runtime marks, so the inference loop pays one clock read and one
//! channel send per phase change and nothing else.
//!
//! Marks carry the instant they were made; on a mark the sampler takes a reading at once (a
//! boundary reading), and the interval around the mark is split exactly at the mark's instant, so
//! phase boundaries are as sharp as the meter allows. Offline meters (an external meter's log) are
//! not polled: the thread only records the timeline, and the log's samples are aligned with it by
//! wall-clock time when the sampler stops.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::integrate::{DomainEnergy, Integrator, TotalDef, TraceInterval};
use super::{Domain, DomainKind, Phase, PowerMeter, Reading, Scope};
use crate::error::{Error, Result};

/// One stretch of the timeline, in seconds since the sampler started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    pub phase: Phase,
    pub start_s: f64,
    pub end_s: f64,
}

/// Everything measured for one phase (all of its segments together).
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseResult {
    pub phase: Phase,
    /// Wall-clock seconds spent in the phase.
    pub duration_s: f64,
    /// How many separate stretches the phase had.
    pub segments: usize,
    /// Energy per domain, indexed like [`Measurement::domains`].
    pub domains: Vec<DomainEnergy>,
}

/// What a sampler measured over a run.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// The meter's name.
    pub meter: String,
    /// The meter's domains, followed by the totals the sampler formed from disjoint domains of one
    /// scope (labelled `total …`).
    pub domains: Vec<Domain>,
    /// The meter's polling period.
    pub period: Duration,
    /// Why nothing could be measured, for the null meter (then every phase has no energy).
    pub unavailable: Option<String>,
    /// Per phase, in order of first use.
    pub phases: Vec<PhaseResult>,
    /// The phase timeline.
    pub timeline: Vec<Segment>,
    /// Wall-clock time of the timeline's zero (for aligning an external meter's log).
    pub started_at: SystemTime,
    /// Caveats from the meter and the sampler.
    pub notes: Vec<String>,
    /// Readings taken.
    pub polls: u64,
    /// Readings that failed as a whole.
    pub read_errors: u64,
    /// Marks lost because the mark queue was full (the phases around them are then wrong).
    pub dropped_marks: u64,
    /// The headline domain's energy per polling interval, in time order (for plotting a power
    /// trace); empty when nothing was measured.
    pub trace: Vec<TraceInterval>,
}

impl Measurement {
    /// The result for `phase`, if the run entered it.
    pub fn phase(&self, phase: Phase) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.phase == phase)
    }

    /// The domain to quote when only one figure is printed: the widest scope, a total rather than
    /// its members, never a domain nested in another, measured before modelled.
    pub fn headline_domain(&self) -> Option<usize> {
        headline_index(&self.domains)
    }
}

/// [`Measurement::headline_domain`] over a list of domains (the meter's, then its totals).
pub(crate) fn headline_index(domains: &[Domain]) -> Option<usize> {
    let in_total = |d: &Domain| {
        domains.iter().any(|t| t.label.starts_with("total ") && t.scope == d.scope && t.kind == d.kind)
            && !d.label.starts_with("total ")
    };
    domains
        .iter()
        .enumerate()
        .filter(|(_, d)| d.within.is_none() && !in_total(d))
        .max_by_key(|(i, d)| (d.scope.breadth(), std::cmp::Reverse(d.provenance), std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
}

impl fmt::Display for Measurement {
    /// A short human summary: the meter and each phase's headline energy.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(why) = &self.unavailable {
            return write!(f, "energy: unavailable ({why})");
        }
        let Some(h) = self.headline_domain() else {
            return write!(f, "energy: unavailable ({} measures nothing)", self.meter);
        };
        let Some(d) = self.domains.get(h) else { return Ok(()) };
        write!(f, "energy: {} {} ({}, {})", self.meter, d.label, d.scope, d.provenance)?;
        for p in &self.phases {
            if let Some(e) = p.domains.get(h) {
                write!(f, "\n  {:<10} {:>8.2} s  {:>10.3} J", p.phase.name(), p.duration_s, e.energy_j)?;
                if let Some(w) = e.average_w() {
                    write!(f, "  {w:>8.3} W")?;
                }
                if p.duration_s > 0.0 && e.covered_s < 0.99 * p.duration_s {
                    write!(f, "  (covered {:.0}%)", 100.0 * e.covered_s / p.duration_s)?;
                }
            }
        }
        for n in &self.notes {
            write!(f, "\n  note: {n}")?;
        }
        Ok(())
    }
}

enum Msg {
    Mark(Phase, Instant),
    Stop(Instant),
}

/// Polls a meter on its own thread and attributes energy to marked phases.
pub struct Sampler {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<Measurement>>,
}

impl Sampler {
    /// How many marks may wait for the sampler thread before further marks are dropped (and
    /// counted in [`Measurement::dropped_marks`]).
    pub const MARK_QUEUE: usize = 4096;

    /// Start sampling `meter`, with the run in phase `first`.
    pub fn start(meter: Box<dyn PowerMeter>, first: Phase) -> Result<Sampler> {
        // A bounded channel keeps its slots preallocated, so `mark` never allocates.
        let (tx, rx) = sync_channel(Self::MARK_QUEUE);
        let origin = Instant::now();
        let wall = SystemTime::now();
        let thread = std::thread::Builder::new()
            .name("edgespec-power".into())
            .spawn(move || run(meter, rx, origin, wall, first))
            .map_err(|e| Error::io("starting the power sampler thread", e))?;
        Ok(Sampler { tx, dropped: Arc::new(AtomicU64::new(0)), thread: Some(thread) })
    }

    /// The run enters `phase` now. Cheap enough for the inference loop: a clock read and a
    /// non-blocking send into a preallocated queue.
    #[inline]
    pub fn mark(&self, phase: Phase) {
        let now = Instant::now();
        if self.tx.try_send(Msg::Mark(phase, now)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stop sampling (taking a final reading) and return what was measured.
    pub fn stop(mut self) -> Result<Measurement> {
        let now = Instant::now();
        let thread = self.thread.take().ok_or_else(|| Error::internal("power sampler already stopped"))?;
        // A blocking send: the stop must arrive even if the queue is momentarily full.
        let _ = self.tx.send(Msg::Stop(now));
        let mut m = thread.join().map_err(|_| Error::internal("the power sampler thread panicked"))?;
        m.dropped_marks = self.dropped.load(Ordering::Relaxed);
        if m.dropped_marks > 0 {
            m.notes.push(format!(
                "{} phase marks were dropped (queue of {} full): phase attribution is wrong",
                m.dropped_marks,
                Self::MARK_QUEUE
            ));
        }
        Ok(m)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.tx.send(Msg::Stop(Instant::now()));
            let _ = thread.join();
        }
    }
}

/// Totals for groups of two or more top-level domains with the same scope, kind and provenance
/// (disjoint by the [`PowerMeter`] contract), e.g. two CPU sockets. Unknown scopes are not added.
pub(crate) fn totals_for(domains: &[Domain]) -> (Vec<TotalDef>, Vec<Domain>) {
    let mut defs: Vec<TotalDef> = Vec::new();
    let mut out: Vec<Domain> = Vec::new();
    for (i, d) in domains.iter().enumerate() {
        if d.within.is_some() || d.scope == Scope::Unknown {
            continue;
        }
        let pos =
            out.iter().position(|t| t.scope == d.scope && t.kind == d.kind && t.provenance == d.provenance);
        match pos.and_then(|p| defs.get_mut(p).map(|def| (p, def))) {
            Some((p, def)) => {
                def.members.push(i);
                if let Some(t) = out.get_mut(p) {
                    t.label.push_str(" + ");
                    t.label.push_str(&d.label);
                }
            }
            None => {
                defs.push(TotalDef { members: vec![i], kind: d.kind });
                out.push(Domain { label: d.label.clone(), ..d.clone() });
            }
        }
    }
    let keep: Vec<bool> = defs.iter().map(|d| d.members.len() >= 2).collect();
    let defs = defs.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(d, _)| d).collect();
    let out = out
        .into_iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(mut d, _)| {
            d.label = format!("total {} ({})", d.scope, d.label);
            d
        })
        .collect();
    (defs, out)
}

/// Seconds from `origin` to `at`.
fn secs(origin: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(origin).as_secs_f64()
}

/// Seconds from `wall` to `at`, negative when `at` is earlier.
fn wall_secs(wall: SystemTime, at: SystemTime) -> f64 {
    match at.duration_since(wall) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// What the sampler does on its thread, without the thread or the clock: readings and marks
/// are given with explicit times (seconds since the run started), in time order. Used by the
/// sampler itself, and directly to analyse a recorded trace or to test with synthetic ones.
#[derive(Debug)]
pub struct Replay {
    it: Integrator,
    meter: String,
    /// Meter domains, then totals.
    domains: Vec<Domain>,
    n_meter_domains: usize,
    period: Duration,
}

impl Replay {
    /// A replay of readings of `domains` (as a meter named `meter` with polling `period` reports
    /// them), starting in phase `first` at time 0.
    pub fn new(meter: &str, domains: &[Domain], period: Duration, first: Phase) -> Replay {
        let kinds: Vec<DomainKind> = domains.iter().map(|d| d.kind).collect();
        let (defs, totals) = totals_for(domains);
        let mut all = domains.to_vec();
        all.extend(totals);
        // Power samples further apart than this are not interpolated (the sampler was starved).
        let max_gap = (5.0 * period.as_secs_f64()).max(1.0);
        let mut it = Integrator::new(&kinds, defs, first, max_gap);
        it.trace_channel(headline_index(&all));
        Replay { it, meter: meter.to_string(), domains: all, n_meter_domains: kinds.len(), period }
    }

    /// A replay shaped like `meter`'s readings.
    pub fn for_meter(meter: &dyn PowerMeter, first: Phase) -> Replay {
        Replay::new(meter.name(), meter.domains(), meter.period(), first)
    }

    /// The run enters `phase` at `t` seconds (moved up to the latest reading if earlier).
    pub fn mark(&mut self, t: f64, phase: Phase) {
        self.it.mark(t, phase);
    }

    /// One reading per meter domain, taken at `t` seconds.
    pub fn push(&mut self, t: f64, readings: &[Reading]) {
        self.it.push(t, readings);
    }

    /// How many domains a reading must have.
    pub fn meter_domains(&self) -> usize {
        self.n_meter_domains
    }

    /// Change the longest power interval still interpolated (s).
    pub(crate) fn set_max_gap(&mut self, max_gap_s: f64) {
        self.it.set_max_gap(max_gap_s);
    }

    /// The run ends at `t` seconds: readings pushed afterwards still close the interval around
    /// `t`, but nothing after `t` is attributed. Call it before the last reading.
    pub fn stop(&mut self, t: f64) {
        self.it.end(t);
    }

    /// Gather the results (`started_at` dates the timeline's zero). Without [`stop`](Replay::stop),
    /// the run ends at the latest reading.
    pub fn finish(mut self, started_at: SystemTime) -> Measurement {
        let phases = self
            .it
            .results()
            .into_iter()
            .map(|(phase, duration_s, segments, domains)| PhaseResult {
                phase,
                duration_s,
                segments,
                domains,
            })
            .collect();
        let timeline = self
            .it
            .timeline()
            .into_iter()
            .map(|(phase, start_s, end_s)| Segment { phase, start_s, end_s })
            .collect();
        Measurement {
            meter: self.meter,
            domains: self.domains,
            period: self.period,
            unavailable: None,
            phases,
            timeline,
            started_at,
            notes: Vec::new(),
            polls: 0,
            read_errors: 0,
            dropped_marks: 0,
            trace: self.it.take_trace(),
        }
    }
}

struct Poller {
    meter: Box<dyn PowerMeter>,
    buf: Vec<Reading>,
    origin: Instant,
    polls: u64,
    errors: u64,
    first_error: Option<String>,
    last: Instant,
}

impl Poller {
    fn poll(&mut self, r: &mut Replay) {
        let before = Instant::now();
        let res = self.meter.read(&mut self.buf);
        let after = Instant::now();
        // A slow read (NVML, a spawned vcgencmd) is dated at its midpoint.
        let t = (secs(self.origin, before) + secs(self.origin, after)) * 0.5;
        self.polls += 1;
        self.last = before;
        match res {
            Ok(()) => r.push(t, &self.buf),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
                let skips = vec![Reading::Skip { reason: "the meter's read failed" }; self.buf.len()];
                r.push(t, &skips);
            }
        }
    }
}

fn run(
    meter: Box<dyn PowerMeter>,
    rx: Receiver<Msg>,
    origin: Instant,
    wall: SystemTime,
    first: Phase,
) -> Measurement {
    let mut replay = Replay::for_meter(meter.as_ref(), first);
    let n = replay.meter_domains();
    let period = meter.period().max(Duration::from_millis(1));
    let offline = meter.is_offline();
    let live = !offline && meter.unavailable().is_none() && n > 0;
    let mut p = Poller {
        meter,
        buf: vec![Reading::Skip { reason: "not read" }; n],
        origin,
        polls: 0,
        errors: 0,
        first_error: None,
        last: origin,
    };
    if live {
        p.poll(&mut replay);
    }
    // A boundary reading is skipped when the last one is more recent than this.
    let min_boundary_gap = period / 10;
    let stop_at = loop {
        let msg = if live {
            rx.recv_timeout((p.last + period).saturating_duration_since(Instant::now()))
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match msg {
            Ok(Msg::Mark(phase, at)) => {
                replay.mark(secs(origin, at), phase);
                // Take every mark already queued before reading, so the reading follows them all.
                let mut stop = None;
                loop {
                    match rx.try_recv() {
                        Ok(Msg::Mark(phase, at)) => replay.mark(secs(origin, at), phase),
                        Ok(Msg::Stop(at)) => {
                            stop = Some(secs(origin, at));
                            break;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            stop = Some(secs(origin, Instant::now()));
                            break;
                        }
                    }
                }
                if let Some(s) = stop {
                    break s;
                }
                if live && p.last.elapsed() >= min_boundary_gap {
                    p.poll(&mut replay);
                }
            }
            Ok(Msg::Stop(at)) => break secs(origin, at),
            Err(RecvTimeoutError::Timeout) => p.poll(&mut replay),
            Err(RecvTimeoutError::Disconnected) => break secs(origin, Instant::now()),
        }
    };
    replay.stop(stop_at);
    if live {
        // The final reading closes the last interval, cut at the stop instant.
        p.poll(&mut replay);
    }
    let mut notes = p.meter.notes();
    let mut unavailable = p.meter.unavailable().map(str::to_string);
    let mut log_spacing = None;
    if offline {
        match p.meter.offline_trace() {
            Ok(trace) => {
                replay.set_max_gap(offline_max_gap(&trace));
                log_spacing = median_spacing(&trace);
                for s in &trace {
                    replay.push(wall_secs(wall, s.at), &[Reading::Power { watts: s.watts }]);
                }
                p.polls = trace.len() as u64;
                if trace.is_empty() {
                    notes.push("the external meter's log has no samples".into());
                }
            }
            Err(e) => unavailable = Some(format!("{}: {e}", p.meter.name())),
        }
    }
    if let Some(e) = &p.first_error {
        notes.push(format!("{} of {} readings failed; first: {e}", p.errors, p.polls));
    }
    let mut m = replay.finish(wall);
    if let Some(spacing) = log_spacing {
        // A log's own sample spacing is its meter's period (what the protocol's minimum workload
        // length is counted in), not the nominal one.
        m.period = Duration::from_secs_f64(spacing);
    }
    m.unavailable = unavailable;
    m.notes = notes;
    m.polls = p.polls;
    m.read_errors = p.errors;
    m
}

/// The typical spacing of a log's samples (s): the median gap.
pub(crate) fn median_spacing(trace: &[super::TraceSample]) -> Option<f64> {
    let mut gaps: Vec<f64> =
        trace.windows(2).map(|w| wall_secs(w[0].at, w[1].at)).filter(|g| *g > 0.0).collect();
    gaps.sort_by(f64::total_cmp);
    gaps.get(gaps.len() / 2).copied()
}

/// The longest hole in a log that is still interpolated: five typical sample spacings, at least
/// one second.
pub(crate) fn offline_max_gap(trace: &[super::TraceSample]) -> f64 {
    (5.0 * median_spacing(trace).unwrap_or(0.0)).max(1.0)
}
