//! NEON kernels for a Q8_0 KV cache (scores with SDOT where the CPU has it), bit-exact twins of
//! `scalar::dot_q8_rows` / `scalar::axpy_q8_rows`: the integer dots are exact in any order, the
//! f32 steps are the reference's fused multiply-adds (`vfmaq_f32` and `f32::mul_add` both round
//! once).

use core::arch::aarch64::*;

use super::neon::{Dot4, Mull, Sdot};
use crate::quant::{f16_to_f32, BlockQ8_0, QK};

/// Exact `Σ k_i·q_i` over one 32-block, four-way products summed by `D` (widening multiplies,
/// or SDOT), then across the lanes.
#[inline(always)]
unsafe fn isum32<D: Dot4>(k: *const i8, q: *const i8) -> i32 {
    let mut acc = vdupq_n_s32(0);
    for h in 0..2 {
        acc = D::dot4(acc, vld1q_s8(k.add(16 * h)), vld1q_s8(q.add(16 * h)));
    }
    vaddvq_s32(acc)
}

/// Scores of the quantized query (`qs`, block scales `qd`) against each Q8_0 row of `rows`.
// Always inlined, without features of its own: it takes those of the entry point (and `D`).
#[inline(always)]
unsafe fn dot_q8_rows_with<D: Dot4>(rows: &[BlockQ8_0], qs: &[i8], qd: &[f32], out: &mut [f32]) {
    let nb = qd.len();
    if nb == 0 || qs.len() != nb * QK || rows.len() != nb * out.len() {
        return;
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(nb)) {
        let mut acc = 0f32;
        for (b, (blk, &d)) in row.iter().zip(qd).enumerate() {
            let isum = isum32::<D>(blk.qs.as_ptr(), qs.as_ptr().add(b * QK));
            acc = (isum as f32).mul_add(f16_to_f32(blk.d) * d, acc);
        }
        *o = acc;
    }
}

/// [`dot_q8_rows_with`] with widening multiplies (baseline NEON).
///
/// # Safety
/// `qs.len() == 32·qd.len()` and `rows.len() == qd.len()·out.len()`.
pub(crate) unsafe fn dot_q8_rows(rows: &[BlockQ8_0], qs: &[i8], qd: &[f32], out: &mut [f32]) {
    dot_q8_rows_with::<Mull>(rows, qs, qd, out)
}

/// [`dot_q8_rows_with`] with SDOT.
///
/// # Safety
/// The CPU must have `dotprod`; `qs.len() == 32·qd.len()` and `rows.len() == qd.len()·out.len()`.
#[target_feature(enable = "dotprod")]
pub(crate) unsafe fn dot_q8_rows_dot(rows: &[BlockQ8_0], qs: &[i8], qd: &[f32], out: &mut [f32]) {
    dot_q8_rows_with::<Sdot>(rows, qs, qd, out)
}

/// `y += Σ_i w_i · rows_i` over Q8_0 rows of `y.len()` values, rows in order; per row and block
/// `w_i · d` once, then one fused multiply-add per element.
///
/// # Safety
/// `y.len()` a multiple of 32 and `rows.len() == y.len() / 32 · w.len()`.
pub(crate) unsafe fn axpy_q8_rows(w: &[f32], rows: &[BlockQ8_0], y: &mut [f32]) {
    let nb = y.len() / QK;
    if nb == 0 || !y.len().is_multiple_of(QK) || rows.len() != nb * w.len() {
        return;
    }
    for (b, yb) in y.chunks_exact_mut(QK).enumerate() {
        let yp = yb.as_mut_ptr();
        let mut acc = [vdupq_n_f32(0.0); 8];
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = vld1q_f32(yp.add(4 * j));
        }
        for (i, &wi) in w.iter().enumerate() {
            let blk = &*rows.as_ptr().add(i * nb + b);
            let wd = vdupq_n_f32(wi * f16_to_f32(blk.d));
            for h in 0..2 {
                let q = vld1q_s8(blk.qs.as_ptr().add(16 * h));
                let (lo, hi) = (vmovl_s8(vget_low_s8(q)), vmovl_high_s8(q));
                let parts = [
                    vmovl_s16(vget_low_s16(lo)),
                    vmovl_high_s16(lo),
                    vmovl_s16(vget_low_s16(hi)),
                    vmovl_high_s16(hi),
                ];
                for (j, p) in parts.into_iter().enumerate() {
                    let a = &mut acc[4 * h + j];
                    *a = vfmaq_f32(*a, vcvtq_f32_s32(p), wd);
                }
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            vst1q_f32(yp.add(4 * j), *acc);
        }
    }
}
