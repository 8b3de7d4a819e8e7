//! Teacher-forced acceptance of self-derived drafters, for ranking skip sets without decoding:
//! the drafter reads the model's own greedy output in batched passes and its top-1 choice at
//! each position is compared with the token the model chose there.
//!
//! Decoding every candidate (the speed search of [`super::self_spec_search`]) is slow and noisy
//! on a shared machine; this agreement is neither (a few batched passes per candidate, exact
//! counts), so it can rank the sub-layers one by one — the measurement: which attention
//! or MLP sub-layer costs the least acceptance when skipped — and grow skip sets from the least
//! harmful up, leaving only the few sets worth it to the speed search.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::kernels::KernelPool;
use crate::model::{ForwardPlan, HeadVocab, KvCache, KvType, LogitRows, Model, SubLayer, Workspace};
use crate::sampling::SamplingParams;
use crate::session::{Flow, GenerateParams, Session, SessionOptions};
use crate::tokenizer::TokenId;

use crate::decode::self_spec::SelfSpecParams;
use crate::decode::self_spec_candidates::{Candidate, ModelBytes};
use crate::decode::Strategy;

/// One calibration sequence: a prompt and the model's greedy continuation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// Every token: the prompt (chat template applied), then the reply.
    pub tokens: Vec<TokenId>,
    /// Tokens of the prompt: the first prediction scored is the one after `tokens[prompt - 1]`.
    pub prompt: usize,
}

/// Greedy replies of `max_tokens` to each prompt (through the chat template when the model has
/// one), as calibration sequences.
pub fn greedy_sequences(
    model: &Model,
    prompts: &[String],
    max_tokens: usize,
    opts: &SessionOptions,
) -> Result<Vec<Sequence>> {
    let mut fresh = Model::from_file(model.file().clone())?;
    // On `model`'s GPU upload when it has one (no second upload).
    fresh.share_device(model);
    let mut s = Session::new(fresh, opts)?;
    let params = GenerateParams { max_tokens, sampling: SamplingParams::greedy(), strategy: Strategy::Plain };
    let mut out = Vec::with_capacity(prompts.len());
    for p in prompts {
        s.reset();
        let st = if s.chat_template().is_some() {
            s.chat(p, &params, &mut |_| Flow::Continue)?.1
        } else {
            s.generate(p, &params, &mut |_| Flow::Continue)?
        };
        let tokens: Vec<TokenId> = s.tokens().collect();
        // The stats' prompt count includes the template; the reply follows it.
        let prompt = tokens.len().saturating_sub(st.generated_tokens).max(1);
        out.push(Sequence { tokens, prompt });
    }
    Ok(out)
}

/// Measures drafters' teacher-forced top-1 agreement on a fixed set of sequences.
pub struct AgreementProbe {
    ws: Workspace,
    cache: KvCache,
    seqs: Vec<Sequence>,
}

impl std::fmt::Debug for AgreementProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgreementProbe({} sequences)", self.seqs.len())
    }
}

/// Agreement counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Agreement {
    /// Positions where the drafter's top-1 was the model's token.
    pub agreed: usize,
    /// Positions scored.
    pub scored: usize,
}

impl Agreement {
    /// `agreed / scored` (0 when nothing was scored).
    pub fn rate(&self) -> f64 {
        self.agreed as f64 / self.scored.max(1) as f64
    }
}

impl AgreementProbe {
    /// A probe over `seqs` for `model`, on `threads` kernel threads.
    pub fn new(model: &Model, seqs: Vec<Sequence>, threads: Option<usize>) -> Result<AgreementProbe> {
        let ctx = seqs.iter().map(|s| s.tokens.len()).max().unwrap_or(0) + 1;
        if seqs.iter().any(|s| s.prompt == 0 || s.prompt >= s.tokens.len()) {
            return Err(Error::invalid("a calibration sequence needs a prompt and a reply"));
        }
        let ws = Workspace::new(model, KernelPool::new(threads)?, ctx)?;
        let cache = model.new_cache(ctx, KvType::F16)?;
        Ok(AgreementProbe { ws, cache, seqs })
    }

    /// How often the drafter `p` picks the model's own next token, teacher-forced: per
    /// sequence, chunks of up to `chunk` reply positions go through the drafter in one batched
    /// pass (later rows see the drafter's KV rows of earlier ones, as in a multi-token draft),
    /// then through the full model to restore the cache. The reduced head's extra ids are the
    /// tokens up to each chunk's first position.
    pub fn agreement(&mut self, model: &Model, p: &SelfSpecParams, chunk: usize) -> Result<Agreement> {
        let chunk = chunk.clamp(1, crate::model::MAX_BATCH);
        let mut plan = ForwardPlan::at(0).logits(LogitRows::All).skip(p.skip);
        if let Some(e) = p.exit_after {
            plan = plan.exit_after(e);
        }
        if let Some(prefix) = p.head_vocab {
            plan = plan.vocab(HeadVocab::Reduced { prefix });
        }
        let vocab = model.config().vocab_size;
        let mut a = Agreement::default();
        for seq in &self.seqs {
            let toks = &seq.tokens;
            let first = seq.prompt - 1;
            self.cache.clear();
            if first > 0 {
                model.prefill(&mut self.ws, &mut self.cache, &toks[..first], 0, crate::model::MAX_BATCH)?;
            }
            // Positions `first .. len - 1` predict `toks[pos + 1]`.
            let mut c = first;
            while c + 1 < toks.len() {
                let end = (c + chunk).min(toks.len() - 1);
                if p.head_vocab.is_some() {
                    self.ws.set_head_extra(&toks[..=c])?;
                }
                plan.start = c;
                let logits = model.forward(&mut self.ws, &mut self.cache, &toks[c..end], &plan)?;
                for (r, row) in logits.chunks_exact(vocab).enumerate() {
                    a.scored += 1;
                    a.agreed += usize::from(argmax(row) == toks.get(c + r + 1).copied());
                }
                let restore = ForwardPlan::at(c).logits(LogitRows::None);
                model.forward(&mut self.ws, &mut self.cache, &toks[c..end], &restore)?;
                c = end;
            }
        }
        Ok(a)
    }
}

fn argmax(row: &[f32]) -> Option<TokenId> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in row.iter().enumerate() {
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.and_then(|(i, _)| TokenId::try_from(i).ok())
}

/// One ranked sub-layer: the agreement of the drafter that skips it alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankedSubLayer {
    /// Layer index.
    pub layer: usize,
    /// Which sub-layer.
    pub which: SubLayer,
    /// Agreement with it skipped (and the head of `base`).
    pub alpha: f64,
    /// Its weight bytes.
    pub bytes: usize,
}

/// Skip each sub-layer alone on top of `base` (typically no skip and a reduced head) and
/// measure the agreement; sorted from the least harmful per byte saved. Stops starting new
/// measurements after `budget_s` seconds (the rest are not ranked).
pub fn rank_sublayers(
    model: &Model,
    probe: &mut AgreementProbe,
    base: &SelfSpecParams,
    chunk: usize,
    budget_s: f64,
) -> Result<Vec<RankedSubLayer>> {
    let t0 = Instant::now();
    let bytes = ModelBytes::of(model)?;
    let mut out = Vec::new();
    for (layer, &(attn, mlp)) in bytes.layers.iter().enumerate() {
        for (which, b) in [(SubLayer::Attention, attn), (SubLayer::Mlp, mlp)] {
            if t0.elapsed().as_secs_f64() > budget_s {
                break;
            }
            let mut p = *base;
            p.skip.insert(layer, which)?;
            let alpha = probe.agreement(model, &p, chunk)?.rate();
            out.push(RankedSubLayer { layer, which, alpha, bytes: b });
        }
    }
    // Least harmful first: the acceptance lost per byte saved, ascending.
    let base_alpha = probe.agreement(model, base, chunk)?.rate();
    let cost = |r: &RankedSubLayer| (base_alpha - r.alpha).max(0.0) / r.bytes.max(1) as f64;
    out.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
    Ok(out)
}

/// A skip set grown from the ranking, with its measured agreement.
#[derive(Clone, Debug, PartialEq)]
pub struct GrownSet {
    /// The drafter.
    pub params: SelfSpecParams,
    /// Sub-layers skipped.
    pub skipped: usize,
    /// Draft-step bytes over a full pass's.
    pub bytes_rel: f64,
    /// Teacher-forced agreement.
    pub alpha: f64,
}

/// Grow skip sets on `base` by adding ranked sub-layers in order, measuring the agreement each
/// time the skipped bytes pass the next of `targets` (fractions of a full pass saved, e.g.
/// 0.05, 0.1, 0.2).
pub fn grow_sets(
    model: &Model,
    probe: &mut AgreementProbe,
    base: &SelfSpecParams,
    ranked: &[RankedSubLayer],
    targets: &[f64],
    chunk: usize,
) -> Result<Vec<GrownSet>> {
    let bytes = ModelBytes::of(model)?;
    let full = bytes.full().max(1) as f64;
    let base_bytes = bytes.draft(base) as f64;
    let mut p = *base;
    let mut out = Vec::new();
    let mut next = targets.iter().copied().peekable();
    for (k, r) in ranked.iter().enumerate() {
        p.skip.insert(r.layer, r.which)?;
        let saved = (base_bytes - bytes.draft(&p) as f64) / full;
        if next.peek().is_some_and(|&t| saved >= t) {
            while next.peek().is_some_and(|&t| saved >= t) {
                next.next();
            }
            let alpha = probe.agreement(model, &p, chunk)?.rate();
            out.push(GrownSet { params: p, skipped: k + 1, bytes_rel: bytes.draft(&p) as f64 / full, alpha });
        }
    }
    Ok(out)
}

/// The grown sets as speed-search candidates (drafting every step).
pub fn grown_candidates(sets: &[GrownSet]) -> Vec<Candidate> {
    sets.iter()
        .map(|g| Candidate {
            name: format!("ranked skip {} (bytes {:.2}, tf α {:.2})", g.skipped, g.bytes_rel, g.alpha),
            params: SelfSpecParams { always_draft: true, ..g.params },
        })
        .collect()
}
