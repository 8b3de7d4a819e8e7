//! The key/value cache: allocated once, truncated to roll back, and for sliding-window layers
//! no larger than the window.
//!
//! Every layer keeps the keys and values of the positions its attention can still see, so a new
//! token attends to them without recomputing them. The cache is sized at session start for the
//! context length (f16 by default, half the memory of f32 at a rounding llama.cpp also applies)
//! and never grows; a forward pass writes its tokens' rows at positions `len .. len + k`.
//! Speculative decoding writes drafted tokens, then [`KvCache::truncate`]s back to the last
//! accepted one: truncation only moves the length, and the stale rows beyond it are overwritten
//! by the next pass.
//!
//! Global layers keep a row for every position of the context. A sliding-window layer (window
//! `w`) only ever attends to the last `w` positions, so it keeps a ring of `w + MAX_BATCH` rows
//! (position `p` in row `p mod rows`) — O(window) memory, not O(context). The `MAX_BATCH` spare
//! rows are what makes the ring safe: a pass of up to `MAX_BATCH` tokens at `start` overwrites
//! positions older than `start + 1 − w`, which no query of the pass sees, and a rollback of up to
//! `MAX_BATCH + 1` positions from the furthest position ever written finds every position the
//! next pass needs still in place. A deeper rollback is refused (the positions are gone);
//! [`KvCache::rollback_floor`] says how far back a truncation may go, and [`KvLayout::Full`]
//! keeps whole-context rows for every layer where that matters. Reads of a span that wraps
//! around the ring come back as two slices in position order, so attention visits the same
//! positions in the same order as with whole-context rows: the results are bitwise the same.
//!
//! Layout: per layer, per KV head, one row of `head_dim` per slot (`(n_kv_heads, rows,
//! head_dim)`, `rows` = context length or ring size), layers one after another, so one head's
//! keys for a span of positions are contiguous (or two contiguous pieces in a ring).

use half::f16;
use half::slice::HalfBitsSliceExt;

use crate::error::{Error, ErrorKind, Result};
use crate::kernels::Kernels;
use crate::quant::{BlockQ8_0, QK};

use super::arch::ArchSpec;
use super::config::ModelConfig;
use super::plan::MAX_BATCH;

/// Element type of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvType {
    /// Half precision (the default, as in llama.cpp).
    #[default]
    F16,
    /// Single precision (twice the memory; for precision experiments).
    F32,
    /// GGML's Q8_0: blocks of 32 values as one f16 scale and 32 signed bytes (34 bytes, 53% of
    /// f16), as llama.cpp's `--cache-type-k/-v q8_0`. Attention quantizes each query the same
    /// way and scores it against the keys with integer dot products. Needs head dimensions that
    /// are multiples of 32.
    Q8_0,
}

impl KvType {
    /// Every type, in the order [`KvType::name`] lists them.
    pub const ALL: [KvType; 3] = [KvType::F16, KvType::F32, KvType::Q8_0];

    /// Bytes of one cached row of `n` values (for Q8_0, `n` rounded up to whole blocks).
    pub fn row_bytes(self, n: usize) -> usize {
        match self {
            KvType::F16 => 2 * n,
            KvType::F32 => 4 * n,
            KvType::Q8_0 => n.div_ceil(QK) * std::mem::size_of::<BlockQ8_0>(),
        }
    }

    /// The name the CLI and the C API use: `f16`, `f32`, `q8_0`.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// The type [`KvType::name`] calls `name`; an error listing the names otherwise.
    pub fn from_name(name: &str) -> Result<KvType> {
        KvType::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| Error::invalid(format!("unknown KV cache type {name:?}: use f16, f32 or q8_0")))
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How sliding-window layers store their positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvLayout {
    /// A ring of `window + MAX_BATCH` rows per sliding-window layer (the default): O(window)
    /// memory, rollbacks of up to `MAX_BATCH + 1` positions.
    #[default]
    Ring,
    /// Every layer keeps a row for every position of the context: O(context) memory, rollbacks
    /// to any length (the reference the ring is tested against).
    Full,
}

/// Where one layer's rows live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LayerRows {
    /// Index of the layer's first row among all layers' rows.
    base: usize,
    /// Rows per KV head: the context length, or the ring size of a sliding-window layer.
    rows: usize,
    /// The layer's attention window, if it has one.
    window: Option<usize>,
}

/// The rows of every layer for `capacity` positions, and the total rows per KV head. Errors
/// when the counts overflow.
fn plan_rows(
    config: &ModelConfig,
    arch: &ArchSpec,
    capacity: usize,
    layout: KvLayout,
) -> Result<(Vec<LayerRows>, usize)> {
    let overflow =
        || Error::new(ErrorKind::OutOfMemory, format!("a KV cache of {capacity} positions overflows"));
    let mut layers = Vec::with_capacity(config.n_layers);
    let mut base = 0usize;
    for l in 0..config.n_layers {
        let window = arch.layer_window(l, config.sliding_window);
        let rows = match (layout, window) {
            (KvLayout::Ring, Some(w)) => w.checked_add(MAX_BATCH).ok_or_else(overflow)?.min(capacity),
            _ => capacity,
        };
        layers.push(LayerRows { base, rows, window });
        base = config.n_kv_heads.checked_mul(rows).and_then(|r| r.checked_add(base)).ok_or_else(overflow)?;
    }
    Ok((layers, base))
}

/// Storage of one of the two halves (keys or values) of every layer.
#[derive(Clone, Debug)]
pub(crate) enum KvData {
    /// `(rows, head_dim)`, f16 bit patterns (a `u16` vector so that the
    /// zeroed allocation comes straight from zeroed pages).
    F16(Vec<u16>),
    /// `(rows, head_dim)`.
    F32(Vec<f32>),
    /// `(rows, head_dim / 32)` [`BlockQ8_0`]s stored as 17 words each (zeroed pages again;
    /// viewed as blocks by `quant::words_as_blocks`).
    Q8_0(Vec<u16>),
}

/// 16-bit words per Q8_0 block.
const Q8_WORDS: usize = std::mem::size_of::<BlockQ8_0>() / 2;

impl KvData {
    /// Storage for `len` values (a multiple of 32 for Q8_0).
    fn zeros(ty: KvType, len: usize) -> KvData {
        // `vec![0; n]` comes from zeroed pages, so untouched positions cost no resident memory.
        match ty {
            KvType::F16 => KvData::F16(vec![0u16; len]),
            KvType::F32 => KvData::F32(vec![0.0; len]),
            KvType::Q8_0 => KvData::Q8_0(vec![0u16; len / QK * Q8_WORDS]),
        }
    }

    /// Values stored.
    fn len(&self) -> usize {
        match self {
            KvData::F16(d) => d.len(),
            KvData::F32(d) => d.len(),
            KvData::Q8_0(d) => d.len() / Q8_WORDS * QK,
        }
    }
}

/// A borrowed span of one head's cached rows, `(positions, head_dim)`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KvRows<'a> {
    F16(&'a [f16]),
    F32(&'a [f32]),
    /// `(positions, head_dim / 32)` blocks.
    Q8_0(&'a [BlockQ8_0]),
}

/// Keys and values of every layer for up to `capacity` positions.
#[derive(Clone, Debug)]
pub struct KvCache {
    ty: KvType,
    layout: KvLayout,
    n_kv_heads: usize,
    head_dim_k: usize,
    head_dim_v: usize,
    capacity: usize,
    len: usize,
    /// One past the furthest position written since the cache was last empty: rows of ring
    /// positions below `written − rows` have been overwritten.
    written: usize,
    /// Where each layer's rows are.
    layers: Vec<LayerRows>,
    /// `(Σ layers n_kv_heads · rows, head_dim)`.
    k: KvData,
    /// `(Σ layers n_kv_heads · rows, head_dim_v)`.
    v: KvData,
    /// The keys and values in GPU memory instead (then `k` and `v` are empty).
    #[cfg(feature = "gpu")]
    gpu: Option<super::gpu::GpuKv>,
}

impl KvCache {
    /// A cache for `capacity` positions of a model shaped like `config` with the layers of
    /// `arch`, its sliding-window layers stored as `layout` says.
    pub fn new(
        config: &ModelConfig,
        arch: &ArchSpec,
        capacity: usize,
        ty: KvType,
        layout: KvLayout,
    ) -> Result<KvCache> {
        if capacity == 0 {
            return Err(Error::invalid("the context length must be at least 1"));
        }
        if ty == KvType::Q8_0 && !KvCache::q8_0_supported(config) {
            return Err(Error::invalid(format!(
                "a q8_0 KV cache needs head dimensions that are multiples of {QK} up to {MAX_Q8_ROW}; this \
                 model's are {} (keys) and {} (values): use f16",
                config.head_dim, config.head_dim_v
            )));
        }
        let (layers, total_rows) = plan_rows(config, arch, capacity, layout)?;
        let elems = |hd: usize| total_rows.checked_mul(hd);
        let (Some(k_len), Some(v_len)) = (elems(config.head_dim), elems(config.head_dim_v)) else {
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                format!("a KV cache of {capacity} positions overflows"),
            ));
        };
        let bytes = total_rows as u128
            * (ty.row_bytes(config.head_dim) as u128 + ty.row_bytes(config.head_dim_v) as u128);
        if bytes > isize::MAX as u128 / 2 {
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                format!("a KV cache of {capacity} positions needs {bytes} bytes"),
            ));
        }
        Ok(KvCache {
            ty,
            layout,
            n_kv_heads: config.n_kv_heads,
            head_dim_k: config.head_dim,
            head_dim_v: config.head_dim_v,
            capacity,
            len: 0,
            written: 0,
            layers,
            k: KvData::zeros(ty, k_len),
            v: KvData::zeros(ty, v_len),
            #[cfg(feature = "gpu")]
            gpu: None,
        })
    }

    /// A cache like [`KvCache::new`]'s whose rows live in the GPU's memory (f16 only).
    #[cfg(feature = "gpu")]
    pub(crate) fn new_on_gpu(
        config: &ModelConfig,
        arch: &ArchSpec,
        capacity: usize,
        ty: KvType,
        layout: KvLayout,
        ctx: std::sync::Arc<crate::gpu::GpuContext>,
    ) -> Result<KvCache> {
        if ty == KvType::F32 {
            return Err(Error::unsupported(
                "the GPU KV cache stores f16 or q8_0; an f32 cache runs on the CPU only (--kv-type f16, or --device cpu)",
            ));
        }
        let mut cache = KvCache::new(config, arch, 1, ty, layout)?;
        let (layers, total_rows) = plan_rows(config, arch, capacity, layout)?;
        let q8 = ty == KvType::Q8_0;
        cache.gpu = Some(super::gpu::GpuKv::new(ctx, total_rows, config.head_dim, config.head_dim_v, q8)?);
        cache.k = KvData::zeros(ty, 0);
        cache.v = KvData::zeros(ty, 0);
        cache.layers = layers;
        cache.capacity = capacity;
        Ok(cache)
    }

    /// The GPU rows, for a cache made by a model on the GPU.
    #[cfg(feature = "gpu")]
    pub(crate) fn gpu(&self) -> Option<&super::gpu::GpuKv> {
        self.gpu.as_ref()
    }

    /// `(first row, rows per KV head)` of every layer.
    #[cfg(feature = "gpu")]
    pub(crate) fn layer_spans(&self) -> Vec<(usize, usize)> {
        self.layers.iter().map(|l| (l.base, l.rows)).collect()
    }

    /// Record that positions up to `end` were written (the GPU pass writes rows itself).
    #[cfg(feature = "gpu")]
    pub(crate) fn mark_written(&mut self, end: usize) {
        self.written = self.written.max(end);
    }

    /// Whether a q8_0 cache can store this model's rows (head dimensions of whole blocks, up to
    /// the longest row the quantizer takes).
    pub fn q8_0_supported(config: &ModelConfig) -> bool {
        [config.head_dim, config.head_dim_v].iter().all(|&n| n.is_multiple_of(QK) && n <= MAX_Q8_ROW)
    }

    /// Bytes [`KvCache::new`] would allocate for the same arguments, without allocating them
    /// (memory estimates). Saturates instead of overflowing.
    pub fn bytes_for(
        config: &ModelConfig,
        arch: &ArchSpec,
        capacity: usize,
        ty: KvType,
        layout: KvLayout,
    ) -> u64 {
        let per_row = (ty.row_bytes(config.head_dim) + ty.row_bytes(config.head_dim_v)) as u64;
        (0..config.n_layers)
            .map(|l| {
                let rows = match (layout, arch.layer_window(l, config.sliding_window)) {
                    (KvLayout::Ring, Some(w)) => w.saturating_add(MAX_BATCH).min(capacity),
                    _ => capacity,
                };
                (config.n_kv_heads as u64).saturating_mul(rows as u64).saturating_mul(per_row)
            })
            .fold(0u64, u64::saturating_add)
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

    /// How sliding-window layers are stored.
    pub fn layout(&self) -> KvLayout {
        self.layout
    }

    /// Bytes allocated for keys and values.
    pub fn bytes(&self) -> usize {
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            return g.bytes();
        }
        let rows = |d: &KvData, hd: usize| d.len() / hd.max(1);
        rows(&self.k, self.head_dim_k) * self.ty.row_bytes(self.head_dim_k)
            + rows(&self.v, self.head_dim_v) * self.ty.row_bytes(self.head_dim_v)
    }

    /// Rows per KV head that `layer` keeps: the context length, or its ring size.
    pub fn layer_rows(&self, layer: usize) -> Option<usize> {
        self.layers.get(layer).map(|l| l.rows)
    }

    /// The shortest length other than 0 that [`truncate`](Self::truncate) accepts now (at most
    /// [`len`](Self::len)): 0 when every layer still holds every position, else the length
    /// below which a sliding-window ring has overwritten positions the next pass would need.
    pub fn rollback_floor(&self) -> usize {
        let floor = self
            .layers
            .iter()
            .filter_map(|l| {
                let w = l.window?;
                // Positions below `written − rows` are gone; a pass at `len` needs `len + 1 − w ..`.
                let gone = self.written.checked_sub(l.rows).filter(|&g| g > 0)?;
                Some((gone + w).saturating_sub(1))
            })
            .max()
            .unwrap_or(0);
        floor.min(self.len)
    }

    /// Forget every position from `len` on (rolling back rejected drafts). Growing is an error:
    /// positions beyond the length hold nothing valid. So is rolling back below
    /// [`rollback_floor`](Self::rollback_floor) (except to 0, which clears): sliding-window rings
    /// no longer hold the positions a pass there would attend to. A failed truncation changes
    /// nothing.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(Error::invalid(format!(
                "cannot truncate a KV cache of {} positions to {len}",
                self.len
            )));
        }
        if len == 0 {
            self.clear();
            return Ok(());
        }
        let floor = self.rollback_floor();
        if len < floor {
            return Err(Error::invalid(format!(
                "cannot roll a sliding-window KV cache back from {} positions to {len}: its rings no \
                 longer hold positions before {floor} (at most {} positions back from the furthest \
                 written); clear it, or use KvLayout::Full",
                self.len,
                MAX_BATCH + 1
            )));
        }
        self.len = len;
        Ok(())
    }

    /// Keep one root-to-leaf path of a token-tree pass at `start` (see
    /// [`TokenTree`](super::TokenTree)): move the rows stored at positions `start + path[j]` to
    /// `start + j` and truncate to `start + path.len()`. The node at depth `j` was computed at
    /// RoPE position `start + j`, so the cache then holds bitwise what a chain pass over the path
    /// leaves. `path` must be strictly increasing (parents come before their children in a tree,
    /// so no move overwrites a row a later move reads) and held. A failed call changes nothing.
    pub fn keep_path(&mut self, start: usize, path: &[usize]) -> Result<()> {
        let bad =
            |why: &str| Err(Error::invalid(format!("cannot keep the tree path {path:?} at {start}: {why}")));
        if path.windows(2).any(|w| w[0] >= w[1]) {
            return bad("slots must increase");
        }
        let Some(&last) = path.last() else {
            return self.truncate(start);
        };
        if start + last >= self.len {
            return bad("beyond the cached positions");
        }
        let new_len = start + path.len();
        if new_len < self.rollback_floor() {
            return bad("the sliding-window rings no longer hold the positions before it");
        }
        // The slots read were written by the last pass; a ring keeps its last `rows` positions.
        if self.layers.iter().any(|l| start + path[0] + l.rows < self.written) {
            return bad("a ring has overwritten the tree's rows");
        }
        // Row moves `(from, to)` in units of rows (`offset` scales them by the row length).
        let mut moves = Vec::with_capacity(self.layers.len() * self.n_kv_heads * path.len());
        for l in &self.layers {
            for h in 0..self.n_kv_heads {
                for (j, &p) in path.iter().enumerate().filter(|&(j, &p)| j != p) {
                    let (from, to) = ((start + p) % l.rows, (start + j) % l.rows);
                    moves.push((self.offset(*l, h, from, 1), self.offset(*l, h, to, 1)));
                }
            }
        }
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            g.move_rows(&moves)?;
            self.len = new_len;
            return Ok(());
        }
        let (hk, hv) = (self.head_dim_k, self.head_dim_v);
        for (from, to) in moves {
            move_row(&mut self.k, from * hk, to * hk, hk)?;
            move_row(&mut self.v, from * hv, to * hv, hv)?;
        }
        self.len = new_len;
        Ok(())
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.len = 0;
        self.written = 0;
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

    /// Whether this cache fits a model shaped like `config` with the layers of `arch`.
    pub(crate) fn matches(&self, config: &ModelConfig, arch: &ArchSpec) -> bool {
        self.layers.len() == config.n_layers
            && self.n_kv_heads == config.n_kv_heads
            && self.head_dim_k == config.head_dim
            && self.head_dim_v == config.head_dim_v
            && self
                .layers
                .iter()
                .enumerate()
                .all(|(l, r)| r.window == arch.layer_window(l, config.sliding_window))
    }

    /// The layer's rows, checked.
    fn layer(&self, layer: usize) -> Result<LayerRows> {
        self.layers
            .get(layer)
            .copied()
            .ok_or_else(|| Error::internal(format!("KV access to layer {layer} of {}", self.layers.len())))
    }

    /// Element offset of `slot` of `head` in a layer, rows of `hd`.
    fn offset(&self, l: LayerRows, head: usize, slot: usize, hd: usize) -> usize {
        (l.base + head * l.rows + slot) * hd
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
        let l = self.layer(layer)?;
        if pos >= self.capacity {
            return Err(Error::internal(format!(
                "KV write at layer {layer}, position {pos} is out of range"
            )));
        }
        if k.len() != self.n_kv_heads * hk || v.len() != self.n_kv_heads * hv {
            return Err(Error::internal("KV write of the wrong width"));
        }
        let slot = pos % l.rows;
        for h in 0..self.n_kv_heads {
            let (ko, vo) = (self.offset(l, h, slot, hk), self.offset(l, h, slot, hv));
            let (ks, vs) = (&k[h * hk..(h + 1) * hk], &v[h * hv..(h + 1) * hv]);
            store(kernels, &mut self.k, ko, ks)?;
            store(kernels, &mut self.v, vo, vs)?;
        }
        self.written = self.written.max(pos + 1);
        Ok(())
    }

    /// The layer's rows and the slots of `span` in it: `(layer, first slot, rows from there,
    /// rows from slot 0)`. Errors when the head does not exist or the span is not (or no longer)
    /// held.
    fn span_slots(
        &self,
        layer: usize,
        head: usize,
        span: &std::ops::Range<usize>,
    ) -> Result<(LayerRows, usize, usize, usize)> {
        let l = self.layer(layer)?;
        let n = span.end.saturating_sub(span.start);
        if head >= self.n_kv_heads
            || span.end > self.capacity
            || n > l.rows
            || span.start + l.rows < self.written
        {
            return Err(Error::internal(format!(
                "KV read of head {head}, positions {span:?} at layer {layer}: not held (ring of {} rows, \
                 {} written)",
                l.rows, self.written
            )));
        }
        let first = span.start % l.rows;
        let head_part = n.min(l.rows - first);
        Ok((l, first, head_part, n - head_part))
    }

    /// Keys of `layer`, KV head `head`, at positions `span`, in position order as two pieces
    /// (the second empty unless the span wraps around a ring): `(span.len(), head_dim)` together.
    pub(crate) fn keys(
        &self,
        layer: usize,
        head: usize,
        span: std::ops::Range<usize>,
    ) -> Result<[KvRows<'_>; 2]> {
        let hd = self.head_dim_k;
        let (l, first, a, b) = self.span_slots(layer, head, &span)?;
        Ok([
            rows(&self.k, self.offset(l, head, first, hd), a * hd)?,
            rows(&self.k, self.offset(l, head, 0, hd), b * hd)?,
        ])
    }

    /// Values of `layer`, KV head `head`, at positions `span`, as [`keys`](Self::keys) gives them:
    /// `(span.len(), head_dim_v)` together.
    pub(crate) fn values(
        &self,
        layer: usize,
        head: usize,
        span: std::ops::Range<usize>,
    ) -> Result<[KvRows<'_>; 2]> {
        let hd = self.head_dim_v;
        let (l, first, a, b) = self.span_slots(layer, head, &span)?;
        Ok([
            rows(&self.v, self.offset(l, head, first, hd), a * hd)?,
            rows(&self.v, self.offset(l, head, 0, hd), b * hd)?,
        ])
    }
}

fn store(kernels: &Kernels, data: &mut KvData, at: usize, src: &[f32]) -> Result<()> {
    let end = at + src.len();
    match data {
        KvData::Q8_0(d) => {
            let oob = || Error::internal("KV write outside the cache");
            let words = d.get_mut(at / QK * Q8_WORDS..end / QK * Q8_WORDS).ok_or_else(oob)?;
            quantize_row(kernels, src, crate::quant::words_as_blocks_mut(words)?)
        }
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

/// Copy the `len` elements at `from` to `to` within `data`.
fn move_row(data: &mut KvData, from: usize, to: usize, len: usize) -> Result<()> {
    let oob = || Error::internal("KV move outside the cache");
    match data {
        KvData::Q8_0(d) => {
            let (from, to, len) = (from / QK * Q8_WORDS, to / QK * Q8_WORDS, len / QK * Q8_WORDS);
            d.get(from.max(to)..from.max(to) + len).ok_or_else(oob)?;
            d.copy_within(from..from + len, to);
        }
        KvData::F16(d) => {
            d.get(from.max(to)..from.max(to) + len).ok_or_else(oob)?;
            d.copy_within(from..from + len, to);
        }
        KvData::F32(d) => {
            d.get(from.max(to)..from.max(to) + len).ok_or_else(oob)?;
            d.copy_within(from..from + len, to);
        }
    }
    Ok(())
}

fn rows(data: &KvData, at: usize, len: usize) -> Result<KvRows<'_>> {
    let oob = || Error::internal("KV read outside the cache");
    Ok(match data {
        KvData::F16(d) => KvRows::F16(d.get(at..at + len).ok_or_else(oob)?.reinterpret_cast::<f16>()),
        KvData::F32(d) => KvRows::F32(d.get(at..at + len).ok_or_else(oob)?),
        KvData::Q8_0(d) => {
            let words = d.get(at / QK * Q8_WORDS..(at + len) / QK * Q8_WORDS).ok_or_else(oob)?;
            KvRows::Q8_0(crate::quant::words_as_blocks(words)?)
        }
    })
}

/// Quantize one row (a multiple of 32 values, at most [`MAX_Q8_ROW`]) into Q8_0 blocks with the
/// activation quantizer (GGML's reference rounding; its scales come back f16-rounded, so they
/// convert to the blocks' f16 bits exactly).
fn quantize_row(kernels: &Kernels, src: &[f32], dst: &mut [BlockQ8_0]) -> Result<()> {
    let nb = src.len() / QK;
    if dst.len() != nb {
        return Err(Error::internal(format!("{} values into {} Q8_0 blocks", src.len(), dst.len())));
    }
    let (mut qs, mut d) = ([0i8; MAX_Q8_ROW], [0f32; MAX_Q8_ROW / QK]);
    quantize_q8_row(kernels, src, &mut qs, &mut d)?;
    for ((blk, q), &d) in dst.iter_mut().zip(qs.chunks_exact(QK)).zip(&d) {
        blk.d = crate::quant::f32_to_f16(d);
        blk.qs.copy_from_slice(q);
    }
    Ok(())
}

/// Quantize `src` (a multiple of 32 values, at most [`MAX_Q8_ROW`]) to Q8 quants in `qs` and
/// f16-rounded block scales in `d` (the first `src.len()` and `src.len() / 32` entries): what the
/// cache stores, and how attention quantizes a query for it.
pub(crate) fn quantize_q8_row(
    kernels: &Kernels,
    src: &[f32],
    qs: &mut [i8; MAX_Q8_ROW],
    d: &mut [f32; MAX_Q8_ROW / QK],
) -> Result<()> {
    let (n, nb) = (src.len(), src.len() / QK);
    if !n.is_multiple_of(QK) || n > MAX_Q8_ROW {
        return Err(Error::internal(format!("a Q8_0 row of {n} values")));
    }
    let (mut s, mut qsum) = ([0f32; MAX_Q8_ROW / QK], [0i32; MAX_Q8_ROW / QK]);
    kernels.quantize_q8(src, &mut qs[..n], &mut d[..nb], &mut s[..nb], &mut qsum[..nb]);
    Ok(())
}

/// The longest row (head dimension) a Q8_0 cache stores; longer ones are refused at creation.
pub(crate) const MAX_Q8_ROW: usize = 1024;
