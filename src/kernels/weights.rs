//! A weight matrix borrowed from the memory map, typed by its block format.
//!
//! GGUF stores a matrix with GGML shape `[n, rows]` as `rows` rows of `n` elements, each row a
//! whole number of blocks. [`WeightMatrix`] checks that once and keeps the bytes as a typed block
//! slice (no copy), so the kernels receive `&[BlockQ4_1]` and never re-check the bytes.

use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::{
    as_blocks, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_0x8, BlockQ5_1,
    BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockQ8_0x8, GgmlType, ROWS_X8,
};

use super::acts::ActKind;

/// The typed block slice of a weight matrix (all rows, row-major).
#[derive(Clone, Copy, Debug)]
pub(crate) enum WeightData<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    Q4_0(&'a [BlockQ4_0]),
    Q4_1(&'a [BlockQ4_1]),
    Q5_0(&'a [BlockQ5_0]),
    Q5_1(&'a [BlockQ5_1]),
    Q8_0(&'a [BlockQ8_0]),
    Q2K(&'a [BlockQ2_K]),
    Q3K(&'a [BlockQ3_K]),
    Q4K(&'a [BlockQ4_K]),
    Q5K(&'a [BlockQ5_K]),
    Q6K(&'a [BlockQ6_K]),
    /// Row-interleaved Q5_0: `rows / 8 × blocks per row` records.
    Q5_0x8(&'a [BlockQ5_0x8]),
    /// Row-interleaved Q8_0.
    Q8_0x8(&'a [BlockQ8_0x8]),
}

/// Row-interleaved records of a matrix (see [`crate::quant::interleaved`]), borrowed.
#[derive(Clone, Copy, Debug)]
pub enum InterleavedData<'a> {
    /// Q5_0 rows.
    Q5_0(&'a [BlockQ5_0x8]),
    /// Q8_0 rows.
    Q8_0(&'a [BlockQ8_0x8]),
}

/// A `rows × n` weight matrix of one quant type, borrowed (typically from a GGUF memory map).
#[derive(Clone, Copy, Debug)]
pub struct WeightMatrix<'a> {
    pub(crate) data: WeightData<'a>,
    ty: GgmlType,
    rows: usize,
    n: usize,
}

impl<'a> WeightMatrix<'a> {
    /// View `data` as `rows` rows of `n` elements of type `ty`. Fails when `n` is not a whole
    /// number of blocks, the byte count does not match, the data is misaligned, or the type has no
    /// kernel (`Unsupported`).
    pub fn new(ty: GgmlType, data: &'a [u8], rows: usize, n: usize) -> Result<Self> {
        let row_bytes = ty.row_bytes(n as u64).ok_or_else(|| {
            Error::invalid(format!("row length {n} is not a multiple of the {ty} block size"))
        })?;
        let want = (row_bytes as u128) * rows as u128;
        if want != data.len() as u128 {
            return Err(Error::format(format!(
                "a {rows}×{n} {ty} matrix takes {want} bytes, the data has {}",
                data.len()
            )));
        }
        if rows == 0 || n == 0 {
            return Err(Error::invalid(format!("empty {rows}×{n} matrix")));
        }
        let data = match ty {
            GgmlType::F32 => WeightData::F32(as_blocks(data)?),
            GgmlType::F16 => WeightData::F16(as_blocks(data)?),
            GgmlType::BF16 => WeightData::BF16(as_blocks(data)?),
            GgmlType::Q4_0 => WeightData::Q4_0(as_blocks(data)?),
            GgmlType::Q4_1 => WeightData::Q4_1(as_blocks(data)?),
            GgmlType::Q5_0 => WeightData::Q5_0(as_blocks(data)?),
            GgmlType::Q5_1 => WeightData::Q5_1(as_blocks(data)?),
            GgmlType::Q8_0 => WeightData::Q8_0(as_blocks(data)?),
            GgmlType::Q2_K => WeightData::Q2K(as_blocks(data)?),
            GgmlType::Q3_K => WeightData::Q3K(as_blocks(data)?),
            GgmlType::Q4_K => WeightData::Q4K(as_blocks(data)?),
            GgmlType::Q5_K => WeightData::Q5K(as_blocks(data)?),
            GgmlType::Q6_K => WeightData::Q6K(as_blocks(data)?),
            other => return Err(Error::unsupported(format!("no CPU kernel for {other} weights"))),
        };
        Ok(WeightMatrix { data, ty, rows, n })
    }

    /// A `rows × n` matrix stored row-interleaved (`rows` a multiple of 8, `data` holding
    /// `rows / 8 × n / 32` records): the same values and, through every kernel table, bitwise the
    /// same mat-vec results as the plain layout.
    pub fn interleaved(data: InterleavedData<'a>, rows: usize, n: usize) -> Result<Self> {
        let (ty, len) = match data {
            InterleavedData::Q5_0(d) => (GgmlType::Q5_0, d.len()),
            InterleavedData::Q8_0(d) => (GgmlType::Q8_0, d.len()),
        };
        let nb = n / ty.block_size();
        if rows == 0 || nb == 0 || !n.is_multiple_of(ty.block_size()) || !rows.is_multiple_of(ROWS_X8) {
            return Err(Error::invalid(format!(
                "a {rows}×{n} matrix cannot be interleaved by {ROWS_X8} rows"
            )));
        }
        if len != rows / ROWS_X8 * nb {
            return Err(Error::format(format!(
                "a {rows}×{n} interleaved {ty} matrix takes {} records, the data has {len}",
                rows / ROWS_X8 * nb
            )));
        }
        let data = match data {
            InterleavedData::Q5_0(d) => WeightData::Q5_0x8(d),
            InterleavedData::Q8_0(d) => WeightData::Q8_0x8(d),
        };
        Ok(WeightMatrix { data, ty, rows, n })
    }

    /// Whether the matrix is stored row-interleaved.
    pub fn is_interleaved(&self) -> bool {
        matches!(self.data, WeightData::Q5_0x8(_) | WeightData::Q8_0x8(_))
    }

    /// The 2-D tensor `info` of `file` (GGML shape `[n, rows]`), borrowed from the file's bytes.
    pub fn from_tensor(file: &'a GgufFile, info: &TensorInfo) -> Result<Self> {
        let (n, rows) = match info.shape() {
            [n] => (*n, 1),
            [n, rows] => (*n, *rows),
            [n, rows, rest @ ..] if rest.iter().all(|&d| d == 1) => (*n, *rows),
            shape => {
                return Err(Error::format(format!("tensor {} has shape {shape:?}, not a matrix", info.name)))
            }
        };
        let to_usize = |v: u64| usize::try_from(v).map_err(|_| Error::format("tensor dimension overflows"));
        WeightMatrix::new(info.ty, file.tensor_data(info), to_usize(rows)?, to_usize(n)?)
            .map_err(|e| e.context(format!("tensor {}", info.name)))
    }

    /// The element type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row (inputs).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.n / self.ty.block_size() * self.ty.type_size()
    }

    /// Bytes of the whole matrix (what one mat-vec streams from memory).
    pub fn bytes(&self) -> usize {
        self.row_bytes() * self.rows
    }

    /// Blocks per row (elements per row for the float types).
    pub(crate) fn blocks_per_row(&self) -> usize {
        self.n / self.ty.block_size()
    }

    /// The activation format this matrix is dotted against.
    pub fn act_kind(&self) -> ActKind {
        match self.data {
            WeightData::F32(_) | WeightData::F16(_) | WeightData::BF16(_) => ActKind::F32,
            WeightData::Q4_0(_)
            | WeightData::Q4_1(_)
            | WeightData::Q5_0(_)
            | WeightData::Q5_1(_)
            | WeightData::Q8_0(_)
            | WeightData::Q5_0x8(_)
            | WeightData::Q8_0x8(_) => ActKind::Q8,
            WeightData::Q2K(_)
            | WeightData::Q3K(_)
            | WeightData::Q4K(_)
            | WeightData::Q5K(_)
            | WeightData::Q6K(_) => ActKind::Q8K,
        }
    }
}
