//! Command-line arguments as parsed (clap), and their validation into library calls.

use clap::{Args, Parser, Subcommand};

/// edgespec: run GGUF language models on the CPU, faster by lossless speculative decoding.
#[derive(Parser, Debug)]
#[command(name = "edgespec", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Download a catalog model into the cache (verified by sha256) and print its path.
    Pull(PullArgs),
    /// Describe a model: architecture, tokenizer, tensors, and the memory a session needs.
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Catalog name (default: the catalog's default model, smollm2-135m).
    pub name: Option<String>,
    /// List the catalog (name, size, cached or not) instead of pulling.
    #[arg(long)]
    pub list: bool,
    /// Re-hash a cached file even if it was verified before.
    #[arg(long)]
    pub verify: bool,
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
