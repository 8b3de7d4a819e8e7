//! An independent reference implementation to hold edgespec's numbers against: llama.cpp.
//!
//! Parity tests need a second opinion that shares no code with ours: the same GGUF file tokenized,
//! run and greedily decoded by llama.cpp. This module wraps llama.cpp (built from source by the
//! `llama-cpp-2` crate) behind the `llama-cpp` cargo feature, so the default build stays pure Rust
//! and only the parity tests and tools that ask for it pay for the C++ build (10-30 minutes on 2 cores).
//!
//! The API is deliberately small and speaks edgespec's types: token ids are `u32`, logits are
//! `Vec<f32>` rows of `vocab_size()`, and every failure is a [`crate::Error`]; nothing here panics
//! on bad input (out-of-range token ids, empty or oversized inputs, missing files are all checked
//! before llama.cpp sees them, because llama.cpp aborts on some of them).
//!
//! llama.cpp is built without OpenMP or a GPU backend, for a fixed x86-64 level (AVX2, FMA, F16C:
//! ggml's default when `GGML_NATIVE` is off), not for the build machine. Its logits are a reference
//! within llama.cpp's own tolerances, not bit-for-bit numbers to match: llama.cpp is not batch
//! invariant (on Gemma 3 a position's logits move by up to ~1 with the batch size), see
//! `docs/decisions.md`.
//!
//! llama.cpp's log output is discarded unless `EDGESPEC_LLAMA_LOG=1` is set in the environment;
//! set it to see why llama.cpp refused a model.

mod llama_cpp;

pub use llama_cpp::LlamaCppModel;
