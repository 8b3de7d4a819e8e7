//! Gemma 3 choices that the GGUF metadata makes, read as llama.cpp reads them: final-logit
//! soft-capping only when `final_logit_softcapping` is set (Gemma 3 270M's file has none, and
//! llama.cpp then applies none), and the local layers' RoPE base from `rope.freq_base_swa` with
//! 10 000 as the default (llama.cpp's `rope_freq_base_train_swa`).

mod common;

use std::sync::Arc;

use common::*;
use edgespec::gguf::{GgufFile, GgufWriter};
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::model::{ForwardPlan, KvType, LogitRows, Model};

fn load(w: GgufWriter) -> Model {
    Model::from_file(Arc::new(GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap())).unwrap()
}

/// Logits of every position of 12 tokens, in one pass.
fn logits(model: &Model) -> Vec<f32> {
    let toks = tokens(12, model.config().vocab_size, 4);
    let (mut ws, mut cache) = session(model, 2, 32, KvType::F16);
    model.forward(&mut ws, &mut cache, &toks, &ForwardPlan::at(0).logits(LogitRows::All)).unwrap().to_vec()
}

#[test]
fn final_logits_are_soft_capped_when_the_metadata_says_so() {
    let spec = SyntheticSpec::gemma3(41);
    let plain = load(synthetic::writer(&spec).unwrap());
    assert_eq!(plain.config().final_logit_softcap, None);
    let raw = logits(&plain);
    let cap = 0.05f32;
    let mut w = synthetic::writer(&spec).unwrap();
    w.kv("gemma3.final_logit_softcapping", cap);
    let capped = load(w);
    assert_eq!(capped.config().final_logit_softcap, Some(cap));
    let got = logits(&capped);
    let want: Vec<f32> = raw.iter().map(|&v| cap * (v / cap).tanh()).collect();
    assert_eq!(bits(&got), bits(&want));
    assert!(raw.iter().any(|v| v.abs() > cap), "the cap must bite somewhere for the test to mean anything");
    assert!(got.iter().all(|v| v.abs() <= cap));
    // Zero means off, as in llama.cpp.
    let mut w = synthetic::writer(&spec).unwrap();
    w.kv("gemma3.final_logit_softcapping", 0.0f32);
    assert_eq!(bits(&logits(&load(w))), bits(&raw));
}

#[test]
fn local_rope_base_defaults_to_ten_thousand_and_follows_the_metadata() {
    let spec = SyntheticSpec::gemma3(42);
    let default = logits(&load(synthetic::writer(&spec).unwrap()));
    let mut w = synthetic::writer(&spec).unwrap();
    w.kv("gemma3.rope.freq_base_swa", 10_000.0f32);
    assert_eq!(bits(&logits(&load(w))), bits(&default), "10 000 is the default");
    let mut w = synthetic::writer(&spec).unwrap();
    w.kv("gemma3.rope.freq_base_swa", 500.0f32);
    let other = load(w);
    assert_eq!(other.config().rope_base_swa, Some(500.0));
    assert_ne!(bits(&logits(&other)), bits(&default), "the local base changes the local layers");
}
