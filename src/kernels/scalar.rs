//! Scalar kernels: portable twins of every SIMD kernel, with the same signatures.
//!
//! They run the reference arithmetic of [`crate::quant::dot`] over the kernels' activation layout,
//! so their results are the specification: the AVX2 and NEON kernels must match them bit for bit
//! (tests check it on random blocks). `EDGESPEC_KERNELS=scalar` selects them at run time.

use half::{bf16, f16};

use crate::quant::dot::{k_lanes, k_term, legacy_term, KWeight, Lanes8, LegacyWeight};
use crate::quant::{f16_to_f32, round_f16, BlockQ8_0, BlockQ8_K, Interleaved, QK, QK_K, ROWS_X8};

use super::acts::{ActsView, MAX_COLUMNS};

/// Legacy weights (`nb` blocks per row) against Q8 activations; `out` is `rows × b`, row-major.
pub(crate) fn rows_legacy<W: LegacyWeight>(w: &[W], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    let (b, n, st) = (acts.b, acts.n, acts.q8_stride);
    for (row, out) in w.chunks_exact(nb).zip(out.chunks_exact_mut(b)) {
        let mut lanes = [Lanes8::default(); MAX_COLUMNS];
        for (i, blk) in row.iter().enumerate() {
            let (dw, mw) = (blk.scale(), blk.min());
            for (c, lanes) in lanes.iter_mut().enumerate().take(b) {
                let a = &acts.q8_qs[c * n + QK * i..c * n + QK * i + QK];
                let Ok(a) = <&[i8; QK]>::try_from(a) else { continue };
                let min = mw.map(|m| (m, acts.q8_s[c * st + i]));
                legacy_term(lanes, i, blk.isum(a), dw, acts.q8_d[c * st + i], min);
            }
        }
        for (o, l) in out.iter_mut().zip(&lanes) {
            *o = l.sum();
        }
    }
}

/// Row-interleaved legacy weights (`nb` records per group of eight rows, see
/// [`crate::quant::interleaved`]) against Q8 activations: every row's terms exactly as
/// [`rows_legacy`] adds them, so the results are bitwise the same as the plain layout's.
pub(crate) fn rows_x8<X: Interleaved>(w: &[X], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    let (b, n, st) = (acts.b, acts.n, acts.q8_stride);
    for (group, out) in w.chunks_exact(nb).zip(out.chunks_exact_mut(ROWS_X8 * b)) {
        let mut lanes = [[Lanes8::default(); MAX_COLUMNS]; ROWS_X8];
        for (i, rec) in group.iter().enumerate() {
            for (r, lanes) in lanes.iter_mut().enumerate() {
                let blk = rec.row(r);
                let (dw, mw) = (blk.scale(), blk.min());
                for (c, lanes) in lanes.iter_mut().enumerate().take(b) {
                    let a = &acts.q8_qs[c * n + QK * i..c * n + QK * i + QK];
                    let Ok(a) = <&[i8; QK]>::try_from(a) else { continue };
                    let min = mw.map(|m| (m, acts.q8_s[c * st + i]));
                    legacy_term(lanes, i, blk.isum(a), dw, acts.q8_d[c * st + i], min);
                }
            }
        }
        for (out, lanes) in out.chunks_exact_mut(b).zip(&lanes) {
            for (o, l) in out.iter_mut().zip(lanes) {
                *o = l.sum();
            }
        }
    }
}

/// K-quant weights (`nb` super-blocks per row) against Q8_K activations.
pub(crate) fn rows_k<W: KWeight>(w: &[W], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    let (b, n) = (acts.b, acts.n);
    let nk = n / QK_K;
    for (row, out) in w.chunks_exact(nb).zip(out.chunks_exact_mut(b)) {
        let mut lanes = [Lanes8::default(); MAX_COLUMNS];
        for (i, blk) in row.iter().enumerate() {
            let u = blk.unpack_k();
            for (c, lanes) in lanes.iter_mut().enumerate().take(b) {
                let a = &acts.k_qs[c * n + QK_K * i..c * n + QK_K * (i + 1)];
                let bs = &acts.k_bsums[c * (n / 16) + 16 * i..c * (n / 16) + 16 * (i + 1)];
                let (Ok(a), Ok(bs)) = (<&[i8; QK_K]>::try_from(a), <&[i16; 16]>::try_from(bs)) else {
                    continue;
                };
                let (isum, corr) = k_lanes(&u, a, bs);
                k_term(lanes, &u, isum, corr, acts.k_d[c * nk + i]);
            }
        }
        for (o, l) in out.iter_mut().zip(&lanes) {
            *o = l.sum();
        }
    }
}

fn rows_float<T: Copy>(w: &[T], n: usize, acts: &ActsView<'_>, out: &mut [f32], conv: impl Fn(T) -> f32) {
    for (row, out) in w.chunks_exact(n).zip(out.chunks_exact_mut(acts.b)) {
        for (o, x) in out.iter_mut().zip(acts.f.chunks_exact(n)) {
            let mut lanes = Lanes8::default();
            for (i, (&w, &x)) in row.iter().zip(x).enumerate() {
                lanes.fma(i, conv(w), x);
            }
            *o = lanes.sum();
        }
    }
}

/// F32 rows of `n` against f32 activations.
pub(crate) fn rows_f32(w: &[f32], n: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    rows_float(w, n, acts, out, |v| v)
}

/// F16 rows of `n` against f32 activations.
pub(crate) fn rows_f16(w: &[f16], n: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    rows_float(w, n, acts, out, |v| f16_to_f32(v.to_bits()))
}

/// BF16 rows of `n` against f32 activations.
pub(crate) fn rows_bf16(w: &[bf16], n: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    rows_float(w, n, acts, out, |v| crate::quant::bf16_to_f32(v.to_bits()))
}

/// Quantize one column to Q8 (GGML's Q8_0/Q8_1 reference rounding): quants, f16-rounded scales,
/// f16-rounded `d·Σq`, and exact `Σq` per 32-block.
pub(crate) fn quantize_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], qsum: &mut [i32]) {
    let blocks = x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK));
    for ((((x, q), d), s), qsum) in blocks.zip(d.iter_mut()).zip(s.iter_mut()).zip(qsum.iter_mut()) {
        let Ok(x) = <&[f32; QK]>::try_from(x) else { continue };
        let (scale, quants) = crate::quant::quantize_q8(x);
        q.copy_from_slice(&quants);
        let sum: i32 = quants.iter().map(|&v| v as i32).sum();
        *d = round_f16(scale);
        *s = round_f16(sum as f32 * scale);
        *qsum = sum;
    }
}

/// Quantize one column to Q8_K (GGML's reference rounding).
pub(crate) fn quantize_q8k(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    let blocks = x.chunks_exact(QK_K).zip(qs.chunks_exact_mut(QK_K)).zip(bsums.chunks_exact_mut(16));
    for (((x, q), bs), d) in blocks.zip(d.iter_mut()) {
        let Ok(x) = <&[f32; QK_K]>::try_from(x) else { continue };
        let blk = BlockQ8_K::quantize(x);
        q.copy_from_slice(&blk.qs);
        bs.copy_from_slice(&blk.bsums);
        *d = blk.d;
    }
}

/// `Σ a_i · x_i` over an f16 row and f32 values, accumulated as [`Lanes8`].
pub(crate) fn dot_f16_f32(a: &[f16], x: &[f32]) -> f32 {
    crate::quant::dot::dot_f16(a, x)
}

/// `y_i = fma(alpha, x_i, y_i)` for an f16 `x`.
pub(crate) fn axpy_f16(alpha: f32, x: &[f16], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = alpha.mul_add(f16_to_f32(x.to_bits()), *y);
    }
}

/// [`dot_f16_f32`] of `x` with each row of `rows`.
pub(crate) fn dot_f16_rows(rows: &[f16], x: &[f32], out: &mut [f32]) {
    for (o, r) in out.iter_mut().zip(rows.chunks_exact(x.len().max(1))) {
        *o = dot_f16_f32(r, x);
    }
}

/// [`axpy_f16`] of each row of `rows`, in order.
pub(crate) fn axpy_f16_rows(w: &[f32], rows: &[f16], y: &mut [f32]) {
    let n = y.len().max(1);
    for (&w, r) in w.iter().zip(rows.chunks_exact(n)) {
        axpy_f16(w, r, y);
    }
}

/// f32 → f16, rounding to nearest even.
pub(crate) fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f16::from_bits(crate::quant::f32_to_f16(*s));
    }
}

/// f16 → f32.
pub(crate) fn f16_to_f32_row(src: &[f16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f16_to_f32(s.to_bits());
    }
}

/// `gate_i = silu(gate_i)·up_i` over the common length.
pub(crate) fn silu_mul(gate: &mut [f32], up: &[f32]) {
    gate.iter_mut().zip(up).for_each(|(g, &u)| *g = super::ops::silu(*g) * u);
}

/// `gate_i = gelu(gate_i)·up_i` over the common length.
pub(crate) fn gelu_mul(gate: &mut [f32], up: &[f32]) {
    gate.iter_mut().zip(up).for_each(|(g, &u)| *g = super::ops::gelu(*g) * u);
}

/// Attention scores over a Q8_0 KV cache: `out[r] = Σ_b isum(r, b) · (d_r,b · qd_b)`, one fused
/// multiply-add per 32-block in block order, where `isum` is the exact integer dot of row `r`'s
/// block `b` with the quantized query (`qs`, scales `qd`, as [`quantize_q8`] gives them). The
/// integer sums are exact in any order, so every table matches this bit for bit.
pub(crate) fn dot_q8_rows(rows: &[BlockQ8_0], qs: &[i8], qd: &[f32], out: &mut [f32]) {
    let nb = qd.len();
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(nb.max(1))) {
        let mut acc = 0f32;
        for ((blk, q), &d) in row.iter().zip(qs.chunks_exact(QK)).zip(qd) {
            let isum: i32 = blk.qs.iter().zip(q).map(|(&a, &b)| a as i32 * b as i32).sum();
            acc = (isum as f32).mul_add(f16_to_f32(blk.d) * d, acc);
        }
        *o = acc;
    }
}

/// The weighted sum of Q8_0 value rows: for each row `r` in order and each of its blocks,
/// `y_i = fma(w_r · d_r,b, q_i, y_i)` (the row's weight times its block scale rounded to f32 once,
/// then one fused multiply-add per element).
pub(crate) fn axpy_q8_rows(w: &[f32], rows: &[BlockQ8_0], y: &mut [f32]) {
    let nb = y.len() / QK;
    for (&w, row) in w.iter().zip(rows.chunks_exact(nb.max(1))) {
        for (blk, y) in row.iter().zip(y.chunks_exact_mut(QK)) {
            let wd = w * f16_to_f32(blk.d);
            for (y, &q) in y.iter_mut().zip(&blk.qs) {
                *y = wd.mul_add(q as f32, *y);
            }
        }
    }
}
