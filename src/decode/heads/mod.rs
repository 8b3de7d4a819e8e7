//! Self-distilled draft heads (Medusa-style): small residual blocks on the model's final hidden
//! state, one per lookahead offset, trained by `edgespec tune` on the model's own greedy output
//! ([`train`]) and saved beside the model ([`file`]). Drafting costs a few small f32 mat-vecs
//! and one batched quantized mat-vec over the first `V` rows of the model's own output matrix,
//! so several tokens are proposed for a small fraction of a forward pass.
//!
//! Head `k` (`k = 1 ..= K`) predicts the token `k` positions after the pending token from the
//! hidden state `h` that predicted the pending token: `h' = h + W2_k · SiLU(W1_k · h)` (`W1_k`:
//! `rank × dim`, `W2_k`: `dim × rank`), logits `= E_V · h'` with `E_V` the first `V` rows of the
//! output matrix (low BPE ids are the frequent tokens). Drafted tokens are verified by the full
//! model, so decoding stays exact whatever the heads say.

pub mod file;
pub mod matmul;
pub mod train;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kernels::{matvec, ActKind, QuantizedActs};
use crate::model::{Model, MAX_BATCH};
use crate::tokenizer::TokenId;

use super::{Draft, DraftInput, Drafter};

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
    /// Held-out top-1 agreement with the model's greedy tokens, per head.
    pub alpha_top1: Vec<f32>,
    /// Held-out top-3 agreement, per head.
    pub alpha_top3: Vec<f32>,
    /// `W1` of every head, `(K, rank, dim)`.
    pub w1: Vec<f32>,
    /// `W2` of every head, `(K, dim, rank)`.
    pub w2: Vec<f32>,
}

impl DraftHeads {
    /// Heads with `W1` drawn from a seeded uniform distribution of scale `1/√dim` and `W2 = 0`
    /// (every head starts as the identity: it predicts what the model's own head predicts).
    pub fn init(
        identity: [u8; 32],
        dim: usize,
        k: usize,
        rank: usize,
        vocab: usize,
        seed: u64,
    ) -> DraftHeads {
        let mut rng = crate::sampling::Rng::new(seed);
        let scale = 1.0 / (dim as f32).sqrt();
        let w1 = (0..k * rank * dim).map(|_| (2.0 * rng.next_f64() as f32 - 1.0) * scale).collect();
        DraftHeads {
            identity,
            dim,
            k,
            rank,
            vocab,
            seed,
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

    /// Head `j`'s (0-based) hidden state `h'` for `h` into `out` (`dim`), through `z` (`rank`).
    pub fn project(&self, j: usize, h: &[f32], z: &mut [f32], out: &mut [f32]) {
        let (dim, rank) = (self.dim, self.rank);
        let w1 = &self.w1[j * rank * dim..(j + 1) * rank * dim];
        let w2 = &self.w2[j * dim * rank..(j + 1) * dim * rank];
        for (zr, row) in z.iter_mut().zip(w1.chunks_exact(dim)) {
            *zr = silu(matmul::dot(row, h));
        }
        for ((o, &hv), row) in out.iter_mut().zip(h).zip(w2.chunks_exact(rank)) {
            *o = hv + matmul::dot(row, z);
        }
    }
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
    /// `(K, V)` logits of the heads.
    logits: Vec<f32>,
    /// Drafting steps so far.
    passes: usize,
}

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
            logits: vec![0.0; k * v],
            heads,
            passes: 0,
        })
    }

    /// The heads in use.
    pub fn heads(&self) -> &DraftHeads {
        &self.heads
    }
}

/// The argmax of `row` and its softmax probability.
fn top1(row: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    let denom: f32 = row.iter().map(|&v| (v - best.1).exp()).sum();
    (best.0, if denom > 0.0 { 1.0 / denom } else { 0.0 })
}

impl Drafter for HeadsDrafter {
    fn name(&self) -> &'static str {
        "heads"
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> Result<()> {
        let Some(h) = input.hidden else { return Ok(()) };
        let heads = &*self.heads;
        let (dim, v) = (heads.dim, heads.vocab);
        let k = heads.k.min(input.max);
        if k == 0 || h.len() != dim {
            return Ok(());
        }
        for j in 0..k {
            heads.project(j, h, &mut self.z, &mut self.proj[j * dim..(j + 1) * dim]);
        }
        let w = input.model.output_rows(v)?;
        let pool = input.ws.pool();
        self.acts.quantize(pool.kernels(), &self.proj[..k * dim], dim, k, &[ActKind::for_weight(w.ty())?])?;
        matvec(pool, &w, &self.acts, &mut self.logits[..k * v])?;
        // Extend the chain while the expected speed (tokens per unit of verify cost) grows.
        let (mut reach, mut expected) = (1.0f32, 1.0f32);
        let mut best = (0, 1.0f32);
        let mut tokens = [0 as TokenId; MAX_BATCH];
        for j in 0..k {
            let (tok, p) = top1(&self.logits[j * v..(j + 1) * v]);
            tokens[j] = tok as TokenId;
            reach *= p;
            expected += reach;
            let speed = expected / input.cost.rel(j + 2);
            if speed > best.1 {
                best = (j + 1, speed);
            }
        }
        out.tokens.extend_from_slice(&tokens[..best.0]);
        self.passes += 1;
        Ok(())
    }

    fn reset(&mut self) {}

    fn describe(&self) -> Option<String> {
        let h = &self.heads;
        let alphas: Vec<String> = h.alpha_top1.iter().map(|a| format!("{a:.2}")).collect();
        Some(format!("K {} rank {} V {} (held-out α {})", h.k, h.rank, h.vocab, alphas.join("/")))
    }
}
