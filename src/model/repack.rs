//! Row-interleaved copies of a model's Q5_0 and Q8_0 matrices, which the batched mat-vecs read
//! instead of the GGUF layout on kernel tables where that measured faster.
//!
//! The records (see [`crate::quant::interleaved`]) give bitwise the same results as the mapped
//! blocks, so a pass may read either: the token embeddings, a head cut at a row count that is not
//! a multiple of 8, and tables without fast interleaved kernels keep reading the map.
//! The copies live in a sidecar file next to the model (`MODEL.gguf.edgespec-x8`), written once
//! and memory-mapped afterwards, so loading stays O(metadata) and the copies are file pages like
//! the model's own; in memory when the model has no path or the sidecar cannot be written (see
//! docs/decisions.md for the measurements behind the choice).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::kernels::{InterleavedData, WeightMatrix};
use crate::quant::interleaved::interleave;
use crate::quant::{as_blocks, blocks_as_bytes, Block, BlockQ5_0x8, BlockQ8_0x8, GgmlType, ROWS_X8};

use super::weights::Mat;

/// Suffix of the sidecar file next to a model (`model.gguf.edgespec-x8`).
pub const SIDECAR_SUFFIX: &str = ".edgespec-x8";
/// Sidecar format tag and version.
const MAGIC: [u8; 8] = *b"ESX8\0\0\0\x01";
/// Header: magic, model length, identity (32), entry count, reserved.
const HEADER: usize = 64;
/// Entry: tensor index, kind (5 = Q5_0, 8 = Q8_0), offset, bytes; all u64.
const ENTRY: usize = 32;

/// The interleaved records of one matrix.
#[derive(Debug)]
enum Store {
    Q5_0(Vec<BlockQ5_0x8>),
    Q8_0(Vec<BlockQ8_0x8>),
    /// Bytes `range` of the sidecar map.
    Mapped {
        ty: GgmlType,
        range: Range<usize>,
    },
}

/// Interleaved copies by tensor index, in memory or in a memory-mapped sidecar file.
#[derive(Debug, Default)]
pub(crate) struct Repacked {
    by_tensor: HashMap<usize, Store>,
    map: Option<memmap2::Mmap>,
    sidecar: Option<PathBuf>,
}

/// A matrix to interleave.
#[derive(Clone, Copy, Debug)]
struct Job {
    tensor: usize,
    ty: GgmlType,
    rows: usize,
    nb: usize,
}

impl Job {
    fn bytes(&self) -> usize {
        let rec = match self.ty {
            GgmlType::Q5_0 => std::mem::size_of::<BlockQ5_0x8>(),
            _ => std::mem::size_of::<BlockQ8_0x8>(),
        };
        self.rows / ROWS_X8 * self.nb * rec
    }
}

/// The eligible matrices of `mats` (Q5_0 or Q8_0, rows a multiple of 8), each tensor once, in
/// tensor order.
fn jobs(file: &GgufFile, mats: &[&Mat]) -> Vec<Job> {
    let mut v: Vec<Job> = Vec::new();
    for m in mats {
        let ty = file.tensors().get(m.tensor()).map(|t| t.ty);
        if let Some(ty @ (GgmlType::Q5_0 | GgmlType::Q8_0)) = ty {
            if m.rows.is_multiple_of(ROWS_X8) && !v.iter().any(|j| j.tensor == m.tensor()) {
                v.push(Job { tensor: m.tensor(), ty, rows: m.rows, nb: m.n / 32 });
            }
        }
    }
    v.sort_by_key(|j| j.tensor);
    v
}

/// The records of `job`, interleaved from the mapped blocks.
fn records(file: &GgufFile, job: &Job) -> Result<Store> {
    let info = file.tensors().get(job.tensor).ok_or_else(|| Error::internal("tensor index"))?;
    let data = file.tensor_data(info);
    Ok(match job.ty {
        GgmlType::Q5_0 => Store::Q5_0(interleave(as_blocks(data)?, job.rows, job.nb)?),
        _ => Store::Q8_0(interleave(as_blocks(data)?, job.rows, job.nb)?),
    })
}

fn align64(v: usize) -> usize {
    v.div_ceil(64) * 64
}

/// What ties a sidecar to its model: the model's length and modification time, its header,
/// metadata and tensor table, the first and last 4 KiB of every interleaved tensor, and the list
/// of jobs. (Hashing all of it would cost as much as interleaving again; a model rewritten in
/// place changes its modification time.)
fn identity(file: &GgufFile, modified: Option<std::time::SystemTime>, jobs: &[Job]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(file.len().to_le_bytes());
    let nanos =
        modified.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    h.update(nanos.to_le_bytes());
    let head = (file.data_offset() as usize).min(file.bytes().len());
    h.update(&file.bytes()[..head]);
    for j in jobs {
        h.update((j.tensor as u64).to_le_bytes());
        if let Some(info) = file.tensors().get(j.tensor) {
            let data = file.tensor_data(info);
            let k = data.len().min(4096);
            h.update(&data[..k]);
            h.update(&data[data.len() - k..]);
        }
    }
    h.finalize().into()
}

fn kind_code(ty: GgmlType) -> u64 {
    match ty {
        GgmlType::Q5_0 => 5,
        _ => 8,
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl Repacked {
    /// Nothing interleaved: every matrix reads the map.
    pub fn none() -> Repacked {
        Repacked::default()
    }

    /// Interleave every eligible matrix of `mats` (each tensor once), in memory.
    pub fn build(file: &GgufFile, mats: &[&Mat]) -> Result<Repacked> {
        let mut by_tensor = HashMap::new();
        for job in jobs(file, mats) {
            by_tensor.insert(job.tensor, records(file, &job)?);
        }
        Ok(Repacked { by_tensor, map: None, sidecar: None })
    }

    /// The interleaved copies from the sidecar next to `file`'s path (written first if it is
    /// missing or belongs to another version of the file), memory-mapped: loading stays
    /// O(metadata) after the first time and the copies are file pages the OS can drop, like the
    /// model's own. In memory when the file has no path or the sidecar cannot be written.
    pub fn open_or_write(file: &GgufFile, mats: &[&Mat]) -> Result<Repacked> {
        let Some(path) = file.path() else { return Repacked::build(file, mats) };
        let jobs = jobs(file, mats);
        if jobs.is_empty() {
            return Ok(Repacked::none());
        }
        let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
        let id = identity(file, modified, &jobs);
        let side = sidecar_path(path);
        if let Ok(r) = Repacked::open(&side, file, &id, &jobs) {
            return Ok(r);
        }
        if Repacked::write(&side, file, &id, &jobs).is_ok() {
            if let Ok(r) = Repacked::open(&side, file, &id, &jobs) {
                return Ok(r);
            }
        }
        Repacked::build(file, mats)
    }

    /// Map `side` and check it against `id` and `jobs`.
    fn open(side: &Path, file: &GgufFile, id: &[u8; 32], jobs: &[Job]) -> Result<Repacked> {
        let f = File::open(side).map_err(|e| Error::io(format!("cannot open {}", side.display()), e))?;
        // SAFETY: read-only, private map; sidecars are written under a temporary name and renamed
        // into place, never modified in place (the same stance as the model's own map).
        let map = unsafe { memmap2::Mmap::map(&f) }
            .map_err(|e| Error::io(format!("cannot map {}", side.display()), e))?;
        let bad = || Error::format(format!("{} does not match the model", side.display()));
        let b: &[u8] = &map;
        if b.get(..8) != Some(&MAGIC[..])
            || u64_at(b, 8) != Some(file.len())
            || b.get(16..48) != Some(&id[..])
            || u64_at(b, 48) != Some(jobs.len() as u64)
        {
            return Err(bad());
        }
        let mut by_tensor = HashMap::new();
        for (k, job) in jobs.iter().enumerate() {
            let e = HEADER + ENTRY * k;
            let (tensor, kind, off, len) =
                (u64_at(b, e), u64_at(b, e + 8), u64_at(b, e + 16), u64_at(b, e + 24));
            let (Some(tensor), Some(kind), Some(off), Some(len)) = (tensor, kind, off, len) else {
                return Err(bad());
            };
            let (off, len) = (off as usize, len as usize);
            if tensor != job.tensor as u64
                || kind != kind_code(job.ty)
                || len != job.bytes()
                || !off.is_multiple_of(64)
                || off.checked_add(len).is_none_or(|end| end > b.len())
            {
                return Err(bad());
            }
            by_tensor.insert(job.tensor, Store::Mapped { ty: job.ty, range: off..off + len });
        }
        Ok(Repacked { by_tensor, map: Some(map), sidecar: Some(side.to_path_buf()) })
    }

    /// Write the sidecar for `jobs` under a temporary name, then rename it into place.
    fn write(side: &Path, file: &GgufFile, id: &[u8; 32], jobs: &[Job]) -> Result<()> {
        // Unique per process and call: two loads of one model (threads of one process
        // included) each write a whole file of their own; the last rename wins, every version
        // complete.
        static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let nth = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp = side.as_os_str().to_os_string();
        tmp.push(format!(".tmp{}-{nth}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let io = |e| Error::io(format!("cannot write {}", tmp.display()), e);
        let result = (|| -> Result<()> {
            let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io)?);
            let mut head = vec![0u8; align64(HEADER + ENTRY * jobs.len())];
            head[..8].copy_from_slice(&MAGIC);
            head[8..16].copy_from_slice(&file.len().to_le_bytes());
            head[16..48].copy_from_slice(id);
            head[48..56].copy_from_slice(&(jobs.len() as u64).to_le_bytes());
            let mut off = head.len();
            for (k, job) in jobs.iter().enumerate() {
                let e = HEADER + ENTRY * k;
                let fields = [job.tensor as u64, kind_code(job.ty), off as u64, job.bytes() as u64];
                for (i, v) in fields.iter().enumerate() {
                    head[e + 8 * i..e + 8 * i + 8].copy_from_slice(&v.to_le_bytes());
                }
                off = align64(off + job.bytes());
            }
            w.write_all(&head).map_err(io)?;
            let mut at = head.len();
            for job in jobs {
                let bytes = match records(file, job)? {
                    Store::Q5_0(v) => blocks_as_bytes(&v).to_vec(),
                    Store::Q8_0(v) => blocks_as_bytes(&v).to_vec(),
                    Store::Mapped { .. } => return Err(Error::internal("records are in memory")),
                };
                w.write_all(&bytes).map_err(io)?;
                at += bytes.len();
                let pad = align64(at) - at;
                w.write_all(&[0u8; 64][..pad]).map_err(io)?;
                at += pad;
            }
            w.flush().map_err(io)?;
            Ok(())
        })();
        match result {
            Ok(()) => fs::rename(&tmp, side).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                Error::io(format!("cannot rename {} into place", tmp.display()), e)
            }),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Number of interleaved matrices.
    pub fn len(&self) -> usize {
        self.by_tensor.len()
    }

    /// The sidecar the copies are mapped from, if any.
    pub fn sidecar(&self) -> Option<&Path> {
        self.sidecar.as_deref()
    }

    /// Bytes held by the interleaved copies.
    pub fn bytes(&self) -> usize {
        self.by_tensor
            .values()
            .map(|s| match s {
                Store::Q5_0(v) => std::mem::size_of_val(v.as_slice()),
                Store::Q8_0(v) => std::mem::size_of_val(v.as_slice()),
                Store::Mapped { range, .. } => range.len(),
            })
            .sum()
    }

    /// The first `rows` rows of `m` interleaved, if it has that form and `rows` is whole groups.
    pub fn mat(&self, m: &Mat, rows: usize) -> Option<Result<WeightMatrix<'_>>> {
        if !rows.is_multiple_of(ROWS_X8) || rows == 0 || rows > m.rows {
            return None;
        }
        let records = rows / ROWS_X8 * (m.n / 32);
        fn cut<T: Block>(v: &[T], n: usize) -> Result<&[T]> {
            v.get(..n).ok_or_else(|| Error::internal("interleaved copy shorter than its matrix"))
        }
        let data = match self.by_tensor.get(&m.tensor())? {
            Store::Q5_0(v) => cut(v, records).map(InterleavedData::Q5_0),
            Store::Q8_0(v) => cut(v, records).map(InterleavedData::Q8_0),
            Store::Mapped { ty, range } => {
                let bytes = self.map.as_ref().and_then(|map| map.get(range.clone()));
                match (bytes, ty) {
                    (None, _) => Err(Error::internal("sidecar range outside its map")),
                    (Some(b), GgmlType::Q5_0) => {
                        as_blocks(b).and_then(|v| cut(v, records)).map(InterleavedData::Q5_0)
                    }
                    (Some(b), _) => as_blocks(b).and_then(|v| cut(v, records)).map(InterleavedData::Q8_0),
                }
            }
        };
        Some(data.and_then(|d| WeightMatrix::interleaved(d, rows, m.n)))
    }
}

/// The sidecar path for the model at `model`.
pub fn sidecar_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_os_string();
    name.push(SIDECAR_SUFFIX);
    PathBuf::from(name)
}
