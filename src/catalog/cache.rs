//! The model cache directory: where pulled models live, how a cached file is trusted, and the temporary
//! files that make every write atomic.
//!
//! Hashing a 250 MB model on every `run` would cost a noticeable fraction of a second, so a verified
//! file gets a `NAME.sha256` sidecar (in `sha256sum` format) written *after* it; a later pull trusts
//! the file when its size is right and the sidecar is at least as new as the file and names the
//! catalog's checksum. Anything else (no sidecar, a file modified after its sidecar, `--verify`) means
//! hashing it again. Everything is written under a hidden temporary name in the same directory and
//! renamed into place last, so a crash never leaves a file that looks finished.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::progress::Progress;
use super::ModelEntry;
use crate::error::{Error, Result};

/// Environment variable for the edgespec home directory; models live in its `models/` folder.
pub const HOME_ENV: &str = "EDGESPEC_HOME";

/// Suffix of the checksum sidecar next to a verified model.
pub(crate) const SIDECAR_SUFFIX: &str = ".sha256";

/// Where process liveness cannot be checked, temporary files idle this long belong to a dead pull.
const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// Where models are cached: `$EDGESPEC_HOME/models`, by default `~/.cache/edgespec/models`.
pub fn models_dir() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os(HOME_ENV).filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home).join("models"));
    }
    let user_home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::invalid(format!("cannot find a home directory; set {HOME_ENV}")))?;
    Ok(PathBuf::from(user_home).join(".cache").join("edgespec").join("models"))
}

/// What the cache holds for a model, judged without hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheState {
    /// No file of the right size.
    Missing,
    /// The right size, but not (or no longer) vouched for by its sidecar: the next pull hashes it.
    Unverified,
    /// The right size and a current sidecar with the catalog's sha256.
    Verified,
}

/// The state of `path` as a cached copy of `entry`.
pub(crate) fn state(entry: &ModelEntry, path: &Path) -> CacheState {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == entry.size => {
            if sidecar_vouches(path, &meta, &entry.sha256) {
                CacheState::Verified
            } else {
                CacheState::Unverified
            }
        }
        _ => CacheState::Missing,
    }
}

/// Path of the sidecar for `model`.
pub(crate) fn sidecar_path(model: &Path) -> PathBuf {
    let mut name = model.file_name().unwrap_or_default().to_os_string();
    name.push(SIDECAR_SUFFIX);
    model.with_file_name(name)
}

/// Whether the sidecar names `sha256` and is not older than the model file.
fn sidecar_vouches(model: &Path, model_meta: &fs::Metadata, sha256: &str) -> bool {
    let side = sidecar_path(model);
    let (Ok(text), Ok(side_meta)) = (fs::read_to_string(&side), fs::metadata(&side)) else {
        return false;
    };
    let names_hash = text.split_whitespace().next().is_some_and(|h| h.eq_ignore_ascii_case(sha256));
    let fresh = match (model_meta.modified(), side_meta.modified()) {
        (Ok(m), Ok(s)) => s >= m,
        _ => false,
    };
    names_hash && fresh
}

/// Record that `model` was verified to have `sha256` (atomically, like everything else).
pub(crate) fn write_sidecar(model: &Path, sha256: &str) -> Result<()> {
    let side = sidecar_path(model);
    let file_name = model.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let dir = model.parent().unwrap_or(Path::new("."));
    let mut tmp = TempFile::create(dir, &file_name, "sha256")?;
    io::Write::write_all(tmp.file()?, format!("{sha256}  {file_name}\n").as_bytes())
        .map_err(|e| Error::io(format!("writing {}", tmp.path().display()), e))?;
    tmp.persist(&side)
}

/// Remove a model and its sidecar (a missing file is not an error).
pub(crate) fn remove_cached(model: &Path) -> Result<()> {
    for p in [sidecar_path(model), model.to_path_buf()] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", p.display()), e)),
        }
    }
    Ok(())
}

/// sha256 of a file as lowercase hex, read in chunks (the model is never held in memory).
pub(crate) fn sha256_file(path: &Path, progress: &mut Progress) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
        hasher.update(chunk);
        done += n as u64;
        progress.update(done);
    }
    progress.finish();
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file under a hidden temporary name (`.FILE.PID-N.KIND.tmp`) next to its final place; removed on
/// drop unless [`TempFile::persist`] renamed it into place.
pub(crate) struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Create a new temporary file in `dir` for the final file `file_name`; `kind` tells pieces apart.
    pub(crate) fn create(dir: &Path, file_name: &str, kind: &str) -> Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{file_name}.{}-{n}.{kind}.tmp", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(TempFile { path, file: Some(file) })
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (read + write).
    pub(crate) fn file(&mut self) -> Result<&mut File> {
        // Only `persist`, which consumes self, takes the file out.
        self.file.as_mut().ok_or_else(|| Error::internal("temporary file already closed"))
    }

    /// Flush it to disk and rename it to `dest` (atomic on the same filesystem).
    pub(crate) fn persist(mut self, dest: &Path) -> Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))?;
        }
        fs::rename(&self.path, dest)
            .map_err(|e| Error::io(format!("renaming {} to {}", self.path.display(), dest.display()), e))?;
        // Renamed: nothing left for drop to remove.
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        drop(self.file.take());
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Remove temporary files of `file_name` that a killed pull left behind: on Linux those whose process
/// (the PID in the name) is gone, elsewhere those not written to for 30 minutes.
pub(crate) fn remove_stale_temps(dir: &Path, file_name: &str) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let prefix = format!(".{file_name}.");
    let proc_fs = Path::new("/proc/self").exists();
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(rest) = name.strip_prefix(&prefix).filter(|r| r.ends_with(".tmp")) else { continue };
        // rest = "PID-N.KIND.tmp"
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let stale = match pid {
            Some(pid) if pid == std::process::id() => false,
            Some(pid) if proc_fs => !Path::new(&format!("/proc/{pid}")).exists(),
            _ => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_AFTER),
        };
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}
