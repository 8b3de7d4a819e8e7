//! CPU kernels: quantized dot products, batched mat-vec, and the element-wise ops of a forward
//! pass, with the instruction set chosen once at run time.
//!
//! Every kernel exists as a scalar reference (`scalar.rs`) and, where it pays, as AVX2+FMA+F16C
//! (x86-64, with an AVX-512 VNNI variant of the quantized row kernels) and NEON (aarch64, with a
//! `dotprod` variant) versions with the same signatures. A
//! [`Kernels`] table holds one function pointer per weight type and operation; [`Kernels::get`]
//! detects the CPU on first use and caches the best table (a release binary runs on any CPU of its
//! architecture; nothing depends on `target-cpu=native`). `EDGESPEC_KERNELS=scalar` forces the
//! scalar table (`avx2`, `avx512-vnni`, `neon`, `neon-dotprod` request a specific one when the
//! CPU has it).
//!
//! All tables compute bitwise-identical results: the integer parts of the dot products are exact,
//! and the float accumulation order is fixed by [`crate::quant::dot`]. Column `j` of a batched
//! mat-vec is likewise identical whatever the batch size, which is what lets speculative decoding
//! reproduce plain greedy decoding token for token.
//!
//! A forward pass uses them like this (buffers allocated once, reused every token):
//!
//! ```no_run
//! # fn demo(file: &edgespec::gguf::GgufFile) -> edgespec::Result<()> {
//! use edgespec::kernels::{matvec, KernelPool, QuantizedActs, WeightMatrix};
//! let pool = KernelPool::new(None)?; // physical cores, detected kernels
//! let w = WeightMatrix::from_tensor(file, file.require_tensor("blk.0.ffn_down.weight")?)?;
//! let mut acts = QuantizedActs::with_capacity(w.n(), 16);
//! let x = vec![0.1f32; w.n() * 8]; // 8 columns (tokens) of n values, column-major
//! acts.quantize(pool.kernels(), &x, w.n(), 8, &[w.act_kind()])?;
//! let mut out = vec![0f32; w.rows() * 8]; // column j at out[j·rows..]
//! matvec(&pool, &w, &acts, &mut out)?;
//! # Ok(()) }
//! ```

mod acts;
mod matvec;
pub mod ops;
mod scalar;
#[cfg(test)]
mod tests;
mod weights;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use std::ops::Range;
use std::sync::OnceLock;

use half::{bf16, f16};

pub use acts::{ActKind, QuantizedActs, MAX_COLUMNS};
pub use matvec::{matvec, matvec_many, physical_cores, KernelPool, MAX_GROUP, MIN_PARALLEL_WORK};
pub use weights::{InterleavedData, WeightMatrix};

use crate::error::{Error, Result};
use crate::quant::{
    BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_0x8, BlockQ5_1, BlockQ5_K,
    BlockQ6_K, BlockQ8_0, BlockQ8_0x8, QK, QK_K, ROWS_X8,
};
use acts::ActsView;
use weights::WeightData;

/// An instruction-set flavour of the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust, the reference.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
    /// x86-64 AVX2 with AVX-512 VNNI dot products (256-bit forms; AVX512F + VL + VNNI).
    Avx512Vnni,
    /// aarch64 NEON (baseline on every aarch64 CPU).
    Neon,
    /// aarch64 NEON with the `dotprod` extension (SDOT).
    NeonDotprod,
}

impl Isa {
    /// The name `EDGESPEC_KERNELS` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon-dotprod",
        }
    }
}

/// Dots the weight rows `w` (`nb` blocks each) with `acts.b` activation columns into `out`
/// (`rows × b`, row-major).
///
/// # Safety
/// The table's CPU features must be present, `nb ≥ 1`, `w.len()` a multiple of `nb`,
/// `out.len() == w.len() / nb · acts.b` (`8 · w.len() / nb · acts.b` for row-interleaved records,
/// each of which holds a block of eight rows), `1 ≤ acts.b ≤ MAX_COLUMNS`, and `acts` must hold this
/// weight type's activation kind for `n = nb · block size` (as [`QuantizedActs::view`] returns).
pub(crate) type RowsFn<B> = unsafe fn(w: &[B], nb: usize, acts: &ActsView<'_>, out: &mut [f32]);

/// Quantizes one column to Q8: `x` (n, a multiple of 32) → `qs` (n), `d`, `s`, `qsum` (at least
/// n/32 each).
///
/// # Safety
/// The table's CPU features must be present and the shapes as stated.
pub(crate) type QuantizeQ8Fn =
    unsafe fn(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], qsum: &mut [i32]);

/// Quantizes one column to Q8_K: `x` (n, a multiple of 256) → `qs` (n), `d` (n/256), `bsums`
/// (n/16).
///
/// # Safety
/// The table's CPU features must be present and the shapes as stated.
pub(crate) type QuantizeQ8KFn = unsafe fn(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]);

/// Attention scores of a Q8-quantized query (`qs`, block scales `qd`) against Q8_0 rows.
///
/// # Safety
/// The table's CPU features must be present, `qs.len() == 32·qd.len()` and `rows.len() ==
/// qd.len()·out.len()`.
pub(crate) type DotQ8RowsFn = unsafe fn(rows: &[BlockQ8_0], qs: &[i8], qd: &[f32], out: &mut [f32]);

/// The function pointers of one instruction set. Obtain one through [`Kernels::get`],
/// [`Kernels::scalar`] or [`Kernels::available`]; tables for instruction sets the CPU lacks are
/// never handed out, which is what makes calling through them sound.
pub struct Kernels {
    isa: Isa,
    pub(crate) q4_0: RowsFn<BlockQ4_0>,
    pub(crate) q4_1: RowsFn<BlockQ4_1>,
    pub(crate) q5_0: RowsFn<BlockQ5_0>,
    pub(crate) q5_1: RowsFn<BlockQ5_1>,
    pub(crate) q8_0: RowsFn<BlockQ8_0>,
    pub(crate) q2_k: RowsFn<BlockQ2_K>,
    pub(crate) q3_k: RowsFn<BlockQ3_K>,
    pub(crate) q4_k: RowsFn<BlockQ4_K>,
    pub(crate) q5_k: RowsFn<BlockQ5_K>,
    pub(crate) q6_k: RowsFn<BlockQ6_K>,
    /// Row-interleaved Q5_0 (`nb` records per group of eight rows; see [`crate::quant::interleaved`]).
    pub(crate) q5_0x8: RowsFn<BlockQ5_0x8>,
    /// Row-interleaved Q8_0.
    pub(crate) q8_0x8: RowsFn<BlockQ8_0x8>,
    /// Whether the row-interleaved kernels are faster than the plain ones on this table (a model
    /// loaded for it interleaves its Q5_0 and Q8_0 matrices); the scalar twins stand in otherwise.
    pub(crate) interleaved_pays: bool,
    pub(crate) f32: RowsFn<f32>,
    pub(crate) f16: RowsFn<f16>,
    pub(crate) bf16: RowsFn<bf16>,
    /// One column to Q8.
    pub(crate) quantize_q8: QuantizeQ8Fn,
    /// One column to Q8_K.
    pub(crate) quantize_q8k: QuantizeQ8KFn,
    /// `Σ a_i·x_i` (equal lengths).
    pub(crate) dot_f16_f32: unsafe fn(a: &[f16], x: &[f32]) -> f32,
    /// `y += alpha·x` (equal lengths).
    pub(crate) axpy_f16: unsafe fn(alpha: f32, x: &[f16], y: &mut [f32]),
    /// `out[i] = dot_f16_f32(rows[i·n..][..n], x)` for every row (`n = x.len()`).
    pub(crate) dot_f16_rows: unsafe fn(rows: &[f16], x: &[f32], out: &mut [f32]),
    /// `axpy_f16(w[i], rows[i·n..][..n], y)` for every row in order (`n = y.len()`).
    pub(crate) axpy_f16_rows: unsafe fn(w: &[f32], rows: &[f16], y: &mut [f32]),
    /// Scores of a quantized query (`qs`, block scales `qd`) against Q8_0 rows of `qd.len()`
    /// blocks (`rows.len() == qd.len()·out.len()`).
    pub(crate) dot_q8_rows: DotQ8RowsFn,
    /// `y += Σ_i w[i]·rows_i` over Q8_0 rows of `y.len()` values, rows in order.
    pub(crate) axpy_q8_rows: unsafe fn(w: &[f32], rows: &[BlockQ8_0], y: &mut [f32]),
    /// f32 → f16 (equal lengths).
    pub(crate) f32_to_f16: unsafe fn(src: &[f32], dst: &mut [f16]),
    /// f16 → f32 (equal lengths).
    pub(crate) f16_to_f32: unsafe fn(src: &[f16], dst: &mut [f32]),
    /// `gate_i = silu(gate_i)·up_i` (equal lengths).
    pub(crate) silu_mul: unsafe fn(gate: &mut [f32], up: &[f32]),
    /// `gate_i = gelu(gate_i)·up_i` (equal lengths).
    pub(crate) gelu_mul: unsafe fn(gate: &mut [f32], up: &[f32]),
    /// `x_i = exp(x_i − shift)`.
    pub(crate) exp_sub: unsafe fn(x: &mut [f32], shift: f32),
    /// One column's Q8 quants into the layout of the eight-block kernels (see
    /// `acts::interleave_q8`; `out.len() == q8_stride(qs.len())·32`).
    pub(crate) interleave_q8: unsafe fn(qs: &[i8], out: &mut [i8]),
}

static SCALAR: Kernels = Kernels {
    isa: Isa::Scalar,
    q4_0: scalar::rows_legacy::<BlockQ4_0>,
    q4_1: scalar::rows_legacy::<BlockQ4_1>,
    q5_0: scalar::rows_legacy::<BlockQ5_0>,
    q5_1: scalar::rows_legacy::<BlockQ5_1>,
    q8_0: scalar::rows_legacy::<BlockQ8_0>,
    q2_k: scalar::rows_k::<BlockQ2_K>,
    q3_k: scalar::rows_k::<BlockQ3_K>,
    q4_k: scalar::rows_k::<BlockQ4_K>,
    q5_k: scalar::rows_k::<BlockQ5_K>,
    q6_k: scalar::rows_k::<BlockQ6_K>,
    q5_0x8: scalar::rows_x8::<BlockQ5_0x8>,
    q8_0x8: scalar::rows_x8::<BlockQ8_0x8>,
    interleaved_pays: false,
    f32: scalar::rows_f32,
    f16: scalar::rows_f16,
    bf16: scalar::rows_bf16,
    quantize_q8: scalar::quantize_q8,
    quantize_q8k: scalar::quantize_q8k,
    dot_f16_f32: scalar::dot_f16_f32,
    axpy_f16: scalar::axpy_f16,
    dot_f16_rows: scalar::dot_f16_rows,
    axpy_f16_rows: scalar::axpy_f16_rows,
    dot_q8_rows: scalar::dot_q8_rows,
    axpy_q8_rows: scalar::axpy_q8_rows,
    f32_to_f16: scalar::f32_to_f16,
    f16_to_f32: scalar::f16_to_f32_row,
    silu_mul: scalar::silu_mul,
    gelu_mul: scalar::gelu_mul,
    exp_sub: ops::exp_sub,
    interleave_q8: acts::interleave_q8,
};

/// Name of the environment variable that overrides kernel selection.
pub const KERNELS_ENV: &str = "EDGESPEC_KERNELS";

impl Kernels {
    /// The table for this process: the best one the CPU supports, or the one `EDGESPEC_KERNELS`
    /// names (`scalar`, `avx2`, `neon`, `neon-dotprod`; a name the CPU cannot run, or an unknown
    /// one, falls back to the best). Detected on first call, then cached.
    pub fn get() -> &'static Kernels {
        static CHOSEN: OnceLock<&'static Kernels> = OnceLock::new();
        CHOSEN.get_or_init(|| choose(&Kernels::available(), std::env::var(KERNELS_ENV).ok().as_deref()))
    }

    /// The scalar reference table.
    pub fn scalar() -> &'static Kernels {
        &SCALAR
    }

    /// Every table this CPU can run, scalar first and the fastest last.
    pub fn available() -> Vec<&'static Kernels> {
        let mut v = vec![&SCALAR];
        #[cfg(target_arch = "x86_64")]
        v.extend(x86_64::tables());
        #[cfg(target_arch = "aarch64")]
        v.extend(aarch64::tables());
        v
    }

    /// The table named `name` (see [`Isa::name`]), if this CPU can run it.
    pub fn by_name(name: &str) -> Result<&'static Kernels> {
        Kernels::available()
            .into_iter()
            .find(|k| k.isa.name() == name)
            .ok_or_else(|| Error::unsupported(format!("kernels {name:?} are not available on this CPU")))
    }

    /// The instruction set of this table.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The table's name (see [`Isa::name`]).
    pub fn name(&self) -> &'static str {
        self.isa.name()
    }

    pub(crate) fn quantize_q8(
        &self,
        x: &[f32],
        qs: &mut [i8],
        d: &mut [f32],
        s: &mut [f32],
        qsum: &mut [i32],
    ) {
        let nb = x.len() / QK;
        if x.len().is_multiple_of(QK)
            && qs.len() == x.len()
            && d.len() >= nb
            && s.len() >= nb
            && qsum.len() >= nb
        {
            // SAFETY: the shapes are checked just above; the table is only handed out on CPUs
            // with its features.
            unsafe { (self.quantize_q8)(x, qs, d, s, qsum) }
        }
    }

    pub(crate) fn interleave_q8(&self, qs: &[i8], out: &mut [i8]) {
        if qs.len().is_multiple_of(QK) && out.len() == acts::q8_stride(qs.len()) * QK {
            // SAFETY: the shapes are checked just above; CPU features guaranteed by construction
            // of the table.
            unsafe { (self.interleave_q8)(qs, out) }
        }
    }

    pub(crate) fn quantize_q8k(&self, x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
        let nb = x.len() / QK_K;
        if x.len().is_multiple_of(QK_K) && qs.len() == x.len() && d.len() >= nb && bsums.len() >= 16 * nb {
            // SAFETY: shapes checked above; CPU features guaranteed by construction of the table.
            unsafe { (self.quantize_q8k)(x, qs, d, bsums) }
        }
    }

    /// Dot rows `rows` of `w` with every column of `acts` into `out` (`rows.len() × b`, row-major:
    /// `out[r·b + j]` is row `rows.start + r` against column `j`). Single-threaded; [`matvec`]
    /// splits a whole matrix over a pool.
    pub fn dot_rows(
        &self,
        w: &WeightMatrix<'_>,
        rows: Range<usize>,
        acts: &QuantizedActs,
        out: &mut [f32],
    ) -> Result<()> {
        let view = acts.view(w.act_kind())?;
        if view.n != w.n() {
            return Err(Error::invalid(format!(
                "activations have {} values, the matrix rows {}",
                view.n,
                w.n()
            )));
        }
        if rows.start > rows.end || rows.end > w.rows() {
            return Err(Error::invalid(format!("rows {rows:?} outside a {}-row matrix", w.rows())));
        }
        if out.len() != rows.len() * view.b {
            return Err(Error::invalid(format!(
                "output holds {}, {} needed",
                out.len(),
                rows.len() * view.b
            )));
        }
        self.dot_rows_checked(w, rows, &view, out)
    }

    /// [`dot_rows`](Self::dot_rows) after the shapes have been checked.
    pub(crate) fn dot_rows_checked(
        &self,
        w: &WeightMatrix<'_>,
        rows: Range<usize>,
        acts: &ActsView<'_>,
        out: &mut [f32],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let nb = w.blocks_per_row();
        let range = rows.start * nb..rows.end * nb;
        macro_rules! run {
            ($blocks:expr, $f:expr) => {{
                let part =
                    $blocks.get(range).ok_or_else(|| Error::internal("row range outside the weights"))?;
                // SAFETY: `WeightMatrix` guarantees whole rows of `nb` blocks; the caller checked
                // that `acts` holds this weight type's activation kind for `n` and that `out` has
                // `rows × b` slots; the table only exists on CPUs with its features.
                unsafe { $f(part, nb, acts, out) }
            }};
        }
        match w.data {
            WeightData::F32(d) => run!(d, self.f32),
            WeightData::F16(d) => run!(d, self.f16),
            WeightData::BF16(d) => run!(d, self.bf16),
            WeightData::Q4_0(d) => run!(d, self.q4_0),
            WeightData::Q4_1(d) => run!(d, self.q4_1),
            WeightData::Q5_0(d) => run!(d, self.q5_0),
            WeightData::Q5_1(d) => run!(d, self.q5_1),
            WeightData::Q8_0(d) => run!(d, self.q8_0),
            WeightData::Q2K(d) => run!(d, self.q2_k),
            WeightData::Q3K(d) => run!(d, self.q3_k),
            WeightData::Q4K(d) => run!(d, self.q4_k),
            WeightData::Q5K(d) => run!(d, self.q5_k),
            WeightData::Q6K(d) => run!(d, self.q6_k),
            WeightData::Q5_0x8(d) => return run_x8(d, self.q5_0x8, nb, rows, acts, out),
            WeightData::Q8_0x8(d) => return run_x8(d, self.q8_0x8, nb, rows, acts, out),
        }
        Ok(())
    }

    /// Whether this table's row-interleaved kernels beat its plain ones (measured; see
    /// docs/decisions.md): a model loaded for it then interleaves the matrices that have them.
    pub fn interleaved_pays(&self) -> bool {
        self.interleaved_pays
    }

    /// `Σ a_i·x_i` for an f16 vector (a KV-cache row) and f32 values, in the fixed
    /// eight-lane order of [`crate::quant::dot`].
    pub fn dot_f16_f32(&self, a: &[f16], x: &[f32]) -> Result<f32> {
        if a.len() != x.len() {
            return Err(Error::invalid(format!("dot of {} and {} values", a.len(), x.len())));
        }
        // SAFETY: equal lengths checked; CPU features guaranteed by construction of the table.
        Ok(unsafe { (self.dot_f16_f32)(a, x) })
    }

    /// `y += alpha·x` for an f16 `x` (a KV-cache row), one fused multiply-add per element.
    pub fn axpy_f16(&self, alpha: f32, x: &[f16], y: &mut [f32]) -> Result<()> {
        if x.len() != y.len() {
            return Err(Error::invalid(format!("axpy of {} into {} values", x.len(), y.len())));
        }
        // SAFETY: equal lengths checked; CPU features guaranteed by construction of the table.
        unsafe { (self.axpy_f16)(alpha, x, y) };
        Ok(())
    }

    /// [`Kernels::dot_f16_f32`] of `x` with each of the `out.len()` rows of `rows` (an f16
    /// matrix of `x.len()` columns, e.g. a head's cached keys): attention scores in one call,
    /// each bitwise equal to the one-row dot.
    pub fn dot_f16_rows(&self, rows: &[f16], x: &[f32], out: &mut [f32]) -> Result<()> {
        if x.is_empty() || rows.len() != x.len() * out.len() {
            return Err(Error::invalid(format!(
                "{} f16 values are not {} rows of {}",
                rows.len(),
                out.len(),
                x.len()
            )));
        }
        // SAFETY: shapes checked; CPU features guaranteed by construction of the table.
        unsafe { (self.dot_f16_rows)(rows, x, out) };
        Ok(())
    }

    /// `y += Σ_i w[i]·rows[i]` over the `w.len()` rows of `rows` (an f16 matrix of `y.len()`
    /// columns, e.g. a head's cached values), bitwise equal to [`Kernels::axpy_f16`] row after row.
    pub fn axpy_f16_rows(&self, w: &[f32], rows: &[f16], y: &mut [f32]) -> Result<()> {
        if y.is_empty() || rows.len() != y.len() * w.len() {
            return Err(Error::invalid(format!(
                "{} f16 values are not {} rows of {}",
                rows.len(),
                w.len(),
                y.len()
            )));
        }
        // SAFETY: shapes checked; CPU features guaranteed by construction of the table.
        unsafe { (self.axpy_f16_rows)(w, rows, y) };
        Ok(())
    }

    /// Attention scores over a Q8_0 KV cache: `out[r]` is the query — quantized to Q8 as
    /// `qs` (a multiple of 32 values) with block scales `qd` (f16-rounded, as the Q8
    /// quantizer gives them) — dotted with row `r` of `rows` (`qd.len()` blocks per row): the
    /// exact integer dot of each block times `d_row · qd`, accumulated by one fused multiply-add
    /// per block in block order. Quants are what the Q8 quantizer produces (−127..=127): a query
    /// quant of −128 is refused; a row quant of −128 gives a score that may differ between
    /// tables (the SIMD sign trick cannot negate it).
    pub fn dot_q8_rows(&self, rows: &[BlockQ8_0], qs: &[i8], qd: &[f32], out: &mut [f32]) -> Result<()> {
        let nb = qd.len();
        if nb == 0 || qs.len() != nb * QK || rows.len() != nb * out.len() {
            return Err(Error::invalid(format!(
                "{} Q8_0 blocks are not {} rows of a {}-value query with {nb} scales",
                rows.len(),
                out.len(),
                qs.len()
            )));
        }
        if qs.contains(&i8::MIN) {
            return Err(Error::invalid("a Q8 query quant of -128 (the quantizer never makes one)"));
        }
        // SAFETY: shapes checked (any quant values are memory-safe); CPU features guaranteed by
        // construction of the table.
        unsafe { (self.dot_q8_rows)(rows, qs, qd, out) };
        Ok(())
    }

    /// `y += Σ_i w[i]·rows_i` over the `w.len()` Q8_0 rows of `rows` (each `y.len()` values, a
    /// multiple of 32; e.g. a head's cached values): per row and block `w[i]·d` once, then one
    /// fused multiply-add per element, rows in order.
    pub fn axpy_q8_rows(&self, w: &[f32], rows: &[BlockQ8_0], y: &mut [f32]) -> Result<()> {
        let nb = y.len() / QK;
        if nb == 0 || !y.len().is_multiple_of(QK) || rows.len() != nb * w.len() {
            return Err(Error::invalid(format!(
                "{} Q8_0 blocks are not {} rows of {} values",
                rows.len(),
                w.len(),
                y.len()
            )));
        }
        // SAFETY: shapes checked; CPU features guaranteed by construction of the table.
        unsafe { (self.axpy_q8_rows)(w, rows, y) };
        Ok(())
    }

    /// Convert f32 to f16 (round to nearest even), e.g. when writing the KV cache.
    pub fn f32_to_f16(&self, src: &[f32], dst: &mut [f16]) -> Result<()> {
        if src.len() != dst.len() {
            return Err(Error::invalid(format!("converting {} values into {}", src.len(), dst.len())));
        }
        // SAFETY: equal lengths checked; CPU features guaranteed by construction of the table.
        unsafe { (self.f32_to_f16)(src, dst) };
        Ok(())
    }

    /// SwiGLU's gating, `gate_i = silu(gate_i)·up_i`: bitwise [`ops::silu_mul`] on every table.
    pub fn silu_mul(&self, gate: &mut [f32], up: &[f32]) -> Result<()> {
        if gate.len() != up.len() {
            return Err(Error::invalid(format!("silu_mul of {} and {} values", gate.len(), up.len())));
        }
        // SAFETY: equal lengths checked; CPU features guaranteed by construction of the table.
        unsafe { (self.silu_mul)(gate, up) };
        Ok(())
    }

    /// GeGLU's gating, `gate_i = gelu(gate_i)·up_i`: bitwise [`ops::gelu_mul`] on every table.
    pub fn gelu_mul(&self, gate: &mut [f32], up: &[f32]) -> Result<()> {
        if gate.len() != up.len() {
            return Err(Error::invalid(format!("gelu_mul of {} and {} values", gate.len(), up.len())));
        }
        // SAFETY: equal lengths checked; CPU features guaranteed by construction of the table.
        unsafe { (self.gelu_mul)(gate, up) };
        Ok(())
    }

    /// Softmax in place: bitwise [`ops::softmax`] on every table.
    pub fn softmax(&self, x: &mut [f32]) {
        let max = ops::max(x);
        // SAFETY: any length is valid; CPU features guaranteed by construction of the table.
        unsafe { (self.exp_sub)(x, max) };
        ops::normalize(x);
    }

    /// Convert f16 to f32.
    pub fn f16_to_f32(&self, src: &[f16], dst: &mut [f32]) -> Result<()> {
        if src.len() != dst.len() {
            return Err(Error::invalid(format!("converting {} values into {}", src.len(), dst.len())));
        }
        // SAFETY: equal lengths checked; CPU features guaranteed by construction of the table.
        unsafe { (self.f16_to_f32)(src, dst) };
        Ok(())
    }
}

/// Rows `rows` of a row-interleaved matrix (`nb` records per group of eight rows) through the
/// row kernel `f`: whole groups in one call, a range that starts or ends inside a group through
/// a buffer of that group's rows (the same results: each row's arithmetic does not depend on its
/// neighbours).
fn run_x8<X>(
    data: &[X],
    f: RowsFn<X>,
    nb: usize,
    rows: Range<usize>,
    acts: &ActsView<'_>,
    out: &mut [f32],
) -> Result<()> {
    let b = acts.b;
    let (g0, g1) = (rows.start / ROWS_X8, rows.end.div_ceil(ROWS_X8));
    let groups = |a: usize, z: usize| {
        data.get(a * nb..z * nb).ok_or_else(|| Error::internal("row range outside the interleaved weights"))
    };
    if rows.start.is_multiple_of(ROWS_X8) && rows.end.is_multiple_of(ROWS_X8) {
        let part = groups(g0, g1)?;
        // SAFETY: `part` is whole groups of `nb` records, eight rows each, and `out` holds
        // `rows × b` = `8·(g1 − g0) × b` slots; the caller checked `acts` against the matrix; the
        // table only exists on CPUs with its features.
        unsafe { f(part, nb, acts, out) };
        return Ok(());
    }
    let mut buf = [0f32; ROWS_X8 * MAX_COLUMNS];
    for g in g0..g1 {
        let part = groups(g, g + 1)?;
        let buf = &mut buf[..ROWS_X8 * b];
        // SAFETY: as above, for one group and a buffer of its `8 × b` results.
        unsafe { f(part, nb, acts, buf) };
        let (lo, hi) = (rows.start.max(ROWS_X8 * g), rows.end.min(ROWS_X8 * (g + 1)));
        for r in lo..hi {
            let src = &buf[(r - ROWS_X8 * g) * b..][..b];
            out.get_mut((r - rows.start) * b..(r - rows.start + 1) * b)
                .ok_or_else(|| Error::internal("mat-vec output shorter than its rows"))?
                .copy_from_slice(src);
        }
    }
    Ok(())
}

/// The table `requested` names among `available` (scalar first, fastest last), else the fastest.
fn choose(available: &[&'static Kernels], requested: Option<&str>) -> &'static Kernels {
    let best = available.last().copied().unwrap_or(&SCALAR);
    match requested.map(str::trim) {
        Some(name) if !name.is_empty() => {
            available.iter().copied().find(|k| k.isa.name() == name).unwrap_or(best)
        }
        _ => best,
    }
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kernels({})", self.isa.name())
    }
}
