//! The eagle-drafter artifact: a small binary file beside the model (`<model>.eagle`), derived
//! from the model by `edgespec tune`, naming the model it was trained for and checked whole on
//! load (the heads' artifact helpers: magic, version, identity, atomic write).
//!
//! Layout, little-endian: magic `EDGEEAGL`, version `u32`, the model identity (32 bytes), `dim`,
//! `rank`, `V`, flags (0) (`u32` each), seed `u64`, held-out acceptance (2 `f32`), then `W_fc`
//! `(dim, 2·dim)`, `W_1` `(rank, dim)`, `W_2` `(dim, rank)` as `f32`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::Model;

use super::super::heads::file::{artifact_identity, artifact_prefix, read_artifact, write_artifact};
use super::EagleNet;

const MAGIC: &[u8; 8] = b"EDGEEAGL";
const VERSION: u32 = 1;
/// Bytes before the acceptance figures.
const HEADER: usize = 8 + 4 + 32 + 4 * 4 + 8;
/// Largest dimension a file may declare (guards the size arithmetic).
const MAX_DIM: usize = 1 << 16;

/// Where the eagle drafter of the model at `model_path` lives: `<model file>.eagle`.
pub fn eagle_path(model_path: &Path) -> PathBuf {
    let mut p = model_path.as_os_str().to_owned();
    p.push(".eagle");
    PathBuf::from(p)
}

impl EagleNet {
    /// The artifact's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 4 * (2 + self.params()));
        artifact_prefix(&mut out, MAGIC, VERSION, &self.identity);
        for v in [self.dim, self.rank, self.vocab, 0] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        out.extend_from_slice(&self.seed.to_le_bytes());
        for v in self.alpha.iter().chain(&self.wfc).chain(&self.w1).chain(&self.w2) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Parse an artifact (shape and size checked; the model by [`EagleNet::check_for`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<EagleNet> {
        let identity = artifact_identity(bytes, HEADER, MAGIC, VERSION, "eagle-drafter")?;
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let [dim, rank, vocab, flags] = [44, 48, 52, 56].map(|at| u32_at(at) as usize);
        if flags != 0 {
            return Err(Error::format(format!("eagle-drafter file with unknown flags {flags:#x}")));
        }
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&bytes[60..68]);
        let seed = u64::from_le_bytes(seed);
        if [dim, rank].iter().any(|&d| d == 0 || d > MAX_DIM) || vocab == 0 || vocab > 1 << 24 {
            return Err(Error::format(format!(
                "eagle-drafter file with impossible shape: dim {dim}, rank {rank}, V {vocab}"
            )));
        }
        let floats = 2 + 2 * dim * dim + 2 * rank * dim;
        let want = HEADER + 4 * floats;
        if bytes.len() != want {
            return Err(Error::format(format!(
                "eagle-drafter file of {} bytes; its header says {want} (truncated or damaged)",
                bytes.len()
            )));
        }
        let mut vals = bytes[HEADER..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let mut take = |n: usize| -> Vec<f32> { vals.by_ref().take(n).collect() };
        let a = take(2);
        let wfc = take(2 * dim * dim);
        let w1 = take(rank * dim);
        let w2 = take(dim * rank);
        if wfc.iter().chain(&w1).chain(&w2).any(|v| !v.is_finite()) {
            return Err(Error::format("eagle-drafter file holds non-finite weights"));
        }
        Ok(EagleNet { identity, dim, rank, vocab, seed, alpha: [a[0], a[1]], wfc, w1, w2 })
    }

    /// Write the artifact to `path` (through a temporary file and a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_artifact(path, &self.to_bytes(), "eagle drafter")
    }

    /// Read the artifact at `path` and check it against `model`.
    pub fn load(path: &Path, model: &Model) -> Result<EagleNet> {
        let bytes = read_artifact(path, "eagle drafter")?;
        let net = EagleNet::from_bytes(&bytes).map_err(|e| e.context(path.display()))?;
        net.check_for(model).map_err(|e| e.context(path.display()))?;
        Ok(net)
    }

    /// The drafter saved beside the model's file (the model must have been opened from a path).
    pub fn load_for(model: &Model) -> Result<EagleNet> {
        let path = model.file().path().ok_or_else(|| {
            Error::not_found("the model was not loaded from a file, so it has no eagle drafter beside it")
        })?;
        EagleNet::load(&eagle_path(path), model)
    }
}
