//! The speculative loop every strategy runs: draft → verify the pending token and the draft in
//! one batched forward pass → accept the verified prefix → roll the KV cache back to it →
//! repeat. Plain decoding is the same loop with empty drafts.
//!
//! State between passes (owned by the session, lent here as a [`Target`]): `history` holds the
//! tokens in the KV cache, `pending` the last emitted token, which enters the cache with the next
//! pass, and `logits` the model's output after the last cached token. A pass feeds
//! `[pending, d1 .. dk]` at position `history.len()`; row `i` of its logits is the model's
//! distribution for the token after `d_i` (row 0: after `pending`), so row `i` verifies
//! `d_{i+1}` and row `k` yields the bonus token when every drafted token stands. A tree draft
//! ([`super::tree`]) is fed with the model's tree mask and verified by walking down it; the
//! accepted path's cache rows are then moved into place.
//!
//! Stopping inside a pass (end of generation, cancellation) leaves the same state plain
//! decoding would: the stopping token pending, the cache holding exactly the tokens before it.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::model::{ForwardPlan, KvCache, LogitRows, Model, Workspace, MAX_BATCH};
use crate::sampling::Sampler;
use crate::tokenizer::TokenId;

use super::adaptive::{CostModel, DraftLength};
use super::tree::TreeShape;
use super::verify::{rejection, sample_and_match, Verdict};
use super::{Draft, DraftInput, Drafter};

/// What the receiver of an emitted token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emitted {
    /// Keep going.
    Continue,
    /// The token ends the generation (an end-of-generation token).
    End,
    /// Stop here (the caller cancelled).
    Stop,
}

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopEnd {
    /// `max_tokens` tokens were emitted.
    MaxTokens,
    /// The context cannot take the pending token.
    ContextFull,
    /// The receiver returned [`Emitted::End`].
    End,
    /// The receiver returned [`Emitted::Stop`].
    Stop,
}

/// Counters of one generation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DecodeStats {
    /// Tokens emitted.
    pub generated: usize,
    /// Forward passes run.
    pub passes: usize,
    /// Tokens drafted.
    pub drafted: usize,
    /// Drafted tokens accepted.
    pub accepted: usize,
    /// Seconds in the drafter.
    pub draft_s: f64,
    /// Seconds in forward passes.
    pub verify_s: f64,
    /// Decode passes by the number of tokens they scored (index `b`, `1 ..= MAX_BATCH`).
    pub passes_by_batch: [u32; MAX_BATCH + 1],
}

/// The model side of decoding, lent by the session.
pub struct Target<'a> {
    /// The model.
    pub model: &'a Model,
    /// Its buffers.
    pub ws: &'a mut Workspace,
    /// Its KV cache; holds exactly `history`.
    pub cache: &'a mut KvCache,
    /// Tokens in the cache (capacity: the context length, so pushes never reallocate).
    pub history: &'a mut Vec<TokenId>,
    /// The emitted token not yet in the cache.
    pub pending: &'a mut Option<TokenId>,
    /// The model's logits after the last token of `history`, `(vocab)`.
    pub logits: &'a mut [f32],
}

/// What the loop keeps from one generation to the next (held by a
/// [`Decoder`](super::Decoder)): the draft-length bound, the pass cost model and the buffers.
#[derive(Debug)]
pub struct LoopState {
    /// Draft-length bound following live acceptance.
    pub length: DraftLength,
    /// What a verify pass of `b` tokens costs here, learnt from the decode passes.
    pub cost: CostModel,
    scratch: Scratch,
}

impl Default for LoopState {
    fn default() -> Self {
        LoopState {
            length: DraftLength::new(4, MAX_BATCH - 1),
            cost: CostModel::default(),
            scratch: Scratch::default(),
        }
    }
}

impl Target<'_> {
    /// Undo a step that failed before its tokens were accepted: back to the `base` tokens before
    /// it, with `pending` out of the context again (the cache keeps what it can of them), and
    /// hand the error on.
    fn roll_back(&mut self, base: usize, e: Error) -> Error {
        self.history.truncate(base);
        self.cache.truncate(base.min(self.cache.len())).ok();
        e
    }
}

/// Buffers of the loop, kept between generations so that a generation allocates nothing.
#[derive(Debug)]
struct Scratch {
    draft: Draft,
    batch: Vec<TokenId>,
    /// Rows of the pass that stand, from row 0.
    path: Vec<usize>,
    /// A tree walk's current rows (copies of one context) and their matching children.
    rows: Vec<usize>,
    next: Vec<usize>,
    /// The final hidden state that predicted the pending token, `(dim)` ...
    hidden: Vec<f32>,
    /// ... valid when the pending token sits at this position.
    hidden_at: Option<usize>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            draft: Draft::with_capacity(MAX_BATCH),
            batch: Vec::with_capacity(MAX_BATCH),
            path: Vec::with_capacity(MAX_BATCH),
            rows: Vec::with_capacity(MAX_BATCH),
            next: Vec::with_capacity(MAX_BATCH),
            hidden: Vec::new(),
            hidden_at: None,
        }
    }
}

/// Run the loop until `max_tokens` tokens are emitted (counting from 0), the context is full, or
/// `emit` ends it; returns why it ended and its counters. Without a drafter (or with draft length
/// 0) this is plain decoding. Every pass is timed into `state.cost`, which bounds the draft
/// length.
///
/// When nothing is pending, the workspace's last pass must be the one that produced `t.logits`
/// (the prompt's prefill): its last hidden row is what drafters get as [`DraftInput::hidden`]
/// for the first step.
pub fn run(
    t: &mut Target<'_>,
    drafter: Option<&mut dyn Drafter>,
    state: &mut LoopState,
    sampler: &mut Sampler,
    max_tokens: usize,
    emit: &mut dyn FnMut(TokenId) -> Result<Emitted>,
) -> Result<(LoopEnd, DecodeStats)> {
    let mut stats = DecodeStats::default();
    let end = run_loop(t, drafter, state, sampler, max_tokens, &mut stats, emit)?;
    Ok((end, stats))
}

/// The loop of [`run`], counting into `stats`.
fn run_loop(
    t: &mut Target<'_>,
    mut drafter: Option<&mut dyn Drafter>,
    state: &mut LoopState,
    sampler: &mut Sampler,
    max_tokens: usize,
    stats: &mut DecodeStats,
    emit: &mut dyn FnMut(TokenId) -> Result<Emitted>,
) -> Result<LoopEnd> {
    let LoopState { length, cost, scratch } = state;
    let capacity = t.cache.capacity();
    let vocab = t.model.config().vocab_size;
    if t.logits.len() != vocab {
        return Err(Error::internal("logit buffer does not match the vocabulary"));
    }
    // The first token comes from the logits at hand (the prompt's last pass).
    if t.pending.is_none() {
        if stats.generated >= max_tokens {
            return Ok(LoopEnd::MaxTokens);
        }
        if t.history.len() >= capacity {
            return Ok(LoopEnd::ContextFull);
        }
        let tok = sampler.sample(t.logits, t.history)?;
        keep_hidden(
            &mut scratch.hidden,
            &mut scratch.hidden_at,
            t.ws,
            t.ws.hidden_rows().checked_sub(1),
            t.history.len(),
        );
        *t.pending = Some(tok);
        stats.generated += 1;
        match emit(tok)? {
            Emitted::Continue => {}
            Emitted::End => return Ok(LoopEnd::End),
            Emitted::Stop => return Ok(LoopEnd::Stop),
        }
    }
    loop {
        if stats.generated >= max_tokens {
            return Ok(LoopEnd::MaxTokens);
        }
        let base = t.history.len();
        let Some(pending) = *t.pending else {
            return Err(Error::internal("decode loop without a pending token"));
        };
        // This pass puts `pending` at `base` and leaves a new pending token that needs a
        // position after the pass's tokens: without room for both, the context is full.
        if base + 1 >= capacity {
            return Ok(LoopEnd::ContextFull);
        }
        // The pending token joins the context the drafter sees (and the cache, below).
        t.history.push(pending);
        let room = (capacity - base - 2).min(MAX_BATCH - 1).min(max_tokens - stats.generated - 1);
        let max = length.current().min(cost.max_useful()).min(room);
        scratch.draft.clear();
        if let Some(d) = drafter.as_deref_mut() {
            if room > 0 {
                let t0 = Instant::now();
                let hidden = (scratch.hidden_at == Some(base)).then_some(&scratch.hidden[..]);
                let mut input = DraftInput {
                    context: t.history,
                    max,
                    room,
                    cost,
                    model: t.model,
                    ws: t.ws,
                    cache: t.cache,
                    hidden,
                };
                let drafted = d.draft(&mut input, &mut scratch.draft);
                stats.draft_s += t0.elapsed().as_secs_f64();
                if let Err(e) = drafted {
                    return Err(t.roll_back(base, e));
                }
            }
        }
        // A chain is bounded by the draft length, a tree (whose drafter weighs its rows against
        // their cost itself) by the pass; a tree keeps its topological order when cut.
        let draft = &mut scratch.draft;
        draft.tokens.truncate(if draft.is_tree() { room } else { max });
        draft.parents.truncate(room);
        let k = draft.tokens.len();
        let shape = if draft.is_tree() && k > 0 {
            let parsed = if draft.parents.len() == k {
                TreeShape::new(&draft.parents)
            } else {
                Err(Error::internal("a tree draft needs a parent for every token"))
            };
            match parsed {
                Ok(s) => Some(s),
                Err(e) => return Err(t.roll_back(base, e)),
            }
        } else {
            None
        };
        let with_probs = shape.is_none() && draft.has_probs();
        scratch.batch.clear();
        scratch.batch.push(pending);
        scratch.batch.extend_from_slice(&draft.tokens);

        let t0 = Instant::now();
        let mut plan = ForwardPlan::at(base).logits(LogitRows::All);
        if let Some(s) = &shape {
            plan = plan.tree(s.tree);
        }
        let logits = match t.model.forward(t.ws, t.cache, &scratch.batch, &plan) {
            Ok(l) => l,
            Err(e) => return Err(t.roll_back(base, e)),
        };
        let took = t0.elapsed().as_secs_f64();
        cost.observe(scratch.batch.len(), took);
        stats.verify_s += took;
        stats.passes += 1;
        if let Some(n) = stats.passes_by_batch.get_mut(scratch.batch.len()) {
            *n += 1;
        }
        stats.drafted += k;
        if k > 0 {
            if let Some(d) = drafter.as_deref_mut() {
                d.observe(draft, logits, vocab);
            }
        }

        // Walk from row 0 (after `pending`): at each row draw the model's token; it stands when
        // the row's next drafted token (a chain) or one of its children (a tree) holds it.
        let mut accepted = 0;
        let end;
        let mut row = 0;
        scratch.path.clear();
        scratch.path.push(0);
        scratch.rows.clear();
        scratch.rows.push(0);
        loop {
            let row_logits = &logits[row * vocab..(row + 1) * vocab];
            let (tok, next) = match &shape {
                Some(s) => {
                    // Copies of one context have equal logits and cache rows: follow them all,
                    // keep the first.
                    let y = sampler.sample(row_logits, t.history)?;
                    s.children(&scratch.rows, y, &scratch.batch, &mut scratch.next);
                    std::mem::swap(&mut scratch.rows, &mut scratch.next);
                    (y, scratch.rows.first().copied())
                }
                None if row < k => {
                    let x = draft.tokens[row];
                    let verdict = if with_probs {
                        rejection(sampler, row_logits, t.history, x, &draft.probs[row])?
                    } else {
                        sample_and_match(sampler, row_logits, t.history, x)?
                    };
                    match verdict {
                        Verdict::Accept => (x, Some(row + 1)),
                        Verdict::Replace(y) => (y, None),
                    }
                }
                None => (sampler.sample(row_logits, t.history)?, None),
            };
            stats.generated += 1;
            let said = emit(tok)?;
            if let (Some(next), Emitted::Continue) = (next, said) {
                // The token is in the cache already, at the row `next` of this pass.
                t.history.push(tok);
                accepted += 1;
                scratch.path.push(next);
                row = next;
                continue;
            }
            if next.is_some() {
                accepted += 1;
            }
            *t.pending = Some(tok);
            end = match said {
                Emitted::Continue => None,
                Emitted::End => Some(LoopEnd::End),
                Emitted::Stop => Some(LoopEnd::Stop),
            };
            break;
        }
        // Keep the rows of the tokens that stand; `pending` enters with the next pass.
        if shape.is_some() {
            t.cache.keep_path(base, &scratch.path)?;
        } else {
            t.cache.truncate(t.history.len())?;
        }
        t.logits.copy_from_slice(&logits[row * vocab..(row + 1) * vocab]);
        keep_hidden(&mut scratch.hidden, &mut scratch.hidden_at, t.ws, Some(row), t.history.len());
        stats.accepted += accepted;
        if k > 0 {
            // A tree's draft length is its longest branch.
            if drafter.as_deref().is_none_or(|d| d.steers_length()) {
                length.update(shape.map_or(k, |s| s.depth()), accepted);
            }
            if let Some(d) = drafter.as_deref_mut() {
                d.feedback(k, accepted);
            }
        }
        if let Some(e) = end {
            return Ok(e);
        }
    }
}

/// Keep the hidden state of `row` of the workspace's last pass as the one that predicted the
/// token pending at position `at` (forget it when the pass did not keep that row).
fn keep_hidden(
    hidden: &mut Vec<f32>,
    hidden_at: &mut Option<usize>,
    ws: &Workspace,
    row: Option<usize>,
    at: usize,
) {
    match row.and_then(|r| ws.hidden(r)) {
        Some(h) => {
            hidden.clear();
            hidden.extend_from_slice(h);
            *hidden_at = Some(at);
        }
        None => *hidden_at = None,
    }
}
