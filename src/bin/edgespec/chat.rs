//! `edgespec chat`: a read-eval-print loop over a session that keeps the whole conversation in
//! its KV cache. Line editing and history come from rustyline; Ctrl-C during a reply stops the
//! reply, and during the processing of a long message stops that (the session stops on the
//! flag a SIGINT handler raises, see [`super::setup`]); Ctrl-C at the prompt clears the line,
//! Ctrl-D or /quit leaves. A turn that fails is reported and the conversation goes on.

use std::io::Write;

use edgespec::catalog;
use edgespec::session::{Flow, GenerateParams, GenerationStats, StopReason};
use edgespec::{Error, ErrorKind, Result};
use rustyline::error::ReadlineError;

use super::args::ChatArgs;
use super::setup;

const HELP: &str = "commands: /reset (forget the conversation), /stats (figures of the last reply), \
                    /help, /quit (or Ctrl-D); Ctrl-C stops a reply, or the reading of a long message";

pub fn chat(a: ChatArgs) -> Result<()> {
    let opts = a.model.session_options()?;
    let sampling = a.sampling.params()?;
    let path = catalog::resolve_model(&a.model.model)?;
    let mut session = setup::open_session(&path, opts, a.model.kv_type, a.model.mem_budget, true)?;
    if session.chat_template().is_none() {
        return Err(edgespec::Error::unsupported(format!(
            "{} has no chat template (a base model?); use `edgespec run -p TEXT` to continue text instead",
            path.display()
        )));
    }
    session.set_system(a.system.as_deref());
    let params = GenerateParams { max_tokens: a.n_predict, sampling, strategy: a.model.strategy.library()? };
    // The strategy's prerequisites (e.g. trained heads) are checked now, not at the first message.
    session.prepare_strategy(params.strategy)?;
    setup::print_notes(&mut session);
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| edgespec::Error::internal(format!("cannot start the line editor: {e}")))?;
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
                last = None;
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
        setup::clear_interrupt();
        let mut stdout = std::io::stdout();
        let mut write_error: Option<std::io::Error> = None;
        let mut on_token = |piece: &str| match stdout.write_all(piece.as_bytes()).and_then(|_| stdout.flush())
        {
            Ok(()) => Flow::Continue,
            Err(e) => {
                write_error = Some(e);
                Flow::Stop
            }
        };
        let result = session.chat(text, &params, &mut on_token);
        let newline = if result.is_ok() { writeln!(stdout).err() } else { None };
        if let Some(e) = write_error.or(newline) {
            return Err(Error::io("cannot write the reply to standard output", e));
        }
        setup::print_notes(&mut session);
        match result {
            Ok((_, stats)) => {
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
            Err(e) if e.kind() == ErrorKind::Cancelled => {
                eprintln!("[stopped while reading your message; the conversation is as before it]");
            }
            // Any other failed turn leaves the conversation as it was: say so and go on.
            Err(e) => eprintln!("[this turn failed: {e}; the conversation is as before it]"),
        }
    }
    Ok(())
}
