//! x86-64 kernels: AVX2 + FMA + F16C, and AVX-512 VNNI on top where the CPU has it, detected
//! at run time.
//!
//! The baseline x86-64 target has none of these, so the AVX2 table is offered only when
//! `is_x86_feature_detected!` finds all three, the VNNI table only when AVX512F, AVX512VL and
//! AVX512-VNNI are there too; otherwise the scalar table runs.

mod avx2;
mod avx2_act;
mod avx2_k;
mod avx2_kv;
mod avx2_ops;
mod vnni;
mod x8;

use super::{Isa, Kernels};

static AVX2: Kernels = Kernels {
    isa: Isa::Avx2,
    q4_0: avx2::rows_q4_0,
    q4_1: avx2::rows_q4_1,
    q5_0: avx2::rows_q5_0,
    q5_1: avx2::rows_q5_1,
    q8_0: avx2::rows_q8_0,
    q2_k: avx2_k::rows_q2_k,
    q3_k: avx2_k::rows_q3_k,
    q4_k: avx2_k::rows_q4_k,
    q5_k: avx2_k::rows_q5_k,
    q6_k: avx2_k::rows_q6_k,
    q5_0x8: x8::rows_q5_0x8_avx2,
    q8_0x8: x8::rows_q8_0x8_avx2,
    // Measured faster than the plain kernels at every b on Zen 4 (docs/decisions.md).
    interleaved_pays: true,
    f32: avx2_ops::rows_f32,
    f16: avx2_ops::rows_f16,
    bf16: avx2_ops::rows_bf16,
    quantize_q8: avx2_ops::quantize_q8,
    quantize_q8k: avx2_ops::quantize_q8k,
    dot_f16_f32: avx2_ops::dot_f16_f32,
    axpy_f16: avx2_ops::axpy_f16,
    dot_f16_rows: avx2_ops::dot_f16_rows,
    axpy_f16_rows: avx2_ops::axpy_f16_rows,
    dot_q8_rows: avx2_kv::dot_q8_rows,
    axpy_q8_rows: avx2_kv::axpy_q8_rows,
    f32_to_f16: avx2_ops::f32_to_f16,
    f16_to_f32: avx2_ops::f16_to_f32,
    silu_mul: avx2_act::silu_mul,
    gelu_mul: avx2_act::gelu_mul,
    exp_sub: avx2_act::exp_sub,
    interleave_q8: avx2_ops::interleave_q8,
};

/// The AVX2 table with VNNI row kernels for the quantized types and the Q8_0 KV cache's scores
/// (the float rows, quantizers and f16 ops are AVX2's: VNNI has nothing for them).
static AVX512_VNNI: Kernels = Kernels {
    isa: Isa::Avx512Vnni,
    q4_0: vnni::rows_q4_0,
    q4_1: vnni::rows_q4_1,
    q5_0: vnni::rows_q5_0,
    q5_1: vnni::rows_q5_1,
    q8_0: vnni::rows_q8_0,
    q2_k: vnni::rows_q2_k,
    q3_k: vnni::rows_q3_k,
    q4_k: vnni::rows_q4_k,
    q5_k: vnni::rows_q5_k,
    q6_k: vnni::rows_q6_k,
    q5_0x8: x8::rows_q5_0x8_vnni,
    q8_0x8: x8::rows_q8_0x8_vnni,
    interleaved_pays: true,
    dot_q8_rows: vnni::dot_q8_rows,
    ..AVX2
};

/// The x86-64 tables this CPU can run, slowest first.
pub(crate) fn tables() -> Vec<&'static Kernels> {
    let mut v = Vec::new();
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    {
        v.push(&AVX2);
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
        {
            v.push(&AVX512_VNNI);
        }
    }
    v
}
