//! HTTP GETs for the catalog: a small JSON document, or a large file streamed to disk while it is
//! hashed, so a 250 MB model never sits in memory and its checksum costs no second read.
//!
//! Every failure on the wire is an [`ErrorKind::Network`] error that names the URL; failures writing
//! the local file are I/O errors that name the file. Loopback URLs (the tests' fake index) never go
//! through an `HTTPS_PROXY` from the environment, which ureq 2 would otherwise use for every host.

use std::io::{Read, Write};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::cache::hex;
use super::progress::Progress;
use crate::error::{Error, ErrorKind, Result};

/// Largest JSON document we accept (PyPI's answer for a package is tens of kB).
const MAX_JSON_BYTES: u64 = 32 << 20;

/// Read buffer for downloads.
const CHUNK: usize = 256 << 10;

/// An HTTP client with sane timeouts.
pub(crate) struct Http {
    proxied: ureq::Agent,
    direct: ureq::Agent,
}

impl Http {
    pub(crate) fn new() -> Http {
        let builder = || {
            ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(30))
                // Per read, not for the whole body: a slow but live download is fine.
                .timeout_read(Duration::from_secs(60))
                .user_agent(concat!("edgespec/", env!("CARGO_PKG_VERSION")))
        };
        Http { proxied: builder().try_proxy_from_env(true).build(), direct: builder().build() }
    }

    fn agent(&self, url: &str) -> &ureq::Agent {
        if is_loopback(url) {
            &self.direct
        } else {
            &self.proxied
        }
    }

    /// Start a GET and check the status.
    fn get(&self, url: &str) -> Result<ureq::Response> {
        self.agent(url).get(url).call().map_err(|e| match e {
            ureq::Error::Status(code, resp) => Error::new(
                ErrorKind::Network,
                format!("GET {url} answered HTTP {code} {}", resp.status_text()),
            ),
            ureq::Error::Transport(t) => {
                // Transport's Display repeats the URL; say it once.
                let detail = t.message().map(|m| format!(": {m}")).unwrap_or_default();
                Error::new(ErrorKind::Network, format!("GET {url} failed: {}{detail}", t.kind()))
                    .with_source(t)
            }
        })
    }

    /// GET a JSON document.
    pub(crate) fn get_json(&self, url: &str) -> Result<serde_json::Value> {
        let resp = self.get(url)?;
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_JSON_BYTES)
            .read_to_end(&mut body)
            .map_err(|e| Error::new(ErrorKind::Network, format!("reading {url}: {e}")).with_source(e))?;
        serde_json::from_slice(&body).map_err(|e| Error::format(format!("{url} is not valid JSON: {e}")))
    }

    /// Stream `url` into `out`, hashing it, and check its length against `expected_len` (if known)
    /// and the Content-Length header. Returns the sha256 (lowercase hex). `out` is flushed.
    pub(crate) fn download(
        &self,
        url: &str,
        expected_len: Option<u64>,
        out: &mut dyn Write,
        out_name: &str,
        progress: &mut Progress,
    ) -> Result<String> {
        let resp = self.get(url)?;
        let header_len = resp.header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(h), Some(e)) = (header_len, expected_len) {
            if h != e {
                return Err(Error::new(
                    ErrorKind::Network,
                    format!("GET {url}: the server sends {h} bytes but the index says {e}"),
                ));
            }
        }
        let total = expected_len.or(header_len);
        let mut reader = resp.into_reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut len = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::Network,
                        format!("download of {url} broke off after {len} bytes: {e}"),
                    )
                    .with_source(e))
                }
            };
            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
            hasher.update(chunk);
            out.write_all(chunk).map_err(|e| Error::io(format!("writing {out_name}"), e))?;
            len += n as u64;
            if let Some(t) = total.filter(|&t| len > t) {
                return Err(Error::new(
                    ErrorKind::Network,
                    format!("GET {url} sent more than the expected {t} bytes"),
                ));
            }
            progress.update(len);
        }
        out.flush().map_err(|e| Error::io(format!("writing {out_name}"), e))?;
        progress.finish();
        if let Some(t) = total {
            if len != t {
                return Err(Error::new(
                    ErrorKind::Network,
                    format!("download of {url} ended after {len} of {t} bytes; run the pull again"),
                ));
            }
        }
        Ok(hex(&hasher.finalize()))
    }
}

/// Whether `url`'s host is `localhost` or a loopback address.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:8080/pypi/x/json"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:9/x"));
        assert!(is_loopback("http://user@127.0.0.2/x"));
        assert!(!is_loopback("https://pypi.org/pypi/x/json"));
        assert!(!is_loopback("https://files.pythonhosted.org/packages/a.whl"));
        assert!(!is_loopback("http://127.0.0.1.example.com/x"));
    }
}
