//! Choosing the next token from logits: greedy, or sampling shaped by repetition penalty, top-k,
//! top-p, min-p and temperature, driven by a seeded generator so a seed always gives the same
//! text.
//!
//! The order of the filters follows llama.cpp's default chain — penalty, top-k, top-p, min-p,
//! then temperature — so top-p and min-p see the untempered distribution and the same settings
//! mean the same thing in both programs. [`Sampler::distribution`] exposes the final
//! distribution, which speculative sampling needs to accept or reject drafted tokens.
//!
//! Nothing here allocates per token: the candidate buffer is sized to the vocabulary once.

use crate::error::{Error, Result};

/// Settings of the sampler. `Default` is llama.cpp's default (temperature 0.8, top-k 40, top-p
/// 0.95, min-p 0.05, no repetition penalty); [`SamplingParams::greedy`] is argmax decoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0` (or below) means greedy argmax.
    pub temperature: f32,
    /// Keep the `k` most likely tokens (`0` disables).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (`1` disables).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the most likely one (`0` disables).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens by this (`1` disables).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x5EED,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (argmax, no penalty).
    pub fn greedy() -> Self {
        SamplingParams { temperature: 0.0, ..SamplingParams::default() }
    }

    /// Whether these settings pick the argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Check the ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::invalid(what.to_string()));
        if !self.temperature.is_finite() {
            return bad("the temperature must be a finite number");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min-p must be in [0, 1]");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad("the repetition penalty must be a positive number");
        }
        Ok(())
    }
}

/// xoshiro256**, seeded through SplitMix64: small, fast, and the same sequence on every
/// platform.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut split = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { s: [split(), split(), split(), split()] }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A token with its logit and probability.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub id: u32,
    /// Logit, after the repetition penalty.
    pub logit: f32,
    /// Probability in the current distribution.
    pub p: f32,
}

/// Most likely first; equal logits by token id, so the order (and the draw) is deterministic.
fn by_logit_desc(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Picks tokens according to [`SamplingParams`].
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    /// Scratch, `(vocab)`.
    candidates: Vec<Candidate>,
    /// Length of the current distribution in `candidates`.
    n: usize,
}

impl Sampler {
    /// A sampler for a vocabulary of `vocab` tokens.
    pub fn new(params: SamplingParams, vocab: usize) -> Result<Sampler> {
        params.validate()?;
        Ok(Sampler { params, rng: Rng::new(params.seed), candidates: Vec::with_capacity(vocab), n: 0 })
    }

    /// The settings.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The generator (speculative sampling draws its acceptance tests from it).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Pick the next token from `logits` (`vocab`), given the tokens so far (`history`, for the
    /// repetition penalty).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32> {
        if self.params.is_greedy() {
            return self.greedy(logits, history);
        }
        let u = self.rng.next_f64();
        let dist = self.distribution(logits, history)?;
        let mut acc = 0f64;
        for c in dist {
            acc += c.p as f64;
            if u < acc {
                return Ok(c.id);
            }
        }
        // Rounding left the total just under 1 and u above it: the last candidate.
        dist.last().map(|c| c.id).ok_or_else(|| Error::internal("empty distribution"))
    }

    fn load(&mut self, logits: &[f32], history: &[u32]) -> Result<()> {
        if logits.is_empty() {
            return Err(Error::invalid("no logits to sample from"));
        }
        self.candidates.clear();
        self.candidates.extend(logits.iter().enumerate().map(|(i, &v)| Candidate {
            id: i as u32,
            logit: v,
            p: 0.0,
        }));
        let p = self.params.repeat_penalty;
        if p != 1.0 {
            let recent = &history[history.len().saturating_sub(self.params.repeat_last_n)..];
            // Each distinct token is penalised once, however often it occurred.
            for (i, &t) in recent.iter().enumerate() {
                if recent[..i].contains(&t) {
                    continue;
                }
                if let Some(c) = self.candidates.get_mut(t as usize) {
                    c.logit = if c.logit > 0.0 { c.logit / p } else { c.logit * p };
                }
            }
        }
        self.n = self.candidates.len();
        Ok(())
    }

    /// The argmax of `logits` after the repetition penalty (ties go to the lower id).
    pub fn greedy(&mut self, logits: &[f32], history: &[u32]) -> Result<u32> {
        if self.params.repeat_penalty == 1.0 {
            return argmax(logits).ok_or_else(|| Error::invalid("no logits to sample from"));
        }
        self.load(logits, history)?;
        let best = self.candidates.iter().min_by(|a, b| by_logit_desc(a, b));
        best.map(|c| c.id).ok_or_else(|| Error::invalid("no logits to sample from"))
    }

    /// The distribution the last [`Sampler::distribution`] call left (empty before any).
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates[..self.n.min(self.candidates.len())]
    }

    /// The distribution sampling draws from: the candidates that survive the filters, most
    /// likely first, with probabilities summing to 1.
    pub fn distribution(&mut self, logits: &[f32], history: &[u32]) -> Result<&[Candidate]> {
        self.load(logits, history)?;
        let prm = self.params;
        let c = &mut self.candidates;

        // Top-k, then sort what is left (all of it when top-k is off and a later filter needs
        // the order).
        let k = if prm.top_k == 0 { c.len() } else { prm.top_k.min(c.len()) };
        if k < c.len() {
            c.select_nth_unstable_by(k - 1, by_logit_desc);
            c.truncate(k);
        }
        c.sort_unstable_by(by_logit_desc);

        // Softmax at temperature 1 for top-p and min-p.
        softmax(c, 1.0);
        if prm.top_p < 1.0 {
            let mut acc = 0f64;
            let mut keep = c.len();
            for (i, cand) in c.iter().enumerate() {
                acc += cand.p as f64;
                if acc >= prm.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep.max(1));
        }
        if prm.min_p > 0.0 {
            let floor = c.first().map_or(0.0, |t| t.p) * prm.min_p;
            let keep = c.iter().take_while(|t| t.p >= floor).count();
            c.truncate(keep.max(1));
        }
        // Temperature on the survivors; greedy settings give the argmax all the mass.
        if prm.is_greedy() {
            c.truncate(1);
            c.iter_mut().for_each(|t| t.p = 1.0);
        } else {
            softmax(c, prm.temperature);
        }
        self.n = c.len();
        Ok(&self.candidates[..self.n])
    }
}

/// Probabilities of the candidates' logits at temperature `t` (sum in f64). The most likely
/// candidate has weight 1 before normalising, so the sum never underflows.
fn softmax(c: &mut [Candidate], t: f32) {
    let max = c.iter().fold(f32::NEG_INFINITY, |m, x| m.max(x.logit));
    let mut z = 0f64;
    for x in c.iter_mut() {
        x.p = ((x.logit - max) / t).exp();
        z += x.p as f64;
    }
    for x in c.iter_mut() {
        x.p = (x.p as f64 / z) as f32;
    }
}

/// Index of the largest value (the first of equals); `None` when empty.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        match best {
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32) -> SamplingParams {
        SamplingParams { temperature: t, top_k: 0, top_p: 1.0, min_p: 0.0, ..SamplingParams::default() }
    }

    #[test]
    fn rng_is_deterministic_and_uniform_enough() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..8).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(Rng::new(43).next_u64(), xs[0]);
        let mut r = Rng::new(1);
        let n = 100_000;
        let mean = (0..n).map(|_| r.next_f64()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn greedy_is_argmax_with_first_of_ties() {
        let mut s = Sampler::new(SamplingParams::greedy(), 4).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0], &[]).unwrap(), 1);
        assert_eq!(argmax(&[]), None);
        assert!(s.sample(&[], &[]).is_err());
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let p = SamplingParams { repeat_penalty: 2.0, ..SamplingParams::greedy() };
        let mut s = Sampler::new(p, 3).unwrap();
        // 3.0 / 2 = 1.5 < 2.0: token 0 loses to token 1 once it has been seen.
        assert_eq!(s.sample(&[3.0, 2.0, -1.0], &[]).unwrap(), 0);
        assert_eq!(s.sample(&[3.0, 2.0, -1.0], &[0, 0]).unwrap(), 1);
        // Negative logits are multiplied: -1 → -2.
        let d = Sampler::new(SamplingParams { repeat_penalty: 2.0, ..params(1.0) }, 3)
            .unwrap()
            .distribution(&[0.0, 0.0, -1.0], &[2])
            .unwrap()
            .to_vec();
        let p2 = d.iter().find(|c| c.id == 2).unwrap().p;
        let expect = (-2f64).exp() / (2.0 + (-2f64).exp());
        assert!((p2 as f64 - expect).abs() < 1e-6);
    }

    #[test]
    fn filters_cut_the_distribution() {
        let logits = [2.0f32, 1.0, 0.0, -1.0, -5.0];
        let mut s = Sampler::new(SamplingParams { top_k: 2, ..params(1.0) }, 5).unwrap();
        let d = s.distribution(&logits, &[]).unwrap();
        assert_eq!(d.iter().map(|c| c.id).collect::<Vec<_>>(), [0, 1]);
        assert!((d[0].p - 1.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);
        // Top-p 0.8: p0 ≈ 0.64, p0+p1 ≈ 0.88 ≥ 0.8 → two tokens.
        let mut s = Sampler::new(SamplingParams { top_p: 0.8, ..params(1.0) }, 5).unwrap();
        assert_eq!(s.distribution(&logits, &[]).unwrap().len(), 2);
        // Min-p 0.1: keeps p ≥ 0.1·p0, i.e. logits within ln 10 of the top (2, 1, 0).
        let mut s = Sampler::new(SamplingParams { min_p: 0.1, ..params(1.0) }, 5).unwrap();
        assert_eq!(s.distribution(&logits, &[]).unwrap().len(), 3);
        let total: f32 = s.distribution(&logits, &[]).unwrap().iter().map(|c| c.p).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let logits = [1.0f32, 0.0];
        let p0 = |t: f32| Sampler::new(params(t), 2).unwrap().distribution(&logits, &[]).unwrap()[0].p;
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        assert!((p0(1.0) - sigmoid(1.0)).abs() < 1e-6);
        assert!((p0(0.5) - sigmoid(2.0)).abs() < 1e-5);
        assert!((p0(2.0) - sigmoid(0.5)).abs() < 1e-5);
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let logits = [0.0f32, (3f32).ln(), -30.0];
        let mut s = Sampler::new(SamplingParams { seed: 7, ..params(1.0) }, 3).unwrap();
        let draws: Vec<u32> = (0..4000).map(|_| s.sample(&logits, &[]).unwrap()).collect();
        let ones = draws.iter().filter(|&&t| t == 1).count() as f64 / draws.len() as f64;
        assert!((ones - 0.75).abs() < 0.03, "token 1 drawn {ones}");
        let mut again = Sampler::new(SamplingParams { seed: 7, ..params(1.0) }, 3).unwrap();
        let replay: Vec<u32> = (0..4000).map(|_| again.sample(&logits, &[]).unwrap()).collect();
        assert_eq!(draws, replay);
    }

    #[test]
    fn bad_settings_are_refused() {
        for p in [
            SamplingParams { top_p: 0.0, ..SamplingParams::default() },
            SamplingParams { min_p: 1.5, ..SamplingParams::default() },
            SamplingParams { repeat_penalty: 0.0, ..SamplingParams::default() },
            SamplingParams { temperature: f32::NAN, ..SamplingParams::default() },
        ] {
            assert!(Sampler::new(p, 4).is_err(), "{p:?}");
        }
    }
}
