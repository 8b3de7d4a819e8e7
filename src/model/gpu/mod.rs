//! The GPU backend of the forward pass: the model's weights uploaded once in their block
//! formats, the per-session GPU buffers, and the pass itself (`pass.rs`).
//!
//! The backend boundary is the [`Model`](super::Model): a model loaded with a GPU runs every
//! [`Model::forward`](super::Model::forward) there, with its [`KvCache`](super::KvCache) in
//! device memory, and hands back the same logits and hidden rows the CPU pass does; the decode
//! engine, the drafters, sampling and the session do not know which ran. Embedding lookups and
//! RoPE angles stay on the CPU (a few KB per pass, uploaded), so they are bitwise the CPU's.

mod kv;
mod pass;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::gguf::GgufFile;
use crate::gpu::{GpuContext, Kernel};
use crate::kernels::ActKind;
use crate::quant::{GgmlType, QK, QK_K};

use super::weights::{Mat, Vector, View, Weights};

pub(crate) use kv::GpuKv;
pub(crate) use pass::{GpuScratch, PassInput};

/// One uploaded matrix: row chunks that each fit a storage binding.
pub(crate) struct GpuMat {
    pub ty: GgmlType,
    pub rows: usize,
    /// Blocks per row (32- or 256-element blocks).
    pub nb: usize,
    pub act: ActKind,
    /// `(first row, rows, bind group)`; the buffers live as long as their groups.
    pub chunks: Vec<(usize, usize, wgpu::BindGroup)>,
}

/// Offsets (in words) of one layer's vectors in the vectors buffer.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LayerVecs {
    pub attn_norm: u32,
    pub ffn_norm: u32,
    pub bq: Option<u32>,
    pub bk: Option<u32>,
    pub bv: Option<u32>,
    pub q_norm: Option<u32>,
    pub k_norm: Option<u32>,
    pub post_attn_norm: Option<u32>,
    pub post_ffn_norm: Option<u32>,
}

pub(crate) struct GpuLayer {
    pub wq: GpuMat,
    pub wk: GpuMat,
    pub wv: GpuMat,
    pub wo: GpuMat,
    pub w_gate: GpuMat,
    pub w_up: GpuMat,
    pub w_down: GpuMat,
    pub vecs: LayerVecs,
}

/// A model's weights on the GPU.
pub(crate) struct GpuModel {
    pub ctx: Arc<GpuContext>,
    pub layers: Vec<GpuLayer>,
    pub output: GpuMat,
    pub output_norm: u32,
    /// Every norm weight and bias, f32, in one buffer.
    pub vectors: wgpu::BindGroup,
    /// Bytes uploaded.
    pub bytes: u64,
}

impl std::fmt::Debug for GpuModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuModel({:?}, {} bytes)", self.ctx, self.bytes)
    }
}

/// The first weight type the GPU cannot read, if any.
pub(crate) fn unsupported_type(file: &GgufFile, weights: &Weights) -> Option<GgmlType> {
    weights
        .mats()
        .iter()
        .filter_map(|m| file.tensors().get(m.tensor()).map(|t| t.ty))
        .find(|&ty| Kernel::block_words(ty).is_none())
}

/// `ty`'s blocks as the GPU reads them: whole words, scales first (see `wgsl/matvec.wgsl`).
fn repack_block(ty: GgmlType, block: &[u8], out: &mut Vec<u8>) {
    match ty {
        // d (f16), 2 pad bytes, then the rest word-aligned.
        GgmlType::Q5_0 | GgmlType::Q8_0 => {
            out.extend_from_slice(&block[..2]);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&block[2..]);
        }
        GgmlType::Q6_K => {
            out.extend_from_slice(block);
            out.extend_from_slice(&[0, 0]);
        }
        _ => out.extend_from_slice(block),
    }
}

fn upload_mat(ctx: &GpuContext, file: &GgufFile, m: &Mat, what: &str) -> Result<(GpuMat, u64)> {
    let info = file.tensors().get(m.tensor()).ok_or_else(|| Error::internal("tensor index"))?;
    let ty = info.ty;
    let words = Kernel::block_words(ty).ok_or_else(|| {
        Error::unsupported(format!(
            "the GPU backend has no kernel for {ty} weights ({what}); use --device cpu"
        ))
    })? as usize;
    let elems = if matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K) { QK_K } else { QK };
    if !m.n.is_multiple_of(elems) {
        return Err(Error::format(format!("{what}: rows of {} are not whole {ty} blocks", m.n)));
    }
    let nb = m.n / elems;
    let block_bytes = ty.row_bytes(elems as u64).ok_or_else(|| Error::internal("block size"))? as usize;
    let data = file.tensor_data(info);
    let row_words = nb * words;
    let max_rows = (ctx.max_binding() as usize / (4 * row_words)).max(1);
    let mut chunks = Vec::new();
    let mut bytes = 0u64;
    let mut first = 0;
    while first < m.rows {
        let rows = max_rows.min(m.rows - first);
        let src = data
            .get(first * nb * block_bytes..(first + rows) * nb * block_bytes)
            .ok_or_else(|| Error::format(format!("{what}: tensor data shorter than its shape")))?;
        let mut packed = Vec::with_capacity(rows * row_words * 4);
        for block in src.chunks_exact(block_bytes) {
            repack_block(ty, block, &mut packed);
        }
        let words: Vec<u32> =
            packed.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let buf = ctx.storage_init(what, &words)?;
        bytes += 4 * words.len() as u64;
        chunks.push((first, rows, ctx.weights_group(&buf)));
        first += rows;
    }
    Ok((GpuMat { ty, rows: m.rows, nb, act: m.act, chunks }, bytes))
}

impl GpuModel {
    /// Upload `weights` of `file` (the token embeddings stay in the map: lookups run on the CPU).
    pub fn upload(
        ctx: Arc<GpuContext>,
        file: &GgufFile,
        weights: &Weights,
        view: &View<'_>,
    ) -> Result<GpuModel> {
        if let Some(ty) = unsupported_type(file, weights) {
            return Err(Error::unsupported(format!(
                "the GPU backend has no kernel for {ty} weights (it reads {}); use --device cpu",
                Kernel::matvec_types().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        // The adapter's memory, where it says: refuse a model that cannot fit before uploading.
        let need: u64 = weights
            .mats()
            .iter()
            .filter_map(|m| {
                let t = file.tensors().get(m.tensor())?;
                let elems = if matches!(t.ty, GgmlType::Q4_K | GgmlType::Q6_K) { QK_K } else { QK };
                let block = t.ty.row_bytes(elems as u64)?;
                Some(t.n_bytes / block * 4 * u64::from(Kernel::block_words(t.ty)?))
            })
            .sum();
        if let Some(have) = ctx.adapter().memory_bytes.filter(|&have| need > have) {
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                format!(
                    "the model's weights take {} on the GPU, more than the {} of {}: use --device cpu",
                    crate::catalog::format_bytes(need),
                    crate::catalog::format_bytes(have),
                    ctx.adapter().name
                ),
            ));
        }
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut vec_words: Vec<u32> = Vec::new();
        let mut push = |v: &Vector| -> Result<u32> {
            let at = u32::try_from(vec_words.len()).map_err(|_| Error::internal("vectors too long"))?;
            vec_words.extend(view.vector(v)?.iter().map(|x| x.to_bits()));
            Ok(at)
        };
        let mut bytes = 0u64;
        let mut layers = Vec::with_capacity(weights.layers.len());
        for (i, l) in weights.layers.iter().enumerate() {
            let opt = |v: &Option<Vector>,
                       push: &mut dyn FnMut(&Vector) -> Result<u32>|
             -> Result<Option<u32>> { v.as_ref().map(push).transpose() };
            let vecs = LayerVecs {
                attn_norm: push(&l.attn_norm)?,
                ffn_norm: push(&l.ffn_norm)?,
                bq: opt(&l.bq, &mut push)?,
                bk: opt(&l.bk, &mut push)?,
                bv: opt(&l.bv, &mut push)?,
                q_norm: opt(&l.q_norm, &mut push)?,
                k_norm: opt(&l.k_norm, &mut push)?,
                post_attn_norm: opt(&l.post_attn_norm, &mut push)?,
                post_ffn_norm: opt(&l.post_ffn_norm, &mut push)?,
            };
            let mut up = |m: &Mat, name: &str| -> Result<GpuMat> {
                let (g, b) = upload_mat(&ctx, file, m, &format!("blk.{i}.{name}"))?;
                bytes += b;
                Ok(g)
            };
            layers.push(GpuLayer {
                wq: up(&l.wq, "attn_q")?,
                wk: up(&l.wk, "attn_k")?,
                wv: up(&l.wv, "attn_v")?,
                wo: up(&l.wo, "attn_output")?,
                w_gate: up(&l.w_gate, "ffn_gate")?,
                w_up: up(&l.w_up, "ffn_up")?,
                w_down: up(&l.w_down, "ffn_down")?,
                vecs,
            });
        }
        let output_norm = push(&weights.output_norm)?;
        let (output, b) = upload_mat(&ctx, file, &weights.output, "output")?;
        bytes += b + 4 * vec_words.len() as u64;
        let vbuf = ctx.storage_init("vectors", &vec_words)?;
        let vectors = ctx.weights_group(&vbuf);
        if let Some(e) = crate::gpu::block_on(scope.pop()) {
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                format!(
                    "the model's {bytes} bytes of weights do not fit the GPU {}: {e}",
                    ctx.adapter().name
                ),
            ));
        }
        Ok(GpuModel { ctx, layers, output, output_norm, vectors, bytes })
    }
}
