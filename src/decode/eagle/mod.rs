//! Feature-level drafting (EAGLE family), distilled on the device: a small network ([`net`])
//! predicts the model's next final hidden state from the current one and the next token's
//! embedding; the model's own output matrix, restricted to the lowest `V` token ids, turns each
//! predicted feature into a draft token, and drafting continues autoregressively in feature
//! space (the predicted feature and the drafted token's embedding go back in). Unlike the
//! Medusa-style [`heads`](super::heads), one network serves every draft position, so later
//! positions keep the information of the tokens drafted before them.
//!
//! Trained by `edgespec tune` ([`train`]) on teacher-forced passes over the model's own greedy
//! replies and saved beside the model ([`file`](mod@file)). Drafted tokens are verified by the full
//! model, so decoding stays exact whatever the drafter says (greedy: plain's tokens; sampling:
//! sample-and-match in the engine).

pub mod file;
pub mod net;
pub mod train;

use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::kernels::{matvec, ActKind, QuantizedActs};
use crate::model::MAX_BATCH;
use crate::tokenizer::TokenId;

use super::heads::{token_embedding, top_n};
use super::{Built, Draft, DraftInput, Drafter, Setup};

pub use file::eagle_path;
pub use net::EagleNet;
pub use train::{EagleConfig, EagleReport};

/// Longest chain drafted.
const MAX_DEPTH: usize = 8;
/// Weight of the past in the calibration sums (per checked token).
const DECAY: f32 = 0.98;
/// Longest rest after drafts that did not pay, in steps.
const MAX_BACKOFF: u32 = 8;

/// The drafter of strategy `eagle`: a chain drafted in feature space, cut where the expected
/// number of accepted tokens (the product of the drafter's calibrated top-1 probabilities)
/// stops paying for the longer verify pass and the drafting steps themselves.
pub struct EagleDrafter {
    net: Arc<EagleNet>,
    acts: QuantizedActs,
    scratch: net::StepScratch,
    /// Current and next feature, the token embedding, `(dim)` each.
    feat: Vec<f32>,
    next: Vec<f32>,
    emb: Vec<f32>,
    /// `(V)` logits of one step.
    logits: Vec<f32>,
    /// Seconds per drafting step (moving average; 0 until measured).
    step_s: f64,
    /// Drafting calls so far.
    passes: usize,
    skip: u32,
    backoff: u32,
    /// Top-1 probabilities of the tokens of the last draft, and per depth decayed sums of
    /// predicted and observed acceptance of checked tokens (their ratio calibrates confidence).
    last_p: Vec<f32>,
    predicted: [f32; MAX_DEPTH],
    hits: [f32; MAX_DEPTH],
}

impl std::fmt::Debug for EagleDrafter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EagleDrafter({} passes, {:.2} ms/step)", self.passes, 1e3 * self.step_s)
    }
}

impl EagleDrafter {
    /// A drafter for `model` with `net` (checked against the model).
    pub fn new(model: &crate::model::Model, net: Arc<EagleNet>) -> Result<EagleDrafter> {
        net.check_for(model)?;
        let d = net.dim;
        Ok(EagleDrafter {
            acts: QuantizedActs::with_capacity(d, 1),
            scratch: net.scratch(),
            feat: vec![0.0; d],
            next: vec![0.0; d],
            emb: vec![0.0; d],
            logits: vec![0.0; net.vocab],
            step_s: 0.0,
            passes: 0,
            skip: 0,
            backoff: 0,
            last_p: Vec::with_capacity(MAX_DEPTH),
            predicted: [0.0; MAX_DEPTH],
            hits: [0.0; MAX_DEPTH],
            net,
        })
    }

    /// The network in use.
    pub fn net(&self) -> &EagleNet {
        &self.net
    }

    /// How depth `j`'s confidence fared on this text so far (accepted / predicted).
    fn calibration(&self, j: usize) -> f32 {
        ((self.hits[j] + 1.0) / (self.predicted[j] + 1.0)).clamp(0.05, 2.0)
    }
}

/// The drafter of strategy `eagle`: the network set for the session, else the file beside the
/// model (refused with a message when it is missing).
pub(crate) fn build(s: &mut Setup<'_>) -> Built {
    let net = match &s.files.eagle {
        Some(n) => n.clone(),
        None => Arc::new(EagleNet::load_for(s.model)?),
    };
    s.files.eagle = Some(net.clone());
    Ok(Some(Box::new(EagleDrafter::new(s.model, net)?)))
}

impl Drafter for EagleDrafter {
    fn name(&self) -> &'static str {
        "eagle"
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> Result<()> {
        let Some(h) = input.hidden else { return Ok(()) };
        let Some(&pending) = input.context.last() else { return Ok(()) };
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(());
        }
        let net = Arc::clone(&self.net);
        let (d, v) = (net.dim, net.vocab);
        let max = input.max.min(MAX_DEPTH).min(MAX_BATCH - 1);
        if max == 0 || h.len() != d {
            return Ok(());
        }
        let w = input.model.output_rows(v)?;
        let kind = [ActKind::for_weight(w.ty())?];
        // A drafting step's cost in single-token passes (0 until both are measured).
        let step_rel = match input.cost.single_pass_seconds() {
            Some(t1) if t1 > 0.0 => (self.step_s / t1) as f32,
            _ => 0.0,
        };
        self.feat.copy_from_slice(h);
        let mut tok = pending;
        let (mut reach, mut expected) = (1.0f32, 1.0f32);
        let mut best = (0usize, 1.0f32);
        let mut tokens = [0 as TokenId; MAX_DEPTH];
        self.last_p.clear();
        let t0 = Instant::now();
        let mut steps = 0usize;
        for (j, slot) in tokens.iter_mut().enumerate().take(max) {
            token_embedding(input.model, tok, &mut self.emb)?;
            net.step(&self.feat, &self.emb, &mut self.scratch, &mut self.next);
            let pool = input.ws.pool();
            self.acts.quantize(pool.kernels(), &self.next, d, 1, &kind)?;
            matvec(pool, &w, &self.acts, &mut self.logits)?;
            steps += 1;
            let [(t, p)] = top_n::<1>(&self.logits);
            tok = TokenId::try_from(t).map_err(|_| Error::internal("draft token id"))?;
            *slot = tok;
            self.last_p.push(p);
            reach *= (p * self.calibration(j)).min(0.99);
            expected += reach;
            let speed = expected / (input.cost.rel(j + 2) + step_rel * (j + 1) as f32);
            if speed > best.1 {
                best = (j + 1, speed);
            } else if j + 1 >= best.0 + 2 {
                break;
            }
            std::mem::swap(&mut self.feat, &mut self.next);
        }
        let per_step = t0.elapsed().as_secs_f64() / steps.max(1) as f64;
        self.step_s = if self.step_s == 0.0 { per_step } else { 0.9 * self.step_s + 0.1 * per_step };
        out.tokens.extend_from_slice(&tokens[..best.0]);
        self.last_p.truncate(best.0);
        self.backoff = if out.tokens.is_empty() { (2 * self.backoff).clamp(1, MAX_BACKOFF) } else { 0 };
        self.skip = self.backoff;
        self.passes += 1;
        Ok(())
    }

    fn feedback(&mut self, drafted: usize, accepted: usize) {
        let depths = if drafted > 0 { self.last_p.len() } else { 0 };
        for j in 0..depths.min(accepted + 1) {
            self.predicted[j] = DECAY * self.predicted[j] + self.last_p[j];
            self.hits[j] = DECAY * self.hits[j] + f32::from(u8::from(j < accepted));
        }
    }

    fn reset(&mut self) {
        self.skip = 0;
        self.backoff = 0;
    }

    fn describe(&self) -> Option<String> {
        let n = &self.net;
        Some(format!(
            "rank {} V {}, chain (held-out α {:.2}/{:.2}), {:.2} ms/step",
            n.rank,
            n.vocab,
            n.alpha[0],
            n.alpha[1],
            1e3 * self.step_s
        ))
    }
}
