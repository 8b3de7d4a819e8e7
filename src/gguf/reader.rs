//! The bounds-checked GGUF parser: header, metadata, tensor table, data section.
//!
//! The parser walks the file once and keeps offsets, not copies. Every read is checked against the
//! bytes that remain; every count is checked against the smallest space its items could take before
//! anything is reserved for it, so a hostile length (2^40 strings) fails at once instead of
//! allocating or looping; dimension products are checked for overflow; tensors must be whole blocks,
//! aligned, inside the file, and must not overlap. Nothing here panics on any input.

use std::collections::HashMap;
use std::ops::Range;

use super::value::{Cursor, Value, ValueType};
use super::{GGUF_MAGIC, MAX_DIMS};
use crate::error::{Error, Result};
use crate::quant::GgmlType;

/// Longest metadata key or tensor name accepted.
pub const MAX_KEY_LEN: u64 = 64 * 1024;
/// Most metadata entries or tensors accepted.
pub const MAX_ENTRIES: u64 = 1 << 20;
/// Largest `general.alignment` accepted.
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// Alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Where a metadata value sits in the file: scalars decoded, strings and arrays as byte ranges.
#[derive(Clone, Debug)]
pub(crate) enum Slot {
    Scalar(ScalarValue),
    String(Range<usize>),
    Array { elem: ValueType, len: usize, bytes: Range<usize> },
}

/// A decoded scalar (a `Value` without borrows).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScalarValue(pub(crate) Value<'static>);

/// One tensor of the table: name, shape, type, and where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Name as stored, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Element type.
    pub ty: GgmlType,
    dims: [u64; MAX_DIMS],
    n_dims: usize,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Number of elements (product of the dimensions).
    pub n_elements: u64,
    /// Number of bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The dimensions, innermost (contiguous) first, as GGML orders them: a weight matrix with
    /// `rows` outputs over `n` inputs has shape `[n, rows]`.
    pub fn shape(&self) -> &[u64] {
        &self.dims[..self.n_dims]
    }
}

/// The parsed index of a GGUF file: everything but the tensor data, as offsets into the bytes.
#[derive(Clone, Debug)]
pub(crate) struct Index {
    pub(crate) version: u32,
    pub(crate) alignment: u64,
    pub(crate) metadata: Vec<(String, Slot)>,
    pub(crate) meta_by_key: HashMap<String, usize>,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) tensor_by_name: HashMap<String, usize>,
    pub(crate) data_offset: u64,
}

impl Index {
    /// Parse `bytes`, a whole GGUF file.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Index> {
        let mut c = Cursor::new(bytes);
        let magic = c.u32("magic").map_err(|_| Error::format("not a GGUF file: shorter than its magic"))?;
        if magic != GGUF_MAGIC {
            return Err(Error::format(format!(
                "not a GGUF file: magic is {:02x?}, expected \"GGUF\"",
                magic.to_le_bytes()
            )));
        }
        let version = c.u32("version")?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(Error::unsupported(
                    "GGUF version 1 (32-bit counts) is not supported; re-convert the model",
                ))
            }
            v if v.swap_bytes() <= 3 && v.swap_bytes() >= 1 => {
                return Err(Error::unsupported("big-endian GGUF files are not supported"))
            }
            v => return Err(Error::unsupported(format!("unknown GGUF version {v} (supported: 2, 3)"))),
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        // A metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
        // 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset).
        check_count(n_kv, 13, c.remaining(), "metadata entries")?;
        check_count(n_tensors, 32, c.remaining(), "tensors")?;

        let mut metadata = Vec::with_capacity(n_kv.min(64) as usize);
        let mut meta_by_key = HashMap::with_capacity(n_kv.min(64) as usize);
        for i in 0..n_kv {
            let at = c.pos();
            let key = c
                .string(MAX_KEY_LEN, "metadata key")
                .map_err(|e| e.context(format!("metadata entry {i}")))?;
            let ty = ValueType::from_id(c.u32("metadata value type")?)
                .map_err(|e| e.context(format!("metadata {key:?} at offset {at}")))?;
            let start = c.pos();
            let value = c.value(ty, 0).map_err(|e| e.context(format!("metadata {key:?}")))?;
            let slot = match value {
                Value::String(s) => Slot::String(c.pos() - s.len()..c.pos()),
                Value::Array(a) => {
                    Slot::Array { elem: a.elem, len: a.len, bytes: c.pos() - a.bytes.len()..c.pos() }
                }
                v => Slot::Scalar(ScalarValue(scalar_static(v))),
            };
            debug_assert!(start <= c.pos());
            if meta_by_key.insert(key.to_string(), metadata.len()).is_some() {
                return Err(Error::format(format!("duplicate metadata key {key:?}")));
            }
            metadata.push((key.to_string(), slot));
        }

        let alignment = match meta_by_key.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => match &metadata[i].1 {
                Slot::Scalar(ScalarValue(Value::U32(a))) => *a as u64,
                _ => return Err(Error::format("general.alignment must be a u32")),
            },
        };
        if alignment == 0 || !alignment.is_power_of_two() || alignment > MAX_ALIGNMENT {
            return Err(Error::format(format!(
                "general.alignment is {alignment}; it must be a power of two no larger than {MAX_ALIGNMENT}"
            )));
        }

        let mut tensors = Vec::with_capacity(n_tensors.min(64) as usize);
        let mut tensor_by_name = HashMap::with_capacity(n_tensors.min(64) as usize);
        for i in 0..n_tensors {
            let t = tensor_info(&mut c).map_err(|e| e.context(format!("tensor {i}")))?;
            if t.offset % alignment != 0 {
                return Err(Error::format(format!(
                    "tensor {:?} offset {} is not a multiple of the alignment {alignment}",
                    t.name, t.offset
                )));
            }
            if tensor_by_name.insert(t.name.clone(), tensors.len()).is_some() {
                return Err(Error::format(format!("duplicate tensor name {:?}", t.name)));
            }
            tensors.push(t);
        }

        let file_len = bytes.len() as u64;
        let data_offset = (c.pos() as u64).next_multiple_of(alignment);
        if !tensors.is_empty() && data_offset > file_len {
            return Err(Error::format(format!(
                "truncated: the data section would start at {data_offset}, past the end of the file ({file_len} bytes)"
            )));
        }
        check_tensor_extents(&tensors, data_offset, file_len)?;

        Ok(Index { version, alignment, metadata, meta_by_key, tensors, tensor_by_name, data_offset })
    }
}

fn check_count(n: u64, min_size: u64, remaining: usize, what: &str) -> Result<()> {
    if n > MAX_ENTRIES || n > remaining as u64 / min_size {
        return Err(Error::format(format!(
            "header claims {n} {what}, which cannot fit in the {remaining} bytes that follow (limit {MAX_ENTRIES})"
        )));
    }
    Ok(())
}

fn scalar_static(v: Value<'_>) -> Value<'static> {
    match v {
        Value::U8(x) => Value::U8(x),
        Value::I8(x) => Value::I8(x),
        Value::U16(x) => Value::U16(x),
        Value::I16(x) => Value::I16(x),
        Value::U32(x) => Value::U32(x),
        Value::I32(x) => Value::I32(x),
        Value::F32(x) => Value::F32(x),
        Value::Bool(x) => Value::Bool(x),
        Value::U64(x) => Value::U64(x),
        Value::I64(x) => Value::I64(x),
        Value::F64(x) => Value::F64(x),
        // Strings and arrays are stored as ranges by the caller, never here.
        Value::String(_) | Value::Array(_) => Value::Bool(false),
    }
}

fn tensor_info(c: &mut Cursor<'_>) -> Result<TensorInfo> {
    let name = c.string(MAX_KEY_LEN, "tensor name")?.to_string();
    let ctx = |e: Error| e.context(format!("tensor {name:?}"));
    let n_dims = c.u32("tensor dimension count").map_err(ctx)?;
    if n_dims == 0 || n_dims as usize > MAX_DIMS {
        return Err(ctx(Error::format(format!("has {n_dims} dimensions; 1 to {MAX_DIMS} are allowed"))));
    }
    let mut dims = [1u64; MAX_DIMS];
    let mut n_elements: u64 = 1;
    for d in dims.iter_mut().take(n_dims as usize) {
        *d = c.u64("tensor dimension").map_err(ctx)?;
        if *d == 0 {
            return Err(ctx(Error::format("has a zero dimension")));
        }
        n_elements = n_elements
            .checked_mul(*d)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| ctx(Error::format("dimensions' product overflows")))?;
    }
    let ty = GgmlType::from_id(c.u32("tensor type").map_err(ctx)?).map_err(ctx)?;
    let offset = c.u64("tensor offset").map_err(ctx)?;
    let bs = ty.block_size() as u64;
    if dims[0] % bs != 0 {
        return Err(ctx(Error::format(format!(
            "first dimension {} is not a multiple of the {} block size {bs}",
            dims[0], ty
        ))));
    }
    let n_bytes = (n_elements / bs)
        .checked_mul(ty.type_size() as u64)
        .ok_or_else(|| ctx(Error::format("byte size overflows")))?;
    Ok(TensorInfo { name, ty, dims, n_dims: n_dims as usize, offset, n_elements, n_bytes })
}

fn check_tensor_extents(tensors: &[TensorInfo], data_offset: u64, file_len: u64) -> Result<()> {
    let data_len = file_len.saturating_sub(data_offset);
    for t in tensors {
        let end = t.offset.checked_add(t.n_bytes);
        if end.is_none_or(|e| e > data_len) {
            return Err(Error::format(format!(
                "tensor {:?} ({} bytes at data offset {}) extends past the end of the file (data section holds {data_len} bytes)",
                t.name, t.n_bytes, t.offset
            )));
        }
    }
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        if pair[0].offset + pair[0].n_bytes > pair[1].offset {
            return Err(Error::format(format!(
                "tensors {:?} and {:?} overlap (bytes {}..{} and {}..)",
                pair[0].name,
                pair[1].name,
                pair[0].offset,
                pair[0].offset + pair[0].n_bytes,
                pair[1].offset
            )));
        }
    }
    Ok(())
}
