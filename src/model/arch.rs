//! What distinguishes one transformer family from another, written as data.
//!
//! llama, qwen and gemma share one block: norm → attention → residual → norm → gated MLP →
//! residual. They differ in a handful of choices (which activation gates the MLP, how RoPE pairs
//! dimensions, whether q/k are normalised per head, whether extra norms follow each sub-layer,
//! whether some layers attend only to a sliding window, how embeddings are scaled). [`ArchSpec`]
//! records those choices per `general.architecture`, and the one forward pass in `forward.rs`
//! reads them; there is no per-family forward function.
//!
//! Choices that a GGUF file shows by itself are not in the table but read from the file: tied
//! embeddings (no `output.weight`), attention biases (`attn_q.bias` present).

use crate::error::{Error, Result};
use crate::kernels::ops::RopeStyle;

/// The non-linearity of the gated MLP: `down(act(gate(x)) · up(x))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: SiLU gate (llama, qwen, mistral).
    SiluGated,
    /// GeGLU with the tanh approximation of GELU (gemma).
    GeluTanhGated,
}

/// How token embeddings are scaled before the first block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EmbedScale {
    /// Used as stored.
    None,
    /// Multiplied by `√dim` (gemma).
    SqrtDim,
}

/// Which layers attend only to a sliding window of recent positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowPattern {
    /// Every layer attends to the whole context.
    None,
    /// Every layer uses the window from the metadata (`attention.sliding_window`).
    All,
    /// Of every `n` layers, the first `n − 1` are local (windowed) and the last is global
    /// (gemma 3: `n = 6`).
    EveryNthGlobal(usize),
}

/// The data that makes one forward pass serve every supported architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchSpec {
    /// `general.architecture` values this spec serves.
    pub name: &'static str,
    /// Added to every RMSNorm weight before use. Gemma computes `x̂ · (1 + w)`, but GGUF
    /// converters store `1 + w` already (gemma 3 files have norm weights that are exactly 0.0
    /// where the checkpoint's `w` is −1, and llama.cpp multiplies by the stored weight as is),
    /// so this is 0 for every GGUF architecture we know; it exists for files that store `w`.
    pub norm_weight_offset: f32,
    /// The gated MLP's activation.
    pub activation: Activation,
    /// How RoPE pairs dimensions. GGUF llama files store q/k rows permuted so that adjacent
    /// pairs rotate ([`RopeStyle::Normal`]); gemma and qwen files keep the halves layout
    /// ([`RopeStyle::Neox`]).
    pub rope_style: RopeStyle,
    /// RoPE base of sliding-window layers when it differs from `rope.freq_base` (gemma 3's local
    /// layers use 10 000 while its global ones use the metadata's base).
    pub rope_base_local: Option<f32>,
    /// Whether q and k are RMS-normalised per head before RoPE (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// Whether the attention output is normalised before the residual add
    /// (`post_attention_norm`).
    pub post_attn_norm: bool,
    /// Whether the MLP output is normalised before the residual add (`post_ffw_norm`).
    pub post_ffn_norm: bool,
    /// Embedding scale.
    pub embed_scale: EmbedScale,
    /// Which layers are windowed (the window size comes from the metadata).
    pub window: WindowPattern,
}

impl ArchSpec {
    /// The llama family as the default for architectures that only rename it.
    const LLAMA: ArchSpec = ArchSpec {
        name: "llama",
        norm_weight_offset: 0.0,
        activation: Activation::SiluGated,
        rope_style: RopeStyle::Normal,
        rope_base_local: None,
        qk_norm: false,
        post_attn_norm: false,
        post_ffn_norm: false,
        embed_scale: EmbedScale::None,
        window: WindowPattern::None,
    };

    /// The spec for `general.architecture = arch`; `Unsupported` for families we do not run.
    pub fn for_arch(arch: &str) -> Result<ArchSpec> {
        let spec = match arch {
            "llama" => ArchSpec::LLAMA,
            "mistral" => ArchSpec { name: "mistral", window: WindowPattern::All, ..ArchSpec::LLAMA },
            "qwen2" => ArchSpec { name: "qwen2", rope_style: RopeStyle::Neox, ..ArchSpec::LLAMA },
            "qwen3" => {
                ArchSpec { name: "qwen3", rope_style: RopeStyle::Neox, qk_norm: true, ..ArchSpec::LLAMA }
            }
            "gemma3" => ArchSpec {
                name: "gemma3",
                norm_weight_offset: 0.0,
                activation: Activation::GeluTanhGated,
                rope_style: RopeStyle::Neox,
                rope_base_local: Some(10_000.0),
                qk_norm: true,
                post_attn_norm: true,
                post_ffn_norm: true,
                embed_scale: EmbedScale::SqrtDim,
                window: WindowPattern::EveryNthGlobal(6),
            },
            other => {
                return Err(Error::unsupported(format!(
                "architecture {other:?} is not supported (supported: llama, mistral, qwen2, qwen3, gemma3)"
            )))
            }
        };
        Ok(spec)
    }

    /// Whether layer `layer` attends through a sliding window (given the metadata has one).
    pub fn is_local(&self, layer: usize) -> bool {
        match self.window {
            WindowPattern::None => false,
            WindowPattern::All => true,
            WindowPattern::EveryNthGlobal(n) => n > 0 && layer % n < n - 1,
        }
    }

    /// The attention window of layer `layer` given the metadata's `sliding_window`: that window
    /// on local layers, `None` (the whole context) on global ones or without one.
    pub fn layer_window(&self, layer: usize, sliding_window: Option<usize>) -> Option<usize> {
        sliding_window.filter(|_| self.is_local(layer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_has_five_local_layers_then_one_global() {
        let g = ArchSpec::for_arch("gemma3").unwrap();
        let local: Vec<bool> = (0..12).map(|l| g.is_local(l)).collect();
        assert_eq!(local, [true, true, true, true, true, false, true, true, true, true, true, false]);
        assert!(!ArchSpec::for_arch("llama").unwrap().is_local(0));
    }

    #[test]
    fn unknown_architecture_is_unsupported() {
        let e = ArchSpec::for_arch("mamba").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Unsupported);
    }
}
