//! Causal self-attention over the KV cache, one (token, head) pair at a time.
//!
//! Each query row attends to the cached keys of positions `lo ..= pos` (all earlier positions,
//! or the last `window` of them on sliding-window layers): scores `q·k · scale`, an optional
//! soft cap, softmax, then the weighted sum of the cached values. Every (row, head) pair is
//! computed the same way whatever the batch around it, which keeps a token's logits bitwise
//! equal whether it is scored alone or among drafted tokens (the batch's own keys are written to
//! the cache before any row attends, and a row never looks past its own position).
//!
//! Numerics: q stays f32, scores and the value sum are accumulated in f32 over the cached (f16)
//! keys and values, with a two-pass softmax (sum in f64). llama.cpp's CPU flash attention does
//! the same for batches of 64 queries or more; for smaller batches and single tokens it rounds q
//! to f16 and accumulates the values in f16, so its own logits depend on the batch size. We
//! keep the precise variant everywhere: one set of numerics for every batch. Over a Q8_0 cache
//! the query is quantized to Q8_0 as the keys are and scored by integer dot products, and the
//! values are summed in f32 (what llama.cpp does with a quantized cache).

use crate::error::{Error, Result};
use crate::kernels::{KernelPool, Kernels};

use super::kv_cache::{quantize_q8_row, KvCache, KvRows, KvType, MAX_Q8_ROW};
use super::plan::{TokenTree, MAX_BATCH};
use crate::quant::QK;

/// The shape and numerics of one layer's attention.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnParams {
    pub layer: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    /// Multiplies `q·k`.
    pub scale: f32,
    /// `cap · tanh(s / cap)` on the scaled scores.
    pub softcap: Option<f32>,
    /// Attend to at most this many positions (the own one included).
    pub window: Option<usize>,
}

/// `out` (`b × n_heads·head_dim_v`) = attention of the `b` query rows `q` (`b × n_heads·head_dim`)
/// at positions `start ..` over `cache` (which already holds their keys and values). `scores`
/// is per-worker scratch of at least `threads × (start + b)` values. With a `tree`, row `i`
/// (stored at `start + i`) sits at position `start + depth(i)` and sees the prefix and its
/// ancestors only (see [`TokenTree`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    pool: &KernelPool,
    cache: &KvCache,
    p: &AttnParams,
    start: usize,
    tree: Option<&TokenTree>,
    q: &[f32],
    out: &mut [f32],
    scores: &mut [f32],
) -> Result<()> {
    let (nh, hd, hdv) = (p.n_heads, p.head_dim, p.head_dim_v);
    if p.n_kv_heads == 0 || nh % p.n_kv_heads != 0 || !q.len().is_multiple_of(nh * hd) {
        return Err(Error::internal("attention shapes do not agree"));
    }
    let b = q.len() / (nh * hd);
    if out.len() != b * nh * hdv {
        return Err(Error::internal("attention output of the wrong size"));
    }
    let group = nh / p.n_kv_heads;
    let kernels = pool.kernels();
    pool.for_each_chunk(out, hdv, scores, |task, o, s| {
        let (row, head) = (task / nh, task % nh);
        let pos = start + tree.map_or(row, |t| t.depth(row));
        let kv_head = head / group;
        let lo = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        // Storage spans visited in position order: the chain's one span, or a tree row's prefix
        // and ancestors.
        let mut spans: [std::ops::Range<usize>; MAX_BATCH + 1] = Default::default();
        let n_spans = match tree {
            None => {
                spans[0] = lo..pos + 1;
                1
            }
            Some(t) => t.spans(row, start, lo, &mut spans),
        };
        let spans = &spans[..n_spans];
        let total: usize = spans.iter().map(|r| r.len()).sum();
        let s = s.get_mut(..total).ok_or_else(|| Error::internal("attention scratch too small"))?;
        let qh = &q[(row * nh + head) * hd..][..hd];
        // A Q8_0 cache scores the query quantized as its keys are (GGML's Q8_0 rounding).
        let q8 = match cache.kv_type() {
            KvType::Q8_0 => Some(Q8Query::new(kernels, qh)?),
            KvType::F16 | KvType::F32 => None,
        };
        // The span comes in position order as up to two pieces (a sliding-window ring wraps):
        // scores and the value sum visit the same positions in the same order either way.
        // (The cache's rows drive each `zip`, so no score or weight is skipped between pieces.)
        let mut done = 0;
        for span in spans {
            for part in cache.keys(p.layer, kv_head, span.clone())? {
                match part {
                    KvRows::F16(k) => {
                        let m = k.len() / hd;
                        let out =
                            s.get_mut(done..done + m).ok_or_else(|| Error::internal("too many keys"))?;
                        kernels.dot_f16_rows(k, qh, out)?;
                        done += m;
                    }
                    KvRows::Q8_0(k) => {
                        let m = k.len() / (hd / QK).max(1);
                        let out =
                            s.get_mut(done..done + m).ok_or_else(|| Error::internal("too many keys"))?;
                        let q8 = q8.as_ref().ok_or_else(|| Error::internal("Q8_0 keys, no Q8 query"))?;
                        kernels.dot_q8_rows(k, q8.qs(), q8.d(), out)?;
                        done += m;
                    }
                    KvRows::F32(k) => {
                        for kr in k.chunks_exact(hd) {
                            *s.get_mut(done).ok_or_else(|| Error::internal("too many keys"))? =
                                crate::quant::dot::dot_f32(kr, qh);
                            done += 1;
                        }
                    }
                }
            }
        }
        if done != s.len() {
            return Err(Error::internal("the KV cache returned too few keys"));
        }
        match p.softcap {
            Some(cap) => s.iter_mut().for_each(|v| *v = cap * (*v * p.scale / cap).tanh()),
            None => s.iter_mut().for_each(|v| *v *= p.scale),
        }
        kernels.softmax(s);
        o.fill(0.0);
        let mut done = 0;
        for span in spans {
            for part in cache.values(p.layer, kv_head, span.clone())? {
                match part {
                    KvRows::F16(v) => {
                        let m = v.len() / hdv;
                        let w = s.get(done..done + m).ok_or_else(|| Error::internal("too many values"))?;
                        kernels.axpy_f16_rows(w, v, o)?;
                        done += m;
                    }
                    KvRows::Q8_0(v) => {
                        let m = v.len() / (hdv / QK).max(1);
                        let w = s.get(done..done + m).ok_or_else(|| Error::internal("too many values"))?;
                        kernels.axpy_q8_rows(w, v, o)?;
                        done += m;
                    }
                    KvRows::F32(v) => {
                        for vr in v.chunks_exact(hdv) {
                            let w = *s.get(done).ok_or_else(|| Error::internal("too many values"))?;
                            o.iter_mut().zip(vr).for_each(|(o, &x)| *o = x.mul_add(w, *o));
                            done += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    })
}

/// A query row quantized to Q8_0 for scoring against a Q8_0 cache.
struct Q8Query {
    qs: [i8; MAX_Q8_ROW],
    d: [f32; MAX_Q8_ROW / QK],
    n: usize,
}

impl Q8Query {
    /// `q` (a multiple of 32 values, at most `MAX_Q8_ROW`) quantized as the cache's rows are.
    fn new(kernels: &Kernels, q: &[f32]) -> Result<Q8Query> {
        let mut out = Q8Query { qs: [0; MAX_Q8_ROW], d: [0.0; MAX_Q8_ROW / QK], n: q.len() };
        quantize_q8_row(kernels, q, &mut out.qs, &mut out.d)?;
        Ok(out)
    }

    fn qs(&self) -> &[i8] {
        &self.qs[..self.n]
    }

    fn d(&self) -> &[f32] {
        &self.d[..self.n / QK]
    }
}
