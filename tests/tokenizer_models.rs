//! Real-model tokenizer checks: SmolLM2 (byte-level BPE) and Gemma 3 (SentencePiece BPE) on the
//! shared corpus (`tests/data/tokenizer_corpus.json`), against golden tokenizations from
//! - llama.cpp itself (`tokenizer_llamacpp_<model>.json`, written by `tools/llamacpp_tokenize.cpp`
//!   linked against the llama.cpp that `llama-cpp-sys-2` 0.1.161 vendors), the reference we
//!   must match token for token, with and without BOS and special-token parsing;
//! - independent implementations (`tokenizer_expected_<model>.json`, written by
//!   `tools/tokenizer_reference.py`: Hugging Face `tokenizers` and Google's `sentencepiece` built
//!   from the same GGUF vocabularies), a cross-check of the algorithms.
//!
//! The models come from the catalog cache (pulled on first use; CI pulls them beforehand).

use std::path::PathBuf;

use edgespec::catalog::resolve_model;
use edgespec::gguf::GgufFile;
use edgespec::tokenizer::{TokenId, Tokenizer, TokenizerKind};

fn smollm2() -> PathBuf {
    resolve_model("smollm2-135m").expect("pull smollm2-135m")
}

fn gemma3() -> PathBuf {
    resolve_model("gemma3-270m").expect("pull gemma3-270m")
}

struct Case {
    text: String,
    add_special: bool,
    parse_special: bool,
    ids: Vec<TokenId>,
}

/// The cases of `tests/data/<file>.json`.
fn golden(file: &str) -> Vec<Case> {
    let path = format!("{}/tests/data/{file}.json", env!("CARGO_MANIFEST_DIR"));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            add_special: c["add_special"].as_bool().unwrap_or(false),
            parse_special: c["parse_special"].as_bool().unwrap(),
            ids: c["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as TokenId).collect(),
        })
        .collect()
}

/// Compare every golden case; also check that decoding (rendering special tokens) gives the
/// text back, where the vocabulary can spell it at all (SmolLM2 lacks a few byte tokens, such
/// as the one for U+001D, so neither implementation can encode those bytes).
///
/// `known` lists (text, parse_special) cases where llama.cpp, and so we, knowingly differ from
/// the reference; they are reported, not failed.
fn check_golden(tok: &Tokenizer, name: &str, known: &[(&str, bool)]) {
    let cases = golden(name);
    assert!(cases.len() > 100);
    let mut bad = Vec::new();
    let mut known_seen = 0;
    for c in &cases {
        let ids = tok.encode(&c.text, c.add_special, c.parse_special);
        if ids != c.ids && known.contains(&(c.text.as_str(), c.parse_special)) {
            eprintln!("{name}: known difference on {:?} (parse_special {})", c.text, c.parse_special);
            known_seen += 1;
        } else if ids != c.ids {
            bad.push(format!(
                "{:?} (add_special {}, parse_special {}):\n  ours {:?}\n  ref  {:?}",
                c.text, c.add_special, c.parse_special, ids, c.ids
            ));
        }
        if c.add_special {
            continue;
        }
        if tok.decode(&c.ids, true).unwrap() == c.text {
            assert_eq!(tok.decode(&ids, true).unwrap(), c.text, "round trip of {:?}", c.text);
        } else {
            eprintln!("{name}: the vocabulary cannot spell {:?}; no round trip", c.text);
        }
    }
    let matched = cases.len() - bad.len() - known_seen;
    eprintln!("{name}: {matched} of {} cases match ({known_seen} known differences)", cases.len());
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn smollm2_matches_reference_tokenizations() {
    let path = smollm2();
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    assert_eq!(tok.kind(), TokenizerKind::Bpe);
    assert_eq!(tok.pre_tokenizer_name(), "smollm");
    assert_eq!(tok.n_vocab(), 49152);
    check_golden(&tok, "tokenizer_expected_smollm2", &[]);
}

#[test]
fn smollm2_matches_llama_cpp_tokenizations() {
    let path = smollm2();
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    check_golden(&tok, "tokenizer_llamacpp_smollm2", &[]);
}

#[test]
fn smollm2_special_tokens_and_flags() {
    let path = smollm2();
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
    let path = gemma3();
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    assert_eq!(tok.kind(), TokenizerKind::Spm);
    assert_eq!(tok.n_vocab(), 262144);
    // llama.cpp counts "</s>" among the end-of-generation texts and so makes Gemma's
    // user-defined "</s>" a control token, which plain-text tokenization then spells out.
    let known = [("strike <s>this</s> out, and </s> alone", false)];
    check_golden(&tok, "tokenizer_expected_gemma3", &known);
}

#[test]
fn gemma3_matches_llama_cpp_tokenizations() {
    let path = gemma3();
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    check_golden(&tok, "tokenizer_llamacpp_gemma3", &[]);
}

#[test]
fn gemma3_special_tokens_and_flags() {
    let path = gemma3();
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    assert_eq!((tok.bos(), tok.eos()), (Some(2), Some(1)));
    assert!(tok.add_bos());
    let ids = tok.encode("Hello", true, false);
    assert_eq!(ids[0], 2);
    let eot = tok.token_id("<end_of_turn>").unwrap();
    assert!(tok.is_eog(eot) && tok.is_eog(1));
    assert_eq!(tok.eot(), Some(eot));
    // As in llama.cpp, the HTML tag "</s>" ends generation (see the known difference above).
    assert!(tok.is_eog(tok.token_id("</s>").unwrap()));
    // Byte fallback: a private-use character has no piece of its own.
    let ids = tok.encode("\u{e000}", false, false);
    assert_eq!(tok.decode(&ids, false).unwrap(), "\u{e000}");
}

#[test]
fn smollm2_chat_prompt_renders_and_tokenizes() {
    use edgespec::chat::{ChatTemplate, Message};
    let path = smollm2();
    let file = GgufFile::open(path).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let tmpl = ChatTemplate::from_gguf(&file).unwrap().expect("SmolLM2-Instruct has a chat template");
    assert_eq!((tmpl.bos_token(), tmpl.eos_token()), ("<|im_start|>", "<|im_end|>"));
    let prompt = tmpl.render(&[Message::user("What is 2+2?")], true).unwrap();
    assert!(prompt.starts_with("<|im_start|>system\n") && prompt.ends_with("<|im_start|>assistant\n"));
    let ids = tok.encode(&prompt, true, true);
    let im_start = tok.token_id("<|im_start|>").unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == im_start).count(), 3);
    assert_eq!(tok.decode(&ids, true).unwrap(), prompt);
}

#[test]
fn gemma3_base_model_has_no_chat_template() {
    let path = gemma3();
    let file = GgufFile::open(path).unwrap();
    assert!(edgespec::chat::ChatTemplate::from_gguf(&file).unwrap().is_none());
}
