//! `edgespec chat`: a read-eval-print loop over a session that keeps the whole conversation in
//! its KV cache. Line editing and history come from rustyline; Ctrl-C during a reply stops the
//! reply (a SIGINT handler raises a flag the token callback reads), Ctrl-C at the prompt clears
//! the line, Ctrl-D or /quit leaves.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use edgespec::catalog;
use edgespec::session::{Flow, GenerateParams, GenerationStats, Session, StopReason};
use edgespec::{ErrorKind, Result};
use rustyline::error::ReadlineError;

use super::args::ChatArgs;

/// Raised by SIGINT while a reply is being generated.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Route Ctrl-C to [`INTERRUPTED`] instead of killing the process.
fn install_sigint_handler() {
    #[cfg(unix)]
    {
        let handler = on_sigint as extern "C" fn(libc::c_int);
        // SAFETY: `on_sigint` only performs an atomic store, which is async-signal-safe; the
        // handler is a plain `extern "C"` function that lives for the whole program.
        unsafe {
            libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        }
    }
}

const HELP: &str = "commands: /reset (forget the conversation), /stats (figures of the last reply), \
                    /help, /quit (or Ctrl-D); Ctrl-C stops a reply";

pub fn chat(a: ChatArgs) -> Result<()> {
    let opts = a.model.session_options()?;
    let sampling = a.sampling.params()?;
    let path = catalog::resolve_model(&a.model.model)?;
    let mut session = Session::load(&path, &opts)?;
    if session.chat_template().is_none() {
        return Err(edgespec::Error::unsupported(format!(
            "{} has no chat template (a base model?); use `edgespec run -p TEXT` to continue text instead",
            path.display()
        )));
    }
    session.set_system(a.system.as_deref());
    let params = GenerateParams { max_tokens: a.n_predict, sampling, strategy: a.model.strategy.library()? };
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| edgespec::Error::internal(format!("cannot start the line editor: {e}")))?;
    install_sigint_handler();
    eprintln!(
        "edgespec chat — {} ({} threads, context {} tokens). {HELP}",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        session.threads(),
        session.context_size()
    );
    let mut last: Option<GenerationStats> = None;
    loop {
        let line = match editor.readline("> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(edgespec::Error::internal(format!("reading input: {e}"))),
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(text);
        match text {
            "/quit" | "/exit" => break,
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            "/reset" => {
                session.reset();
                eprintln!("[conversation cleared]");
                continue;
            }
            "/stats" => {
                match &last {
                    Some(s) => eprintln!("{s}"),
                    None => eprintln!("[no reply yet]"),
                }
                eprintln!("context: {} of {} tokens used", session.context_used(), session.context_size());
                continue;
            }
            t if t.starts_with('/') => {
                eprintln!("[unknown command {t}] {HELP}");
                continue;
            }
            _ => {}
        }
        INTERRUPTED.store(false, Ordering::SeqCst);
        let mut stdout = std::io::stdout();
        let mut on_token = |piece: &str| {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
            if INTERRUPTED.load(Ordering::SeqCst) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        };
        match session.chat(text, &params, &mut on_token) {
            Ok((_, stats)) => {
                println!();
                if session.dropped_messages() > 0 {
                    eprintln!(
                        "[context full: the {} oldest messages were dropped to make room]",
                        session.dropped_messages()
                    );
                }
                match stats.stop {
                    StopReason::Cancelled => eprintln!("[stopped]"),
                    StopReason::ContextFull => eprintln!(
                        "[reply cut: context full ({} of {} tokens); the next turn drops the oldest messages, /reset \
                         starts over]",
                        session.context_used(),
                        session.context_size()
                    ),
                    StopReason::MaxTokens => eprintln!("[reply cut at {} tokens]", params.max_tokens),
                    StopReason::EndOfGeneration => {}
                }
                last = Some(stats);
            }
            Err(e) if e.kind() == ErrorKind::ContextOverflow => {
                eprintln!("[{}]", e.message());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
