//! Row-interleaved copies of a model's Q5_0 and Q8_0 matrices, which the batched mat-vecs read
//! instead of the GGUF layout on kernel tables where that measured faster.
//!
//! The records (see [`crate::quant::interleaved`]) give bitwise the same results as the mapped
//! blocks, so a pass may read either: the token embeddings, a head cut at a row count that is not
//! a multiple of 8, and tables without fast interleaved kernels keep reading the map.
//! Where the copies live is [`Store`]'s business (built in memory at load here; see
//! docs/decisions.md for the measurements behind the choice).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::kernels::{InterleavedData, WeightMatrix};
use crate::quant::interleaved::interleave;
use crate::quant::{as_blocks, BlockQ5_0x8, BlockQ8_0x8, GgmlType, ROWS_X8};

use super::weights::Mat;

/// The interleaved records of one matrix.
#[derive(Debug)]
enum Store {
    Q5_0(Vec<BlockQ5_0x8>),
    Q8_0(Vec<BlockQ8_0x8>),
}

/// Interleaved copies by tensor index.
#[derive(Debug, Default)]
pub(crate) struct Repacked {
    by_tensor: HashMap<usize, Store>,
}

/// Whether `m` (a matrix of `file`) has an interleaved form.
fn eligible(file: &GgufFile, m: &Mat) -> bool {
    let ty = file.tensors().get(m.tensor()).map(|t| t.ty);
    matches!(ty, Some(GgmlType::Q5_0 | GgmlType::Q8_0)) && m.rows.is_multiple_of(ROWS_X8)
}

impl Repacked {
    /// Nothing interleaved: every matrix reads the map.
    pub fn none() -> Repacked {
        Repacked::default()
    }

    /// Interleave every eligible matrix of `mats` (each tensor once), in memory.
    pub fn build(file: &GgufFile, mats: &[&Mat]) -> Result<Repacked> {
        let mut by_tensor = HashMap::new();
        for m in mats {
            if by_tensor.contains_key(&m.tensor()) || !eligible(file, m) {
                continue;
            }
            let info = file.tensors().get(m.tensor()).ok_or_else(|| Error::internal("tensor index"))?;
            let data = file.tensor_data(info);
            let nb = m.n / 32;
            let store = match info.ty {
                GgmlType::Q5_0 => Store::Q5_0(interleave(as_blocks(data)?, m.rows, nb)?),
                _ => Store::Q8_0(interleave(as_blocks(data)?, m.rows, nb)?),
            };
            by_tensor.insert(m.tensor(), store);
        }
        Ok(Repacked { by_tensor })
    }

    /// Number of interleaved matrices.
    pub fn len(&self) -> usize {
        self.by_tensor.len()
    }

    /// Bytes held by the interleaved copies.
    pub fn bytes(&self) -> usize {
        self.by_tensor
            .values()
            .map(|s| match s {
                Store::Q5_0(v) => std::mem::size_of_val(v.as_slice()),
                Store::Q8_0(v) => std::mem::size_of_val(v.as_slice()),
            })
            .sum()
    }

    /// The first `rows` rows of `m` interleaved, if it has that form and `rows` is whole groups.
    pub fn mat(&self, m: &Mat, rows: usize) -> Option<Result<WeightMatrix<'_>>> {
        if !rows.is_multiple_of(ROWS_X8) || rows == 0 || rows > m.rows {
            return None;
        }
        let records = rows / ROWS_X8 * (m.n / 32);
        let data = match self.by_tensor.get(&m.tensor())? {
            Store::Q5_0(v) => InterleavedData::Q5_0(v.get(..records)?),
            Store::Q8_0(v) => InterleavedData::Q8_0(v.get(..records)?),
        };
        Some(WeightMatrix::interleaved(data, rows, m.n))
    }
}
