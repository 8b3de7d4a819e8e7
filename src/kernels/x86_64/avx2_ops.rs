//! AVX2 + FMA + F16C versions of the float-row dot products, the activation quantizers and the
//! f16 vector ops (KV cache), bit-exact twins of their scalar versions (see `avx2.rs` for the
//! conventions all AVX2 kernels follow).

use core::arch::x86_64::*;

use half::{bf16, f16};

use super::avx2::hsum;
use crate::kernels::acts::ActsView;
use crate::quant::{QK, QK_K};

// ---------------------------------------------------------------------------------------------
// Float rows
// ---------------------------------------------------------------------------------------------

/// Float rows of `n` against f32 columns; `load(row, i, count)` widens `count ≤ 8` weights at `i`
/// (zero-filled beyond `count`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn rows_float<T: Copy>(
    w: &[T],
    n: usize,
    acts: &ActsView<'_>,
    out: &mut [f32],
    load: unsafe fn(&[T], usize, usize) -> __m256,
) {
    let b = acts.b;
    let full = n / 8 * 8;
    for (row, out) in w.chunks_exact(n).zip(out.chunks_exact_mut(b)) {
        let mut c0 = 0;
        while c0 < b {
            // Four columns at a time share each widened weight vector.
            let cols = (b - c0).min(4);
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i < full {
                let wv = load(row, i, 8);
                for (k, acc) in acc.iter_mut().enumerate().take(cols) {
                    let x = _mm256_loadu_ps(acts.f.as_ptr().add((c0 + k) * n + i));
                    *acc = _mm256_fmadd_ps(wv, x, *acc);
                }
                i += 8;
            }
            if full < n {
                let rest = n - full;
                let wv = load(row, full, rest);
                for (k, acc) in acc.iter_mut().enumerate().take(cols) {
                    let mut xs = [0f32; 8];
                    xs[..rest].copy_from_slice(&acts.f[(c0 + k) * n + full..(c0 + k) * n + n]);
                    *acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs.as_ptr()), *acc);
                }
            }
            for k in 0..cols {
                out[c0 + k] = hsum(acc[k]);
            }
            c0 += cols;
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f32(row: &[f32], i: usize, count: usize) -> __m256 {
    if count == 8 {
        return _mm256_loadu_ps(row.as_ptr().add(i));
    }
    let mut v = [0f32; 8];
    v[..count].copy_from_slice(&row[i..i + count]);
    _mm256_loadu_ps(v.as_ptr())
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16(row: &[f16], i: usize, count: usize) -> __m256 {
    if count == 8 {
        return _mm256_cvtph_ps(_mm_loadu_si128(row.as_ptr().add(i).cast()));
    }
    let mut v = [f16::ZERO; 8];
    v[..count].copy_from_slice(&row[i..i + count]);
    _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().cast()))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_bf16(row: &[bf16], i: usize, count: usize) -> __m256 {
    let mut v = [bf16::ZERO; 8];
    let p = if count == 8 {
        row.as_ptr().add(i)
    } else {
        v[..count].copy_from_slice(&row[i..i + count]);
        v.as_ptr()
    };
    let wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
    _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16))
}

/// F32 row kernel (see `RowsFn`).
///
/// # Safety
/// AVX2, FMA and F16C must be available; the `RowsFn` shape contract must hold.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn rows_f32(w: &[f32], n: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    rows_float(w, n, acts, out, load_f32)
}

/// F16 row kernel (see `RowsFn`).
///
/// # Safety
/// As [`rows_f32`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn rows_f16(w: &[f16], n: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    rows_float(w, n, acts, out, load_f16)
}

/// BF16 row kernel (see `RowsFn`).
///
/// # Safety
/// As [`rows_f32`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn rows_bf16(w: &[bf16], n: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    rows_float(w, n, acts, out, load_bf16)
}

// ---------------------------------------------------------------------------------------------
// Activation quantization
// ---------------------------------------------------------------------------------------------

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn abs_ps(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn hmax(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let t = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(t, _mm_shuffle_ps(t, t, 1)))
}

/// Round half away from zero, exactly as `f32::round` for |x| < 2^23.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn round_away(x: __m256) -> __m256 {
    let t = _mm256_round_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    let frac = abs_ps(_mm256_sub_ps(x, t));
    let up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5), _CMP_GE_OQ);
    let one = _mm256_or_ps(_mm256_set1_ps(1.0), _mm256_and_ps(x, _mm256_set1_ps(-0.0)));
    _mm256_add_ps(t, _mm256_and_ps(up, one))
}

/// Pack 4×8 i32 (each in i8 range) to 32 i8 in order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn pack_i8(v: [__m256i; 4]) -> __m256i {
    let p01 = _mm256_packs_epi32(v[0], v[1]);
    let p23 = _mm256_packs_epi32(v[2], v[3]);
    let p = _mm256_packs_epi16(p01, p23);
    _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01)))
}

/// Q8 column quantizer (see `Kernels::quantize_q8`); bit-exact with the scalar one.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `x.len() == qs.len()`, a multiple of 32, and `d`, `s`,
/// `qsum` at least `x.len() / 32` long.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], qsum: &mut [i32]) {
    let nb = x.len() / QK;
    // Eight blocks at a time: their maxima, scales and sums are one register each (lane k =
    // block k), so the divisions, f16 roundings and horizontal reductions are done once per eight
    // blocks instead of once per block (one block at a time, each block's long chain of them set
    // the pace). Every lane computes exactly what the one-block code does.
    let whole = nb / 8 * 8;
    for g in (0..whole).step_by(8) {
        let mut m = [_mm256_setzero_ps(); 8];
        for (k, m) in m.iter_mut().enumerate() {
            let p = x.as_ptr().add(QK * (g + k));
            *m = _mm256_max_ps(
                _mm256_max_ps(abs_ps(_mm256_loadu_ps(p)), abs_ps(_mm256_loadu_ps(p.add(8)))),
                _mm256_max_ps(abs_ps(_mm256_loadu_ps(p.add(16))), abs_ps(_mm256_loadu_ps(p.add(24)))),
            );
        }
        // The maxima are exact whatever the order they are taken in.
        let amax = hmax8(&m);
        let scale = _mm256_div_ps(amax, _mm256_set1_ps(127.0));
        let nonzero = _mm256_cmp_ps(scale, _mm256_setzero_ps(), _CMP_NEQ_OQ);
        let ids = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0), scale), nonzero);
        let mut sums = [_mm256_setzero_si256(); 8];
        for (k, sum) in sums.iter_mut().enumerate() {
            let p = x.as_ptr().add(QK * (g + k));
            let id = _mm256_permutevar8x32_ps(ids, _mm256_set1_epi32(k as i32));
            let mut q = [_mm256_setzero_si256(); 4];
            for (j, q) in q.iter_mut().enumerate() {
                *q = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(p.add(8 * j)), id)));
            }
            *sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            _mm256_storeu_si256(qs.as_mut_ptr().add(QK * (g + k)).cast(), pack_i8(q));
        }
        let total = hsum8_i32(&sums);
        // Scale and d·Σq through f16 and back (F16C rounds to nearest even, as the scalar
        // conversion does); Σq (|Σq| ≤ 32·127) converts to f32 exactly.
        _mm256_storeu_ps(d.as_mut_ptr().add(g), round_f16x8(scale));
        _mm256_storeu_ps(s.as_mut_ptr().add(g), round_f16x8(_mm256_mul_ps(_mm256_cvtepi32_ps(total), scale)));
        _mm256_storeu_si256(qsum.as_mut_ptr().add(g).cast(), total);
    }
    for i in whole..nb {
        let p = x.as_ptr().add(QK * i);
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let m = _mm256_max_ps(
            _mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])),
            _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])),
        );
        let amax = hmax(m);
        let scale = amax / 127.0;
        let id = _mm256_set1_ps(if scale != 0.0 { 1.0 / scale } else { 0.0 });
        let mut q = [_mm256_setzero_si256(); 4];
        for (q, v) in q.iter_mut().zip(v) {
            *q = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v, id)));
        }
        let total = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        _mm256_storeu_si256(qs.as_mut_ptr().add(QK * i).cast(), pack_i8(q));
        // Scale and d·Σq through f16 and back, both at once.
        let pair = _mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_setr_ps(
            scale,
            total as f32 * scale,
            0.0,
            0.0,
        )));
        *d.get_unchecked_mut(i) = _mm_cvtss_f32(pair);
        *s.get_unchecked_mut(i) = _mm_cvtss_f32(_mm_movehdup_ps(pair));
        *qsum.get_unchecked_mut(i) = total;
    }
}

/// Eight f32 rounded to f16 and back (to nearest, ties to even).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn round_f16x8(v: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
}

/// The maximum of each of eight registers, as one register (lane k = `hmax(v[k])`; maxima are
/// exact in any order).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn hmax8(v: &[__m256; 8]) -> __m256 {
    reduce8::<true>(v)
}

/// The sum of each of eight registers of i32, as one register (lane k = `hsum_i32(v[k])`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn hsum8_i32(v: &[__m256i; 8]) -> __m256i {
    let mut s = [_mm256_setzero_si256(); 4];
    for (k, s) in s.iter_mut().enumerate() {
        let lo = _mm256_permute2x128_si256::<0x20>(v[k], v[k + 4]);
        let hi = _mm256_permute2x128_si256::<0x31>(v[k], v[k + 4]);
        *s = _mm256_add_epi32(lo, hi);
    }
    // Rows (0, 1) and (2, 3) per half, then one horizontal add: lanes in row order.
    let t01 = _mm256_add_epi32(_mm256_unpacklo_epi64(s[0], s[1]), _mm256_unpackhi_epi64(s[0], s[1]));
    let t23 = _mm256_add_epi32(_mm256_unpacklo_epi64(s[2], s[3]), _mm256_unpackhi_epi64(s[2], s[3]));
    _mm256_hadd_epi32(t01, t23)
}

/// [`crate::kernels::acts::interleave_q8`]: each whole group of eight blocks is an 8×8
/// transpose of 4-byte words (unpack 32-bit, unpack 64-bit, swap 128-bit halves), the partial
/// group and the padding through the scalar code.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `qs.len()` a multiple of 32 and `out.len() ==
/// q8_stride(qs.len())·32`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn interleave_q8(qs: &[i8], out: &mut [i8]) {
    let whole = (qs.len() / QK / 8).min(out.len() / (8 * QK));
    for g in 0..whole {
        let src = qs.as_ptr().add(g * 8 * QK);
        let r: [__m256i; 8] = std::array::from_fn(|k| _mm256_loadu_si256(src.add(k * QK).cast()));
        let t: [__m256i; 8] = std::array::from_fn(|i| {
            let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_epi32(a, b)
            } else {
                _mm256_unpackhi_epi32(a, b)
            }
        });
        // u[4h + c]: word c (c = 0..4, and c + 4 in the high half) of rows 4h..4h+4.
        let u: [__m256i; 8] = std::array::from_fn(|i| {
            let (h, c) = (i / 4, i % 4);
            let (a, b) = (t[4 * h + c / 2], t[4 * h + 2 + c / 2]);
            if c % 2 == 0 {
                _mm256_unpacklo_epi64(a, b)
            } else {
                _mm256_unpackhi_epi64(a, b)
            }
        });
        let dst = out.as_mut_ptr().add(g * 8 * QK);
        for c in 0..4 {
            _mm256_storeu_si256(dst.add(32 * c).cast(), _mm256_permute2x128_si256::<0x20>(u[c], u[4 + c]));
            _mm256_storeu_si256(
                dst.add(32 * (c + 4)).cast(),
                _mm256_permute2x128_si256::<0x31>(u[c], u[4 + c]),
            );
        }
    }
    crate::kernels::acts::interleave_q8_from(qs, out, whole);
}

/// Q8_K column quantizer (see `Kernels::quantize_q8k`); bit-exact with the scalar one.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `x.len() == qs.len()`, a multiple of 256, `d` at least
/// `x.len() / 256` and `bsums` at least `x.len() / 16` long.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_q8k(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    for i in 0..x.len() / QK_K {
        let p = x.as_ptr().add(QK_K * i);
        let mut m = _mm256_setzero_ps();
        for k in 0..32 {
            m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(p.add(8 * k))));
        }
        let amax = hmax(m);
        let out = qs.as_mut_ptr().add(QK_K * i);
        if amax == 0.0 {
            std::ptr::write_bytes(out, 0, QK_K);
            std::ptr::write_bytes(bsums.as_mut_ptr().add(16 * i), 0, 16);
            *d.get_unchecked_mut(i) = 0.0;
            continue;
        }
        // The first value of largest magnitude gives the sign of the scale.
        let target = _mm256_set1_ps(amax);
        let mut max = amax;
        for k in 0..32 {
            let v = _mm256_loadu_ps(p.add(8 * k));
            let hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(v), target, _CMP_EQ_OQ));
            if hit != 0 {
                max = *p.add(8 * k + hit.trailing_zeros() as usize);
                break;
            }
        }
        let iscale = -127.0 / max;
        let iv = _mm256_set1_ps(iscale);
        let cap = _mm256_set1_ps(127.0);
        for c in 0..8 {
            let q: [__m256i; 4] = std::array::from_fn(|k| {
                let v = _mm256_mul_ps(iv, _mm256_loadu_ps(p.add(32 * c + 8 * k)));
                let r = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                _mm256_cvttps_epi32(_mm256_min_ps(r, cap))
            });
            *bsums.get_unchecked_mut(16 * i + 2 * c) = hsum_i32(_mm256_add_epi32(q[0], q[1])) as i16;
            *bsums.get_unchecked_mut(16 * i + 2 * c + 1) = hsum_i32(_mm256_add_epi32(q[2], q[3])) as i16;
            _mm256_storeu_si256(out.add(32 * c).cast(), pack_i8(q));
        }
        *d.get_unchecked_mut(i) = 1.0 / iscale;
    }
}

// ---------------------------------------------------------------------------------------------
// f16 vector ops (KV cache)
// ---------------------------------------------------------------------------------------------

/// `Σ a_i·x_i` in the reference lane order.
///
/// # Safety
/// AVX2, FMA and F16C must be available; equal lengths.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16_f32(a: &[f16], x: &[f32]) -> f32 {
    let n = a.len().min(x.len());
    let full = n / 8 * 8;
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i < full {
        let w = _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().add(i).cast()));
        acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(x.as_ptr().add(i)), acc);
        i += 8;
    }
    if full < n {
        let w = load_f16(a, full, n - full);
        let mut xs = [0f32; 8];
        xs[..n - full].copy_from_slice(&x[full..n]);
        acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(xs.as_ptr()), acc);
    }
    hsum(acc)
}

/// `y_i = fma(alpha, x_i, y_i)`.
///
/// # Safety
/// AVX2, FMA and F16C must be available; equal lengths.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_f16(alpha: f32, x: &[f16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let full = n / 8 * 8;
    let av = _mm256_set1_ps(alpha);
    let mut i = 0;
    while i < full {
        let xv = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i).cast()));
        let yp = y.as_mut_ptr().add(i);
        _mm256_storeu_ps(yp, _mm256_fmadd_ps(av, xv, _mm256_loadu_ps(yp)));
        i += 8;
    }
    for i in full..n {
        y[i] = alpha.mul_add(crate::quant::f16_to_f32(x[i].to_bits()), y[i]);
    }
}

/// [`dot_f16_f32`] of `x` with each row of `rows`, eight rows at a time (then four, then one):
/// each row's sum is one chain of fmas (the reference order), so interleaving eight independent
/// chains hides their latency without changing any result, and the eight horizontal sums are
/// one transposed reduction that adds the same pairs as [`hsum`].
///
/// # Safety
/// AVX2, FMA and F16C must be available; `rows.len() == x.len() · out.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16_rows(rows: &[f16], x: &[f32], out: &mut [f32]) {
    let n = x.len();
    if n == 0 || rows.len() != n * out.len() {
        return;
    }
    let mut octs = out.chunks_exact_mut(8);
    let mut r = 0;
    for o in octs.by_ref() {
        _mm256_storeu_ps(o.as_mut_ptr(), hsum8(&dot_chains::<8>(rows, r, x)));
        r += 8;
    }
    let mut quads = octs.into_remainder().chunks_exact_mut(4);
    for o in quads.by_ref() {
        for (o, acc) in o.iter_mut().zip(dot_chains::<4>(rows, r, x)) {
            *o = hsum(acc);
        }
        r += 4;
    }
    for o in quads.into_remainder() {
        *o = dot_f16_f32(&rows[r * n..(r + 1) * n], x);
        r += 1;
    }
}

/// [`axpy_f16`] of each row of `rows` in order, `y` kept in registers 64 values at a time (the
/// same fma per element and row, in the same order).
///
/// # Safety
/// AVX2, FMA and F16C must be available; `rows.len() == y.len() · w.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_f16_rows(w: &[f32], rows: &[f16], y: &mut [f32]) {
    let n = y.len();
    if n == 0 || rows.len() != n * w.len() {
        return;
    }
    let full64 = n / 64 * 64;
    let mut c = 0;
    while c < full64 {
        let yp = y.as_mut_ptr().add(c);
        let mut acc = [_mm256_setzero_ps(); 8];
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_loadu_ps(yp.add(8 * j));
        }
        for (i, &wi) in w.iter().enumerate() {
            let av = _mm256_set1_ps(wi);
            let p = rows.as_ptr().add(i * n + c);
            for (j, acc) in acc.iter_mut().enumerate() {
                let xv = _mm256_cvtph_ps(_mm_loadu_si128(p.add(8 * j).cast()));
                *acc = _mm256_fmadd_ps(av, xv, *acc);
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(yp.add(8 * j), *acc);
        }
        c += 64;
    }
    if full64 < n {
        // The remaining columns row by row, exactly as `axpy_f16` does them.
        for (i, &wi) in w.iter().enumerate() {
            axpy_f16(wi, &rows[i * n + full64..(i + 1) * n], &mut y[full64..]);
        }
    }
}

/// The lane sums of rows `r..r + K` of `rows` (each `x.len()` long) dotted with `x`: one chain of
/// fmas per row in the reference order of [`dot_f16_f32`], the `K` chains interleaved.
// Always inlined, without features of its own, so that it takes those of its caller.
#[inline(always)]
unsafe fn dot_chains<const K: usize>(rows: &[f16], r: usize, x: &[f32]) -> [__m256; K] {
    let n = x.len();
    let full = n / 8 * 8;
    let p = rows.as_ptr().add(r * n);
    let mut acc = [_mm256_setzero_ps(); K];
    let mut i = 0;
    while i < full {
        let xv = _mm256_loadu_ps(x.as_ptr().add(i));
        for (k, acc) in acc.iter_mut().enumerate() {
            let w = _mm256_cvtph_ps(_mm_loadu_si128(p.add(k * n + i).cast()));
            *acc = _mm256_fmadd_ps(w, xv, *acc);
        }
        i += 8;
    }
    if full < n {
        let mut xs = [0f32; 8];
        xs[..n - full].copy_from_slice(&x[full..n]);
        let xv = _mm256_loadu_ps(xs.as_ptr());
        for (k, acc) in acc.iter_mut().enumerate() {
            let w = load_f16(&rows[(r + k) * n..(r + k + 1) * n], full, n - full);
            *acc = _mm256_fmadd_ps(w, xv, *acc);
        }
    }
    acc
}

/// [`hsum`] of eight registers at once, lane `k` of the result = `hsum(v[k])` bitwise: the same
/// three rounds of pairwise adds, on registers holding two or four rows' partial sums.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn hsum8(v: &[__m256; 8]) -> __m256 {
    reduce8::<false>(v)
}

/// `max(a, b)` or `a + b`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn op<const MAX: bool>(a: __m256, b: __m256) -> __m256 {
    if MAX {
        _mm256_max_ps(a, b)
    } else {
        _mm256_add_ps(a, b)
    }
}

/// Eight registers reduced each to one lane by `op` (lane k = register k), in the pairing of
/// [`hsum`]: `((a0 ∘ a4) ∘ (a2 ∘ a6)) ∘ ((a1 ∘ a5) ∘ (a3 ∘ a7))`.
// (Loops and helper functions, not closures: a closure would not take the target features.)
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn reduce8<const MAX: bool>(v: &[__m256; 8]) -> __m256 {
    // Round 1, `a_j ∘ a_{j+4}`: rows k and k + 4 share a register (low half k, high half k + 4).
    let mut s = [_mm256_setzero_ps(); 4];
    for (k, s) in s.iter_mut().enumerate() {
        let lo = _mm256_permute2f128_ps::<0x20>(v[k], v[k + 4]);
        let hi = _mm256_permute2f128_ps::<0x31>(v[k], v[k + 4]);
        *s = op::<MAX>(lo, hi);
    }
    // Round 2, `s_0 ∘ s_2` and `s_1 ∘ s_3`: rows (0, 1) and (2, 3) per half.
    let mut t = [_mm256_setzero_ps(); 2];
    for (h, t) in t.iter_mut().enumerate() {
        let (a, b) = (_mm256_castps_pd(s[2 * h]), _mm256_castps_pd(s[2 * h + 1]));
        *t =
            op::<MAX>(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)), _mm256_castpd_ps(_mm256_unpackhi_pd(a, b)));
    }
    // Round 3, `t_0 ∘ t_1`, rows in order 0..4 (low half) and 4..8 (high half).
    op::<MAX>(_mm256_shuffle_ps::<0b10_00_10_00>(t[0], t[1]), _mm256_shuffle_ps::<0b11_01_11_01>(t[0], t[1]))
}

/// f32 → f16, round to nearest even.
///
/// # Safety
/// AVX2, FMA and F16C must be available; equal lengths.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    let n = src.len().min(dst.len());
    let full = n / 8 * 8;
    let mut i = 0;
    while i < full {
        let h = _mm256_cvtps_ph(_mm256_loadu_ps(src.as_ptr().add(i)), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), h);
        i += 8;
    }
    for i in full..n {
        dst[i] = f16::from_bits(crate::quant::f32_to_f16(src[i]));
    }
}

/// f16 → f32.
///
/// # Safety
/// AVX2, FMA and F16C must be available; equal lengths.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let full = n / 8 * 8;
    let mut i = 0;
    while i < full {
        _mm256_storeu_ps(
            dst.as_mut_ptr().add(i),
            _mm256_cvtph_ps(_mm_loadu_si128(src.as_ptr().add(i).cast())),
        );
        i += 8;
    }
    for i in full..n {
        dst[i] = crate::quant::f16_to_f32(src[i].to_bits());
    }
}
