//! How many tokens to draft: what a verify pass of `b` tokens costs on this machine relative to
//! one token ([`CostModel`]), and the draft length that follows live acceptance ([`DraftLength`]).
//!
//! Speculation pays only while verifying γ drafted tokens plus one costs barely more than one
//! token. With per-token acceptance α, a pass yields (1 − α^(γ+1)) / (1 − α) tokens on average
//! and costs `rel(γ + 1)` single-token passes; the draft length that maximises their ratio is the
//! one to use. The cost curve depends on the CPU, its load, the thread count and the model, so it
//! is learnt from the decode loop's own passes (every pass is timed anyway): no start-up
//! measurement, and it follows the machine when other work slows it down. The model is
//! `rel(b) = 1 + slope · (b − 1)`, its slope a moving average of what passes of more than one
//! token cost against the moving average of single-token passes (drifting back to its prior
//! after a long run of single-token passes only, so a slope measured too steep is measured again).

use crate::model::MAX_BATCH;

/// Relative cost of a forward pass of `b` tokens (`rel(1) = 1`), learnt online.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostModel {
    /// Extra cost of each token after the first, in single-token passes.
    slope: f32,
    /// Moving average of a single-token pass, seconds (0 until one was seen).
    t1: f64,
    /// Passes of more than one token that updated the slope.
    observed: u32,
    /// Single-token passes since the last multi-token one.
    singles: u32,
    /// Ignore observations (a fixed cost curve, for reproducible measurements).
    frozen: bool,
    /// A fixed cost per batch size (index `b`), instead of the line: [`CostModel::frozen_curve`].
    /// (Learning such a table online was tried: from a few noisy passes per size it chose worse
    /// token trees than the line learnt from all of them — auto's grounded median 1.37–1.39×
    /// vs 1.48–1.54× in alternating `edgespec bench` runs.)
    curve: Option<[f32; MAX_BATCH + 1]>,
}

impl Default for CostModel {
    /// The prior: 15% per extra token, until passes are observed.
    fn default() -> Self {
        CostModel::linear(CostModel::PRIOR_SLOPE)
    }
}

impl CostModel {
    /// Weight of a new observation in the moving averages.
    const RATE: f64 = 0.15;
    /// The prior slope; after `STALE` single-token passes in a row, each further one pulls the
    /// slope back toward it by `DRIFT`.
    const PRIOR_SLOPE: f32 = 0.15;
    const STALE: u32 = 64;
    const DRIFT: f32 = 0.02;

    /// `rel(b) = 1 + slope · (b − 1)`.
    pub fn linear(slope: f32) -> CostModel {
        CostModel::linear_const(slope.max(0.0))
    }

    /// [`CostModel::linear`] in constant context (`slope` must be ≥ 0).
    pub const fn linear_const(slope: f32) -> CostModel {
        CostModel { slope, t1: 0.0, observed: 0, singles: 0, frozen: false, curve: None }
    }

    /// A fixed cost curve through `points` (`(b, rel(b))`, `b ≥ 2`, in increasing `b` and
    /// non-decreasing cost), linear between them and beyond the last two (beyond the only one:
    /// through `rel(1) = 1`): to score and decide with a measured curve (`benches/draft_ceiling.rs`).
    /// `None` without points or with a `b` out of `2 ..= MAX_BATCH` or out of order.
    pub fn frozen_curve(points: &[(usize, f32)]) -> Option<CostModel> {
        let ok = !points.is_empty()
            && points.iter().all(|&(b, r)| (2..=MAX_BATCH).contains(&b) && r.is_finite() && r >= 1.0)
            && points.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        if !ok {
            return None;
        }
        let mut all = vec![(1usize, 1.0f32)];
        all.extend_from_slice(points);
        let mut table = [1.0f32; MAX_BATCH + 1];
        for (b, r) in table.iter_mut().enumerate().skip(2) {
            // The segment that holds `b`, else the last one.
            let i = all.windows(2).position(|w| b <= w[1].0).unwrap_or(all.len() - 2);
            let ((b0, r0), (b1, r1)) = (all[i], all[i + 1]);
            *r = r0 + (r1 - r0) * (b as f32 - b0 as f32) / (b1 - b0) as f32;
        }
        let slope = (table[MAX_BATCH] - 1.0) / (MAX_BATCH - 1) as f32;
        Some(CostModel { curve: Some(table), ..CostModel::frozen(slope) })
    }

    /// A cost curve with `slope` that observations do not change: draft choices then depend on
    /// acceptance alone, not on timings (reproducible tokens-per-pass comparisons).
    pub fn frozen(slope: f32) -> CostModel {
        // Known rather than learnt: as good as any number of observed passes.
        CostModel { frozen: true, observed: u32::MAX, ..CostModel::linear(slope) }
    }

    /// Account for a forward pass of `b` tokens that took `seconds`.
    pub fn observe(&mut self, b: usize, seconds: f64) {
        if self.frozen || !(seconds.is_finite() && seconds > 0.0) || b == 0 {
            return;
        }
        if b == 1 {
            self.t1 = if self.t1 == 0.0 { seconds } else { self.t1 + CostModel::RATE * (seconds - self.t1) };
            // Only multi-token passes measure the slope, and a slope that looks too steep stops
            // drafting, hence those passes: after a long run without one, drift back toward the
            // prior so that drafters try again (and measure again) instead of never.
            self.singles = self.singles.saturating_add(1);
            if self.singles > CostModel::STALE {
                self.slope += CostModel::DRIFT * (CostModel::PRIOR_SLOPE - self.slope);
            }
            return;
        }
        if self.t1 == 0.0 {
            return;
        }
        self.singles = 0;
        let s = ((seconds / self.t1 - 1.0) / (b - 1) as f64).clamp(0.0, 2.0);
        self.slope += (CostModel::RATE as f32) * (s as f32 - self.slope);
        self.observed += 1;
    }

    /// `rel(b)`, for `b` clamped to `1 ..= MAX_BATCH`.
    pub fn rel(&self, b: usize) -> f32 {
        let b = b.clamp(1, MAX_BATCH);
        match &self.curve {
            Some(c) => c[b],
            None => 1.0 + self.slope * (b - 1) as f32,
        }
    }

    /// Seconds of a single-token pass (moving average; `None` before one was timed).
    pub fn single_pass_seconds(&self) -> Option<f64> {
        (self.t1 > 0.0).then_some(self.t1)
    }

    /// The current slope (extra cost per extra token).
    pub fn slope(&self) -> f32 {
        self.slope
    }

    /// How many multi-token passes the slope has learnt from (0: still the prior).
    pub fn observed(&self) -> u32 {
        self.observed
    }

    /// Expected tokens per pass with per-token acceptance `alpha` and `gamma` drafted tokens.
    pub fn expected_tokens(alpha: f32, gamma: usize) -> f32 {
        let a = alpha.clamp(0.0, 0.999);
        (1.0 - a.powi(gamma as i32 + 1)) / (1.0 - a)
    }

    /// The draft length in `0 ..= max` with the most expected tokens per unit of time at
    /// acceptance `alpha`, and that speed relative to plain decoding.
    pub fn best_gamma(&self, alpha: f32, max: usize) -> (usize, f32) {
        self.best_gamma_drafting(alpha, max, 0.0)
    }

    /// [`CostModel::best_gamma`] for a drafter whose every drafted token costs `draft_rel`
    /// single-token passes (a drafter that runs the model itself).
    pub fn best_gamma_drafting(&self, alpha: f32, max: usize, draft_rel: f32) -> (usize, f32) {
        let mut best = (0, 1.0);
        for g in 1..=max.min(MAX_BATCH - 1) {
            let speed =
                CostModel::expected_tokens(alpha, g) / (self.rel(g + 1) + g as f32 * draft_rel.max(0.0));
            if speed > best.1 {
                best = (g, speed);
            }
        }
        best
    }

    /// The longest draft worth verifying even at a high acceptance rate (0.9): the bound of the
    /// adaptive draft length.
    pub fn max_useful(&self) -> usize {
        self.best_gamma(0.9, MAX_BATCH - 1).0.max(1)
    }
}

/// The draft-length bound that follows acceptance: grow by 2 after a fully accepted draft,
/// shrink by 1 after a rejection, within `1 ..= max`; the engine further bounds it by
/// [`CostModel::max_useful`] each step.
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
    fn slope_is_learnt_from_passes() {
        let mut c = CostModel::default();
        c.observe(4, 1.0);
        assert_eq!(c.observed(), 0, "no single-token pass seen yet");
        for _ in 0..60 {
            c.observe(1, 0.010);
            c.observe(5, 0.018); // 1.8x for 5 tokens: slope 0.2
        }
        assert!((c.slope() - 0.2).abs() < 0.01, "{}", c.slope());
        assert!((c.rel(5) - 1.8).abs() < 0.05);
        c.observe(3, f64::NAN);
        assert!(c.slope().is_finite());
        // A long run of single-token passes pulls a steep slope back toward the prior; a short
        // one does not.
        let mut steep = CostModel::default();
        steep.observe(1, 0.01);
        steep.observe(5, 0.05);
        let measured = steep.slope();
        (0..60).for_each(|_| steep.observe(1, 0.01));
        assert_eq!(steep.slope(), measured);
        (0..200).for_each(|_| steep.observe(1, 0.01));
        assert!(steep.slope() < measured && steep.slope() > 0.15, "{}", steep.slope());
        let mut f = CostModel::frozen(0.3);
        f.observe(1, 0.01);
        f.observe(5, 0.1);
        assert_eq!((f.slope(), f.single_pass_seconds()), (0.3, None));
        assert!(CostModel::linear(0.02).max_useful() > CostModel::linear(0.5).max_useful());
    }

    #[test]
    fn a_frozen_curve_interpolates_its_points() {
        let f = CostModel::frozen_curve(&[(2, 1.05), (4, 1.55), (8, 2.27), (16, 3.94)]).unwrap();
        assert!((f.rel(2) - 1.05).abs() < 1e-6 && (f.rel(3) - 1.30).abs() < 1e-6);
        assert!((f.rel(16) - 3.94).abs() < 1e-6 && (f.rel(6) - 1.91).abs() < 1e-6);
        assert_eq!(f.rel(1), 1.0);
        let mut g = f;
        g.observe(1, 0.01);
        g.observe(4, 0.05);
        assert_eq!(g, f, "frozen");
        // A cheap second token makes a one-token draft at acceptance 0.3 pay; on the line
        // through rel(8) it would not.
        assert_eq!(f.best_gamma(0.3, 1).0, 1);
        assert_eq!(CostModel::linear((2.27 - 1.0) / 7.0).best_gamma(0.15, 1).0, 0);
        let one = CostModel::frozen_curve(&[(3, 1.2)]).unwrap();
        assert!((one.rel(2) - 1.1).abs() < 1e-6 && (one.rel(5) - 1.4).abs() < 1e-6);
        assert!(CostModel::frozen_curve(&[]).is_none());
        assert!(CostModel::frozen_curve(&[(4, 1.5), (2, 1.1)]).is_none());
        assert!(CostModel::frozen_curve(&[(2, 1.5), (4, 1.1)]).is_none());
        assert!(CostModel::frozen_curve(&[(1, 1.0)]).is_none());
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
