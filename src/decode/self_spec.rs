//! Drafters derived from the target model itself: the same weights run with some sub-layers
//! skipped (`self-spec`) or stopped after the first layers with the head applied there
//! (`early-exit`, LayerSkip-style). Nothing else is loaded and the vocabulary always matches.
//!
//! Each draft step is one cheaper forward pass of one token at the next position: it reads the
//! verified KV cache of the prefix and writes its own rows for the drafted positions, which the
//! verify pass then overwrites. Drafting stops early when the drafter's own top-1 probability
//! falls under a threshold, or when the cost model says a longer draft would not pay at the
//! acceptance seen so far.
//!
//! Status: the mechanism and its exactness are complete; the choice of what to skip is a fixed
//! default here (`edgespec tune`, which searches it by measured speed, is not built yet), and on
//! SmolLM2-135M these drafters cost too large a share of a full pass to pay (see the bench).

use std::time::Instant;

use crate::error::{Error, Result};
use crate::model::{ForwardPlan, LogitRows, SkipSet, SubLayer};
use crate::tokenizer::TokenId;

use super::{Draft, DraftInput, Drafter};

/// Which cheaper model drafts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfSpecParams {
    /// Sub-layers to skip.
    pub skip: SkipSet,
    /// Stop after this layer (0-based) and apply the final norm and head there.
    pub exit_after: Option<usize>,
    /// Stop drafting when the drafter's top-1 probability is below this (0 never stops).
    pub min_confidence_milli: u16,
}

impl SelfSpecParams {
    /// Layer skipping: the attention of every layer but the first two and the last, and the MLP
    /// of every fourth layer in the middle half (the sub-layers the α measurements found least
    /// harmful: early attention and early MLPs matter most).
    pub fn layer_skip(n_layers: usize) -> Result<SelfSpecParams> {
        let mut skip = SkipSet::none();
        for l in 2..n_layers.saturating_sub(1) {
            skip.insert(l, SubLayer::Attention)?;
        }
        for l in (n_layers / 4..3 * n_layers / 4).step_by(4) {
            skip.insert(l, SubLayer::Mlp)?;
        }
        Ok(SelfSpecParams { skip, exit_after: None, min_confidence_milli: 500 })
    }

    /// Early exit after the first `layers` layers.
    pub fn early_exit(layers: usize) -> Result<SelfSpecParams> {
        if layers == 0 {
            return Err(Error::invalid("early exit needs at least one layer"));
        }
        Ok(SelfSpecParams { skip: SkipSet::none(), exit_after: Some(layers - 1), min_confidence_milli: 500 })
    }
}

/// A drafter that runs a cheaper version of the target model.
#[derive(Debug)]
pub struct SelfSpecDrafter {
    name: &'static str,
    params: SelfSpecParams,
    /// Discounted accepted and drafted tokens (per-token acceptance estimate).
    accepted: f32,
    drafted: f32,
    /// Moving average of the seconds one draft step takes (0 before the first).
    step_s: f64,
}

impl SelfSpecDrafter {
    /// A drafter named `name` (the strategy) with `params`.
    pub fn new(name: &'static str, params: SelfSpecParams) -> SelfSpecDrafter {
        SelfSpecDrafter { name, params, accepted: 0.0, drafted: 0.0, step_s: 0.0 }
    }

    /// Per-token acceptance estimate (prior 0.6 weighted as 4 tokens).
    pub fn acceptance(&self) -> f32 {
        (self.accepted + 0.6 * 4.0) / (self.drafted + 4.0)
    }
}

/// The argmax of `logits` and its softmax probability.
fn top1(logits: &[f32]) -> Option<(TokenId, f32)> {
    let (best, max) =
        logits.iter().enumerate().fold(
            (0usize, f32::NEG_INFINITY),
            |(bi, bv), (i, &v)| {
                if v > bv {
                    (i, v)
                } else {
                    (bi, bv)
                }
            },
        );
    if !max.is_finite() {
        return None;
    }
    let z: f32 = logits.iter().map(|&v| (v - max).exp()).sum();
    Some((best as TokenId, 1.0 / z))
}

impl Drafter for SelfSpecDrafter {
    fn name(&self) -> &'static str {
        self.name
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> Result<()> {
        let Some(&last) = input.context.last() else { return Ok(()) };
        // The pending token (last of the context) goes in at the cache's end.
        let base = input.context.len() - 1;
        if input.cache.len() < base {
            return Err(Error::internal("the KV cache is behind the context"));
        }
        // Draft as long as it is expected to pay at the acceptance seen so far, counting what
        // the draft steps themselves cost (a share of a full pass).
        let draft_rel = match input.cost.single_pass_seconds() {
            Some(t1) if self.step_s > 0.0 => (self.step_s / t1) as f32,
            _ => 0.5,
        };
        let (max, _) = input.cost.best_gamma_drafting(self.acceptance(), input.max, draft_rel);
        let threshold = f32::from(self.params.min_confidence_milli) / 1000.0;
        let mut plan = ForwardPlan::at(base).logits(LogitRows::Last).skip(self.params.skip);
        if let Some(e) = self.params.exit_after {
            plan = plan.exit_after(e);
        }
        let capacity = input.cache.capacity();
        let mut tok = last;
        for i in 0..max {
            if base + i + 1 >= capacity {
                break;
            }
            plan.start = base + i;
            let t0 = Instant::now();
            let logits = input.model.forward(input.ws, input.cache, &[tok], &plan)?;
            let took = t0.elapsed().as_secs_f64();
            self.step_s = if self.step_s == 0.0 { took } else { self.step_s + 0.15 * (took - self.step_s) };
            let Some((next, p)) = top1(logits) else { break };
            if i > 0 && p < threshold {
                break;
            }
            out.tokens.push(next);
            tok = next;
        }
        Ok(())
    }

    fn feedback(&mut self, drafted: usize, accepted: usize) {
        const FORGET: f32 = 0.97;
        self.accepted = self.accepted * FORGET + accepted as f32;
        self.drafted = self.drafted * FORGET + drafted as f32;
    }

    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        let p = SelfSpecParams::layer_skip(30).unwrap();
        assert!(p.skip.contains(10, SubLayer::Attention) && !p.skip.contains(0, SubLayer::Attention));
        assert!(!p.skip.contains(29, SubLayer::Attention));
        assert!(p.skip.contains(7, SubLayer::Mlp));
        assert_eq!(SelfSpecParams::early_exit(12).unwrap().exit_after, Some(11));
        assert!(SelfSpecParams::early_exit(0).is_err());
    }

    #[test]
    fn top1_is_argmax_with_its_probability() {
        let (t, p) = top1(&[0.0, (3f32).ln(), 0.0]).unwrap();
        assert_eq!(t, 1);
        assert!((p - 0.6).abs() < 1e-6);
        assert!(top1(&[]).is_none());
    }
}
