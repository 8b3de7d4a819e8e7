//! GGML's "legacy" 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1): layouts,
//! dequantization, and quantization where the runtime needs it.
//!
//! Bit layouts follow GGML exactly so that GGUF tensors decode bit for bit: in Q4/Q5 blocks byte
//! `j` of `qs` holds element `j` in its low nibble and element `j + 16` in its high nibble; Q5's
//! fifth bits are the little-endian u32 `qh`, bit `i` for element `i`. Scales are f16 bits.
//! Quantization follows GGML's reference (`*_ref`) rules, rounding included: weights quantized here
//! and activations quantized for the dot products round exactly as llama.cpp's reference does.
//! Q8_0 and Q8_1 are the activation formats the legacy weight types are dotted against.

use super::float::{f16_to_f32, f32_to_f16};
use super::{Block, GgmlType};

/// Elements per legacy block.
pub const QK: usize = 32;

/// 4-bit, symmetric: `x = d · (q − 8)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockQ4_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Nibbles: element `j` low, element `j + 16` high.
    pub qs: [u8; 16],
}

/// 4-bit with a minimum: `x = d · q + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockQ4_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Minimum (f16 bits).
    pub m: u16,
    /// Nibbles, as in [`BlockQ4_0`].
    pub qs: [u8; 16],
}

/// 5-bit, symmetric: `x = d · (q − 16)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockQ5_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Fifth bits, a little-endian u32: bit `i` belongs to element `i`.
    pub qh: [u8; 4],
    /// Low nibbles, as in [`BlockQ4_0`].
    pub qs: [u8; 16],
}

/// 5-bit with a minimum: `x = d · q + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockQ5_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Minimum (f16 bits).
    pub m: u16,
    /// Fifth bits, as in [`BlockQ5_0`].
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; 16],
}

/// 8-bit, symmetric: `x = d · q`. A weight format and the activation format of Q4_0/Q5_0/Q8_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockQ8_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Quants.
    pub qs: [i8; 32],
}

/// 8-bit activations for Q4_1/Q5_1: like [`BlockQ8_0`] plus `s = d · Σq` (f16 bits), which the
/// weights' minimum multiplies.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockQ8_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// `d · Σ qs` (f16 bits).
    pub s: u16,
    /// Quants.
    pub qs: [i8; 32],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

// SAFETY: each is `#[repr(C)]` of u16 and byte arrays with no padding (the size asserts above
// equal the sum of the fields), and every bit pattern of those fields is a valid value.
unsafe impl Block for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
}
// SAFETY: as above.
unsafe impl Block for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
}
// SAFETY: as above.
unsafe impl Block for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
}
// SAFETY: as above.
unsafe impl Block for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
}
// SAFETY: as above.
unsafe impl Block for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
}
// SAFETY: as above.
unsafe impl Block for BlockQ8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;
}

/// The 32 nibbles of a Q4 block in element order.
#[inline]
fn nibbles(qs: &[u8; 16]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = qs[j] & 0x0f;
        q[j + 16] = qs[j] >> 4;
    }
    q
}

/// The 32 five-bit values of a Q5 block in element order.
#[inline]
fn five_bits(qh: &[u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let h = u32::from_le_bytes(*qh);
    let mut q = nibbles(qs);
    for (i, v) in q.iter_mut().enumerate() {
        *v |= (((h >> i) & 1) as u8) << 4;
    }
    q
}

/// GGML's `roundf`: round half away from zero.
#[inline]
pub(crate) fn round_away(x: f32) -> f32 {
    x.round()
}

impl BlockQ4_0 {
    /// Unsigned quants (0..=15) in element order; the value is `d · (q − 8)`.
    pub fn unpack(&self) -> [u8; 32] {
        nibbles(&self.qs)
    }

    /// Decode to f32.
    pub fn dequantize(&self, out: &mut [f32; 32]) {
        let d = f16_to_f32(self.d);
        for (o, q) in out.iter_mut().zip(self.unpack()) {
            *o = (q as i32 - 8) as f32 * d;
        }
    }

    /// Quantize 32 values the way GGML's reference does: `d = max / −8` where `max` is the value
    /// of largest magnitude, `q = min(15, trunc(x / d + 8.5))`.
    pub fn quantize(x: &[f32; 32]) -> Self {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; 16];
        for j in 0..16 {
            let q0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let q1 = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
            qs[j] = q0 | (q1 << 4);
        }
        BlockQ4_0 { d: f32_to_f16(d), qs }
    }
}

impl BlockQ4_1 {
    /// Unsigned quants (0..=15) in element order; the value is `d · q + m`.
    pub fn unpack(&self) -> [u8; 32] {
        nibbles(&self.qs)
    }

    /// Decode to f32.
    pub fn dequantize(&self, out: &mut [f32; 32]) {
        let (d, m) = (f16_to_f32(self.d), f16_to_f32(self.m));
        for (o, q) in out.iter_mut().zip(self.unpack()) {
            *o = q as f32 * d + m;
        }
    }

    /// Quantize as GGML's reference: `d = (max − min) / 15`, `q = min(15, trunc((x − min) / d + 0.5))`.
    pub fn quantize(x: &[f32; 32]) -> Self {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            min = if v < min { v } else { min };
            max = if v > max { v } else { max };
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; 16];
        for j in 0..16 {
            let q0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let q1 = (((x[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
            qs[j] = q0 | (q1 << 4);
        }
        BlockQ4_1 { d: f32_to_f16(d), m: f32_to_f16(min), qs }
    }
}

impl BlockQ5_0 {
    /// Unsigned quants (0..=31) in element order; the value is `d · (q − 16)`.
    pub fn unpack(&self) -> [u8; 32] {
        five_bits(&self.qh, &self.qs)
    }

    /// Decode to f32.
    pub fn dequantize(&self, out: &mut [f32; 32]) {
        let d = f16_to_f32(self.d);
        for (o, q) in out.iter_mut().zip(self.unpack()) {
            *o = (q as i32 - 16) as f32 * d;
        }
    }

    /// Quantize as GGML's reference: `d = max / −16` for the value `max` of largest magnitude,
    /// `q = min(31, trunc(x / d + 16.5))`.
    pub fn quantize(x: &[f32; 32]) -> Self {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let (mut qs, mut qh) = ([0u8; 16], 0u32);
        for j in 0..16 {
            let q0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
            let q1 = ((x[j + 16] * id + 16.5) as i8).min(31) as u8;
            qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= u32::from(q0 >> 4) << j;
            qh |= u32::from(q1 >> 4) << (j + 16);
        }
        BlockQ5_0 { d: f32_to_f16(d), qh: qh.to_le_bytes(), qs }
    }
}

impl BlockQ5_1 {
    /// Unsigned quants (0..=31) in element order; the value is `d · q + m`.
    pub fn unpack(&self) -> [u8; 32] {
        five_bits(&self.qh, &self.qs)
    }

    /// Decode to f32.
    pub fn dequantize(&self, out: &mut [f32; 32]) {
        let (d, m) = (f16_to_f32(self.d), f16_to_f32(self.m));
        for (o, q) in out.iter_mut().zip(self.unpack()) {
            *o = q as f32 * d + m;
        }
    }
}

/// GGML's reference 8-bit rule, shared by Q8_0 and Q8_1: `d = amax / 127`, `q = round(x / d)`
/// (half away from zero, computed as `x · (1/d)`). Returns `(d, qs)` with `d` not yet rounded to
/// f16; the dot products use the f16-rounded `d`.
#[inline]
pub(crate) fn quantize_q8(x: &[f32; 32]) -> (f32, [i8; 32]) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; 32];
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = round_away(v * id) as i8;
    }
    (d, qs)
}

impl BlockQ8_0 {
    /// Decode to f32.
    pub fn dequantize(&self, out: &mut [f32; 32]) {
        let d = f16_to_f32(self.d);
        for (o, q) in out.iter_mut().zip(self.qs) {
            *o = q as f32 * d;
        }
    }

    /// Quantize as GGML's reference (see [`BlockQ8_1::quantize`] for the rule).
    pub fn quantize(x: &[f32; 32]) -> Self {
        let (d, qs) = quantize_q8(x);
        BlockQ8_0 { d: f32_to_f16(d), qs }
    }
}

impl BlockQ8_1 {
    /// Decode to f32.
    pub fn dequantize(&self, out: &mut [f32; 32]) {
        let d = f16_to_f32(self.d);
        for (o, q) in out.iter_mut().zip(self.qs) {
            *o = q as f32 * d;
        }
    }

    /// Quantize as GGML's reference: `d = amax / 127`, `q = round(x · (1/d))` half away from
    /// zero, `s = (Σq) · d` with the unrounded `d`.
    pub fn quantize(x: &[f32; 32]) -> Self {
        let (d, qs) = quantize_q8(x);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        BlockQ8_1 { d: f32_to_f16(d), s: f32_to_f16(sum as f32 * d), qs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::float::round_f16;

    fn ramp(scale: f32) -> [f32; 32] {
        std::array::from_fn(|i| (i as f32 - 13.0) * scale)
    }

    #[test]
    fn q4_0_round_trip_hits_grid_points() {
        // Values on the quantization grid decode back exactly (up to the f16 scale).
        let x: [f32; 32] = std::array::from_fn(|i| ((i % 16) as f32 - 8.0) * 0.5);
        let b = BlockQ4_0::quantize(&x);
        let mut y = [0f32; 32];
        b.dequantize(&mut y);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn q4_1_keeps_the_minimum() {
        let x = ramp(0.25);
        let b = BlockQ4_1::quantize(&x);
        assert_eq!(f16_to_f32(b.m), round_f16(x[0]));
        let mut y = [0f32; 32];
        b.dequantize(&mut y);
        let step = f16_to_f32(b.d);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= step * 0.5 + 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn q5_bit_layout() {
        // Element i's fifth bit is bit i of qh; element j+16's nibble is the high half of qs[j].
        let mut b = BlockQ5_0 { d: f32_to_f16(1.0), qh: [0; 4], qs: [0; 16] };
        b.qh = (1u32 << 3 | 1u32 << 20).to_le_bytes();
        b.qs[4] = 0x70;
        let q = b.unpack();
        assert_eq!(q[3], 16);
        assert_eq!(q[20], 16 + 7);
        assert_eq!(q.iter().filter(|&&v| v != 0).count(), 2);
    }

    #[test]
    fn q8_rounds_half_away_from_zero() {
        // With amax = 127 the scale is exactly 1, so x·(1/d) = x and ties are visible.
        let mut x = [0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 0.49999997;
        let b = BlockQ8_1::quantize(&x);
        assert_eq!(&b.qs[..4], &[127, 3, -3, 0]);
        assert_eq!(f16_to_f32(b.s), 127.0);
    }
}
