//! Token-for-token parity with llama.cpp itself (linked by the `llama-cpp` feature): every corpus
//! string, with and without special-token parsing and BOS/EOS, for every catalog model. The
//! shared corpus (`tests/data/tokenizer_corpus.json`) is joined by a code corpus
//! (`tokenizer_corpus_code.json`: indentation runs, CRLF, tabs, numbers, CJK comments, emoji,
//! ChatML and fill-in-the-middle special tokens).
//!
//! Strings containing NUL are skipped: they cannot cross the C string boundary.
#![cfg(feature = "llama-cpp")]

use edgespec::catalog::resolve_model;

use edgespec::gguf::GgufFile;
use edgespec::reference::LlamaCppModel;
use edgespec::tokenizer::Tokenizer;

fn corpus() -> Vec<String> {
    let mut all = Vec::new();
    for file in ["tokenizer_corpus.json", "tokenizer_corpus_code.json"] {
        let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
        let part: Vec<String> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        all.extend(part);
    }
    all
}

fn check(name: &str) {
    let path = resolve_model(name).expect("pull the model");
    let ours = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    let reference = LlamaCppModel::load(&path, 1, 512).unwrap();
    let mut checked = 0;
    let mut bad = Vec::new();
    for text in corpus().iter().filter(|t| !t.contains('\0')) {
        for (add_special, parse_special) in [(false, false), (false, true), (true, true)] {
            let want = reference.tokenize(text, add_special, parse_special).unwrap();
            let got = ours.encode(text, add_special, parse_special);
            checked += 1;
            if got != want {
                bad.push(format!("{text:?} add_special={add_special} parse_special={parse_special}\n  ours      {got:?}\n  llama.cpp {want:?}"));
            }
        }
    }
    eprintln!("{}: {} of {checked} tokenizations match llama.cpp", path.display(), checked - bad.len());
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn smollm2_tokenizes_like_llama_cpp() {
    check("smollm2-135m");
}

#[test]
fn gemma3_tokenizes_like_llama_cpp() {
    check("gemma3-270m");
}

#[test]
fn qwen_coder_tokenizes_like_llama_cpp() {
    check("qwen2.5-coder-0.5b");
}
