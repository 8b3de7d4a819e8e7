//! GGUF files: a bounds-checked reader over a memory map, and a writer for tests and tools.
//!
//! Opening a model maps the file and walks its header, metadata and tensor table once; tensor data
//! is never read or copied at open. Weights are handed out as `&[u8]` borrowed from the map, which
//! the kernels reinterpret as block slices. Opening is therefore O(metadata), not O(file size), and
//! the resident memory of a loaded model is whatever pages the forward pass touches.
//!
//! Format (little-endian, versions 2 and 3): magic `GGUF`, version u32, tensor count u64, metadata
//! count u64; metadata entries (key string, type u32, value); tensor infos (name, n_dims u32, dims
//! u64 × n_dims innermost first, type u32, offset u64 relative to the data section); padding to
//! `general.alignment` (default 32); the data section. Strings are a u64 length and UTF-8 bytes.
//!
//! We do not use the `gguf` crate named in the design card: see `docs/decisions.md`.

mod reader;
mod value;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use reader::{TensorInfo, DEFAULT_ALIGNMENT, MAX_KEY_LEN};
pub use value::{ArrayIter, ArrayView, MetaValue, Value, ValueType, MAX_ARRAY_DEPTH, MAX_STRING_LEN};
pub use writer::GgufWriter;

use crate::error::{Error, Result};
use reader::{Index, ScalarValue, Slot};

/// `"GGUF"` read as a little-endian u32.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
/// Most dimensions a tensor may have (GGML's limit).
pub const MAX_DIMS: usize = 4;

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// An open GGUF file: the bytes (mapped or owned) and the parsed index over them.
pub struct GgufFile {
    bytes: Bytes,
    index: Index,
    path: Option<PathBuf>,
}

impl GgufFile {
    /// Map the file at `path` and parse its header, metadata and tensor table.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let len = file.metadata().map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?.len();
        if len == 0 {
            return Err(Error::format(format!("{} is empty, not a GGUF file", path.display())));
        }
        // SAFETY: the map is read-only and private to this process. Rust cannot rule out that
        // another process truncates or rewrites the file while it is mapped; like every mmap-based
        // model loader we accept that, and the cache writes new files by rename, never in place.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::io(format!("cannot map {}", path.display()), e))?;
        let index = Index::parse(&map).map_err(|e| e.context(path.display()))?;
        Ok(GgufFile { bytes: Bytes::Mapped(map), index, path: Some(path.to_path_buf()) })
    }

    /// Parse a GGUF file held in memory (tests, fuzzing, files received over an API).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        let index = Index::parse(&bytes)?;
        Ok(GgufFile { bytes: Bytes::Owned(bytes), index, path: None })
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }

    /// The path the file was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether the bytes are memory-mapped (true for [`GgufFile::open`]).
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(_))
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.index.version
    }

    /// The data alignment in bytes.
    pub fn alignment(&self) -> u64 {
        self.index.alignment
    }

    /// Offset of the data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.index.data_offset
    }

    /// The file size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// Whether the file is empty (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// Metadata keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.index.metadata.iter().map(|(k, _)| k.as_str())
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, Value<'_>)> {
        self.index.metadata.iter().map(|(k, slot)| (k.as_str(), self.resolve(slot)))
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<Value<'_>> {
        self.index.meta_by_key.get(key).map(|&i| self.resolve(&self.index.metadata[i].1))
    }

    /// The unsigned integer under `key` (any integer type). `Ok(None)` when absent; a `Format`
    /// error when present with another type.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "a non-negative integer", |v| v.as_u64())
    }

    /// The float under `key` (any numeric type).
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a number", |v| v.as_f64().map(|f| f as f32))
    }

    /// The boolean under `key`.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a bool", |v| v.as_bool())
    }

    /// The string under `key`.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a string", |v| v.as_str())
    }

    /// The array under `key`.
    pub fn get_array(&self, key: &str) -> Result<Option<ArrayView<'_>>> {
        self.typed(key, "an array", |v| v.as_array())
    }

    fn typed<'s, T>(
        &'s self,
        key: &str,
        want: &str,
        f: impl Fn(&Value<'s>) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(&v).map(Some).ok_or_else(|| {
                Error::format(format!(
                    "metadata {key:?} should be {want}, found {} {v}",
                    v.value_type().name()
                ))
            }),
        }
    }

    fn resolve(&self, slot: &Slot) -> Value<'_> {
        let bytes = self.bytes();
        match slot {
            Slot::Scalar(ScalarValue(v)) => *v,
            // The parser checked these ranges and their UTF-8 against these same bytes.
            Slot::String(r) => Value::String(std::str::from_utf8(&bytes[r.clone()]).unwrap_or_default()),
            Slot::Array { elem, len, bytes: r } => {
                Value::Array(ArrayView { elem: *elem, len: *len, bytes: &bytes[r.clone()] })
            }
        }
    }

    /// The tensor table in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.index.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.tensor_by_name.get(name).map(|&i| &self.index.tensors[i])
    }

    /// The tensor named `name`, or a `NotFound` error naming it.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name)
            .ok_or_else(|| Error::not_found(format!("tensor {name:?} is missing from the model")))
    }

    /// A tensor's bytes, borrowed from the file (no copy). The parser checked that they lie
    /// inside the file.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.index.data_offset + info.offset) as usize;
        let end = start + info.n_bytes as usize;
        self.bytes().get(start..end).unwrap_or_default()
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.index.version)
            .field("metadata", &self.index.metadata.len())
            .field("tensors", &self.index.tensors.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
