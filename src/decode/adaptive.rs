//! How many tokens to draft: what a verify pass of `b` tokens costs on this machine relative to
//! one token ([`CostModel`]), and the draft length that follows live acceptance ([`DraftLength`]).
//!
//! Speculation pays only while verifying γ drafted tokens plus one costs barely more than one
//! token. With per-token acceptance α, a pass yields (1 − α^(γ+1)) / (1 − α) tokens on average
//! and costs `rel(γ + 1)` single-token passes; the draft length that maximises their ratio is the
//! one to use. The cost curve is measured on the real model at session start (a dozen passes,
//! rolled back from the KV cache) because it depends on the CPU, the thread count and the model.

use std::time::Instant;

use crate::error::Result;
use crate::model::{ForwardPlan, KvCache, LogitRows, Model, Workspace, MAX_BATCH};

/// Relative cost of a forward pass of `b` tokens (`rel(1) = 1`), for `b = 1 ..= MAX_BATCH`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostModel {
    /// `rel[b]` for `b = 0 ..= MAX_BATCH` (`rel[0]` unused, 0).
    rel: [f32; MAX_BATCH + 1],
    /// Whether the curve was measured (or assumed).
    measured: bool,
}

impl Default for CostModel {
    /// An assumed curve (10% per extra token), used until a measurement replaces it.
    fn default() -> Self {
        CostModel::linear(0.1)
    }
}

impl CostModel {
    /// `rel(b) = 1 + slope · (b − 1)`.
    pub fn linear(slope: f32) -> CostModel {
        let mut rel = [0.0; MAX_BATCH + 1];
        for (b, r) in rel.iter_mut().enumerate().skip(1) {
            *r = 1.0 + slope * (b - 1) as f32;
        }
        CostModel { rel, measured: false }
    }

    /// A curve from measured seconds at some batch sizes (`(b, seconds)`, `b = 1` required),
    /// linearly interpolated between them and made non-decreasing.
    pub fn from_timings(points: &[(usize, f64)]) -> Option<CostModel> {
        let t1 = points.iter().find(|p| p.0 == 1)?.1;
        if t1.is_nan() || t1 <= 0.0 {
            return None;
        }
        let mut pts: Vec<(usize, f64)> =
            points.iter().filter(|p| (1..=MAX_BATCH).contains(&p.0) && p.1 > 0.0).copied().collect();
        pts.sort_by_key(|p| p.0);
        let mut rel = [0.0; MAX_BATCH + 1];
        for (b, r) in rel.iter_mut().enumerate().skip(1) {
            let below = pts.iter().rev().find(|p| p.0 <= b).copied().unwrap_or((1, t1));
            let above = pts.iter().find(|p| p.0 >= b).copied();
            let t = match above {
                Some(a) if a.0 != below.0 => {
                    let f = (b - below.0) as f64 / (a.0 - below.0) as f64;
                    below.1 + f * (a.1 - below.1)
                }
                Some(a) => a.1,
                None => {
                    // Beyond the last point: extend the last slope.
                    let n = pts.len();
                    if n >= 2 {
                        let (p0, p1) = (pts[n - 2], pts[n - 1]);
                        p1.1 + (p1.1 - p0.1) / (p1.0 - p0.0) as f64 * (b - p1.0) as f64
                    } else {
                        below.1
                    }
                }
            };
            *r = (t / t1) as f32;
        }
        for b in 2..=MAX_BATCH {
            rel[b] = rel[b].max(rel[b - 1]);
        }
        rel[1] = 1.0;
        Some(CostModel { rel, measured: true })
    }

    /// Time forward passes of the real model at `start` (rolled back afterwards) for a few batch
    /// sizes; the fastest of `reps` runs of each. Needs `MAX_BATCH` free positions in the cache.
    pub fn measure(
        model: &Model,
        ws: &mut Workspace,
        cache: &mut KvCache,
        token: u32,
        reps: usize,
    ) -> Result<CostModel> {
        let start = cache.len();
        let tokens = [token; MAX_BATCH];
        let sizes = [1usize, 2, 4, 6, 8, 12, 16];
        let mut points = Vec::with_capacity(sizes.len());
        // One warm-up pass so the first timing does not pay for cold caches.
        model.forward(ws, cache, &tokens[..1], &ForwardPlan::at(start))?;
        for &b in &sizes {
            let mut best = f64::INFINITY;
            for _ in 0..reps.max(1) {
                let t = Instant::now();
                model.forward(ws, cache, &tokens[..b], &ForwardPlan::at(start).logits(LogitRows::All))?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            points.push((b, best));
        }
        cache.truncate(start)?;
        Ok(CostModel::from_timings(&points).unwrap_or_default())
    }

    /// `rel(b)`, clamped to `1 ..= MAX_BATCH`.
    pub fn rel(&self, b: usize) -> f32 {
        self.rel[b.clamp(1, MAX_BATCH)]
    }

    /// Whether the curve was measured on this machine.
    pub fn is_measured(&self) -> bool {
        self.measured
    }

    /// Expected tokens per pass with per-token acceptance `alpha` and `gamma` drafted tokens.
    pub fn expected_tokens(alpha: f32, gamma: usize) -> f32 {
        let a = alpha.clamp(0.0, 0.999);
        (1.0 - a.powi(gamma as i32 + 1)) / (1.0 - a)
    }

    /// The draft length in `0 ..= max` with the most expected tokens per unit of time at
    /// acceptance `alpha`, and that speed relative to plain decoding.
    pub fn best_gamma(&self, alpha: f32, max: usize) -> (usize, f32) {
        let mut best = (0, 1.0);
        for g in 1..=max.min(MAX_BATCH - 1) {
            let speed = CostModel::expected_tokens(alpha, g) / self.rel(g + 1);
            if speed > best.1 {
                best = (g, speed);
            }
        }
        best
    }
}

/// The draft-length bound that follows acceptance: grow by 2 after a fully accepted draft,
/// shrink by 1 after a rejection, within `1 ..= max` (`max` from the cost model: the longest
/// draft still worth verifying at a high acceptance rate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DraftLength {
    current: usize,
    max: usize,
}

impl DraftLength {
    /// Start at `start`, bounded by `max` (both at least 1 and at most `MAX_BATCH − 1`).
    pub fn new(start: usize, max: usize) -> DraftLength {
        let max = max.clamp(1, MAX_BATCH - 1);
        DraftLength { current: start.clamp(1, max), max }
    }

    /// The bound derived from a cost curve: the best draft length at acceptance 0.9.
    pub fn from_cost(cost: &CostModel) -> DraftLength {
        let (g, _) = cost.best_gamma(0.9, MAX_BATCH - 1);
        DraftLength::new(4, g.max(1))
    }

    /// Tokens to draft at most this step.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The upper bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Update after a draft of `drafted` tokens of which `accepted` were taken.
    pub fn update(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        if accepted >= drafted {
            self.current = (self.current + 2).min(self.max);
        } else {
            self.current = self.current.saturating_sub(1).max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_interpolate_and_never_decrease() {
        let c = CostModel::from_timings(&[(1, 10.0), (4, 13.0), (8, 20.0), (16, 18.0)]).unwrap();
        assert_eq!(c.rel(1), 1.0);
        assert!((c.rel(2) - 1.1).abs() < 1e-6 && (c.rel(6) - 1.65).abs() < 1e-6);
        assert!(c.rel(16) >= c.rel(8), "made monotone");
        assert!(CostModel::from_timings(&[(2, 1.0)]).is_none());
    }

    #[test]
    fn best_gamma_follows_cost_and_acceptance() {
        let cheap = CostModel::linear(0.02);
        let dear = CostModel::linear(1.0);
        assert!(cheap.best_gamma(0.9, 15).0 >= 8);
        assert_eq!(dear.best_gamma(0.9, 15).0, 0, "verifying at full price never pays");
        assert_eq!(cheap.best_gamma(0.0, 15).0, 0, "nothing is accepted");
        assert!((CostModel::expected_tokens(0.5, 1) - 1.5).abs() < 1e-6);
    }

    #[test]
    fn draft_length_grows_and_shrinks_within_bounds() {
        let mut d = DraftLength::new(4, 7);
        d.update(4, 4);
        assert_eq!(d.current(), 6);
        d.update(6, 6);
        assert_eq!(d.current(), 7);
        d.update(7, 2);
        assert_eq!(d.current(), 6);
        for _ in 0..10 {
            d.update(1, 0);
        }
        assert_eq!(d.current(), 1);
        d.update(0, 0);
        assert_eq!(d.current(), 1);
    }
}
