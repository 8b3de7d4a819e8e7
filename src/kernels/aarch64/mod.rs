//! aarch64 kernels: NEON (baseline on every aarch64 CPU), and NEON with the `dotprod` extension
//! (SDOT) where `is_aarch64_feature_detected!` finds it.

mod neon;
mod neon_act;
mod neon_kv;
mod neon_ops;

use super::{Isa, Kernels};

static NEON: Kernels = Kernels {
    isa: Isa::Neon,
    q4_0: neon::rows_q4_0,
    q4_1: neon::rows_q4_1,
    q5_0: neon::rows_q5_0,
    q5_1: neon::rows_q5_1,
    q8_0: neon::rows_q8_0,
    q2_k: neon::rows_q2_k,
    q3_k: neon::rows_q3_k,
    q4_k: neon::rows_q4_k,
    q5_k: neon::rows_q5_k,
    q6_k: neon::rows_q6_k,
    // Row-interleaved matrices: the scalar twins (a model loaded for NEON keeps the plain layout).
    q5_0x8: crate::kernels::scalar::rows_x8::<crate::quant::BlockQ5_0x8>,
    q8_0x8: crate::kernels::scalar::rows_x8::<crate::quant::BlockQ8_0x8>,
    interleaved_pays: false,
    f32: neon_ops::rows_f32,
    f16: neon_ops::rows_f16,
    bf16: neon_ops::rows_bf16,
    quantize_q8: neon_ops::quantize_q8,
    quantize_q8k: neon_ops::quantize_q8k,
    dot_f16_f32: neon_ops::dot_f16_f32,
    axpy_f16: neon_ops::axpy_f16,
    dot_f16_rows: neon_ops::dot_f16_rows,
    axpy_f16_rows: neon_ops::axpy_f16_rows,
    dot_q8_rows: neon_kv::dot_q8_rows,
    axpy_q8_rows: neon_kv::axpy_q8_rows,
    f32_to_f16: neon_ops::f32_to_f16,
    f16_to_f32: neon_ops::f16_to_f32,
    silu_mul: neon_act::silu_mul,
    gelu_mul: neon_act::gelu_mul,
    exp_sub: neon_act::exp_sub,
    // The NEON kernels read the plain quants; the layout is kept for the shared tests.
    interleave_q8: crate::kernels::acts::interleave_q8,
};

static NEON_DOTPROD: Kernels = Kernels {
    isa: Isa::NeonDotprod,
    q4_0: neon::rows_q4_0_dot,
    q4_1: neon::rows_q4_1_dot,
    q5_0: neon::rows_q5_0_dot,
    q5_1: neon::rows_q5_1_dot,
    q8_0: neon::rows_q8_0_dot,
    q2_k: neon::rows_q2_k_dot,
    q3_k: neon::rows_q3_k_dot,
    q4_k: neon::rows_q4_k_dot,
    q5_k: neon::rows_q5_k_dot,
    q6_k: neon::rows_q6_k_dot,
    dot_q8_rows: neon_kv::dot_q8_rows_dot,
    ..NEON
};

/// The aarch64 tables this CPU can run, slowest first.
pub(crate) fn tables() -> Vec<&'static Kernels> {
    let mut v = vec![&NEON];
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        v.push(&NEON_DOTPROD);
    }
    v
}
