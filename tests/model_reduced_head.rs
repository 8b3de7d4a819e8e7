//! The reduced-vocabulary head ([`HeadVocab::Reduced`]) a drafter uses: for every id it computes
//! (the prefix `[0, V)` and the extra ids), the logit is bitwise the full head's, and every other
//! logit is `-inf`. Checked for several V and extra lists, batch sizes, skip plans and thread
//! counts on tiny random models (tied and untied heads) and on SmolLM2-135M.

mod common;

use common::*;
use edgespec::model::synthetic::SyntheticSpec;
use edgespec::model::{ForwardPlan, HeadVocab, KvType, LogitRows, Model, SkipSet, SubLayer};

/// Run `toks` once with the full head and once reduced to `prefix` ∪ `extra` (same plan
/// otherwise) and compare every row.
fn check(model: &Model, threads: usize, toks: &[u32], prefix: u32, extra: &[u32], skip: SkipSet) {
    let vocab = model.config().vocab_size;
    let (mut ws, mut cache) = session(model, threads, 64, KvType::F16);
    let context = tokens(9, vocab, 3);
    model.prefill(&mut ws, &mut cache, &context, 0, 4).unwrap();
    let plan = ForwardPlan::at(context.len()).logits(LogitRows::All).skip(skip);
    let full = model.forward(&mut ws, &mut cache, toks, &plan).unwrap().to_vec();
    ws.set_head_extra(extra).unwrap();
    let reduced_plan = plan.vocab(HeadVocab::Reduced { prefix });
    let reduced = model.forward(&mut ws, &mut cache, toks, &reduced_plan).unwrap().to_vec();
    assert_eq!(full.len(), reduced.len());
    let kept = |id: usize| id < (prefix as usize).max(1) || extra.contains(&(id as u32));
    let what = format!("V {prefix}, {} extra, batch {}, {threads} threads", extra.len(), toks.len());
    for (r, (f, d)) in full.chunks_exact(vocab).zip(reduced.chunks_exact(vocab)).enumerate() {
        for id in 0..vocab {
            if kept(id) {
                assert_eq!(f[id].to_bits(), d[id].to_bits(), "{what}: row {r} id {id}");
            } else {
                assert_eq!(d[id], f32::NEG_INFINITY, "{what}: row {r} id {id} not -inf");
            }
        }
    }
    // The argmax over the kept ids is the full head's argmax restricted to them.
    let kept_best = |row: &[f32]| (0..vocab).filter(|&i| kept(i)).max_by(|&a, &b| row[a].total_cmp(&row[b]));
    for (f, d) in full.chunks_exact(vocab).zip(reduced.chunks_exact(vocab)) {
        assert_eq!(kept_best(f), Some(argmax(d)));
    }
}

fn check_model(model: &Model) {
    let vocab = model.config().vocab_size as u32;
    let mut skip = SkipSet::none();
    skip.insert(0, SubLayer::Attention).unwrap();
    let extras: [Vec<u32>; 4] = [vec![], vec![vocab - 1, 200, 7, 200], (100..140).collect(), vec![3, 1, 2]];
    for prefix in [0, 1, 37, 64, 128, vocab - 1, vocab, vocab + 5] {
        for extra in &extras {
            for (threads, n) in [(1, 1), (2, 1), (2, 3), (3, 7)] {
                let toks = tokens(n, vocab as usize, u64::from(prefix) + n as u64);
                check(model, threads, &toks, prefix, extra, SkipSet::none());
            }
        }
    }
    check(model, 2, &[5], 64, &[250], skip);
}

#[test]
fn tiny_llama_reduced_head_matches_the_full_head() {
    check_model(&tiny(&SyntheticSpec::llama(11)));
}

#[test]
fn tiny_untied_and_gemma3_reduced_heads_match_the_full_head() {
    check_model(&tiny(&SyntheticSpec { tied: false, ..SyntheticSpec::llama(12) }));
    check_model(&tiny(&SyntheticSpec::gemma3(13)));
}

#[test]
fn extra_ids_outside_the_vocabulary_are_refused() {
    let model = tiny(&SyntheticSpec::llama(14));
    let (mut ws, _) = session(&model, 1, 16, KvType::F16);
    let vocab = model.config().vocab_size as u32;
    assert!(ws.set_head_extra(&[1, vocab]).is_err());
    assert!(ws.set_head_extra(&[1, vocab - 1]).is_ok());
}

#[test]
fn smollm2_reduced_head_matches_the_full_head() {
    let model = smollm2();
    let vocab = model.config().vocab_size as u32;
    let context: Vec<u32> = tokens(40, vocab as usize, 21);
    for prefix in [8192, 16384, 32768] {
        for (threads, n) in [(2, 1), (2, 4)] {
            let toks = tokens(n, vocab as usize, u64::from(prefix));
            check(&model, threads, &toks, prefix, &context, SkipSet::none());
        }
    }
}
