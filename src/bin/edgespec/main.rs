//! The `edgespec` command line: parse, call the library, print. No inference logic lives here.

mod args;
mod bench;
mod chat;
mod run;
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
    use edgespec::Result;

    pub fn pull(a: PullArgs) -> Result<()> {
        let cat = Catalog::builtin()?;
        if a.list {
            print!("{}", cat.format_listing(&catalog::models_dir()?));
            return Ok(());
        }
        let name = a.name.unwrap_or_else(|| cat.default_model().name.clone());
        let path = cat.pull(&name, &PullOptions { verify: a.verify, ..Default::default() })?;
        println!("{}", path.display());
        Ok(())
    }

    pub fn info(a: InfoArgs) -> Result<()> {
        let path = catalog::resolve_model(&a.model)?;
        let info = ModelInfo::gather(&path, a.ctx)?;
        print!("{info}");
        if a.metadata {
            let file = edgespec::gguf::GgufFile::open(&path)?;
            println!("metadata:");
            for (k, v) in file.metadata() {
                println!("  {k} = {v}");
            }
        }
        Ok(())
    }
}
