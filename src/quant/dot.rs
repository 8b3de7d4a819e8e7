//! Reference dot products: the exact arithmetic every kernel (scalar, AVX2, NEON) reproduces.
//!
//! Each weight type is dotted against its activation type as GGML pairs them (Q4_0/Q5_0/Q8_0 with
//! Q8_0, Q4_1/Q5_1 with Q8_1, K-quants with Q8_K, F32/F16/BF16 with f32). Within a block the
//! integer part is exact. The float part is pinned down too, so that results are *bitwise*
//! reproducible across ISAs and batch sizes: terms go into eight f32 accumulators with fused
//! multiply-adds, lane by lane as listed below, and the lanes are summed in one fixed order
//! ([`Lanes8::sum`]).
//!
//! - Legacy blocks: block `i` adds to lane `i mod 8`: `fma(isum, d_w·d_a)`, then for Q4_1/Q5_1
//!   `fma(m_w, s_a)`.
//! - K-quants: lane `l` owns elements `4l..4l+4` of every 32-element chunk, each times its group
//!   scale (an exact i32 per super-block), then `fma(isum_l, d_w·d_a)`; the minimum term
//!   `fma(−corr_l, dmin_w·d_a)` (or, for offset types, `isum_l −= offset·corr_l` before the fma)
//!   uses `corr_l = c[2l]·bsums[2l] + c[2l+1]·bsums[2l+1]`.
//! - Float rows: element `i` adds `fma(w_i, x_i)` to lane `i mod 8`.

use half::{bf16, f16};

use super::float::{bf16_to_f32, f16_to_f32};
use super::kquants::{BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K, KForm, KUnpacked};
use super::legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
use super::{Block, QK_K};

/// Eight f32 accumulators, summed in a fixed order.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lanes8(pub [f32; 8]);

impl Lanes8 {
    /// `lane += a · b` with one rounding.
    #[inline]
    pub fn fma(&mut self, lane: usize, a: f32, b: f32) {
        let l = &mut self.0[lane & 7];
        *l = a.mul_add(b, *l);
    }

    /// `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`: the order a 256-bit register folds in.
    #[inline]
    pub fn sum(&self) -> f32 {
        let a = &self.0;
        ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
    }
}

/// A legacy weight block: what the reference dot needs from it.
pub trait LegacyWeight: Block {
    /// The activation block type GGML pairs it with.
    type Act: LegacyAct;
    /// The scale `d`.
    fn scale(&self) -> f32;
    /// The minimum `m` of Q4_1/Q5_1; `None` for the symmetric types.
    fn min(&self) -> Option<f32>;
    /// `Σ value_i · a_i` over the block in integers (`value` = the signed quant, offset removed).
    fn isum(&self, a: &[i8; 32]) -> i32;
}

/// A legacy activation block (Q8_0 or Q8_1).
pub trait LegacyAct: Block {
    /// Quantize 32 activations (GGML's reference rounding).
    fn quantize(x: &[f32; 32]) -> Self;
    /// The scale `d` (rounded to f16 as stored).
    fn scale(&self) -> f32;
    /// `d · Σq` as stored (Q8_1); 0 for Q8_0.
    fn sum(&self) -> f32;
    /// The quants.
    fn quants(&self) -> &[i8; 32];
}

impl LegacyAct for BlockQ8_0 {
    fn quantize(x: &[f32; 32]) -> Self {
        BlockQ8_0::quantize(x)
    }
    fn scale(&self) -> f32 {
        f16_to_f32(self.d)
    }
    fn sum(&self) -> f32 {
        0.0
    }
    fn quants(&self) -> &[i8; 32] {
        &self.qs
    }
}

impl LegacyAct for BlockQ8_1 {
    fn quantize(x: &[f32; 32]) -> Self {
        BlockQ8_1::quantize(x)
    }
    fn scale(&self) -> f32 {
        f16_to_f32(self.d)
    }
    fn sum(&self) -> f32 {
        f16_to_f32(self.s)
    }
    fn quants(&self) -> &[i8; 32] {
        &self.qs
    }
}

#[inline]
fn isum_offset(q: &[u8; 32], offset: i32, a: &[i8; 32]) -> i32 {
    q.iter().zip(a).map(|(&q, &a)| (q as i32 - offset) * a as i32).sum()
}

impl LegacyWeight for BlockQ4_0 {
    type Act = BlockQ8_0;
    fn scale(&self) -> f32 {
        f16_to_f32(self.d)
    }
    fn min(&self) -> Option<f32> {
        None
    }
    fn isum(&self, a: &[i8; 32]) -> i32 {
        isum_offset(&self.unpack(), 8, a)
    }
}

impl LegacyWeight for BlockQ4_1 {
    type Act = BlockQ8_1;
    fn scale(&self) -> f32 {
        f16_to_f32(self.d)
    }
    fn min(&self) -> Option<f32> {
        Some(f16_to_f32(self.m))
    }
    fn isum(&self, a: &[i8; 32]) -> i32 {
        isum_offset(&self.unpack(), 0, a)
    }
}

impl LegacyWeight for BlockQ5_0 {
    type Act = BlockQ8_0;
    fn scale(&self) -> f32 {
        f16_to_f32(self.d)
    }
    fn min(&self) -> Option<f32> {
        None
    }
    fn isum(&self, a: &[i8; 32]) -> i32 {
        isum_offset(&self.unpack(), 16, a)
    }
}

impl LegacyWeight for BlockQ5_1 {
    type Act = BlockQ8_1;
    fn scale(&self) -> f32 {
        f16_to_f32(self.d)
    }
    fn min(&self) -> Option<f32> {
        Some(f16_to_f32(self.m))
    }
    fn isum(&self, a: &[i8; 32]) -> i32 {
        isum_offset(&self.unpack(), 0, a)
    }
}

impl LegacyWeight for BlockQ8_0 {
    type Act = BlockQ8_0;
    fn scale(&self) -> f32 {
        f16_to_f32(self.d)
    }
    fn min(&self) -> Option<f32> {
        None
    }
    fn isum(&self, a: &[i8; 32]) -> i32 {
        self.qs.iter().zip(a).map(|(&q, &a)| q as i32 * a as i32).sum()
    }
}

/// Add one legacy block's terms to lane `lane`: `fma(isum, d_w·d_a)`, then `fma(m_w, s_a)` when
/// the weight has a minimum. `d_a` and `s_a` are the activation's f16-rounded values.
#[inline]
pub fn legacy_term(lanes: &mut Lanes8, lane: usize, isum: i32, dw: f32, da: f32, min: Option<(f32, f32)>) {
    lanes.fma(lane, isum as f32, dw * da);
    if let Some((mw, sa)) = min {
        lanes.fma(lane, mw, sa);
    }
}

/// Reference dot of legacy weight blocks with their activation blocks (over the shorter of the
/// two slices).
pub fn dot_legacy<W: LegacyWeight>(w: &[W], a: &[W::Act]) -> f32 {
    let mut lanes = Lanes8::default();
    for (i, (w, a)) in w.iter().zip(a).enumerate() {
        let min = w.min().map(|m| (m, a.sum()));
        legacy_term(&mut lanes, i, w.isum(a.quants()), w.scale(), a.scale(), min);
    }
    lanes.sum()
}

/// The eight integer lanes of one K super-block against Q8_K quants: `isum[l]` (group-scaled
/// products of elements `4l..4l+4` of every 32-chunk) and `corr[l]` (see the module docs).
#[inline]
pub fn k_lanes(u: &KUnpacked, aq: &[i8; QK_K], bsums: &[i16; 16]) -> ([i32; 8], [i32; 8]) {
    let mut isum = [0i32; 8];
    for t in 0..8 {
        for (l, acc) in isum.iter_mut().enumerate() {
            let e0 = 32 * t + 4 * l;
            let p: i32 = (e0..e0 + 4).map(|e| u.q[e] as i32 * aq[e] as i32).sum();
            *acc += u.scales[2 * t + l / 4] as i32 * p;
        }
    }
    let c = match u.form {
        KForm::Min => &u.mins,
        KForm::Offset(_) => &u.scales,
    };
    let corr = std::array::from_fn(|l| {
        c[2 * l] as i32 * bsums[2 * l] as i32 + c[2 * l + 1] as i32 * bsums[2 * l + 1] as i32
    });
    (isum, corr)
}

/// Add one K super-block's terms to the lanes, given its integer lanes and the activation scale.
#[inline]
pub fn k_term(lanes: &mut Lanes8, u: &KUnpacked, isum: [i32; 8], corr: [i32; 8], da: f32) {
    let dd = u.d * da;
    match u.form {
        KForm::Min => {
            let dm = u.dmin * da;
            for l in 0..8 {
                lanes.fma(l, isum[l] as f32, dd);
                lanes.fma(l, -(corr[l] as f32), dm);
            }
        }
        KForm::Offset(off) => {
            for l in 0..8 {
                lanes.fma(l, (isum[l] - off * corr[l]) as f32, dd);
            }
        }
    }
}

/// A K-quant weight block.
pub trait KWeight: Block {
    /// Undo the packing.
    fn unpack_k(&self) -> KUnpacked;
}

macro_rules! impl_kweight {
    ($($t:ty),*) => {$(
        impl KWeight for $t {
            fn unpack_k(&self) -> KUnpacked {
                self.unpack()
            }
        }
    )*};
}
impl_kweight!(BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K);

/// Reference dot of K-quant weight blocks with Q8_K activation blocks (over the shorter slice).
pub fn dot_k<W: KWeight>(w: &[W], a: &[BlockQ8_K]) -> f32 {
    let mut lanes = Lanes8::default();
    for (w, a) in w.iter().zip(a) {
        let u = w.unpack_k();
        let (isum, corr) = k_lanes(&u, &a.qs, &a.bsums);
        k_term(&mut lanes, &u, isum, corr, a.d);
    }
    lanes.sum()
}

/// Reference dot of an f32 row with f32 activations (over the shorter slice).
pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let mut lanes = Lanes8::default();
    for (i, (&w, &x)) in w.iter().zip(x).enumerate() {
        lanes.fma(i, w, x);
    }
    lanes.sum()
}

/// Reference dot of an F16 row with f32 activations (over the shorter slice).
pub fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    let mut lanes = Lanes8::default();
    for (i, (&w, &x)) in w.iter().zip(x).enumerate() {
        lanes.fma(i, f16_to_f32(w.to_bits()), x);
    }
    lanes.sum()
}

/// Reference dot of a BF16 row with f32 activations (over the shorter slice).
pub fn dot_bf16(w: &[bf16], x: &[f32]) -> f32 {
    let mut lanes = Lanes8::default();
    for (i, (&w, &x)) in w.iter().zip(x).enumerate() {
        lanes.fma(i, bf16_to_f32(w.to_bits()), x);
    }
    lanes.sum()
}
