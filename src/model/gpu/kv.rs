//! The KV cache's keys and values in GPU memory (f16 pairs in words), with the same row layout
//! as the CPU cache (`kv_cache.rs`), which keeps the positions and decides every move.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// Keys and values of every layer on the GPU: `rows × head_dim` f16 values each.
pub(crate) struct GpuKv {
    pub ctx: Arc<GpuContext>,
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
    /// Bytes of one key row and one value row.
    k_row: u64,
    v_row: u64,
    rows: u64,
    /// Q8_0 rows (9 words per 32 values: the f16 scale, then the quants) instead of f16.
    pub q8: bool,
}

impl std::fmt::Debug for GpuKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuKv({} rows)", self.rows)
    }
}

impl GpuKv {
    /// Buffers for `rows` rows of keys (`head_dim`) and values (`head_dim_v`), f16 or (`q8`)
    /// Q8_0.
    pub fn new(
        ctx: Arc<GpuContext>,
        rows: usize,
        head_dim: usize,
        head_dim_v: usize,
        q8: bool,
    ) -> Result<GpuKv> {
        let row_bytes = |n: usize| -> Result<u64> {
            match q8 {
                false if n.is_multiple_of(2) => Ok(2 * n as u64),
                true if n.is_multiple_of(32) && n <= 256 => Ok(36 * (n / 32) as u64),
                false => Err(Error::unsupported("the GPU KV cache needs even head dimensions")),
                true => Err(Error::unsupported(
                    "a q8_0 KV cache on the GPU needs head dimensions that are multiples of 32 up to 256: use f16",
                )),
            }
        };
        let (k_row, v_row) = (row_bytes(head_dim)?, row_bytes(head_dim_v)?);
        let k = ctx.storage("KV cache keys", k_row * rows as u64)?;
        let v = ctx.storage("KV cache values", v_row * rows as u64)?;
        Ok(GpuKv { ctx, k, v, k_row, v_row, rows: rows as u64, q8 })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        ((self.k_row + self.v_row) * self.rows) as usize
    }

    /// Copy row `from` to row `to` of keys and values for every `(from, to)`, in order.
    pub fn move_rows(&self, moves: &[(usize, usize)]) -> Result<()> {
        if moves.is_empty() {
            return Ok(());
        }
        // A buffer cannot copy into itself: gather the source rows, then scatter them. Sources
        // are never earlier moves' destinations (`keep_path`'s slots increase), so this equals
        // moving row by row.
        let (kr, vr) = (self.k_row, self.v_row);
        let tmp = self.ctx.storage("KV row moves", (kr + vr) * moves.len() as u64)?;
        let mut enc = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        for (i, &(from, _)) in moves.iter().enumerate() {
            let from = from as u64;
            if from >= self.rows {
                return Err(Error::internal("a KV row move outside the GPU cache"));
            }
            let at = i as u64 * (kr + vr);
            // Row sizes are multiples of 4 bytes (even dims, f16), as copies require.
            enc.copy_buffer_to_buffer(&self.k, from * kr, &tmp, at, kr);
            enc.copy_buffer_to_buffer(&self.v, from * vr, &tmp, at + kr, vr);
        }
        for (i, &(_, to)) in moves.iter().enumerate() {
            let to = to as u64;
            if to >= self.rows {
                return Err(Error::internal("a KV row move outside the GPU cache"));
            }
            let at = i as u64 * (kr + vr);
            enc.copy_buffer_to_buffer(&tmp, at, &self.k, to * kr, kr);
            enc.copy_buffer_to_buffer(&tmp, at + kr, &self.v, to * vr, vr);
        }
        self.ctx.queue.submit([enc.finish()]);
        self.ctx.check()
    }
}

impl Clone for GpuKv {
    /// A copy in new buffers, the contents copied on the GPU.
    fn clone(&self) -> GpuKv {
        let copy = |src: &wgpu::Buffer, label: &str| {
            let dst = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: src.size(),
                usage: src.usage(),
                mapped_at_creation: false,
            });
            let mut enc =
                self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            enc.copy_buffer_to_buffer(src, 0, &dst, 0, src.size());
            self.ctx.queue.submit([enc.finish()]);
            dst
        };
        GpuKv {
            ctx: self.ctx.clone(),
            k: copy(&self.k, "KV cache keys"),
            v: copy(&self.v, "KV cache values"),
            k_row: self.k_row,
            v_row: self.v_row,
            rows: self.rows,
            q8: self.q8,
        }
    }
}
