//! AVX2 kernels for a Q8_0 KV cache: attention scores against 8-bit keys and the weighted sum
//! of 8-bit values, bit-exact twins of `scalar::dot_q8_rows` / `scalar::axpy_q8_rows`.
//!
//! An 8-bit cache halves the bytes attention streams per position (34 per 32 values instead of
//! 64), which is what long contexts spend their time on. Scores are integer dots of each cached
//! key with the query quantized the same way (exact in any order, so they can be summed eight
//! keys at a time), then one f32 fused multiply-add per 32-block in block order, as the scalar
//! reference does.

use core::arch::x86_64::*;

use super::avx2::h2f;
use super::avx2_ops::{hsum8_i32, hsum_i32};
use crate::quant::{BlockQ8_0, QK};

/// How one key block's integer dot with the query is formed: `maddubs` + `madd` (AVX2) or one
/// `vpdpbusd` (AVX-512 VNNI). The sums are exact either way.
pub(super) trait KeyDot {
    /// The eight i32 partial sums of `|q|·(k·sign q)` over the 32-block at `k`. No i16 pair
    /// saturates on the AVX2 path: cache and query quants both come from the Q8 quantizer
    /// (|·| ≤ 127), so a pair is at most 32258.
    unsafe fn dot32(aq: __m256i, q: __m256i, k: *const i8) -> __m256i;
}

/// `maddubs` + `madd`.
pub(super) struct Avx2KeyDot;

impl KeyDot for Avx2KeyDot {
    #[inline(always)]
    unsafe fn dot32(aq: __m256i, q: __m256i, k: *const i8) -> __m256i {
        let kv = _mm256_loadu_si256(k.cast());
        let p = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(kv, q));
        _mm256_madd_epi16(p, _mm256_set1_epi16(1))
    }
}

/// Scores of the quantized query (`qs`, block scales `qd`) against each Q8_0 row of `rows`
/// (`qd.len()` blocks each): eight rows at a time, their eight integer sums per block in one
/// transposed reduction, then the reference's fused multiply-add per block for all eight.
// Always inlined, without features of its own: it takes those of the entry point (and `D`).
#[inline(always)]
pub(super) unsafe fn dot_q8_rows_with<D: KeyDot>(rows: &[BlockQ8_0], qs: &[i8], qd: &[f32], out: &mut [f32]) {
    let nb = qd.len();
    if nb == 0 || qs.len() != nb * QK || rows.len() != nb * out.len() {
        return;
    }
    let rp = rows.as_ptr();
    let mut octs = out.chunks_exact_mut(8);
    let mut r = 0;
    for o in octs.by_ref() {
        let mut acc = _mm256_setzero_ps();
        for (b, &d) in qd.iter().enumerate() {
            let q = _mm256_loadu_si256(qs.as_ptr().add(b * QK).cast());
            let aq = _mm256_sign_epi8(q, q);
            let mut s = [_mm256_setzero_si256(); 8];
            for (k, s) in s.iter_mut().enumerate() {
                *s = D::dot32(aq, q, (*rp.add((r + k) * nb + b)).qs.as_ptr());
            }
            let dk = |k: usize| (*rp.add((r + k) * nb + b)).d as i16;
            let dk = _mm256_cvtph_ps(_mm_setr_epi16(dk(0), dk(1), dk(2), dk(3), dk(4), dk(5), dk(6), dk(7)));
            let isum = _mm256_cvtepi32_ps(hsum8_i32(&s));
            acc = _mm256_fmadd_ps(isum, _mm256_mul_ps(dk, _mm256_set1_ps(d)), acc);
        }
        _mm256_storeu_ps(o.as_mut_ptr(), acc);
        r += 8;
    }
    for o in octs.into_remainder() {
        let mut acc = 0f32;
        for (b, &d) in qd.iter().enumerate() {
            let q = _mm256_loadu_si256(qs.as_ptr().add(b * QK).cast());
            let blk = &*rp.add(r * nb + b);
            let isum = hsum_i32(D::dot32(_mm256_sign_epi8(q, q), q, blk.qs.as_ptr()));
            acc = (isum as f32).mul_add(h2f(blk.d) * d, acc);
        }
        *o = acc;
        r += 1;
    }
}

/// [`dot_q8_rows_with`] on AVX2.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `qs.len() == 32·qd.len()` and `rows.len() ==
/// qd.len()·out.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q8_rows(rows: &[BlockQ8_0], qs: &[i8], qd: &[f32], out: &mut [f32]) {
    dot_q8_rows_with::<Avx2KeyDot>(rows, qs, qd, out)
}

/// `acc` (the `B` blocks of `y` at block `b0`, in registers) `+= Σ_i w_i · row_i` in row order.
/// Rows go eight at a time: their `w_i · d` for each block as one vector multiply (the same f32
/// products the reference forms one by one), stored and broadcast back (a load, no shuffle).
// Always inlined, without features of its own, so that it takes those of its caller; `B` fixed
// so that the accumulators stay in registers.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `k` indexes the rows and the scale table alike
unsafe fn axpy_span<const B: usize>(w: &[f32], rows: &[BlockQ8_0], nb: usize, b0: usize, yp: *mut f32) {
    let mut acc = [[_mm256_setzero_ps(); 4]; B];
    for (bb, acc) in acc.iter_mut().enumerate() {
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_loadu_ps(yp.add(bb * QK + 8 * j));
        }
    }
    let blk = |i: usize, bb: usize| &*rows.as_ptr().add(i * nb + b0 + bb);
    let mut wd = [[0f32; 8]; B];
    let mut r0 = 0;
    while r0 < w.len() {
        let count = (w.len() - r0).min(8);
        if count == 8 {
            let wv = _mm256_loadu_ps(w.as_ptr().add(r0));
            for (bb, wd) in wd.iter_mut().enumerate() {
                let d = |k: usize| blk(r0 + k, bb).d as i16;
                let dv = _mm256_cvtph_ps(_mm_setr_epi16(d(0), d(1), d(2), d(3), d(4), d(5), d(6), d(7)));
                _mm256_storeu_ps(wd.as_mut_ptr(), _mm256_mul_ps(wv, dv));
            }
        } else {
            for (bb, wd) in wd.iter_mut().enumerate() {
                for (k, wd) in wd.iter_mut().enumerate().take(count) {
                    *wd = w[r0 + k] * h2f(blk(r0 + k, bb).d);
                }
            }
        }
        for k in 0..count {
            for (bb, acc) in acc.iter_mut().enumerate() {
                let qs = blk(r0 + k, bb).qs.as_ptr();
                let s = _mm256_broadcast_ss(&wd[bb][k]);
                for (j, acc) in acc.iter_mut().enumerate() {
                    let q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(qs.add(8 * j).cast()));
                    *acc = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(q), *acc);
                }
            }
        }
        r0 += count;
    }
    for (bb, acc) in acc.iter().enumerate() {
        for (j, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(yp.add(bb * QK + 8 * j), *acc);
        }
    }
}

/// `y += Σ_i w_i · rows_i` over Q8_0 rows of `y.len()` values, as the scalar reference: per row
/// and block `w_i · d` once, then one fused multiply-add per element, rows in order. `y` is kept
/// in registers two blocks (64 values) at a time.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `y.len()` a multiple of 32 and `rows.len() ==
/// y.len() / 32 · w.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_q8_rows(w: &[f32], rows: &[BlockQ8_0], y: &mut [f32]) {
    let nb = y.len() / QK;
    if nb == 0 || !y.len().is_multiple_of(QK) || rows.len() != nb * w.len() {
        return;
    }
    let mut b0 = 0;
    while b0 + 2 <= nb {
        axpy_span::<2>(w, rows, nb, b0, y.as_mut_ptr().add(b0 * QK));
        b0 += 2;
    }
    if b0 < nb {
        axpy_span::<1>(w, rows, nb, b0, y.as_mut_ptr().add(b0 * QK));
    }
}
