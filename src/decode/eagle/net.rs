//! The EAGLE-style drafter network: one step maps the model's final hidden state `h_t` and the
//! next token's embedding `e(x_{t+1})` to a prediction of the next final hidden state
//! `ĥ_{t+1}`, which the model's own output matrix turns into a draft token. Kept apart from the
//! drafter so that training, the artifact and decoding share one definition of the step.
//!
//! `u = W_fc · [h; e]` (`W_fc`: `dim × 2·dim`), `ĥ = u + W_2 · SiLU(W_1 · u)` (`W_1`:
//! `rank × dim`, `W_2`: `dim × rank`): the FC of EAGLE-1 followed by a light residual SiLU block
//! in place of its decoder layer (no attention, so no drafter KV cache).

use crate::error::{Error, Result};
use crate::model::Model;

use super::super::heads::matmul::dot;
use super::super::heads::{model_identity, silu};

/// A trained drafter network for one model.
#[derive(Clone, Debug, PartialEq)]
pub struct EagleNet {
    /// The model it was trained for ([`model_identity`]).
    pub identity: [u8; 32],
    /// Hidden width of the model.
    pub dim: usize,
    /// Width of the SiLU block.
    pub rank: usize,
    /// Size of the reduced vocabulary (token ids `0 .. vocab`) drafted from.
    pub vocab: usize,
    /// Seed the training started from.
    pub seed: u64,
    /// Held-out acceptance measured by training: first drafted token (top-1 agreement with the
    /// model's greedy token) and second (both the first and the second agree, drafting the
    /// second from the predicted feature).
    pub alpha: [f32; 2],
    /// `W_fc`, `(dim, 2·dim)`.
    pub wfc: Vec<f32>,
    /// `W_1`, `(rank, dim)`.
    pub w1: Vec<f32>,
    /// `W_2`, `(dim, rank)`.
    pub w2: Vec<f32>,
}

/// Scratch of one step (`rank` values).
#[derive(Clone, Debug, Default)]
pub struct StepScratch {
    z: Vec<f32>,
}

impl EagleNet {
    /// A network that starts as the identity on `h` (`W_fc = [I 0]`, `W_2 = 0`) with `W_1`
    /// drawn from a seeded uniform distribution of scale `1/√dim`.
    pub fn init(identity: [u8; 32], dim: usize, rank: usize, vocab: usize, seed: u64) -> EagleNet {
        let mut rng = crate::sampling::Rng::new(seed ^ 0xea61e);
        let mut wfc = vec![0f32; dim * 2 * dim];
        for i in 0..dim {
            wfc[i * 2 * dim + i] = 1.0;
        }
        let scale = 1.0 / (dim as f32).sqrt();
        let w1 = (0..rank * dim).map(|_| (2.0 * rng.next_f64() as f32 - 1.0) * scale).collect();
        EagleNet { identity, dim, rank, vocab, seed, alpha: [0.0; 2], wfc, w1, w2: vec![0.0; dim * rank] }
    }

    /// Check the shapes against `model` and the identity against the model's.
    pub fn check_for(&self, model: &Model) -> Result<()> {
        let c = model.config();
        if self.dim != c.dim {
            return Err(Error::invalid(format!(
                "an eagle drafter of width {} does not fit a model of width {}",
                self.dim, c.dim
            )));
        }
        if self.vocab == 0 || self.vocab > c.vocab_size {
            return Err(Error::invalid(format!(
                "an eagle drafter over {} tokens does not fit a vocabulary of {}",
                self.vocab, c.vocab_size
            )));
        }
        if self.identity != model_identity(model) {
            return Err(Error::invalid(
                "the eagle drafter was trained for another model; run `edgespec tune` for this one",
            ));
        }
        Ok(())
    }

    /// Scratch for [`EagleNet::step`].
    pub fn scratch(&self) -> StepScratch {
        StepScratch { z: vec![0.0; self.rank] }
    }

    /// One step: `ĥ` into `out` (`dim`) from the feature `h` and the embedding `e` (`dim` each).
    pub fn step(&self, h: &[f32], e: &[f32], s: &mut StepScratch, out: &mut [f32]) {
        let d = self.dim;
        for (o, row) in out.iter_mut().zip(self.wfc.chunks_exact(2 * d)) {
            *o = dot(&row[..d], h) + dot(&row[d..], e);
        }
        s.z.resize(self.rank, 0.0);
        for (z, row) in s.z.iter_mut().zip(self.w1.chunks_exact(d)) {
            *z = silu(dot(row, out));
        }
        for (o, row) in out.iter_mut().zip(self.w2.chunks_exact(self.rank)) {
            *o += dot(row, &s.z);
        }
    }

    /// Number of weights.
    pub fn params(&self) -> usize {
        self.wfc.len() + self.w1.len() + self.w2.len()
    }
}
