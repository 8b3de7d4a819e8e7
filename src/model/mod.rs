//! The transformer: hyperparameters read from GGUF metadata, and (to come) the forward pass,
//! written once for every architecture, with per-architecture differences expressed as data.

mod config;

pub use config::ModelConfig;
