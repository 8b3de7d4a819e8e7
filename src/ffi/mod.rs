//! The C ABI: what mobile apps and other languages link (`libedgespec.a` / `libedgespec.so`,
//! header `platforms/include/edgespec.h`, generated from this module by cbindgen).
//!
//! It is a thin front over [`crate::session::Session`], like the CLI: it converts C values to
//! library values and back, and holds no inference logic. What it adds is the boundary
//! discipline a C caller needs:
//!
//! - every exported function catches panics (`guard`), so no unwind crosses into C; a panic
//!   becomes `EDGESPEC_STATUS_INTERNAL`;
//! - every pointer is checked for NULL and every string for UTF-8 before use;
//! - every fallible function returns an [`EdgespecStatus`] (the stable codes of
//!   [`crate::ErrorKind`]) and leaves a message in a thread-local slot
//!   ([`edgespec_last_error`]);
//! - handles are opaque boxes, created by `*_load`/`*_create` and released by `*_free`.
//!
//! Thread safety is documented on each function. In short: a model handle is immutable and may
//! be used from any number of threads at once; a session is used by one call at a time (a second
//! concurrent call is refused, not raced), except [`edgespec_cancel`], which any thread may call
//! at any time.

mod model;
mod params;
mod session;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use crate::decode::Strategy;
use crate::error::{Error, ErrorKind, Result};

pub use model::*;
pub use params::*;
pub use session::*;

/// The version of this C interface. It grows when functions or enum values are added (existing
/// ones never change meaning); structs are never extended in place.
pub const EDGESPEC_ABI_VERSION: u32 = 1;

/// What a call returned: `EDGESPEC_STATUS_OK` (0) or the kind of error. The values are the
/// library's `ErrorKind` codes and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum EdgespecStatus {
    /// Success.
    Ok = 0,
    /// A NULL pointer, invalid UTF-8, an out-of-range value or a busy session.
    InvalidArgument = 1,
    /// A file could not be read.
    Io = 2,
    /// Malformed input, such as a truncated or inconsistent GGUF file.
    Format = 3,
    /// Well-formed input this build does not support (an architecture, a quant type, a strategy
    /// that is not implemented yet, a platform feature such as mlock).
    Unsupported = 4,
    /// A named thing does not exist (a strategy name; statistics before any generation).
    NotFound = 5,
    /// A download failed (not returned by the C ABI today).
    Network = 6,
    /// Bytes do not have the expected sha256 (not returned by the C ABI today).
    Checksum = 7,
    /// The prompt does not fit the context window.
    ContextOverflow = 8,
    /// The memory budget cannot be met, or memory could not be locked.
    OutOfMemory = 9,
    /// The generation was stopped by `edgespec_cancel`.
    Cancelled = 10,
    /// A bug in edgespec (a panic was caught); the session involved is unusable.
    Internal = 99,
}

impl From<ErrorKind> for EdgespecStatus {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidArgument => EdgespecStatus::InvalidArgument,
            ErrorKind::Io => EdgespecStatus::Io,
            ErrorKind::Format => EdgespecStatus::Format,
            ErrorKind::Unsupported => EdgespecStatus::Unsupported,
            ErrorKind::NotFound => EdgespecStatus::NotFound,
            ErrorKind::Network => EdgespecStatus::Network,
            ErrorKind::Checksum => EdgespecStatus::Checksum,
            ErrorKind::ContextOverflow => EdgespecStatus::ContextOverflow,
            ErrorKind::OutOfMemory => EdgespecStatus::OutOfMemory,
            ErrorKind::Cancelled => EdgespecStatus::Cancelled,
            ErrorKind::Internal => EdgespecStatus::Internal,
        }
    }
}

/// Decoding strategies, by id. An id is the strategy's position in the library's list
/// (`Strategy::ALL`); new strategies are appended, so ids never change. Prefer
/// `edgespec_strategy_count`/`edgespec_strategy_name`/`edgespec_strategy_is_implemented` to
/// enumerate them at run time: a newer library may know strategies this header does not name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum EdgespecStrategy {
    /// One token per forward pass.
    Plain = 0,
    /// Prompt-lookup drafting.
    Lookup = 1,
    /// Self-speculative drafting (layers skipped).
    SelfSpec = 2,
    /// Early-exit drafting.
    EarlyExit = 3,
    /// Lookahead (Jacobi) decoding.
    Lookahead = 4,
    /// Chosen per step from live acceptance and cost.
    Auto = 5,
    /// Self-distilled draft heads (trained by `edgespec tune`).
    Heads = 6,
    /// Feature-level drafting (EAGLE-style; the drafter is trained by `edgespec tune`).
    Eagle = 7,
}

/// Holds `EdgespecStrategy` to the library's strategy list when compiling (cbindgen reads the
/// enum above as written, so it cannot be generated): the match is exhaustive only when the two
/// name the same strategies, and each C value must be the strategy's position in the list.
macro_rules! check_c_strategies {
    ($( $(#[doc = $doc:literal])+ $variant:ident $name:literal => $build:path; )+) => {
        const _: () = {
            const fn library(c: EdgespecStrategy) -> Strategy {
                match c {
                    $( EdgespecStrategy::$variant => Strategy::$variant, )+
                }
            }
            $( assert!(
                library(EdgespecStrategy::$variant).index() == EdgespecStrategy::$variant as usize,
                "an EdgespecStrategy value is not the strategy's position in decode's strategy list"
            ); )+
        };
    };
}
crate::decode::strategy_list!(check_c_strategies);

/// Why a generation ended (`EdgespecStats::stop_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum EdgespecStopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration = 0,
    /// `max_tokens` were generated.
    MaxTokens = 1,
    /// The context is full.
    ContextFull = 2,
    /// The callback returned false, or `edgespec_cancel` was called.
    Cancelled = 3,
}

thread_local! {
    /// The message of the last failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Remember `msg` as this thread's last error (NUL bytes, which C strings cannot hold, become
/// spaces).
fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // `try_with`: during thread teardown the slot may be gone; the message is then dropped.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut m) = slot.try_borrow_mut() {
            *m = c;
        }
    });
}

/// The panic boundary every exported function runs its body in: an error becomes its status code
/// and this thread's last error; a panic becomes `Internal` (and never unwinds into C).
fn guard(f: impl FnOnce() -> Result<()>) -> EdgespecStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => EdgespecStatus::Ok,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            EdgespecStatus::from(e.kind())
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            set_last_error(&format!("internal error: edgespec panicked: {what}"));
            EdgespecStatus::Internal
        }
    }
}

/// Like [`guard`] for functions that return a value instead of a status: `fallback` on error or
/// panic.
fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// A NUL-terminated UTF-8 string from C, borrowed for the call.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and unchanged during the call.
unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|e| {
        Error::invalid(format!("{what} is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()))
    })
}

/// A shared reference from a C pointer.
///
/// # Safety
/// `p` is NULL or points to a live, properly aligned `T` that nothing mutates during the call
/// (except through interior mutability that `T` itself synchronizes).
unsafe fn c_ref<'a, T>(p: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: by the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| Error::invalid(format!("{what} is NULL")))
}

/// Check an output pointer for NULL before anything is computed for it.
fn c_out<T>(p: *mut T, what: &str) -> Result<*mut T> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} (output pointer) is NULL")));
    }
    Ok(p)
}

/// A static NUL-terminated copy of each strategy name, indexed by id.
fn strategy_names() -> &'static [CString] {
    static NAMES: OnceLock<Vec<CString>> = OnceLock::new();
    NAMES.get_or_init(|| Strategy::ALL.iter().map(|s| CString::new(s.name()).unwrap_or_default()).collect())
}

/// The strategy with C id `id`.
fn strategy_from_id(id: i32) -> Result<Strategy> {
    usize::try_from(id).ok().and_then(|i| Strategy::ALL.get(i).copied()).ok_or_else(|| {
        Error::invalid(format!(
            "unknown strategy id {id}; ids are 0..{} (see edgespec_strategy_count)",
            Strategy::ALL.len()
        ))
    })
}

/// The C id of `strategy`.
fn strategy_id(strategy: Strategy) -> i32 {
    Strategy::ALL.iter().position(|&s| s == strategy).map_or(-1, |i| i as i32)
}

/// The library version, e.g. `"0.1.0"`: a static string, never NULL.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn edgespec_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The version of the C interface this library implements (`EDGESPEC_HEADER_ABI_VERSION` of the header
/// it was built with). A program can compare it with the header it was compiled against.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn edgespec_abi_version() -> u32 {
    EDGESPEC_ABI_VERSION
}

/// One line about this build: version, target, the CPU kernels chosen for this machine, and the
/// implemented strategies. A static string, never NULL.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn edgespec_build_info() -> *const c_char {
    static INFO: OnceLock<CString> = OnceLock::new();
    guard_value(c"edgespec".as_ptr(), || {
        INFO.get_or_init(|| {
            let strategies: Vec<&str> = Strategy::implemented().map(Strategy::name).collect();
            let line = format!(
                "edgespec {} ({}-{}); kernels {}; strategies {}",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH,
                std::env::consts::OS,
                crate::kernels::Kernels::get().name(),
                strategies.join(",")
            );
            CString::new(line).unwrap_or_default()
        })
        .as_ptr()
    })
}

/// The message of the last call on this thread that returned an error (empty if none has). The
/// pointer stays valid until the next failing call on this thread; copy it to keep it.
///
/// Thread safety: any thread; each thread has its own message.
#[no_mangle]
pub extern "C" fn edgespec_last_error() -> *const c_char {
    guard_value(c"".as_ptr(), || LAST_ERROR.try_with(|slot| slot.borrow().as_ptr()).unwrap_or(c"".as_ptr()))
}

/// A short name for a status code (`"ok"`, `"invalid argument"`, ...); `"unknown status"` for a
/// value that is not one. A static string, never NULL.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn edgespec_status_name(status: i32) -> *const c_char {
    let name: &CStr = match status {
        0 => c"ok",
        1 => c"invalid argument",
        2 => c"i/o error",
        3 => c"malformed input",
        4 => c"unsupported",
        5 => c"not found",
        6 => c"network error",
        7 => c"checksum mismatch",
        8 => c"context overflow",
        9 => c"out of memory",
        10 => c"cancelled",
        99 => c"internal error",
        _ => c"unknown status",
    };
    name.as_ptr()
}

/// How many strategies this library knows (ids are `0 .. count`), implemented or not.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn edgespec_strategy_count() -> i32 {
    Strategy::ALL.len() as i32
}

/// The name of strategy `id` (`"plain"`, `"lookup"`, ...: the CLI's `--strategy` names), or NULL
/// for an unknown id. A static string.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn edgespec_strategy_name(id: i32) -> *const c_char {
    guard_value(std::ptr::null(), || {
        usize::try_from(id)
            .ok()
            .and_then(|i| strategy_names().get(i))
            .map_or(std::ptr::null(), |c| c.as_ptr())
    })
}

/// Whether this build can decode with strategy `id` (false for an unknown id). Generating with a
/// strategy that is not implemented returns `EDGESPEC_STATUS_UNSUPPORTED`.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub extern "C" fn edgespec_strategy_is_implemented(id: i32) -> bool {
    guard_value(false, || strategy_from_id(id).is_ok_and(Strategy::is_implemented))
}

/// Look a strategy up by name (`"lookup"`) and write its id to `*out_id`. Returns
/// `EDGESPEC_STATUS_INVALID_ARGUMENT` for NULL pointers, invalid UTF-8 or an unknown name.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out_id` is NULL or points to writable memory.
///
/// Thread safety: any thread, any time.
#[no_mangle]
pub unsafe extern "C" fn edgespec_strategy_from_name(
    name: *const c_char,
    out_id: *mut i32,
) -> EdgespecStatus {
    guard(|| {
        let out = c_out(out_id, "out_id")?;
        // SAFETY: by this function's contract.
        let name = unsafe { c_str(name, "name") }?;
        let id = strategy_id(name.parse::<Strategy>()?);
        // SAFETY: checked non-null; writable by contract.
        unsafe { out.write(id) };
        Ok(())
    })
}

#[cfg(test)]
mod tests;
