//! The figures of one generation ([`GenerationStats`], what `--stats` prints and `--stats-json`
//! writes) and why it ended, apart from the session that produces them.

use serde::Serialize;

use crate::model::MAX_BATCH;

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The context is full.
    ContextFull,
    /// The callback asked to stop.
    Cancelled,
}

/// Figures of one generation (the `--stats-json` fields).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenerationStats {
    /// Decoding strategy (its [`crate::decode::Strategy::name`]).
    pub strategy: &'static str,
    /// Tokens of the prompt fed in this call.
    pub prompt_tokens: usize,
    /// Tokens generated (an end-of-generation token counts).
    pub generated_tokens: usize,
    /// Seconds spent feeding the prompt.
    pub prefill_s: f64,
    /// Seconds from the first sampled token to the end.
    pub decode_s: f64,
    /// Prompt tokens per second.
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second (after the first, which comes from the prefill's logits).
    pub decode_tokens_per_s: f64,
    /// Forward passes run (prefill chunks included).
    pub forward_passes: usize,
    /// Decode passes run: the forward passes after the prefill (the first token comes from the
    /// prefill's last pass). `passes_by_batch` splits them by size.
    pub decode_passes: usize,
    /// Tokens proposed by a drafter (0 for plain decoding).
    pub drafted_tokens: usize,
    /// Drafted tokens the model accepted.
    pub accepted_tokens: usize,
    /// `accepted_tokens / drafted_tokens` (0 when nothing was drafted).
    pub acceptance_rate: f64,
    /// Seconds the drafter spent proposing tokens.
    pub draft_s: f64,
    /// Seconds spent in the model's decode passes (verification included).
    pub verify_s: f64,
    /// Generated tokens per forward pass that produced tokens (`decode_passes` and the prefill's
    /// last pass, which yields the first token): 1 for plain decoding, more when drafts are
    /// accepted.
    pub mean_accepted_per_pass: f64,
    /// Decode passes by the number of tokens they scored (index `b`; index 0 unused): with a
    /// cost curve `rel(b)`, what the passes cost in single-token passes.
    pub passes_by_batch: [u32; MAX_BATCH + 1],
    /// Peak resident memory of the process so far, if the OS tells.
    pub peak_rss_bytes: Option<u64>,
    /// Why the generation ended.
    pub stop: StopReason,
    /// Tokens in the context afterwards.
    pub context_used: usize,
    /// The context length.
    pub context_size: usize,
}

/// Sums of the decode figures of several generations (what a measurement over a set of prompts
/// reports).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DecodeTotals {
    /// Tokens decoded after each generation's first (which comes from its prefill).
    pub tokens: usize,
    /// Seconds decoding.
    pub decode_s: f64,
    /// Decode passes.
    pub passes: usize,
    /// Tokens drafted.
    pub drafted: usize,
    /// Drafted tokens accepted.
    pub accepted: usize,
    /// Seconds drafting.
    pub draft_s: f64,
}

impl DecodeTotals {
    /// Add one generation.
    pub fn add(&mut self, st: &GenerationStats) {
        self.tokens += st.generated_tokens.saturating_sub(1);
        self.decode_s += st.decode_s;
        self.passes += st.decode_passes;
        self.drafted += st.drafted_tokens;
        self.accepted += st.accepted_tokens;
        self.draft_s += st.draft_s;
    }

    /// Add the sums of `o`.
    pub fn merge(&mut self, o: &DecodeTotals) {
        self.tokens += o.tokens;
        self.decode_s += o.decode_s;
        self.passes += o.passes;
        self.drafted += o.drafted;
        self.accepted += o.accepted;
        self.draft_s += o.draft_s;
    }

    /// Decoded tokens per second (0 without decoding time).
    pub fn tokens_per_s(&self) -> f64 {
        per_s(self.tokens, self.decode_s)
    }

    /// Decoded tokens per decode pass (0 without a pass).
    pub fn tokens_per_pass(&self) -> f64 {
        if self.passes > 0 {
            self.tokens as f64 / self.passes as f64
        } else {
            0.0
        }
    }

    /// Accepted share of the drafted tokens (0 when nothing was drafted).
    pub fn acceptance(&self) -> f64 {
        if self.drafted > 0 {
            self.accepted as f64 / self.drafted as f64
        } else {
            0.0
        }
    }
}

pub(crate) fn per_s(n: usize, d: f64) -> f64 {
    if d > 0.0 {
        n as f64 / d
    } else {
        0.0
    }
}

/// The process's peak resident set size (`VmHWM`), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::EndOfGeneration => "end of generation",
            StopReason::MaxTokens => "token limit",
            StopReason::ContextFull => "context full",
            StopReason::Cancelled => "cancelled",
        })
    }
}

impl std::fmt::Display for GenerationStats {
    /// Two lines: speeds, then context, passes and memory.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The first token comes from the prefill's last pass: a rate needs a second one (with one
        // token, or none, there is no decode rate to give).
        let decode_rate = if self.generated_tokens > 1 && self.decode_s > 0.0 {
            format!("{:.1} tok/s", self.decode_tokens_per_s)
        } else {
            "n/a: no decode pass".to_string()
        };
        let prefill_rate = if self.prompt_tokens > 0 && self.prefill_s > 0.0 {
            format!("{:.1} tok/s", self.prefill_tokens_per_s)
        } else {
            "n/a".to_string()
        };
        writeln!(
            f,
            "prefill {} tokens in {:.3} s ({prefill_rate}); decode {} tokens in {:.3} s ({decode_rate}); stop: {}",
            self.prompt_tokens, self.prefill_s, self.generated_tokens, self.decode_s, self.stop
        )?;
        write!(
            f,
            "strategy {}, {} forward passes, {:.2} tokens/pass",
            self.strategy, self.forward_passes, self.mean_accepted_per_pass
        )?;
        if self.drafted_tokens > 0 {
            write!(
                f,
                " ({} of {} drafted tokens accepted, {:.0}%; drafting {:.1} ms, verifying {:.3} s)",
                self.accepted_tokens,
                self.drafted_tokens,
                100.0 * self.acceptance_rate,
                1e3 * self.draft_s,
                self.verify_s
            )?;
        }
        write!(
            f,
            "; context {}/{}; peak RSS {}",
            self.context_used,
            self.context_size,
            match self.peak_rss_bytes {
                Some(b) => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
                None => "unknown".to_string(),
            }
        )
    }
}
