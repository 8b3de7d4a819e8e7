//! The model handle: a loaded, checked GGUF file with its tokenizer and the session options
//! chosen at load; immutable, so any number of threads may tokenize with it and create sessions
//! from it at once.

use std::ffi::c_char;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::gguf::GgufFile;
use crate::model::{KvType, Model, ModelConfig, MAX_BATCH};
use crate::session::{SessionOptions, DEFAULT_CTX};
use crate::tokenizer::Tokenizer;

use super::{c_out, c_ref, c_str, guard, EdgespecModelParams, EdgespecStatus};

/// A loaded model (opaque). Create with `edgespec_model_load`, release with `edgespec_model_free`.
pub struct EdgespecModel {
    file: Arc<GgufFile>,
    tokenizer: Tokenizer,
    /// What sessions created from this model use.
    opts: SessionOptions,
}

impl EdgespecModel {
    /// A fresh library model over the shared file (cheap: no tensor data is read).
    pub(crate) fn model(&self) -> Result<Model> {
        Model::from_file(self.file.clone())
    }

    /// The options sessions are created with.
    pub(crate) fn options(&self) -> &SessionOptions {
        &self.opts
    }
}

/// Bytes a session over `config` at context `ctx` needs: the weights, an f16 KV cache and the
/// scratch of the widest batch.
fn session_bytes(config: &ModelConfig, weight_bytes: u64, ctx: usize, kv: KvType) -> u64 {
    weight_bytes
        .saturating_add(config.kv_cache_bytes_as(ctx, kv))
        .saturating_add(config.scratch_bytes(MAX_BATCH, ctx))
}

/// The context length to use: the one asked for, else the model's capped at [`DEFAULT_CTX`]
/// (the session's own default), shrunk to the budget when there is one and none was asked for.
fn choose_ctx(
    config: &ModelConfig,
    weight_bytes: u64,
    asked: Option<usize>,
    budget: u64,
    kv: KvType,
) -> Result<usize> {
    let ctx = asked.unwrap_or(config.context_length.clamp(1, DEFAULT_CTX));
    let fits = |c: usize| budget == 0 || session_bytes(config, weight_bytes, c, kv) <= budget;
    if fits(ctx) {
        return Ok(ctx);
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let over = || {
        Error::new(
            ErrorKind::OutOfMemory,
            format!(
                "memory budget of {:.1} MiB cannot hold the model ({:.1} MiB of weights) with a {} token \
                 context ({:.1} MiB needed)",
                mib(budget),
                mib(weight_bytes),
                ctx,
                mib(session_bytes(config, weight_bytes, ctx, kv))
            ),
        )
    };
    if asked.is_some() || !fits(1) {
        return Err(over());
    }
    // The need grows with the context: find the longest one that fits.
    let (mut lo, mut hi) = (1, ctx);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

/// Lock `bytes` in RAM. Pages unlock by themselves when the memory is unmapped or freed.
#[cfg(unix)]
fn lock_in_ram(bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    // SAFETY: the range is a live allocation or mapping owned by the model handle; mlock only
    // changes its paging.
    let rc = unsafe { libc::mlock(bytes.as_ptr().cast(), bytes.len()) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(Error::new(
            ErrorKind::OutOfMemory,
            format!(
                "cannot lock the model's {} bytes in RAM: {err} (raise RLIMIT_MEMLOCK or load without mlock)",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn lock_in_ram(_bytes: &[u8]) -> Result<()> {
    Err(Error::unsupported("mlock is not available on this platform"))
}

fn load(path: &str, p: &EdgespecModelParams) -> Result<EdgespecModel> {
    let file = if p.use_mmap {
        GgufFile::open(path)?
    } else {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        GgufFile::from_bytes(bytes).map_err(|e| e.context(path))?
    };
    let file = Arc::new(file);
    let model = Model::from_file(file.clone()).map_err(|e| e.context(path))?;
    let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| e.context(path))?;
    let asked = (p.n_ctx > 0).then_some(p.n_ctx as usize);
    let kv_type = kv_type_from_id(p.kv_type)?;
    let ctx = choose_ctx(model.config(), file.len(), asked, p.memory_budget_bytes, kv_type)?;
    if p.use_mlock {
        lock_in_ram(file.bytes())?;
    }
    let opts = SessionOptions {
        threads: (p.n_threads > 0).then_some(p.n_threads as usize),
        ctx: Some(ctx),
        kv_type,
        ..SessionOptions::default()
    };
    Ok(EdgespecModel { file, tokenizer, opts })
}

/// The KV cache type of a C id (`EdgespecModelParams::kv_type`).
fn kv_type_from_id(id: i32) -> Result<KvType> {
    usize::try_from(id).ok().and_then(|i| KvType::ALL.get(i).copied()).ok_or_else(|| {
        Error::invalid(format!("unknown KV cache type id {id}; ids are 0 (f16), 1 (f32) and 2 (q8_0)"))
    })
}

/// Load the GGUF model at `path` and write a new handle to `*out_model` (NULL on failure).
/// `params` may be NULL for the defaults. Only metadata is read: weights are mapped, not copied
/// (unless `use_mmap` is false).
///
/// Errors: `IO` (missing or unreadable file), `FORMAT` (malformed GGUF), `UNSUPPORTED` (an
/// architecture or tensor type this build lacks), `OUT_OF_MEMORY` (budget or mlock),
/// `INVALID_ARGUMENT` (NULL `path`/`out_model`, invalid UTF-8).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `params` is NULL or points to an
/// `EdgespecModelParams`; `out_model` is NULL or writable.
///
/// Thread safety: any thread; loads may run concurrently.
#[no_mangle]
pub unsafe extern "C" fn edgespec_model_load(
    path: *const c_char,
    params: *const EdgespecModelParams,
    out_model: *mut *mut EdgespecModel,
) -> EdgespecStatus {
    guard(|| {
        let out = c_out(out_model, "out_model")?;
        // SAFETY: checked non-null; writable by contract. Cleared first so a failure leaves NULL.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: by this function's contract.
        let path = unsafe { c_str(path, "path") }?;
        let defaults = super::edgespec_model_params_default();
        // SAFETY: NULL or a valid struct by contract.
        let params = unsafe { params.as_ref() }.unwrap_or(&defaults);
        let model = load(path, params)?;
        // SAFETY: as above.
        unsafe { out.write(Box::into_raw(Box::new(model))) };
        Ok(())
    })
}

/// Release a model. NULL is ignored. Sessions created from it stay valid (they share the mapped
/// file, which is unmapped when the last of them is freed).
///
/// # Safety
/// `model` is NULL or a handle from `edgespec_model_load` not yet freed; no other call may be
/// using it.
///
/// Thread safety: any thread, but not concurrently with another call on the same model.
#[no_mangle]
pub unsafe extern "C" fn edgespec_model_free(model: *mut EdgespecModel) {
    if model.is_null() {
        return;
    }
    let _ = guard(|| {
        // SAFETY: a live handle from Box::into_raw by contract, released exactly once.
        drop(unsafe { Box::from_raw(model) });
        Ok(())
    });
}

/// The context length sessions of this model get (after defaults and the memory budget), or 0
/// for a NULL model.
///
/// # Safety
/// `model` is NULL or a live handle.
///
/// Thread safety: any thread, concurrently with any call on the same model.
#[no_mangle]
pub unsafe extern "C" fn edgespec_model_context_size(model: *const EdgespecModel) -> u32 {
    // SAFETY: NULL or live by contract.
    unsafe { model.as_ref() }.and_then(|m| m.opts.ctx).map_or(0, |c| u32::try_from(c).unwrap_or(u32::MAX))
}

/// The vocabulary size, or 0 for a NULL model.
///
/// # Safety
/// `model` is NULL or a live handle.
///
/// Thread safety: any thread, concurrently with any call on the same model.
#[no_mangle]
pub unsafe extern "C" fn edgespec_model_n_vocab(model: *const EdgespecModel) -> u32 {
    // SAFETY: NULL or live by contract.
    unsafe { model.as_ref() }.map_or(0, |m| u32::try_from(m.tokenizer.n_vocab()).unwrap_or(u32::MAX))
}

/// Tokenize `text`. `add_special` adds BOS (if the model wants one); `parse_special` turns
/// control-token text such as `<|im_end|>` into those tokens.
///
/// Writes the number of tokens to `*n_tokens` always; writes the tokens to `tokens` when
/// `capacity` is large enough. `tokens` NULL with `capacity` 0 asks for the count only (status
/// OK); a buffer too small returns `INVALID_ARGUMENT` with `*n_tokens` set to the count needed.
///
/// # Safety
/// `model` is NULL or a live handle; `text` is NULL or NUL-terminated; `tokens` is NULL or
/// writable for `capacity` elements; `n_tokens` is NULL or writable.
///
/// Thread safety: any thread, concurrently with any call on the same model.
#[no_mangle]
pub unsafe extern "C" fn edgespec_tokenize(
    model: *const EdgespecModel,
    text: *const c_char,
    add_special: bool,
    parse_special: bool,
    tokens: *mut u32,
    capacity: usize,
    n_tokens: *mut usize,
) -> EdgespecStatus {
    guard(|| {
        let n_out = c_out(n_tokens, "n_tokens")?;
        // SAFETY: by this function's contract.
        let (model, text) = unsafe { (c_ref(model, "model")?, c_str(text, "text")?) };
        let ids = model.tokenizer.encode(text, add_special, parse_special);
        // SAFETY: checked non-null; writable by contract.
        unsafe { n_out.write(ids.len()) };
        if tokens.is_null() && capacity == 0 {
            return Ok(());
        }
        let out = c_out(tokens, "tokens")?;
        if ids.len() > capacity {
            return Err(Error::invalid(format!(
                "token buffer too small: {} tokens, room for {capacity}",
                ids.len()
            )));
        }
        // SAFETY: writable for `capacity` >= ids.len() elements by contract; the buffers are
        // distinct (ours is a fresh Vec).
        unsafe { std::ptr::copy_nonoverlapping(ids.as_ptr(), out, ids.len()) };
        Ok(())
    })
}

/// Turn `n` tokens back into text, written NUL-terminated to `buf` (UTF-8; bytes that do not
/// form valid UTF-8 become U+FFFD). `render_special` writes control tokens as their text.
///
/// Writes the text's length in bytes (without the NUL) to `*len` always; `buf` NULL with
/// `capacity` 0 asks for the length only (status OK); a buffer shorter than `*len + 1` returns
/// `INVALID_ARGUMENT`. An id outside the vocabulary returns `INVALID_ARGUMENT`.
///
/// # Safety
/// `model` is NULL or a live handle; `tokens` is NULL or readable for `n` elements (may be NULL
/// when `n` is 0); `buf` is NULL or writable for `capacity` bytes; `len` is NULL or writable.
///
/// Thread safety: any thread, concurrently with any call on the same model.
#[no_mangle]
pub unsafe extern "C" fn edgespec_detokenize(
    model: *const EdgespecModel,
    tokens: *const u32,
    n: usize,
    render_special: bool,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
) -> EdgespecStatus {
    guard(|| {
        let len_out = c_out(len, "len")?;
        // SAFETY: by this function's contract.
        let model = unsafe { c_ref(model, "model") }?;
        let ids: &[u32] = if n == 0 {
            &[]
        } else if tokens.is_null() {
            return Err(Error::invalid("tokens is NULL"));
        } else {
            // SAFETY: readable for `n` elements by contract.
            unsafe { std::slice::from_raw_parts(tokens, n) }
        };
        let vocab = model.tokenizer.n_vocab();
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::invalid(format!("token id {bad} is outside the vocabulary of {vocab}")));
        }
        let text = model.tokenizer.decode(ids, render_special)?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { len_out.write(text.len()) };
        if buf.is_null() && capacity == 0 {
            return Ok(());
        }
        let out = c_out(buf, "buf")?;
        if text.len() >= capacity {
            return Err(Error::invalid(format!(
                "text buffer too small: {} bytes plus the NUL, room for {capacity}",
                text.len()
            )));
        }
        // SAFETY: writable for `capacity` > text.len() bytes by contract; distinct buffers.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), out.cast::<u8>(), text.len());
            out.add(text.len()).write(0);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;
    use crate::model::synthetic::{self, SyntheticSpec};

    #[test]
    fn the_budget_shrinks_a_default_context_and_refuses_an_explicit_one() {
        const F16: KvType = KvType::F16;
        let file = GgufFile::from_bytes(synthetic::build(&SyntheticSpec::llama(1)).unwrap()).unwrap();
        let config = ModelConfig::from_gguf(&file).unwrap();
        let w = file.len();
        assert_eq!(choose_ctx(&config, w, None, 0, F16).unwrap(), 256, "the model's own, under the cap");
        assert_eq!(choose_ctx(&config, w, Some(100), 0, F16).unwrap(), 100);
        let budget = session_bytes(&config, w, 64, F16);
        assert_eq!(choose_ctx(&config, w, None, budget, F16).unwrap(), 64, "the longest context that fits");
        assert_eq!(choose_ctx(&config, w, Some(64), budget, F16).unwrap(), 64);
        let e = choose_ctx(&config, w, Some(65), budget, F16).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfMemory);
        let e = choose_ctx(&config, w, None, w / 2, F16).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfMemory, "not even the weights fit: {e}");
        // With heads of whole Q8_0 blocks, an 8-bit cache fits a longer context in a budget.
        let spec = SyntheticSpec { head_dim: 32, ..SyntheticSpec::llama(1) };
        let config =
            ModelConfig::from_gguf(&GgufFile::from_bytes(synthetic::build(&spec).unwrap()).unwrap()).unwrap();
        let budget = session_bytes(&config, w, 64, F16);
        let q8 = choose_ctx(&config, w, None, budget, KvType::Q8_0).unwrap();
        assert!(q8 > 64 && session_bytes(&config, w, q8, KvType::Q8_0) <= budget, "{q8}");
    }
}
