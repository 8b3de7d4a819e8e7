//! The `edgespec` command line: parse, call the library, print. No inference logic lives here.

mod args;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(a) => commands::info(a),
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
    use super::args::InfoArgs;
    use edgespec::info::ModelInfo;
    use edgespec::Result;

    pub fn info(a: InfoArgs) -> Result<()> {
        let path = super::args::resolve_model(&a.model)?;
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
