//! AVX2 + FMA + F16C kernels for the K-quant super-blocks (Q2_K … Q6_K against Q8_K
//! activations), bit-exact twins of [`super::super::scalar`].
//!
//! A super-block is decoded once into eight 32-quant registers and its group scales, then dotted
//! against every column: `maddubs` + `madd` by the group scale keep lane `l` = elements `4l..4l+4`
//! of each 32-chunk, accumulated exactly in i32 over the super-block, then the two fmas. The
//! multiply-add goes through [`Dot`], so the VNNI table reuses these bodies (`super::vnni`).

use core::arch::x86_64::*;

use crate::kernels::acts::{ActsView, MAX_COLUMNS};
use crate::quant::{k4_scale_min, q3_k_scales, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, QK_K};

use super::avx2::{h2f, hsum, prefetch_ahead, Avx2Dot, Dot};
/// A super-block decoded for the dot product: quants of 32-chunk `t` in `q[t]`, the i16 group
/// scales of that chunk in `sc[t]` (lanes 0..8: group 2t, lanes 8..16: group 2t+1), and the 16
/// correction factors (mins, or scales for offset types).
pub(super) struct KDecoded {
    q: [__m256i; 8],
    sc: [__m256i; 8],
    corr: __m256i,
    d: f32,
    dmin: f32,
}

pub(super) trait KQuant: Copy {
    /// `Some(log2 offset)` for offset types (Q3_K: 2, Q6_K: 5); `None` for min types.
    const OFFSET_SHIFT: Option<i32>;
    unsafe fn decode(&self) -> KDecoded;
}

/// Chunk scale vectors from 16 per-group scales.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn group_scales(s: &[i16; 16]) -> [__m256i; 8] {
    let mut v = [_mm256_setzero_si256(); 8];
    for (t, v) in v.iter_mut().enumerate() {
        *v = _mm256_set_m128i(_mm_set1_epi16(s[2 * t + 1]), _mm_set1_epi16(s[2 * t]));
    }
    v
}

/// Chunk scale vectors from 8 per-32 scales.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn chunk_scales(s: &[u8; 8]) -> [__m256i; 8] {
    let mut v = [_mm256_setzero_si256(); 8];
    for (t, v) in v.iter_mut().enumerate() {
        *v = _mm256_set1_epi16(s[t] as i16);
    }
    v
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_i16x16(v: &[i16; 16]) -> __m256i {
    _mm256_loadu_si256(v.as_ptr().cast())
}

impl KQuant for BlockQ2_K {
    const OFFSET_SHIFT: Option<i32> = None;
    #[inline(always)]
    unsafe fn decode(&self) -> KDecoded {
        let m3 = _mm256_set1_epi8(3);
        let mut q = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let raw = _mm256_loadu_si256(self.qs.as_ptr().add(32 * h).cast());
            q[4 * h] = _mm256_and_si256(raw, m3);
            q[4 * h + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 2), m3);
            q[4 * h + 2] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m3);
            q[4 * h + 3] = _mm256_and_si256(_mm256_srli_epi16(raw, 6), m3);
        }
        let sc: [i16; 16] = std::array::from_fn(|g| (self.scales[g] & 0x0f) as i16);
        let mn: [i16; 16] = std::array::from_fn(|g| (self.scales[g] >> 4) as i16);
        KDecoded { q, sc: group_scales(&sc), corr: load_i16x16(&mn), d: h2f(self.d), dmin: h2f(self.dmin) }
    }
}

impl KQuant for BlockQ3_K {
    const OFFSET_SHIFT: Option<i32> = Some(2);
    #[inline(always)]
    unsafe fn decode(&self) -> KDecoded {
        let m3 = _mm256_set1_epi8(3);
        let one = _mm256_set1_epi8(1);
        let hm = _mm256_loadu_si256(self.hmask.as_ptr().cast());
        let mut q = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let raw = _mm256_loadu_si256(self.qs.as_ptr().add(32 * h).cast());
            let lows = [
                _mm256_and_si256(raw, m3),
                _mm256_and_si256(_mm256_srli_epi16(raw, 2), m3),
                _mm256_and_si256(_mm256_srli_epi16(raw, 4), m3),
                _mm256_and_si256(_mm256_srli_epi16(raw, 6), m3),
            ];
            for (j, low) in lows.into_iter().enumerate() {
                let bit = _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128((4 * h + j) as i32)), one);
                q[4 * h + j] = _mm256_or_si256(low, _mm256_slli_epi16(bit, 2));
            }
        }
        let raw = q3_k_scales(&self.scales);
        let sc: [i16; 16] = std::array::from_fn(|g| raw[g] as i16 - 32);
        KDecoded { q, sc: group_scales(&sc), corr: load_i16x16(&sc), d: h2f(self.d), dmin: 0.0 }
    }
}

/// Scales and mins of Q4_K/Q5_K: (chunk scales, mins repeated per 16-group).
#[inline(always)]
fn k4_unpack(s: &[u8; 12]) -> ([u8; 8], [i16; 16]) {
    let mut sc = [0u8; 8];
    let mut mn = [0i16; 16];
    for j in 0..8 {
        let (a, m) = k4_scale_min(j, s);
        sc[j] = a;
        mn[2 * j] = m as i16;
        mn[2 * j + 1] = m as i16;
    }
    (sc, mn)
}

impl KQuant for BlockQ4_K {
    const OFFSET_SHIFT: Option<i32> = None;
    #[inline(always)]
    unsafe fn decode(&self) -> KDecoded {
        let m4 = _mm256_set1_epi8(0x0f);
        let mut q = [_mm256_setzero_si256(); 8];
        for i in 0..4 {
            let raw = _mm256_loadu_si256(self.qs.as_ptr().add(32 * i).cast());
            q[2 * i] = _mm256_and_si256(raw, m4);
            q[2 * i + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        }
        let (sc, mn) = k4_unpack(&self.scales);
        KDecoded { q, sc: chunk_scales(&sc), corr: load_i16x16(&mn), d: h2f(self.d), dmin: h2f(self.dmin) }
    }
}

impl KQuant for BlockQ5_K {
    const OFFSET_SHIFT: Option<i32> = None;
    #[inline(always)]
    unsafe fn decode(&self) -> KDecoded {
        let m4 = _mm256_set1_epi8(0x0f);
        let one = _mm256_set1_epi8(1);
        let hb = _mm256_loadu_si256(self.qh.as_ptr().cast());
        let mut q = [_mm256_setzero_si256(); 8];
        for i in 0..4 {
            let raw = _mm256_loadu_si256(self.qs.as_ptr().add(32 * i).cast());
            let h0 = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * i as i32)), one);
            let h1 = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * i as i32 + 1)), one);
            q[2 * i] = _mm256_or_si256(_mm256_and_si256(raw, m4), _mm256_slli_epi16(h0, 4));
            q[2 * i + 1] =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), _mm256_slli_epi16(h1, 4));
        }
        let (sc, mn) = k4_unpack(&self.scales);
        KDecoded { q, sc: chunk_scales(&sc), corr: load_i16x16(&mn), d: h2f(self.d), dmin: h2f(self.dmin) }
    }
}

impl KQuant for BlockQ6_K {
    const OFFSET_SHIFT: Option<i32> = Some(5);
    #[inline(always)]
    unsafe fn decode(&self) -> KDecoded {
        let m4 = _mm256_set1_epi8(0x0f);
        let m2 = _mm256_set1_epi8(3);
        let mut q = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let l0 = _mm256_loadu_si256(self.ql.as_ptr().add(64 * h).cast());
            let l1 = _mm256_loadu_si256(self.ql.as_ptr().add(64 * h + 32).cast());
            let hb = _mm256_loadu_si256(self.qh.as_ptr().add(32 * h).cast());
            let high = |k: i32| {
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * k)), m2), 4)
            };
            q[4 * h] = _mm256_or_si256(_mm256_and_si256(l0, m4), high(0));
            q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), high(1));
            q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), high(2));
            q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), high(3));
        }
        let sc: [i16; 16] = std::array::from_fn(|g| self.scales[g] as i16);
        KDecoded { q, sc: group_scales(&sc), corr: load_i16x16(&sc), d: h2f(self.d), dmin: 0.0 }
    }
}

// Always inlined, without features of its own, so that it takes the features (and the
// `Dot` implementation) of the entry point it is inlined into.
#[inline(always)]
pub(super) unsafe fn rows_k<K: KQuant, D: Dot>(w: &[K], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    let (b, n) = (acts.b, acts.n);
    let (nk, ng) = (n / QK_K, n / 16);
    for (row, out) in w.chunks_exact(nb).zip(out.chunks_exact_mut(b)) {
        let mut acc = [_mm256_setzero_ps(); MAX_COLUMNS];
        for (i, blk) in row.iter().enumerate() {
            prefetch_ahead(blk, std::mem::size_of::<K>());
            let dec = blk.decode();
            for (c, acc) in acc.iter_mut().enumerate().take(b) {
                let a = acts.k_qs.as_ptr().add(c * n + QK_K * i);
                let mut isum = _mm256_setzero_si256();
                for t in 0..8 {
                    isum = D::scaled_chunk(isum, dec.q[t], a.add(32 * t), dec.sc[t]);
                }
                let bs = _mm256_loadu_si256(acts.k_bsums.as_ptr().add(c * ng + 16 * i).cast());
                let corr = _mm256_madd_epi16(bs, dec.corr);
                let da = *acts.k_d.get_unchecked(c * nk + i);
                match K::OFFSET_SHIFT {
                    None => {
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(dec.d * da), *acc);
                        *acc =
                            _mm256_fnmadd_ps(_mm256_cvtepi32_ps(corr), _mm256_set1_ps(dec.dmin * da), *acc);
                    }
                    Some(shift) => {
                        let isum = _mm256_sub_epi32(isum, _mm256_sll_epi32(corr, _mm_cvtsi32_si128(shift)));
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(dec.d * da), *acc);
                    }
                }
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = hsum(*a);
        }
    }
}

macro_rules! k_entry {
    ($name:ident, $t:ty) => {
        /// Row kernel (see `RowsFn`).
        ///
        /// # Safety
        /// AVX2, FMA and F16C must be available; the `RowsFn` shape contract must hold.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(w: &[$t], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
            rows_k::<$t, Avx2Dot>(w, nb, acts, out)
        }
    };
}
k_entry!(rows_q2_k, BlockQ2_K);
k_entry!(rows_q3_k, BlockQ3_K);
k_entry!(rows_q4_k, BlockQ4_K);
k_entry!(rows_q5_k, BlockQ5_K);
k_entry!(rows_q6_k, BlockQ6_K);
