//! Quantized block formats: the tensor type table, and (per type) block layout, quantize,
//! dequantize and a slow reference dot product that every SIMD kernel is held to.
//!
//! Weights arrive from the memory map as `&[u8]`; [`as_blocks`] reinterprets them as a slice of
//! `#[repr(C)]` block structs after checking length and alignment, so nothing is copied.
//! [`dequantize`] and [`quantize`] work row-wise on any supported type; [`dot`] holds the
//! reference arithmetic of the dot products (see its module docs for why it is bit-exact).

pub mod dot;
mod float;
pub mod interleaved;
mod kquantize;
mod kquants;
mod legacy;
mod types;

pub use float::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, round_f16};
pub use interleaved::{BlockQ5_0x8, BlockQ8_0x8, Interleaved, ROWS_X8};
pub use kquants::{
    k4_scale_min, q3_k_scales, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K, KForm,
    KUnpacked,
};
pub use legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, QK};
pub use types::{GgmlType, QK_K};

pub(crate) use legacy::quantize_q8;

use crate::error::{Error, Result};
use half::{bf16, f16};

/// A block type that may be viewed directly over file bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]` (or a primitive), contain no padding bytes, and accept every
/// bit pattern as a valid value, so that any suitably sized and aligned bytes are a valid `Self`.
pub unsafe trait Block: Copy + 'static {
    /// The GGML type whose blocks this is.
    const TYPE: GgmlType;
}

// SAFETY: primitives with no padding; every bit pattern is a valid f32/f16/bf16.
unsafe impl Block for f32 {
    const TYPE: GgmlType = GgmlType::F32;
}
// SAFETY: as above (`f16` is a transparent u16).
unsafe impl Block for f16 {
    const TYPE: GgmlType = GgmlType::F16;
}
// SAFETY: as above (`bf16` is a transparent u16).
unsafe impl Block for bf16 {
    const TYPE: GgmlType = GgmlType::BF16;
}

/// View `bytes` as a slice of blocks `T`, without copying. Fails (`Format`) when the length is
/// not a whole number of blocks or the start is not aligned for `T` (GGUF tensor data is 32-byte
/// aligned inside a page-aligned map, so real files always pass).
pub fn as_blocks<T: Block>(bytes: &[u8]) -> Result<&[T]> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return Err(Error::format(format!(
            "{} bytes of {} data is not a whole number of {size}-byte blocks",
            bytes.len(),
            T::TYPE
        )));
    }
    if !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::format(format!(
            "{} data at {:p} is not aligned to {} bytes",
            T::TYPE,
            bytes.as_ptr(),
            std::mem::align_of::<T>()
        )));
    }
    // SAFETY: `T: Block` is plain old data valid for every bit pattern; the pointer is aligned
    // for `T` (checked above) and `bytes.len() / size` blocks span exactly `bytes`, which stays
    // borrowed for the returned lifetime.
    Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// View 16-bit words as blocks `T` (storage that must come from zeroed pages, as `vec![0u16; n]`
/// does, yet hold blocks: the Q8_0 KV cache). Fails when `T` needs more than 2-byte alignment
/// or the words are not a whole number of blocks.
pub(crate) fn words_as_blocks<T: Block>(words: &[u16]) -> Result<&[T]> {
    let n = word_blocks::<T>(words.len())?;
    // SAFETY: `T: Block` is plain old data valid for every bit pattern; its alignment is at most
    // that of u16 (checked by `word_blocks`) and `n` blocks span exactly the borrowed words.
    Ok(unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<T>(), n) })
}

/// [`words_as_blocks`], mutably.
pub(crate) fn words_as_blocks_mut<T: Block>(words: &mut [u16]) -> Result<&mut [T]> {
    let n = word_blocks::<T>(words.len())?;
    // SAFETY: as in `words_as_blocks`; the exclusive borrow of the words is handed on, and every
    // bit pattern written through a `T` is a valid u16 pattern.
    Ok(unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<T>(), n) })
}

fn word_blocks<T: Block>(words: usize) -> Result<usize> {
    let size = std::mem::size_of::<T>();
    if std::mem::align_of::<T>() > 2 || !size.is_multiple_of(2) || !(2 * words).is_multiple_of(size) {
        return Err(Error::internal(format!("{words} words are not a whole number of {} blocks", T::TYPE)));
    }
    Ok(2 * words / size)
}

/// The bytes of a block slice (how quantized data is written to a GGUF file).
pub fn blocks_as_bytes<T: Block>(blocks: &[T]) -> &[u8] {
    // SAFETY: `T: Block` has no padding, so all `size_of_val(blocks)` bytes are initialized; u8
    // has alignment 1 and the borrow keeps `blocks` alive.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks)) }
}

fn check_row(ty: GgmlType, data_len: usize, n: usize) -> Result<()> {
    match ty.row_bytes(n as u64) {
        Some(b) if b == data_len as u64 => Ok(()),
        Some(b) => Err(Error::invalid(format!("{n} {ty} values take {b} bytes, {data_len} given"))),
        None => {
            Err(Error::invalid(format!("{n} is not a multiple of the {ty} block size {}", ty.block_size())))
        }
    }
}

fn dequantize_blocks<T: Block, const N: usize>(
    data: &[u8],
    out: &mut [f32],
    f: impl Fn(&T, &mut [f32; N]),
) -> Result<()> {
    let blocks = as_blocks::<T>(data)?;
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(N)) {
        if let Ok(o) = <&mut [f32; N]>::try_from(o) {
            f(b, o);
        }
    }
    Ok(())
}

/// Decode `out.len()` values of type `ty` from `data` (which must hold exactly that many).
/// Supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K…Q6_K and Q8_K.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<()> {
    check_row(ty, data.len(), out.len())?;
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            Ok(())
        }
        GgmlType::F16 => {
            float::dequantize_row_f16(as_blocks::<f16>(data)?, out);
            Ok(())
        }
        GgmlType::BF16 => {
            float::dequantize_row_bf16(as_blocks::<bf16>(data)?, out);
            Ok(())
        }
        GgmlType::Q4_0 => dequantize_blocks(data, out, BlockQ4_0::dequantize),
        GgmlType::Q4_1 => dequantize_blocks(data, out, BlockQ4_1::dequantize),
        GgmlType::Q5_0 => dequantize_blocks(data, out, BlockQ5_0::dequantize),
        GgmlType::Q5_1 => dequantize_blocks(data, out, BlockQ5_1::dequantize),
        GgmlType::Q8_0 => dequantize_blocks(data, out, BlockQ8_0::dequantize),
        GgmlType::Q8_1 => dequantize_blocks(data, out, BlockQ8_1::dequantize),
        GgmlType::Q2_K => dequantize_blocks(data, out, |b: &BlockQ2_K, o| b.unpack().dequantize(o)),
        GgmlType::Q3_K => dequantize_blocks(data, out, |b: &BlockQ3_K, o| b.unpack().dequantize(o)),
        GgmlType::Q4_K => dequantize_blocks(data, out, |b: &BlockQ4_K, o| b.unpack().dequantize(o)),
        GgmlType::Q5_K => dequantize_blocks(data, out, |b: &BlockQ5_K, o| b.unpack().dequantize(o)),
        GgmlType::Q6_K => dequantize_blocks(data, out, |b: &BlockQ6_K, o| b.unpack().dequantize(o)),
        GgmlType::Q8_K => dequantize_blocks(data, out, BlockQ8_K::dequantize),
        other => Err(Error::unsupported(format!("dequantizing {other} tensors is not implemented"))),
    }
}

fn quantize_blocks<T: Block, const N: usize>(src: &[f32], f: impl Fn(&[f32; N]) -> T) -> Vec<u8> {
    let blocks: Vec<T> = src.chunks_exact(N).filter_map(|c| <&[f32; N]>::try_from(c).ok()).map(f).collect();
    blocks_as_bytes(&blocks).to_vec()
}

/// Encode `src` as type `ty` (its length must be a whole number of blocks). Supports F32, F16,
/// BF16, Q4_0, Q4_1, Q8_0, Q8_1, Q4_K, Q6_K and Q8_K.
pub fn quantize(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>> {
    if !src.len().is_multiple_of(ty.block_size()) {
        return Err(Error::invalid(format!(
            "{} values are not a multiple of the {ty} block size {}",
            src.len(),
            ty.block_size()
        )));
    }
    Ok(match ty {
        GgmlType::F32 => src.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => src.iter().flat_map(|&v| f32_to_f16(v).to_le_bytes()).collect(),
        GgmlType::BF16 => src.iter().flat_map(|&v| f32_to_bf16(v).to_le_bytes()).collect(),
        GgmlType::Q4_0 => quantize_blocks(src, BlockQ4_0::quantize),
        GgmlType::Q4_1 => quantize_blocks(src, BlockQ4_1::quantize),
        GgmlType::Q5_0 => quantize_blocks(src, BlockQ5_0::quantize),
        GgmlType::Q8_0 => quantize_blocks(src, BlockQ8_0::quantize),
        GgmlType::Q8_1 => quantize_blocks(src, BlockQ8_1::quantize),
        GgmlType::Q4_K => quantize_blocks(src, BlockQ4_K::quantize),
        GgmlType::Q6_K => quantize_blocks(src, BlockQ6_K::quantize),
        GgmlType::Q8_K => quantize_blocks(src, BlockQ8_K::quantize),
        other => return Err(Error::unsupported(format!("quantizing to {other} is not implemented"))),
    })
}

fn quantize_acts<A: dot::LegacyAct>(x: &[f32]) -> Vec<A> {
    x.chunks_exact(QK).filter_map(|c| <&[f32; QK]>::try_from(c).ok()).map(A::quantize).collect()
}

/// The reference dot product of one weight row of type `ty` (`data`, `x.len()` elements) with the
/// f32 activations `x`: activations quantized to the type GGML pairs with `ty`, then the
/// arithmetic of [`dot`]. Slow; the kernels must match it bit for bit.
pub fn reference_dot(ty: GgmlType, data: &[u8], x: &[f32]) -> Result<f32> {
    check_row(ty, data.len(), x.len())?;
    let k_acts = || -> Vec<BlockQ8_K> {
        x.chunks_exact(QK_K)
            .filter_map(|c| <&[f32; QK_K]>::try_from(c).ok())
            .map(BlockQ8_K::quantize)
            .collect()
    };
    Ok(match ty {
        GgmlType::F32 => dot::dot_f32(as_blocks(data)?, x),
        GgmlType::F16 => dot::dot_f16(as_blocks(data)?, x),
        GgmlType::BF16 => dot::dot_bf16(as_blocks(data)?, x),
        GgmlType::Q4_0 => dot::dot_legacy::<BlockQ4_0>(as_blocks(data)?, &quantize_acts(x)),
        GgmlType::Q4_1 => dot::dot_legacy::<BlockQ4_1>(as_blocks(data)?, &quantize_acts(x)),
        GgmlType::Q5_0 => dot::dot_legacy::<BlockQ5_0>(as_blocks(data)?, &quantize_acts(x)),
        GgmlType::Q5_1 => dot::dot_legacy::<BlockQ5_1>(as_blocks(data)?, &quantize_acts(x)),
        GgmlType::Q8_0 => dot::dot_legacy::<BlockQ8_0>(as_blocks(data)?, &quantize_acts(x)),
        GgmlType::Q2_K => dot::dot_k::<BlockQ2_K>(as_blocks(data)?, &k_acts()),
        GgmlType::Q3_K => dot::dot_k::<BlockQ3_K>(as_blocks(data)?, &k_acts()),
        GgmlType::Q4_K => dot::dot_k::<BlockQ4_K>(as_blocks(data)?, &k_acts()),
        GgmlType::Q5_K => dot::dot_k::<BlockQ5_K>(as_blocks(data)?, &k_acts()),
        GgmlType::Q6_K => dot::dot_k::<BlockQ6_K>(as_blocks(data)?, &k_acts()),
        other => return Err(Error::unsupported(format!("no dot product for {other} weights"))),
    })
}
