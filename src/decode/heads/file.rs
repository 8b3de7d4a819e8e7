//! The draft-heads artifact: a small binary file beside the model (`<model>.heads`), derived
//! from the model by `edgespec tune` and never shipped. It names the model it was trained for,
//! so heads are never used with another model, and is checked whole on load.
//!
//! Layout, little-endian: magic `EDGEHEAD`, version `u32`, the model identity (32 bytes), `dim`,
//! `K`, `rank`, `V`, flags (bit 0: token input; bits 8–15: draft width) (`u32` each), seed `u64`, held-out top-1 and
//! top-3 agreement (`K` `f32` each), then `W1` `(K, rank, inputs·dim)` and `W2` `(K, dim, rank)`
//! as `f32`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::Model;

use super::DraftHeads;

const MAGIC: &[u8; 8] = b"EDGEHEAD";
const VERSION: u32 = 1;
/// Bytes before the per-head figures.
const HEADER: usize = 8 + 4 + 32 + 5 * 4 + 8;
/// Largest dimension a file may declare (guards the size arithmetic).
const MAX_DIM: usize = 1 << 16;

/// Where the heads of the model at `model_path` live: `<model file>.heads`.
pub fn heads_path(model_path: &Path) -> PathBuf {
    let mut p = model_path.as_os_str().to_owned();
    p.push(".heads");
    PathBuf::from(p)
}

/// Where `tune` writes its profile for the model at `model_path`: `<model file>.tune.json`.
pub fn profile_path(model_path: &Path) -> PathBuf {
    let mut p = model_path.as_os_str().to_owned();
    p.push(".tune.json");
    PathBuf::from(p)
}

/// A fingerprint of the model's weights: SHA-256 over the file size, the tensor table (names,
/// types, shapes, offsets) and the first 256 bytes of every tensor's data. Cheap (no pass over
/// the weights) and independent of where the file lies; two fine-tunes of one architecture and
/// quantization differ in their tensor bytes, so they get different identities.
pub fn model_identity(model: &Model) -> [u8; 32] {
    let file = model.file();
    let mut h = Sha256::new();
    h.update(b"edgespec draft heads identity v1");
    h.update(file.len().to_le_bytes());
    for t in file.tensors() {
        h.update((t.name.len() as u64).to_le_bytes());
        h.update(t.name.as_bytes());
        h.update(format!("{:?}", t.ty).as_bytes());
        for d in t.shape() {
            h.update(d.to_le_bytes());
        }
        h.update(t.offset.to_le_bytes());
        h.update(t.n_bytes.to_le_bytes());
        let data = file.tensor_data(t);
        h.update(&data[..data.len().min(256)]);
    }
    h.finalize().into()
}

impl DraftHeads {
    /// The artifact's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 4 * (2 * self.k + self.w1.len() + self.w2.len()));
        artifact_prefix(&mut out, MAGIC, VERSION, &self.identity);
        let flags = usize::from(self.token_input) | (self.width.min(255) << 8);
        for v in [self.dim, self.k, self.rank, self.vocab, flags] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        out.extend_from_slice(&self.seed.to_le_bytes());
        for v in self.alpha_top1.iter().chain(&self.alpha_top3).chain(&self.w1).chain(&self.w2) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Parse an artifact (shape and size checked; the model is checked by
    /// [`DraftHeads::check_for`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<DraftHeads> {
        let identity = artifact_identity(bytes, HEADER, MAGIC, VERSION, "draft-heads")?;
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let [dim, k, rank, vocab, flags] = [44, 48, 52, 56, 60].map(|at| u32_at(at) as usize);
        if flags & !0xff01 != 0 || (flags >> 8) == 0 {
            return Err(Error::format(format!("draft-heads file with unknown flags {flags:#x}")));
        }
        let token_input = flags & 1 == 1;
        let width = flags >> 8;
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&bytes[64..72]);
        let seed = u64::from_le_bytes(seed);
        if [dim, k, rank].iter().any(|&d| d == 0 || d > MAX_DIM) || vocab == 0 || vocab > 1 << 24 {
            return Err(Error::format(format!(
                "draft-heads file with impossible shape: dim {dim}, K {k}, rank {rank}, V {vocab}"
            )));
        }
        let n_in = dim * (1 + usize::from(token_input));
        let floats = 2 * k + k * rank * n_in + k * dim * rank;
        let want = HEADER + 4 * floats;
        if bytes.len() != want {
            return Err(Error::format(format!(
                "draft-heads file of {} bytes; its header says {want} (truncated or damaged)",
                bytes.len()
            )));
        }
        let mut vals = bytes[HEADER..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let mut take = |n: usize| -> Vec<f32> { vals.by_ref().take(n).collect() };
        let alpha_top1 = take(k);
        let alpha_top3 = take(k);
        let w1 = take(k * rank * n_in);
        let w2 = take(k * dim * rank);
        if w1.iter().chain(&w2).any(|v| !v.is_finite()) {
            return Err(Error::format("draft-heads file holds non-finite weights"));
        }
        Ok(DraftHeads {
            identity,
            dim,
            k,
            rank,
            vocab,
            seed,
            token_input,
            width,
            alpha_top1,
            alpha_top3,
            w1,
            w2,
        })
    }

    /// Write the artifact to `path` (through a temporary file and a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_artifact(path, &self.to_bytes(), "draft heads")
    }

    /// Read the artifact at `path` and check it against `model`.
    pub fn load(path: &Path, model: &Model) -> Result<DraftHeads> {
        let bytes = read_artifact(path, "draft heads")?;
        let heads = DraftHeads::from_bytes(&bytes).map_err(|e| e.context(path.display()))?;
        heads.check_for(model).map_err(|e| e.context(path.display()))?;
        Ok(heads)
    }

    /// The heads saved beside the model's file (the model must have been opened from a path).
    pub fn load_for(model: &Model) -> Result<DraftHeads> {
        let path = model.file().path().ok_or_else(|| {
            Error::not_found("the model was not loaded from a file, so it has no draft heads beside it")
        })?;
        DraftHeads::load(&heads_path(path), model)
    }
}

/// Write a derived artifact (`what`: "draft heads", "corpus") to `path` through a temporary
/// file beside it and a rename, so a reader never sees half a file.
pub(crate) fn write_artifact(path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(format!("writing {what} {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("renaming to {}", path.display()), e))
}

/// Read a derived artifact that `edgespec tune` writes; a missing one says to run it.
pub(crate) fn read_artifact(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::not_found(format!(
                "no {what} for this model ({} is missing); run `edgespec tune -m MODEL` first",
                path.display()
            ))
        } else {
            Error::io(format!("reading {what} {}", path.display()), e)
        }
    })
}

/// The start every tune artifact shares: magic (8 bytes), version (`u32`), model identity.
pub(crate) fn artifact_prefix(out: &mut Vec<u8>, magic: &[u8; 8], version: u32, identity: &[u8; 32]) {
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(identity);
}

/// Check an artifact's magic, length (at least `header` bytes) and version; its model identity.
pub(crate) fn artifact_identity(
    bytes: &[u8],
    header: usize,
    magic: &[u8; 8],
    version: u32,
    what: &str,
) -> Result<[u8; 32]> {
    if bytes.len() < header.max(44) || &bytes[..8] != magic {
        return Err(Error::format(format!("not a {what} file (bad magic or too short)")));
    }
    let found = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if found != version {
        return Err(Error::format(format!(
            "{what} file version {found}; this build reads version {version} (run `edgespec tune` again)"
        )));
    }
    let mut identity = [0u8; 32];
    identity.copy_from_slice(&bytes[12..44]);
    Ok(identity)
}
