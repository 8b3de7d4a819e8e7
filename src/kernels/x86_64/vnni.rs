//! AVX-512 VNNI row kernels: the AVX2 kernels with their integer multiply-accumulate done by
//! `vpdpbusd` / `vpdpwssd` on 256-bit registers.
//!
//! Scoring a batch of drafted tokens is bound by this arithmetic, not by memory: the weights are
//! decoded once per group, then every activation column costs one multiply-add per 32 weights.
//! AVX2 needs `maddubs`, a pairwise `madd` and an add for that; VNNI does all three in one
//! instruction, which is most of the difference between a verify pass of 8 tokens costing 2×
//! a single token and costing much less. The integers are identical (no saturation can occur on
//! either path: see each function), so this table is bitwise equal to the AVX2 and scalar ones;
//! only the ymm forms are used (AVX512VL), which avoids the frequency drops some CPUs take on zmm.

use core::arch::x86_64::*;

use crate::kernels::acts::{ActsView, MAX_COLUMNS};
use crate::quant::{
    BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K,
    BlockQ8_0, QK,
};

use super::avx2::{hsum, legacy_apply, legacy_tail_any, prefetch_ahead, rows_legacy, scales8, Dot, Legacy};
use super::avx2_k::rows_k;
use super::avx2_kv::{dot_q8_rows_with, KeyDot};

/// `vpdpbusd` / `vpdpwssd`.
pub(super) struct VnniDot;

/// `Σ_r Σ q_r·a_r` in i32 lanes of four bytes: unsigned quants (≤ 63 here) times signed
/// activations; sums of at most 32 products of |·| ≤ 63·128 stay far inside i32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn dp<const R: usize>(q: &[__m256i; R], a: *const i8) -> __m256i {
    // Two chains, so consecutive instructions do not wait on each other's latency.
    let mut acc = [_mm256_setzero_si256(); 2];
    for (r, q) in q.iter().enumerate() {
        acc[r % 2] = _mm256_dpbusd_epi32(acc[r % 2], *q, _mm256_loadu_si256(a.add(32 * r).cast()));
    }
    _mm256_add_epi32(acc[0], acc[1])
}

/// Signed quants as (|q|, q): `Σ |q|·(a·sign q)` (|q| ≤ 128 fits u8, |a·sign q| ≤ 127 fits i8).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn dp_signed<const R: usize>(aq: &[__m256i; R], q: &[__m256i; R], a: *const i8) -> __m256i {
    let mut acc = [_mm256_setzero_si256(); 2];
    for r in 0..R {
        let ar = _mm256_sign_epi8(_mm256_loadu_si256(a.add(32 * r).cast()), q[r]);
        acc[r % 2] = _mm256_dpbusd_epi32(acc[r % 2], aq[r], ar);
    }
    _mm256_add_epi32(acc[0], acc[1])
}

/// `acc + Σ pairs of (maddubs(q, a) · sc)`: the i16 products are the AVX2 path's (quants ≤ 63,
/// |a| ≤ 128: |pair| ≤ 16128), then `vpdpwssd` multiplies by the group scales and accumulates.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn dp_scaled(acc: __m256i, q: __m256i, a: *const i8, sc: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(q, _mm256_loadu_si256(a.cast()));
    _mm256_dpwssd_epi32(acc, p, sc)
}

impl Dot for VnniDot {
    #[inline(always)]
    unsafe fn sums_narrow(q: &[__m256i; 8], a: *const i8) -> __m256i {
        dp(q, a)
    }
    #[inline(always)]
    unsafe fn sums_wide(q: &[__m256i; 8], a: *const i8) -> __m256i {
        dp(q, a)
    }
    #[inline(always)]
    unsafe fn sums_pair(q: &[__m256i; 2], a: *const i8) -> __m256i {
        dp(q, a)
    }
    #[inline(always)]
    unsafe fn sums_signed8(aq: &[__m256i; 8], q: &[__m256i; 8], a: *const i8) -> __m256i {
        dp_signed(aq, q, a)
    }
    #[inline(always)]
    unsafe fn sums_signed2(aq: &[__m256i; 2], q: &[__m256i; 2], a: *const i8) -> __m256i {
        dp_signed(aq, q, a)
    }
    #[inline(always)]
    unsafe fn scaled_chunk(acc: __m256i, q: __m256i, a: *const i8, sc: __m256i) -> __m256i {
        dp_scaled(acc, q, a, sc)
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy blocks, two rows at a time
// ---------------------------------------------------------------------------------------------
//
// With one row, every 32 weights of a column cost one 32-byte activation load besides the
// multiply-add, and loads become the limit. AVX-512 gives 32 vector registers, enough to hold the
// decoded groups of two rows (16 registers): each activation load then feeds both rows. Signed
// quants (Q8_0) would need a sign-adjusted copy of the activations per row; instead the
// activations are biased to unsigned (`a + 128`, one xor per load, shared by both rows) and the
// quants are the signed operand: `Σ (a + 128)·q = Σ a·q + 128·Σq`, and `128·Σq` per block is
// subtracted once per column. All integers are exact, so the sums equal the one-row path's.

/// A legacy group as `vpdpbusd` operands.
trait VnniLegacy: Legacy {
    /// The quants are signed (the i8 operand, against biased activations).
    const SIGNED: bool;
    /// The eight registers of the group in the interleaved layout, and for signed quants
    /// `128·Σq` per block lane (zero otherwise).
    unsafe fn operands(blocks: &[Self; 8]) -> ([__m256i; 8], __m256i);
}

macro_rules! vnni_unsigned {
    ($($t:ty),*) => {$(
        impl VnniLegacy for $t {
            const SIGNED: bool = false;
            #[inline(always)]
            unsafe fn operands(blocks: &[Self; 8]) -> ([__m256i; 8], __m256i) {
                (Self::decode8(blocks), _mm256_setzero_si256())
            }
        }
    )*};
}
vnni_unsigned!(BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1);

impl VnniLegacy for BlockQ8_0 {
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn operands(blocks: &[Self; 8]) -> ([__m256i; 8], __m256i) {
        let (_, q) = Self::decode8(blocks);
        (q, bias_correction(&q))
    }
}

/// `128·Σq` of each block (lane k = block k) of a group of signed quants.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn bias_correction(q: &[__m256i; 8]) -> __m256i {
    let ones = _mm256_set1_epi8(1);
    let mut sum = _mm256_setzero_si256();
    for q in q {
        sum = _mm256_dpbusd_epi32(sum, ones, *q);
    }
    _mm256_slli_epi32(sum, 7)
}

/// One group of eight blocks of two rows (`b0`, `b1`, starting at block `g`) against every column.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn group8x2<L: VnniLegacy>(
    b0: &[L; 8],
    b1: &[L; 8],
    g: usize,
    acts: &ActsView<'_>,
    acc0: &mut [__m256; MAX_COLUMNS],
    acc1: &mut [__m256; MAX_COLUMNS],
) {
    let (q0, c0) = L::operands(b0);
    let (q1, c1) = L::operands(b1);
    let (dw0, mw0) = scales8(b0);
    let (dw1, mw1) = scales8(b1);
    let stride = acts.q8_stride * QK;
    let base = acts.q8_t.as_ptr().add(g * QK);
    let bias = _mm256_set1_epi8(-128);
    for c in 0..acts.b.min(MAX_COLUMNS) {
        let a = base.add(c * stride);
        // Two chains per row: a column's sums are then four multiply-adds deep, short enough for
        // the next columns' work to overlap them.
        let mut s0 = [_mm256_setzero_si256(); 2];
        let mut s1 = [_mm256_setzero_si256(); 2];
        for r in 0..8 {
            let x = _mm256_loadu_si256(a.add(32 * r).cast());
            if L::SIGNED {
                let x = _mm256_xor_si256(x, bias);
                s0[r % 2] = _mm256_dpbusd_epi32(s0[r % 2], x, q0[r]);
                s1[r % 2] = _mm256_dpbusd_epi32(s1[r % 2], x, q1[r]);
            } else {
                s0[r % 2] = _mm256_dpbusd_epi32(s0[r % 2], q0[r], x);
                s1[r % 2] = _mm256_dpbusd_epi32(s1[r % 2], q1[r], x);
            }
        }
        let mut s0 = _mm256_add_epi32(s0[0], s0[1]);
        let mut s1 = _mm256_add_epi32(s1[0], s1[1]);
        if L::SIGNED {
            s0 = _mm256_sub_epi32(s0, c0);
            s1 = _mm256_sub_epi32(s1, c1);
        }
        legacy_apply::<L>(s0, dw0, mw0, acts, c, g, &mut acc0[c]);
        legacy_apply::<L>(s1, dw1, mw1, acts, c, g, &mut acc1[c]);
    }
}

/// Legacy rows in pairs (an odd last row goes through the one-row path).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn rows_legacy2<L: VnniLegacy>(w: &[L], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    let b = acts.b;
    if b <= 2 {
        // One or two columns: a load per 32 weights is no limit yet, and one row at a time
        // keeps the decoded group in fewer registers (measured faster in the forward pass).
        return rows_legacy::<L, VnniDot>(w, nb, acts, out);
    }
    let whole = nb / 8 * 8;
    let pairs = w.len() / nb / 2;
    let (paired, rest) = w.split_at(pairs * 2 * nb);
    let (out_paired, out_rest) = out.split_at_mut(pairs * 2 * b);
    for (rows, out) in paired.chunks_exact(2 * nb).zip(out_paired.chunks_exact_mut(2 * b)) {
        let (r0, r1) = rows.split_at(nb);
        let mut acc0 = [_mm256_setzero_ps(); MAX_COLUMNS];
        let mut acc1 = [_mm256_setzero_ps(); MAX_COLUMNS];
        for gi in 0..whole / 8 {
            let g = 8 * gi;
            let (Ok(b0), Ok(b1)) = (<&[L; 8]>::try_from(&r0[g..g + 8]), <&[L; 8]>::try_from(&r1[g..g + 8]))
            else {
                continue;
            };
            prefetch_ahead(b0.as_ptr(), 8 * std::mem::size_of::<L>());
            prefetch_ahead(b1.as_ptr(), 8 * std::mem::size_of::<L>());
            group8x2(b0, b1, g, acts, &mut acc0, &mut acc1);
        }
        let bb = b.min(MAX_COLUMNS);
        legacy_tail_any::<L, VnniDot>(&r0[whole..], whole, acts, &mut acc0[..bb]);
        legacy_tail_any::<L, VnniDot>(&r1[whole..], whole, acts, &mut acc1[..bb]);
        let (o0, o1) = out.split_at_mut(b);
        for (o, a) in o0.iter_mut().zip(&acc0) {
            *o = hsum(*a);
        }
        for (o, a) in o1.iter_mut().zip(&acc1) {
            *o = hsum(*a);
        }
    }
    rows_legacy::<L, VnniDot>(rest, nb, acts, out_rest);
}

// ---------------------------------------------------------------------------------------------
// Q8_0 KV cache scores
// ---------------------------------------------------------------------------------------------

/// One `vpdpbusd` per key block instead of `maddubs` + `madd` (the same exact sums).
struct VnniKeyDot;

impl KeyDot for VnniKeyDot {
    #[inline(always)]
    unsafe fn dot32(aq: __m256i, q: __m256i, k: *const i8) -> __m256i {
        let kv = _mm256_sign_epi8(_mm256_loadu_si256(k.cast()), q);
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), aq, kv)
    }
}

/// Attention scores over a Q8_0 cache (see `avx2_kv::dot_q8_rows_with`).
///
/// # Safety
/// AVX2, FMA, F16C, AVX512F, AVX512VL and AVX512-VNNI must be available; `qs.len() ==
/// 32·qd.len()` and `rows.len() == qd.len()·out.len()`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) unsafe fn dot_q8_rows(rows: &[BlockQ8_0], qs: &[i8], qd: &[f32], out: &mut [f32]) {
    dot_q8_rows_with::<VnniKeyDot>(rows, qs, qd, out)
}

macro_rules! entry {
    ($name:ident, $t:ty, $($rows:tt)*) => {
        /// Row kernel (see `RowsFn`).
        ///
        /// # Safety
        /// AVX2, FMA, F16C, AVX512F, AVX512VL and AVX512-VNNI must be available; the `RowsFn`
        /// shape contract must hold.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
        pub(crate) unsafe fn $name(w: &[$t], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
            $($rows)*(w, nb, acts, out)
        }
    };
}
entry!(rows_q4_0, BlockQ4_0, rows_legacy2::<BlockQ4_0>);
entry!(rows_q4_1, BlockQ4_1, rows_legacy2::<BlockQ4_1>);
entry!(rows_q5_0, BlockQ5_0, rows_legacy2::<BlockQ5_0>);
entry!(rows_q5_1, BlockQ5_1, rows_legacy2::<BlockQ5_1>);
entry!(rows_q8_0, BlockQ8_0, rows_legacy2::<BlockQ8_0>);
entry!(rows_q2_k, BlockQ2_K, rows_k::<BlockQ2_K, VnniDot>);
entry!(rows_q3_k, BlockQ3_K, rows_k::<BlockQ3_K, VnniDot>);
entry!(rows_q4_k, BlockQ4_K, rows_k::<BlockQ4_K, VnniDot>);
entry!(rows_q5_k, BlockQ5_K, rows_k::<BlockQ5_K, VnniDot>);
entry!(rows_q6_k, BlockQ6_K, rows_k::<BlockQ6_K, VnniDot>);
