//! Row-interleaved copies of the legacy 32-element block formats, for batched mat-vecs.
//!
//! A GGUF matrix stores each row's blocks one after another. A batched pass (b activation
//! columns) then has to decode a row's blocks, multiply them against every column, and fold
//! per-block sums out of the lanes of a vector. Here block `i` of eight consecutive rows is stored
//! as one record, its quants already in the register order of the kernels: 4-byte word `j` of row
//! `r` sits at bytes `32j + 4r .. 32j + 4r + 4`, so one 32-byte load holds the same four elements
//! of all eight rows. A kernel broadcasts four activation bytes, and one multiply-add puts row
//! `r`'s partial sum in 32-bit lane `r`: the block sums of eight rows land in one vector with no
//! horizontal reduction, and the eight block scales are applied with one multiply.
//!
//! The arithmetic is unchanged: each row's block sum is exact, and its float term goes into the
//! same lane (`block mod 8`) of the reference order in [`super::dot`], so a matrix gives bitwise
//! the same results in either layout, and any batch size may use either.
//!
//! Records (sizes equal eight of the original blocks, so a pass streams the same bytes):
//! - [`BlockQ8_0x8`]: the eight f16 scales, then 256 quant bytes stored as `q + 128` (unsigned,
//!   the operand `vpdpbusd` wants; the kernels subtract `128·Σa`, as for Q5_0's offset of 16);
//! - [`BlockQ5_0x8`]: the scales, the low nibbles as stored by GGML (byte `k` of word `j` holds
//!   elements `4j + k` and `16 + 4j + k`) in words `j = 0..4`, and a 32-byte plane of fifth bits:
//!   byte `4r + k`, bit `j` is the fifth bit of element `4j + k` of row `r`.

use crate::error::{Error, Result};

use super::dot::LegacyWeight;
use super::legacy::{BlockQ5_0, BlockQ8_0};
use super::{Block, GgmlType};

/// Rows per interleaved record.
pub const ROWS_X8: usize = 8;

/// Block `i` of eight Q8_0 rows (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ8_0x8 {
    /// Scales of rows 0..8 (f16 bits).
    pub d: [u16; 8],
    /// Byte `32j + 4r + k` = `q_r[4j + k] + 128` (as u8).
    pub qs: [u8; 256],
}

/// Block `i` of eight Q5_0 rows (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5_0x8 {
    /// Scales of rows 0..8 (f16 bits).
    pub d: [u16; 8],
    /// Byte `32j + 4r + k` = row `r`'s `qs[4j + k]` (j < 4).
    pub qs: [u8; 128],
    /// Byte `4r + k`, bit `j` = fifth bit of row `r`'s element `4j + k`.
    pub qh: [u8; 32],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0x8>() == 8 * 34);
const _: () = assert!(std::mem::size_of::<BlockQ5_0x8>() == 8 * 22);

// SAFETY: `#[repr(C)]` of u16 and u8 arrays with no padding (the size asserts above equal the sum
// of the field sizes); every bit pattern is valid. `TYPE` names the format the rows come from.
unsafe impl Block for BlockQ8_0x8 {
    const TYPE: GgmlType = GgmlType::Q8_0;
}
// SAFETY: as above.
unsafe impl Block for BlockQ5_0x8 {
    const TYPE: GgmlType = GgmlType::Q5_0;
}

impl Default for BlockQ8_0x8 {
    fn default() -> Self {
        BlockQ8_0x8 { d: [0; 8], qs: [0x80; 256] }
    }
}

impl Default for BlockQ5_0x8 {
    fn default() -> Self {
        BlockQ5_0x8 { d: [0; 8], qs: [0; 128], qh: [0; 32] }
    }
}

/// A row-interleaved record of eight blocks of `Base`.
pub trait Interleaved: Block + Default {
    /// The GGUF block format of the rows.
    type Base: LegacyWeight + Default;
    /// Block `i` of eight rows (`rows[r]` from row `r`) as one record.
    fn pack(rows: &[Self::Base; ROWS_X8]) -> Self;
    /// Row `r`'s block back in its GGUF form (`r < 8`).
    fn row(&self, r: usize) -> Self::Base;
}

impl Interleaved for BlockQ8_0x8 {
    type Base = BlockQ8_0;
    fn pack(rows: &[BlockQ8_0; ROWS_X8]) -> Self {
        let mut out = BlockQ8_0x8::default();
        for (r, blk) in rows.iter().enumerate() {
            out.d[r] = blk.d;
            for (e, &q) in blk.qs.iter().enumerate() {
                out.qs[32 * (e / 4) + 4 * r + e % 4] = (q as u8) ^ 0x80;
            }
        }
        out
    }
    fn row(&self, r: usize) -> BlockQ8_0 {
        let r = r % ROWS_X8;
        BlockQ8_0 {
            d: self.d[r],
            qs: std::array::from_fn(|e| (self.qs[32 * (e / 4) + 4 * r + e % 4] ^ 0x80) as i8),
        }
    }
}

impl Interleaved for BlockQ5_0x8 {
    type Base = BlockQ5_0;
    fn pack(rows: &[BlockQ5_0; ROWS_X8]) -> Self {
        let mut out = BlockQ5_0x8::default();
        for (r, blk) in rows.iter().enumerate() {
            out.d[r] = blk.d;
            for (i, &q) in blk.qs.iter().enumerate() {
                out.qs[32 * (i / 4) + 4 * r + i % 4] = q;
            }
            let qh = u32::from_le_bytes(blk.qh);
            for k in 0..4 {
                out.qh[4 * r + k] = (0..8).fold(0u8, |acc, j| acc | ((((qh >> (4 * j + k)) & 1) as u8) << j));
            }
        }
        out
    }
    fn row(&self, r: usize) -> BlockQ5_0 {
        let r = r % ROWS_X8;
        let mut qh = 0u32;
        for k in 0..4 {
            for j in 0..8 {
                qh |= (((self.qh[4 * r + k] >> j) & 1) as u32) << (4 * j + k);
            }
        }
        BlockQ5_0 {
            d: self.d[r],
            qh: qh.to_le_bytes(),
            qs: std::array::from_fn(|i| self.qs[32 * (i / 4) + 4 * r + i % 4]),
        }
    }
}

/// Interleave a `rows × nb`-block matrix (`rows` a multiple of 8): record `g·nb + i` holds block
/// `i` of rows `8g .. 8g + 8`.
pub fn interleave<X: Interleaved>(blocks: &[X::Base], rows: usize, nb: usize) -> Result<Vec<X>> {
    if rows == 0 || nb == 0 || !rows.is_multiple_of(ROWS_X8) || blocks.len() != rows * nb {
        return Err(Error::invalid(format!(
            "{} blocks are not {rows} rows (a multiple of {ROWS_X8}) of {nb}",
            blocks.len()
        )));
    }
    let mut out = Vec::with_capacity(blocks.len() / ROWS_X8);
    for group in blocks.chunks_exact(ROWS_X8 * nb) {
        for i in 0..nb {
            let rows: [X::Base; ROWS_X8] = std::array::from_fn(|r| group[r * nb + i]);
            out.push(X::pack(&rows));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(s: &mut u64) -> u64 {
        *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *s >> 24
    }

    #[test]
    fn records_round_trip_every_row() {
        let mut s = 5u64;
        let q8: [BlockQ8_0; 8] = std::array::from_fn(|_| BlockQ8_0 {
            d: next(&mut s) as u16,
            qs: std::array::from_fn(|_| next(&mut s) as i8),
        });
        let q5: [BlockQ5_0; 8] = std::array::from_fn(|_| BlockQ5_0 {
            d: next(&mut s) as u16,
            qh: (next(&mut s) as u32).to_le_bytes(),
            qs: std::array::from_fn(|_| next(&mut s) as u8),
        });
        let (p8, p5) = (BlockQ8_0x8::pack(&q8), BlockQ5_0x8::pack(&q5));
        for (r, (b8, b5)) in q8.iter().zip(&q5).enumerate() {
            assert_eq!(p8.row(r), *b8);
            assert_eq!(p5.row(r), *b5);
        }
        // The fifth-bit plane: bit j of byte 4r + k is element 4j + k's.
        for (r, blk) in q5.iter().enumerate() {
            for (e, q) in blk.unpack().iter().enumerate() {
                let bit = (p5.qh[4 * r + e % 4] >> (e / 4)) & 1;
                assert_eq!(bit, q >> 4, "row {r} element {e}");
            }
        }
    }

    #[test]
    fn interleave_orders_records_by_row_group_then_block() {
        let rows = 16;
        let nb = 3;
        let blocks: Vec<BlockQ8_0> =
            (0..rows * nb).map(|i| BlockQ8_0 { d: i as u16, qs: [i as i8; 32] }).collect();
        let x: Vec<BlockQ8_0x8> = interleave(&blocks, rows, nb).unwrap();
        assert_eq!(x.len(), 2 * nb);
        for g in 0..2 {
            for i in 0..nb {
                for r in 0..8 {
                    assert_eq!(x[g * nb + i].row(r), blocks[(8 * g + r) * nb + i]);
                }
            }
        }
        assert!(interleave::<BlockQ8_0x8>(&blocks[..nb * 4], 4, nb).is_err());
    }
}
