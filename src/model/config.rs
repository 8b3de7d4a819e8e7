//! Hyperparameters of a model, read from GGUF metadata under the `{arch}.` prefix.

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// The shape of a transformer, as the GGUF metadata describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// `general.architecture`, e.g. `llama`, `gemma3`.
    pub arch: String,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Residual stream width.
    pub dim: usize,
    /// Hidden width of the MLP.
    pub ffn_dim: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one query/key head.
    pub head_dim: usize,
    /// Width of one value head.
    pub head_dim_v: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length the model was trained for.
    pub context_length: usize,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// Dimensions of each head that RoPE rotates.
    pub rope_dim: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Sliding-window size of local attention layers, if the model has them.
    pub sliding_window: Option<usize>,
    /// RoPE base of sliding-window layers from `rope.freq_base_swa`, when the file sets one
    /// (otherwise the architecture's default, [`ArchSpec::rope_base_local`](super::ArchSpec)).
    pub rope_base_swa: Option<f32>,
    /// RoPE frequency scale (`1 / rope.scaling.factor` for linear scaling, else 1).
    pub rope_freq_scale: f32,
    /// Attention scores are multiplied by this before the softmax (default `1/√head_dim`;
    /// `attention.scale` overrides it).
    pub attn_scale: f32,
    /// `cap · tanh(logit / cap)` on attention scores (gemma 2), if set.
    pub attn_logit_softcap: Option<f32>,
    /// `cap · tanh(logit / cap)` on the final logits (gemma 2), if set.
    pub final_logit_softcap: Option<f32>,
}

impl ModelConfig {
    /// Read the configuration from `file`'s metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<ModelConfig> {
        let arch = file
            .get_str("general.architecture")?
            .ok_or_else(|| Error::format("metadata general.architecture is missing"))?
            .to_string();
        let key = |k: &str| format!("{arch}.{k}");
        let req = |k: &str| -> Result<usize> {
            let full = key(k);
            let v =
                file.get_u64(&full)?.ok_or_else(|| Error::format(format!("metadata {full} is missing")))?;
            usize::try_from(v).map_err(|_| Error::format(format!("metadata {full} = {v} is too large")))
        };
        let opt = |k: &str| -> Result<Option<usize>> {
            Ok(file.get_u64(&key(k))?.and_then(|v| usize::try_from(v).ok()))
        };
        let n_layers = req("block_count")?;
        let dim = req("embedding_length")?;
        let n_heads = req("attention.head_count")?;
        if n_layers == 0 || dim == 0 || n_heads == 0 {
            return Err(Error::format("block_count, embedding_length and head_count must be positive"));
        }
        let n_kv_heads = opt("attention.head_count_kv")?.unwrap_or(n_heads);
        if n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(Error::format(format!(
                "{n_heads} query heads cannot be grouped over {n_kv_heads} key/value heads"
            )));
        }
        let head_dim = match opt("attention.key_length")? {
            Some(h) => h,
            None if dim % n_heads == 0 => dim / n_heads,
            None => return Err(Error::format("embedding_length is not a multiple of head_count")),
        };
        let head_dim_v = opt("attention.value_length")?.unwrap_or(head_dim);
        let vocab_size = match opt("vocab_size")? {
            Some(v) => v,
            None => file.get_array("tokenizer.ggml.tokens")?.map(|a| a.len()).unwrap_or(0),
        };
        let f32_key = |k: &str| file.get_f32(&key(k));
        let rope_freq_scale =
            match (file.get_str(&key("rope.scaling.type"))?, f32_key("rope.scaling.factor")?) {
                (Some("linear") | None, Some(f)) if f > 0.0 => 1.0 / f,
                _ => 1.0,
            };
        let attn_scale = f32_key("attention.scale")?.unwrap_or(1.0 / (head_dim as f32).sqrt());
        let positive = |v: Option<f32>| v.filter(|&c| c > 0.0);
        Ok(ModelConfig {
            rope_freq_scale,
            attn_scale,
            attn_logit_softcap: positive(f32_key("attn_logit_softcapping")?),
            final_logit_softcap: positive(f32_key("final_logit_softcapping")?),
            ffn_dim: req("feed_forward_length")?,
            n_layers,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            head_dim_v,
            vocab_size,
            context_length: opt("context_length")?.unwrap_or(2048),
            rope_base: file.get_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_dim: opt("rope.dimension_count")?.unwrap_or(head_dim),
            rms_eps: file.get_f32(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
            sliding_window: opt("attention.sliding_window")?,
            rope_base_swa: file.get_f32(&key("rope.freq_base_swa"))?.filter(|&b| b > 0.0),
            arch,
        })
    }

    /// Bytes of an f16 KV cache holding `ctx` positions for every layer (sliding-window layers
    /// included: [`KvCache::bytes_for`](super::KvCache::bytes_for) gives what a session's cache,
    /// with its windowed rings, takes).
    pub fn kv_cache_bytes(&self, ctx: usize) -> u64 {
        self.kv_cache_bytes_as(ctx, super::KvType::F16)
    }

    /// [`kv_cache_bytes`](Self::kv_cache_bytes) for a cache of type `ty`.
    pub fn kv_cache_bytes_as(&self, ctx: usize, ty: super::KvType) -> u64 {
        let per_pos = self.n_kv_heads * (ty.row_bytes(self.head_dim) + ty.row_bytes(self.head_dim_v));
        (self.n_layers as u64).saturating_mul(ctx as u64).saturating_mul(per_pos as u64)
    }

    /// Bytes of f32 scratch a session allocates for batches of up to `batch` tokens at context
    /// `ctx`: the residual stream and its normed copy, q/k/v, attention scores, the MLP's hidden
    /// activations and one logits row per batch position. An upper estimate of what
    /// [`crate::model::Workspace`] allocates (it keeps attention scores per thread, not per
    /// head); `None` when it does not fit in 64 bits (a context length is user input).
    pub fn scratch_bytes(&self, batch: usize, ctx: usize) -> Option<u64> {
        let w = |n: usize| n as u64;
        let q = w(self.n_heads) * w(self.head_dim);
        let kv = w(self.n_kv_heads) * w(self.head_dim + self.head_dim_v);
        let fixed = 3 * w(self.dim) + q + kv + w(self.n_heads) * w(self.head_dim_v) + 2 * w(self.ffn_dim);
        let per_token =
            w(self.n_heads).checked_mul(w(ctx))?.checked_add(fixed)?.checked_add(w(self.vocab_size))?;
        per_token.checked_mul(4)?.checked_mul(w(batch))
    }
}
