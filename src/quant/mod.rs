//! Quantized block formats: the tensor type table, and (per type) block layout, quantize,
//! dequantize and a slow reference dot product that every SIMD kernel is held to.

mod types;

pub use types::{GgmlType, QK_K};
