//! Activations quantized for the dot products: a buffer the caller allocates once and reuses.
//!
//! A mat-vec over `b` columns first quantizes each f32 column into the format its weight type is
//! dotted against (GGML's pairing): Q8 (32-element blocks, GGML's Q8_0/Q8_1 rounding; one
//! quantization serves both, since they share quants and scale), Q8_K (256-element blocks), or
//! plain f32 for float weights. The same quantized activations feed every matrix that reads the
//! same input (q/k/v, gate/up), so quantization is a separate step.
//!
//! The layout is the kernels' own, not GGML's block structs: quants, scales and sums sit in
//! separate arrays ("structure of arrays") so a SIMD kernel loads eight block scales at once.
//! Values are those GGML's blocks would hold: scales and sums are stored as f32 after rounding
//! through f16 where GGML stores f16.
//!
//! Rounding follows GGML's reference quantizers (`quantize_row_q8_0_ref`, `…q8_1_ref`,
//! `…q8_K_ref`) on every ISA: Q8 uses `d = amax/127` and rounds `x·(1/d)` half away from zero;
//! Q8_K rounds `x·(−127/max)` half to even. (llama.cpp's own SIMD quantizers differ in rare ties:
//! its AVX2 Q8_0 path multiplies by `127/amax` and rounds half to even, its NEON path rounds
//! `x·(1/d)` half to even; a llama.cpp build without SIMD uses the reference rule we use.)

use crate::error::{Error, Result};
use crate::quant::{GgmlType, QK, QK_K};

use super::Kernels;

/// Most activation columns one mat-vec takes (a verification batch of up to 16 tokens).
pub const MAX_COLUMNS: usize = 16;

/// An activation format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActKind {
    /// 8-bit blocks of 32 (GGML Q8_0/Q8_1): for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 weights.
    Q8,
    /// 8-bit blocks of 256 with 16-element sums (GGML Q8_K): for the K-quants.
    Q8K,
    /// f32: for F32, F16 and BF16 weights.
    F32,
}

impl ActKind {
    /// The activation format weights of type `ty` are dotted against.
    pub fn for_weight(ty: GgmlType) -> Result<ActKind> {
        use GgmlType::*;
        match ty {
            F32 | F16 | BF16 => Ok(ActKind::F32),
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 => Ok(ActKind::Q8),
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => Ok(ActKind::Q8K),
            other => Err(Error::unsupported(format!("no CPU kernel for {other} weights"))),
        }
    }

    fn bit(self) -> u8 {
        match self {
            ActKind::Q8 => 1,
            ActKind::Q8K => 2,
            ActKind::F32 => 4,
        }
    }

    /// Elements per block (the row length must be a multiple).
    pub fn block_size(self) -> usize {
        match self {
            ActKind::Q8 => QK,
            ActKind::Q8K => QK_K,
            ActKind::F32 => 1,
        }
    }
}

/// Number of Q8 scale slots per column: the block count rounded up to 8, so SIMD kernels can load
/// eight scales at a time; the extra slots hold zeros.
pub(crate) fn q8_stride(n: usize) -> usize {
    (n / QK).div_ceil(8) * 8
}

/// `b` columns of `n` activations, quantized. Allocate once (sized for the largest `n` and `b`
/// the model uses) and reuse: quantizing into it never allocates once it has grown to that size.
#[derive(Clone, Debug, Default)]
pub struct QuantizedActs {
    n: usize,
    b: usize,
    valid: u8,
    /// Q8 quants, `b × n`.
    q8_qs: Vec<i8>,
    /// The same quants interleaved for kernels that work on eight blocks at once,
    /// `b × q8_stride(n)·32`, zero-padded (see [`interleave_q8`]).
    q8_t: Vec<i8>,
    /// Q8 scales (f16-rounded), `b × q8_stride(n)`, zero-padded.
    q8_d: Vec<f32>,
    /// Q8_1 sums `d·Σq` (f16-rounded), `b × q8_stride(n)`, zero-padded.
    q8_s: Vec<f32>,
    /// Σq per Q8 block (exact), `b × q8_stride(n)`, zero-padded.
    q8_qsum: Vec<i32>,
    /// Q8_K quants, `b × n`.
    k_qs: Vec<i8>,
    /// Q8_K scales, `b × n/256`.
    k_d: Vec<f32>,
    /// Q8_K sums of 16 quants, `b × n/16`.
    k_bsums: Vec<i16>,
    /// f32 copies, `b × n`.
    f: Vec<f32>,
}

/// What a row kernel reads: borrowed views of one [`QuantizedActs`] (see its field docs for the
/// shapes; a column's data starts at `column × per-column length`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActsView<'a> {
    pub b: usize,
    pub n: usize,
    pub q8_qs: &'a [i8],
    /// Read by the x86-64 kernels only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub q8_t: &'a [i8],
    pub q8_d: &'a [f32],
    pub q8_s: &'a [f32],
    pub q8_qsum: &'a [i32],
    pub q8_stride: usize,
    pub k_qs: &'a [i8],
    pub k_d: &'a [f32],
    pub k_bsums: &'a [i16],
    pub f: &'a [f32],
}

/// Interleave one column's Q8 quants `qs` (n, a multiple of 32) into `out` (`q8_stride(n)·32`)
/// for kernels that work on eight blocks at once:
/// - each whole group of eight blocks (256 bytes) becomes an 8×8 transpose of 4-byte words:
///   bytes `32r + 4k .. 32r + 4k + 4` of the group are elements `4r .. 4r + 4` of block `k`. A
///   kernel that holds eight weight blocks in the same layout multiplies one 32-byte vector of
///   each and adds the products vertically: 4-byte lane `k` collects block `k`, with no
///   horizontal reduction per block;
/// - the blocks of a last, partial group go in pairs (64 bytes each): elements 0..16 of both
///   blocks, then elements 16..32 of both, so a pair costs two vector products;
/// - blocks past the end of the row are zeros.
pub(crate) fn interleave_q8(qs: &[i8], out: &mut [i8]) {
    interleave_q8_from(qs, out, 0);
}

/// [`interleave_q8`] of the groups from `first` on (SIMD versions transpose the whole groups
/// themselves and leave the rest to this).
pub(crate) fn interleave_q8_from(qs: &[i8], out: &mut [i8], first: usize) {
    let whole = qs.len() / QK / 8;
    for (g, dst) in out.chunks_exact_mut(8 * QK).enumerate().skip(first) {
        if g < whole {
            for r in 0..8 {
                for k in 0..8 {
                    let src = (8 * g + k) * QK + 4 * r;
                    if let Some(v) = qs.get(src..src + 4) {
                        dst[32 * r + 4 * k..32 * r + 4 * k + 4].copy_from_slice(v);
                    }
                }
            }
            continue;
        }
        for (p, pair) in dst.chunks_exact_mut(2 * QK).enumerate() {
            for h in 0..2 {
                for k in 0..2 {
                    let src = (8 * g + 2 * p + k) * QK + 16 * h;
                    let half = &mut pair[32 * h + 16 * k..32 * h + 16 * k + 16];
                    match qs.get(src..src + 16) {
                        Some(v) => half.copy_from_slice(v),
                        None => half.fill(0),
                    }
                }
            }
        }
    }
}

fn grow<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::default());
    }
}

impl QuantizedActs {
    /// An empty buffer; it grows on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer preallocated for up to `max_b` columns of up to `max_n` values in every format.
    pub fn with_capacity(max_n: usize, max_b: usize) -> Self {
        let mut a = Self::default();
        a.reserve(max_n, max_b.min(MAX_COLUMNS), &[ActKind::Q8, ActKind::Q8K, ActKind::F32]);
        a
    }

    fn reserve(&mut self, n: usize, b: usize, kinds: &[ActKind]) {
        for kind in kinds {
            match kind {
                ActKind::Q8 => {
                    grow(&mut self.q8_qs, b * n);
                    grow(&mut self.q8_t, b * q8_stride(n) * QK);
                    let s = b * q8_stride(n);
                    grow(&mut self.q8_d, s);
                    grow(&mut self.q8_s, s);
                    grow(&mut self.q8_qsum, s);
                }
                ActKind::Q8K => {
                    grow(&mut self.k_qs, b * n);
                    grow(&mut self.k_d, b * (n / QK_K));
                    grow(&mut self.k_bsums, b * (n / 16));
                }
                ActKind::F32 => grow(&mut self.f, b * n),
            }
        }
    }

    /// Quantize `x` — `b` columns of `n` values, column `j` at `x[j·n..(j+1)·n]` — into each of
    /// `kinds`, with `kernels`' quantizers. Replaces whatever the buffer held.
    pub fn quantize(
        &mut self,
        kernels: &Kernels,
        x: &[f32],
        n: usize,
        b: usize,
        kinds: &[ActKind],
    ) -> Result<()> {
        if b == 0 || b > MAX_COLUMNS {
            return Err(Error::invalid(format!("{b} activation columns; 1..={MAX_COLUMNS} are supported")));
        }
        if n == 0 || x.len() != n * b {
            return Err(Error::invalid(format!("{} activations given for {b} columns of {n}", x.len())));
        }
        for kind in kinds {
            if !n.is_multiple_of(kind.block_size()) {
                return Err(Error::invalid(format!(
                    "{kind:?} activations need a multiple of {} values, got {n}",
                    kind.block_size()
                )));
            }
        }
        self.valid = 0;
        self.reserve(n, b, kinds);
        let (nb, stride, nk) = (n / QK, q8_stride(n), n / QK_K);
        for &kind in kinds {
            for (j, col) in x.chunks_exact(n).enumerate() {
                match kind {
                    ActKind::Q8 => {
                        let r = j * stride..j * stride + stride;
                        let (d, s, qsum) =
                            (&mut self.q8_d[r.clone()], &mut self.q8_s[r.clone()], &mut self.q8_qsum[r]);
                        let qs = &mut self.q8_qs[j * n..j * n + n];
                        kernels.quantize_q8(col, qs, d, s, qsum);
                        kernels.interleave_q8(qs, &mut self.q8_t[j * stride * QK..(j + 1) * stride * QK]);
                        d[nb..].fill(0.0);
                        s[nb..].fill(0.0);
                        qsum[nb..].fill(0);
                    }
                    ActKind::Q8K => kernels.quantize_q8k(
                        col,
                        &mut self.k_qs[j * n..j * n + n],
                        &mut self.k_d[j * nk..j * nk + nk],
                        &mut self.k_bsums[j * (n / 16)..(j + 1) * (n / 16)],
                    ),
                    ActKind::F32 => self.f[j * n..j * n + n].copy_from_slice(col),
                }
            }
            self.valid |= kind.bit();
        }
        self.n = n;
        self.b = b;
        Ok(())
    }

    /// Activations per column.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of columns.
    pub fn b(&self) -> usize {
        self.b
    }

    /// Whether the last [`quantize`](Self::quantize) produced `kind`.
    pub fn has(&self, kind: ActKind) -> bool {
        self.valid & kind.bit() != 0
    }

    /// The kernels' view, if `kind` is present (all slices cut to the current shape).
    pub(crate) fn view(&self, kind: ActKind) -> Result<ActsView<'_>> {
        if !self.has(kind) {
            return Err(Error::invalid(format!("activations were not quantized for {kind:?} weights")));
        }
        let (n, b) = (self.n, self.b);
        let stride = q8_stride(n);
        fn part<T>(v: &[T], on: bool, len: usize) -> Result<&[T]> {
            if !on {
                return Ok(&[]);
            }
            v.get(..len).ok_or_else(|| Error::internal("activation buffer shorter than its shape"))
        }
        let (q8, k, f) = (kind == ActKind::Q8, kind == ActKind::Q8K, kind == ActKind::F32);
        Ok(ActsView {
            b,
            n,
            q8_qs: part(&self.q8_qs, q8, b * n)?,
            q8_t: part(&self.q8_t, q8, b * stride * QK)?,
            q8_d: part(&self.q8_d, q8, b * stride)?,
            q8_s: part(&self.q8_s, q8, b * stride)?,
            q8_qsum: part(&self.q8_qsum, q8, b * stride)?,
            q8_stride: stride,
            k_qs: part(&self.k_qs, k, b * n)?,
            k_d: part(&self.k_d, k, b * (n / QK_K))?,
            k_bsums: part(&self.k_bsums, k, b * (n / 16))?,
            f: part(&self.f, f, b * n)?,
        })
    }

    /// Test access to the raw buffers (cut to the current shape).
    #[cfg(test)]
    pub(crate) fn q8_qs_for_tests(&self) -> &[i8] {
        &self.q8_qs[..self.b * self.n]
    }
    #[cfg(test)]
    pub(crate) fn q8_d_for_tests(&self) -> &[f32] {
        &self.q8_d[..self.b * q8_stride(self.n)]
    }
    #[cfg(test)]
    pub(crate) fn q8_s_for_tests(&self) -> &[f32] {
        &self.q8_s[..self.b * q8_stride(self.n)]
    }
    #[cfg(test)]
    pub(crate) fn q8_qsum_for_tests(&self) -> &[i32] {
        &self.q8_qsum[..self.b * q8_stride(self.n)]
    }
    #[cfg(test)]
    pub(crate) fn k_qs_for_tests(&self) -> &[i8] {
        &self.k_qs[..self.b * self.n]
    }
    #[cfg(test)]
    pub(crate) fn k_d_for_tests(&self) -> &[f32] {
        &self.k_d[..self.b * (self.n / QK_K)]
    }
    #[cfg(test)]
    pub(crate) fn k_bsums_for_tests(&self) -> &[i16] {
        &self.k_bsums[..self.b * (self.n / 16)]
    }
    #[cfg(test)]
    pub(crate) fn buffer_ptrs_for_tests(&self) -> [usize; 9] {
        [
            self.q8_qs.as_ptr() as usize,
            self.q8_t.as_ptr() as usize,
            self.q8_d.as_ptr() as usize,
            self.q8_s.as_ptr() as usize,
            self.q8_qsum.as_ptr() as usize,
            self.k_qs.as_ptr() as usize,
            self.k_d.as_ptr() as usize,
            self.k_bsums.as_ptr() as usize,
            self.f.as_ptr() as usize,
        ]
    }
}
