//! Tiny random models, written as real GGUF files with the project's own writer.
//!
//! Tests (and benchmarks of the machinery around the model) need a model that loads and runs in
//! milliseconds, of any architecture and quant type, without a download. These have a few
//! layers of width 64, a byte-level BPE vocabulary (the 256 bytes plus ChatML control tokens)
//! and a ChatML chat template, so tokenizer, sessions and chat run on them too. Weights are
//! seeded pseudo-random values, so a spec always produces the same file.

use crate::error::Result;
use crate::gguf::{GgufWriter, MetaValue};
use crate::quant::{quantize, GgmlType};

/// What to build.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSpec {
    /// `general.architecture` (`llama`, `gemma3`, `qwen2`, `qwen3`, `mistral`).
    pub arch: &'static str,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Residual width.
    pub dim: usize,
    /// MLP hidden width.
    pub ffn_dim: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Type of q/k/v and gate/up matrices.
    pub weight_type: GgmlType,
    /// Type of `attn_output` and `ffn_down` (their rows are `n_heads·head_dim` and `ffn_dim` long).
    pub out_type: GgmlType,
    /// Type of the token embeddings.
    pub embed_type: GgmlType,
    /// Whether the head reuses the embeddings (no `output.weight`).
    pub tied: bool,
    /// Whether q/k/v have biases.
    pub qkv_bias: bool,
    /// `context_length` metadata.
    pub context_length: usize,
    /// `attention.sliding_window` metadata.
    pub sliding_window: Option<usize>,
    /// `rope.freq_base`.
    pub rope_base: f32,
    /// Seed of the weights.
    pub seed: u64,
}

impl SyntheticSpec {
    /// A llama-shaped model: 2 layers, width 64, 4 query heads over 2 KV heads, Q4_1 weights, a
    /// Q8_0 tied head (like SmolLM2).
    pub fn llama(seed: u64) -> SyntheticSpec {
        SyntheticSpec {
            arch: "llama",
            n_layers: 2,
            dim: 64,
            ffn_dim: 96,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            weight_type: GgmlType::Q4_1,
            out_type: GgmlType::Q4_1,
            embed_type: GgmlType::Q8_0,
            tied: true,
            qkv_bias: false,
            context_length: 256,
            sliding_window: None,
            rope_base: 10_000.0,
            seed,
        }
    }

    /// A gemma3-shaped model: 7 layers (five local, one global, one local), a sliding window of
    /// 4 positions, 2 query heads of 128 over one KV head, Q4_0/Q4_K/Q6_K weights (like the mix
    /// in Gemma 3 270M's Q4_K_M file) and a Q8_0 tied head.
    pub fn gemma3(seed: u64) -> SyntheticSpec {
        SyntheticSpec {
            arch: "gemma3",
            n_layers: 7,
            dim: 64,
            ffn_dim: 256,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 128,
            weight_type: GgmlType::Q4_0,
            out_type: GgmlType::Q4_K,
            embed_type: GgmlType::Q8_0,
            tied: true,
            qkv_bias: false,
            context_length: 256,
            sliding_window: Some(4),
            rope_base: 1_000_000.0,
            seed,
        }
    }
}

/// SplitMix64: a tiny, good-enough generator for test weights.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// The GPT-2 byte-level alphabet: printable Latin-1 bytes stand for themselves, the other bytes
/// for code points from U+0100 on, in byte order.
fn byte_level_chars() -> Vec<String> {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            let c = if printable(b) {
                char::from(b)
            } else {
                let c = char::from_u32(next).unwrap_or('?');
                next += 1;
                c
            };
            c.to_string()
        })
        .collect()
}

/// Control tokens appended after the 256 byte tokens; the first ends text.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The chat template the synthetic models carry (ChatML).
pub const CHAT_TEMPLATE: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
     {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Vocabulary size of every synthetic model.
pub fn vocab_size() -> usize {
    256 + SPECIAL_TOKENS.len()
}

/// Build the GGUF file `spec` describes, in memory.
pub fn build(spec: &SyntheticSpec) -> Result<Vec<u8>> {
    let a = spec.arch;
    let mut w = GgufWriter::new();
    let u32v = |v: usize| MetaValue::from(v as u32);
    w.kv("general.architecture", a)
        .kv("general.name", format!("synthetic {a}"))
        .kv(&format!("{a}.block_count"), u32v(spec.n_layers))
        .kv(&format!("{a}.embedding_length"), u32v(spec.dim))
        .kv(&format!("{a}.feed_forward_length"), u32v(spec.ffn_dim))
        .kv(&format!("{a}.attention.head_count"), u32v(spec.n_heads))
        .kv(&format!("{a}.attention.head_count_kv"), u32v(spec.n_kv_heads))
        .kv(&format!("{a}.attention.key_length"), u32v(spec.head_dim))
        .kv(&format!("{a}.attention.value_length"), u32v(spec.head_dim))
        .kv(&format!("{a}.context_length"), u32v(spec.context_length))
        .kv(&format!("{a}.rope.freq_base"), spec.rope_base)
        .kv(&format!("{a}.attention.layer_norm_rms_epsilon"), 1e-5f32);
    if let Some(win) = spec.sliding_window {
        w.kv(&format!("{a}.attention.sliding_window"), u32v(win));
    }
    let mut tokens = byte_level_chars();
    tokens.extend(SPECIAL_TOKENS.iter().map(|s| s.to_string()));
    let mut types = vec![1i32; 256];
    types.extend([3i32; SPECIAL_TOKENS.len()]);
    w.kv("tokenizer.ggml.model", "gpt2")
        .kv("tokenizer.ggml.pre", "gpt-2")
        .kv("tokenizer.ggml.tokens", MetaValue::strings(tokens))
        .kv("tokenizer.ggml.token_type", MetaValue::i32s(types))
        .kv("tokenizer.ggml.merges", MetaValue::strings(Vec::<String>::new()))
        .kv("tokenizer.ggml.bos_token_id", 256u32)
        .kv("tokenizer.ggml.eos_token_id", 256u32)
        .kv("tokenizer.ggml.add_bos_token", false)
        .kv("tokenizer.chat_template", CHAT_TEMPLATE);

    let mut rng = Rng(spec.seed);
    let vocab = vocab_size();
    let (dim, ffn, hd) = (spec.dim, spec.ffn_dim, spec.head_dim);
    let (q_out, kv_out) = (spec.n_heads * hd, spec.n_kv_heads * hd);
    // A matrix of `rows` outputs over `n` inputs, scaled so outputs keep about unit size.
    let mut mat = |w: &mut GgufWriter, name: &str, rows: usize, n: usize, ty: GgmlType| -> Result<()> {
        let s = 1.7 / (n as f32).sqrt();
        let vals: Vec<f32> = (0..rows * n).map(|_| rng.unit() * s).collect();
        w.tensor(name, &[n as u64, rows as u64], ty, quantize(ty, &vals)?)?;
        Ok(())
    };
    let mut vrng = Rng(spec.seed ^ 0x5EED);
    let mut vector = |w: &mut GgufWriter, name: &str, len: usize, center: f32, spread: f32| -> Result<()> {
        let vals: Vec<f32> = (0..len).map(|_| center + vrng.unit() * spread).collect();
        w.tensor_f32(name, &[len as u64], &vals)?;
        Ok(())
    };
    // Embeddings of unit-ish size (gemma scales them up by √dim itself).
    let embed_scale = if a == "gemma3" { 1.0 / (dim as f32).sqrt() } else { 1.0 };
    let mut erng = Rng(spec.seed ^ 0xE111);
    let emb: Vec<f32> = (0..vocab * dim).map(|_| erng.unit() * embed_scale).collect();
    w.tensor(
        "token_embd.weight",
        &[dim as u64, vocab as u64],
        spec.embed_type,
        quantize(spec.embed_type, &emb)?,
    )?;
    vector(&mut w, "output_norm.weight", dim, 1.0, 0.2)?;
    if !spec.tied {
        mat(&mut w, "output.weight", vocab, dim, spec.embed_type)?;
    }
    let gemma = a == "gemma3";
    let qk_norm = gemma || a == "qwen3";
    for l in 0..spec.n_layers {
        let n = |t: &str| format!("blk.{l}.{t}");
        vector(&mut w, &n("attn_norm.weight"), dim, 1.0, 0.2)?;
        mat(&mut w, &n("attn_q.weight"), q_out, dim, spec.weight_type)?;
        mat(&mut w, &n("attn_k.weight"), kv_out, dim, spec.weight_type)?;
        mat(&mut w, &n("attn_v.weight"), kv_out, dim, spec.weight_type)?;
        if spec.qkv_bias {
            vector(&mut w, &n("attn_q.bias"), q_out, 0.0, 0.3)?;
            vector(&mut w, &n("attn_k.bias"), kv_out, 0.0, 0.3)?;
            vector(&mut w, &n("attn_v.bias"), kv_out, 0.0, 0.3)?;
        }
        if qk_norm {
            vector(&mut w, &n("attn_q_norm.weight"), hd, 1.0, 0.2)?;
            vector(&mut w, &n("attn_k_norm.weight"), hd, 1.0, 0.2)?;
        }
        mat(&mut w, &n("attn_output.weight"), dim, q_out, spec.out_type)?;
        vector(&mut w, &n("ffn_norm.weight"), dim, 1.0, 0.2)?;
        mat(&mut w, &n("ffn_gate.weight"), ffn, dim, spec.weight_type)?;
        mat(&mut w, &n("ffn_up.weight"), ffn, dim, spec.weight_type)?;
        mat(&mut w, &n("ffn_down.weight"), dim, ffn, spec.out_type)?;
        if gemma {
            vector(&mut w, &n("post_attention_norm.weight"), dim, 1.0, 0.2)?;
            vector(&mut w, &n("post_ffw_norm.weight"), dim, 1.0, 0.2)?;
        }
    }
    w.to_bytes()
}
