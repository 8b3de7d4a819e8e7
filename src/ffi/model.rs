//! The model handle: a loaded, checked GGUF file with its tokenizer and the session options
//! chosen at load; immutable, so any number of threads may tokenize with it and create sessions
//! from it at once.

use std::ffi::c_char;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::gguf::GgufFile;
use crate::memory::{self, MemoryRequest};
use crate::model::{Device, KvType, Model};
use crate::session::SessionOptions;
use crate::tokenizer::Tokenizer;

use super::{c_out, c_ref, c_str, guard, EdgespecModelParams, EdgespecStatus};

/// A loaded model (opaque). Create with `edgespec_model_load`, release with `edgespec_model_free`.
pub struct EdgespecModel {
    file: Arc<GgufFile>,
    tokenizer: Tokenizer,
    /// What sessions created from this model use.
    opts: SessionOptions,
    /// The model on the GPU, made by the first session that asks for it: later sessions share
    /// its uploaded weights (`Model::share_device`) instead of uploading their own.
    on_device: std::sync::Mutex<Option<Model>>,
}

impl EdgespecModel {
    /// A fresh library model over the shared file (cheap: no tensor data is read), on the
    /// device the options name; sessions of one handle share one copy of the GPU weights.
    pub(crate) fn model(&self) -> Result<Model> {
        let mut model = Model::from_file(self.file.clone())?;
        if self.opts.device != Device::Cpu {
            let mut shared =
                self.on_device.lock().map_err(|_| Error::internal("a session creation panicked"))?;
            if shared.is_none() {
                let mut first = Model::from_file(self.file.clone())?;
                // `auto` without a usable GPU stays on the CPU; the session says so again.
                first.set_device(self.opts.device)?;
                *shared = Some(first);
            }
            if let Some(first) = shared.as_ref() {
                model.share_device(first);
            }
        }
        Ok(model)
    }

    /// The options sessions are created with.
    pub(crate) fn options(&self) -> &SessionOptions {
        &self.opts
    }
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
    // The CLI's --mem-budget takes the same road (crate::memory), with the cache type free.
    let req = MemoryRequest {
        ctx: asked,
        kv_type: Some(kv_type),
        budget: (p.memory_budget_bytes > 0).then_some(p.memory_budget_bytes),
    };
    let ctx = memory::choose(model.config(), Some(model.arch()), file.len(), &req)?.ctx;
    if p.use_mlock {
        lock_in_ram(file.bytes())?;
    }
    let opts = SessionOptions {
        threads: (p.n_threads > 0).then_some(p.n_threads as usize),
        ctx: Some(ctx),
        kv_type,
        device: device_from_id(p.device)?,
        ..SessionOptions::default()
    };
    Ok(EdgespecModel { file, tokenizer, opts, on_device: std::sync::Mutex::new(None) })
}

/// The device of a C id (`EdgespecModelParams::device`).
fn device_from_id(id: i32) -> Result<Device> {
    usize::try_from(id).ok().and_then(|i| Device::ALL.get(i).copied()).ok_or_else(|| {
        Error::invalid(format!("unknown device id {id}; ids are 0 (cpu), 1 (gpu) and 2 (auto)"))
    })
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
