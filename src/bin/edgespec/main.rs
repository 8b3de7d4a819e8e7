//! The `edgespec` command line: parse, call the library, print. No inference logic lives here.

mod args;
mod bench;
mod chat;
mod run;
mod setup;
mod tune;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pull(a) => commands::pull(a),
        Command::Info(a) => commands::info(a),
        Command::Run(a) => run::run(a),
        Command::Chat(a) => chat::chat(a),
        Command::Bench(a) => bench::bench(a),
        Command::Tune(a) => tune::tune(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Ctrl-C: the shell's convention for a process ended by SIGINT (128 + 2).
        Err(e) if e.kind() == edgespec::ErrorKind::Cancelled => {
            eprintln!("edgespec: {}", e.message());
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("edgespec: {e}");
            ExitCode::from(u8::try_from(e.kind().code()).unwrap_or(1))
        }
    }
}

mod commands {
    use super::args::{InfoArgs, PullArgs};
    use edgespec::catalog::{self, Catalog, PullOptions};
    use edgespec::info::ModelInfo;
    use edgespec::memory::MemoryRequest;
    use edgespec::{Error, Result};

    /// Write `text` to standard output; a failed write (a full disk, a closed pipe) is an error,
    /// never lost text with exit code 0.
    pub fn print_out(text: &str) -> Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| Error::io("cannot write to standard output", e))
    }

    pub fn pull(a: PullArgs) -> Result<()> {
        let cat = Catalog::builtin()?;
        if a.list {
            return print_out(&cat.format_listing(&catalog::models_dir()?));
        }
        let name = a.name.unwrap_or_else(|| cat.default_model().name.clone());
        let path = cat.pull(&name, &PullOptions { verify: a.verify, ..Default::default() })?;
        print_out(&format!("{}\n", path.display()))
    }

    pub fn info(a: InfoArgs) -> Result<()> {
        if a.devices {
            return print_out(&edgespec::info::devices_text());
        }
        let path = catalog::resolve_model(&a.model)?;
        // With a budget: what a session gets (cache type free); without: the estimate at the
        // context asked for, else the trained one, with an f16 cache.
        let req = MemoryRequest {
            ctx: a.ctx,
            kv_type: a.mem_budget.is_none().then_some(Default::default()),
            budget: a.mem_budget,
        };
        let info = ModelInfo::gather_for(&path, &req, a.mem_budget.is_some())?;
        let mut text = info.to_string();
        if a.metadata {
            let file = edgespec::gguf::GgufFile::open(&path)?;
            text.push_str("metadata:\n");
            for (k, v) in file.metadata() {
                text.push_str(&format!("  {k} = {v}\n"));
            }
        }
        print_out(&text)
    }
}
