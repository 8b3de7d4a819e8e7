//! Command-line arguments as parsed (clap), and their validation into library calls.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use edgespec::{Error, Result};

/// edgespec: run GGUF language models on the CPU, faster by lossless speculative decoding.
#[derive(Parser, Debug)]
#[command(name = "edgespec", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Describe a model: architecture, tokenizer, tensors, and the memory a session needs.
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A catalog name (pulled on first use) or a path to a .gguf file.
    #[arg(default_value = "smollm2-135m")]
    pub model: String,
    /// Context length for the memory estimate (default: the model's trained context).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Also print every metadata entry.
    #[arg(long)]
    pub metadata: bool,
}

/// Turn a MODEL argument into a file path.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let p = PathBuf::from(spec);
    if p.is_file() {
        return Ok(p);
    }
    Err(Error::not_found(format!("no model file at {spec:?}")))
}
