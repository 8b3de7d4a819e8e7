//! Quantizing f32 values into K-quant super-blocks: Q8_K (activations, GGML's exact rounding),
//! and Q4_K and Q6_K (test weights and the future `quantize` tool).
//!
//! The weight quantizers search a few candidate scales per group and refit each by least squares
//! (a standard approach; the bits they produce are valid GGML blocks but are not promised to equal
//! llama.cpp's choices). Q8_K follows GGML's reference exactly, because activation rounding decides
//! whether our logits match llama.cpp's.

use super::float::{f16_to_f32, f32_to_f16};
use super::kquants::{BlockQ4_K, BlockQ6_K, BlockQ8_K};
use super::QK_K;

/// Round half to even, what GGML's `nearest_int` does for the magnitudes quantizers produce.
#[inline]
pub(crate) fn round_even(x: f32) -> f32 {
    x.round_ties_even()
}

impl BlockQ8_K {
    /// Quantize as GGML's reference: take `max`, the value of largest magnitude (the first one on
    /// ties), `iscale = −127 / max`, `q = min(127, round_even(iscale · x))`, `d = 1 / iscale`.
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let mut b = BlockQ8_K { d: 0.0, qs: [0; QK_K], bsums: [0; 16] };
        if amax == 0.0 {
            return b;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = round_even(iscale * v).min(127.0) as i8;
        }
        for (s, g) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = g.iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
        b
    }
}

/// Least-squares fit of `x ≈ scale · l + offset` (weights `w`), for the quantized levels `l`.
/// Returns `(scale, offset)`; with `fixed_offset` set the offset is held there.
fn refit(x: &[f32], w: &[f32], l: &[u8], fixed_offset: Option<f32>) -> (f32, f32) {
    let (mut sw, mut sl, mut sx, mut sll, mut slx) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for ((&x, &w), &l) in x.iter().zip(w).zip(l) {
        let (x, w, l) = (x as f64, w as f64, l as f64);
        sw += w;
        sl += w * l;
        sx += w * x;
        sll += w * l * l;
        slx += w * l * x;
    }
    if let Some(off) = fixed_offset {
        let off = off as f64;
        return if sll > 0.0 { (((slx - off * sl) / sll) as f32, off as f32) } else { (0.0, off as f32) };
    }
    let det = sw * sll - sl * sl;
    if det <= 0.0 {
        return (0.0, (sx / sw.max(1e-30)) as f32);
    }
    (((sw * slx - sl * sx) / det) as f32, ((sll * sx - sl * slx) / det) as f32)
}

/// Weighted squared error of `scale · l + offset` against `x`.
fn error(x: &[f32], w: &[f32], l: &[u8], scale: f32, offset: f32) -> f32 {
    x.iter().zip(w).zip(l).map(|((&x, &w), &l)| w * (scale * l as f32 + offset - x).powi(2)).sum()
}

/// Weights that favour large-magnitude values, as quantizers for LLM weights usually do.
fn importance(x: &[f32], out: &mut [f32]) {
    let rms = (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    for (o, v) in out.iter_mut().zip(x) {
        *o = rms + v.abs();
    }
}

/// Best `(scale ≥ 0, min ≥ 0)` with `x ≈ scale · l − min`, `l ∈ 0..=nmax`, by trying several
/// inverse scales around `nmax / (max − min)` and refitting each (at most 32 values). Writes the
/// levels to `l`.
fn fit_scale_min(x: &[f32], w: &[f32], nmax: u8, l: &mut [u8]) -> (f32, f32) {
    let max = x.iter().fold(f32::MIN, |a, &v| a.max(v));
    let min = x.iter().fold(f32::MAX, |a, &v| a.min(v)).min(0.0);
    if max <= min {
        l.fill(0);
        return (0.0, -min);
    }
    let mut best = (f32::INFINITY, 0f32, -min);
    let mut cand = [0u8; 32];
    let cand = &mut cand[..x.len()];
    for step in -10..=10 {
        let iscale = (nmax as f32 + 0.1 * step as f32) / (max - min);
        for (c, &v) in cand.iter_mut().zip(x) {
            *c = round_even(iscale * (v - min)).clamp(0.0, nmax as f32) as u8;
        }
        let (mut scale, mut offset) = refit(x, w, cand, None);
        if offset > 0.0 {
            (scale, offset) = refit(x, w, cand, Some(0.0));
        }
        if scale <= 0.0 {
            continue;
        }
        let err = error(x, w, cand, scale, offset);
        if err < best.0 {
            best = (err, scale, -offset);
            l.copy_from_slice(cand);
        }
    }
    if best.0.is_infinite() {
        l.fill(0);
        return (0.0, -min);
    }
    (best.1, best.2)
}

/// Best signed scale with `x ≈ scale · l`, `l ∈ −nmax..nmax−1` (at most 32 values), searching
/// inverse scales around `−nmax / max` (`max` the value of largest magnitude) and refitting each.
fn fit_scale_symmetric(x: &[f32], w: &[f32], nmax: i32) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        return 0.0;
    }
    let mut best = (f32::INFINITY, 0f32);
    for step in -9..=9 {
        let iscale = -(nmax as f32 + 0.1 * step as f32) / max;
        let (mut num, mut den) = (0f64, 0f64);
        let mut lv = [0f32; 32];
        for ((l, &v), &w) in lv.iter_mut().zip(x).zip(w) {
            *l = round_even(iscale * v).clamp(-nmax as f32, (nmax - 1) as f32);
            num += (w * v * *l) as f64;
            den += (w * *l * *l) as f64;
        }
        if den <= 0.0 {
            continue;
        }
        let scale = (num / den) as f32;
        let err: f32 = x.iter().zip(w).zip(&lv).map(|((&v, &w), &l)| w * (scale * l - v).powi(2)).sum();
        if err < best.0 {
            best = (err, scale);
        }
    }
    best.1
}

impl BlockQ4_K {
    /// Quantize 256 values: per 32-group a searched (scale, min), then 6-bit scales and mins under
    /// f16 super-scales, then the 4-bit levels recomputed against the quantized scales.
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        let mut w = [0f32; 32];
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
        for j in 0..8 {
            let xs = &x[32 * j..32 * j + 32];
            importance(xs, &mut w);
            (scales[j], mins[j]) = fit_scale_min(xs, &w, 15, &mut l[32 * j..32 * j + 32]);
        }
        let max_scale = scales.iter().fold(0f32, |a, &s| a.max(s));
        let max_min = mins.iter().fold(0f32, |a, &m| a.max(m));
        let inv_s = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
        let inv_m = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        let sc: [u8; 8] = std::array::from_fn(|j| round_even(inv_s * scales[j]).min(63.0) as u8);
        let mn: [u8; 8] = std::array::from_fn(|j| round_even(inv_m * mins[j]).min(63.0) as u8);
        let d = f32_to_f16(max_scale / 63.0);
        let dmin = f32_to_f16(max_min / 63.0);
        let (df, dminf) = (f16_to_f32(d), f16_to_f32(dmin));
        for j in 0..8 {
            let ds = df * sc[j] as f32;
            let dm = dminf * mn[j] as f32;
            for e in 32 * j..32 * j + 32 {
                l[e] = if ds > 0.0 { round_even((x[e] + dm) / ds).clamp(0.0, 15.0) as u8 } else { 0 };
            }
        }
        let mut s = [0u8; 12];
        for j in 0..4 {
            s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            s[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            s[j + 8] = (sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4);
        }
        let mut qs = [0u8; 128];
        for i in 0..4 {
            for k in 0..32 {
                qs[32 * i + k] = l[64 * i + k] | (l[64 * i + 32 + k] << 4);
            }
        }
        BlockQ4_K { d, dmin, scales: s, qs }
    }
}

impl BlockQ6_K {
    /// Quantize 256 values: per 16-group a searched signed scale, then 8-bit scales under an f16
    /// super-scale, then the 6-bit levels recomputed against the quantized scales.
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        let mut w = [0f32; 16];
        let mut scales = [0f32; 16];
        for (g, s) in scales.iter_mut().enumerate() {
            let xs = &x[16 * g..16 * g + 16];
            importance(xs, &mut w);
            *s = fit_scale_symmetric(xs, &w, 32);
        }
        let (mut amax, mut max) = (0f32, 0f32);
        for &s in &scales {
            if s.abs() > amax {
                amax = s.abs();
                max = s;
            }
        }
        let mut b = BlockQ6_K { ql: [0; 128], qh: [0; 64], scales: [0; 16], d: 0 };
        let mut l = [32u8; QK_K];
        if amax > 0.0 {
            let iscale = -128.0 / max;
            for (q, &s) in b.scales.iter_mut().zip(&scales) {
                *q = round_even(iscale * s).clamp(-128.0, 127.0) as i8;
            }
            b.d = f32_to_f16(1.0 / iscale);
            let d = f16_to_f32(b.d);
            for g in 0..16 {
                let ds = d * b.scales[g] as f32;
                if ds == 0.0 {
                    continue;
                }
                for e in 16 * g..16 * g + 16 {
                    l[e] = (round_even(x[e] / ds).clamp(-32.0, 31.0) as i32 + 32) as u8;
                }
            }
        }
        for h in 0..2 {
            for k in 0..32 {
                let q: [u8; 4] = std::array::from_fn(|i| l[128 * h + 32 * i + k]);
                b.ql[64 * h + k] = (q[0] & 0x0f) | ((q[2] & 0x0f) << 4);
                b.ql[64 * h + 32 + k] = (q[1] & 0x0f) | ((q[3] & 0x0f) << 4);
                b.qh[32 * h + k] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
            }
        }
        b
    }
}
