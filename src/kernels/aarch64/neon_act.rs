//! NEON versions of the exponential-based ops (SiLU and GELU gating, softmax numerators): the
//! scalar [`ops::exp`] four lanes at a time, with the same multiplies and adds in the same order
//! (no fused multiply-add), so every value is bitwise the scalar one.

use core::arch::aarch64::*;

use crate::kernels::ops::{self, exp_consts, gelu_consts};

/// [`ops::exp`] on four lanes.
#[inline]
unsafe fn exp4(x: float32x4_t) -> float32x4_t {
    use exp_consts::*;
    // `maxnm`/`minnm` return the number when one operand is NaN, as `f32::max` does.
    let x = vminnmq_f32(vmaxnmq_f32(x, vdupq_n_f32(LO)), vdupq_n_f32(HI));
    let round = vdupq_n_f32(ROUND);
    let n = vsubq_f32(vaddq_f32(vmulq_f32(x, vdupq_n_f32(LOG2E)), round), round);
    let r = vsubq_f32(vsubq_f32(x, vmulq_f32(n, vdupq_n_f32(LN2_HI))), vmulq_f32(n, vdupq_n_f32(LN2_LO)));
    let mut p = vdupq_n_f32(P[0]);
    for &c in &P[1..] {
        p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(c));
    }
    let y = vaddq_f32(vaddq_f32(vmulq_f32(p, vmulq_f32(r, r)), r), vdupq_n_f32(1.0));
    let bits = vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)));
    vmulq_f32(y, vreinterpretq_f32_s32(bits))
}

/// `x / (1 + e^−x)` on four lanes ([`ops::silu`]).
#[inline]
unsafe fn silu4(x: float32x4_t) -> float32x4_t {
    vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), exp4(vnegq_f32(x))))
}

/// [`ops::gelu`] on four lanes.
#[inline]
unsafe fn gelu4(x: float32x4_t) -> float32x4_t {
    use gelu_consts::*;
    let inner = vaddq_f32(vdupq_n_f32(1.0), vmulq_f32(vmulq_f32(vdupq_n_f32(COEF_A), x), x));
    let z = vmulq_f32(vmulq_f32(vdupq_n_f32(SQRT_2_OVER_PI), x), inner);
    let e = exp4(vmulq_f32(vdupq_n_f32(-2.0), z));
    vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), e))
}

/// A gated activation `gate_i = f(gate_i) · up_i`: `f4` on four lanes, the scalar `f1` on the
/// tail.
macro_rules! gated {
    ($(#[$doc:meta])* $name:ident, $f4:ident, $f1:path) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// None beyond NEON, which every aarch64 CPU has.
        pub(crate) unsafe fn $name(gate: &mut [f32], up: &[f32]) {
            let n = gate.len().min(up.len());
            let full = n / 4 * 4;
            let mut i = 0;
            while i < full {
                let g = gate.as_mut_ptr().add(i);
                vst1q_f32(g, vmulq_f32($f4(vld1q_f32(g)), vld1q_f32(up.as_ptr().add(i))));
                i += 4;
            }
            for i in full..n {
                gate[i] = $f1(gate[i]) * up[i];
            }
        }
    };
}
gated!(
    /// `gate_i = silu(gate_i) · up_i`.
    silu_mul, silu4, ops::silu
);
gated!(
    /// `gate_i = gelu(gate_i) · up_i`.
    gelu_mul, gelu4, ops::gelu
);

/// `x_i = exp(x_i − shift)`.
///
/// # Safety
/// None beyond NEON, which every aarch64 CPU has.
pub(crate) unsafe fn exp_sub(x: &mut [f32], shift: f32) {
    let n = x.len();
    let full = n / 4 * 4;
    let s = vdupq_n_f32(shift);
    let mut i = 0;
    while i < full {
        let p = x.as_mut_ptr().add(i);
        vst1q_f32(p, exp4(vsubq_f32(vld1q_f32(p), s)));
        i += 4;
    }
    for v in &mut x[full..] {
        *v = ops::exp(*v - shift);
    }
}
