//! `edgespec run`: one prompt in, its continuation out (stdout carries only generated text).

use std::io::{IsTerminal, Write};

use edgespec::catalog;
use edgespec::session::{Flow, GenerateParams, GenerationStats, Session};
use edgespec::{Error, Result};

use super::args::RunArgs;

pub fn run(a: RunArgs) -> Result<()> {
    let opts = a.model.session_options()?;
    let sampling = a.sampling.params()?;
    let prompt = match (&a.prompt, &a.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).map_err(|e| Error::io(format!("cannot read {}", f.display()), e))?
        }
        (None, None) => return Err(Error::invalid("give a prompt with -p TEXT or -f FILE")),
    };
    let path = catalog::resolve_model(&a.model.model)?;
    let mut session = Session::load(&path, &opts)?;
    let params = GenerateParams { max_tokens: a.n_predict, sampling, strategy: a.model.strategy.library()? };

    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = stdout.lock();
    let mut broken = false;
    let mut on_token = |piece: &str| {
        if out.write_all(piece.as_bytes()).and_then(|_| out.flush()).is_err() {
            broken = true; // e.g. `| head`: stop quietly
            return Flow::Stop;
        }
        Flow::Continue
    };
    let stats = if a.chat {
        session.chat(&prompt, &params, &mut on_token)?.1
    } else {
        session.generate(&prompt, &params, &mut on_token)?
    };
    if tty && !broken {
        let _ = writeln!(out);
    }
    drop(out);
    report(&stats, &session, &path, sampling.seed, a.stats, a.stats_json.as_deref())
}

/// Print `stats` to stderr (`--stats`) and/or as JSON to a file (`--stats-json`).
pub fn report(
    stats: &GenerationStats,
    session: &Session,
    model: &std::path::Path,
    seed: u64,
    human: bool,
    json: Option<&std::path::Path>,
) -> Result<()> {
    if human {
        eprintln!("{stats}");
        eprintln!("threads {}, seed {seed}, model {}", session.threads(), model.display());
    }
    if let Some(path) = json {
        let mut v =
            serde_json::to_value(stats).map_err(|e| Error::internal(format!("stats to JSON: {e}")))?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("model".into(), model.display().to_string().into());
            obj.insert("seed".into(), seed.into());
            obj.insert("threads".into(), session.threads().into());
            obj.insert("kv_cache_bytes".into(), session.cache().bytes().into());
        }
        let text =
            serde_json::to_string_pretty(&v).map_err(|e| Error::internal(format!("stats to JSON: {e}")))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    }
    Ok(())
}
