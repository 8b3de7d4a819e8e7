//! Writing GGUF files (version 3): tests build tiny random models of any architecture and quant
//! type with it, and tools (a future `quantize`) write real ones.

use std::io::Write;
use std::path::Path;

use super::value::{MetaValue, ValueType};
use super::{GGUF_MAGIC, MAX_DIMS};
use crate::error::{Error, Result};
use crate::quant::GgmlType;

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory: metadata in insertion order, then tensors laid out at aligned
/// offsets in insertion order.
pub struct GgufWriter {
    alignment: u64,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty file with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter { alignment: super::DEFAULT_ALIGNMENT, metadata: Vec::new(), tensors: Vec::new() }
    }

    /// Set `general.alignment` (a power of two). The key is written only if it differs from 32.
    pub fn alignment(mut self, alignment: u32) -> Result<Self> {
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(Error::invalid(format!("alignment {alignment} is not a power of two")));
        }
        self.alignment = alignment as u64;
        Ok(self)
    }

    /// Add (or replace) a metadata entry.
    pub fn kv(&mut self, key: &str, value: impl Into<MetaValue>) -> &mut Self {
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// Add a tensor with GGML dimensions `dims` (innermost first) and its encoded bytes.
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> Result<&mut Self> {
        if dims.is_empty() || dims.len() > MAX_DIMS || dims.contains(&0) {
            return Err(Error::invalid(format!("tensor {name:?}: bad dimensions {dims:?}")));
        }
        let n: u64 = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::invalid(format!("tensor {name:?}: dimensions {dims:?} overflow")))?;
        let row = ty.row_bytes(dims[0]).ok_or_else(|| {
            Error::invalid(format!("tensor {name:?}: {} is not a multiple of the {ty} block size", dims[0]))
        })?;
        let expected = row * (n / dims[0]);
        if data.len() as u64 != expected {
            return Err(Error::invalid(format!(
                "tensor {name:?}: {} bytes given, {expected} expected for {ty} {dims:?}",
                data.len()
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(Error::invalid(format!("tensor {name:?} added twice")));
        }
        self.tensors.push(PendingTensor { name: name.to_string(), dims: dims.to_vec(), ty, data });
        Ok(self)
    }

    /// Add an f32 tensor from values.
    pub fn tensor_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) -> Result<&mut Self> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, GgmlType::F32, data)
    }

    /// Encode the whole file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        put_u32(&mut out, GGUF_MAGIC);
        put_u32(&mut out, 3);
        put_u64(&mut out, self.tensors.len() as u64);
        let write_alignment = self.alignment != super::DEFAULT_ALIGNMENT
            && !self.metadata.iter().any(|(k, _)| k == "general.alignment");
        put_u64(&mut out, self.metadata.len() as u64 + write_alignment as u64);
        if write_alignment {
            put_str(&mut out, "general.alignment");
            put_u32(&mut out, ValueType::U32 as u32);
            put_u32(&mut out, self.alignment as u32);
        }
        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            put_u32(&mut out, value.value_type() as u32);
            put_value(&mut out, value)?;
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            put_u32(&mut out, t.dims.len() as u32);
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, t.ty.id());
            put_u64(&mut out, offset);
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).next_multiple_of(self.alignment);
        }
        pad_to(&mut out, self.alignment);
        let data_start = out.len() as u64;
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend_from_slice(&t.data);
        }
        if !self.tensors.is_empty() {
            pad_to(&mut out, self.alignment);
        }
        Ok(out)
    }

    /// Write the file to `path` (through a temporary file and a rename, so readers never see a
    /// partial file).
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        let tmp = path.with_extension("gguf.partial");
        let mut f = std::fs::File::create(&tmp)
            .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
        f.write_all(&bytes).map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
        f.sync_all().map_err(|e| Error::io(format!("cannot sync {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("cannot rename to {}", path.display()), e))
    }
}

fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let len = (out.len() as u64).next_multiple_of(alignment) as usize;
    out.resize(len, 0);
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) -> Result<()> {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => put_u32(out, *x),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(*x as u8),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::U64(x) => put_u64(out, *x),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Array(elem, items) => {
            put_u32(out, *elem as u32);
            put_u64(out, items.len() as u64);
            for item in items {
                if item.value_type() != *elem {
                    return Err(Error::invalid(format!(
                        "array of {} holds a {}",
                        elem.name(),
                        item.value_type().name()
                    )));
                }
                put_value(out, item)?;
            }
        }
    }
    Ok(())
}
