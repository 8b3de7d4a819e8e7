//! The session handle: a [`Session`] behind a lock that refuses (never races) a second
//! concurrent call, a cancel flag any thread may raise, the last generation's statistics, and
//! the buffer the streamed pieces are NUL-terminated in.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use crate::error::{Error, ErrorKind, Result};
use crate::session::{Flow, GenerateParams, GenerationStats, Session, StopReason};

use super::{
    c_out, c_ref, c_str, guard, EdgespecGenerateParams, EdgespecModel, EdgespecStats, EdgespecStatus,
};

/// Receives each piece of generated text as soon as it is complete UTF-8: `piece` is
/// NUL-terminated and valid only during the call; `len` is its length in bytes (without the
/// NUL). Return true to continue, false to stop the generation (which then ends with status OK
/// and stop reason `EDGESPEC_STOP_REASON_CANCELLED`). It runs on the thread that called
/// `edgespec_generate`/`edgespec_chat`; from inside it, only `edgespec_cancel` and the model
/// functions may be called on the same session and model (other session calls return
/// `INVALID_ARGUMENT`: the session is busy). It must return normally: no C++ exception or
/// `longjmp` may leave it.
pub type EdgespecTokenCallback =
    Option<unsafe extern "C" fn(piece: *const c_char, len: usize, user_data: *mut c_void) -> bool>;

/// A conversation with a model (opaque): its context (KV cache), chat history and statistics.
/// Create with `edgespec_session_create`, release with `edgespec_session_free`.
pub struct EdgespecSession {
    state: Mutex<State>,
    /// Raised by `edgespec_cancel`; the session checks it between prefill chunks and after
    /// every streamed piece.
    cancel: Arc<AtomicBool>,
}

struct State {
    session: Session,
    /// The last finished generation's figures.
    stats: Option<EdgespecStats>,
    /// The streamed piece plus its NUL (reused; grows only for an unusually long piece).
    piece: Vec<u8>,
}

/// The session's state, or an error if another call holds it (or a panic poisoned it).
fn lock(h: &EdgespecSession) -> Result<MutexGuard<'_, State>> {
    h.state.try_lock().map_err(|e| match e {
        TryLockError::WouldBlock => Error::invalid(
            "the session is busy: another call on it is running (sessions take one call at a time; \
             only edgespec_cancel may be called concurrently)",
        ),
        TryLockError::Poisoned(_) => {
            Error::internal("the session is unusable after an internal error; free it and create another")
        }
    })
}

/// Create a session over `model` (threads and context from the model's load parameters) and
/// write it to `*out_session` (NULL on failure). The session allocates its KV cache and buffers
/// now; nothing grows per token.
///
/// # Safety
/// `model` is NULL or a live model handle; `out_session` is NULL or writable.
///
/// Thread safety: any thread, concurrently with any call on the same model.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_create(
    model: *const EdgespecModel,
    out_session: *mut *mut EdgespecSession,
) -> EdgespecStatus {
    guard(|| {
        let out = c_out(out_session, "out_session")?;
        // SAFETY: checked non-null; writable by contract. Cleared first so a failure leaves NULL.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: NULL or live by contract.
        let model = unsafe { c_ref(model, "model") }?;
        let mut session = Session::new(model.model()?, model.options())?;
        let cancel = Arc::new(AtomicBool::new(false));
        session.set_cancel_flag(Some(cancel.clone()));
        let handle = EdgespecSession {
            state: Mutex::new(State { session, stats: None, piece: Vec::with_capacity(256) }),
            cancel,
        };
        // SAFETY: as above.
        unsafe { out.write(Box::into_raw(Box::new(handle))) };
        Ok(())
    })
}

/// Release a session. NULL is ignored.
///
/// # Safety
/// `session` is NULL or a handle from `edgespec_session_create` not yet freed; no other call may
/// be using it (not even `edgespec_cancel`) and none may follow.
///
/// Thread safety: any thread, but not concurrently with any call on the same session.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_free(session: *mut EdgespecSession) {
    if session.is_null() {
        return;
    }
    let _ = guard(|| {
        // SAFETY: a live handle from Box::into_raw by contract, released exactly once.
        drop(unsafe { Box::from_raw(session) });
        Ok(())
    });
}

/// Run one generation (`body`) with the C callback wrapped: pieces are NUL-terminated for C, and
/// the cancel flag is checked after each. Keeps the statistics; a generation stopped by
/// `edgespec_cancel` is an `ErrorKind::Cancelled` error (its statistics are kept too).
///
/// # Safety
/// `params` is NULL or points to a valid struct; `callback`, if any, is safe to call with
/// `user_data`.
unsafe fn run(
    h: &EdgespecSession,
    params: *const EdgespecGenerateParams,
    callback: EdgespecTokenCallback,
    user_data: *mut c_void,
    body: impl FnOnce(&mut Session, &GenerateParams, &mut dyn FnMut(&str) -> Flow) -> Result<GenerationStats>,
) -> Result<()> {
    let defaults = super::edgespec_generate_params_default();
    // SAFETY: NULL or a valid struct by this function's contract.
    let params = unsafe { params.as_ref() }.unwrap_or(&defaults).library_params()?;
    let mut locked = lock(h)?;
    let state = &mut *locked;
    state.stats = None;
    // A cancel issued before this generation started is not for it.
    h.cancel.store(false, Ordering::SeqCst);
    let cancel = &h.cancel;
    let piece = &mut state.piece;
    let mut on_token = |text: &str| -> Flow {
        if let Some(cb) = callback {
            piece.clear();
            piece.extend_from_slice(text.as_bytes());
            piece.push(0);
            // SAFETY: `piece` is NUL-terminated and outlives the call; the callback's own
            // contract is the caller's.
            if !unsafe { cb(piece.as_ptr().cast(), text.len(), user_data) } {
                return Flow::Stop;
            }
        }
        if cancel.load(Ordering::SeqCst) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    let stats = match body(&mut state.session, &params, &mut on_token) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::Cancelled => {
            h.cancel.store(false, Ordering::SeqCst);
            return Err(Error::new(
                ErrorKind::Cancelled,
                "edgespec_cancel stopped the generation while the prompt was processed (the context is as \
                 it was before the call)",
            ));
        }
        Err(e) => return Err(e),
    };
    let cancelled = h.cancel.swap(false, Ordering::SeqCst) && stats.stop == StopReason::Cancelled;
    state.stats = Some(EdgespecStats::from_lib(&stats, params.strategy));
    if cancelled {
        return Err(Error::new(ErrorKind::Cancelled, "the generation was stopped by edgespec_cancel"));
    }
    Ok(())
}

/// Append `prompt` to the session's context and generate up to `params->max_tokens` tokens,
/// streaming each piece of text to `callback` (may be NULL) with `user_data`. `params` may be NULL
/// for the defaults. The context keeps the prompt and the reply, so a later call continues it
/// (`edgespec_session_reset` starts over).
///
/// Returns OK when the generation ended by itself or because the callback returned false;
/// `CANCELLED` when `edgespec_cancel` stopped it (the text so far stays in the context, and the
/// session stays usable; stopped while the prompt was being processed, the context is as it was
/// before the call and no statistics are kept); `UNSUPPORTED` for a strategy this build does not implement;
/// `CONTEXT_OVERFLOW` when the prompt does not fit; `INVALID_ARGUMENT` for NULL pointers, invalid
/// UTF-8, bad parameters, an empty prompt on an empty context, or a busy session.
/// `edgespec_session_stats` then has the figures (after OK or CANCELLED).
///
/// # Safety
/// `session` is NULL or a live session; `prompt` is NULL or NUL-terminated; `params` is NULL or
/// valid; `callback`, if not NULL, is safe to call with `user_data`.
///
/// Thread safety: any thread, one call per session at a time (a concurrent call on the same
/// session returns `INVALID_ARGUMENT`); different sessions run in parallel.
#[no_mangle]
pub unsafe extern "C" fn edgespec_generate(
    session: *mut EdgespecSession,
    prompt: *const c_char,
    params: *const EdgespecGenerateParams,
    callback: EdgespecTokenCallback,
    user_data: *mut c_void,
) -> EdgespecStatus {
    guard(|| {
        // SAFETY: by this function's contract.
        let (h, prompt) = unsafe { (c_ref(session, "session")?, c_str(prompt, "prompt")?) };
        // SAFETY: `params`, `callback` and `user_data` as this function's contract says.
        unsafe { run(h, params, callback, user_data, |s, p, on| s.generate(prompt, p, on)) }
    })
}

/// One chat turn: add the user's message through the model's chat template, generate the reply
/// (streamed to `callback` like `edgespec_generate`), and keep both in the context for the next
/// turn. When the turn and room for its reply (`max_tokens`, at most a quarter of the context)
/// would overflow the context, the oldest exchanges are dropped (the system message stays) until
/// the rest takes at most half of it, and that is fed again. Returns `UNSUPPORTED` if the model
/// has no chat template; otherwise as `edgespec_generate`.
///
/// # Safety
/// As `edgespec_generate`, with `user_message` in place of `prompt`.
///
/// Thread safety: as `edgespec_generate`.
#[no_mangle]
pub unsafe extern "C" fn edgespec_chat(
    session: *mut EdgespecSession,
    user_message: *const c_char,
    params: *const EdgespecGenerateParams,
    callback: EdgespecTokenCallback,
    user_data: *mut c_void,
) -> EdgespecStatus {
    guard(|| {
        // SAFETY: by this function's contract.
        let (h, user) = unsafe { (c_ref(session, "session")?, c_str(user_message, "user_message")?) };
        // SAFETY: `params`, `callback` and `user_data` as this function's contract says.
        unsafe { run(h, params, callback, user_data, |s, p, on| s.chat(user, p, on).map(|(_, stats)| stats)) }
    })
}

/// Ask the generation running on `session` to stop. It stops after the piece being produced
/// (within one forward pass), or, while the prompt is being processed, before its next chunk of
/// up to 16 tokens, and returns `CANCELLED`.
/// A cancel issued while no generation runs has no effect on later ones. NULL is ignored.
///
/// # Safety
/// `session` is NULL or a live session (not freed, and not being freed).
///
/// Thread safety: any thread, any time, including from inside the callback.
#[no_mangle]
pub unsafe extern "C" fn edgespec_cancel(session: *const EdgespecSession) {
    // SAFETY: NULL or live by contract; the flag is atomic.
    if let Some(h) = unsafe { session.as_ref() } {
        h.cancel.store(true, Ordering::SeqCst);
    }
}

/// Forget the context and the conversation (a chat starts again from its system message).
///
/// # Safety
/// `session` is NULL or a live session.
///
/// Thread safety: any thread, one call per session at a time.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_reset(session: *mut EdgespecSession) -> EdgespecStatus {
    guard(|| {
        // SAFETY: NULL or live by contract.
        let h = unsafe { c_ref(session, "session") }?;
        lock(h)?.session.reset();
        Ok(())
    })
}

/// Start chats with `system` as the system message (NULL: the template's default) and reset the
/// session.
///
/// # Safety
/// `session` is NULL or a live session; `system` is NULL or NUL-terminated.
///
/// Thread safety: any thread, one call per session at a time.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_set_system(
    session: *mut EdgespecSession,
    system: *const c_char,
) -> EdgespecStatus {
    guard(|| {
        // SAFETY: NULL or live by contract.
        let h = unsafe { c_ref(session, "session") }?;
        let system = if system.is_null() {
            None
        } else {
            // SAFETY: NUL-terminated by contract.
            Some(unsafe { c_str(system, "system") }?)
        };
        lock(h)?.session.set_system(system);
        Ok(())
    })
}

/// Copy the statistics of the session's last generation (ended OK or CANCELLED) to `*out`.
/// Returns `NOT_FOUND` before any generation, or when the latest one failed once started (an
/// unsupported strategy, a context overflow); a call refused for its arguments (NULL, invalid
/// UTF-8, bad parameters, a busy session) leaves the previous figures.
///
/// # Safety
/// `session` is NULL or a live session; `out` is NULL or writable.
///
/// Thread safety: any thread, one call per session at a time.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_stats(
    session: *const EdgespecSession,
    out: *mut EdgespecStats,
) -> EdgespecStatus {
    guard(|| {
        let out = c_out(out, "out")?;
        // SAFETY: NULL or live by contract.
        let h = unsafe { c_ref(session, "session") }?;
        let stats = lock(h)?.stats.ok_or_else(|| {
            Error::not_found("no generation has finished on this session yet (or the last one failed)")
        })?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { out.write(stats) };
        Ok(())
    })
}

/// Tokens in the session's context now (prompt and generated), written to `*out`.
///
/// # Safety
/// `session` is NULL or a live session; `out` is NULL or writable.
///
/// Thread safety: any thread, one call per session at a time.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_context_used(
    session: *const EdgespecSession,
    out: *mut u32,
) -> EdgespecStatus {
    guard(|| {
        let out = c_out(out, "out")?;
        // SAFETY: NULL or live by contract.
        let h = unsafe { c_ref(session, "session") }?;
        let used = lock(h)?.session.context_used();
        // SAFETY: checked non-null; writable by contract.
        unsafe { out.write(u32::try_from(used).unwrap_or(u32::MAX)) };
        Ok(())
    })
}
