//! The key/value cache: allocated once for the whole context, truncated to roll back.
//!
//! Every layer keeps the keys and values of every position seen so far, so a new token attends
//! to them without recomputing them. The cache is sized at session start for the context length
//! (f16 by default, half the memory of f32 at a rounding llama.cpp also applies) and never grows;
//! a forward pass writes its tokens' rows at positions `len .. len + k`. Speculative decoding
//! writes drafted tokens, then [`KvCache::truncate`]s back to the last accepted one: truncation
//! only moves the length, and the stale rows beyond it are overwritten by the next pass.
//!
//! Layout per layer and per KV head: positions in rows of `head_dim` (`(n_kv_heads, ctx,
//! head_dim)`), so one head's keys for a span of positions are contiguous for the attention loop.

use half::f16;
use half::slice::HalfBitsSliceExt;

use crate::error::{Error, ErrorKind, Result};
use crate::kernels::Kernels;

use super::config::ModelConfig;

/// Element type of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvType {
    /// Half precision (the default, as in llama.cpp).
    #[default]
    F16,
    /// Single precision (twice the memory; for precision experiments).
    F32,
}

impl KvType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            KvType::F16 => 2,
            KvType::F32 => 4,
        }
    }
}

/// Storage of one of the two halves (keys or values) of every layer.
#[derive(Clone, Debug)]
pub(crate) enum KvData {
    /// `(n_layers, n_kv_heads, ctx, head_dim)`, f16 bit patterns (a `u16` vector so that the
    /// zeroed allocation comes straight from zeroed pages).
    F16(Vec<u16>),
    /// `(n_layers, n_kv_heads, ctx, head_dim)`.
    F32(Vec<f32>),
}

impl KvData {
    fn zeros(ty: KvType, len: usize) -> KvData {
        // `vec![0; n]` comes from zeroed pages, so untouched positions cost no resident memory.
        match ty {
            KvType::F16 => KvData::F16(vec![0u16; len]),
            KvType::F32 => KvData::F32(vec![0.0; len]),
        }
    }
}

/// A borrowed span of one head's cached rows, `(positions, head_dim)`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KvRows<'a> {
    F16(&'a [f16]),
    F32(&'a [f32]),
}

/// Keys and values of every layer for up to `capacity` positions.
#[derive(Clone, Debug)]
pub struct KvCache {
    ty: KvType,
    n_layers: usize,
    n_kv_heads: usize,
    head_dim_k: usize,
    head_dim_v: usize,
    capacity: usize,
    len: usize,
    k: KvData,
    v: KvData,
}

impl KvCache {
    /// A cache for `capacity` positions of a model shaped like `config`.
    pub fn new(config: &ModelConfig, capacity: usize, ty: KvType) -> Result<KvCache> {
        if capacity == 0 {
            return Err(Error::invalid("the context length must be at least 1"));
        }
        let per_layer = |hd: usize| {
            config
                .n_kv_heads
                .checked_mul(capacity)
                .and_then(|v| v.checked_mul(hd))
                .and_then(|v| v.checked_mul(config.n_layers))
        };
        let (Some(k_len), Some(v_len)) = (per_layer(config.head_dim), per_layer(config.head_dim_v)) else {
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                format!("a KV cache of {capacity} positions overflows"),
            ));
        };
        let bytes = (k_len as u128 + v_len as u128) * ty.size() as u128;
        if bytes > isize::MAX as u128 / 2 {
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                format!("a KV cache of {capacity} positions needs {bytes} bytes"),
            ));
        }
        Ok(KvCache {
            ty,
            n_layers: config.n_layers,
            n_kv_heads: config.n_kv_heads,
            head_dim_k: config.head_dim,
            head_dim_v: config.head_dim_v,
            capacity,
            len: 0,
            k: KvData::zeros(ty, k_len),
            v: KvData::zeros(ty, v_len),
        })
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most positions the cache can hold (the session's context length).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Element type.
    pub fn kv_type(&self) -> KvType {
        self.ty
    }

    /// Bytes allocated for keys and values.
    pub fn bytes(&self) -> usize {
        let elems = self.n_layers * self.n_kv_heads * self.capacity * (self.head_dim_k + self.head_dim_v);
        elems * self.ty.size()
    }

    /// Forget every position from `len` on (rolling back rejected drafts). Growing is an error:
    /// positions beyond the length hold nothing valid.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(Error::invalid(format!(
                "cannot truncate a KV cache of {} positions to {len}",
                self.len
            )));
        }
        self.len = len;
        Ok(())
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Mark positions `..len` as written (the forward pass calls this after writing them).
    pub(crate) fn set_len(&mut self, len: usize) -> Result<()> {
        if len > self.capacity {
            return Err(Error::new(
                ErrorKind::ContextOverflow,
                format!("context full: {len} positions do not fit a context of {}", self.capacity),
            ));
        }
        self.len = len;
        Ok(())
    }

    /// Whether this cache fits a model shaped like `config`.
    pub(crate) fn matches(&self, config: &ModelConfig) -> bool {
        self.n_layers == config.n_layers
            && self.n_kv_heads == config.n_kv_heads
            && self.head_dim_k == config.head_dim
            && self.head_dim_v == config.head_dim_v
    }

    fn offset(&self, layer: usize, head: usize, pos: usize, hd: usize) -> usize {
        ((layer * self.n_kv_heads + head) * self.capacity + pos) * hd
    }

    /// Store the keys `k` (`n_kv_heads × head_dim`) and values `v` (`n_kv_heads × head_dim_v`)
    /// of one token at position `pos` of `layer`, rounding to the cache's type.
    pub(crate) fn write(
        &mut self,
        kernels: &Kernels,
        layer: usize,
        pos: usize,
        k: &[f32],
        v: &[f32],
    ) -> Result<()> {
        let (hk, hv) = (self.head_dim_k, self.head_dim_v);
        if layer >= self.n_layers || pos >= self.capacity {
            return Err(Error::internal(format!(
                "KV write at layer {layer}, position {pos} is out of range"
            )));
        }
        if k.len() != self.n_kv_heads * hk || v.len() != self.n_kv_heads * hv {
            return Err(Error::internal("KV write of the wrong width"));
        }
        for h in 0..self.n_kv_heads {
            let (ko, vo) = (self.offset(layer, h, pos, hk), self.offset(layer, h, pos, hv));
            let (ks, vs) = (&k[h * hk..(h + 1) * hk], &v[h * hv..(h + 1) * hv]);
            store(kernels, &mut self.k, ko, ks)?;
            store(kernels, &mut self.v, vo, vs)?;
        }
        Ok(())
    }

    /// Keys of `layer`, KV head `head`, at positions `span`: `(span.len(), head_dim)`.
    pub(crate) fn keys(&self, layer: usize, head: usize, span: std::ops::Range<usize>) -> Result<KvRows<'_>> {
        let hd = self.head_dim_k;
        rows(&self.k, self.offset(layer, head, span.start, hd), span.len() * hd)
    }

    /// Values of `layer`, KV head `head`, at positions `span`: `(span.len(), head_dim_v)`.
    pub(crate) fn values(
        &self,
        layer: usize,
        head: usize,
        span: std::ops::Range<usize>,
    ) -> Result<KvRows<'_>> {
        let hd = self.head_dim_v;
        rows(&self.v, self.offset(layer, head, span.start, hd), span.len() * hd)
    }
}

fn store(kernels: &Kernels, data: &mut KvData, at: usize, src: &[f32]) -> Result<()> {
    let end = at + src.len();
    match data {
        KvData::F16(d) => {
            let dst = d.get_mut(at..end).ok_or_else(|| Error::internal("KV write outside the cache"))?;
            kernels.f32_to_f16(src, dst.reinterpret_cast_mut::<f16>())
        }
        KvData::F32(d) => {
            let dst = d.get_mut(at..end).ok_or_else(|| Error::internal("KV write outside the cache"))?;
            dst.copy_from_slice(src);
            Ok(())
        }
    }
}

fn rows(data: &KvData, at: usize, len: usize) -> Result<KvRows<'_>> {
    let oob = || Error::internal("KV read outside the cache");
    Ok(match data {
        KvData::F16(d) => KvRows::F16(d.get(at..at + len).ok_or_else(oob)?.reinterpret_cast::<f16>()),
        KvData::F32(d) => KvRows::F32(d.get(at..at + len).ok_or_else(oob)?),
    })
}
