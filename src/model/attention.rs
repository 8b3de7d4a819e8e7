//! Causal self-attention over the KV cache, one (token, KV head) pair at a time: the query heads
//! that share a KV head (grouped-query attention) read its cached rows together, each row
//! converted from f16 once for all of them.
//!
//! Each query row attends to the cached keys of positions `lo ..= pos` (all earlier positions,
//! or the last `window` of them on sliding-window layers): scores `q·k · scale`, an optional
//! soft cap, softmax, then the weighted sum of the cached values. Every (row, head) pair is
//! computed the same way whatever the batch around it, which keeps a token's logits bitwise
//! equal whether it is scored alone or among drafted tokens (the batch's own keys are written to
//! the cache before any row attends, and a row never looks past its own position); computing a
//! head together with the others of its group changes no result either (the multi-query kernels
//! are bitwise equal to one query at a time).
//!
//! Numerics: q stays f32, scores and the value sum are accumulated in f32 over the cached (f16)
//! keys and values, with a two-pass softmax (sum in f64). llama.cpp's CPU flash attention does
//! the same for batches of 64 queries or more; for smaller batches and single tokens it rounds q
//! to f16 and accumulates the values in f16, so its own logits depend on the batch size. We
//! keep the precise variant everywhere: one set of numerics for every batch.

use crate::error::{Error, Result};
use crate::kernels::{ops, KernelPool};

use super::kv_cache::{KvCache, KvRows};
use super::plan::MAX_BATCH;
use super::tree::TokenTree;

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
/// is per-worker scratch of at least `threads × group × (start + b)` values (`group`: query heads
/// per KV head). With a `tree`, row `i` (stored at `start + i`) sits at position `start +
/// depth(i)` and sees the prefix and its ancestors only (see [`TokenTree`]).
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
    // A task: one row's query heads of one KV head, `group × hdv` contiguous outputs.
    pool.for_each_chunk(out, group * hdv, scores, |task, o, s| {
        let (row, kv_head) = (task / p.n_kv_heads, task % p.n_kv_heads);
        let pos = start + tree.map_or(row, |t| t.depth(row));
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
        // Head `j` of the group scores into `s[j·total..][..total]`.
        let s = s.get_mut(..group * total).ok_or_else(|| Error::internal("attention scratch too small"))?;
        let qs = &q[(row * nh + kv_head * group) * hd..][..group * hd];
        // The span comes in position order as up to two pieces (a sliding-window ring wraps):
        // scores and the value sum visit the same positions in the same order either way.
        // (The cache's rows drive each `zip`, so no score or weight is skipped between pieces.)
        let mut done = 0;
        for span in spans {
            for part in cache.keys(p.layer, kv_head, span.clone())? {
                match part {
                    KvRows::F16(k) => {
                        let m = k.len() / hd;
                        if done + m > total {
                            return Err(Error::internal("too many keys"));
                        }
                        kernels.dot_f16_rows_multi(k, qs, hd, &mut s[done..], total)?;
                        done += m;
                    }
                    KvRows::F32(k) => {
                        for kr in k.chunks_exact(hd) {
                            if done >= total {
                                return Err(Error::internal("too many keys"));
                            }
                            for (j, qh) in qs.chunks_exact(hd).enumerate() {
                                s[j * total + done] = crate::quant::dot::dot_f32(kr, qh);
                            }
                            done += 1;
                        }
                    }
                }
            }
        }
        if done != total {
            return Err(Error::internal("the KV cache returned too few keys"));
        }
        for sh in s.chunks_exact_mut(total.max(1)) {
            match p.softcap {
                Some(cap) => sh.iter_mut().for_each(|v| *v = cap * (*v * p.scale / cap).tanh()),
                None => sh.iter_mut().for_each(|v| *v *= p.scale),
            }
            ops::softmax(sh);
        }
        o.fill(0.0);
        let mut done = 0;
        for span in spans {
            for part in cache.values(p.layer, kv_head, span.clone())? {
                match part {
                    KvRows::F16(v) => {
                        let m = v.len() / hdv;
                        if done + m > total {
                            return Err(Error::internal("too many values"));
                        }
                        kernels.axpy_f16_rows_multi(&s[done..], v, hdv, o, total)?;
                        done += m;
                    }
                    KvRows::F32(v) => {
                        for vr in v.chunks_exact(hdv) {
                            if done >= total {
                                return Err(Error::internal("too many values"));
                            }
                            for (j, oh) in o.chunks_exact_mut(hdv).enumerate() {
                                let w = s[j * total + done];
                                oh.iter_mut().zip(vr).for_each(|(o, &x)| *o = x.mul_add(w, *o));
                            }
                            done += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    })
}
