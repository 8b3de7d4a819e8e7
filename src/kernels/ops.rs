//! The element-wise and per-vector ops of a forward pass: RMSNorm, RoPE, softmax, SiLU, GELU,
//! add and multiply.
//!
//! They cost O(hidden size) per token against the mat-vecs' O(weights), so most are plain Rust
//! (the compiler vectorises the simple loops), written to follow GGML's arithmetic where it
//! matters for matching llama.cpp: RMSNorm and softmax accumulate their sums in f64, RoPE angles
//! are built by repeated multiplication in f32. Each works on one vector (one token), so a batch
//! of tokens gives bitwise the same results as tokens one at a time.
//!
//! The exponential is the exception: `libm`'s `expf` cannot be vectorised, and SiLU over the MLP's
//! 1536 values plus the attention softmax made it 10% of a pass over 8 tokens. [`exp`] is a
//! polynomial built from plain multiplies and adds (no fused multiply-add, whose rounding the
//! portable fallback could only match by a slow library call), so the SIMD tables
//! ([`Kernels::silu_mul`](super::Kernels::silu_mul) and friends) compute bitwise the same values
//! as the functions here, on every instruction set.

use crate::error::{Error, Result};

fn same_len(what: &str, a: usize, b: usize) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what}: lengths {a} and {b} differ")))
    }
}

/// RMSNorm: `out_i = (x_i · 1/√(mean(x²) + eps)) · w_i`.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) -> Result<()> {
    same_len("rmsnorm weight", x.len(), w.len())?;
    same_len("rmsnorm output", x.len(), out.len())?;
    if x.is_empty() {
        return Ok(());
    }
    let sum = sum4_f64(x, |v| (v * v) as f64);
    // As GGML rounds: the mean to f32 first, then `+ eps` in f32.
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * w;
    }
    Ok(())
}

/// How RoPE pairs the dimensions it rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i + 1)` (llama, GGML mode 0).
    Normal,
    /// Halves `(i, i + n_rot/2)` (GPT-NeoX, Qwen, Gemma; GGML mode 2).
    Neox,
}

/// The cosines and sines of position `pos` for `n_rot` rotated dimensions: pair `i` turns by
/// `freq_scale · pos · base^(−2i/n_rot)`, the power built by repeated multiplication as GGML does.
/// `cos` and `sin` need `n_rot / 2` slots each.
pub fn rope_angles(
    pos: usize,
    n_rot: usize,
    base: f32,
    freq_scale: f32,
    cos: &mut [f32],
    sin: &mut [f32],
) -> Result<()> {
    if !n_rot.is_multiple_of(2) || cos.len() != n_rot / 2 || sin.len() != n_rot / 2 {
        return Err(Error::invalid(format!(
            "rope: {n_rot} rotated dims need {} cos/sin slots, got {}/{}",
            n_rot / 2,
            cos.len(),
            sin.len()
        )));
    }
    let step = base.powf(-2.0 / n_rot as f32);
    let mut theta = pos as f32;
    for (c, s) in cos.iter_mut().zip(sin.iter_mut()) {
        let t = freq_scale * theta;
        *c = t.cos();
        *s = t.sin();
        theta *= step;
    }
    Ok(())
}

/// Rotate every head of `x` (`x.len() / head_dim` heads of `head_dim`) in place with angles from
/// [`rope_angles`]: the first `2·cos.len()` dimensions of each head turn, the rest stay.
pub fn rope(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], style: RopeStyle) -> Result<()> {
    let half = cos.len();
    let n_rot = 2 * half;
    if head_dim == 0 || !x.len().is_multiple_of(head_dim) || n_rot > head_dim || sin.len() != half {
        return Err(Error::invalid(format!(
            "rope: {} values, head dim {head_dim}, {n_rot} rotated dims",
            x.len()
        )));
    }
    for head in x.chunks_exact_mut(head_dim) {
        for (i, (&c, &s)) in cos.iter().zip(sin).enumerate() {
            let (a, b) = match style {
                RopeStyle::Normal => (2 * i, 2 * i + 1),
                RopeStyle::Neox => (i, i + half),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
    Ok(())
}

/// Softmax in place: `x_i = exp(x_i − max) / Σ exp(x_j − max)`, the sum in f64.
pub fn softmax(x: &mut [f32]) {
    exp_sub(x, max(x));
    normalize(x);
}

/// `Σ f(x_i)` in f64 as four running sums (element `i` into sum `i mod 4`) added pairwise at the
/// end: a fixed order, so every caller and table gets the same bits, with a dependency chain a
/// quarter as long as one running sum's (RMSNorm's and softmax's sums were latency-bound).
#[inline]
fn sum4_f64(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; 4];
    let mut quads = x.chunks_exact(4);
    for q in &mut quads {
        for (a, &v) in acc.iter_mut().zip(q) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(quads.remainder()) {
        *a += f(v);
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// The largest value (−∞ for none), eight running maxima at a time (the maximum does not
/// depend on the order).
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (m, &v) in m.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    chunks.remainder().iter().chain(&m).fold(f32::NEG_INFINITY, |a, &v| a.max(v))
}

/// `x_i /= Σx` with the sum accumulated in f64 (softmax's second half).
pub(crate) fn normalize(x: &mut [f32]) {
    let sum = sum4_f64(x, f64::from);
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `x_i = exp(x_i − shift)` (softmax's numerators, with `shift` the maximum).
pub fn exp_sub(x: &mut [f32], shift: f32) {
    x.iter_mut().for_each(|v| *v = exp(*v - shift));
}

/// Constants of [`exp`], shared with the SIMD versions so every table computes the same bits.
pub(crate) mod exp_consts {
    /// Inputs are clamped to `[LO, HI]`: `e^LO` is the smallest normal f32 (below it the result
    /// is that rather than a subnormal or 0), `e^HI` stays finite.
    pub const LO: f32 = -87.336_54;
    /// See `LO`.
    pub const HI: f32 = 88.376_26;
    pub const LOG2E: f32 = std::f32::consts::LOG2_E;
    /// 1.5·2²³: adding it rounds a float of magnitude < 2²² to an integer.
    pub const ROUND: f32 = 12_582_912.0;
    /// ln 2 split in two so that `n·LN2_HI` is exact for |n| ≤ 128 (Cody and Waite).
    pub const LN2_HI: f32 = 0.693_359_4;
    pub const LN2_LO: f32 = -2.121_944_4e-4;
    /// `e^r ≈ 1 + r + r²·P(r)` on |r| ≤ ln2/2 (Moshier's Cephes `expf` coefficients).
    pub const P: [f32; 6] = [1.987_569_1e-4, 1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
}

/// `e^x` within 2 ulp over the f32 range (clamped to `[exp_consts::LO, exp_consts::HI]`): range
/// reduction `x = n·ln2 + r`, a degree-7 polynomial in `r`, and `2^n` built in the exponent bits.
/// Only multiplies, adds and subtracts, in a fixed order, so the SIMD versions match it bitwise.
#[inline]
pub fn exp(x: f32) -> f32 {
    use exp_consts::*;
    // Not `clamp`: that keeps a NaN, where the SIMD `max` (and this) give LO.
    #[allow(clippy::manual_clamp)]
    let x = x.max(LO).min(HI);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = P[0];
    for c in &P[1..] {
        p = p * r + c;
    }
    let y = (p * (r * r) + r) + 1.0;
    // n is an integer in [-126, 127]: 2^n is a normal float with biased exponent n + 127.
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// SiLU: `x / (1 + e^−x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// GELU, tanh approximation: `½x(1 + tanh(z))` with `z = √(2/π)·x·(1 + 0.044715x²)`, computed
/// as `x / (1 + e^(−2z))` (the same function, since `½(1 + tanh z) = σ(2z)`): one `exp` instead
/// of a `tanh`, which costs twice as much and dominated Gemma's MLP after the mat-vecs.
#[inline]
pub fn gelu(x: f32) -> f32 {
    use gelu_consts::*;
    let z = SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x);
    x / (1.0 + exp(-2.0 * z))
}

/// Constants of [`gelu`], shared with the SIMD versions.
pub(crate) mod gelu_consts {
    pub const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    pub const COEF_A: f32 = 0.044715;
}

/// `x_i = silu(x_i)` in place.
pub fn silu_inplace(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = silu(*v));
}

/// `x_i = gelu(x_i)` in place.
pub fn gelu_inplace(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu(*v));
}

/// Gated FFN activation, SwiGLU: `gate_i = silu(gate_i) · up_i`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) -> Result<()> {
    same_len("silu_mul", gate.len(), up.len())?;
    gate.iter_mut().zip(up).for_each(|(g, &u)| *g = silu(*g) * u);
    Ok(())
}

/// Gated FFN activation, GeGLU: `gate_i = gelu(gate_i) · up_i`.
pub fn gelu_mul(gate: &mut [f32], up: &[f32]) -> Result<()> {
    same_len("gelu_mul", gate.len(), up.len())?;
    gate.iter_mut().zip(up).for_each(|(g, &u)| *g = gelu(*g) * u);
    Ok(())
}

/// `a_i += b_i` (residual connections).
pub fn add(a: &mut [f32], b: &[f32]) -> Result<()> {
    same_len("add", a.len(), b.len())?;
    a.iter_mut().zip(b).for_each(|(a, &b)| *a += b);
    Ok(())
}

/// `a_i *= b_i`.
pub fn mul(a: &mut [f32], b: &[f32]) -> Result<()> {
    same_len("mul", a.len(), b.len())?;
    a.iter_mut().zip(b).for_each(|(a, &b)| *a *= b);
    Ok(())
}

/// `x_i *= s`.
pub fn scale(x: &mut [f32], s: f32) {
    x.iter_mut().for_each(|v| *v *= s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmsnorm_unit_rms() {
        let x = [3.0f32, -4.0, 0.0, 0.0];
        let mut out = [0f32; 4];
        rmsnorm(&x, &[1.0, 2.0, 1.0, 1.0], 0.0, &mut out).unwrap();
        // mean(x²) = 25/4, so 1/rms = 0.4.
        assert!((out[0] - 1.2).abs() < 1e-6 && (out[1] + 3.2).abs() < 1e-6, "{out:?}");
        assert!(rmsnorm(&x, &[1.0], 0.0, &mut out).is_err());
    }

    #[test]
    fn rope_styles_pair_differently_and_preserve_norm() {
        let (mut c, mut s) = ([0f32; 2], [0f32; 2]);
        rope_angles(3, 4, 10000.0, 1.0, &mut c, &mut s).unwrap();
        assert!((c[0] - 3f32.cos()).abs() < 1e-6 && (s[0] - 3f32.sin()).abs() < 1e-6);
        assert!((c[1] - (3.0f32 * 0.01).cos()).abs() < 1e-6);
        let x0 = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut a = x0;
        rope(&mut a, 6, &c, &s, RopeStyle::Normal).unwrap();
        assert!((a[0] - (c[0] - 2.0 * s[0])).abs() < 1e-6 && a[4..] == x0[4..]);
        let mut b = x0;
        rope(&mut b, 6, &c, &s, RopeStyle::Neox).unwrap();
        assert!((b[0] - (c[0] - 3.0 * s[0])).abs() < 1e-6 && (b[2] - (s[0] + 3.0 * c[0])).abs() < 1e-6);
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>();
        assert!((norm(&a) - norm(&x0)).abs() < 1e-4 && (norm(&b) - norm(&x0)).abs() < 1e-4);
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_inputs() {
        let mut x = [1000.0f32, 1001.0, 999.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[1] > x[0] && x[0] > x[2]);
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = f64::from(exp(x));
            let want = f64::from(x).exp();
            let ulp = f64::from(f32::EPSILON) * want;
            worst = worst.max((got - want).abs() / ulp);
            x += 0.0137;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        let tiny = exp(-1000.0);
        assert!(tiny > 0.0 && tiny < 1.2e-38, "{tiny}");
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
    }

    #[test]
    fn activations_known_values() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-5);
        assert!(gelu(-10.0).abs() < 1e-6);
        let mut g = [1.0f32, 2.0];
        silu_mul(&mut g, &[2.0, 0.5]).unwrap();
        assert!((g[0] - 2.0 * silu(1.0)).abs() < 1e-7 && (g[1] - 0.5 * silu(2.0)).abs() < 1e-7);
    }
}
