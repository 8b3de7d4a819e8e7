//! Row kernels for the row-interleaved legacy records (`crate::quant::interleaved`), AVX2 and
//! AVX-512 VNNI: eight rows per vector, bitwise twins of `scalar::rows_x8`.
//!
//! A record holds block `i` of eight rows with the quants in register order, so decoding is a
//! load (Q8_0) or a few masks and shifts (Q5_0), and per activation column the block sums of all
//! eight rows take eight multiply-adds of a broadcast 4-byte activation word: 32-bit lane `r` is
//! row `r`'s sum, no horizontal reduction, no partial groups at the end of a row. The float part
//! is the reference one per row: `fma(isum, d_w·d_a)` into lane `i mod 8` of the row's eight
//! accumulators, which here are eight vectors (lane = row) per column, folded at the end of the
//! row in the order of [`crate::quant::dot::Lanes8::sum`] with vertical adds.
//!
//! Offsets: Q5_0 quants are stored unsigned (`q − 16` is the value), Q8_0 quants as `q + 128`,
//! both the unsigned operand of `vpdpbusd`; the chain starts at `−offset·Σa` (exact integers), so
//! it ends at the row's signed block sum. AVX2's `maddubs` saturates on the `q + 128` bytes, so
//! its Q8_0 path restores the signed quants and uses the sign trick of the plain kernels.

use core::arch::x86_64::*;

use crate::kernels::acts::{ActsView, MAX_COLUMNS};
use crate::quant::{BlockQ5_0x8, BlockQ8_0x8, Interleaved, QK};

use super::avx2::prefetch_ahead;

/// A record type as the kernels see it.
pub(super) trait X8: Interleaved {
    /// `log2` of the offset subtracted from every stored quant (16 → 4, 128 → 7).
    const SHIFT: u32;
    /// Stored quants can exceed 127 (`maddubs` pairs could saturate).
    const WIDE: bool;
    /// The eight quant registers: register `j`, lane `r` = elements `4j..4j+4` of row `r`
    /// (unsigned, offset included).
    unsafe fn quants(&self) -> [__m256i; 8];
    /// The eight rows' f16 scales.
    fn scales(&self) -> *const u16;
}

impl X8 for BlockQ8_0x8 {
    const SHIFT: u32 = 7;
    const WIDE: bool = true;
    #[inline(always)]
    unsafe fn quants(&self) -> [__m256i; 8] {
        let p = self.qs.as_ptr();
        let mut q = [_mm256_setzero_si256(); 8];
        for (j, q) in q.iter_mut().enumerate() {
            *q = _mm256_loadu_si256(p.add(32 * j).cast());
        }
        q
    }
    #[inline(always)]
    fn scales(&self) -> *const u16 {
        self.d.as_ptr()
    }
}

impl X8 for BlockQ5_0x8 {
    const SHIFT: u32 = 4;
    const WIDE: bool = false;
    #[inline(always)]
    unsafe fn quants(&self) -> [__m256i; 8] {
        // No closures here: a closure would not take the entry point's target features.
        let p = self.qs.as_ptr();
        let h = _mm256_loadu_si256(self.qh.as_ptr().cast());
        let (m4, b4) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x10));
        let mut w = [_mm256_setzero_si256(); 4];
        for (j, w) in w.iter_mut().enumerate() {
            *w = _mm256_loadu_si256(p.add(32 * j).cast());
        }
        // Bit j of each fifth-bit byte moved to bit 4 (a 16-bit shift left by 4 − j ≤ 4 or right
        // by j − 4 ≤ 3 brings bit 4 of every byte from inside the same byte).
        let hi = [
            _mm256_slli_epi16(h, 4),
            _mm256_slli_epi16(h, 3),
            _mm256_slli_epi16(h, 2),
            _mm256_slli_epi16(h, 1),
            h,
            _mm256_srli_epi16(h, 1),
            _mm256_srli_epi16(h, 2),
            _mm256_srli_epi16(h, 3),
        ];
        let mut q = [_mm256_setzero_si256(); 8];
        for j in 0..4 {
            q[j] = _mm256_or_si256(_mm256_and_si256(w[j], m4), _mm256_and_si256(hi[j], b4));
            q[j + 4] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(w[j], 4), m4),
                _mm256_and_si256(hi[j + 4], b4),
            );
        }
        q
    }
    #[inline(always)]
    fn scales(&self) -> *const u16 {
        self.d.as_ptr()
    }
}

/// The integer block sums of eight rows against one column's block: the VNNI or AVX2 way.
pub(super) trait X8Dot {
    /// Lane `r` = `Σ_e value_r[e]·a[e]` (offset removed) for the block's 32 activations at `a`
    /// (`qsum` = `Σ a`).
    unsafe fn sums<X: X8>(q: &[__m256i; 8], a: *const i8, qsum: i32) -> __m256i;
}

/// Word `j` of the activation block at `a`, in every 32-bit lane.
#[inline(always)]
unsafe fn word(a: *const i8, j: usize) -> __m256i {
    _mm256_set1_epi32(a.add(4 * j).cast::<i32>().read_unaligned())
}

/// `vpdpbusd`.
pub(super) struct VnniX8;

impl X8Dot for VnniX8 {
    #[inline(always)]
    unsafe fn sums<X: X8>(q: &[__m256i; 8], a: *const i8, qsum: i32) -> __m256i {
        // |qsum| ≤ 32·127, so `qsum << 7` and every partial sum (≤ 32·255·127) fit in i32.
        let mut s0 = _mm256_set1_epi32(-(qsum << X::SHIFT));
        let mut s1 = _mm256_setzero_si256();
        for j in (0..8).step_by(2) {
            s0 = _mm256_dpbusd_epi32(s0, q[j], word(a, j));
            s1 = _mm256_dpbusd_epi32(s1, q[j + 1], word(a, j + 1));
        }
        _mm256_add_epi32(s0, s1)
    }
}

/// `maddubs` + `madd`.
pub(super) struct Avx2X8;

impl X8Dot for Avx2X8 {
    #[inline(always)]
    unsafe fn sums<X: X8>(q: &[__m256i; 8], a: *const i8, qsum: i32) -> __m256i {
        let ones = _mm256_set1_epi16(1);
        if X::WIDE {
            // Signed quants back (`q + 128` xor 0x80), then `|q|·(a·sign q)`: exact, |q| ≤ 128,
            // |a| ≤ 127, a pair ≤ 32512.
            let flip = _mm256_set1_epi8(-128);
            let mut s = _mm256_setzero_si256();
            for (j, q) in q.iter().enumerate() {
                let sq = _mm256_xor_si256(*q, flip);
                let p = _mm256_maddubs_epi16(_mm256_abs_epi8(sq), _mm256_sign_epi8(word(a, j), sq));
                s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
            }
            s
        } else {
            // Quants ≤ 31: four products per i16 lane stay below 2^15 (4·2·31·128).
            let mut p = [_mm256_setzero_si256(); 8];
            for (j, p) in p.iter_mut().enumerate() {
                *p = _mm256_maddubs_epi16(q[j], word(a, j));
            }
            let s0 = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
            let s1 = _mm256_add_epi16(_mm256_add_epi16(p[4], p[5]), _mm256_add_epi16(p[6], p[7]));
            let s = _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones));
            _mm256_sub_epi32(s, _mm256_set1_epi32(qsum << X::SHIFT))
        }
    }
}

/// One record (block `i`, accumulator lane `L = i mod 8`) of a group against `B` columns
/// (`b ≤ B` of them used).
#[inline(always)]
unsafe fn record<X: X8, D: X8Dot, const L: usize, const B: usize>(
    rec: &X,
    i: usize,
    acts: &ActsView<'_>,
    b: usize,
    acc: &mut [[__m256; 8]; B],
) {
    prefetch_ahead(rec, std::mem::size_of::<X>());
    let q = rec.quants();
    let dw = _mm256_cvtph_ps(_mm_loadu_si128(rec.scales().cast()));
    let (n, st) = (acts.n, acts.q8_stride);
    for (c, acc) in acc.iter_mut().enumerate().take(b) {
        let at = c * st + i;
        let isum = D::sums::<X>(&q, acts.q8_qs.as_ptr().add(c * n + QK * i), *acts.q8_qsum.get_unchecked(at));
        let da = _mm256_set1_ps(*acts.q8_d.get_unchecked(at));
        acc[L] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, da), acc[L]);
    }
}

/// Every group of eight rows (`nb` records each) against `b ≤ B` columns; `out` is `rows × b`.
#[inline(always)]
unsafe fn rows_n<X: X8, D: X8Dot, const B: usize>(w: &[X], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    let b = acts.b.min(B);
    // Zeroed once per call, then only the `b` columns in use per group (all B would be a
    // 4 KiB memset per group at B = 16).
    let mut acc = [[_mm256_setzero_ps(); 8]; B];
    for (group, out) in w.chunks_exact(nb).zip(out.chunks_exact_mut(8 * b)) {
        for a in acc.iter_mut().take(b) {
            *a = [_mm256_setzero_ps(); 8];
        }
        // Eight records at a time, so that each accumulator lane is a constant index (registers
        // when B is small); the last, shorter run checks each record.
        let mut i = 0;
        while i < nb {
            let run = &group[i..(i + 8).min(nb)];
            macro_rules! lane {
                ($($l:literal)*) => {$(
                    if let Some(rec) = run.get($l) {
                        record::<X, D, $l, B>(rec, i + $l, acts, b, &mut acc);
                    }
                )*};
            }
            lane!(0 1 2 3 4 5 6 7);
            i += 8;
        }
        for (c, a) in acc.iter().enumerate().take(b) {
            let s = _mm256_add_ps(
                _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6])),
                _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7])),
            );
            let mut v = [0f32; 8];
            _mm256_storeu_ps(v.as_mut_ptr(), s);
            for (r, v) in v.iter().enumerate() {
                *out.get_unchecked_mut(r * b + c) = *v;
            }
        }
    }
}

#[inline(always)]
unsafe fn rows<X: X8, D: X8Dot>(w: &[X], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    match acts.b {
        1 => rows_n::<X, D, 1>(w, nb, acts, out),
        2 => rows_n::<X, D, 2>(w, nb, acts, out),
        3 | 4 => rows_n::<X, D, 4>(w, nb, acts, out),
        5..=8 => rows_n::<X, D, 8>(w, nb, acts, out),
        _ => rows_n::<X, D, MAX_COLUMNS>(w, nb, acts, out),
    }
}

macro_rules! entries {
    ($($name:ident, $t:ty, $dot:ty, $feat:literal;)*) => {$(
        /// Row-interleaved row kernel (see `RowsFn`: `w` holds groups of eight rows).
        ///
        /// # Safety
        /// The CPU features named in `target_feature` must be available; the `RowsFn` shape
        /// contract must hold.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn $name(w: &[$t], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
            rows::<$t, $dot>(w, nb, acts, out)
        }
    )*};
}
entries! {
    rows_q5_0x8_avx2, BlockQ5_0x8, Avx2X8, "avx2,fma,f16c";
    rows_q8_0x8_avx2, BlockQ8_0x8, Avx2X8, "avx2,fma,f16c";
    rows_q5_0x8_vnni, BlockQ5_0x8, VnniX8, "avx2,fma,f16c,avx512f,avx512vl,avx512vnni";
    rows_q8_0x8_vnni, BlockQ8_0x8, VnniX8, "avx2,fma,f16c,avx512f,avx512vl,avx512vnni";
}
