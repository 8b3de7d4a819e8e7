//! The unquantized element types (F32, F16, BF16): conversions and row (de)quantization.
//!
//! F16 and BF16 weights are dotted against f32 activations; F16 is also the KV-cache element type.
//! Conversions are exact IEEE ones (f32 → f16 rounds to nearest, ties to even), so every ISA
//! converts identically and GGUF F16 tensors decode to the same values llama.cpp sees.

use half::{bf16, f16};

/// One f16 (IEEE binary16, stored as its bits) to f32. Exact.
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// One f32 to f16 bits, rounding to nearest with ties to even (what F16C and NEON `fcvtn` do).
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    f16::from_f32(x).to_bits()
}

/// `x` rounded through f16 and back: the value an f16 field written from `x` holds.
#[inline]
pub fn round_f16(x: f32) -> f32 {
    f16_to_f32(f32_to_f16(x))
}

/// One bf16 (the top 16 bits of an f32) to f32. Exact.
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// One f32 to bf16 bits, rounding to nearest with ties to even (NaNs stay NaN), as GGML does.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    bf16::from_f32(x).to_bits()
}

/// Dequantize an F16 row: `out[i] = src[i]` as f32. Converts `min(src.len(), out.len())` values.
pub fn dequantize_row_f16(src: &[f16], out: &mut [f32]) {
    for (o, s) in out.iter_mut().zip(src) {
        *o = s.to_f32();
    }
}

/// Dequantize a BF16 row. Converts `min(src.len(), out.len())` values.
pub fn dequantize_row_bf16(src: &[bf16], out: &mut [f32]) {
    for (o, s) in out.iter_mut().zip(src) {
        *o = bf16_to_f32(s.to_bits());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trip_is_exact_for_every_f16() {
        for bits in 0..=u16::MAX {
            let x = f16_to_f32(bits);
            if x.is_nan() {
                assert!(f16_to_f32(f32_to_f16(x)).is_nan());
            } else {
                assert_eq!(f32_to_f16(x), bits, "{bits:#06x}");
            }
        }
    }

    #[test]
    fn f16_rounds_ties_to_even() {
        // 1 + 2^-11 lies halfway between 1 and the next f16 (1 + 2^-10): ties go to the even one.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(65520.0), 0x7c00, "overflow rounds to infinity");
    }

    #[test]
    fn bf16_matches_truncated_f32_bits() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is a tie between bf16 1.0 and 1.0078125: even mantissa wins.
        assert_eq!(f32_to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
    }
}
