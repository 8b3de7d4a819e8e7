//! The llama.cpp reference on the real SmolLM2-135M-Instruct Q4_1 model: tokenization round-trips,
//! greedy decoding is deterministic and readable, and teacher-forced logits agree with greedy.
//!
//! Run with `cargo test --features llama-cpp --test llama_cpp_reference -- --nocapture` to see the
//! tokens and text. The model comes from the catalog cache (pulled on first use).
#![cfg(feature = "llama-cpp")]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use edgespec::catalog::resolve_model;
use edgespec::reference::LlamaCppModel;
use edgespec::ErrorKind;

const PROMPT: &str = "The capital of France is";

fn model_path() -> PathBuf {
    resolve_model("smollm2-135m").expect("pull smollm2-135m")
}

/// Each llama.cpp context uses every core; two tests decoding at once oversubscribe the machine
/// and llama.cpp's threads then wait on each other. The tests take turns (the guard lives as
/// long as the model it came with).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn load() -> LlamaCppModel {
    let path = model_path();
    LlamaCppModel::load(&path, 2, 512).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn text(model: &LlamaCppModel, ids: &[u32]) -> String {
    String::from_utf8(model.detokenize(ids, false, false).unwrap()).unwrap()
}

fn pieces(model: &LlamaCppModel, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&id| String::from_utf8_lossy(&model.token_to_piece(id, true).unwrap()).into_owned())
        .collect()
}

/// The prompt as the parity tests will feed it: BOS first when the model asks for one.
fn prompt_ids(model: &LlamaCppModel) -> Vec<u32> {
    model.tokenize(PROMPT, true, false).unwrap()
}

#[test]
fn vocabulary_and_special_tokens() {
    let _turn = turn();
    let model = load();
    println!(
        "vocab {} bos {:?} eos {:?} adds_bos {} n_ctx {}",
        model.vocab_size(),
        model.bos(),
        model.eos(),
        model.adds_bos(),
        model.n_ctx()
    );
    let template = model.chat_template();
    println!("chat template: {:?}", template.as_deref().map(|t| t.chars().take(120).collect::<String>()));
    assert_eq!(model.vocab_size(), 49152, "SmolLM2's vocabulary");
    let eos = model.eos().expect("SmolLM2 has an EOS token");
    assert!(model.is_eog(eos));
    assert_eq!(model.token_to_piece(eos, true).unwrap(), b"<|im_end|>");
    assert!(template.is_some_and(|t| t.contains("<|im_start|>")), "SmolLM2 ships a ChatML template");
}

#[test]
fn tokenize_round_trips() {
    let _turn = turn();
    let model = load();
    let ids = model.tokenize(PROMPT, false, false).unwrap();
    println!("tokenize({PROMPT:?}) = {ids:?}");
    println!("pieces = {:?}", pieces(&model, &ids));
    assert!(
        !ids.is_empty() && ids.len() < PROMPT.len(),
        "BPE merges the prompt into fewer tokens than bytes"
    );
    assert_eq!(text(&model, &ids), PROMPT);
    let concatenated: String = pieces(&model, &ids).concat();
    assert_eq!(concatenated, PROMPT, "pieces concatenate to the text");

    let with_special = model.tokenize(PROMPT, true, false).unwrap();
    println!("with add_special: {with_special:?}");
    match model.bos().filter(|_| model.adds_bos()) {
        Some(bos) => assert_eq!(with_special, [&[bos][..], &ids].concat()),
        None => assert_eq!(with_special, ids),
    }

    // Special-token text is one token with parse_special and several without.
    let chat = "<|im_start|>user\nHi<|im_end|>";
    let parsed = model.tokenize(chat, false, true).unwrap();
    let plain = model.tokenize(chat, false, false).unwrap();
    println!("{chat:?}: parse_special {parsed:?}, plain {plain:?}");
    assert!(parsed.len() < plain.len());
    assert_eq!(String::from_utf8(model.detokenize(&parsed, false, true).unwrap()).unwrap(), chat);
}

#[test]
fn greedy_is_deterministic_and_agrees_with_teacher_forced_logits() {
    let _turn = turn();
    let model = load();
    let prompt = prompt_ids(&model);
    let n = 16;
    let first = model.greedy(&prompt, n).unwrap();
    let second = model.greedy(&prompt, n).unwrap();
    let continuation = text(&model, &first);
    println!("greedy({PROMPT:?}, {n}) = {first:?}");
    println!("text: {PROMPT}{continuation}");
    assert_eq!(first.len(), n);
    assert_eq!(first, second, "greedy decoding is deterministic");
    assert!(continuation.contains("Paris"), "a sensible continuation names Paris: {continuation:?}");

    // Teacher-forced: row p of logits_for(prompt ++ generated) predicts token p + 1.
    let all: Vec<u32> = prompt.iter().chain(&first[..n - 1]).copied().collect();
    let rows = model.logits_for(&all).unwrap();
    assert_eq!(rows.len(), all.len());
    assert!(rows.iter().all(|r| r.len() == model.vocab_size() && r.iter().all(|x| x.is_finite())));
    let mut margins = Vec::new();
    for (i, &expected) in first.iter().enumerate() {
        let row = &rows[prompt.len() - 1 + i];
        let (best, margin) = top_with_margin(row);
        margins.push(margin);
        assert_eq!(best, expected, "step {i}: teacher-forced argmax {best} vs greedy {expected}");
    }
    println!("top-1 minus top-2 logit per step: {margins:.3?}");
}

#[test]
fn inputs_longer_than_one_batch_agree_with_greedy() {
    let _turn = turn();
    let model = load();
    let sentence = model.tokenize(" The quick brown fox jumps over the lazy dog.", false, false).unwrap();
    let long: Vec<u32> = sentence.iter().cycle().take(300).copied().collect();
    let rows = model.logits_for(&long).unwrap();
    let next = model.greedy(&long, 1).unwrap();
    let (best, margin) = top_with_margin(&rows[long.len() - 1]);
    println!("300-token input: teacher-forced next {best} (margin {margin:.3}), greedy next {next:?}");
    assert_eq!(next, [best]);
    // Repeating text is copied: the model predicts the sentence's continuation after a few repeats.
    let expected = sentence[long.len() % sentence.len()];
    assert_eq!(best, expected, "induction on repeated text");
}

#[test]
fn bad_inputs_are_errors() {
    let _turn = turn();
    let model = load();
    let vocab = model.vocab_size() as u32;
    assert_eq!(model.token_to_piece(vocab, false).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(model.detokenize(&[1, vocab], false, false).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(model.logits_for(&[]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(model.logits_for(&[u32::MAX]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(model.greedy(&[1; 500], 13).unwrap_err().kind(), ErrorKind::ContextOverflow);
    assert_eq!(model.logits_for(&[1; 513]).unwrap_err().kind(), ErrorKind::ContextOverflow);
    assert!(model.detokenize(&[], true, false).unwrap().is_empty());
    assert!(!model.is_eog(vocab));
}

/// (argmax, top-1 minus top-2 logit).
fn top_with_margin(row: &[f32]) -> (u32, f32) {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    (order[0] as u32, row[order[0]] - row[order[1]])
}
