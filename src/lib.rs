//! edgespec: an on-device LLM runtime.
//!
//! A GGUF model is memory-mapped and never copied; quantized CPU kernels run its forward pass; and
//! decoding is made faster than one-token-at-a-time without changing the output (prompt lookup,
//! self-speculative drafting, early exit, lookahead), every draft verified by the full model in one
//! batched pass. The modules read in data-flow order: file format → quantized blocks → kernels →
//! model → decoding → session → fronts (CLI, C ABI).

pub mod bench;
pub mod catalog;
pub mod chat;
pub mod decode;
pub mod error;
pub mod ffi;
pub mod gguf;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod info;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod platform;
pub mod power;
pub mod quant;
#[cfg(feature = "llama-cpp")]
pub mod reference;
pub mod sampling;
pub mod session;
pub mod tokenizer;
pub mod tune;

pub use error::{Error, ErrorKind, Result};
