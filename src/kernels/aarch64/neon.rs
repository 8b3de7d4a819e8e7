//! NEON kernels (aarch64), bit-exact twins of [`super::super::scalar`], in two flavours: plain
//! NEON (every aarch64 CPU) and NEON with the `dotprod` extension (SDOT, ARMv8.2+).
//!
//! The kernel bodies are generic over [`Dot4`], the one operation the flavours differ in (four
//! 8-bit products summed into each i32 lane); the public entry points instantiate them under the
//! matching `#[target_feature]`. SDOT and the f16 conversions are written as inline assembly
//! because their intrinsics are not stable in Rust 1.85.
//!
//! The arithmetic per column is the reference one (see [`crate::quant::dot`]): integer sums are
//! exact, the eight f32 lanes of the reference live in two `float32x4_t` (lanes 0..4 and 4..8),
//! and [`hsum`] folds them in the reference order. NEON's `vcvtaq_s32_f32` rounds half away from
//! zero and `vcvtnq_s32_f32` half to even, exactly GGML's Q8_0 and Q8_K activation rules (the
//! float rows, activation quantizers and f16 ops are in `neon_ops.rs`).

use core::arch::aarch64::*;
use core::arch::asm;

use crate::kernels::acts::{ActsView, MAX_COLUMNS};
use crate::quant::{
    k4_scale_min, q3_k_scales, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1,
    BlockQ5_K, BlockQ6_K, BlockQ8_0, QK, QK_K,
};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Four-way 8-bit dot product into i32 lanes: `acc[l] + Σ_{j<4} a[4l+j]·b[4l+j]`.
pub(crate) trait Dot4 {
    unsafe fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// Plain NEON: widening multiplies and pairwise adds.
pub(crate) struct Mull;

impl Dot4 for Mull {
    #[inline(always)]
    unsafe fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let p0 = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
        let p1 = vpaddlq_s16(vmull_high_s8(a, b));
        vaddq_s32(acc, vpaddq_s32(p0, p1))
    }
}

/// ARMv8.2 dot product (SDOT).
pub(crate) struct Sdot;

#[target_feature(enable = "dotprod")]
#[inline]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY (of the asm): register-only, no memory or stack access; the caller guarantees the
    // CPU has dotprod.
    asm!(
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

impl Dot4 for Sdot {
    #[inline(always)]
    unsafe fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        sdot(acc, a, b)
    }
}

/// Four f16 (the low half of `v`) to f32.
#[inline(always)]
pub(super) unsafe fn f16_lo(v: uint16x8_t) -> float32x4_t {
    let r: float32x4_t;
    asm!("fcvtl {r:v}.4s, {v:v}.4h", r = lateout(vreg) r, v = in(vreg) v, options(pure, nomem, nostack, preserves_flags));
    r
}

/// Four f16 (the high half of `v`) to f32.
#[inline(always)]
pub(super) unsafe fn f16_hi(v: uint16x8_t) -> float32x4_t {
    let r: float32x4_t;
    asm!("fcvtl2 {r:v}.4s, {v:v}.8h", r = lateout(vreg) r, v = in(vreg) v, options(pure, nomem, nostack, preserves_flags));
    r
}

/// Eight f32 to f16 (round to nearest even).
#[inline(always)]
pub(super) unsafe fn to_f16x8(lo: float32x4_t, hi: float32x4_t) -> uint16x8_t {
    let mut r: uint16x8_t = vdupq_n_u16(0);
    asm!(
        "fcvtn {r:v}.4h, {lo:v}.4s",
        "fcvtn2 {r:v}.8h, {hi:v}.4s",
        r = inout(vreg) r,
        lo = in(vreg) lo,
        hi = in(vreg) hi,
        options(pure, nomem, nostack, preserves_flags)
    );
    r
}

/// Eight f16 bits to two f32 vectors.
#[inline(always)]
unsafe fn f16x8(bits: &[u16; 8]) -> (float32x4_t, float32x4_t) {
    let v = vld1q_u16(bits.as_ptr());
    (f16_lo(v), f16_hi(v))
}

/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))` with `lo = a0..4`, `hi = a4..8`.
#[inline(always)]
pub(super) unsafe fn hsum(lo: float32x4_t, hi: float32x4_t) -> f32 {
    let s = vaddq_f32(lo, hi);
    let t = vadd_f32(vget_low_f32(s), vget_high_f32(s));
    vget_lane_f32::<0>(t) + vget_lane_f32::<1>(t)
}

/// Two f32x4 accumulators per column: the reference's eight lanes.
#[derive(Clone, Copy)]
pub(super) struct Acc {
    pub(super) lo: float32x4_t,
    pub(super) hi: float32x4_t,
}

#[inline(always)]
unsafe fn zero_acc<const B: usize>() -> [Acc; B] {
    [Acc { lo: vdupq_n_f32(0.0), hi: vdupq_n_f32(0.0) }; B]
}

/// How far ahead of the block being decoded the weights are prefetched.
const PREFETCH_BYTES: usize = 2048;

/// Prefetch the `len` bytes `PREFETCH_BYTES` after `p` (past the end of the weights the hint is
/// wasted; prefetches never fault).
#[inline(always)]
unsafe fn prefetch_ahead<T>(p: *const T, len: usize) {
    let base = p.cast::<u8>().wrapping_add(PREFETCH_BYTES);
    let mut off = 0;
    while off < len {
        asm!("prfm pldl1keep, [{p}]", p = in(reg) base.wrapping_add(off), options(readonly, nostack, preserves_flags));
        off += 64;
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy 32-element blocks
// ---------------------------------------------------------------------------------------------

trait Legacy: Copy {
    /// Subtracted from every quant, applied as `OFFSET·Σa`.
    const OFFSET: i32;
    /// Whether the block has a minimum.
    const MIN: bool;
    /// The 32 quants in element order (unsigned values ≤ 31, or Q8_0's signed ones).
    unsafe fn quants(&self) -> (int8x16_t, int8x16_t);
    fn d(&self) -> u16;
    fn m(&self) -> u16;
}

#[inline(always)]
unsafe fn nibbles(qs: &[u8; 16]) -> (uint8x16_t, uint8x16_t) {
    let raw = vld1q_u8(qs.as_ptr());
    (vandq_u8(raw, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(raw))
}

/// Bytes 0x10 where bit `i` of `bits` is set: elements 0..16 and 16..32.
#[inline(always)]
unsafe fn fifth_bits(bits: u32) -> (uint8x16_t, uint8x16_t) {
    let v = vreinterpretq_u8_u32(vdupq_n_u32(bits));
    const IDX_LO: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
    const IDX_HI: [u8; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];
    const MASK: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let mask = vld1q_u8(MASK.as_ptr());
    let sel = |idx: &[u8; 16]| {
        let t = vandq_u8(vqtbl1q_u8(v, vld1q_u8(idx.as_ptr())), mask);
        vandq_u8(vceqq_u8(t, mask), vdupq_n_u8(0x10))
    };
    (sel(&IDX_LO), sel(&IDX_HI))
}

macro_rules! legacy_impl {
    ($t:ty, $offset:expr, $min:expr, |$b:ident| $quants:expr, $m:expr) => {
        impl Legacy for $t {
            const OFFSET: i32 = $offset;
            const MIN: bool = $min;
            #[inline(always)]
            unsafe fn quants(&self) -> (int8x16_t, int8x16_t) {
                let $b = self;
                $quants
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

legacy_impl!(
    BlockQ4_0,
    8,
    false,
    |b| {
        let (lo, hi) = nibbles(&b.qs);
        (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi))
    },
    {
        let _ = b;
        0
    }
);
legacy_impl!(
    BlockQ4_1,
    0,
    true,
    |b| {
        let (lo, hi) = nibbles(&b.qs);
        (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi))
    },
    b.m
);
legacy_impl!(
    BlockQ5_0,
    16,
    false,
    |b| {
        let (lo, hi) = nibbles(&b.qs);
        let (h0, h1) = fifth_bits(u32::from_le_bytes(b.qh));
        (vreinterpretq_s8_u8(vorrq_u8(lo, h0)), vreinterpretq_s8_u8(vorrq_u8(hi, h1)))
    },
    {
        let _ = b;
        0
    }
);
legacy_impl!(
    BlockQ5_1,
    0,
    true,
    |b| {
        let (lo, hi) = nibbles(&b.qs);
        let (h0, h1) = fifth_bits(u32::from_le_bytes(b.qh));
        (vreinterpretq_s8_u8(vorrq_u8(lo, h0)), vreinterpretq_s8_u8(vorrq_u8(hi, h1)))
    },
    b.m
);
legacy_impl!(BlockQ8_0, 0, false, |b| (vld1q_s8(b.qs.as_ptr()), vld1q_s8(b.qs.as_ptr().add(16))), {
    let _ = b;
    0
});

/// Block sums of four blocks (lane k = block k) for activations at `a` (block-major).
#[inline(always)]
unsafe fn sums4<D: Dot4>(q: &[(int8x16_t, int8x16_t); 4], a: *const i8) -> int32x4_t {
    let s = |k: usize| {
        let p = a.add(QK * k);
        let z = vdupq_n_s32(0);
        D::dot4(D::dot4(z, q[k].0, vld1q_s8(p)), q[k].1, vld1q_s8(p.add(16)))
    };
    vpaddq_s32(vpaddq_s32(s(0), s(1)), vpaddq_s32(s(2), s(3)))
}

/// Apply four blocks' sums (lanes of one half of the reference's eight) to one column half.
#[inline(always)]
unsafe fn legacy_apply4<L: Legacy>(
    mut isum: int32x4_t,
    dw: float32x4_t,
    mw: float32x4_t,
    acts: &ActsView<'_>,
    at: usize,
    acc: &mut float32x4_t,
) {
    if L::OFFSET != 0 {
        let qsum = vld1q_s32(acts.q8_qsum.as_ptr().add(at));
        isum = vsubq_s32(isum, vmulq_n_s32(qsum, L::OFFSET));
    }
    let da = vld1q_f32(acts.q8_d.as_ptr().add(at));
    *acc = vfmaq_f32(*acc, vcvtq_f32_s32(isum), vmulq_f32(dw, da));
    if L::MIN {
        let sa = vld1q_f32(acts.q8_s.as_ptr().add(at));
        *acc = vfmaq_f32(*acc, mw, sa);
    }
}

/// Up to eight blocks starting at block `g` (a multiple of 8) against every column.
#[inline(always)]
unsafe fn legacy_group<L: Legacy, D: Dot4>(blocks: &[L], g: usize, acts: &ActsView<'_>, acc: &mut [Acc]) {
    prefetch_ahead(blocks.as_ptr(), std::mem::size_of_val(blocks));
    let cnt = blocks.len().min(8);
    let zero = vdupq_n_s8(0);
    let mut q = [(zero, zero); 8];
    let (mut dh, mut mh) = ([0u16; 8], [0u16; 8]);
    for (k, blk) in blocks.iter().take(cnt).enumerate() {
        q[k] = blk.quants();
        dh[k] = blk.d();
        mh[k] = blk.m();
    }
    let (dlo, dhi) = f16x8(&dh);
    let (mlo, mhi) = f16x8(&mh);
    let lo = [q[0], q[1], q[2], q[3]];
    let hi = [q[4], q[5], q[6], q[7]];
    for (c, acc) in acc.iter_mut().enumerate() {
        let a = acts.q8_qs.as_ptr().add(c * acts.n + g * QK);
        let at = c * acts.q8_stride + g;
        // Blocks beyond `cnt` have zero quants: their sums are 0 and their scales 0, so the
        // fmas below leave those lanes unchanged, as the reference (which skips them) does.
        // Their activation pointers may run past the column; only read what exists.
        if cnt == 8 {
            legacy_apply4::<L>(sums4::<D>(&lo, a), dlo, mlo, acts, at, &mut acc.lo);
            legacy_apply4::<L>(sums4::<D>(&hi, a.add(4 * QK)), dhi, mhi, acts, at + 4, &mut acc.hi);
        } else {
            let mut buf = [0i8; 8 * QK];
            std::ptr::copy_nonoverlapping(a, buf.as_mut_ptr(), cnt * QK);
            legacy_apply4::<L>(sums4::<D>(&lo, buf.as_ptr()), dlo, mlo, acts, at, &mut acc.lo);
            if cnt > 4 {
                legacy_apply4::<L>(
                    sums4::<D>(&hi, buf.as_ptr().add(4 * QK)),
                    dhi,
                    mhi,
                    acts,
                    at + 4,
                    &mut acc.hi,
                );
            }
        }
    }
}

#[inline(always)]
unsafe fn rows_legacy<L: Legacy, D: Dot4>(w: &[L], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    // One and two columns with their accumulators in registers (as on x86-64, where the
    // MAX_COLUMNS array chained every group's fmas through memory: measured there, not here).
    match acts.b {
        1 => rows_legacy_n::<L, D, 1>(w, nb, acts, out),
        2 => rows_legacy_n::<L, D, 2>(w, nb, acts, out),
        _ => rows_legacy_n::<L, D, MAX_COLUMNS>(w, nb, acts, out),
    }
}

/// [`rows_legacy`] with `B ≥ acts.b` accumulators, of which the first `acts.b` are used.
#[inline(always)]
unsafe fn rows_legacy_n<L: Legacy, D: Dot4, const B: usize>(
    w: &[L],
    nb: usize,
    acts: &ActsView<'_>,
    out: &mut [f32],
) {
    let b = acts.b.min(B);
    for (row, out) in w.chunks_exact(nb).zip(out.chunks_exact_mut(b)) {
        let mut acc = zero_acc::<B>();
        let acc = &mut acc[..b];
        for (gi, group) in row.chunks(8).enumerate() {
            legacy_group::<L, D>(group, 8 * gi, acts, acc);
        }
        for (o, a) in out.iter_mut().zip(acc.iter()) {
            *o = hsum(a.lo, a.hi);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// K-quant super-blocks
// ---------------------------------------------------------------------------------------------

/// A super-block decoded for the dot product: the 16 quant vectors of its 16-element groups, the
/// group scales and correction factors, and the super-scales.
struct KDecoded {
    q: [int8x16_t; 16],
    scales: [i16; 16],
    corr: [i16; 16],
    d: f32,
    dmin: f32,
}

trait KQuant: Copy {
    /// `Some(offset)` for Q3_K (4) and Q6_K (32); `None` for the min types.
    const OFFSET: Option<i32>;
    unsafe fn decode(&self) -> KDecoded;
}

#[inline(always)]
fn f16s(d: u16) -> f32 {
    crate::quant::f16_to_f32(d)
}

/// Split a 32-byte chunk of quants into its two 16-element groups.
#[inline(always)]
unsafe fn split(q: &mut [int8x16_t; 16], t: usize, lo: uint8x16_t, hi: uint8x16_t) {
    q[2 * t] = vreinterpretq_s8_u8(lo);
    q[2 * t + 1] = vreinterpretq_s8_u8(hi);
}

impl KQuant for BlockQ2_K {
    const OFFSET: Option<i32> = None;
    #[inline(always)]
    unsafe fn decode(&self) -> KDecoded {
        let m3 = vdupq_n_u8(3);
        let mut q = [vdupq_n_s8(0); 16];
        for h in 0..2 {
            let r0 = vld1q_u8(self.qs.as_ptr().add(32 * h));
            let r1 = vld1q_u8(self.qs.as_ptr().add(32 * h + 16));
            split(&mut q, 4 * h, vandq_u8(r0, m3), vandq_u8(r1, m3));
            split(&mut q, 4 * h + 1, vandq_u8(vshrq_n_u8::<2>(r0), m3), vandq_u8(vshrq_n_u8::<2>(r1), m3));
            split(&mut q, 4 * h + 2, vandq_u8(vshrq_n_u8::<4>(r0), m3), vandq_u8(vshrq_n_u8::<4>(r1), m3));
            split(&mut q, 4 * h + 3, vshrq_n_u8::<6>(r0), vshrq_n_u8::<6>(r1));
        }
        KDecoded {
            q,
            scales: std::array::from_fn(|g| (self.scales[g] & 0x0f) as i16),
            corr: std::array::from_fn(|g| (self.scales[g] >> 4) as i16),
            d: f16s(self.d),
            dmin: f16s(self.dmin),
        }
    }
}

impl KQuant for BlockQ3_K {
    const OFFSET: Option<i32> = Some(4);
    #[inline(always)]
    unsafe fn decode(&self) -> KDecoded {
        let m3 = vdupq_n_u8(3);
        let one = vdupq_n_u8(1);
        let h0 = vld1q_u8(self.hmask.as_ptr());
        let h1 = vld1q_u8(self.hmask.as_ptr().add(16));
        let mut q = [vdupq_n_s8(0); 16];
        for h in 0..2 {
            let r0 = vld1q_u8(self.qs.as_ptr().add(32 * h));
            let r1 = vld1q_u8(self.qs.as_ptr().add(32 * h + 16));
            for j in 0..4 {
                let shift = vdupq_n_s8(-(2 * j as i8));
                let hshift = vdupq_n_s8(-((4 * h + j) as i8));
                let low0 = vandq_u8(vshlq_u8(r0, shift), m3);
                let low1 = vandq_u8(vshlq_u8(r1, shift), m3);
                let b0 = vshlq_n_u8::<2>(vandq_u8(vshlq_u8(h0, hshift), one));
                let b1 = vshlq_n_u8::<2>(vandq_u8(vshlq_u8(h1, hshift), one));
                split(&mut q, 4 * h + j, vorrq_u8(low0, b0), vorrq_u8(low1, b1));
            }
        }
        let raw = q3_k_scales(&self.scales);
        let sc: [i16; 16] = std::array::from_fn(|g| raw[g] as i16 - 32);
        KDecoded { q, scales: sc, corr: sc, d: f16s(self.d), dmin: 0.0 }
    }
}

#[inline(always)]
fn k4_unpack(s: &[u8; 12]) -> ([i16; 16], [i16; 16]) {
    let (mut sc, mut mn) = ([0i16; 16], [0i16; 16]);
    for j in 0..8 {
        let (a, m) = k4_scale_min(j, s);
        sc[2 * j] = a as i16;
        sc[2 * j + 1] = a as i16;
        mn[2 * j] = m as i16;
        mn[2 * j + 1] = m as i16;
    }
    (sc, mn)
}

impl KQuant for BlockQ4_K {
    const OFFSET: Option<i32> = None;
    #[inline(always)]
    unsafe fn decode(&self) -> KDecoded {
        let m4 = vdupq_n_u8(0x0f);
        let mut q = [vdupq_n_s8(0); 16];
        for i in 0..4 {
            let r0 = vld1q_u8(self.qs.as_ptr().add(32 * i));
            let r1 = vld1q_u8(self.qs.as_ptr().add(32 * i + 16));
            split(&mut q, 2 * i, vandq_u8(r0, m4), vandq_u8(r1, m4));
            split(&mut q, 2 * i + 1, vshrq_n_u8::<4>(r0), vshrq_n_u8::<4>(r1));
        }
        let (scales, corr) = k4_unpack(&self.scales);
        KDecoded { q, scales, corr, d: f16s(self.d), dmin: f16s(self.dmin) }
    }
}

impl KQuant for BlockQ5_K {
    const OFFSET: Option<i32> = None;
    #[inline(always)]
    unsafe fn decode(&self) -> KDecoded {
        let m4 = vdupq_n_u8(0x0f);
        let one = vdupq_n_u8(1);
        let h0 = vld1q_u8(self.qh.as_ptr());
        let h1 = vld1q_u8(self.qh.as_ptr().add(16));
        let mut q = [vdupq_n_s8(0); 16];
        for i in 0..4 {
            let r0 = vld1q_u8(self.qs.as_ptr().add(32 * i));
            let r1 = vld1q_u8(self.qs.as_ptr().add(32 * i + 16));
            let bit = |h: uint8x16_t, k: i8| vshlq_n_u8::<4>(vandq_u8(vshlq_u8(h, vdupq_n_s8(-k)), one));
            let (k0, k1) = (2 * i as i8, 2 * i as i8 + 1);
            split(
                &mut q,
                2 * i,
                vorrq_u8(vandq_u8(r0, m4), bit(h0, k0)),
                vorrq_u8(vandq_u8(r1, m4), bit(h1, k0)),
            );
            split(
                &mut q,
                2 * i + 1,
                vorrq_u8(vshrq_n_u8::<4>(r0), bit(h0, k1)),
                vorrq_u8(vshrq_n_u8::<4>(r1), bit(h1, k1)),
            );
        }
        let (scales, corr) = k4_unpack(&self.scales);
        KDecoded { q, scales, corr, d: f16s(self.d), dmin: f16s(self.dmin) }
    }
}

impl KQuant for BlockQ6_K {
    const OFFSET: Option<i32> = Some(32);
    #[inline(always)]
    unsafe fn decode(&self) -> KDecoded {
        let m4 = vdupq_n_u8(0x0f);
        let m2 = vdupq_n_u8(3);
        let mut q = [vdupq_n_s8(0); 16];
        for h in 0..2 {
            for half in 0..2 {
                let o = 16 * half;
                let l0 = vld1q_u8(self.ql.as_ptr().add(64 * h + o));
                let l1 = vld1q_u8(self.ql.as_ptr().add(64 * h + 32 + o));
                let hb = vld1q_u8(self.qh.as_ptr().add(32 * h + o));
                let high = |k: i8| vshlq_n_u8::<4>(vandq_u8(vshlq_u8(hb, vdupq_n_s8(-2 * k)), m2));
                // Group index: 32-chunk (4h + k), half `half`.
                q[2 * (4 * h) + half] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l0, m4), high(0)));
                q[2 * (4 * h + 1) + half] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l1, m4), high(1)));
                q[2 * (4 * h + 2) + half] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(l0), high(2)));
                q[2 * (4 * h + 3) + half] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(l1), high(3)));
            }
        }
        let sc: [i16; 16] = std::array::from_fn(|g| self.scales[g] as i16);
        KDecoded { q, scales: sc, corr: sc, d: f16s(self.d), dmin: 0.0 }
    }
}

/// `c[2l]·bs[2l] + c[2l+1]·bs[2l+1]` for lanes 0..4 (`lo`) and 4..8 (`hi`).
#[inline(always)]
unsafe fn corr_lanes(bs: *const i16, c: &[i16; 16]) -> (int32x4_t, int32x4_t) {
    let half = |k: usize| {
        let b = vld1q_s16(bs.add(8 * k));
        let cv = vld1q_s16(c.as_ptr().add(8 * k));
        vpaddq_s32(vmull_s16(vget_low_s16(b), vget_low_s16(cv)), vmull_high_s16(b, cv))
    };
    (half(0), half(1))
}

#[inline(always)]
unsafe fn rows_k<K: KQuant, D: Dot4>(w: &[K], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
    let (b, n) = (acts.b, acts.n);
    let (nk, ng) = (n / QK_K, n / 16);
    for (row, out) in w.chunks_exact(nb).zip(out.chunks_exact_mut(b)) {
        let mut acc = zero_acc::<MAX_COLUMNS>();
        for (i, blk) in row.iter().enumerate() {
            prefetch_ahead(blk, std::mem::size_of::<K>());
            let dec = blk.decode();
            for (c, acc) in acc.iter_mut().enumerate().take(b) {
                let a = acts.k_qs.as_ptr().add(c * n + QK_K * i);
                let (mut lo, mut hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
                for t in 0..8 {
                    let z = vdupq_n_s32(0);
                    let p0 = D::dot4(z, dec.q[2 * t], vld1q_s8(a.add(32 * t)));
                    let p1 = D::dot4(z, dec.q[2 * t + 1], vld1q_s8(a.add(32 * t + 16)));
                    lo = vmlaq_n_s32(lo, p0, dec.scales[2 * t] as i32);
                    hi = vmlaq_n_s32(hi, p1, dec.scales[2 * t + 1] as i32);
                }
                let (clo, chi) = corr_lanes(acts.k_bsums.as_ptr().add(c * ng + 16 * i), &dec.corr);
                let da = *acts.k_d.get_unchecked(c * nk + i);
                let dd = vdupq_n_f32(dec.d * da);
                match K::OFFSET {
                    None => {
                        let dm = vdupq_n_f32(dec.dmin * da);
                        acc.lo = vfmsq_f32(vfmaq_f32(acc.lo, vcvtq_f32_s32(lo), dd), vcvtq_f32_s32(clo), dm);
                        acc.hi = vfmsq_f32(vfmaq_f32(acc.hi, vcvtq_f32_s32(hi), dd), vcvtq_f32_s32(chi), dm);
                    }
                    Some(off) => {
                        let lo = vsubq_s32(lo, vmulq_n_s32(clo, off));
                        let hi = vsubq_s32(hi, vmulq_n_s32(chi, off));
                        acc.lo = vfmaq_f32(acc.lo, vcvtq_f32_s32(lo), dd);
                        acc.hi = vfmaq_f32(acc.hi, vcvtq_f32_s32(hi), dd);
                    }
                }
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = hsum(a.lo, a.hi);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points: plain NEON and NEON + dotprod instantiations.
// ---------------------------------------------------------------------------------------------

macro_rules! entries {
    ($feature:literal, $dot:ty, $($name:ident: $t:ty => $body:ident;)*) => {$(
        /// Row kernel (see `RowsFn`).
        ///
        /// # Safety
        /// The CPU must have the features this function is compiled for; the `RowsFn` shape
        /// contract must hold.
        #[target_feature(enable = $feature)]
        pub(crate) unsafe fn $name(w: &[$t], nb: usize, acts: &ActsView<'_>, out: &mut [f32]) {
            $body::<$t, $dot>(w, nb, acts, out)
        }
    )*};
}

entries!("neon", Mull,
    rows_q4_0: BlockQ4_0 => rows_legacy;
    rows_q4_1: BlockQ4_1 => rows_legacy;
    rows_q5_0: BlockQ5_0 => rows_legacy;
    rows_q5_1: BlockQ5_1 => rows_legacy;
    rows_q8_0: BlockQ8_0 => rows_legacy;
    rows_q2_k: BlockQ2_K => rows_k;
    rows_q3_k: BlockQ3_K => rows_k;
    rows_q4_k: BlockQ4_K => rows_k;
    rows_q5_k: BlockQ5_K => rows_k;
    rows_q6_k: BlockQ6_K => rows_k;
);

entries!("neon,dotprod", Sdot,
    rows_q4_0_dot: BlockQ4_0 => rows_legacy;
    rows_q4_1_dot: BlockQ4_1 => rows_legacy;
    rows_q5_0_dot: BlockQ5_0 => rows_legacy;
    rows_q5_1_dot: BlockQ5_1 => rows_legacy;
    rows_q8_0_dot: BlockQ8_0 => rows_legacy;
    rows_q2_k_dot: BlockQ2_K => rows_k;
    rows_q3_k_dot: BlockQ3_K => rows_k;
    rows_q4_k_dot: BlockQ4_K => rows_k;
    rows_q5_k_dot: BlockQ5_K => rows_k;
    rows_q6_k_dot: BlockQ6_K => rows_k;
);
