//! NEON versions of the float-row dot products, the activation quantizers and the f16 vector
//! ops (KV cache), bit-exact twins of their scalar versions (see `neon.rs` for the conventions
//! all NEON kernels follow).

use core::arch::aarch64::*;

use half::{bf16, f16};

use super::neon::{f16_hi, f16_lo, hsum, to_f16x8, Acc};
use crate::kernels::acts::ActsView;
use crate::quant::{round_f16, QK, QK_K};

// ---------------------------------------------------------------------------------------------
// Float rows
// ---------------------------------------------------------------------------------------------

/// Eight weights at `i` widened to f32 (`count < 8` zero-fills the rest).
trait FloatLoad: Copy {
    unsafe fn load8(row: &[Self], i: usize, count: usize) -> (float32x4_t, float32x4_t);
}

impl FloatLoad for f32 {
    #[inline(always)]
    unsafe fn load8(row: &[f32], i: usize, count: usize) -> (float32x4_t, float32x4_t) {
        let mut v = [0f32; 8];
        let p = if count == 8 {
            row.as_ptr().add(i)
        } else {
            v[..count].copy_from_slice(&row[i..i + count]);
            v.as_ptr()
        };
        (vld1q_f32(p), vld1q_f32(p.add(4)))
    }
}

impl FloatLoad for f16 {
    #[inline(always)]
    unsafe fn load8(row: &[f16], i: usize, count: usize) -> (float32x4_t, float32x4_t) {
        let mut v = [f16::ZERO; 8];
        let p = if count == 8 {
            row.as_ptr().add(i)
        } else {
            v[..count].copy_from_slice(&row[i..i + count]);
            v.as_ptr()
        };
        let bits = vld1q_u16(p.cast());
        (f16_lo(bits), f16_hi(bits))
    }
}

impl FloatLoad for bf16 {
    #[inline(always)]
    unsafe fn load8(row: &[bf16], i: usize, count: usize) -> (float32x4_t, float32x4_t) {
        let mut v = [bf16::ZERO; 8];
        let p = if count == 8 {
            row.as_ptr().add(i)
        } else {
            v[..count].copy_from_slice(&row[i..i + count]);
            v.as_ptr()
        };
        let bits = vld1q_u16(p.cast());
        let lo = vshll_n_u16::<16>(vget_low_u16(bits));
        let hi = vshll_high_n_u16::<16>(bits);
        (vreinterpretq_f32_u32(lo), vreinterpretq_f32_u32(hi))
    }
}

#[inline(always)]
unsafe fn rows_float<T: FloatLoad>(w: &[T], n: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    let b = acts.b;
    let full = n / 8 * 8;
    for (row, out) in w.chunks_exact(n).zip(out.chunks_exact_mut(b)) {
        let mut c0 = 0;
        while c0 < b {
            let cols = (b - c0).min(4);
            let mut acc = [Acc { lo: vdupq_n_f32(0.0), hi: vdupq_n_f32(0.0) }; 4];
            let mut i = 0;
            while i < n {
                let count = if i < full { 8 } else { n - full };
                let (wl, wh) = T::load8(row, i, count);
                for (k, acc) in acc.iter_mut().enumerate().take(cols) {
                    let x = &acts.f[(c0 + k) * n + i..(c0 + k) * n + i + count];
                    let mut xs = [0f32; 8];
                    let p = if count == 8 {
                        x.as_ptr()
                    } else {
                        xs[..count].copy_from_slice(x);
                        xs.as_ptr()
                    };
                    acc.lo = vfmaq_f32(acc.lo, wl, vld1q_f32(p));
                    acc.hi = vfmaq_f32(acc.hi, wh, vld1q_f32(p.add(4)));
                }
                i += 8;
            }
            for k in 0..cols {
                out[c0 + k] = hsum(acc[k].lo, acc[k].hi);
            }
            c0 += cols;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization and f16 vector ops
// ---------------------------------------------------------------------------------------------

/// Narrow 4 × i32x4 (values in i8 range) to 16 i8.
#[inline(always)]
unsafe fn narrow16(v: [int32x4_t; 4]) -> int8x16_t {
    let a = vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1]));
    let b = vcombine_s16(vqmovn_s32(v[2]), vqmovn_s32(v[3]));
    vcombine_s8(vqmovn_s16(a), vqmovn_s16(b))
}

#[inline(always)]
unsafe fn quantize_q8_impl(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], qsum: &mut [i32]) {
    for i in 0..x.len() / QK {
        let p = x.as_ptr().add(QK * i);
        let v: [float32x4_t; 8] = std::array::from_fn(|k| vld1q_f32(p.add(4 * k)));
        let mut m = vabsq_f32(v[0]);
        for vk in &v[1..] {
            m = vmaxq_f32(m, vabsq_f32(*vk));
        }
        let amax = vmaxvq_f32(m);
        let scale = amax / 127.0;
        let id = vdupq_n_f32(if scale != 0.0 { 1.0 / scale } else { 0.0 });
        let q: [int32x4_t; 8] = std::array::from_fn(|k| vcvtaq_s32_f32(vmulq_f32(v[k], id)));
        let mut total = vdupq_n_s32(0);
        for qk in &q {
            total = vaddq_s32(total, *qk);
        }
        let total = vaddvq_s32(total);
        let out = qs.as_mut_ptr().add(QK * i);
        vst1q_s8(out, narrow16([q[0], q[1], q[2], q[3]]));
        vst1q_s8(out.add(16), narrow16([q[4], q[5], q[6], q[7]]));
        *d.get_unchecked_mut(i) = round_f16(scale);
        *s.get_unchecked_mut(i) = round_f16(total as f32 * scale);
        *qsum.get_unchecked_mut(i) = total;
    }
}

#[inline(always)]
unsafe fn quantize_q8k_impl(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    for i in 0..x.len() / QK_K {
        let p = x.as_ptr().add(QK_K * i);
        let mut m = vdupq_n_f32(0.0);
        for k in 0..64 {
            m = vmaxq_f32(m, vabsq_f32(vld1q_f32(p.add(4 * k))));
        }
        let amax = vmaxvq_f32(m);
        let out = qs.as_mut_ptr().add(QK_K * i);
        if amax == 0.0 {
            std::ptr::write_bytes(out, 0, QK_K);
            std::ptr::write_bytes(bsums.as_mut_ptr().add(16 * i), 0, 16);
            *d.get_unchecked_mut(i) = 0.0;
            continue;
        }
        // The first value of largest magnitude gives the sign of the scale.
        let mut max = amax;
        for k in 0..QK_K {
            let v = *p.add(k);
            if v.abs() == amax {
                max = v;
                break;
            }
        }
        let iscale = -127.0 / max;
        let iv = vdupq_n_f32(iscale);
        let cap = vdupq_n_s32(127);
        for g in 0..16 {
            let q: [int32x4_t; 4] = std::array::from_fn(|k| {
                vminq_s32(vcvtnq_s32_f32(vmulq_f32(iv, vld1q_f32(p.add(16 * g + 4 * k)))), cap)
            });
            let sum = vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3]));
            *bsums.get_unchecked_mut(16 * i + g) = vaddvq_s32(sum) as i16;
            vst1q_s8(out.add(16 * g), narrow16(q));
        }
        *d.get_unchecked_mut(i) = 1.0 / iscale;
    }
}

#[inline(always)]
unsafe fn dot_f16_f32_impl(a: &[f16], x: &[f32]) -> f32 {
    let n = a.len().min(x.len());
    let full = n / 8 * 8;
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut i = 0;
    while i < n {
        let count = if i < full { 8 } else { n - full };
        let (wl, wh) = f16::load8(a, i, count);
        let mut xs = [0f32; 8];
        xs[..count].copy_from_slice(&x[i..i + count]);
        lo = vfmaq_f32(lo, wl, vld1q_f32(xs.as_ptr()));
        hi = vfmaq_f32(hi, wh, vld1q_f32(xs.as_ptr().add(4)));
        i += 8;
    }
    hsum(lo, hi)
}

#[inline(always)]
unsafe fn axpy_f16_impl(alpha: f32, x: &[f16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let full = n / 8 * 8;
    let av = vdupq_n_f32(alpha);
    let mut i = 0;
    while i < full {
        let (xl, xh) = f16::load8(x, i, 8);
        let yp = y.as_mut_ptr().add(i);
        vst1q_f32(yp, vfmaq_f32(vld1q_f32(yp), xl, av));
        vst1q_f32(yp.add(4), vfmaq_f32(vld1q_f32(yp.add(4)), xh, av));
        i += 8;
    }
    for i in full..n {
        y[i] = alpha.mul_add(crate::quant::f16_to_f32(x[i].to_bits()), y[i]);
    }
}

#[inline(always)]
unsafe fn f32_to_f16_impl(src: &[f32], dst: &mut [f16]) {
    let n = src.len().min(dst.len());
    let full = n / 8 * 8;
    let mut i = 0;
    while i < full {
        let h = to_f16x8(vld1q_f32(src.as_ptr().add(i)), vld1q_f32(src.as_ptr().add(i + 4)));
        vst1q_u16(dst.as_mut_ptr().add(i).cast(), h);
        i += 8;
    }
    for i in full..n {
        dst[i] = f16::from_bits(crate::quant::f32_to_f16(src[i]));
    }
}

#[inline(always)]
unsafe fn f16_to_f32_impl(src: &[f16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let full = n / 8 * 8;
    let mut i = 0;
    while i < full {
        let (lo, hi) = f16::load8(src, i, 8);
        vst1q_f32(dst.as_mut_ptr().add(i), lo);
        vst1q_f32(dst.as_mut_ptr().add(i + 4), hi);
        i += 8;
    }
    for i in full..n {
        dst[i] = crate::quant::f16_to_f32(src[i].to_bits());
    }
}

/// F32 row kernel (see `RowsFn`).
///
/// # Safety
/// The `RowsFn` shape contract must hold (NEON is baseline on aarch64).
pub(crate) unsafe fn rows_f32(w: &[f32], n: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    rows_float(w, n, acts, out)
}

/// F16 row kernel (see `RowsFn`).
///
/// # Safety
/// As [`rows_f32`].
pub(crate) unsafe fn rows_f16(w: &[f16], n: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    rows_float(w, n, acts, out)
}

/// BF16 row kernel (see `RowsFn`).
///
/// # Safety
/// As [`rows_f32`].
pub(crate) unsafe fn rows_bf16(w: &[bf16], n: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    rows_float(w, n, acts, out)
}

/// Q8 column quantizer, bit-exact with the scalar one.
///
/// # Safety
/// `x.len() == qs.len()`, a multiple of 32; `d`, `s`, `qsum` at least `x.len() / 32` long.
pub(crate) unsafe fn quantize_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], qsum: &mut [i32]) {
    quantize_q8_impl(x, qs, d, s, qsum)
}

/// Q8_K column quantizer, bit-exact with the scalar one.
///
/// # Safety
/// `x.len() == qs.len()`, a multiple of 256; `d` at least `x.len() / 256` and `bsums`
/// `x.len() / 16` long.
pub(crate) unsafe fn quantize_q8k(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    quantize_q8k_impl(x, qs, d, bsums)
}

/// `Σ a_i·x_i` in the reference lane order.
///
/// # Safety
/// Equal lengths.
pub(crate) unsafe fn dot_f16_f32(a: &[f16], x: &[f32]) -> f32 {
    dot_f16_f32_impl(a, x)
}

/// `y_i = fma(alpha, x_i, y_i)`.
///
/// # Safety
/// Equal lengths.
pub(crate) unsafe fn axpy_f16(alpha: f32, x: &[f16], y: &mut [f32]) {
    axpy_f16_impl(alpha, x, y)
}

/// [`dot_f16_f32`] of `x` with each row of `rows`.
///
/// # Safety
/// `rows.len() == x.len() · out.len()`.
pub(crate) unsafe fn dot_f16_rows(rows: &[f16], x: &[f32], out: &mut [f32]) {
    for (o, r) in out.iter_mut().zip(rows.chunks_exact(x.len().max(1))) {
        *o = dot_f16_f32_impl(r, x);
    }
}

/// [`axpy_f16`] of each row of `rows`, in order.
///
/// # Safety
/// `rows.len() == y.len() · w.len()`.
pub(crate) unsafe fn axpy_f16_rows(w: &[f32], rows: &[f16], y: &mut [f32]) {
    let n = y.len().max(1);
    for (&w, r) in w.iter().zip(rows.chunks_exact(n)) {
        axpy_f16_impl(w, r, y);
    }
}

/// f32 → f16, round to nearest even.
///
/// # Safety
/// Equal lengths.
pub(crate) unsafe fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    f32_to_f16_impl(src, dst)
}

/// f16 → f32.
///
/// # Safety
/// Equal lengths.
pub(crate) unsafe fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    f16_to_f32_impl(src, dst)
}
