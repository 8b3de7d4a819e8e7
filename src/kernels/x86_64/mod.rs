//! x86-64 kernels: AVX2 + FMA + F16C, detected at run time.
//!
//! The baseline x86-64 target has none of these, so the AVX2 table is offered only when
//! `is_x86_feature_detected!` finds all three; otherwise the scalar table runs.

mod avx2;
mod avx2_ops;

use super::{Isa, Kernels};

static AVX2: Kernels = Kernels {
    isa: Isa::Avx2,
    q4_0: avx2::rows_q4_0,
    q4_1: avx2::rows_q4_1,
    q5_0: avx2::rows_q5_0,
    q5_1: avx2::rows_q5_1,
    q8_0: avx2::rows_q8_0,
    q2_k: avx2::rows_q2_k,
    q3_k: avx2::rows_q3_k,
    q4_k: avx2::rows_q4_k,
    q5_k: avx2::rows_q5_k,
    q6_k: avx2::rows_q6_k,
    f32: avx2_ops::rows_f32,
    f16: avx2_ops::rows_f16,
    bf16: avx2_ops::rows_bf16,
    quantize_q8: avx2_ops::quantize_q8,
    quantize_q8k: avx2_ops::quantize_q8k,
    dot_f16_f32: avx2_ops::dot_f16_f32,
    axpy_f16: avx2_ops::axpy_f16,
    f32_to_f16: avx2_ops::f32_to_f16,
    f16_to_f32: avx2_ops::f16_to_f32,
};

/// The x86-64 tables this CPU can run, slowest first.
pub(crate) fn tables() -> Vec<&'static Kernels> {
    let mut v = Vec::new();
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    {
        v.push(&AVX2);
    }
    v
}
