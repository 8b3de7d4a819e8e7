//! AVX2 versions of the exponential-based ops (SiLU and GELU gating, softmax numerators): the
//! scalar [`ops::exp`] eight lanes at a time, with the same multiplies and adds in the same
//! order (no fused multiply-add), so every value is bitwise the scalar one.

use core::arch::x86_64::*;

use crate::kernels::ops::{self, exp_consts, gelu_consts};

/// [`ops::exp`] on eight lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn exp8(x: __m256) -> __m256 {
    use exp_consts::*;
    // `max(x, LO)` returns LO for a NaN `x`, as `f32::max` does in the scalar version.
    let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(LO)), _mm256_set1_ps(HI));
    let round = _mm256_set1_ps(ROUND);
    let n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), round), round);
    let r = _mm256_sub_ps(
        _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(LN2_HI))),
        _mm256_mul_ps(n, _mm256_set1_ps(LN2_LO)),
    );
    let mut p = _mm256_set1_ps(P[0]);
    for &c in &P[1..] {
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(c));
    }
    let y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1.0));
    let bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    _mm256_mul_ps(y, _mm256_castsi256_ps(bits))
}

/// `x / (1 + e^−x)` on eight lanes ([`ops::silu`]).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn silu8(x: __m256) -> __m256 {
    let e = exp8(_mm256_xor_ps(x, _mm256_set1_ps(-0.0)));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

/// [`ops::gelu`] on eight lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn gelu8(x: __m256) -> __m256 {
    use gelu_consts::*;
    let inner =
        _mm256_add_ps(_mm256_set1_ps(1.0), _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(COEF_A), x), x));
    let z = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(SQRT_2_OVER_PI), x), inner);
    let e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0), z));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

/// A gated activation `gate_i = f(gate_i) · up_i`: `f8` on eight lanes, the scalar `f1` on the
/// tail.
macro_rules! gated {
    ($(#[$doc:meta])* $name:ident, $f8:ident, $f1:path) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// AVX2, FMA and F16C must be available.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(gate: &mut [f32], up: &[f32]) {
            let n = gate.len().min(up.len());
            let full = n / 8 * 8;
            let mut i = 0;
            while i < full {
                let g = gate.as_mut_ptr().add(i);
                let u = _mm256_loadu_ps(up.as_ptr().add(i));
                _mm256_storeu_ps(g, _mm256_mul_ps($f8(_mm256_loadu_ps(g)), u));
                i += 8;
            }
            for i in full..n {
                gate[i] = $f1(gate[i]) * up[i];
            }
        }
    };
}
gated!(
    /// `gate_i = silu(gate_i) · up_i`.
    silu_mul, silu8, ops::silu
);
gated!(
    /// `gate_i = gelu(gate_i) · up_i`.
    gelu_mul, gelu8, ops::gelu
);

/// `x_i = exp(x_i − shift)`.
///
/// # Safety
/// AVX2, FMA and F16C must be available.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn exp_sub(x: &mut [f32], shift: f32) {
    let n = x.len();
    let full = n / 8 * 8;
    let s = _mm256_set1_ps(shift);
    let mut i = 0;
    while i < full {
        let p = x.as_mut_ptr().add(i);
        _mm256_storeu_ps(p, exp8(_mm256_sub_ps(_mm256_loadu_ps(p), s)));
        i += 8;
    }
    for v in &mut x[full..] {
        *v = ops::exp(*v - shift);
    }
}
