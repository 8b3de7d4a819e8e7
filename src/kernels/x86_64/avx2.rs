//! AVX2 + FMA + F16C kernels, bit-exact twins of [`super::super::scalar`].
//!
//! Every function here requires those three CPU features; the table in `mod.rs` is only handed
//! out after `is_x86_feature_detected!` confirmed them. Functions are `#[target_feature]` and
//! `#[inline]`, so the helpers inline into the kernels that share their features.
//!
//! Batched dot products decode a group of weight blocks once into registers / a small stack
//! buffer and dot it against every activation column before moving on, so each weight byte is
//! read from memory once per mat-vec whatever the batch size. Per column the arithmetic is the
//! reference one:
//! - legacy types: 8 consecutive blocks are decoded into the word-interleaved layout the
//!   activations also come in (see `interleave_q8`), so per column their 8 block sums take
//!   8 `maddubs` and vertical adds, no horizontal reduction; then `fma(isum, d_w·d_a)` (and
//!   `fma(m_w, s_a)`) into 8 float lanes, lane `k` = block `k mod 8`, exactly as the reference.
//!   A row's last, partial group goes in pairs of blocks;
//! - K-quants (in `avx2_k.rs`): `maddubs` + `madd` by the group scale keep lane `l` = elements
//!   `4l..4l+4` of each 32-chunk, accumulated exactly in i32 over the super-block, then the two fmas;
//! - float rows (in `avx2_ops.rs`, with the activation quantizers and f16 ops): one `fma` per 8
//!   elements into 8 lanes.
//!
//! The final fold of the 8 lanes is [`hsum`], the order [`crate::quant::dot::Lanes8::sum`] fixes.

use core::arch::x86_64::*;

use crate::kernels::acts::{ActsView, MAX_COLUMNS};
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QK};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)))
}

/// One f16 value (bits) to f32 with F16C (exact, like every f16 → f32 conversion).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn h2f(bits: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// How far ahead of the block being decoded the weights are prefetched: far enough to cover the
/// memory latency at the slowest (largest-batch) per-block rate.
const PREFETCH_BYTES: usize = 2048;

/// Prefetch the `len` bytes that sit `PREFETCH_BYTES` after `p` (past the end of the weights the
/// hint is simply wasted; prefetches never fault).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn prefetch_ahead<T>(p: *const T, len: usize) {
    let base = p.cast::<i8>().wrapping_add(PREFETCH_BYTES);
    let mut off = 0;
    while off < len {
        _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(off));
        off += 64;
    }
}

/// The 32 nibbles of 16 bytes in element order (`j` low, `j + 16` high).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
    let raw = _mm_loadu_si128(qs.as_ptr().cast());
    let m = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(raw, m);
    let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m);
    _mm256_set_m128i(hi, lo)
}

/// Byte `i` = 0x10 where bit `i` of `bits` is set, else 0.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn bits_to_0x10(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let sel = _mm256_and_si256(_mm256_shuffle_epi8(v, spread), mask);
    _mm256_and_si256(_mm256_cmpeq_epi8(sel, mask), _mm256_set1_epi8(0x10))
}

// ---------------------------------------------------------------------------------------------
// Legacy 32-element blocks
// ---------------------------------------------------------------------------------------------
//
// Eight consecutive blocks of a row form a group. Their quants are decoded once into eight
// registers in the interleaved layout of `crate::kernels::acts::interleave_q8` (register `r`,
// bytes `4k..4k+4`: elements `4r..4r+4` of block `k`), which the activations also come in.
// Against one column that takes eight `maddubs` and vertical adds: the 4-byte lane `k` of the sum
// collects exactly the products of block `k`, so one `madd` by ones yields the eight block sums
// with no horizontal reduction. The float part is the reference one: lane `k` = block `k mod 8`.
// A row's last, partial group is decoded in pairs of blocks (two `maddubs` per pair and column),
// and the pair sums are folded into block lanes with one short horizontal tree per column.

/// A legacy block type: how a group of eight decodes and how it dots with one column.
pub(super) trait Legacy: Copy + Default {
    /// Subtracted from every quant (`value = q − OFFSET`), applied as `OFFSET·Σa`.
    const OFFSET: i32;
    /// Whether the block has a minimum (paired with Q8_1's `s`).
    const MIN: bool;
    /// A decoded group, reused for every column.
    type Group: Copy;
    /// Decode `blocks[0..8]`.
    unsafe fn decode8(blocks: &[Self; 8]) -> Self::Group;
    /// `Σ q·a` of the eight blocks (lane k = block k); `a` points at the group's interleaved
    /// activations (256 bytes).
    unsafe fn sums8<D: Dot>(q: &Self::Group, a: *const i8) -> __m256i;
    /// Two blocks of a row's last, partial group (the second may be a zero block), decoded.
    type Pair: Copy;
    /// Decode a pair.
    unsafe fn decode2(b0: &Self, b1: &Self) -> Self::Pair;
    /// `Σ q·a` of a pair: i32 lanes 0..4 add up to block 0's, lanes 4..8 to block 1's; `a`
    /// points at the pair's 64 activation bytes (see `interleave_q8`).
    unsafe fn sums2<D: Dot>(q: &Self::Pair, a: *const i8) -> __m256i;
    /// Scale bits.
    fn d(&self) -> u16;
    /// Minimum bits (0 when there is none).
    fn m(&self) -> u16;
}

/// Four registers, each two 128-bit rows of four 4-byte words (low half: rows `k`, high half:
/// rows `k + 4`), transposed within the halves: output `u` holds word `u` of rows 0..4 (low half)
/// and of rows 4..8 (high half).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn transpose_words4(y: [__m256i; 4]) -> [__m256i; 4] {
    let t0 = _mm256_unpacklo_epi32(y[0], y[1]);
    let t1 = _mm256_unpackhi_epi32(y[0], y[1]);
    let t2 = _mm256_unpacklo_epi32(y[2], y[3]);
    let t3 = _mm256_unpackhi_epi32(y[2], y[3]);
    [
        _mm256_unpacklo_epi64(t0, t2),
        _mm256_unpackhi_epi64(t0, t2),
        _mm256_unpacklo_epi64(t1, t3),
        _mm256_unpackhi_epi64(t1, t3),
    ]
}

/// 16 bytes at `p[k]` and `p[k + 4]` as the two halves of register `k` (k = 0..4), transposed by
/// [`transpose_words4`]: output `u` holds bytes `4u..4u+4` of each of the eight sources at bytes
/// `4k..4k+4`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn gather_words(p: [*const u8; 8]) -> [__m256i; 4] {
    transpose_words4(std::array::from_fn(|k| _mm256_loadu2_m128i(p[k + 4].cast(), p[k].cast())))
}

/// The fifth bits of eight Q5 blocks (`qh[k]`: bit `e` for element `e` of block `k`) as 0x10
/// bytes in the interleaved layout: register `r`, byte `4k + i` ← bit `4r + i` of `qh[k]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn high_bits8(qh: &[u32; 8]) -> [__m256i; 8] {
    let v = _mm256_loadu_si256(qh.as_ptr().cast());
    let ten = _mm256_set1_epi8(0x10);
    std::array::from_fn(|r| {
        // Bits 4r..4r+4 sit in byte r/2 of each word: copy it to the word's four bytes, then
        // test bit 4(r mod 2) + i in byte i.
        let byte = (r / 2) as i8;
        let spread: [i8; 32] = std::array::from_fn(|j| 4 * ((j as i8 / 4) % 4) + byte);
        let shift = 4 * (r % 2);
        let mask = _mm256_set1_epi32(i32::from_le_bytes([1 << shift, 2 << shift, 4 << shift, 8 << shift]));
        let sel = _mm256_and_si256(_mm256_shuffle_epi8(v, _mm256_loadu_si256(spread.as_ptr().cast())), mask);
        _mm256_and_si256(_mm256_cmpeq_epi8(sel, mask), ten)
    })
}

/// The nibbles of eight 16-byte `qs` arrays, interleaved (element `j` is the low nibble of byte
/// `j`, element `j + 16` the high one).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn nibbles8(qs: [*const u8; 8]) -> [__m256i; 8] {
    let w = gather_words(qs);
    let m = _mm256_set1_epi8(0x0f);
    let lo = |u: usize| _mm256_and_si256(w[u], m);
    let hi = |u: usize| _mm256_and_si256(_mm256_srli_epi16(w[u], 4), m);
    [lo(0), lo(1), lo(2), lo(3), hi(0), hi(1), hi(2), hi(3)]
}

/// `Σ q·a` of a pair of unsigned-quant blocks (quants ≤ 31: four products per i16 lane).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn sums_pair(q: &[__m256i; 2], a: *const i8) -> __m256i {
    let p0 = _mm256_maddubs_epi16(q[0], _mm256_loadu_si256(a.cast()));
    let p1 = _mm256_maddubs_epi16(q[1], _mm256_loadu_si256(a.add(32).cast()));
    _mm256_madd_epi16(_mm256_add_epi16(p0, p1), _mm256_set1_epi16(1))
}

/// `Σ q·a` for unsigned quants whose eight products per 4-byte lane stay within i16 (quants
/// ≤ 15: 8·2·15·128 < 2^15).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn sums_narrow(q: &[__m256i; 8], a: *const i8) -> __m256i {
    let p = |r: usize| _mm256_maddubs_epi16(q[r], _mm256_loadu_si256(a.add(32 * r).cast()));
    let s0 = _mm256_add_epi16(_mm256_add_epi16(p(0), p(1)), _mm256_add_epi16(p(2), p(3)));
    let s1 = _mm256_add_epi16(_mm256_add_epi16(p(4), p(5)), _mm256_add_epi16(p(6), p(7)));
    _mm256_madd_epi16(_mm256_add_epi16(s0, s1), _mm256_set1_epi16(1))
}

/// As [`sums_narrow`] for quants ≤ 31 (four products per i16 lane, then i32).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn sums_wide(q: &[__m256i; 8], a: *const i8) -> __m256i {
    let ones = _mm256_set1_epi16(1);
    let p = |r: usize| _mm256_maddubs_epi16(q[r], _mm256_loadu_si256(a.add(32 * r).cast()));
    let s0 = _mm256_add_epi16(_mm256_add_epi16(p(0), p(1)), _mm256_add_epi16(p(2), p(3)));
    let s1 = _mm256_add_epi16(_mm256_add_epi16(p(4), p(5)), _mm256_add_epi16(p(6), p(7)));
    _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones))
}

/// The integer multiply-accumulate a kernel table uses. Every method returns the same exact
/// integers whatever the implementation: AVX2's `maddubs` + `madd` ([`Avx2Dot`]), or AVX-512
/// VNNI's `vpdpbusd` / `vpdpwssd`, which multiply, add neighbours and accumulate in one
/// instruction (`super::vnni`). The decoding, layouts and float arithmetic around them are shared.
pub(super) trait Dot {
    /// [`sums_narrow`]: unsigned quants ≤ 15, eight registers, lane k = block k.
    unsafe fn sums_narrow(q: &[__m256i; 8], a: *const i8) -> __m256i;
    /// [`sums_wide`]: unsigned quants ≤ 31.
    unsafe fn sums_wide(q: &[__m256i; 8], a: *const i8) -> __m256i;
    /// [`sums_pair`]: a pair of blocks of unsigned quants ≤ 31.
    unsafe fn sums_pair(q: &[__m256i; 2], a: *const i8) -> __m256i;
    /// Signed quants given as (|q|, q): `Σ |q|·(a·sign q)` of eight registers, lane k = block k.
    unsafe fn sums_signed8(aq: &[__m256i; 8], q: &[__m256i; 8], a: *const i8) -> __m256i;
    /// As [`Dot::sums_signed8`] for a pair of blocks (i32 lanes 0..4: block 0, 4..8: block 1).
    unsafe fn sums_signed2(aq: &[__m256i; 2], q: &[__m256i; 2], a: *const i8) -> __m256i;
    /// `acc + madd(maddubs(q, a[0..32]), sc)`: a K-quant chunk of unsigned quants ≤ 63 times its
    /// i16 group scales, in i32 lanes of four elements.
    unsafe fn scaled_chunk(acc: __m256i, q: __m256i, a: *const i8, sc: __m256i) -> __m256i;
}

/// AVX2 `maddubs` + `madd`.
pub(super) struct Avx2Dot;

/// `Σ |q|·(a·sign q)` of one register in i32 lanes (exact: |q| ≤ 128, |a| ≤ 127).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn signed4(aq: __m256i, q: __m256i, a: *const i8) -> __m256i {
    let ar = _mm256_sign_epi8(_mm256_loadu_si256(a.cast()), q);
    _mm256_madd_epi16(_mm256_maddubs_epi16(aq, ar), _mm256_set1_epi16(1))
}

/// [`Dot::sums_signed8`] with `maddubs`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn signed8(aq: &[__m256i; 8], q: &[__m256i; 8], a: *const i8) -> __m256i {
    let p = |r: usize| signed4(aq[r], q[r], a.add(32 * r));
    let s0 = _mm256_add_epi32(_mm256_add_epi32(p(0), p(1)), _mm256_add_epi32(p(2), p(3)));
    let s1 = _mm256_add_epi32(_mm256_add_epi32(p(4), p(5)), _mm256_add_epi32(p(6), p(7)));
    _mm256_add_epi32(s0, s1)
}

impl Dot for Avx2Dot {
    #[inline(always)]
    unsafe fn sums_narrow(q: &[__m256i; 8], a: *const i8) -> __m256i {
        sums_narrow(q, a)
    }
    #[inline(always)]
    unsafe fn sums_wide(q: &[__m256i; 8], a: *const i8) -> __m256i {
        sums_wide(q, a)
    }
    #[inline(always)]
    unsafe fn sums_pair(q: &[__m256i; 2], a: *const i8) -> __m256i {
        sums_pair(q, a)
    }
    #[inline(always)]
    unsafe fn sums_signed8(aq: &[__m256i; 8], q: &[__m256i; 8], a: *const i8) -> __m256i {
        signed8(aq, q, a)
    }
    #[inline(always)]
    unsafe fn sums_signed2(aq: &[__m256i; 2], q: &[__m256i; 2], a: *const i8) -> __m256i {
        _mm256_add_epi32(signed4(aq[0], q[0], a), signed4(aq[1], q[1], a.add(32)))
    }
    #[inline(always)]
    unsafe fn scaled_chunk(acc: __m256i, q: __m256i, a: *const i8, sc: __m256i) -> __m256i {
        scaled_chunk(acc, q, a, sc)
    }
}

/// See [`Dot::scaled_chunk`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scaled_chunk(acc: __m256i, q: __m256i, a: *const i8, sc: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(q, _mm256_loadu_si256(a.cast()));
    _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc))
}

macro_rules! legacy_nibbles {
    ($t:ty, $offset:expr, $min:expr, |$b:ident| $m:expr) => {
        impl Legacy for $t {
            const OFFSET: i32 = $offset;
            const MIN: bool = $min;
            type Group = [__m256i; 8];
            #[inline(always)]
            unsafe fn decode8(blocks: &[Self; 8]) -> [__m256i; 8] {
                nibbles8(std::array::from_fn(|k| blocks[k].qs.as_ptr()))
            }
            #[inline(always)]
            unsafe fn sums8<D: Dot>(q: &[__m256i; 8], a: *const i8) -> __m256i {
                D::sums_narrow(q, a)
            }
            type Pair = [__m256i; 2];
            #[inline(always)]
            unsafe fn decode2(b0: &Self, b1: &Self) -> [__m256i; 2] {
                let raw = _mm256_loadu2_m128i(b1.qs.as_ptr().cast(), b0.qs.as_ptr().cast());
                let m = _mm256_set1_epi8(0x0f);
                [_mm256_and_si256(raw, m), _mm256_and_si256(_mm256_srli_epi16(raw, 4), m)]
            }
            #[inline(always)]
            unsafe fn sums2<D: Dot>(q: &[__m256i; 2], a: *const i8) -> __m256i {
                D::sums_pair(q, a)
            }
            #[inline(always)]
            fn d(&self) -> u16 {
                self.d
            }
            #[inline(always)]
            fn m(&self) -> u16 {
                let $b = self;
                $m
            }
        }
    };
}
legacy_nibbles!(BlockQ4_0, 8, false, |b| {
    let _ = b;
    0
});
legacy_nibbles!(BlockQ4_1, 0, true, |b| b.m);

macro_rules! legacy_five_bit {
    ($t:ty, $offset:expr, $min:expr, |$b:ident| $m:expr) => {
        impl Legacy for $t {
            const OFFSET: i32 = $offset;
            const MIN: bool = $min;
            type Group = [__m256i; 8];
            #[inline(always)]
            unsafe fn decode8(blocks: &[Self; 8]) -> [__m256i; 8] {
                let low = nibbles8(std::array::from_fn(|k| blocks[k].qs.as_ptr()));
                let high = high_bits8(&blocks.map(|b| u32::from_le_bytes(b.qh)));
                let mut q = low;
                for (q, h) in q.iter_mut().zip(high) {
                    *q = _mm256_or_si256(*q, h);
                }
                q
            }
            #[inline(always)]
            unsafe fn sums8<D: Dot>(q: &[__m256i; 8], a: *const i8) -> __m256i {
                D::sums_wide(q, a)
            }
            type Pair = [__m256i; 2];
            #[inline(always)]
            unsafe fn decode2(b0: &Self, b1: &Self) -> [__m256i; 2] {
                let q = |b: &Self| _mm256_or_si256(nibbles(&b.qs), bits_to_0x10(u32::from_le_bytes(b.qh)));
                let (q0, q1) = (q(b0), q(b1));
                [_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31)]
            }
            #[inline(always)]
            unsafe fn sums2<D: Dot>(q: &[__m256i; 2], a: *const i8) -> __m256i {
                D::sums_pair(q, a)
            }
            #[inline(always)]
            fn d(&self) -> u16 {
                self.d
            }
            #[inline(always)]
            fn m(&self) -> u16 {
                let $b = self;
                $m
            }
        }
    };
}
legacy_five_bit!(BlockQ5_0, 16, false, |b| {
    let _ = b;
    0
});
legacy_five_bit!(BlockQ5_1, 0, true, |b| b.m);

impl Legacy for BlockQ8_0 {
    const OFFSET: i32 = 0;
    const MIN: bool = false;
    /// (|q|, q): `maddubs(|q|, a·sign(q))` is exact since |q| ≤ 128 and |a| ≤ 127.
    type Group = ([__m256i; 8], [__m256i; 8]);
    #[inline(always)]
    unsafe fn decode8(blocks: &[Self; 8]) -> Self::Group {
        let p: [*const u8; 8] = std::array::from_fn(|k| blocks[k].qs.as_ptr().cast());
        let lo = gather_words(p);
        let hi = gather_words(p.map(|p| p.wrapping_add(16)));
        let q = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]];
        (q.map(|v| _mm256_abs_epi8(v)), q)
    }
    #[inline(always)]
    unsafe fn sums8<D: Dot>((aq, q): &Self::Group, a: *const i8) -> __m256i {
        D::sums_signed8(aq, q, a)
    }
    type Pair = ([__m256i; 2], [__m256i; 2]);
    #[inline(always)]
    unsafe fn decode2(b0: &Self, b1: &Self) -> Self::Pair {
        let (p0, p1) = (b0.qs.as_ptr(), b1.qs.as_ptr());
        let q = [
            _mm256_loadu2_m128i(p1.cast(), p0.cast()),
            _mm256_loadu2_m128i(p1.add(16).cast(), p0.add(16).cast()),
        ];
        (q.map(|v| _mm256_abs_epi8(v)), q)
    }
    #[inline(always)]
    unsafe fn sums2<D: Dot>((aq, q): &Self::Pair, a: *const i8) -> __m256i {
        D::sums_signed2(aq, q, a)
    }
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d
    }
    #[inline(always)]
    fn m(&self) -> u16 {
        0
    }
}

/// Apply a group's block sums to column `c`: offset correction, then the reference fmas.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn legacy_apply<L: Legacy>(
    mut isum: __m256i,
    dw: __m256,
    mw: __m256,
    acts: &ActsView<'_>,
    c: usize,
    g: usize,
    acc: &mut __m256,
) {
    let at = c * acts.q8_stride + g;
    if L::OFFSET != 0 {
        let qsum = _mm256_loadu_si256(acts.q8_qsum.as_ptr().add(at).cast());
        isum = _mm256_sub_epi32(isum, _mm256_mullo_epi32(qsum, _mm256_set1_epi32(L::OFFSET)));
    }
    let da = _mm256_loadu_ps(acts.q8_d.as_ptr().add(at));
    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, da), *acc);
    if L::MIN {
        let sa = _mm256_loadu_ps(acts.q8_s.as_ptr().add(at));
        *acc = _mm256_fmadd_ps(mw, sa, *acc);
    }
}

/// Eight blocks' scales and minimums as f32: each block's first four bytes
/// (`d`, then `m` or the next two bytes), split into the two f16 halves.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn scales8<L: Legacy>(blocks: &[L; 8]) -> (__m256, __m256) {
    // Eight scalar loads and inserts: a gather costs several times more on some CPUs (Zen 4).
    let word = |k: usize| (blocks.as_ptr().add(k) as *const i32).read_unaligned();
    let v = _mm256_setr_epi32(word(0), word(1), word(2), word(3), word(4), word(5), word(6), word(7));
    // Per 128-bit half: the four low u16 (d), then the four high u16 (m).
    let split = _mm256_setr_epi8(
        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11,
        14, 15,
    );
    let t = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, split), 0b11_01_10_00);
    let dw = _mm256_cvtph_ps(_mm256_castsi256_si128(t));
    let mw = if L::MIN { _mm256_cvtph_ps(_mm256_extracti128_si256(t, 1)) } else { _mm256_setzero_ps() };
    (dw, mw)
}

/// One group of eight blocks (starting at block `g` of the row) against every column.
// Always inlined, without features of its own, so that it takes the features (and the
// `Dot` implementation) of the entry point it is inlined into.
#[inline(always)]
unsafe fn legacy_group8<L: Legacy, D: Dot>(
    blocks: &[L; 8],
    g: usize,
    acts: &ActsView<'_>,
    acc: &mut [__m256],
) {
    let q = L::decode8(blocks);
    let (dw, mw) = scales8(blocks);
    let stride = acts.q8_stride * QK;
    let a = acts.q8_t.as_ptr().add(g * QK);
    for (c, acc) in acc.iter_mut().enumerate() {
        legacy_apply::<L>(L::sums8::<D>(&q, a.add(c * stride)), dw, mw, acts, c, g, acc);
    }
}

/// The `P` pairs of a row's last, partial group (blocks `blocks`, 1..8 of them, starting at
/// block `g`) against every column. The pair sums fold into lane `k` = block `k` (zero beyond
/// the last block, whose lanes the fmas then leave unchanged, as the reference never touches
/// them).
// Always inlined, without features of its own, so that it takes the features (and the
// `Dot` implementation) of the entry point it is inlined into.
#[inline(always)]
unsafe fn legacy_tail<L: Legacy, D: Dot, const P: usize>(
    blocks: &[L],
    g: usize,
    acts: &ActsView<'_>,
    acc: &mut [__m256],
) {
    let zero = L::default();
    // Loops rather than closures here and below: a closure would not share the features of
    // the entry point this function is inlined into.
    let mut q = [L::decode2(&zero, &zero); P];
    for (p, q) in q.iter_mut().enumerate() {
        *q = L::decode2(blocks.get(2 * p).unwrap_or(&zero), blocks.get(2 * p + 1).unwrap_or(&zero));
    }
    let (mut dh, mut mh) = ([0u16; 8], [0u16; 8]);
    for (k, b) in blocks.iter().take(8).enumerate() {
        dh[k] = b.d();
        mh[k] = b.m();
    }
    let dw = _mm256_cvtph_ps(_mm_loadu_si128(dh.as_ptr().cast()));
    let mw = _mm256_cvtph_ps(_mm_loadu_si128(mh.as_ptr().cast()));
    let stride = acts.q8_stride * QK;
    let a = acts.q8_t.as_ptr().add(g * QK);
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (c, acc) in acc.iter_mut().enumerate() {
        let a = a.add(c * stride);
        let mut x = [_mm256_setzero_si256(); 4];
        for (p, q) in q.iter().enumerate() {
            x[p] = L::sums2::<D>(q, a.add(2 * QK * p));
        }
        // Per 128-bit half: blocks 0, 2, 4, 6 (low) and 1, 3, 5, 7 (high); then in order.
        let h = _mm256_hadd_epi32(_mm256_hadd_epi32(x[0], x[1]), _mm256_hadd_epi32(x[2], x[3]));
        legacy_apply::<L>(_mm256_permutevar8x32_epi32(h, order), dw, mw, acts, c, g, acc);
    }
}

// Always inlined, without features of its own, so that it takes the features (and the
// `Dot` implementation) of the entry point it is inlined into.
#[inline(always)]
pub(super) unsafe fn rows_legacy<L: Legacy, D: Dot>(
    w: &[L],
    nb: usize,
    acts: &ActsView<'_>,
    out: &mut [f32],
) {
    // One and two columns (decoding, and all but the shortest verify passes) with their
    // accumulators in registers; more through a MAX_COLUMNS array cut to `b`.
    match acts.b {
        1 => rows_legacy_n::<L, D, 1>(w, nb, acts, out),
        2 => rows_legacy_n::<L, D, 2>(w, nb, acts, out),
        _ => rows_legacy_n::<L, D, MAX_COLUMNS>(w, nb, acts, out),
    }
}

/// [`rows_legacy`] with an accumulator array of `B ≥ acts.b` registers, of which the first
/// `acts.b` are used.
// Always inlined, without features of its own, so that it takes the features (and the
// `Dot` implementation) of the entry point it is inlined into.
#[inline(always)]
unsafe fn rows_legacy_n<L: Legacy, D: Dot, const B: usize>(
    w: &[L],
    nb: usize,
    acts: &ActsView<'_>,
    out: &mut [f32],
) {
    let b = acts.b.min(B);
    let whole = nb / 8 * 8;
    for (row, out) in w.chunks_exact(nb).zip(out.chunks_exact_mut(b)) {
        let mut acc = [_mm256_setzero_ps(); B];
        let acc = &mut acc[..b];
        let (groups, tail) = row.split_at(whole);
        for (gi, group) in groups.chunks_exact(8).enumerate() {
            prefetch_ahead(group.as_ptr(), 8 * std::mem::size_of::<L>());
            if let Ok(blocks) = <&[L; 8]>::try_from(group) {
                legacy_group8::<L, D>(blocks, 8 * gi, acts, acc);
            }
        }
        legacy_tail_any::<L, D>(tail, whole, acts, acc);
        for (o, a) in out.iter_mut().zip(acc.iter()) {
            *o = hsum(*a);
        }
    }
}

/// A row's last, partial group (`tail`: 0..8 blocks starting at block `whole`) against every
/// column.
// Always inlined, without features of its own, so that it takes the features (and the
// `Dot` implementation) of the entry point it is inlined into.
#[inline(always)]
pub(super) unsafe fn legacy_tail_any<L: Legacy, D: Dot>(
    tail: &[L],
    whole: usize,
    acts: &ActsView<'_>,
    acc: &mut [__m256],
) {
    match tail.len().div_ceil(2) {
        0 => {}
        1 => legacy_tail::<L, D, 1>(tail, whole, acts, acc),
        2 => legacy_tail::<L, D, 2>(tail, whole, acts, acc),
        3 => legacy_tail::<L, D, 3>(tail, whole, acts, acc),
        _ => legacy_tail::<L, D, 4>(tail, whole, acts, acc),
    }
}

macro_rules! legacy_entry {
    ($name:ident, $t:ty) => {
        /// Row kernel (see `RowsFn`).
        ///
        /// # Safety
        /// AVX2, FMA and F16C must be available; the `RowsFn` shape contract must hold.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(w: &[$t], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
            rows_legacy::<$t, Avx2Dot>(w, nb, acts, out)
        }
    };
}
legacy_entry!(rows_q4_0, BlockQ4_0);
legacy_entry!(rows_q4_1, BlockQ4_1);
legacy_entry!(rows_q5_0, BlockQ5_0);
legacy_entry!(rows_q5_1, BlockQ5_1);
legacy_entry!(rows_q8_0, BlockQ8_0);
