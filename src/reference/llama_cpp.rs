//! llama.cpp through the `llama-cpp-2` crate: load a GGUF model, tokenize, and run it teacher-forced
//! (logits at every position) or greedily, with every llama.cpp failure turned into our [`Error`].

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{DecodeError, LlamaModelLoadError};

use crate::error::{Error, ErrorKind, Result};
use crate::model::KvType;

/// Tokens per `llama_decode` call. Longer inputs are fed in chunks of this many positions, each
/// chunk attending to the KV cache of the ones before it.
const BATCH: usize = 256;

/// Longest text [`LlamaCppModel::tokenize`] accepts. llama.cpp counts bytes and tokens in `i32`;
/// this keeps both far from overflow.
const MAX_TEXT_BYTES: usize = 1 << 30;

/// llama.cpp's process-wide backend. `llama_backend_init` may run once per process, so every
/// model shares this one, and it is never freed.
static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();

fn backend() -> Result<&'static LlamaBackend> {
    let backend = BACKEND.get_or_init(|| {
        let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
        if std::env::var_os("EDGESPEC_LLAMA_LOG").is_none() {
            backend.void_logs();
        }
        Ok(backend)
    });
    backend.as_ref().map_err(|e| Error::internal(format!("cannot initialize the llama.cpp backend: {e}")))
}

/// A GGUF model loaded by llama.cpp (memory-mapped, CPU only), used as the reference in parity tests.
///
/// Each evaluation ([`logits_for`](Self::logits_for), [`greedy`](Self::greedy)) runs in a fresh
/// llama.cpp context with an empty KV cache, so results do not depend on earlier calls. Token ids
/// are `u32` as everywhere in edgespec; an id outside the vocabulary is an
/// [`ErrorKind::InvalidArgument`] error, checked before llama.cpp sees it.
pub struct LlamaCppModel {
    model: LlamaModel,
    path: PathBuf,
    n_threads: i32,
    n_ctx: u32,
    n_vocab: usize,
    kv: KvType,
}

impl LlamaCppModel {
    /// Load the GGUF model at `path` with `n_threads` CPU threads and a context window of `n_ctx`
    /// tokens (the most tokens one evaluation may cover: prompt plus generated).
    ///
    /// Errors: `NotFound`/`Io` when the file cannot be read, `InvalidArgument` for zero threads or
    /// context, `Format` when llama.cpp refuses the file (set `EDGESPEC_LLAMA_LOG=1` to see why).
    pub fn load(path: impl AsRef<Path>, n_threads: usize, n_ctx: u32) -> Result<LlamaCppModel> {
        let path = path.as_ref();
        let n_threads = i32::try_from(n_threads)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::invalid(format!("n_threads must be in 1..=i32::MAX, got {n_threads}")))?;
        if n_ctx == 0 || i32::try_from(n_ctx).is_err() {
            return Err(Error::invalid(format!("n_ctx must be in 1..=i32::MAX, got {n_ctx}")));
        }
        // llama-cpp-2 debug-asserts that the path exists, and llama.cpp only says "null" when it
        // does not: check here to give a real error.
        if let Err(e) = std::fs::metadata(path) {
            let kind =
                if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
            return Err(Error::new(kind, format!("cannot read model {}: {e}", path.display())).with_source(e));
        }
        let backend = backend()?;
        let model =
            LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).map_err(|e| match e {
                LlamaModelLoadError::NullResult => Error::format(format!(
                    "llama.cpp could not load {} (set EDGESPEC_LLAMA_LOG=1 to see its log)",
                    path.display()
                )),
                other => Error::invalid(format!("cannot pass {} to llama.cpp: {other}", path.display())),
            })?;
        let n_vocab = usize::try_from(model.n_vocab()).ok().filter(|&n| n > 0).ok_or_else(|| {
            Error::format(format!("llama.cpp reports an empty vocabulary in {}", path.display()))
        })?;
        Ok(LlamaCppModel { model, path: path.to_path_buf(), n_threads, n_ctx, n_vocab, kv: KvType::F16 })
    }

    /// Evaluate with llama.cpp's KV cache of type `kv` (`--cache-type-k/-v`; f16 by default).
    /// A q8_0 cache runs llama.cpp's flash-attention path, the one that supports quantized
    /// values: it quantizes each query to Q8_0 for the key dot products and sums the values in
    /// f32, as edgespec's q8_0 cache does.
    pub fn with_kv_type(mut self, kv: KvType) -> LlamaCppModel {
        self.kv = kv;
        self
    }

    /// The file this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of tokens in the vocabulary: the length of every logits row.
    pub fn vocab_size(&self) -> usize {
        self.n_vocab
    }

    /// The context window given to [`load`](Self::load).
    pub fn n_ctx(&self) -> u32 {
        self.n_ctx
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.known_id(self.model.vocab().bos())
    }

    /// The end-of-sequence token, if the model has one.
    pub fn eos(&self) -> Option<u32> {
        self.known_id(self.model.vocab().eos())
    }

    /// Whether llama.cpp ends generation at `id` (EOS, EOT and similar); false for unknown ids.
    pub fn is_eog(&self, id: u32) -> bool {
        self.token(id).map(|t| self.model.vocab().is_eog(t)).unwrap_or(false)
    }

    /// Whether the model asks for BOS to be prepended when tokenizing with `add_special`.
    pub fn adds_bos(&self) -> bool {
        self.model.vocab().should_add_bos()
    }

    /// The model's default chat template (`tokenizer.chat_template`), if it has one.
    pub fn chat_template(&self) -> Option<String> {
        self.model.chat_template(None).ok().and_then(|t| t.to_string().ok())
    }

    /// Tokenize `text` as llama.cpp does. `add_special` adds BOS/EOS where the model asks for them;
    /// `parse_special` turns special-token text such as `<|im_start|>` into the special token
    /// instead of tokenizing it as plain text.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(Error::invalid(format!(
                "text of {} bytes is too long for llama.cpp (at most {MAX_TEXT_BYTES})",
                text.len()
            )));
        }
        let tokens = self.model.vocab().tokenize(text.as_bytes(), add_special, parse_special);
        tokens
            .into_iter()
            .map(|t| {
                u32::try_from(t.0).map_err(|_| {
                    Error::internal(format!("llama.cpp tokenized to a negative token id {}", t.0))
                })
            })
            .collect()
    }

    /// The bytes of one token, as llama.cpp renders it (may be an incomplete UTF-8 sequence).
    /// With `special`, control tokens render as their text (e.g. `<|im_end|>`); without, as nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Result<Vec<u8>> {
        let token = self.checked(id)?;
        Ok(self.model.vocab().token_to_piece(token, special, None))
    }

    /// The bytes of a token sequence, as llama.cpp detokenizes it. `remove_special` drops a leading
    /// BOS / trailing EOS where the model adds them; `unparse_special` renders control tokens as text.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Result<Vec<u8>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if ids.len() > MAX_TEXT_BYTES {
            return Err(Error::invalid(format!("{} tokens are too many to detokenize at once", ids.len())));
        }
        let tokens = ids.iter().map(|&id| self.checked(id)).collect::<Result<Vec<_>>>()?;
        Ok(self.model.vocab().detokenize(&tokens, remove_special, unparse_special))
    }

    /// Teacher-forced logits: run `tokens` through the model and return one row of
    /// [`vocab_size`](Self::vocab_size) logits per position. Shape: `[tokens.len()][vocab_size]`;
    /// row `p` scores the token that follows `tokens[..=p]`.
    ///
    /// The tokens are used as given: prepend BOS yourself if the model wants it. Inputs longer than
    /// 256 tokens are fed in chunks of 256 positions.
    pub fn logits_for(&self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        let tokens = self.checked_input(tokens, 0)?;
        let mut ctx = self.context()?;
        let mut batch = LlamaBatch::new(BATCH, 1);
        let mut rows = Vec::with_capacity(tokens.len());
        for (chunk_index, chunk) in tokens.chunks(BATCH).enumerate() {
            self.decode(&mut ctx, &mut batch, chunk, chunk_index * BATCH, true)?;
            for i in 0..chunk.len() {
                rows.push(self.logits_row(&ctx, i)?.to_vec());
            }
        }
        Ok(rows)
    }

    /// llama.cpp's greedy continuation: feed `prompt`, then `n` times append the argmax of the
    /// last position's logits (the lowest id wins a tie). Returns the `n` new tokens; it does not
    /// stop at end-of-generation tokens (trim with [`is_eog`](Self::is_eog) if needed).
    pub fn greedy(&self, prompt: &[u32], n: usize) -> Result<Vec<u32>> {
        let prompt = self.checked_input(prompt, n)?;
        let mut ctx = self.context()?;
        let mut batch = LlamaBatch::new(BATCH, 1);
        let mut last = 0;
        for (chunk_index, chunk) in prompt.chunks(BATCH).enumerate() {
            self.decode(&mut ctx, &mut batch, chunk, chunk_index * BATCH, false)?;
            last = chunk.len() - 1;
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let next = argmax(self.logits_row(&ctx, last)?)?;
            out.push(next);
            if out.len() == n {
                break;
            }
            let pos = prompt.len() + out.len() - 1;
            self.decode(&mut ctx, &mut batch, &[LlamaToken(next as i32)], pos, false)?;
            last = 0;
        }
        Ok(out)
    }

    /// A fresh context: empty KV cache of `n_ctx` cells, our thread count, `BATCH` tokens per decode.
    fn context(&self) -> Result<LlamaContext<'_>> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.n_ctx))
            .with_n_batch(BATCH as u32)
            .with_n_threads(self.n_threads)
            .with_n_threads_batch(self.n_threads);
        let params = match self.kv {
            KvType::F16 => params,
            KvType::F32 => params.with_type_k(KvCacheType::F32).with_type_v(KvCacheType::F32),
            // 1 = LLAMA_FLASH_ATTN_TYPE_ENABLED: llama.cpp refuses quantized values without it.
            KvType::Q8_0 => params
                .with_type_k(KvCacheType::Q8_0)
                .with_type_v(KvCacheType::Q8_0)
                .with_flash_attention_policy(1),
        };
        self.model.new_context(backend()?, params).map_err(|e| {
            Error::new(
                ErrorKind::OutOfMemory,
                format!("llama.cpp could not create a context of {} tokens: {e}", self.n_ctx),
            )
        })
    }

    /// Decode `chunk` at positions `start..start + chunk.len()`; logits for every position when
    /// `all_logits`, otherwise only for the last one (which is then index `chunk.len() - 1`).
    fn decode(
        &self,
        ctx: &mut LlamaContext<'_>,
        batch: &mut LlamaBatch<'_>,
        chunk: &[LlamaToken],
        start: usize,
        all_logits: bool,
    ) -> Result<()> {
        batch.clear();
        for (i, &token) in chunk.iter().enumerate() {
            // Positions are below n_ctx, which `load` checked fits in i32.
            let pos =
                i32::try_from(start + i).map_err(|_| Error::internal("token position overflows i32"))?;
            let logits = all_logits || i + 1 == chunk.len();
            batch.add(token, pos, &[0], logits).map_err(|e| Error::internal(format!("llama batch: {e}")))?;
        }
        ctx.decode(batch).map_err(|e| match e {
            DecodeError::NoKvCacheSlot => Error::new(
                ErrorKind::ContextOverflow,
                format!("llama.cpp found no KV cache slot at position {start} (n_ctx {})", self.n_ctx),
            ),
            other => Error::internal(format!("llama_decode failed at position {start}: {other}")),
        })
    }

    /// The logits row of output `i` of the last decode (`i` must have asked for logits).
    fn logits_row<'c>(&self, ctx: &'c LlamaContext<'_>, i: usize) -> Result<&'c [f32]> {
        let i = i32::try_from(i).map_err(|_| Error::internal("logits index overflows i32"))?;
        let row = ctx.get_logits_ith(i);
        if row.len() != self.n_vocab {
            return Err(Error::internal(format!(
                "llama.cpp returned {} logits, expected the vocabulary size {}",
                row.len(),
                self.n_vocab
            )));
        }
        Ok(row)
    }

    /// Validate an evaluation input that will be followed by `extra` generated tokens.
    fn checked_input(&self, tokens: &[u32], extra: usize) -> Result<Vec<LlamaToken>> {
        if tokens.is_empty() {
            return Err(Error::invalid("llama.cpp needs at least one input token"));
        }
        let needed = tokens.len().saturating_add(extra);
        if needed > self.n_ctx as usize {
            return Err(Error::new(
                ErrorKind::ContextOverflow,
                format!(
                    "{} input + {extra} generated tokens exceed the context of {}",
                    tokens.len(),
                    self.n_ctx
                ),
            ));
        }
        tokens.iter().map(|&id| self.checked(id)).collect()
    }

    /// `id` as a llama.cpp token, or an error when it is outside the vocabulary (llama.cpp would
    /// abort on it).
    fn checked(&self, id: u32) -> Result<LlamaToken> {
        self.token(id).ok_or_else(|| {
            Error::invalid(format!("token id {id} is outside the vocabulary of {} tokens", self.n_vocab))
        })
    }

    fn token(&self, id: u32) -> Option<LlamaToken> {
        if (id as usize) < self.n_vocab {
            i32::try_from(id).ok().map(LlamaToken)
        } else {
            None
        }
    }

    fn known_id(&self, token: LlamaToken) -> Option<u32> {
        u32::try_from(token.0).ok().filter(|&id| (id as usize) < self.n_vocab)
    }
}

/// Index of the largest logit; the lowest index wins a tie. NaN logits are an error.
fn argmax(row: &[f32]) -> Result<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in row.iter().enumerate() {
        if x.is_nan() {
            return Err(Error::internal(format!("llama.cpp produced a NaN logit at token {i}")));
        }
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    let (i, _) = best.ok_or_else(|| Error::internal("empty logits row"))?;
    u32::try_from(i).map_err(|_| Error::internal("token index overflows u32"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equal_maxima_and_rejects_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]).unwrap(), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, -5.0]).unwrap(), 1);
        assert_eq!(argmax(&[0.0, f32::NAN]).unwrap_err().kind(), ErrorKind::Internal);
        assert_eq!(argmax(&[]).unwrap_err().kind(), ErrorKind::Internal);
    }

    #[test]
    fn missing_model_is_not_found() {
        let err = match LlamaCppModel::load("/nonexistent/edgespec/model.gguf", 1, 64) {
            Err(e) => e,
            Ok(_) => panic!("loading a missing file succeeded"),
        };
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn garbage_file_is_a_format_error() {
        let dir = std::env::temp_dir().join(format!("edgespec-llamaref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("garbage.gguf");
        std::fs::write(&path, b"GGUF\x03\x00\x00\x00 this is not a model").unwrap();
        let err = match LlamaCppModel::load(&path, 1, 64) {
            Err(e) => e,
            Ok(_) => panic!("llama.cpp accepted a garbage file"),
        };
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(err.kind(), ErrorKind::Format);
    }

    #[test]
    fn zero_threads_or_context_are_invalid() {
        for (threads, ctx) in [(0, 64), (1, 0), (1, u32::MAX)] {
            let err = match LlamaCppModel::load("/nonexistent", threads, ctx) {
                Err(e) => e,
                Ok(_) => panic!("accepted threads {threads} ctx {ctx}"),
            };
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "threads {threads} ctx {ctx}");
        }
    }
}
