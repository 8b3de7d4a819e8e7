//! The buffers a forward pass writes besides the KV cache ([`Workspace`], and the activation
//! [`Buffers`] inside it), kept apart from `forward.rs` so that the pass itself stays readable.

use crate::error::{Error, ErrorKind, Result};
use crate::kernels::{KernelPool, QuantizedActs};

use super::config::ModelConfig;
use super::forward::Model;
use super::head::HeadExtra;
use super::plan::MAX_BATCH;

/// The activation buffers of a forward pass, each sized for [`MAX_BATCH`] rows.
pub(super) struct Buffers {
    /// Residual stream, `(B, dim)`.
    pub(super) x: Vec<f32>,
    /// Normed input of the current sub-layer (and gathered head rows), `(B, dim)`.
    pub(super) xn: Vec<f32>,
    /// Output of `attn_output` / `ffn_down` (and normed head rows), `(B, dim)`.
    pub(super) proj: Vec<f32>,
    /// Queries, `(B, n_heads · head_dim)`.
    pub(super) q: Vec<f32>,
    /// Keys, `(B, n_kv_heads · head_dim)`.
    pub(super) k: Vec<f32>,
    /// Values, `(B, n_kv_heads · head_dim_v)`.
    pub(super) v: Vec<f32>,
    /// Attention output, `(B, n_heads · head_dim_v)`.
    pub(super) att: Vec<f32>,
    /// MLP gate (then the gated activation), `(B, ffn_dim)`.
    pub(super) gate: Vec<f32>,
    /// MLP up projection, `(B, ffn_dim)`.
    pub(super) up: Vec<f32>,
    /// Attention scores, `(threads, ctx)`.
    pub(super) scores: Vec<f32>,
    /// One head's norm output, `(head_dim)`.
    pub(super) tmp: Vec<f32>,
    /// RoPE cosines and sines, `(2 bases, B, rope_dim / 2)`.
    pub(super) rope_cos: Vec<f32>,
    pub(super) rope_sin: Vec<f32>,
    /// Logits, `(B, vocab)`.
    pub(super) logits: Vec<f32>,
    /// Quantized activations for the mat-vecs, up to `(B, max(dim, ffn_dim, n_heads·head_dim_v))`.
    pub(super) acts: QuantizedActs,
}

/// Everything a forward pass writes besides the KV cache: the thread pool and the activation
/// buffers, allocated once for a model and a context length.
pub struct Workspace {
    pub(super) pool: KernelPool,
    pub(super) ctx: usize,
    /// The extra ids of a reduced head ([`HeadVocab::Reduced`](super::HeadVocab::Reduced)).
    pub(super) extra: HeadExtra,
    pub(super) shape: (usize, usize, usize, usize, usize, usize, usize),
    pub(super) bufs: Buffers,
    /// Rows of the last pass whose head input (final-normed hidden state) is in `bufs.proj`.
    pub(super) hidden_rows: usize,
    /// The GPU buffers, for a model on the GPU.
    pub(super) gpu: Option<GpuScratchSlot>,
}

/// A workspace's GPU buffers (nothing without the `gpu` feature).
#[cfg(feature = "gpu")]
pub(super) type GpuScratchSlot = super::gpu::GpuScratch;
#[cfg(not(feature = "gpu"))]
pub(super) type GpuScratchSlot = std::convert::Infallible;

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Workspace({:?}, ctx {}, {} bytes)", self.pool, self.ctx, self.bytes())
    }
}

fn shape_of(c: &ModelConfig) -> (usize, usize, usize, usize, usize, usize, usize) {
    (c.dim, c.ffn_dim, c.n_heads, c.n_kv_heads, c.head_dim, c.head_dim_v, c.vocab_size)
}

impl Workspace {
    /// Buffers for `model` at contexts up to `ctx`, running on `pool`.
    pub fn new(model: &Model, pool: KernelPool, ctx: usize) -> Result<Workspace> {
        let c = model.config();
        let bb = MAX_BATCH;
        let widest = c.dim.max(c.ffn_dim).max(c.n_heads * c.head_dim_v);
        // One row of attention scores per thread: the only buffer sized by the context (user input).
        let scores = pool
            .threads()
            .checked_mul(ctx.max(1))
            .filter(|&n| n <= isize::MAX as usize / 8)
            .ok_or_else(|| {
                Error::new(ErrorKind::OutOfMemory, format!("buffers for a context of {ctx} tokens overflow"))
            })?;
        let bufs = Buffers {
            x: vec![0.0; bb * c.dim],
            xn: vec![0.0; bb * c.dim],
            proj: vec![0.0; bb * c.dim],
            q: vec![0.0; bb * c.n_heads * c.head_dim],
            k: vec![0.0; bb * c.n_kv_heads * c.head_dim],
            v: vec![0.0; bb * c.n_kv_heads * c.head_dim_v],
            att: vec![0.0; bb * c.n_heads * c.head_dim_v],
            gate: vec![0.0; bb * c.ffn_dim],
            up: vec![0.0; bb * c.ffn_dim],
            scores: vec![0.0; scores],
            tmp: vec![0.0; c.head_dim],
            rope_cos: vec![0.0; 2 * bb * (c.rope_dim / 2)],
            rope_sin: vec![0.0; 2 * bb * (c.rope_dim / 2)],
            logits: vec![0.0; bb * c.vocab_size],
            acts: QuantizedActs::with_capacity(widest, bb),
        };
        #[cfg(feature = "gpu")]
        let gpu = match &model.gpu {
            Some(g) => Some(super::gpu::GpuScratch::new(g.ctx.clone(), c, ctx)?),
            None => None,
        };
        #[cfg(not(feature = "gpu"))]
        let gpu = None;
        Ok(Workspace {
            pool,
            ctx,
            extra: HeadExtra::new(c.vocab_size),
            shape: shape_of(c),
            bufs,
            hidden_rows: 0,
            gpu,
        })
    }

    /// The thread pool.
    pub fn pool(&self) -> &KernelPool {
        &self.pool
    }

    /// The ids a pass with [`HeadVocab::Reduced`](super::HeadVocab::Reduced) computes besides its prefix (typically the
    /// context's tokens), replacing the previous ones; duplicates are dropped. Fails, leaving
    /// none, on an id outside the vocabulary.
    pub fn set_head_extra(&mut self, ids: &[u32]) -> Result<()> {
        self.extra.set(ids, self.shape.6)
    }

    /// Longest context the buffers serve.
    pub fn ctx(&self) -> usize {
        self.ctx
    }

    /// The final hidden state (after the final norm: the head's input), `(dim)`, of row `row` of
    /// the rows the last forward pass computed logits for (in the order of its logits); `None`
    /// past them, or when the pass produced none.
    pub fn hidden(&self, row: usize) -> Option<&[f32]> {
        let dim = self.shape.0;
        (row < self.hidden_rows).then(|| self.bufs.proj.get(row * dim..(row + 1) * dim)).flatten()
    }

    /// How many rows [`Workspace::hidden`] holds.
    pub fn hidden_rows(&self) -> usize {
        self.hidden_rows
    }

    pub(super) fn matches(&self, c: &ModelConfig) -> bool {
        self.shape == shape_of(c)
    }

    /// Bytes of the f32 buffers (the quantized activations add about a third of `x`'s).
    pub fn bytes(&self) -> usize {
        let b = &self.bufs;
        4 * [
            &b.x,
            &b.xn,
            &b.proj,
            &b.q,
            &b.k,
            &b.v,
            &b.att,
            &b.gate,
            &b.up,
            &b.scores,
            &b.tmp,
            &b.rope_cos,
            &b.rope_sin,
            &b.logits,
        ]
        .iter()
        .map(|v| v.len())
        .sum::<usize>()
    }
}
