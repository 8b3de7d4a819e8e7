//! The acceptance rules that keep speculative decoding exact (docs/architecture.md, section 3): each drafted
//! token is checked against the model's distribution at its position, in order, and the first
//! one that fails is replaced by a token drawn so that the output follows the model exactly.
//!
//! - Greedy settings, or a drafter without probabilities: draw the model's own token y at the
//!   position (argmax, or a sample from p) and accept the draft while y equals it
//!   ("sample-and-match"). This spends one random draw per emitted token, exactly as plain
//!   decoding does, so with the same seed it emits *the same* tokens as plain decoding.
//! - A drafter with probabilities q: accept x with probability min(1, p(x)/q(x)); on rejection
//!   draw from normalise(max(0, p − q)) (Leviathan et al. 2023, Chen et al. 2023).
//!
//! p is the distribution after every sampling filter (penalty, top-k, top-p, min-p,
//! temperature), as [`Sampler::distribution`] gives it.

use crate::error::{Error, Result};
use crate::sampling::Sampler;
use crate::tokenizer::TokenId;

/// The outcome of checking one drafted token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The drafted token stands.
    Accept,
    /// The drafted token is replaced by this one, and the rest of the draft is discarded.
    Replace(TokenId),
}

/// Sample-and-match: the model's token at this position (`logits` after `context`) decides.
pub fn sample_and_match(
    sampler: &mut Sampler,
    logits: &[f32],
    context: &[TokenId],
    drafted: TokenId,
) -> Result<Verdict> {
    let y = sampler.sample(logits, context)?;
    Ok(if y == drafted { Verdict::Accept } else { Verdict::Replace(y) })
}

/// The rejection rule for a drafted token `drafted` that the drafter proposed with the
/// distribution `q` (`(token, probability)` pairs; unlisted tokens have q = 0). Greedy settings
/// fall back to [`sample_and_match`] (p is then a point mass and the rule reduces to it).
pub fn rejection(
    sampler: &mut Sampler,
    logits: &[f32],
    context: &[TokenId],
    drafted: TokenId,
    q: &[(TokenId, f32)],
) -> Result<Verdict> {
    if sampler.params().is_greedy() {
        return sample_and_match(sampler, logits, context, drafted);
    }
    let q_of = |t: TokenId| q.iter().find(|&&(id, _)| id == t).map_or(0.0, |&(_, p)| p.max(0.0));
    let qx = q_of(drafted);
    let u = sampler.rng().next_f64();
    let dist = sampler.distribution(logits, context)?;
    let px = dist.iter().find(|c| c.id == drafted).map_or(0.0, |c| c.p);
    // A drafter that claims q(x) = 0 for its own token is treated as certain of it (a point
    // mass), which is what a deterministic drafter means.
    let qx_eff = if qx > 0.0 { qx } else { 1.0 };
    if (u as f32) * qx_eff < px {
        return Ok(Verdict::Accept);
    }
    // Residual: max(0, p − q) over p's support (where p = 0 the residual is 0 too).
    let residual = |t: TokenId, p: f32| {
        let qt = if t == drafted && qx <= 0.0 { 1.0 } else { q_of(t) };
        (p - qt).max(0.0) as f64
    };
    let z: f64 = dist.iter().map(|c| residual(c.id, c.p)).sum();
    let v = sampler.rng().next_f64();
    // Re-borrow: the rng draw above needed `sampler` mutably.
    let dist = sampler.candidates();
    if z <= 0.0 {
        // p ≤ q everywhere yet x was rejected: only rounding gets here; draw from p itself.
        return draw(dist.iter().map(|c| (c.id, c.p as f64)), 1.0, v);
    }
    draw(dist.iter().map(|c| (c.id, residual(c.id, c.p))), z, v)
}

/// The token at which the running sum of `weights` passes `v · total`.
fn draw(weights: impl Iterator<Item = (TokenId, f64)>, total: f64, v: f64) -> Result<Verdict> {
    let target = v * total;
    let mut acc = 0.0;
    let mut last = None;
    for (id, w) in weights {
        if w <= 0.0 {
            continue;
        }
        acc += w;
        last = Some(id);
        if target < acc {
            return Ok(Verdict::Replace(id));
        }
    }
    last.map(Verdict::Replace).ok_or_else(|| Error::internal("empty residual distribution"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::{Rng, SamplingParams};

    fn sampler(seed: u64) -> Sampler {
        let p =
            SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..Default::default() };
        Sampler::new(p, 3).unwrap()
    }

    #[test]
    fn greedy_accepts_only_the_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy(), 3).unwrap();
        let l = [0.0f32, 2.0, 1.0];
        assert_eq!(sample_and_match(&mut s, &l, &[], 1).unwrap(), Verdict::Accept);
        assert_eq!(sample_and_match(&mut s, &l, &[], 2).unwrap(), Verdict::Replace(1));
        assert_eq!(rejection(&mut s, &l, &[], 2, &[(2, 0.9)]).unwrap(), Verdict::Replace(1));
    }

    /// The rejection rule's output follows p whatever q is, when the draft is drawn from q.
    #[test]
    fn rejection_rule_output_follows_p() {
        let l = [0.0f32, (2f32).ln(), (5f32).ln()]; // p = 1/8, 2/8, 5/8
        let p = [0.125, 0.25, 0.625];
        let mut draw_q = Rng::new(5);
        for q in [vec![(0u32, 0.9f32), (1, 0.1)], vec![(2, 0.3), (0, 0.7)], vec![(1, 1.0)], vec![]] {
            let n = 40_000;
            let mut counts = [0usize; 3];
            let mut s = sampler(11);
            for _ in 0..n {
                // x ~ q (an empty q means a point mass on token 1).
                let u = draw_q.next_f64() as f32;
                let mut acc = 0.0;
                let x = q.iter().find(|e| {
                    acc += e.1;
                    u < acc
                });
                let x = x.or(q.last()).map_or(1, |e| e.0);
                let t = match rejection(&mut s, &l, &[], x, &q).unwrap() {
                    Verdict::Accept => x,
                    Verdict::Replace(t) => t,
                };
                counts[t as usize] += 1;
            }
            for i in 0..3 {
                let f = counts[i] as f64 / n as f64;
                assert!((f - p[i]).abs() < 0.012, "q {q:?}: token {i} at {f}, want {}", p[i]);
            }
        }
    }
}
