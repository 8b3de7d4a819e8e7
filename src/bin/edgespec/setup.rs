//! Opening a session for `run`, `chat` and `bench`: the memory budget's choice of context and
//! cache type (the library's [`edgespec::memory::choose`], the C API's mechanism too), the
//! warnings a user should see before a long run, and the Ctrl-C flag that stops prefill and
//! decoding.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use edgespec::catalog::format_bytes;
use edgespec::memory::{self, MemoryRequest};
use edgespec::model::{KvType, Model};
use edgespec::session::{Session, SessionOptions};
use edgespec::Result;

/// Load the model at `path` and open a session with `opts` (threads already checked), where
/// `kv_type` is the cache type asked for (`None`: f16, or what fits `budget`) and `budget` the
/// most bytes the session may need. Says on stderr what a budget chose, and warns about a
/// context longer than the model was trained for. With `ctrl_c`, SIGINT stops the session's
/// prefill and decoding (see [`interrupt_flag`]) instead of killing the process.
pub fn open_session(
    path: &Path,
    mut opts: SessionOptions,
    kv_type: Option<KvType>,
    budget: Option<u64>,
    ctrl_c: bool,
) -> Result<Session> {
    let model = Model::load(path)?;
    let config = model.config();
    let req =
        MemoryRequest { ctx: opts.ctx, kv_type: kv_type.or(budget.is_none().then_some(KvType::F16)), budget };
    let choice = memory::choose(config, Some(model.arch()), model.file().len(), &req)?;
    if let Some(b) = budget {
        eprintln!(
            "edgespec: memory budget {}: context {} tokens, KV cache {}; needs {}",
            format_bytes(b),
            choice.ctx,
            choice.kv_type.name(),
            choice.need
        );
    }
    let trained = config.context_length;
    opts.ctx = Some(choice.ctx);
    opts.kv_type = choice.kv_type;
    let mut session = Session::new(model, &opts)?;
    if let Some(note) = session.device_note() {
        eprintln!("edgespec: --device auto: {note}");
    }
    if trained > 0 && choice.ctx > trained {
        eprintln!(
            "edgespec: warning: a context of {} tokens is longer than the {trained} this model was trained for; \
             text past {trained} tokens may degrade",
            choice.ctx
        );
    }
    if ctrl_c {
        session.set_cancel_flag(Some(interrupt_flag()));
    }
    Ok(session)
}

/// Print the session's notes (things said once, e.g. a damaged tuning file ignored) to stderr.
pub fn print_notes(session: &mut Session) {
    for note in session.take_notes() {
        eprintln!("edgespec: {note}");
    }
}

/// Raised by SIGINT (Ctrl-C); sessions opened here stop on it.
static INTERRUPT: OnceLock<Arc<AtomicBool>> = OnceLock::new();

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    // Only an atomic load and store on a flag set up before the handler: async-signal-safe.
    if let Some(flag) = INTERRUPT.get() {
        flag.store(true, Ordering::SeqCst);
    }
}

/// The Ctrl-C flag, with SIGINT routed to it instead of killing the process (installed on the
/// first call).
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let mut first = false;
    let flag = INTERRUPT.get_or_init(|| {
        first = true;
        Arc::new(AtomicBool::new(false))
    });
    #[cfg(unix)]
    if first {
        let handler = on_sigint as extern "C" fn(libc::c_int);
        // SAFETY: `on_sigint` only touches an atomic that is initialised before the handler is
        // installed; it is a plain `extern "C"` function that lives for the whole program.
        unsafe {
            libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        }
    }
    flag.clone()
}

/// Whether Ctrl-C was pressed since the last [`clear_interrupt`].
pub fn interrupted() -> bool {
    INTERRUPT.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// Forget an earlier Ctrl-C (before the next reply).
pub fn clear_interrupt() {
    if let Some(f) = INTERRUPT.get() {
        f.store(false, Ordering::SeqCst);
    }
}
