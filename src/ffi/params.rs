//! The C parameter and statistics structs, their defaults, and their conversion to and from the
//! library's types (range checks included, so a bad value is an error, never undefined behaviour).

use crate::decode::Strategy;
use crate::error::{Error, Result};
use crate::sampling::SamplingParams;
use crate::session::{GenerateParams, GenerationStats, StopReason};

use super::{strategy_from_id, strategy_id, EdgespecStopReason};

/// How to load a model (`edgespec_model_params_default()` gives the defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct EdgespecModelParams {
    /// Kernel threads per session; 0: one per physical core.
    pub n_threads: u32,
    /// Context length in tokens; 0: the model's, capped at 4096 (or what fits the memory budget).
    pub n_ctx: u32,
    /// Map the file (true, the default: weights are never copied and pages load on demand) or
    /// read it into memory (false).
    pub use_mmap: bool,
    /// Lock the model's bytes in RAM (`mlock`) so they are never paged out. Fails with
    /// `EDGESPEC_STATUS_OUT_OF_MEMORY` when the OS refuses (see `RLIMIT_MEMLOCK`), and with
    /// `EDGESPEC_STATUS_UNSUPPORTED` on platforms without mlock.
    pub use_mlock: bool,
    /// Most bytes a session may need (weights + KV cache + scratch, estimated from the metadata);
    /// 0: no limit. With `n_ctx` 0 the context is shrunk to fit (to 64 tokens at least);
    /// otherwise a context that does not fit fails with `EDGESPEC_STATUS_OUT_OF_MEMORY`, whose
    /// message names the smallest budget that would do. Without a budget, a context whose cache
    /// and scratch exceed the machine's memory fails session creation the same way.
    pub memory_budget_bytes: u64,
    /// KV cache type of the model's sessions: 0 f16 (the default), 1 f32, 2 q8_0 (8-bit, 53% of
    /// f16's memory and attention bandwidth; head dimensions must be multiples of 32, else
    /// session creation fails with `EDGESPEC_STATUS_INVALID_ARGUMENT`). Another value fails the
    /// load with `EDGESPEC_STATUS_INVALID_ARGUMENT`.
    pub kv_type: i32,
    /// Where the forward pass runs: 0 the CPU (the default), 1 the GPU (Vulkan or Metal; fails
    /// at session creation with `EDGESPEC_STATUS_UNSUPPORTED` when there is no adapter or a
    /// weight type has no GPU kernel), 2 a hardware GPU the model fits, else the CPU. Another
    /// value fails the load with `EDGESPEC_STATUS_INVALID_ARGUMENT`.
    pub device: i32,
}

/// How tokens are chosen (`edgespec_sampling_params_default()`: temperature 0.8, top-k 40, top-p
/// 0.95, min-p 0.05, no repetition penalty, as llama.cpp; `edgespec_sampling_params_greedy()`:
/// argmax).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct EdgespecSamplingParams {
    /// Softmax temperature; 0 or below: greedy argmax.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 disables.
    pub top_k: u32,
    /// Nucleus sampling threshold in (0, 1]; 1 disables.
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one, in [0, 1]; 0 disables.
    pub min_p: f32,
    /// Repetition penalty (> 0); 1 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: u32,
    /// Seed of the random generator: a seed always gives the same text.
    pub seed: u64,
}

/// What to generate (`edgespec_generate_params_default()`: 256 tokens, default sampling,
/// strategy `auto`, which drafts only where its measured acceptance and pass cost say a draft
/// pays; `EDGESPEC_STRATEGY_PLAIN` never drafts).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct EdgespecGenerateParams {
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Decoding strategy id (`EdgespecStrategy`, or from `edgespec_strategy_from_name`). Every
    /// strategy produces plain decoding's output; they differ in speed.
    pub strategy: i32,
    /// Sampling settings.
    pub sampling: EdgespecSamplingParams,
}

/// Figures of the last generation of a session (`edgespec_session_stats`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct EdgespecStats {
    /// Strategy id used.
    pub strategy: i32,
    /// Why the generation ended (`EdgespecStopReason`).
    pub stop_reason: i32,
    /// Prompt tokens fed by this call.
    pub prompt_tokens: u64,
    /// Tokens generated (an end-of-generation token counts).
    pub generated_tokens: u64,
    /// Forward passes run, prefill chunks included.
    pub forward_passes: u64,
    /// Tokens proposed by the drafter (0 for plain decoding).
    pub drafted_tokens: u64,
    /// Drafted tokens the model accepted.
    pub accepted_tokens: u64,
    /// Tokens in the context afterwards.
    pub context_used: u64,
    /// The context length.
    pub context_size: u64,
    /// Peak resident memory of the process so far; 0 when the OS does not tell.
    pub peak_rss_bytes: u64,
    /// Seconds spent feeding the prompt.
    pub prefill_s: f64,
    /// Seconds from the first sampled token to the end.
    pub decode_s: f64,
    /// Prompt tokens per second.
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second.
    pub decode_tokens_per_s: f64,
    /// accepted_tokens / drafted_tokens (0 when nothing was drafted).
    pub acceptance_rate: f64,
    /// Generated tokens per token-producing forward pass (1 for plain decoding).
    pub mean_accepted_per_pass: f64,
    /// Seconds the drafter spent proposing.
    pub draft_s: f64,
    /// Seconds spent in the model's decode (verification) passes.
    pub verify_s: f64,
    /// Whether `energy_j` and `tokens_per_j` were measured (false: no power meter; both NaN).
    pub has_energy: bool,
    /// Energy of the generation in joules; NaN when not measured.
    pub energy_j: f64,
    /// Generated tokens per joule; NaN when not measured.
    pub tokens_per_j: f64,
}

/// Default model parameters: default threads and context, mmap on, mlock off, no budget, f16 KV
/// cache.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn edgespec_model_params_default() -> EdgespecModelParams {
    EdgespecModelParams {
        n_threads: 0,
        n_ctx: 0,
        use_mmap: true,
        use_mlock: false,
        memory_budget_bytes: 0,
        kv_type: 0,
        device: 0,
    }
}

/// Default sampling parameters (llama.cpp's defaults).
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn edgespec_sampling_params_default() -> EdgespecSamplingParams {
    sampling_to_c(&SamplingParams::default())
}

/// Greedy sampling (argmax; deterministic whatever the seed).
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn edgespec_sampling_params_greedy() -> EdgespecSamplingParams {
    sampling_to_c(&SamplingParams::greedy())
}

/// Default generation parameters.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn edgespec_generate_params_default() -> EdgespecGenerateParams {
    let d = GenerateParams::default();
    EdgespecGenerateParams {
        max_tokens: u32::try_from(d.max_tokens).unwrap_or(u32::MAX),
        strategy: strategy_id(d.strategy),
        sampling: sampling_to_c(&d.sampling),
    }
}

fn sampling_to_c(s: &SamplingParams) -> EdgespecSamplingParams {
    EdgespecSamplingParams {
        temperature: s.temperature,
        top_k: u32::try_from(s.top_k).unwrap_or(u32::MAX),
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: u32::try_from(s.repeat_last_n).unwrap_or(u32::MAX),
        seed: s.seed,
    }
}

impl EdgespecGenerateParams {
    /// The library's parameters, checked.
    pub(crate) fn library_params(&self) -> Result<GenerateParams> {
        let s = &self.sampling;
        let sampling = SamplingParams {
            temperature: s.temperature,
            top_k: s.top_k as usize,
            top_p: s.top_p,
            min_p: s.min_p,
            repeat_penalty: s.repeat_penalty,
            repeat_last_n: s.repeat_last_n as usize,
            seed: s.seed,
        };
        sampling.validate()?;
        if self.max_tokens == 0 {
            return Err(Error::invalid("max_tokens must be at least 1"));
        }
        Ok(GenerateParams {
            max_tokens: self.max_tokens as usize,
            sampling,
            strategy: strategy_from_id(self.strategy)?,
        })
    }
}

impl EdgespecStats {
    /// The C figures of `s`, a generation run with `strategy`.
    pub(crate) fn from_lib(s: &GenerationStats, strategy: Strategy) -> EdgespecStats {
        let stop = match s.stop {
            StopReason::EndOfGeneration => EdgespecStopReason::EndOfGeneration,
            StopReason::MaxTokens => EdgespecStopReason::MaxTokens,
            StopReason::ContextFull => EdgespecStopReason::ContextFull,
            StopReason::Cancelled => EdgespecStopReason::Cancelled,
        };
        let n = |v: usize| v as u64;
        EdgespecStats {
            // The stats name the strategy that actually ran; fall back to the one asked for.
            strategy: strategy_id(s.strategy.parse::<Strategy>().unwrap_or(strategy)),
            stop_reason: stop as i32,
            prompt_tokens: n(s.prompt_tokens),
            generated_tokens: n(s.generated_tokens),
            forward_passes: n(s.forward_passes),
            drafted_tokens: n(s.drafted_tokens),
            accepted_tokens: n(s.accepted_tokens),
            context_used: n(s.context_used),
            context_size: n(s.context_size),
            peak_rss_bytes: s.peak_rss_bytes.unwrap_or(0),
            prefill_s: s.prefill_s,
            decode_s: s.decode_s,
            prefill_tokens_per_s: s.prefill_tokens_per_s,
            decode_tokens_per_s: s.decode_tokens_per_s,
            acceptance_rate: s.acceptance_rate,
            mean_accepted_per_pass: s.mean_accepted_per_pass,
            draft_s: s.draft_s,
            verify_s: s.verify_s,
            // No power meter is wired into sessions yet.
            has_energy: false,
            energy_j: f64::NAN,
            tokens_per_j: f64::NAN,
        }
    }
}
