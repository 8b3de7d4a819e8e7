//! Self-distilled draft heads (Medusa-style): small residual blocks on the model's final hidden
//! state, one per lookahead offset, trained by `edgespec tune` on the model's own greedy output
//! ([`train`]) and saved beside the model ([`file`](mod@file)). Drafting costs a few small f32 mat-vecs
//! and one batched quantized mat-vec over the first `V` rows of the model's own output matrix,
//! so several tokens are proposed for a small fraction of a forward pass.
//!
//! Head `k` (`k = 1 ..= K`) predicts the token `k` positions after the pending token from the
//! hidden state `h` that predicted the pending token and (with `token_input`, EAGLE-style) the
//! pending token's embedding `e`: `h' = h + W2_k · SiLU(W1_k · [h; e])` (`W1_k`:
//! `rank × inputs·dim`, `W2_k`: `dim × rank`), logits `= E_V · h'` with `E_V` the first `V`
//! rows of the output matrix (low BPE ids are the frequent tokens). Drafted tokens are verified by the full
//! model, so decoding stays exact whatever the heads say.

pub mod file;
pub mod matmul;
pub mod train;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kernels::{matvec, ActKind, QuantizedActs};
use crate::model::{Model, MAX_BATCH};
use crate::tokenizer::TokenId;

use super::{Built, Draft, DraftInput, Drafter, Setup};

pub use file::{heads_path, model_identity, profile_path};
pub use train::{Dataset, TrainConfig, TrainReport};

/// Trained draft heads for one model.
#[derive(Clone, Debug, PartialEq)]
pub struct DraftHeads {
    /// The model they were trained for ([`model_identity`]).
    pub identity: [u8; 32],
    /// Hidden width of the model.
    pub dim: usize,
    /// Number of heads (lookahead offsets 1 ..= K).
    pub k: usize,
    /// Width of each head's SiLU block.
    pub rank: usize,
    /// Size of the reduced vocabulary (token ids `0 .. vocab`).
    pub vocab: usize,
    /// Seed the training started from.
    pub seed: u64,
    /// Whether the heads also read the pending token's embedding (`W1` then has `2·dim`
    /// columns).
    pub token_input: bool,
    /// Candidates per head to draft: 1 drafts a chain of the heads' top tokens, more a token
    /// tree of their top `width` tokens (chosen by `tune` from measured speed).
    pub width: usize,
    /// Held-out top-1 agreement with the model's greedy tokens, per head.
    pub alpha_top1: Vec<f32>,
    /// Held-out top-3 agreement, per head.
    pub alpha_top3: Vec<f32>,
    /// `W1` of every head, `(K, rank, inputs·dim)`.
    pub w1: Vec<f32>,
    /// `W2` of every head, `(K, dim, rank)`.
    pub w2: Vec<f32>,
}

impl DraftHeads {
    /// Heads with `W1` drawn from a seeded uniform distribution of scale `1/√inputs` and `W2 = 0`
    /// (every head starts as the identity: it predicts what the model's own head predicts).
    pub fn init(
        identity: [u8; 32],
        dim: usize,
        k: usize,
        rank: usize,
        vocab: usize,
        seed: u64,
        token_input: bool,
    ) -> DraftHeads {
        let mut rng = crate::sampling::Rng::new(seed);
        let n_in = dim * (1 + usize::from(token_input));
        let scale = 1.0 / (n_in as f32).sqrt();
        let w1 = (0..k * rank * n_in).map(|_| (2.0 * rng.next_f64() as f32 - 1.0) * scale).collect();
        DraftHeads {
            identity,
            dim,
            k,
            rank,
            vocab,
            seed,
            token_input,
            width: 1,
            alpha_top1: vec![0.0; k],
            alpha_top3: vec![0.0; k],
            w1,
            w2: vec![0.0; k * dim * rank],
        }
    }

    /// Check the shapes against `model` and the identity against the model's.
    pub fn check_for(&self, model: &Model) -> Result<()> {
        let c = model.config();
        if self.dim != c.dim {
            return Err(Error::invalid(format!(
                "draft heads of width {} do not fit a model of width {}",
                self.dim, c.dim
            )));
        }
        if self.vocab == 0 || self.vocab > c.vocab_size {
            return Err(Error::invalid(format!(
                "draft heads over {} tokens do not fit a vocabulary of {}",
                self.vocab, c.vocab_size
            )));
        }
        if self.identity != model_identity(model) {
            return Err(Error::invalid(
                "the draft heads were trained for another model; run `edgespec tune` for this one",
            ));
        }
        Ok(())
    }

    /// Columns of `W1`: `dim`, or `2·dim` with the token input.
    pub fn inputs(&self) -> usize {
        self.dim * (1 + usize::from(self.token_input))
    }

    /// Head `j`'s (0-based) hidden state `h'` into `out` (`dim`) for the head input `x`
    /// (`h`, or `[h; e]` with the token input: [`DraftHeads::inputs`] values), through `z`
    /// (`rank`).
    pub fn project(&self, j: usize, x: &[f32], z: &mut [f32], out: &mut [f32]) {
        let (dim, rank, n_in) = (self.dim, self.rank, self.inputs());
        let w1 = &self.w1[j * rank * n_in..(j + 1) * rank * n_in];
        let w2 = &self.w2[j * dim * rank..(j + 1) * dim * rank];
        for (zr, row) in z.iter_mut().zip(w1.chunks_exact(n_in)) {
            *zr = silu(matmul::dot(row, x));
        }
        let h = &x[..dim];
        for ((o, &hv), row) in out.iter_mut().zip(h).zip(w2.chunks_exact(rank)) {
            *o = hv + matmul::dot(row, z);
        }
    }
}

/// Token `tok`'s input embedding (as stored, unscaled) into `out` (`dim`).
pub(crate) fn token_embedding(model: &Model, tok: TokenId, out: &mut [f32]) -> Result<()> {
    let file = model.file();
    let info = file.require_tensor("token_embd.weight")?;
    let rb = info.ty.row_bytes(out.len() as u64).ok_or_else(|| Error::internal("embedding row"))? as usize;
    let at = tok as usize * rb;
    let row = file
        .tensor_data(info)
        .get(at..at + rb)
        .ok_or_else(|| Error::invalid(format!("token id {tok} is outside the vocabulary")))?;
    crate::quant::dequantize(info.ty, row, out)
}

/// `x · σ(x)`.
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// The drafter of strategy `heads`: the chain of the heads' top tokens, as long as the expected
/// number of accepted tokens (the product of the heads' top-1 probabilities along the chain)
/// pays for the longer verify pass under the [`CostModel`](super::CostModel).
pub struct HeadsDrafter {
    heads: Arc<DraftHeads>,
    acts: QuantizedActs,
    /// `(K, dim)` projected hidden states.
    proj: Vec<f32>,
    /// `(rank)` scratch.
    z: Vec<f32>,
    /// The heads' input `[h; e]`, `(inputs)`.
    x: Vec<f32>,
    /// `(K, V)` logits of the heads.
    logits: Vec<f32>,
    /// Drafting steps so far.
    passes: usize,
    /// Steps left to skip without running the heads, and the current back-off: after a step
    /// where the heads' draft did not pay, they rest for 1, 2, 4, then 8 steps, so a text they
    /// cannot predict costs little more than plain decoding.
    skip: u32,
    backoff: u32,
    /// The heads' top-1 probabilities of the tokens of the last draft.
    last_p: Vec<f32>,
    /// Per depth, decayed sums of the predicted acceptance of drafted tokens that were checked
    /// (all tokens before them accepted) and of how many of them were accepted: their ratio
    /// calibrates the heads' confidence on the live text.
    predicted: Vec<f32>,
    hits: Vec<f32>,
}

impl std::fmt::Debug for HeadsDrafter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeadsDrafter({} passes, skipping {}, back-off {})", self.passes, self.skip, self.backoff)
    }
}

/// Weight of the past in the calibration sums (per checked token).
const DECAY: f32 = 0.98;

impl HeadsDrafter {
    /// A drafter for `model` with `heads` (checked against the model).
    pub fn new(model: &Model, heads: Arc<DraftHeads>) -> Result<HeadsDrafter> {
        heads.check_for(model)?;
        if heads.k == 0 || heads.k >= MAX_BATCH {
            return Err(Error::invalid(format!("{} draft heads; 1..{MAX_BATCH} are supported", heads.k)));
        }
        let (k, dim, v) = (heads.k, heads.dim, heads.vocab);
        Ok(HeadsDrafter {
            acts: QuantizedActs::with_capacity(dim, k),
            proj: vec![0.0; k * dim],
            z: vec![0.0; heads.rank],
            x: vec![0.0; heads.inputs()],
            logits: vec![0.0; k * v],
            last_p: Vec::with_capacity(k),
            predicted: vec![0.0; k],
            hits: vec![0.0; k],
            heads,
            passes: 0,
            skip: 0,
            backoff: 0,
        })
    }

    /// The heads in use.
    pub fn heads(&self) -> &DraftHeads {
        &self.heads
    }
}

/// The `N` largest entries of `row` (ties to the lower index) and their softmax
/// probabilities, best first.
pub(crate) fn top_n<const N: usize>(row: &[f32]) -> [(usize, f32); N] {
    let mut best = [(0usize, f32::NEG_INFINITY); N];
    for (i, &v) in row.iter().enumerate() {
        if v > best[N - 1].1 {
            let mut at = N - 1;
            while at > 0 && v > best[at - 1].1 {
                best[at] = best[at - 1];
                at -= 1;
            }
            best[at] = (i, v);
        }
    }
    let max = best[0].1;
    let denom: f32 = row.iter().map(|&v| (v - max).exp()).sum();
    best.map(|(i, v)| (i, if denom > 0.0 { (v - max).exp() / denom } else { 0.0 }))
}

/// Longest rest of the heads after drafts that did not pay, in steps.
const MAX_BACKOFF: u32 = 8;

/// Most candidates per head in a token tree.
const MAX_WIDTH: usize = 4;

impl HeadsDrafter {
    /// How head `j`'s confidence fared on this text so far (accepted / predicted).
    fn calibration(&self, j: usize) -> f32 {
        ((self.hits[j] + 1.0) / (self.predicted[j] + 1.0)).clamp(0.05, 2.0)
    }

    /// The chain of the heads' top tokens, extended while the expected speed (tokens per unit
    /// of verify cost) grows.
    fn chain(&mut self, input: &DraftInput<'_>, k: usize, out: &mut Draft) {
        let v = self.heads.vocab;
        let (mut reach, mut expected) = (1.0f32, 1.0f32);
        let mut best = (0, 1.0f32);
        let mut tokens = [0 as TokenId; MAX_BATCH];
        for (j, slot) in tokens.iter_mut().enumerate().take(k) {
            let [(tok, p)] = top_n::<1>(&self.logits[j * v..(j + 1) * v]);
            *slot = tok as TokenId;
            self.last_p.push(p);
            reach *= (p * self.calibration(j)).min(0.99);
            expected += reach;
            let speed = expected / input.cost.rel(j + 2);
            if speed > best.1 {
                best = (j + 1, speed);
            }
        }
        out.tokens.extend_from_slice(&tokens[..best.0]);
        self.last_p.truncate(best.0);
    }

    /// A token tree over the heads' top `width` tokens at each depth, grown best-first by the
    /// probability of each path (the product of its tokens' calibrated confidences) while a
    /// further row raises the expected tokens per unit of verify cost.
    fn tree(&mut self, input: &DraftInput<'_>, k: usize, width: usize, out: &mut Draft) {
        let v = self.heads.vocab;
        let mut cand = [[(0usize, 0f32); MAX_WIDTH]; MAX_BATCH];
        for (j, row) in cand.iter_mut().enumerate().take(k) {
            let top = top_n::<MAX_WIDTH>(&self.logits[j * v..(j + 1) * v]);
            let c = self.calibration(j);
            for (slot, &(tok, p)) in row.iter_mut().zip(&top).take(width) {
                *slot = (tok, (p * c).min(0.99));
            }
            // Checked depths learn from the sum over the depth's candidates.
            self.last_p.push(top.iter().take(width).map(|t| t.1).sum());
        }
        // Frontier of paths not yet in the tree: (probability, candidate index per depth).
        let mut frontier: Vec<(f32, Vec<u8>)> = (0..width).map(|c| (cand[0][c].1, vec![c as u8])).collect();
        let (mut expected, mut rows) = (1.0f32, 1usize);
        let mut path_tokens = Vec::with_capacity(k);
        let mut deepest = 0;
        while rows - 1 < input.room {
            let Some(best) = (0..frontier.len()).max_by(|&a, &b| frontier[a].0.total_cmp(&frontier[b].0))
            else {
                break;
            };
            let (p, path) = frontier.swap_remove(best);
            if (expected + p) / input.cost.rel(rows + 1) <= expected / input.cost.rel(rows) {
                break;
            }
            path_tokens.clear();
            path_tokens.extend(path.iter().enumerate().map(|(j, &c)| cand[j][c as usize].0 as TokenId));
            if out.add_branch(&path_tokens, input.room) == 0 {
                break;
            }
            expected += p;
            rows += 1;
            deepest = deepest.max(path.len());
            if path.len() < k {
                for (c, &(_, q)) in cand[path.len()].iter().enumerate().take(width) {
                    let mut next = path.clone();
                    next.push(c as u8);
                    frontier.push((p * q, next));
                }
            }
        }
        self.last_p.truncate(deepest);
    }
}

/// The drafter of strategy `heads`: the heads set for the session, else the file beside the
/// model (refused with a message when it is missing).
pub(crate) fn build(s: &mut Setup<'_>) -> Built {
    let heads = match &s.files.heads {
        Some(h) => h.clone(),
        None => Arc::new(DraftHeads::load_for(s.model)?),
    };
    s.files.heads = Some(heads.clone());
    Ok(Some(Box::new(HeadsDrafter::new(s.model, heads)?)))
}

impl Drafter for HeadsDrafter {
    fn name(&self) -> &'static str {
        "heads"
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> Result<()> {
        let Some(h) = input.hidden else { return Ok(()) };
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(());
        }
        let heads = &*self.heads;
        let (dim, v) = (heads.dim, heads.vocab);
        // A chain is bounded by the adaptive draft length, a tree (weighed row by row) by the pass.
        let k = heads.k.min(if heads.width > 1 { input.room } else { input.max });
        if k == 0 || h.len() != dim {
            return Ok(());
        }
        self.x[..dim].copy_from_slice(h);
        if heads.token_input {
            let Some(&pending) = input.context.last() else { return Ok(()) };
            token_embedding(input.model, pending, &mut self.x[dim..])?;
        }
        for j in 0..k {
            heads.project(j, &self.x, &mut self.z, &mut self.proj[j * dim..(j + 1) * dim]);
        }
        let w = input.model.output_rows(v)?;
        let pool = input.ws.pool();
        self.acts.quantize(pool.kernels(), &self.proj[..k * dim], dim, k, &[ActKind::for_weight(w.ty())?])?;
        matvec(pool, &w, &self.acts, &mut self.logits[..k * v])?;
        self.last_p.clear();
        if heads.width <= 1 {
            self.chain(input, k, out);
        } else {
            self.tree(input, k, heads.width.min(MAX_WIDTH), out);
        }
        self.backoff = if out.tokens.is_empty() { (2 * self.backoff).clamp(1, MAX_BACKOFF) } else { 0 };
        self.skip = self.backoff;
        self.passes += 1;
        Ok(())
    }

    fn feedback(&mut self, drafted: usize, accepted: usize) {
        // Depth `j` was checked when every token before it stood.
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
        let h = &self.heads;
        let alphas: Vec<String> = h.alpha_top1.iter().map(|a| format!("{a:.2}")).collect();
        let input = if h.token_input { " + token" } else { "" };
        let shape = if h.width > 1 { format!(", tree width {}", h.width) } else { ", chain".into() };
        Some(format!(
            "K {} rank {} V {}{input}{shape} (held-out α {})",
            h.k,
            h.rank,
            h.vocab,
            alphas.join("/")
        ))
    }
}
