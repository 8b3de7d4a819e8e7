//! GGML's K-quant super-block formats (Q2_K … Q6_K weights, Q8_K activations): layouts, and an
//! unpacked form that dequantization and every dot-product kernel share.
//!
//! A super-block holds 256 elements split into groups with their own small integer scales, and
//! one or two f16 super-scales. Each format packs its bits differently (the layouts below follow
//! GGML exactly); [`KUnpacked`] undoes the packing once, so the dot-product specification in
//! [`super::dot`] and the SIMD kernels work on one shape for all five types:
//! 256 unsigned quants `q`, a scale per 16-element group, and either a per-group minimum
//! (Q2_K, Q4_K, Q5_K: `x = d·s·q − dmin·m`) or a fixed offset (Q3_K: `x = d·s·(q − 4)`,
//! Q6_K: `x = d·s·(q − 32)`).

use super::float::f16_to_f32;
use super::{Block, GgmlType, QK_K};

/// Q2_K: 16 groups of 16, 2-bit quants, 4-bit scales and mins. `x = d·sc·q − dmin·m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ2_K {
    /// Low nibble: scale, high nibble: min, per 16-element group.
    pub scales: [u8; 16],
    /// 2-bit quants: byte `32h + l` holds, at bit `2j`, element `128h + 32j + l`.
    pub qs: [u8; 64],
    /// Super-scale of the scales (f16 bits).
    pub d: u16,
    /// Super-scale of the mins (f16 bits).
    pub dmin: u16,
}

/// Q3_K: 16 groups of 16, 3-bit quants, 6-bit signed scales. `x = d·(sc − 32)·(q − 4)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ3_K {
    /// High (third) bits: byte `l`, bit `4h + j` belongs to element `128h + 32j + l`.
    pub hmask: [u8; 32],
    /// Low 2 bits, laid out as in [`BlockQ2_K::qs`].
    pub qs: [u8; 64],
    /// 16 six-bit scales packed in 12 bytes (see [`q3_k_scales`]).
    pub scales: [u8; 12],
    /// Super-scale (f16 bits).
    pub d: u16,
}

/// Q4_K: 8 groups of 32, 4-bit quants, 6-bit scales and mins. `x = d·sc·q − dmin·m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4_K {
    /// Super-scale of the scales (f16 bits).
    pub d: u16,
    /// Super-scale of the mins (f16 bits).
    pub dmin: u16,
    /// 8 six-bit scales and 8 six-bit mins packed in 12 bytes (see [`k4_scale_min`]).
    pub scales: [u8; 12],
    /// Nibbles: byte `32i + l` holds element `64i + l` low and `64i + 32 + l` high.
    pub qs: [u8; 128],
}

/// Q5_K: Q4_K plus a fifth bit per element. `x = d·sc·q − dmin·m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5_K {
    /// Super-scale of the scales (f16 bits).
    pub d: u16,
    /// Super-scale of the mins (f16 bits).
    pub dmin: u16,
    /// Scales and mins, packed as in [`BlockQ4_K`].
    pub scales: [u8; 12],
    /// Fifth bits: byte `l`, bit `2i` for element `64i + l`, bit `2i + 1` for `64i + 32 + l`.
    pub qh: [u8; 32],
    /// Low nibbles, laid out as in [`BlockQ4_K::qs`].
    pub qs: [u8; 128],
}

/// Q6_K: 16 groups of 16, 6-bit quants, 8-bit signed scales. `x = d·sc·(q − 32)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ6_K {
    /// Low nibbles: byte `64h + l` holds element `128h + l` (low) and `128h + 64 + l` (high);
    /// byte `64h + 32 + l` holds elements `128h + 32 + l` and `128h + 96 + l`.
    pub ql: [u8; 128],
    /// High 2 bits: byte `32h + l`, bits `2k..2k+2` for element `128h + 32k + l`.
    pub qh: [u8; 64],
    /// Signed scale per 16-element group.
    pub scales: [i8; 16],
    /// Super-scale (f16 bits).
    pub d: u16,
}

/// Q8_K: the activation format of the K-quants. `x = d·q`, with the sum of each 16-element group
/// precomputed (the minimum and offset terms of the weight types multiply it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_K {
    /// Scale (f32, not f16).
    pub d: f32,
    /// Quants.
    pub qs: [i8; 256],
    /// Sum of each 16 consecutive quants.
    pub bsums: [i16; 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ2_K>() == 84);
const _: () = assert!(std::mem::size_of::<BlockQ3_K>() == 110);
const _: () = assert!(std::mem::size_of::<BlockQ4_K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ5_K>() == 176);
const _: () = assert!(std::mem::size_of::<BlockQ6_K>() == 210);
const _: () = assert!(std::mem::size_of::<BlockQ8_K>() == 292);

// SAFETY: each is `#[repr(C)]` of integer fields and arrays with no padding (the size asserts
// above equal the sum of the field sizes), and every bit pattern of those fields is valid.
unsafe impl Block for BlockQ2_K {
    const TYPE: GgmlType = GgmlType::Q2_K;
}
// SAFETY: as above.
unsafe impl Block for BlockQ3_K {
    const TYPE: GgmlType = GgmlType::Q3_K;
}
// SAFETY: as above.
unsafe impl Block for BlockQ4_K {
    const TYPE: GgmlType = GgmlType::Q4_K;
}
// SAFETY: as above.
unsafe impl Block for BlockQ5_K {
    const TYPE: GgmlType = GgmlType::Q5_K;
}
// SAFETY: as above.
unsafe impl Block for BlockQ6_K {
    const TYPE: GgmlType = GgmlType::Q6_K;
}
// SAFETY: as above (f32 accepts every bit pattern).
unsafe impl Block for BlockQ8_K {
    const TYPE: GgmlType = GgmlType::Q8_K;
}

/// How a K-quant turns `(scale, q)` into a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KForm {
    /// `x = d·s·q − dmin·m` with a per-group min `m` (Q2_K, Q4_K, Q5_K).
    Min,
    /// `x = d·s·(q − offset)` (Q3_K: 4, Q6_K: 32).
    Offset(i32),
}

/// A super-block with its packing undone: what dequantization and the dot products consume.
#[derive(Clone, Debug)]
pub struct KUnpacked {
    /// Unsigned quant of each element, in element order.
    pub q: [u8; QK_K],
    /// Integer scale of each 16-element group (Q4_K/Q5_K repeat each 32-group's scale twice).
    pub scales: [i16; 16],
    /// Integer min of each 16-element group for [`KForm::Min`]; unused (zero) otherwise.
    pub mins: [i16; 16],
    /// Super-scale.
    pub d: f32,
    /// Super-scale of the mins ([`KForm::Min`] only).
    pub dmin: f32,
    /// Which formula applies.
    pub form: KForm,
}

impl KUnpacked {
    /// Decode to f32 with GGML's arithmetic: `(d·s)·q − dmin·m` or `(d·s)·(q − offset)`.
    pub fn dequantize(&self, out: &mut [f32; QK_K]) {
        for (g, chunk) in out.chunks_exact_mut(16).enumerate() {
            let ds = self.d * self.scales[g] as f32;
            let q = &self.q[16 * g..16 * g + 16];
            match self.form {
                KForm::Min => {
                    let dm = self.dmin * self.mins[g] as f32;
                    for (o, &q) in chunk.iter_mut().zip(q) {
                        *o = ds * q as f32 - dm;
                    }
                }
                KForm::Offset(off) => {
                    for (o, &q) in chunk.iter_mut().zip(q) {
                        *o = ds * (q as i32 - off) as f32;
                    }
                }
            }
        }
    }
}

/// Scale and min of 32-group `j` (0..8) from Q4_K/Q5_K's 12 packed bytes: groups 0..4 keep
/// their 6 bits in the low bits of bytes `j` (scale) and `j + 4` (min); groups 4..8 keep their
/// low 4 bits in byte `j + 4` (scale low nibble, min high nibble) and their top 2 bits in the
/// top bits of bytes `j − 4` (scale) and `j` (min).
#[inline]
pub fn k4_scale_min(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// The 16 six-bit scales of Q3_K from its 12 packed bytes (unsigned, 0..=63; the value uses
/// `scale − 32`). Group `i` keeps its low 4 bits in byte `i mod 8` (low nibble for `i < 8`, high
/// nibble otherwise) and its top 2 bits in byte `8 + i mod 4` at bit `2·(i / 4)`.
#[inline]
pub fn q3_k_scales(s: &[u8; 12]) -> [u8; 16] {
    std::array::from_fn(|i| {
        let low = if i < 8 { s[i] & 0x0f } else { s[i - 8] >> 4 };
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        low | (high << 4)
    })
}

impl BlockQ2_K {
    /// Undo the packing.
    pub fn unpack(&self) -> KUnpacked {
        let mut q = [0u8; QK_K];
        for (e, v) in q.iter_mut().enumerate() {
            let (h, r) = (e / 128, e % 128);
            *v = (self.qs[32 * h + r % 32] >> (2 * (r / 32))) & 3;
        }
        KUnpacked {
            q,
            scales: std::array::from_fn(|g| (self.scales[g] & 0x0f) as i16),
            mins: std::array::from_fn(|g| (self.scales[g] >> 4) as i16),
            d: f16_to_f32(self.d),
            dmin: f16_to_f32(self.dmin),
            form: KForm::Min,
        }
    }
}

impl BlockQ3_K {
    /// Undo the packing (`q` = low 2 bits | high bit << 2, so the value is `q − 4`).
    pub fn unpack(&self) -> KUnpacked {
        let mut q = [0u8; QK_K];
        for (e, v) in q.iter_mut().enumerate() {
            let (h, r) = (e / 128, e % 128);
            let (j, l) = (r / 32, r % 32);
            let low = (self.qs[32 * h + l] >> (2 * j)) & 3;
            let high = (self.hmask[l] >> (4 * h + j)) & 1;
            *v = low | (high << 2);
        }
        let sc = q3_k_scales(&self.scales);
        KUnpacked {
            q,
            scales: std::array::from_fn(|g| sc[g] as i16 - 32),
            mins: [0; 16],
            d: f16_to_f32(self.d),
            dmin: 0.0,
            form: KForm::Offset(4),
        }
    }
}

impl BlockQ4_K {
    /// Undo the packing.
    pub fn unpack(&self) -> KUnpacked {
        let mut q = [0u8; QK_K];
        for (e, v) in q.iter_mut().enumerate() {
            let (i, r) = (e / 64, e % 64);
            let byte = self.qs[32 * i + r % 32];
            *v = if r < 32 { byte & 0x0f } else { byte >> 4 };
        }
        let (mut scales, mut mins) = ([0i16; 16], [0i16; 16]);
        for g in 0..16 {
            let (s, m) = k4_scale_min(g / 2, &self.scales);
            scales[g] = s as i16;
            mins[g] = m as i16;
        }
        KUnpacked { q, scales, mins, d: f16_to_f32(self.d), dmin: f16_to_f32(self.dmin), form: KForm::Min }
    }
}

impl BlockQ5_K {
    /// Undo the packing.
    pub fn unpack(&self) -> KUnpacked {
        let mut q = [0u8; QK_K];
        for (e, v) in q.iter_mut().enumerate() {
            let (i, r) = (e / 64, e % 64);
            let byte = self.qs[32 * i + r % 32];
            let low = if r < 32 { byte & 0x0f } else { byte >> 4 };
            let bit = 2 * i + (r / 32);
            *v = low | (((self.qh[r % 32] >> bit) & 1) << 4);
        }
        let (mut scales, mut mins) = ([0i16; 16], [0i16; 16]);
        for g in 0..16 {
            let (s, m) = k4_scale_min(g / 2, &self.scales);
            scales[g] = s as i16;
            mins[g] = m as i16;
        }
        KUnpacked { q, scales, mins, d: f16_to_f32(self.d), dmin: f16_to_f32(self.dmin), form: KForm::Min }
    }
}

impl BlockQ6_K {
    /// Undo the packing (the value is `q − 32`).
    pub fn unpack(&self) -> KUnpacked {
        let mut q = [0u8; QK_K];
        for (e, v) in q.iter_mut().enumerate() {
            let (h, r) = (e / 128, e % 128);
            let (k, l) = (r / 32, r % 32);
            let lbyte = self.ql[64 * h + 32 * (k % 2) + l];
            let low = if k < 2 { lbyte & 0x0f } else { lbyte >> 4 };
            let high = (self.qh[32 * h + l] >> (2 * k)) & 3;
            *v = low | (high << 4);
        }
        KUnpacked {
            q,
            scales: std::array::from_fn(|g| self.scales[g] as i16),
            mins: [0; 16],
            d: f16_to_f32(self.d),
            dmin: 0.0,
            form: KForm::Offset(32),
        }
    }
}

impl BlockQ8_K {
    /// Decode to f32.
    pub fn dequantize(&self, out: &mut [f32; QK_K]) {
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = self.d * q as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k4_scales_pack_all_six_bits() {
        // Scales 0..8 = 40 + j, mins 0..8 = 10 + j, packed by hand as the layout describes.
        let sc: [u8; 8] = std::array::from_fn(|j| 40 + j as u8);
        let mn: [u8; 8] = std::array::from_fn(|j| 10 + j as u8);
        let mut s = [0u8; 12];
        for j in 0..4 {
            s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            s[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            s[j + 8] = (sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4);
        }
        for j in 0..8 {
            assert_eq!(k4_scale_min(j, &s), (sc[j], mn[j]), "group {j}");
        }
    }

    #[test]
    fn q3_scales_unpack() {
        let want: [u8; 16] = std::array::from_fn(|i| (i as u8 * 7 + 3) % 64);
        let mut s = [0u8; 12];
        for (i, &w) in want.iter().enumerate() {
            s[i % 8] |= (w & 0x0f) << if i < 8 { 0 } else { 4 };
            s[8 + i % 4] |= (w >> 4) << (2 * (i / 4));
        }
        assert_eq!(q3_k_scales(&s), want);
    }

    #[test]
    fn q6_k_element_positions() {
        let mut b = BlockQ6_K { ql: [0; 128], qh: [0; 64], scales: [1; 16], d: 0x3c00 };
        // Element 128 + 96 + 5: high nibble of ql[64 + 32 + 5], bits 6..8 of qh[32 + 5].
        b.ql[101] = 0xa0;
        b.qh[37] = 0b1100_0000;
        let u = b.unpack();
        assert_eq!(u.q[229], 0x0a | (3 << 4));
        assert_eq!(u.q.iter().filter(|&&v| v != 0).count(), 1);
    }
}
