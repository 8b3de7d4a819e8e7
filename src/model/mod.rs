//! The transformer: hyperparameters from GGUF metadata, the per-architecture differences as
//! data, and one forward pass over a preallocated, truncatable KV cache.
//!
//! Reading order: [`config`](ModelConfig) (shapes) → [`arch`](ArchSpec) (what differs between
//! families) → `weights` (tensor lookup, zero copy) → [`KvCache`] → [`ForwardPlan`] (what a pass
//! is asked to do, a [`TokenTree`] for tree passes) → `attention` → `forward` ([`Model::forward`]) with its buffers in `workspace` ([`Workspace`]).
//! [`synthetic`] writes tiny random models for tests and benchmarks.

mod arch;
mod attention;
mod config;
mod device;
mod forward;
#[cfg(feature = "gpu")]
mod gpu;
mod head;
mod kv_cache;
mod plan;
mod repack;
pub mod synthetic;
mod weights;
mod workspace;

pub use arch::{Activation, ArchSpec, EmbedScale, WindowPattern};
pub use config::ModelConfig;
pub use device::Device;
pub use forward::{Model, LAYOUT_ENV};
pub use kv_cache::{KvCache, KvLayout, KvType};
pub use plan::{ForwardPlan, HeadVocab, LogitRows, SkipSet, SubLayer, TokenTree, MAX_BATCH, MAX_LAYERS};
pub use workspace::Workspace;
